//! Consuming: each delivery is handed to a handler; the ack comes only after the handler
//! returns (its database transaction committed). A permanent error dead-letters the message
//! with the reason in a header; a transient one retries through the queue's delay queue with
//! exponential backoff and jitter, then dead-letters. Nothing is requeued in a hot loop and
//! a bad message never blocks its queue.

use crate::publish::Publisher;
use anyhow::Context;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection};
use rand::Rng;
use relance_contracts::names::{self, Names};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// What a handler says went wrong. Its `Display` (what logs and spans show) masks personal
/// data; the dead-letter header keeps the full reason for the operator.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The message can never succeed (malformed, invalid): dead-letter it with this reason.
    #[error("permanent: {}", relance_telemetry::redact(.0))]
    Permanent(String),
    /// It may succeed later (database busy, invoice not yet known): retry with backoff.
    /// When the cause is the database being unreachable, the message waits the outage out
    /// without spending its retries (see [`relance_storage::is_unavailable`]).
    #[error("transient: {}", relance_telemetry::redact(&format!("{:#}", .0)))]
    Transient(#[from] anyhow::Error),
}

/// Longest wait between two attempts of a message held up by a database outage.
const OUTAGE_WAIT_CAP: Duration = Duration::from_secs(30);

/// A delivery as handlers see it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub queue: String,
    pub routing_key: String,
    pub message_id: Option<String>,
    pub redelivered: bool,
    pub retries: u32,
    /// Times it already waited out a database outage.
    pub outage_waits: u32,
    /// String-valued headers (the trace context among them).
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Incoming {
    /// Parses the body as JSON of the given type; a failure is permanent.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandlerError> {
        let text = std::str::from_utf8(&self.body).map_err(|e| {
            HandlerError::Permanent(format!("body is not UTF-8 text (JSON must be UTF-8): {e}"))
        })?;
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| HandlerError::Permanent(format!("body is not JSON: {e}")))?;
        match relance_contracts::body_version(&value) {
            Some(v) if v == u64::from(relance_contracts::VERSION_1) => {}
            Some(v) => {
                return Err(HandlerError::Permanent(format!(
                    "unsupported version {v} (this relance reads version 1)"
                )))
            }
            None => return Err(HandlerError::Permanent("missing \"version\" field".into())),
        }
        serde_json::from_value(value)
            .map_err(|e| HandlerError::Permanent(format!("invalid {} message: {e}", self.routing_key)))
    }
}

fn header_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::LongUInt(n) => Some(n.to_string()),
        AMQPValue::ShortInt(n) => Some(n.to_string()),
        AMQPValue::ShortUInt(n) => Some(n.to_string()),
        _ => None,
    }
}

fn incoming(queue: &str, delivery: &Delivery) -> Incoming {
    let headers: BTreeMap<String, String> = delivery
        .properties
        .headers()
        .as_ref()
        .map(|table| {
            table
                .inner()
                .iter()
                .filter_map(|(k, v)| header_text(v).map(|v| (k.as_str().to_string(), v)))
                .collect()
        })
        .unwrap_or_default();
    // A retried message comes back from its delay queue under the queue's name; the header
    // keeps the key it was published with.
    let routing_key = headers
        .get(names::HEADER_ROUTING_KEY)
        .cloned()
        .unwrap_or_else(|| delivery.routing_key.as_str().to_string());
    Incoming {
        queue: queue.to_string(),
        routing_key,
        message_id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_string()),
        redelivered: delivery.redelivered,
        retries: headers
            .get(names::HEADER_RETRY_COUNT)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        outage_waits: headers
            .get(names::HEADER_OUTAGE_WAITS)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        headers,
        body: delivery.data.clone(),
    }
}

/// Retry policy of a consumer.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
}

impl RetryPolicy {
    /// base * 2^n, capped at one hour, with up to 25% jitter so retries do not stampede.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_capped(retry, Duration::from_secs(3600))
    }

    fn delay_capped(&self, retry: u32, cap: Duration) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(retry.min(20)))
            .min(cap);
        let jitter = rand::rng().random_range(0..=exp.as_millis() as u64 / 4 + 1);
        exp + Duration::from_millis(jitter)
    }
}

/// Copies a delivery's properties with extra headers.
fn with_headers(properties: &BasicProperties, extra: &[(&str, AMQPValue)]) -> BasicProperties {
    let mut table = properties.headers().clone().unwrap_or_default();
    for (k, v) in extra {
        table.insert(ShortString::from(*k), v.clone());
    }
    properties.clone().with_headers(table)
}

async fn dead_letter(
    publisher: &Publisher,
    names: &Names,
    message: &Incoming,
    delivery: &Delivery,
    reason: &str,
) -> anyhow::Result<()> {
    let queue = message.queue.as_str();
    let props = with_headers(
        &delivery.properties,
        &[
            (
                names::HEADER_DEAD_LETTER_REASON,
                AMQPValue::LongString(LongString::from(reason)),
            ),
            (
                names::HEADER_DEAD_LETTER_QUEUE,
                AMQPValue::LongString(LongString::from(queue)),
            ),
        ],
    );
    publisher
        .publish(
            &names.dead_letter_exchange(),
            // The original key, so the message can be replayed as it is.
            &message.routing_key,
            &delivery.data,
            props,
            true,
        )
        .await
        .context("dead-lettering a message")
}

