//! Exchanges and queues. Every service declares the whole topology at start (declarations
//! are idempotent), so services can start in any order.

use crate::consume::RETRY_TIERS;
use anyhow::Context;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use relance_contracts::names::{self, Names};
use relance_domain::Channel as DeliveryChannel;
use std::time::Duration;

pub use relance_config::QueueType;

/// `RELANCE_QUEUE_DELIVERY_LIMIT`'s default (RabbitMQ 4's own default for quorum queues).
pub const DEFAULT_DELIVERY_LIMIT: u32 = 20;

#[derive(Debug, Clone)]
pub struct TopologyOptions {
    /// `x-expires` on every queue: the broker deletes queues unused this long (tests).
    pub queue_expires: Option<Duration>,
    /// Quorum (replicated by a cluster) or classic queues.
    pub queue_type: QueueType,
    /// Quorum queues: deliveries of a message never settled before it is dead-lettered.
    pub delivery_limit: u32,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        Self {
            queue_expires: None,
            queue_type: QueueType::Quorum,
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
        }
    }
}

impl TopologyOptions {
    /// The topology the settings describe (`RELANCE_QUEUE_*`).
    pub fn from_settings(settings: &relance_config::Settings) -> Self {
        Self {
            queue_expires: settings.queue_expires,
            queue_type: settings.queue_type,
            delivery_limit: settings.queue_delivery_limit,
        }
    }
}

/// Work queues and the (exchange, routing key) they are bound to.
pub fn work_queues(names: &Names) -> Vec<(String, String, String)> {
    let mut queues = vec![
        (
            names.invoices_queue(),
            names.inbound_exchange(),
            names::INVOICE_ISSUED.to_string(),
        ),
        // Customer updates share the invoices queue: the scheduler handles both, and an
        // update does not wait behind a backlog of invoices in a queue of its own.
        (
            names.invoices_queue(),
            names.inbound_exchange(),
            names::CUSTOMER_UPDATED.to_string(),
        ),
        // Creditors too: an invoice naming a creditor comes after the creditor's message.
        (
            names.invoices_queue(),
            names.inbound_exchange(),
            names::CREDITOR_UPDATED.to_string(),
        ),
        (
            names.renderer_queue(),
            names.jobs_exchange(),
            names::REMINDER_DUE.to_string(),
        ),
    ];
    // Payments, and what else changes what is owed or pauses the chase: one queue, so that
    // they are applied under the same invoice lock by the same listener.
    for key in names::PAYMENTS_QUEUE_KEYS {
        queues.push((names.payments_queue(), names.inbound_exchange(), key.to_string()));
    }
    // One sender queue per kind: `registered_letter` goes with `letter`.
    for kind in DeliveryChannel::SENDER_KINDS {
        queues.push((
            names.sender_queue(kind),
            names.jobs_exchange(),
            names::reminder_rendered(kind),
        ));
    }
    queues
}

/// The exchange a work queue takes its messages from: where a message dead-lettered by its
/// consumer was first published, and so where a replay sends it back.
pub fn exchange_of_queue(names: &Names, queue: &str) -> Option<String> {
    work_queues(names)
        .into_iter()
        .find(|(q, _, _)| q == queue)
        .map(|(_, exchange, _)| exchange)
}

pub(crate) fn durable_queue() -> QueueDeclareOptions {
    // Durable: queued reminders survive a broker restart (messages are published persistent).
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// The arguments every queue of the topology has: its type, and `x-expires` in tests.
pub(crate) fn queue_arguments(options: &TopologyOptions) -> FieldTable {
    let mut args = FieldTable::default();
    if let Some(expires) = options.queue_expires {
        args.insert(
            ShortString::from("x-expires"),
            AMQPValue::LongLongInt(i64::try_from(expires.as_millis()).unwrap_or(i64::MAX)),
        );
    }
    if options.queue_type == QueueType::Quorum {
        args.insert(ShortString::from("x-queue-type"), text("quorum"));
    }
    args
}

/// Quorum queues: the broker's dead-lettering keeps a message until the target queue has
/// confirmed it (`at-least-once`), which RabbitMQ allows only with `reject-publish` overflow
/// (no length limit is set, so nothing is ever rejected for it).
fn at_least_once_dead_lettering(args: &mut FieldTable) {
    args.insert(ShortString::from("x-dead-letter-strategy"), text("at-least-once"));
    args.insert(ShortString::from("x-overflow"), text("reject-publish"));
}

/// A work queue's arguments. Quorum: a message delivered `delivery_limit` times without
/// being settled (the consumer died, or lost its connection, each time it held it) is
/// dead-lettered by the broker, so one message that kills its consumer cannot do so
/// forever. relance's own retries are new publishes through the delay queues and count
/// nothing here. Classic: no arguments, as declared before quorum queues (a declaration
/// must match the existing queue's arguments).
pub fn work_queue_arguments(names: &Names, options: &TopologyOptions) -> FieldTable {
    let mut args = queue_arguments(options);
    if options.queue_type == QueueType::Quorum {
        args.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongLongInt(i64::from(options.delivery_limit)),
        );
        args.insert(
            ShortString::from("x-dead-letter-exchange"),
            text(&names.dead_letter_exchange()),
        );
        at_least_once_dead_lettering(&mut args);
    }
    args
}

