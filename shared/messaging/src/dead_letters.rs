//! The dead letters an operator deals with: [`drain`] moves each message of the dead-letter
//! queue into the `dead_letters` table (acked only once its row is committed, recorded once
//! however many drainers run); [`replay`] republishes one to its original exchange and
//! routing key, with publisher confirms, at most once (a guarded status change committed
//! only after the broker's confirm) and journaled; [`discard`] sets one aside, keeping its
//! record. The `relance dead-letters` command and the console's page both call these. This
//! module decides nothing about a message's content: it carries it back as it was.

use crate::publish::Publisher;
use crate::topology::exchange_of_queue;
use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection};
use relance_contracts::names::{self, Names};
use relance_domain::Clock;
use relance_storage::dead_letters::{self as store, DeadLetter, DeadLetterStatus, NewDeadLetter};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

pub use relance_storage::dead_letters::{get, list, Filter};

/// Takes every message now on the dead-letter queue into the `dead_letters` table. Each is
/// acked once its row is committed; a message already recorded (redelivered after a crash,
/// or drained concurrently) is acked without a second row. Returns how many rows it added.
pub async fn drain(
    db: &PgPool,
    connection: &Connection,
    names: &Names,
    clock: &dyn Clock,
) -> anyhow::Result<u64> {
    let channel = connection
        .create_channel()
        .await
        .context("opening a channel to drain the dead letters")?;
    let queue = names.dead_letter_queue();
    let mut added = 0;
    let outcome = async {
        while let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .with_context(|| format!("taking a message from {queue}"))?
        {
            let delivery = message.delivery;
            let now = clock.now();
            let letter = record_of(names, &delivery, now);
            let mut conn = db
                .acquire()
                .await
                .context("a connection to record a dead letter")?;
            if store::record(&mut conn, &letter, now).await?.is_some() {
                added += 1;
            }
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .context("acking a recorded dead letter")?;
        }
        anyhow::Ok(())
    }
    .await;
    let _ = channel.close(200, "drained".into()).await;
    outcome.map(|()| added)
}

/// The record of a message taken off the dead-letter queue.
pub fn record_of(names: &Names, delivery: &Delivery, now: DateTime<Utc>) -> NewDeadLetter {
    let table = delivery.properties.headers().clone().unwrap_or_default();
    let text = |key: &str| {
        table.inner().get(key).and_then(|v| match v {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
            _ => None,
        })
    };
    let routing_key = delivery.routing_key.as_str().to_string();
    let queue = text(names::HEADER_DEAD_LETTER_QUEUE);
    let arrived_through = delivery.exchange.as_str().to_string();
    // Dead-lettered by a consumer: its queue says where it came from. Without that header it
    // reached the dead letters as the inbound exchange's alternate: no queue was bound for
    // its key, and the delivery still names the exchange it was published to.
    let exchange = match &queue {
        Some(queue) => exchange_of_queue(names, queue).unwrap_or_default(),
        None if arrived_through != names.dead_letter_exchange() => arrived_through,
        None => String::new(),
    };
    let reason = text(names::HEADER_DEAD_LETTER_REASON)
        .unwrap_or_else(|| format!("unroutable: no queue is bound for {routing_key:?} on {exchange:?}"));
    let headers = table_to_json(&table);
    let properties = properties_to_json(&delivery.properties);
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_string());
    // Dead-lettered by a consumer: the id it gave. Otherwise (unroutable) the content's hash
    // and a fresh id: two identical messages are two records; one redelivered (the drainer
    // stopped between commit and ack) is not recorded again if its content already was.
    let (delivery_key, recorded_under) = match text(names::HEADER_DEAD_LETTER_ID) {
        Some(id) => (id, None),
        None => {
            let prefix = format!(
                "sha256:{}:",
                content_hash(&exchange, &routing_key, &message_id, &headers, &delivery.data)
            );
            (
                format!("{prefix}{}", uuid::Uuid::new_v4()),
                delivery.redelivered.then_some(prefix),
            )
        }
    };
    NewDeadLetter {
        delivery_key,
        recorded_under,
        queue,
        exchange,
        routing_key,
        reason,
        message_id,
        properties,
        headers,
        body: delivery.data.clone(),
        dead_lettered_at: text(names::HEADER_DEAD_LETTERED_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now),
        replay_of: text(names::HEADER_REPLAY_OF).and_then(|id| id.parse().ok()),
    }
}

