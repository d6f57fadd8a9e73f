//! The outbox relay: publishes committed outbox rows with confirms, then marks them
//! published. Several relays may run (one per process): one drains the outbox at a time
//! (a transaction-scoped advisory lock), the others find it taken and wait for the next
//! commit; rows are still claimed with `SKIP LOCKED`. A crash between publish and mark
//! republishes; consumers are idempotent.

use crate::publish::{check_confirmation, properties, Publisher};
use crate::spans;
use anyhow::Context;
use relance_contracts::names::Names;
use relance_domain::SharedClock;
use relance_telemetry::liveness::Heartbeat;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

const BATCH: i64 = 500;
/// [`BATCH`] as a count of rows.
const BATCH_ROWS: usize = BATCH as usize;

/// The advisory lock a relay holds while it drains the outbox (`pg_try_advisory_xact_lock`).
/// Every relay is woken by every commit: without it, the relays of every process claimed
/// the same moment's rows between them, in batches of one or two, each batch a transaction
/// (measured: about three transactions per reminder with one process per service). The
/// relay that holds it was woken by the same commits, so it looks again once its batch is
/// out; one that dies releases it with its connection.
const DRAINING_LOCK: i64 = relance_storage::locks::OUTBOX_DRAINING;

/// Publishes one batch; returns how many messages went out (0 also when another relay is
/// draining the outbox at this moment).
pub async fn relay_once(
    db: &PgPool,
    publisher: &Publisher,
    names: &Names,
    clock: &SharedClock,
) -> anyhow::Result<usize> {
    let mut tx = db.begin().await.context("starting the relay transaction")?;
    let draining: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(DRAINING_LOCK)
        .fetch_one(&mut *tx)
        .await
        .context("taking the outbox relay's lock")?;
    if !draining {
        return Ok(0);
    }
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
        let message_id = row.message_id.to_string();
        // The producer span continues the trace the row was written in (its headers), and
        // the message carries the span's own context: its consumer is the span's child.
        let span = spans::publish_span(&exchange, &row.routing_key, &message_id);
        relance_telemetry::link_to_parent(&span, &row.headers.0);
        let mut headers = row.headers.0.clone();
        headers.extend(relance_telemetry::trace_headers_of(&span));
        let props = properties(
            &message_id,
            &row.correlation_id,
            &row.routing_key,
            row.created_at,
            &headers,
        );
        let payload = serde_json::to_vec(&row.payload).context("encoding an outbox message")?;
        let confirm = publisher
            .publish_unconfirmed(&exchange, &row.routing_key, &payload, props, mandatory)
            .instrument(span.clone())
            .await
            .inspect_err(|_| spans::record_error(&span, "publish_failed"))?;
        confirms.push((confirm, row.routing_key.clone(), span));
    }
    for (confirm, routing_key, span) in confirms {
        // The span ends (is dropped) once the broker has confirmed, or refused, its message.
        let confirmed = match confirm.await.context("waiting for the broker's confirm") {
            Ok(confirmation) => check_confirmation(confirmation, &routing_key),
            Err(e) => Err(e),
        };
        if confirmed.is_err() {
            spans::record_error(&span, "broker_refused");
        }
        confirmed?;
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    relance_storage::outbox::mark_published(&mut tx, &ids, clock.now()).await?;
    tx.commit().await.context("committing the relay transaction")?;
    for row in &rows {
        relance_telemetry::metrics::record_published(&row.routing_key, &row.payload);
    }
    Ok(rows.len())
}

/// The channel every commit that adds outbox rows notifies (migration ...20261204100002).
pub const OUTBOX_CHANNEL: &str = "relance_outbox";

