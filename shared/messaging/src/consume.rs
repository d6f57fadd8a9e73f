//! Consuming: each delivery is handed to a handler; the ack comes only after the handler
//! returns (its database transaction committed). A permanent error dead-letters the message
//! with the reason in a header; a transient one retries through the delay queue of a backoff
//! tier (exponential backoff with jitter, rounded to a tier) until the retry budget, a
//! duration from the first failure, is spent, then dead-letters. A handler that panics has
//! its message dead-lettered with the panic's message, and consuming goes on. Nothing is
//! requeued in a hot loop and a bad message never blocks its queue.

use crate::publish::Publisher;
use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection};
use relance_contracts::names::{self, Names};
use relance_telemetry::liveness::Heartbeat;
use relance_telemetry::metrics::{self as metric, ReasonClass};
use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
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
    /// without spending its retries (see [`relance_storage::is_unavailable`]); when every
    /// connection of the pool was in use, it is tried again after the shortest wait, its
    /// retries not spent either ([`relance_storage::is_pool_busy`]).
    #[error("transient: {}", relance_telemetry::redact(&format!("{:#}", .0)))]
    Transient(#[from] anyhow::Error),
}

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
    /// When it first failed transiently (header `x-relance-first-failure`); `None` before.
    pub first_failure: Option<DateTime<Utc>>,
    /// When this delivery was taken from the queue (wall clock): the "now" of every retry
    /// decision about it, so that a handler and the consumer decide alike.
    pub received_at: DateTime<Utc>,
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
        first_failure: headers
            .get(names::HEADER_FIRST_FAILURE)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc)),
        received_at: Utc::now(),
        headers,
        body: delivery.data.clone(),
    }
}

/// The backoff tiers: each work queue has one delay queue per tier (`<queue>.retry.<tier>`),
/// whose queue-level TTL is the tier's wait. Every message of a delay queue waits the same
/// time, so the broker, which only expires the message at the head of a queue, never holds
/// a short wait behind a long one.
pub const RETRY_TIERS: [(&str, Duration); 13] = [
    ("100ms", Duration::from_millis(100)),
    ("1s", Duration::from_secs(1)),
    ("5s", Duration::from_secs(5)),
    ("10s", Duration::from_secs(10)),
    ("30s", Duration::from_secs(30)),
    ("1m", Duration::from_secs(60)),
    ("2m", Duration::from_secs(120)),
    ("5m", Duration::from_secs(300)),
    ("15m", Duration::from_secs(900)),
    ("30m", Duration::from_secs(1800)),
    ("1h", Duration::from_secs(3600)),
    ("2h", Duration::from_secs(7200)),
    ("6h", Duration::from_secs(21_600)),
];

/// The tier whose wait is nearest to `wanted` (on a log scale: 4 s is nearer 5 s than 1 s)
/// among those not longer than `longest` (the smallest tier if none is).
pub fn retry_tier(wanted: Duration, longest: Duration) -> (&'static str, Duration) {
    let wanted = wanted.as_secs_f64().max(0.001);
    let distance = |tier: Duration| (tier.as_secs_f64() / wanted).ln().abs();
    RETRY_TIERS
        .iter()
        .filter(|(_, wait)| *wait <= longest)
        .min_by(|a, b| distance(a.1).total_cmp(&distance(b.1)))
        .copied()
        .unwrap_or(RETRY_TIERS[0])
}

/// Longest wait between two attempts of a message held up by a database outage.
pub const OUTAGE_WAIT_CAP: Duration = Duration::from_secs(30);

/// When a message is tried again: through which tier's delay queue, and at what time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextAttempt {
    pub tier: &'static str,
    pub wait: Duration,
    pub at: DateTime<Utc>,
}

/// What becomes of a message whose handler failed transiently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryDecision {
    /// Tried again later.
    Retry(NextAttempt),
    /// Given up: why (the failure itself follows it in the dead-letter reason).
    GiveUp(String),
}

