//! The outbox relay: publishes committed outbox rows with confirms, then marks them
//! published. Several relays may run (one per service copy): rows are claimed with
//! `SKIP LOCKED`. A crash between publish and mark republishes; consumers are idempotent.

use crate::publish::{check_confirmation, properties, Publisher};
use anyhow::Context;
use relance_contracts::names::Names;
use relance_domain::SharedClock;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BATCH: i64 = 500;

/// Publishes one batch; returns how many messages went out.
pub async fn relay_once(
    db: &PgPool,
    publisher: &Publisher,
    names: &Names,
    clock: &SharedClock,
) -> anyhow::Result<usize> {
    let mut tx = db.begin().await.context("starting the relay transaction")?;
    let rows = relance_storage::outbox::claim_unpublished(&mut tx, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut confirms = Vec::with_capacity(rows.len());
    for row in &rows {
        let (exchange, mandatory) = match row.destination.as_str() {
            // A job nobody would receive is a broken topology: fail loudly, keep the row.
            "jobs" => (names.jobs_exchange(), true),
            _ => (names.events_exchange(), false),
        };
        let props = properties(
            &row.message_id.to_string(),
            &row.correlation_id,
            &row.routing_key,
            row.created_at,
            &row.headers.0,
        );
        let payload = serde_json::to_vec(&row.payload).context("encoding an outbox message")?;
        let confirm = publisher
            .publish_unconfirmed(&exchange, &row.routing_key, &payload, props, mandatory)
            .await?;
        confirms.push((confirm, row.routing_key.clone()));
    }
    for (confirm, routing_key) in confirms {
        check_confirmation(
            confirm.await.context("waiting for the broker's confirm")?,
            &routing_key,
        )?;
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    relance_storage::outbox::mark_published(&mut tx, &ids, clock.now()).await?;
    tx.commit().await.context("committing the relay transaction")?;
    Ok(rows.len())
}

/// Runs until shutdown, draining the outbox every `interval` (at once again while busy).
pub async fn run_outbox_relay(
    db: PgPool,
    publisher: Publisher,
    names: Names,
    clock: SharedClock,
    interval: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let published = relay_once(&db, &publisher, &names, &clock).await?;
        if published > 0 {
            tracing::debug!(published, "outbox relayed");
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
