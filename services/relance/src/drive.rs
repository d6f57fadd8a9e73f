//! Driving relance from outside, as another system would: publishing inbound messages and
//! waiting until every due step has reached a final state. Used by the demo and the tests.

use anyhow::Context;
use chrono::Utc;
use relance_contracts::names::Names;
use relance_domain::SharedClock;
use relance_messaging::{properties, Publisher};
use sqlx::PgPool;
use std::future::Future;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Publishes a JSON body on `<ns>.inbound`, with confirms, as an invoicing system would.
pub async fn publish_inbound(
    publisher: &Publisher,
    names: &Names,
    routing_key: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    let message_id = body
        .get("event_id")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let exchange = names.inbound_exchange();
    // A trace starts here (or goes on, under a caller's span): what the message causes in
    // relance is its continuation.
    let span = relance_messaging::spans::publish_span(&exchange, routing_key, &message_id);
    let props = properties(
        &message_id,
        &message_id,
        routing_key,
        Utc::now(),
        &relance_telemetry::trace_headers_of(&span),
    );
    let payload = serde_json::to_vec(body).context("encoding the message")?;
    let published = publisher
        .publish(&exchange, routing_key, &payload, props, true)
        .instrument(span.clone())
        .await;
    if published.is_err() {
        relance_messaging::spans::record_error(&span, "publish_failed");
    }
    published
}

/// Polls `check` until it returns true, or fails after `deadline`.
pub async fn wait_for<F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let start = Instant::now();
    loop {
        if check().await? {
            return Ok(());
        }
        if start.elapsed() > deadline {
            anyhow::bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// True when nothing is left to do at the clock's current time: the outbox is drained and
/// every due step is sent, skipped, cancelled or failed.
pub async fn is_idle(db: &PgPool, clock: &SharedClock) -> anyhow::Result<bool> {
    Ok(relance_storage::outbox::pending_count(db).await? == 0
        && relance_storage::steps::unfinished_due_count(db, clock.now()).await? == 0)
}

/// Waits until [`is_idle`] holds three checks in a row (a message may be between services).
pub async fn wait_until_idle(db: &PgPool, clock: &SharedClock, deadline: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut streak = 0;
    loop {
        if is_idle(db, clock).await? {
            streak += 1;
            if streak >= 3 {
                return Ok(());
            }
        } else {
            streak = 0;
        }
        if start.elapsed() > deadline {
            anyhow::bail!("timed out after {deadline:?} waiting for the pipeline to go idle");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