/// The arguments of a delay queue of `queue` whose messages wait `wait` (`None`: the former
/// per-message TTL queue) and then return to `queue`.
fn delay_queue_arguments(queue: &str, wait: Option<Duration>, options: &TopologyOptions) -> FieldTable {
    let mut args = queue_arguments(options);
    args.insert(ShortString::from("x-dead-letter-exchange"), text(""));
    args.insert(ShortString::from("x-dead-letter-routing-key"), text(queue));
    if let Some(wait) = wait {
        // The queue's TTL, not the message's: all its messages wait alike, so the head
        // always expires first and no short wait is held behind a long one.
        args.insert(
            ShortString::from("x-message-ttl"),
            AMQPValue::LongLongInt(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
        );
    }
    if options.queue_type == QueueType::Quorum {
        // A retry is never lost between its delay queue and its work queue.
        at_least_once_dead_lettering(&mut args);
    }
    args
}

/// Every queue of the namespace with its arguments and bindings (exchange, routing key), in
/// the order they are declared; what `declare_topology` declares and `relance
/// migrate-queues` converts.
pub fn queue_plan(names: &Names, options: &TopologyOptions) -> Vec<PlannedQueue> {
    let mut plan = vec![PlannedQueue {
        name: names.dead_letter_queue(),
        arguments: queue_arguments(options),
        bindings: vec![(names.dead_letter_exchange(), String::new())],
        returns_to: None,
    }];
    for (queue, exchange, routing_key) in work_queues(names) {
        if let Some(planned) = plan.iter_mut().find(|p| p.name == queue) {
            planned.bindings.push((exchange, routing_key));
            continue;
        }
        plan.push(PlannedQueue {
            name: queue.clone(),
            arguments: work_queue_arguments(names, options),
            bindings: vec![(exchange, routing_key)],
            returns_to: None,
        });
        for (tier, wait) in RETRY_TIERS {
            plan.push(PlannedQueue {
                name: Names::retry_tier_queue(&queue, tier),
                arguments: delay_queue_arguments(&queue, Some(wait), options),
                bindings: Vec::new(),
                returns_to: Some(queue.clone()),
            });
        }
        // The former delay queue, where retries waited with a per-message TTL. Nothing is
        // sent to it any more. Classic: declared as before (same arguments, or the
        // declaration would fail), so that the messages an older relance left there still
        // expire back to the work queue. Quorum: not declared; `relance migrate-queues`
        // moves what it held to the work queue.
        if options.queue_type == QueueType::Classic {
            plan.push(PlannedQueue {
                name: Names::retry_queue(&queue),
                arguments: delay_queue_arguments(&queue, None, options),
                bindings: Vec::new(),
                returns_to: Some(queue.clone()),
            });
        }
    }
    plan
}

/// One queue of the topology.
#[derive(Debug, Clone)]
pub struct PlannedQueue {
    pub name: String,
    pub arguments: FieldTable,
    /// (exchange, routing key) it is bound to.
    pub bindings: Vec<(String, String)>,
    /// A delay queue: the work queue its messages return to.
    pub returns_to: Option<String>,
}

pub async fn declare_topology(
    channel: &Channel,
    names: &Names,
    options: &TopologyOptions,
) -> anyhow::Result<()> {
    declare_exchanges(channel, names).await?;
    for queue in queue_plan(names, options) {
        declare_queue(channel, &queue, options).await?;
    }
    Ok(())
}

/// Declares one planned queue with its bindings.
pub(crate) async fn declare_queue(
    channel: &Channel,
    queue: &PlannedQueue,
    options: &TopologyOptions,
) -> anyhow::Result<()> {
    channel
        .queue_declare(
            queue.name.as_str().into(),
            durable_queue(),
            queue.arguments.clone(),
        )
        .await
        .with_context(|| {
            format!(
                "declaring queue {} as a {} queue (a queue's type cannot change in place: \
                 see `relance migrate-queues`, or set RELANCE_QUEUE_TYPE to the type it has)",
                queue.name,
                options.queue_type.as_str()
            )
        })?;
    for (exchange, routing_key) in &queue.bindings {
        channel
            .queue_bind(
                queue.name.as_str().into(),
                exchange.as_str().into(),
                routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("binding queue {}", queue.name))?;
    }
    Ok(())
}

pub(crate) async fn declare_exchanges(channel: &Channel, names: &Names) -> anyhow::Result<()> {
    // Inbound messages with a routing key nobody handles go to the dead letters, not nowhere.
    let mut inbound_args = FieldTable::default();
    inbound_args.insert(
        ShortString::from("alternate-exchange"),
        AMQPValue::LongString(LongString::from(names.dead_letter_exchange().as_str())),
    );
    for (exchange, kind, args) in [
        (
            names.dead_letter_exchange(),
            ExchangeKind::Fanout,
            FieldTable::default(),
        ),
        (names.inbound_exchange(), ExchangeKind::Topic, inbound_args),
        (
            names.events_exchange(),
            ExchangeKind::Topic,
            FieldTable::default(),
        ),
        (names.jobs_exchange(), ExchangeKind::Direct, FieldTable::default()),
    ] {
        channel
            .exchange_declare(exchange.as_str().into(), kind, durable_exchange(), args)
            .await
            .with_context(|| format!("declaring exchange {exchange}"))?;
    }
    Ok(())
}

/// Deletes every exchange and queue of the namespace (tests clean up after themselves).
pub async fn delete_topology(channel: &Channel, names: &Names) -> anyhow::Result<()> {
    let mut queues = vec![names.dead_letter_queue()];
    for (queue, _, _) in work_queues(names) {
        if !queues.contains(&queue) {
            queues.push(Names::retry_queue(&queue));
            for (tier, _) in RETRY_TIERS {
                queues.push(Names::retry_tier_queue(&queue, tier));
            }
            queues.push(queue);
        }
    }
    for queue in queues {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .with_context(|| format!("deleting queue {queue}"))?;
    }
    for exchange in [
        names.inbound_exchange(),
        names.events_exchange(),
        names.jobs_exchange(),
        names.dead_letter_exchange(),
    ] {
        channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .with_context(|| format!("deleting exchange {exchange}"))?;
    }
    Ok(())
}
