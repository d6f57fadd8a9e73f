//! `relance migrate-queues`: gives an existing deployment's queues the type the settings ask
//! for (classic to quorum, or back). RabbitMQ cannot change a queue's type in place, so each
//! queue of the other type is replaced under the same name, its messages moved, none lost:
//! a holding queue `<queue>.migrating` takes the queue's bindings first (publishers outside
//! relance may go on publishing), the old queue's messages move to it, the old queue is
//! deleted and declared again with the new type, then the held messages move back.
//! The former per-message TTL delay queue `<queue>.retry`, which quorum deployments do not
//! declare, is emptied into its work queue and deleted.
//! Run it with every relance service stopped: a consumer would hold messages of the queue
//! being replaced. It never touches another namespace's queues.

use crate::publish::Publisher;
use crate::topology::{
    declare_exchanges, declare_queue, durable_queue, queue_arguments, queue_plan, PlannedQueue, QueueType,
    TopologyOptions,
};
use anyhow::Context;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Connection;
use relance_contracts::names::{self, Names};

/// What became of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueMigration {
    /// It did not exist: declared with the type asked for.
    Created,
    /// It already had the type asked for.
    Unchanged,
    /// Replaced by a queue of the type asked for, with its messages.
    Replaced { moved: u64 },
    /// The former delay queue, emptied into its work queue and deleted.
    Drained { moved: u64 },
}

