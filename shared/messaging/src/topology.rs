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

#[derive(Debug, Clone, Default)]
pub struct TopologyOptions {
    /// `x-expires` on every queue: the broker deletes queues unused this long (tests).
    pub queue_expires: Option<Duration>,
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

fn durable_queue() -> QueueDeclareOptions {
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

fn queue_arguments(options: &TopologyOptions) -> FieldTable {
    let mut args = FieldTable::default();
    if let Some(expires) = options.queue_expires {
        args.insert(
            ShortString::from("x-expires"),
            AMQPValue::LongLongInt(i64::try_from(expires.as_millis()).unwrap_or(i64::MAX)),
        );
    }
    args
}

pub async fn declare_topology(
    channel: &Channel,
    names: &Names,
    options: &TopologyOptions,
) -> anyhow::Result<()> {
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
    let args = queue_arguments(options);
    channel
        .queue_declare(
            names.dead_letter_queue().as_str().into(),
            durable_queue(),
            args.clone(),
        )
        .await
        .context("declaring the dead-letter queue")?;
    channel
        .queue_bind(
            names.dead_letter_queue().as_str().into(),
            names.dead_letter_exchange().as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("binding the dead-letter queue")?;
    for (queue, exchange, routing_key) in work_queues(names) {
        channel
            .queue_declare(queue.as_str().into(), durable_queue(), args.clone())
            .await
            .with_context(|| format!("declaring queue {queue}"))?;
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("binding queue {queue}"))?;
        declare_delay_queues(channel, &queue, &args).await?;
    }
    Ok(())
}

/// The delay queues in front of a work queue: one per backoff tier, each with a queue-level
/// TTL, and the former single `<queue>.retry`. A message waits in one until its TTL runs out,
/// then the broker dead-letters it back to the work queue through the default exchange.
async fn declare_delay_queues(channel: &Channel, queue: &str, args: &FieldTable) -> anyhow::Result<()> {
    let mut back_to_work = args.clone();
    back_to_work.insert(
        ShortString::from("x-dead-letter-exchange"),
        AMQPValue::LongString(LongString::from("")),
    );
    back_to_work.insert(
        ShortString::from("x-dead-letter-routing-key"),
        AMQPValue::LongString(LongString::from(queue)),
    );
    for (tier, wait) in RETRY_TIERS {
        let mut tier_args = back_to_work.clone();
        // The queue's TTL, not the message's: all its messages wait alike, so the head
        // always expires first and no short wait is held behind a long one.
        tier_args.insert(
            ShortString::from("x-message-ttl"),
            AMQPValue::LongLongInt(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
        );
        let name = Names::retry_tier_queue(queue, tier);
        channel
            .queue_declare(name.as_str().into(), durable_queue(), tier_args)
            .await
            .with_context(|| format!("declaring queue {name}"))?;
    }
    // The former delay queue, where retries waited with a per-message TTL. Nothing is sent
    // to it any more; declared as before (same arguments, or the declaration would fail), so
    // that the messages an older relance left there still expire back to the work queue.
    let legacy = Names::retry_queue(queue);
    channel
        .queue_declare(legacy.as_str().into(), durable_queue(), back_to_work)
        .await
        .with_context(|| format!("declaring queue {legacy}"))?;
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
