//! The outbox relay: publishes committed outbox rows with confirms, then marks them
//! published. Several relays may run (one per process): one leads (see [`Standing`]) and
//! drains the outbox, holding a transaction-scoped lock while it does, so that a relay
//! draining at the same moment (one without a connection of its own, or taking over) leaves
//! the work to it; rows are still claimed with `SKIP LOCKED`. A crash between publish and mark
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
/// Normally only the leader drains; relays without a connection of their own poll, and a
/// new leader may look while the old one finishes its batch: rather than split the moment's
/// rows between them in small batches (a transaction each), the one that finds the lock
/// taken leaves the work to its holder. It ends with the holder's transaction (or session).
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

/// Where a relay stands. Every listener costs the database a transaction for each commit
/// that notifies (the listening backend reads the notification queue in one, counted in
/// `pg_stat_database` though it runs no statement): with a relay listening in each of N
/// processes, every commit cost N more (measured: about three transactions per reminder
/// with one process per service). So one relay leads: it holds the leader lock on a
/// connection of its own, listens there and drains the outbox; the others stand by and try
/// for the lock every `RELANCE_OUTBOX_INTERVAL_MS`, so one takes over within that time when
/// the leader's process stops or loses its connection (its session, and the lock, end).
enum Standing {
    /// This relay holds the leader lock on its connection, which listens on [`OUTBOX_CHANNEL`].
    Leading(PgListener),
    /// Another relay leads; this connection tries for the lock at each interval.
    OnStandby(PgListener),
    /// No connection of its own now (the database away, or full): this relay drains the
    /// outbox at each interval, as every relay did before leaders, and tries again.
    Unsure,
}

impl Standing {
    /// Takes the leader lock if it is free (listening from then on: a commit after it is
    /// either seen by the first look or notified), opening the connection if there is none.
    async fn update(self, db: &PgPool) -> Standing {
        let mut connection = match self {
            Standing::Leading(listener) => return Standing::Leading(listener),
            Standing::OnStandby(listener) => listener,
            Standing::Unsure => {
                let own = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy_with((*db.connect_options()).clone());
                match PgListener::connect_with(&own).await {
                    Ok(mut listener) => {
                        // A leader whose host vanished (no FIN) would keep its session, and
                        // the lock, until the server's TCP keepalive gave up: two hours by
                        // default. On this connection the server gives up in about 11 s.
                        let keepalive = sqlx::query(
                            "SELECT set_config('tcp_keepalives_idle', '5', false),
                                    set_config('tcp_keepalives_interval', '2', false),
                                    set_config('tcp_keepalives_count', '3', false)",
                        )
                        .execute(&mut listener)
                        .await;
                        if let Err(e) = keepalive {
                            tracing::warn!(error = %e, "cannot set up the outbox relay's connection; it polls");
                            return Standing::Unsure;
                        }
                        listener
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot open the outbox relay's connection; it polls");
                        return Standing::Unsure;
                    }
                }
            }
        };
        let attempt = async {
            let leading: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(relance_storage::locks::OUTBOX_LEADER)
                .fetch_one(&mut connection)
                .await?;
            if leading {
                connection.listen(OUTBOX_CHANNEL).await?;
            }
            Ok::<_, sqlx::Error>(leading)
        };
        match attempt.await {
            Ok(true) => {
                tracing::debug!("this outbox relay leads");
                Standing::Leading(connection)
            }
            Ok(false) => Standing::OnStandby(connection),
            Err(e) => {
                tracing::warn!(error = %e, "lost the outbox relay's connection; it polls");
                Standing::Unsure
            }
        }
    }
}

/// When the relay looks at the outbox: every `interval` at the latest (the poll that remains
/// as a fallback), and `coalesce` after a commit's notification.
#[derive(Debug, Clone, Copy)]
pub struct RelayTiming {
    pub interval: Duration,
    /// Looking at once after each notification, a busy pipeline queried the outbox many times
    /// per reminder; waiting this long gathers the commits of a moment into one batch, for a
    /// few milliseconds of event latency.
    pub coalesce: Duration,
}

/// How long the relay pauses after a failed batch, or the error that ends its session.
/// Every connection of the pool busy is not an outage (the database answers): the relay tries
/// again after its usual interval, and says so. The database restarting is waited out, longer
/// after each failure (5 s at most). A broker failure ends the session and the supervisor
/// reconnects.
fn after_failure(
    error: anyhow::Error,
    db: &PgPool,
    outage_waits: &mut u32,
    timing: RelayTiming,
) -> anyhow::Result<Duration> {
    let error = relance_storage::mark_pool_busy(error, db);
    if relance_storage::is_pool_busy(&error) {
        tracing::warn!(
            error = format!("{error:#}"),
            "no database connection free; the outbox relays again soon"
        );
        return Ok(timing.interval);
    }
    if relance_storage::is_unavailable(&error) {
        *outage_waits = outage_waits.saturating_add(1);
        tracing::warn!(
            error = format!("{error:#}"),
            "database unavailable; the outbox waits"
        );
        return Ok(timing
            .interval
            .saturating_mul(2u32.saturating_pow((*outage_waits).min(10)))
            .min(Duration::from_secs(5)));
    }
    Err(error)
}