/// Retry policy of a consumer: exponential backoff with jitter, capped at `max_delay`, for
/// as long as `budget` from the first failure (and at most `max_retries` retries).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// The first wait; it doubles at each retry.
    pub base: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// How long after its first transient failure a message is still retried.
    pub budget: Duration,
    /// An additional cap on the count of retries (`RELANCE_MAX_RETRIES`), `None`: none.
    pub max_retries: Option<u32>,
}

impl RetryPolicy {
    /// The policy the settings describe (`RELANCE_RETRY_*`, `RELANCE_MAX_RETRIES`).
    pub fn from_settings(settings: &relance_config::Settings) -> Self {
        Self {
            base: settings.retry_base,
            max_delay: settings.retry_max_delay,
            budget: settings.retry_budget,
            max_retries: (settings.max_retries != relance_config::NO_RETRY_CAP)
                .then_some(settings.max_retries),
        }
    }

    /// Decides, from its headers and the time it was received, what becomes of a message
    /// that just failed transiently. The same message always gets the same decision (the
    /// jitter is drawn from its id), so a handler can tell what the consumer will do with
    /// it (e.g. mark its step deferred until `at`, or failed).
    pub fn after_failure(&self, message: &Incoming) -> RetryDecision {
        let now = message.received_at;
        let first = message.first_failure.unwrap_or(now).min(now);
        let spent = (now - first).to_std().unwrap_or_default();
        if self.max_retries.is_some_and(|cap| message.retries >= cap) {
            return RetryDecision::GiveUp(format!("gave up after {} retries", message.retries));
        }
        if spent >= self.budget {
            return RetryDecision::GiveUp(format!(
                "gave up after {} retries: the retry budget of {} is spent (first failure {})",
                message.retries,
                relance_config::format_duration(self.budget),
                first.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ));
        }
        // The last attempt comes about when the budget ends, not long after it.
        let wanted = self
            .backoff(message, message.retries, self.max_delay)
            .min(self.budget - spent);
        RetryDecision::Retry(next_attempt(now, retry_tier(wanted, self.max_delay)))
    }

    /// When a message held up by a database outage is tried again: a backoff capped at
    /// [`OUTAGE_WAIT_CAP`], which spends neither its retries nor its budget.
    pub fn outage_wait(&self, message: &Incoming) -> NextAttempt {
        let wanted = self.backoff(message, message.outage_waits, OUTAGE_WAIT_CAP);
        next_attempt(message.received_at, retry_tier(wanted, OUTAGE_WAIT_CAP))
    }

    /// base * 2^n plus up to 25% jitter (drawn from the message's id and `n`, so that
    /// retries of many messages do not stampede), capped at `cap`.
    fn backoff(&self, message: &Incoming, n: u32, cap: Duration) -> Duration {
        let exp = self.base.saturating_mul(2u32.saturating_pow(n.min(20)));
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        match &message.message_id {
            Some(id) => id.hash(&mut hasher),
            None => message.body.hash(&mut hasher),
        }
        n.hash(&mut hasher);
        let jitter = (hasher.finish() % 1000) as f64 / 4000.0;
        exp.mul_f64(1.0 + jitter).min(cap)
    }
}

