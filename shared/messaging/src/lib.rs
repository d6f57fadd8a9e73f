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

/// How long one node of `AMQP_URL` may take to accept a connection before the next is tried.
const NODE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The nodes `AMQP_URL` names: one URL, or several separated by commas (the nodes of a
/// cluster), in the order they are tried.
pub fn broker_nodes(amqp_url: &str) -> Vec<&str> {
    amqp_url
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .collect()
}

/// Opens a connection named after the service (shown in the RabbitMQ management UI), to the
/// first node of `AMQP_URL` that accepts it: with a cluster's nodes listed, a service whose
/// node went away reconnects to the next (as libpq does with several hosts). Every queue
/// relance declares is a quorum queue by default, replicated on the cluster's nodes, so
/// that any node serves them.
pub async fn connect(amqp_url: &str, service: &str) -> anyhow::Result<Connection> {
    let nodes = broker_nodes(amqp_url);
    if nodes.is_empty() {
        anyhow::bail!("connecting to RabbitMQ: AMQP_URL names no node");
    }
    let mut failures = Vec::new();
    for url in nodes {
        let properties =
            ConnectionProperties::default().with_connection_name(format!("relance-{service}").into());
        match tokio::time::timeout(NODE_CONNECT_TIMEOUT, Connection::connect(url, properties)).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(e)) => failures.push(format!("{}: {e}", node_address(url))),
            Err(_) => failures.push(format!(
                "{}: no answer within {NODE_CONNECT_TIMEOUT:?}",
                node_address(url)
            )),
        }
    }
    Err(anyhow::anyhow!(failures.join("; "))).context("connecting to RabbitMQ (AMQP_URL)")
}

/// Checks, at a service's start, that every node `AMQP_URL` names is an AMQP URL: a mistake
/// in a cluster's third node would otherwise show only on the day the first two are lost.
pub fn check_broker_nodes(amqp_url: &str) -> anyhow::Result<()> {
    let nodes = broker_nodes(amqp_url);
    if nodes.is_empty() {
        anyhow::bail!("AMQP_URL names no RabbitMQ node");
    }
    for (n, url) in nodes.iter().enumerate() {
        url.parse::<lapin::uri::AMQPUri>().map_err(|e| {
            anyhow::anyhow!(
                "AMQP_URL: node {} of {} ({}) is not an AMQP URL: {e}",
                n + 1,
                nodes.len(),
                node_address(url)
            )
        })?;
    }
    Ok(())
}

/// A node's URL as an error may show it: its host and port, without user nor password.
fn node_address(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    // Credentials first (a password may hold a '/'), then the path.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::broker_nodes;

    #[test]
    fn a_node_list_with_a_bad_node_is_refused_naming_it() {
        assert!(super::check_broker_nodes("amqp://a:5672/%2f,amqp://b:5672/%2f").is_ok());
        let refused =
            super::check_broker_nodes("amqp://u:pw@a:5672/%2f,amqp://u:pw@b:5672/%2f,http://u:pw@c:80")
                .map_err(|e| e.to_string());
        let Err(reason) = refused else { panic!("accepted") };
        assert!(reason.contains("node 3 of 3 (c:80)"), "{reason}");
        assert!(!reason.contains("pw"), "{reason}");
        assert!(super::check_broker_nodes(" , ").is_err());
    }

    #[test]
    fn a_node_is_named_in_errors_without_its_credentials() {
        assert_eq!(
            super::node_address("amqp://relance:pw@rabbit-2:5672/%2f"),
            "rabbit-2:5672"
        );
        assert_eq!(super::node_address("amqp://rabbit-3"), "rabbit-3");
        assert_eq!(
            super::node_address("amqp://relance:ab/cd@rabbit-4:5672/%2f"),
            "rabbit-4:5672"
        );
    }

    #[test]
    fn amqp_url_names_one_node_or_a_clusters_in_order() {
        assert_eq!(broker_nodes("amqp://a:5672/%2f"), ["amqp://a:5672/%2f"]);
        assert_eq!(
            broker_nodes(" amqp://a:5672/%2f,amqp://b:5672/%2f , amqp://c:5672/%2f,"),
            ["amqp://a:5672/%2f", "amqp://b:5672/%2f", "amqp://c:5672/%2f"]
        );
        assert!(broker_nodes(" , ").is_empty());
    }
}
