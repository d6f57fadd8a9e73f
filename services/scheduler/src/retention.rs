//! Retention: removes published outbox rows and inbox records past their retention, every
//! `RELANCE_RETENTION_INTERVAL_MS`; one scheduler copy at a time does it (see
//! [`relance_storage::retention`]).

use anyhow::Context;
use relance_config::Config;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Purges expired rows until `shutdown` fires.
pub(crate) async fn retention_loop(
    db: &PgPool,
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let retention = &config.settings.retention;
    loop {
        if let Err(e) = purge_expired(db, config).await {
            // The database may be restarting: log and try again at the next pass.
            tracing::error!(
                error = format!("{e:#}"),
                "removing expired outbox and inbox rows failed"
            );
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(retention.interval) => {}
        }
    }
}

/// One retention pass, at the clock's current time.
pub async fn purge_expired(
    db: &PgPool,
    config: &Config,
) -> anyhow::Result<relance_storage::retention::Purged> {
    let (now, retention) = (config.clock.now(), &config.settings.retention);
    let age = |window: std::time::Duration| {
        chrono::Duration::from_std(window).context("a retention window out of range")
    };
    let purged = relance_storage::retention::purge(
        db,
        now - age(retention.outbox)?,
        now - age(retention.inbox)?,
        retention.batch,
    )
    .await?;
    if purged.outbox > 0 || purged.inbox > 0 {
        tracing::info!(
            outbox = purged.outbox,
            inbox = purged.inbox,
            "expired rows removed"
        );
    }
    Ok(purged)
}