fn content_hash(
    exchange: &str,
    routing_key: &str,
    message_id: &Option<String>,
    headers: &Value,
    body: &[u8],
) -> String {
    let mut hash = Sha256::new();
    for part in [
        exchange.as_bytes(),
        routing_key.as_bytes(),
        message_id.as_deref().unwrap_or_default().as_bytes(),
        headers.to_string().as_bytes(),
        body,
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hex::encode(hash.finalize())
}

/// What became of a replay.
#[derive(Debug, Clone)]
pub enum Replay {
    /// Published once, confirmed by the broker, marked replayed and journaled.
    Replayed(Box<DeadLetter>),
    /// Not pending: already replayed (by this or another operator) or discarded.
    NotPending(i64, DeadLetterStatus),
    NotFound(i64),
}

/// Republishes dead letter `id` to its original exchange and routing key, with its body,
/// properties and headers minus the death bookkeeping. The row is marked replayed in a
/// transaction committed only after the broker's confirm: a concurrent replay waits on the
/// row and finds it replayed, so the message is published once; a failed publish leaves it
/// pending.
pub async fn replay(
    db: &PgPool,
    publisher: &Publisher,
    id: i64,
    clock: &dyn Clock,
) -> anyhow::Result<Replay> {
    let now = clock.now();
    let mut tx = db.begin().await.context("starting a replay")?;
    let Some(letter) = store::mark_replayed(&mut tx, id, now).await? else {
        drop(tx);
        return Ok(match store::get(db, id).await? {
            Some(letter) => Replay::NotPending(id, letter.status),
            None => Replay::NotFound(id),
        });
    };
    if letter.exchange.is_empty() {
        return Err(anyhow!(
            "dead letter {id} came from queue {:?}, whose exchange is unknown: it cannot be replayed",
            letter.queue
        ));
    }
    let properties = replay_properties(&letter.properties, &letter.headers, id);
    publisher
        .publish(
            &letter.exchange,
            &letter.routing_key,
            &letter.body,
            properties,
            true,
        )
        .await
        .with_context(|| format!("replaying dead letter {id}"))?;
    relance_storage::journal::append_unattached(
        &mut tx,
        now,
        store::JOURNAL_REPLAYED,
        store::journal_detail(&letter),
    )
    .await?;
    tx.commit().await.context("committing the replay")?;
    tracing::info!(dead_letter = id, exchange = %letter.exchange, routing_key = %letter.routing_key, "dead letter replayed");
    Ok(Replay::Replayed(Box::new(letter)))
}

/// Replays, oldest first, every pending dead letter whose reason matches `pattern` (`*`
/// matches anything; without `*`, any reason containing it; case-insensitive).
pub async fn replay_matching(
    db: &PgPool,
    publisher: &Publisher,
    pattern: &str,
    clock: &dyn Clock,
) -> anyhow::Result<Vec<Replay>> {
    let mut done = Vec::new();
    for id in store::pending_matching(db, pattern).await? {
        done.push(replay(db, publisher, id, clock).await?);
    }
    Ok(done)
}

/// What became of a discard.
#[derive(Debug, Clone)]
pub enum Discard {
    Discarded(Box<DeadLetter>),
    NotPending(i64, DeadLetterStatus),
    NotFound(i64),
}

/// Sets a pending dead letter aside: its record stays (status `discarded`), journaled.
pub async fn discard(db: &PgPool, id: i64, clock: &dyn Clock) -> anyhow::Result<Discard> {
    if let Some(letter) = store::discard(db, id, clock.now()).await? {
        return Ok(Discard::Discarded(Box::new(letter)));
    }
    Ok(match store::get(db, id).await? {
        Some(letter) => Discard::NotPending(id, letter.status),
        None => Discard::NotFound(id),
    })
}

/// A dead letter's body for a reader (`relance dead-letters show`, the console): its
/// encoding, `json` (pretty-printed), `text` or `base64`, and the text.
pub fn body_view(body: &[u8]) -> (&'static str, String) {
    use base64::Engine;
    match std::str::from_utf8(body) {
        Ok(text) => match serde_json::from_str::<Value>(text) {
            Ok(json) => (
                "json",
                serde_json::to_string_pretty(&json).unwrap_or_else(|_| text.to_string()),
            ),
            Err(_) => ("text", text.to_string()),
        },
        Err(_) => ("base64", base64::engine::general_purpose::STANDARD.encode(body)),
    }
}

/// Headers a replay leaves out: what the broker and relance's consumers added about the
/// message's failures. What remains (trace context, the sender's own headers) goes along.
pub fn is_death_bookkeeping(header: &str) -> bool {
    header == "x-death"
        || header.starts_with("x-first-death-")
        || header.starts_with("x-last-death-")
        || [
            names::HEADER_DEAD_LETTER_REASON,
            names::HEADER_DEAD_LETTER_QUEUE,
            names::HEADER_DEAD_LETTER_ID,
            names::HEADER_DEAD_LETTERED_AT,
            names::HEADER_REPLAY_OF,
            names::HEADER_RETRY_COUNT,
            names::HEADER_OUTAGE_WAITS,
            names::HEADER_FIRST_FAILURE,
            names::HEADER_ROUTING_KEY,
        ]
        .contains(&header)
}

/// The properties of a replay: the original ones, the headers without death bookkeeping,
/// and `x-relance-replay-of` naming the record replayed.
pub fn replay_properties(properties: &Value, headers: &Value, replay_of: i64) -> BasicProperties {
    let mut table = FieldTable::default();
    if let Value::Object(headers) = headers {
        for (k, v) in headers {
            if !is_death_bookkeeping(k) {
                table.insert(ShortString::from(k.as_str()), json_to_amqp(v));
            }
        }
    }
    table.insert(
        ShortString::from(names::HEADER_REPLAY_OF),
        AMQPValue::LongString(LongString::from(replay_of.to_string())),
    );
    let text = |key: &str| properties.get(key).and_then(Value::as_str).map(ShortString::from);
    let mut p = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(table);
    if let Some(v) = text("message_id") {
        p = p.with_message_id(v);
    }
    if let Some(v) = text("correlation_id") {
        p = p.with_correlation_id(v);
    }
    if let Some(v) = text("type") {
        p = p.with_type(v);
    }
    if let Some(v) = text("content_type") {
        p = p.with_content_type(v);
    }
    if let Some(v) = text("content_encoding") {
        p = p.with_content_encoding(v);
    }
    if let Some(v) = text("app_id") {
        p = p.with_app_id(v);
    }
    if let Some(v) = properties.get("timestamp").and_then(Value::as_u64) {
        p = p.with_timestamp(v);
    }
    p
}

/// The AMQP properties kept with a dead letter (those a replay gives back).
fn properties_to_json(p: &BasicProperties) -> Value {
    let text = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().to_string());
    json!({
        "message_id": text(p.message_id()),
        "correlation_id": text(p.correlation_id()),
        "type": text(p.kind()),
        "content_type": text(p.content_type()),
        "content_encoding": text(p.content_encoding()),
        "app_id": text(p.app_id()),
        "timestamp": p.timestamp(),
    })
}