fn next_attempt(now: DateTime<Utc>, (tier, wait): (&'static str, Duration)) -> NextAttempt {
    NextAttempt {
        tier,
        wait,
        at: now + chrono::Duration::from_std(wait).unwrap_or_default(),
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
            // Recorded once by whoever drains the dead-letter queue (`dead_letters::drain`).
            (
                names::HEADER_DEAD_LETTER_ID,
                AMQPValue::LongString(LongString::from(uuid::Uuid::new_v4().to_string())),
            ),
            (
                names::HEADER_DEAD_LETTERED_AT,
                AMQPValue::LongString(LongString::from(
                    message
                        .received_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                )),
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

/// Sends a message to the delay queue of the attempt's tier; its TTL sends it back to the
/// work queue. `first_failure` is stamped on the message the first time it fails.
async fn schedule_retry(
    publisher: &Publisher,
    message: &Incoming,
    delivery: &Delivery,
    (retry, outage_waits): (u32, u32),
    first_failure: Option<DateTime<Utc>>,
    next: &NextAttempt,
) -> anyhow::Result<()> {
    let queue = message.queue.as_str();
    let mut headers = vec![
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
    ];
    if let Some(first) = first_failure {
        headers.push((
            names::HEADER_FIRST_FAILURE,
            AMQPValue::LongString(LongString::from(
                first.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )),
        ));
    }
    let props = with_headers(&delivery.properties, &headers);
    let delay_queue = Names::retry_tier_queue(queue, next.tier);
    publisher
        .publish("", &delay_queue, &delivery.data, props, true)
        .await
        .with_context(|| format!("scheduling a retry through {delay_queue}"))
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
    let queue = queue_label(names, &message.queue);
    match outcome {
        Ok(()) => {}
        Err(HandlerError::Permanent(reason)) => {
            let class = if reason.starts_with(PANIC_REASON) {
                ReasonClass::Panic
            } else {
                ReasonClass::Permanent
            };
            metric::record_dead_lettered(queue, class);
            tracing::warn!(queue = %message.queue, message_id = ?message.message_id, reason = relance_telemetry::redact(&reason), "dead-lettering message");
            dead_letter(publisher, names, message, delivery, &reason).await?;
        }
        // The database answers but every connection was busy: tried again soon (the
        // shortest wait), without spending a retry, and not reported as an outage.
        Err(HandlerError::Transient(error)) if relance_storage::is_pool_busy(&error) => {
            let next = retry.outage_wait(&Incoming {
                outage_waits: 0,
                ..message.clone()
            });
            metric::record_retried(queue, ReasonClass::PoolBusy);
            tracing::warn!(queue = %message.queue, message_id = ?message.message_id, tier = next.tier, error = relance_telemetry::redact(&format!("{error:#}")), "no database connection free; the message is tried again soon");
            let counts = (message.retries, message.outage_waits);
            schedule_retry(publisher, message, delivery, counts, None, &next).await?;
        }
        Err(HandlerError::Transient(error)) if relance_storage::is_unavailable(&error) => {
            let next = retry.outage_wait(message);
            metric::record_retried(queue, ReasonClass::DatabaseUnavailable);
            tracing::warn!(queue = %message.queue, message_id = ?message.message_id, tier = next.tier, error = relance_telemetry::redact(&format!("{error:#}")), "database unavailable; the message waits");
            let counts = (message.retries, message.outage_waits.saturating_add(1));
            schedule_retry(publisher, message, delivery, counts, None, &next).await?;
        }
        Err(HandlerError::Transient(error)) => match retry.after_failure(message) {
            RetryDecision::Retry(next) => {
                metric::record_retried(queue, ReasonClass::Transient);
                tracing::warn!(queue = %message.queue, message_id = ?message.message_id, retry = message.retries + 1, tier = next.tier, error = relance_telemetry::redact(&format!("{error:#}")), "retrying message later");
                let counts = (message.retries + 1, message.outage_waits);
                let first = message.first_failure.unwrap_or(message.received_at);
                schedule_retry(publisher, message, delivery, counts, Some(first), &next).await?;
            }
            RetryDecision::GiveUp(why) => {
                metric::record_dead_lettered(queue, ReasonClass::RetriesExhausted);
                let reason = format!("{why}: {error:#}");
                tracing::error!(queue = %message.queue, message_id = ?message.message_id, reason = relance_telemetry::redact(&reason), "dead-lettering message");
                dead_letter(publisher, names, message, delivery, &reason).await?;
            }
        },
    }
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .context("acking a message")?;
    Ok(())
}

/// Runs the handler on one message; a panic becomes a permanent failure whose reason is the
/// panic's message, so the message is dead-lettered rather than left unacknowledged.
async fn run_handler<H, F>(handler: &H, message: Incoming) -> Result<(), HandlerError>
where
    H: Fn(Incoming) -> F,
    F: Future<Output = Result<(), HandlerError>>,
{
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(message))) {
        Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
        Err(payload) => Err(payload),
    };
    outcome.unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        tracing::error!(panic = relance_telemetry::redact(&what), "the handler panicked");
        Err(HandlerError::Permanent(format!("{PANIC_REASON}: {what}")))
    })
}