/// Gives every queue of `names` the type of `options`; returns each queue's fate, in the
/// order of the topology.
pub async fn migrate_queues(
    connection: &Connection,
    names: &Names,
    options: &TopologyOptions,
) -> anyhow::Result<Vec<(String, QueueMigration)>> {
    let channel = connection.create_channel().await.context("opening a channel")?;
    declare_exchanges(&channel, names).await?;
    let publisher = Publisher::open(connection).await?;
    let mut report = Vec::new();
    for queue in queue_plan(names, options) {
        let fate = migrate_queue(connection, &publisher, &queue, options).await?;
        tracing::info!(queue = %queue.name, ?fate, "queue migrated");
        report.push((queue.name, fate));
    }
    if options.queue_type == QueueType::Quorum {
        let work_queues = queue_plan(names, options)
            .into_iter()
            .filter_map(|queue| queue.returns_to)
            .collect::<std::collections::BTreeSet<_>>();
        for work_queue in work_queues {
            let legacy = Names::retry_queue(&work_queue);
            if exists(connection, &legacy).await? {
                let get = connection.create_channel().await.context("opening a channel")?;
                let moved = move_messages(&get, &publisher, &legacy, &work_queue).await?;
                get.queue_delete(legacy.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .with_context(|| format!("deleting {legacy}"))?;
                report.push((legacy, QueueMigration::Drained { moved }));
            }
        }
    }
    publisher.close().await;
    let _ = channel.close(200, "migrated".into()).await;
    Ok(report)
}

async fn migrate_queue(
    connection: &Connection,
    publisher: &Publisher,
    queue: &PlannedQueue,
    options: &TopologyOptions,
) -> anyhow::Result<QueueMigration> {
    let channel = connection.create_channel().await.context("opening a channel")?;
    let holding = PlannedQueue {
        name: format!("{}.migrating", queue.name),
        arguments: queue_arguments(options),
        bindings: queue.bindings.clone(),
        returns_to: None,
    };
    if !exists(connection, &queue.name).await? {
        declare_queue(&channel, queue, options).await?;
        // A run stopped after the old queue was deleted left the messages in the holding queue.
        if exists(connection, &holding.name).await? {
            let moved = empty_holding(&channel, publisher, queue, &holding).await?;
            return Ok(QueueMigration::Replaced { moved });
        }
        return Ok(QueueMigration::Created);
    }
    // A declaration with the arguments asked for succeeds only if the queue has them; if
    // not, the broker closes the channel (PRECONDITION_FAILED), hence a channel of its own.
    let probe = connection.create_channel().await.context("opening a channel")?;
    if probe
        .queue_declare(
            queue.name.as_str().into(),
            durable_queue(),
            queue.arguments.clone(),
        )
        .await
        .is_ok()
    {
        let _ = probe.close(200, "probed".into()).await;
        declare_queue(&channel, queue, options).await?;
        if exists(connection, &holding.name).await? {
            let moved = empty_holding(&channel, publisher, queue, &holding).await?;
            return Ok(QueueMigration::Replaced { moved });
        }
        return Ok(QueueMigration::Unchanged);
    }
    // Bound before the old queue is unbound: a message published meanwhile reaches one.
    declare_queue(&channel, &holding, options).await?;
    for (exchange, routing_key) in &queue.bindings {
        channel
            .queue_unbind(
                queue.name.as_str().into(),
                exchange.as_str().into(),
                routing_key.as_str().into(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("unbinding {}", queue.name))?;
    }
    move_messages(&channel, publisher, &queue.name, &holding.name).await?;
    channel
        .queue_delete(queue.name.as_str().into(), QueueDeleteOptions::default())
        .await
        .with_context(|| format!("deleting {}", queue.name))?;
    declare_queue(&channel, queue, options).await?;
    let moved = empty_holding(&channel, publisher, queue, &holding).await?;
    let _ = channel.close(200, "migrated".into()).await;
    Ok(QueueMigration::Replaced { moved })
}

/// Unbinds the holding queue, moves its messages (with those published while the queue was
/// replaced) to the queue, and deletes it.
async fn empty_holding(
    channel: &lapin::Channel,
    publisher: &Publisher,
    queue: &PlannedQueue,
    holding: &PlannedQueue,
) -> anyhow::Result<u64> {
    for (exchange, routing_key) in &holding.bindings {
        channel
            .queue_unbind(
                holding.name.as_str().into(),
                exchange.as_str().into(),
                routing_key.as_str().into(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("unbinding {}", holding.name))?;
    }
    let moved = move_messages(channel, publisher, &holding.name, &queue.name).await?;
    channel
        .queue_delete(holding.name.as_str().into(), QueueDeleteOptions::default())
        .await
        .with_context(|| format!("deleting {}", holding.name))?;
    Ok(moved)
}

/// Whether `queue` exists (a passive declaration, on a channel of its own: the broker closes
/// the channel of a passive declaration that finds nothing).
async fn exists(connection: &Connection, queue: &str) -> anyhow::Result<bool> {
    let channel = connection.create_channel().await.context("opening a channel")?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let found = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .is_ok();
    if found {
        let _ = channel.close(200, "probed".into()).await;
    }
    Ok(found)
}

/// Moves every message of `from` to `to`, each acked only after the broker confirmed its
/// copy (a crash may duplicate one, never lose one; consumers are idempotent). The routing
/// key it was published with is kept in the header consumers read it from.
async fn move_messages(
    channel: &lapin::Channel,
    publisher: &Publisher,
    from: &str,
    to: &str,
) -> anyhow::Result<u64> {
    let mut moved = 0;
    while let Some(message) = channel
        .basic_get(from.into(), BasicGetOptions::default())
        .await
        .with_context(|| format!("taking a message from {from}"))?
    {
        let delivery = message.delivery;
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        if !headers.inner().contains_key(names::HEADER_ROUTING_KEY) {
            headers.insert(
                ShortString::from(names::HEADER_ROUTING_KEY),
                AMQPValue::LongString(LongString::from(delivery.routing_key.as_str())),
            );
        }
        let properties = delivery.properties.clone().with_headers(headers);
        publisher
            .publish("", to, &delivery.data, properties, true)
            .await
            .with_context(|| format!("moving a message from {from} to {to}"))?;
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .with_context(|| format!("acking a message moved from {from}"))?;
        moved += 1;
    }
    Ok(moved)
}