/// AMQP headers as JSON, readable on a page: text as strings, numbers as numbers.
pub fn table_to_json(table: &FieldTable) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), amqp_to_json(v)))
            .collect::<Map<_, _>>(),
    )
}

fn amqp_to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Timestamp(n) => json!(n),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => json!(format!("{d:?}")),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ByteArray(b) => json!(String::from_utf8_lossy(b.as_slice())),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_to_json).collect()),
        AMQPValue::FieldTable(t) => table_to_json(t),
        AMQPValue::Void => Value::Null,
    }
}

fn json_to_amqp(value: &Value) -> AMQPValue {
    match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => AMQPValue::LongLongInt(i),
            (None, Some(f)) => AMQPValue::Double(f),
            (None, None) => AMQPValue::LongString(LongString::from(n.to_string())),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items.iter().map(json_to_amqp).collect::<Vec<_>>(),
        )),
        Value::Object(map) => {
            let mut table = FieldTable::default();
            for (k, v) in map {
                table.insert(ShortString::from(k.as_str()), json_to_amqp(v));
            }
            AMQPValue::FieldTable(table)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_json_body_is_pretty_printed_and_bytes_are_base64() {
        let (kind, text) = body_view(br#"{"a":1}"#);
        assert_eq!((kind, text.as_str()), ("json", "{\n  \"a\": 1\n}"));
        assert_eq!(body_view(b"not json").0, "text");
        assert_eq!(body_view(&[0xff, 0xfe]), ("base64", "//4=".to_string()));
    }

    #[test]
    fn a_replay_keeps_the_senders_headers_and_ids_and_drops_the_death_bookkeeping() {
        let headers = json!({
            "traceparent": "00-abc-def-01",
            "x-relance-reason": "permanent: bad",
            "x-relance-queue": "relance.payments.payments",
            "x-relance-retries": 3,
            "x-relance-dead-letter-id": "u-1",
            "x-relance-replay-of": "4",
            "x-death": [{"count": 1}],
            "x-first-death-queue": "q",
            "x-custom": 7,
        });
        let properties = json!({"message_id": "evt-1", "correlation_id": "evt-1", "type": "payment.received", "timestamp": 12});
        let p = replay_properties(&properties, &headers, 9);
        assert_eq!(p.message_id().as_ref().unwrap().as_str(), "evt-1");
        assert_eq!(p.timestamp(), &Some(12));
        let kept = table_to_json(p.headers().as_ref().unwrap());
        assert_eq!(
            kept,
            json!({"traceparent": "00-abc-def-01", "x-custom": 7, "x-relance-replay-of": "9"})
        );
    }
}