/// A connection of its own (not one of the service's pool) listening on [`OUTBOX_CHANNEL`].
/// `None` when it cannot be opened now: the relay polls meanwhile and tries again later.
async fn listen(db: &PgPool) -> Option<PgListener> {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with((*db.connect_options()).clone());
    let attempt = async {
        let mut listener = PgListener::connect_with(&own).await?;
        listener.listen(OUTBOX_CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match attempt.await {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for outbox commits; the relay polls");
            None
        }
    }
}

/// When the relay looks at the outbox: every `interval` at the latest (the poll that remains
/// as a fallback), and `coalesce` after a commit's notification.
#[derive(Debug, Clone, Copy)]
pub struct RelayTiming {
    pub interval: Duration,
    /// Every relay (one per service copy) is notified of every commit. Looking at once, a busy
    /// pipeline made each relay query the outbox about twenty times per reminder, nearly always
    /// to find its rows already taken by another; waiting this long gathers the commits of a
    /// moment into one batch, for a few milliseconds of event latency.
    pub coalesce: Duration,
}

/// Waits for a commit's notification, `timing.interval` at most, then lets the commits of the
/// next `timing.coalesce` arrive and takes their notifications with it (one batch for them
/// all). A listener whose connection failed is dropped (reopened at the next wait).
async fn wait_for_commit(listener: &mut Option<PgListener>, db: &PgPool, timing: RelayTiming) {
    if listener.is_none() {
        *listener = listen(db).await;
    }
    let Some(active) = listener.as_mut() else {
        tokio::time::sleep(timing.interval).await;
        return;
    };
    match tokio::time::timeout(timing.interval, active.try_recv()).await {
        Ok(Ok(Some(_))) => {
            tokio::time::sleep(timing.coalesce).await;
            // Notifications already received or waiting on the socket: covered by the look
            // that follows. `timeout(ZERO)` polls once and does not wait.
            while let Ok(Ok(Some(_))) = tokio::time::timeout(Duration::ZERO, active.try_recv()).await {}
        }
        // The poll's time is up.
        Err(_) => {}
        // The connection was lost: notifications may have been missed, so look at once.
        Ok(Ok(None)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "lost the outbox listener; the relay polls");
            *listener = None;
            tokio::time::sleep(timing.interval).await;
        }
    }
}

/// Runs until shutdown, draining the outbox when a commit adds to it (LISTEN/NOTIFY), and
/// every `timing.interval` in any case (at once again after a full batch).
pub async fn run_outbox_relay(
    db: PgPool,
    publisher: Publisher,
    names: Names,
    clock: SharedClock,
    timing: RelayTiming,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let heartbeat = Heartbeat::unwatched("outbox relay");
    run_outbox_relay_watched(db, publisher, names, clock, timing, shutdown, heartbeat).await
}

/// [`run_outbox_relay`], reporting each completed batch (or empty poll) on `heartbeat`.
pub async fn run_outbox_relay_watched(
    db: PgPool,
    publisher: Publisher,
    names: Names,
    clock: SharedClock,
    timing: RelayTiming,
    shutdown: CancellationToken,
    heartbeat: Heartbeat,
) -> anyhow::Result<()> {
    let mut outage_waits: u32 = 0;
    // Listening before the first look: a commit after it is either seen or notified.
    let mut listener = listen(&db).await;
    loop {
        let relayed = relay_once(&db, &publisher, &names, &clock).await;
        if relayed.is_ok() {
            heartbeat.beat();
        }
        let pause = match relayed {
            // A full batch: more are waiting, look again at once.
            Ok(published) if published >= BATCH_ROWS => {
                outage_waits = 0;
                tracing::debug!(published, "outbox relayed");
                continue;
            }
            // Drained (by this relay or another): wait for the next commit. One made while
            // this batch was out has notified already, and the wait ends at once.
            Ok(published) => {
                outage_waits = 0;
                if published > 0 {
                    tracing::debug!(published, "outbox relayed");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        publisher.close().await;
                        return Ok(());
                    }
                    _ = wait_for_commit(&mut listener, &db, timing) => {}
                }
                continue;
            }
            // The database restarting is waited out here; a broker failure ends the session
            // and the supervisor reconnects.
            Err(e) if relance_storage::is_unavailable(&e) => {
                outage_waits = outage_waits.saturating_add(1);
                tracing::warn!(error = format!("{e:#}"), "database unavailable; the outbox waits");
                timing
                    .interval
                    .saturating_mul(2u32.saturating_pow(outage_waits.min(10)))
                    .min(Duration::from_secs(5))
            }
            Err(e) => return Err(e),
        };
        tokio::select! {
            _ = shutdown.cancelled() => {
                publisher.close().await;
                return Ok(());
            }
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
