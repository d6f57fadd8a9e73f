//! `relance portal link F-..` prints the customer page's link of an invoice (signed with
//! `RELANCE_PORTAL_SECRET`, valid `RELANCE_PORTAL_TOKEN_DAYS`); `relance portal revoke F-..`
//! refuses every link of the invoice made until now (docs/portal.md).

use anyhow::Context;
use clap::Subcommand;
use relance_config::{Config, Settings};

#[derive(Subcommand)]
pub enum PortalCommand {
    /// Print the customer page's link of an invoice.
    Link { invoice: String },
    /// Refuse every link of the invoice given out until now (a new `link` works again).
    Revoke { invoice: String },
}

pub async fn run(settings: Settings, command: PortalCommand) -> anyhow::Result<()> {
    let config = Config::from_settings(settings)?;
    let db = relance_storage::connect(&config.settings.database_url, 1).await?;
    let invoice = match &command {
        PortalCommand::Link { invoice } | PortalCommand::Revoke { invoice } => invoice.trim().to_string(),
    };
    let known: Option<String> = sqlx::query_scalar("SELECT number FROM invoices WHERE number = $1")
        .bind(&invoice)
        .fetch_optional(&db)
        .await
        .context("reading the invoice")?;
    if known.is_none() {
        db.close().await;
        anyhow::bail!("no invoice {invoice:?}");
    }
    let outcome = match command {
        PortalCommand::Link { .. } => relance_portal::link(&config, &invoice).map(|url| println!("{url}")),
        PortalCommand::Revoke { .. } => relance_portal::revoke(&db, &invoice, config.clock.now())
            .await
            .map(|()| println!("{invoice}: every customer-page link made until now is revoked")),
    };
    db.close().await;
    outcome
}
