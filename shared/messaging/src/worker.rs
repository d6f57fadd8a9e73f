//! The shape every relance service shares: open its database pool at start (waiting it
//! out), stay connected to the broker, consume one queue with a handler, and relay the
//! outbox its handlers fill.

use crate::consume::{HandlerError, Incoming, RetryPolicy};
use crate::publish::Publisher;
use crate::supervise::{supervise, Readiness};
use crate::topology::TopologyOptions;
use relance_config::Config;
use relance_contracts::names::Names;
use sqlx::PgPool;
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// The service's database pool, opened at start with the settings' URL, pool size and
/// acquire timeout. A database not yet up (or full) at start is waited out, as the broker
/// is (see [`relance_storage::connect_at_start`]); `None` when `shutdown` fired meanwhile.
pub async fn connect_database(
    service: &'static str,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<PgPool>> {
    let s = &config.settings;
    relance_storage::connect_at_start(
        service,
        &s.database_url,
        s.db_pool_size,
        s.db_acquire_timeout,
        shutdown,
    )
    .await
}

/// A queue handler for [`run_queue_worker`] that gives `handler` its own handle on the pool
/// and the configuration with each message.
pub fn with_db_and_config<H, F>(
    db: &PgPool,
    config: &Config,
    handler: H,
) -> impl Fn(Incoming) -> F + Clone + Send + Sync + 'static
where
    H: Fn(PgPool, Config, Incoming) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    let (db, config) = (db.clone(), config.clone());
    move |message| handler(db.clone(), config.clone(), message)
}

/// Runs until `shutdown`: consumes `queue(names)` with `handler` and, unless
/// `RELANCE_OUTBOX_RELAY` is off, relays the outbox, reconnecting to the broker whenever the
/// session is lost.
pub async fn run_queue_worker<Q, H, F>(
    service: &'static str,
    config: &Config,
    db: &PgPool,
    queue: Q,
    readiness: Readiness,
    shutdown: CancellationToken,
    handler: H,
) -> anyhow::Result<()>
where
    Q: Fn(&Names) -> String,
    H: Fn(Incoming) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    let s = &config.settings;
    let names = Names::new(&s.namespace);
    let topology = TopologyOptions::from_settings(s);
    let queue = queue(&names);
    let consumer_beat = readiness.loops().register(&format!(
        "consumer {}",
        crate::consume::queue_label(&names, &queue)
    ));
    // One relay per process (`RELANCE_OUTBOX_RELAY`): every relay is woken by every commit,
    // so the relays of a process's other services would only find the outbox drained.
    let relay_beat = s.outbox_relay.then(|| readiness.loops().register("outbox relay"));
    // A pool timeout while every connection was open is marked PoolBusy: the message is
    // tried again soon, not held as if the database were down.
    let handler = {
        let pool = db.clone();
        move |message: Incoming| {
            let (pool, handled) = (pool.clone(), handler(message));
            async move {
                match handled.await {
                    Err(HandlerError::Transient(e)) => {
                        Err(HandlerError::Transient(relance_storage::mark_pool_busy(e, &pool)))
                    }
                    other => other,
                }
            }
        }
    };
    supervise(
        service,
        &s.amqp_url,
        &names,
        &topology,
        readiness,
        shutdown.clone(),
        |connection, shutdown| {
            let (db, names, queue, handler) = (db.clone(), names.clone(), queue.clone(), handler.clone());
            let (consumer_beat, relay_beat) = (consumer_beat.clone(), relay_beat.clone());
            let retry = RetryPolicy::from_settings(s);
            let (prefetch, clock) = (s.prefetch, config.clock.clone());
            let timing = crate::RelayTiming {
                interval: s.outbox_interval,
                coalesce: s.outbox_coalesce,
            };
            async move {
                let worker = crate::consume_watched(
                    &connection,
                    &names,
                    &queue,
                    prefetch,
                    retry,
                    handler,
                    shutdown.clone(),
                    consumer_beat,
                );
                match relay_beat {
                    Some(relay_beat) => {
                        let publisher = Publisher::open(&connection).await?;
                        let relay = crate::run_outbox_relay_watched(
                            db,
                            publisher,
                            names.clone(),
                            clock,
                            timing,
                            shutdown,
                            relay_beat,
                        );
                        tokio::try_join!(worker, relay)?;
                    }
                    None => worker.await?,
                }
                Ok(())
            }
        },
    )
    .await
}