/// A handler's failure as the `error.type` of its consumer span.
fn error_class(error: &HandlerError) -> &'static str {
    match error {
        HandlerError::Permanent(reason) if reason.starts_with(PANIC_REASON) => "panic",
        HandlerError::Permanent(_) => "permanent",
        HandlerError::Transient(_) => "transient",
    }
}

/// The dead-letter reason of a message whose handler panicked starts with this.
const PANIC_REASON: &str = "handler panicked";

/// How often an idle consumer (waiting for messages, with room for more) reports that it
/// is alive.
const IDLE_HEARTBEAT: Duration = Duration::from_secs(1);

/// A queue's name without the namespace (`sender.email`), as metrics label it: bounded,
/// and the same for every copy and namespace.
pub fn queue_label<'a>(names: &Names, queue: &'a str) -> &'a str {
    queue
        .strip_prefix(names.namespace.as_str())
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(queue)
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
    let heartbeat = Heartbeat::unwatched(queue);
    consume_watched(
        connection, names, queue, prefetch, retry, handler, shutdown, heartbeat,
    )
    .await
}

/// [`consume`], reporting on `heartbeat` each message settled, and every few seconds while
/// idle with room for more messages: a consumer whose handlers all hang stops beating.
#[allow(clippy::too_many_arguments)]
pub async fn consume_watched<H, F>(
    connection: &Connection,
    names: &Names,
    queue: &str,
    prefetch: u16,
    retry: RetryPolicy,
    handler: H,
    shutdown: CancellationToken,
    heartbeat: Heartbeat,
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
    let mut idle = tokio::time::interval(IDLE_HEARTBEAT);
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            _ = idle.tick() => {
                if slots.available_permits() > 0 {
                    heartbeat.beat();
                }
                continue;
            }
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
        let span = crate::spans::process_span(queue, &message.routing_key, message.message_id.as_deref());
        relance_telemetry::link_to_parent(&span, &message.headers);
        let process = span.clone();
        let (handler, publisher, names, retry, heartbeat) = (
            handler.clone(),
            publisher.clone(),
            names.clone(),
            retry.clone(),
            heartbeat.clone(),
        );
        in_flight.spawn(
            async move {
                let started = std::time::Instant::now();
                let outcome = run_handler(handler.as_ref(), message.clone()).await;
                if let Err(e) = &outcome {
                    crate::spans::record_error(&process, error_class(e));
                }
                metric::record_consumed(queue_label(&names, &message.queue), started.elapsed());
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
                heartbeat.beat();
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
    use super::*;

    fn failed(retries: u32, first_failure_ago: Option<Duration>) -> Incoming {
        let now = Utc::now();
        Incoming {
            queue: "q".into(),
            routing_key: "k".into(),
            message_id: Some(uuid::Uuid::new_v4().to_string()),
            redelivered: false,
            retries,
            outage_waits: 0,
            first_failure: first_failure_ago.map(|ago| now - chrono::Duration::from_std(ago).unwrap()),
            received_at: now,
            headers: BTreeMap::new(),
            body: b"{}".to_vec(),
        }
    }

    fn policy(max_retries: Option<u32>) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(3600),
            budget: Duration::from_secs(86_400),
            max_retries,
        }
    }

    fn tier_of(decision: RetryDecision) -> &'static str {
        match decision {
            RetryDecision::Retry(next) => next.tier,
            RetryDecision::GiveUp(why) => panic!("gave up: {why}"),
        }
    }

    #[test]
    fn a_backoff_is_rounded_to_the_nearest_tier_not_past_the_longest_wait() {
        let s = Duration::from_secs;
        assert_eq!(retry_tier(Duration::from_millis(200), s(3600)).0, "100ms");
        assert_eq!(retry_tier(s(1), s(3600)).0, "1s");
        assert_eq!(retry_tier(Duration::from_millis(1250), s(3600)).0, "1s");
        assert_eq!(retry_tier(s(4), s(3600)).0, "5s");
        assert_eq!(retry_tier(s(16), s(30)).0, "10s");
        assert_eq!(retry_tier(s(24), s(30)).0, "30s");
        assert_eq!(retry_tier(s(300), s(3600)).0, "5m");
        assert_eq!(retry_tier(s(5 * 3600), s(3600)).0, "1h", "never past the cap");
        assert_eq!(
            retry_tier(s(5), Duration::from_millis(10)).0,
            "100ms",
            "the smallest at least"
        );
    }

    #[test]
    fn retries_back_off_exponentially_within_the_budget_then_give_up_naming_it() {
        let p = policy(None);
        let hour = Duration::from_secs(3600);
        for n in 0..14 {
            // 1 s doubling plus up to 25 % jitter, capped at an hour, rounded to a tier.
            let exp = Duration::from_secs(1 << n).min(hour);
            let allowed = [
                retry_tier(exp, hour).0,
                retry_tier(exp.mul_f64(1.25).min(hour), hour).0,
            ];
            let tier = tier_of(p.after_failure(&failed(n, Some(Duration::from_secs(60)))));
            assert!(
                allowed.contains(&tier),
                "retry {n}: {tier}, expected one of {allowed:?}"
            );
        }
        assert_eq!(
            tier_of(p.after_failure(&failed(0, None))),
            "1s",
            "the first failure"
        );
        // Many more failures than RELANCE_MAX_RETRIES ever allowed, still within the day.
        assert_eq!(
            tier_of(p.after_failure(&failed(40, Some(Duration::from_secs(20 * 3600))))),
            "1h"
        );
        // The last attempt comes when the budget ends, not an hour after it.
        assert_eq!(
            tier_of(p.after_failure(&failed(40, Some(Duration::from_secs(86_400 - 40))))),
            "30s"
        );
        let RetryDecision::GiveUp(why) = p.after_failure(&failed(41, Some(Duration::from_secs(86_401))))
        else {
            panic!("a spent budget retried")
        };
        assert!(
            why.contains("retry budget of 1d is spent") && why.contains("41 retries"),
            "{why}"
        );
    }

    #[test]
    fn a_retry_cap_when_set_still_gives_up_after_that_many_retries() {
        let p = policy(Some(3));
        assert_eq!(
            tier_of(p.after_failure(&failed(2, Some(Duration::from_secs(5))))),
            "5s"
        );
        assert_eq!(
            p.after_failure(&failed(3, Some(Duration::from_secs(5)))),
            RetryDecision::GiveUp("gave up after 3 retries".into())
        );
    }

    #[test]
    fn a_decision_is_the_same_each_time_it_is_asked_and_jitter_spreads_messages() {
        let p = policy(None);
        let message = failed(3, Some(Duration::from_secs(60)));
        assert_eq!(p.after_failure(&message), p.after_failure(&message));
        let RetryDecision::Retry(next) = p.after_failure(&message) else {
            panic!()
        };
        assert_eq!(
            next.at,
            message.received_at + chrono::Duration::from_std(next.wait).unwrap()
        );
        // 8 s plus up to 25 % of jitter, different for each message.
        let waits: std::collections::BTreeSet<_> = (0..50)
            .map(|_| p.backoff(&failed(3, None), 3, Duration::from_secs(3600)))
            .collect();
        assert!(waits.len() > 40, "{waits:?}");
        assert!(waits
            .iter()
            .all(|w| *w >= Duration::from_secs(8) && *w <= Duration::from_secs(10)));
    }

    #[test]
    fn an_outage_wait_is_capped_at_thirty_seconds_and_spends_no_budget() {
        let p = policy(Some(1));
        let mut message = failed(1, Some(Duration::from_secs(2 * 86_400)));
        for n in 0..8 {
            message.outage_waits = n;
            let exp = Duration::from_secs(1 << n).min(OUTAGE_WAIT_CAP);
            let allowed = [
                retry_tier(exp, OUTAGE_WAIT_CAP).0,
                retry_tier(exp.mul_f64(1.25).min(OUTAGE_WAIT_CAP), OUTAGE_WAIT_CAP).0,
            ];
            let next = p.outage_wait(&message);
            assert!(
                allowed.contains(&next.tier),
                "wait {n}: {}, expected one of {allowed:?}",
                next.tier
            );
            assert!(next.wait <= OUTAGE_WAIT_CAP);
        }
        message.outage_waits = 30;
        assert_eq!(p.outage_wait(&message).tier, "30s");
    }

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
