//! The shape every relance service shares: stay connected to the broker, consume one queue
//! with a handler, and relay the outbox its handlers fill.

use crate::consume::{consume, HandlerError, Incoming, RetryPolicy};
use crate::publish::Publisher;
use crate::supervise::{supervise, Readiness};
use crate::topology::TopologyOptions;
use relance_config::Config;
use relance_contracts::names::Names;
use sqlx::PgPool;
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// Runs until `shutdown`: consumes `queue(names)` with `handler` and relays the outbox,
/// reconnecting to the broker whenever the session is lost.
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
    let topology = TopologyOptions {
        queue_expires: s.queue_expires,
    };
    let queue = queue(&names);
    supervise(
        service,
        &s.amqp_url,
        &names,
        &topology,
        readiness,
        shutdown.clone(),
        |connection, shutdown| {
            let (db, names, queue, handler) = (db.clone(), names.clone(), queue.clone(), handler.clone());
            let retry = RetryPolicy::from_settings(s);
            let (prefetch, clock, outbox_interval) = (s.prefetch, config.clock.clone(), s.outbox_interval);
            async move {
                let publisher = Publisher::open(&connection).await?;
                let worker = consume(
                    &connection,
                    &names,
                    &queue,
                    prefetch,
                    retry,
                    handler,
                    shutdown.clone(),
                );
                let relay =
                    crate::run_outbox_relay(db, publisher, names.clone(), clock, outbox_interval, shutdown);
                tokio::try_join!(worker, relay)?;
                Ok(())
            }
        },
    )
    .await
}