async fn schedule_retry(
    publisher: &Publisher,
    message: &Incoming,
    delivery: &Delivery,
    (retry, outage_waits): (u32, u32),
    delay: Duration,
) -> anyhow::Result<()> {
    let queue = message.queue.as_str();
    let props = with_headers(
        &delivery.properties,
        &[
            (
                names::HEADER_RETRY_COUNT,
                AMQPValue::LongLongInt(i64::from(retry)),
            ),
            (
                names::HEADER_OUTAGE_WAITS,
                AMQPValue::LongLongInt(i64::from(outage_waits)),
            ),
            (
                names::HEADER_ROUTING_KEY,
                AMQPValue::LongString(LongString::from(message.routing_key.as_str())),
            ),
        ],
    )
    .with_expiration(ShortString::from(delay.as_millis().to_string()));
    publisher
        .publish("", &Names::retry_queue(queue), &delivery.data, props, true)
        .await
        .context("scheduling a retry")
}

/// Settles one delivery according to the handler's outcome.
async fn settle(
    outcome: Result<(), HandlerError>,
    delivery: &Delivery,
    message: &Incoming,
    publisher: &Publisher,
    names: &Names,
    retry: &RetryPolicy,
) -> anyhow::Result<()> {
    match outcome {
        Ok(()) => {}
        Err(HandlerError::Permanent(reason)) => {
            tracing::warn!(queue = %message.queue, message_id = ?message.message_id, reason = relance_telemetry::redact(&reason), "dead-lettering message");
            dead_letter(publisher, names, message, delivery, &reason).await?;
        }
        Err(HandlerError::Transient(error)) if relance_storage::is_unavailable(&error) => {
            let delay = retry.delay_capped(message.outage_waits, OUTAGE_WAIT_CAP);
            tracing::warn!(queue = %message.queue, message_id = ?message.message_id, ?delay, error = relance_telemetry::redact(&format!("{error:#}")), "database unavailable; the message waits");
            let counts = (message.retries, message.outage_waits.saturating_add(1));
            schedule_retry(publisher, message, delivery, counts, delay).await?;
        }
        Err(HandlerError::Transient(error)) if message.retries < retry.max_retries => {
            let delay = retry.delay(message.retries);
            tracing::warn!(queue = %message.queue, message_id = ?message.message_id, retry = message.retries + 1, ?delay, error = relance_telemetry::redact(&format!("{error:#}")), "retrying message later");
            let counts = (message.retries + 1, message.outage_waits);
            schedule_retry(publisher, message, delivery, counts, delay).await?;
        }
        Err(HandlerError::Transient(error)) => {
            let reason = format!("gave up after {} retries: {error:#}", message.retries);
            tracing::error!(queue = %message.queue, message_id = ?message.message_id, reason = relance_telemetry::redact(&reason), "dead-lettering message");
            dead_letter(publisher, names, message, delivery, &reason).await?;
        }
    }
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .context("acking a message")?;
    Ok(())
}

/// Consumes `queue` until shutdown, running up to `prefetch` handlers at once. Returns an
/// error when the connection is lost, after in-flight handlers finished; the caller
/// reconnects.
#[allow(clippy::too_many_arguments)]
pub async fn consume<H, F>(
    connection: &Connection,
    names: &Names,
    queue: &str,
    prefetch: u16,
    retry: RetryPolicy,
    handler: H,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    H: Fn(Incoming) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    let channel = connection
        .create_channel()
        .await
        .context("opening a consuming channel")?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .context("setting the prefetch")?;
    let publisher = Publisher::open(connection).await?;
    let tag = format!("{queue}-{}", uuid::Uuid::new_v4());
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("consuming {queue}"))?;
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(usize::from(prefetch)));
    let in_flight = TaskTracker::new();
    let result = loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => next,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => break Err(anyhow::Error::new(e).context(format!("consumer of {queue} failed"))),
            None => break Err(anyhow::anyhow!("consumer of {queue} was cancelled by the broker")),
        };
        let permit = match slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => break Ok(()),
        };
        let message = incoming(queue, &delivery);
        let span = tracing::info_span!("consume", queue = %queue, routing_key = %message.routing_key, message_id = ?message.message_id);
        relance_telemetry::link_to_parent(&span, &message.headers);
        let (handler, publisher, names, retry) =
            (handler.clone(), publisher.clone(), names.clone(), retry.clone());
        in_flight.spawn(
            async move {
                let outcome = handler(message.clone()).await;
                if let Err(e) = settle(outcome, &delivery, &message, &publisher, &names, &retry).await {
                    // Unacked, the broker redelivers it; handlers are idempotent.
                    tracing::error!(
                        error = format!("{e:#}"),
                        "could not settle a message; it will be redelivered"
                    );
                    let _ = delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        })
                        .await;
                }
                drop(permit);
            }
            .instrument(span),
        );
    };
    let _ = channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await;
    in_flight.close();
    in_flight.wait().await;
    publisher.close().await;
    let _ = channel.close(200, "shutdown".into()).await;
    result
}

#[cfg(test)]
mod tests {
    use super::HandlerError;

    #[test]
    fn what_logs_and_spans_show_of_an_error_holds_no_address() {
        let permanent = HandlerError::Permanent(
            "invoice.customer.email: \"jeanne.martin@acme\" is not valid; cc jeanne@acme.fr".into(),
        );
        assert!(!permanent.to_string().contains("jeanne@acme.fr"), "{permanent}");
        let transient = HandlerError::Transient(
            anyhow::anyhow!("450 4.2.1 <compta@acme.test>: mailbox busy").context("SMTP delivery failed"),
        );
        let shown = transient.to_string();
        assert!(
            shown.contains("SMTP delivery failed") && shown.contains("mailbox busy"),
            "{shown}"
        );
        assert!(!shown.contains("compta@acme.test"), "{shown}");
    }
}
