//! `relance statement CUSTOMER --out FILE [--as-of DATE] [--since DATE]`: writes a customer's
//! statement of account as PDF, the one the renderer attaches to messages
//! (`relance_documents::statement`). Reads the database; publishes and changes nothing.

use anyhow::Context;
use chrono::NaiveDate;
use relance_config::{Config, Settings};
use std::path::Path;

/// Writes the statement of `customer_id` on `as_of` (by default today in the customer's time
/// zone) to `out`; prints what it wrote.
pub async fn write_statement(
    settings: Settings,
    customer_id: &str,
    out: &Path,
    as_of: Option<NaiveDate>,
    since: Option<NaiveDate>,
) -> anyhow::Result<()> {
    let config = Config::from_settings(settings)?;
    let db = relance_storage::connect(config.settings.reads_database_url(), 1).await?;
    let mut conn = db.acquire().await.context("acquiring a connection")?;
    let Some(mut source) = relance_storage::statements::load(&mut conn, customer_id).await? else {
        anyhow::bail!("no customer {customer_id:?}");
    };
    // One creditor's invoices: that of the customer's latest invoice still owed.
    let creditor = relance_storage::creditors::statement_creditor(
        &mut conn,
        &config.settings.creditor,
        &mut source,
        None,
    )
    .await?;
    let config = config.for_creditor(creditor);
    drop(conn);
    db.close().await;
    let as_of = as_of.unwrap_or_else(|| {
        config
            .clock
            .now()
            .with_timezone(&source.customer.timezone)
            .date_naive()
    });
    let figures = relance_documents::statement::figures(&config, &source, as_of, since)?;
    let document = relance_documents::statement::document(&config, &figures)?;
    std::fs::write(out, &document.pdf).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{}: statement of account of {customer_id} on {as_of}, {} open invoice(s), {} page(s), sha256 {}",
        out.display(),
        figures.lines.len(),
        document.pages,
        document.sha256
    );
    Ok(())
}