/// Waits for a commit's notification, `timing.interval` at most, then lets the commits of the
/// next `timing.coalesce` arrive and takes their notifications with it (one batch for them
/// all). A leader whose connection failed no longer leads (its lock went with its session).
async fn wait_for_commit(standing: &mut Standing, timing: RelayTiming) {
    let Standing::Leading(listener) = standing else {
        tokio::time::sleep(timing.interval).await;
        return;
    };
    match tokio::time::timeout(timing.interval, listener.try_recv()).await {
        Ok(Ok(Some(_))) => {
            tokio::time::sleep(timing.coalesce).await;
            // Notifications already received or waiting on the socket: covered by the look
            // that follows. `timeout(ZERO)` polls once and does not wait.
            while let Ok(Ok(Some(_))) = tokio::time::timeout(Duration::ZERO, listener.try_recv()).await {}
        }
        // The poll's time is up.
        Err(_) => {}
        // The connection was lost: notifications may have been missed, so look at once.
        Ok(Ok(None)) => {
            tracing::warn!("lost the outbox relay's connection; it polls");
            *standing = Standing::Unsure;
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "lost the outbox relay's connection; it polls");
            *standing = Standing::Unsure;
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
    let mut standing = Standing::Unsure.update(&db).await;
    loop {
        relance_telemetry::metrics::set_outbox_relay_leading(matches!(standing, Standing::Leading(_)));
        if matches!(standing, Standing::OnStandby(_)) {
            // Another relay drains the outbox: stand by, and take over when it goes.
            heartbeat.beat();
            tokio::select! {
                _ = shutdown.cancelled() => {
                    publisher.close().await;
                    return Ok(());
                }
                _ = tokio::time::sleep(timing.interval) => {}
            }
            standing = standing.update(&db).await;
            continue;
        }
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
                    _ = wait_for_commit(&mut standing, timing) => {}
                }
                if matches!(standing, Standing::Unsure) {
                    standing = standing.update(&db).await;
                }
                continue;
            }
            Err(e) => after_failure(e, &db, &mut outage_waits, timing)?,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TIMING: RelayTiming = RelayTiming {
        interval: Duration::from_millis(200),
        coalesce: Duration::from_millis(2),
    };

    /// A pool that never connects (nothing listens on port 1): its timeouts are outages.
    fn unreachable() -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_millis(200))
            .connect_lazy("postgres://postgres@127.0.0.1:1/postgres")
            .unwrap()
    }

    #[tokio::test]
    async fn a_busy_pool_is_tried_again_after_the_interval_and_not_waited_out_as_an_outage() {
        let server = std::env::var("RELANCE_TEST_DATABASE_SERVER")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let db = relance_storage::connect_with_timeout(
            &format!("{server}/postgres"),
            1,
            Duration::from_millis(200),
        )
        .await
        .unwrap();
        let held = db.acquire().await.unwrap();
        let timed_out = anyhow::Error::new(db.acquire().await.unwrap_err()).context("claiming outbox rows");
        let mut outage_waits = 3;
        assert_eq!(
            after_failure(timed_out, &db, &mut outage_waits, TIMING).unwrap(),
            TIMING.interval
        );
        assert_eq!(outage_waits, 3, "a busy pool is not counted as an outage");
        drop(held);
        db.close().await;
    }

    #[tokio::test]
    async fn an_unreachable_database_is_waited_out_longer_each_time_up_to_five_seconds() {
        let db = unreachable();
        let mut outage_waits = 0;
        let mut pauses = Vec::new();
        for _ in 0..6 {
            let down = anyhow::Error::new(db.acquire().await.unwrap_err()).context("claiming outbox rows");
            pauses.push(after_failure(down, &db, &mut outage_waits, TIMING).unwrap());
        }
        assert_eq!(outage_waits, 6);
        assert_eq!(
            pauses,
            [400, 800, 1600, 3200, 5000, 5000].map(Duration::from_millis)
        );
    }

    #[tokio::test]
    async fn any_other_failure_ends_the_session() {
        let mut outage_waits = 0;
        let broker = anyhow::anyhow!("publisher confirm refused");
        assert!(after_failure(broker, &unreachable(), &mut outage_waits, TIMING).is_err());
    }
}
