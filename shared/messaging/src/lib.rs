//! Messaging over RabbitMQ (lapin): the topology, publishing with publisher confirms, the
//! outbox relay, and consuming with ack-after-commit, retries through delay queues and
//! dead-lettering with a reason. It owns no business rule: handlers decide, this module
//! carries.

pub mod consume;
pub mod dead_letters;
pub mod migrate;
pub mod publish;
pub mod relay;
pub mod spans;
pub mod supervise;
pub mod topology;
pub mod worker;

pub use consume::{consume, consume_watched, HandlerError, Incoming};
pub use consume::{retry_tier, NextAttempt, RetryDecision, RetryPolicy, OUTAGE_WAIT_CAP, RETRY_TIERS};
pub use migrate::{migrate_queues, QueueMigration};
pub use publish::{properties, publish_inbound, Publisher};
pub use relay::{run_outbox_relay, run_outbox_relay_watched, RelayTiming};
pub use supervise::{supervise, Readiness};
pub use topology::{
    declare_topology, delete_topology, exchange_of_queue, queue_plan, PlannedQueue, QueueType,
    TopologyOptions, DEFAULT_DELIVERY_LIMIT,
};
pub use worker::run_queue_worker;

use anyhow::Context;
use lapin::{Connection, ConnectionProperties};

/// Opens a connection named after the service (shown in the RabbitMQ management UI).
pub async fn connect(amqp_url: &str, service: &str) -> anyhow::Result<Connection> {
    let properties =
        ConnectionProperties::default().with_connection_name(format!("relance-{service}").into());
    Connection::connect(amqp_url, properties)
        .await
        .context("connecting to RabbitMQ (AMQP_URL)")
}
