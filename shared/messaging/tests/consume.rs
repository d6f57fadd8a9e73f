//! The consumer against the real broker (RabbitMQ at 127.0.0.1:5672, or
//! `RELANCE_TEST_AMQP_URL`), each test in a namespace of its own: retries wait in their own
//! backoff tier, a retry budget is a time, and a panicking handler stops nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use relance_contracts::names::{self, Names};
use relance_messaging::{
    consume, declare_topology, delete_topology, HandlerError, Incoming, Publisher, RetryPolicy,
    TopologyOptions, RETRY_TIERS,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);

/// One handler call: the body, when, and the message's retry headers.
#[derive(Debug, Clone)]
struct Call {
    body: String,
    at: Instant,
    retries: u32,
    first_failure: Option<String>,
}

type Calls = Arc<Mutex<Vec<Call>>>;

struct Broker {
    connection: Arc<Connection>,
    names: Names,
    queue: String,
    publisher: Publisher,
    shutdown: CancellationToken,
    consumer: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    calls: Calls,
}

impl Broker {
    /// A fresh namespace with its topology; the consumer of its payments queue runs `handler`.
    async fn start<H, F>(retry: RetryPolicy, prefetch: u16, handler: H) -> Self
    where
        H: Fn(Incoming) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let url = std::env::var("RELANCE_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        let connection = Arc::new(
            Connection::connect(&url, ConnectionProperties::default())
                .await
                .expect("RabbitMQ must run at 127.0.0.1:5672"),
        );
        let names = Names::new(format!("relance-msgtest-{}", uuid::Uuid::new_v4().simple()));
        let channel = connection.create_channel().await.unwrap();
        let options = TopologyOptions {
            queue_expires: Some(Duration::from_secs(600)),
            ..Default::default()
        };
        declare_topology(&channel, &names, &options).await.unwrap();
        let _ = channel.close(200, "declared".into()).await;
        let queue = names.payments_queue();
        let calls: Calls = Arc::default();
        let recorded = calls.clone();
        let handler = Arc::new(handler);
        let recording = move |message: Incoming| {
            recorded.lock().unwrap().push(Call {
                body: String::from_utf8_lossy(&message.body).into_owned(),
                at: Instant::now(),
                retries: message.retries,
                first_failure: message.headers.get(names::HEADER_FIRST_FAILURE).cloned(),
            });
            handler(message)
        };
        let shutdown = CancellationToken::new();
        let consumer = {
            let (connection, names, queue, shutdown) =
                (connection.clone(), names.clone(), queue.clone(), shutdown.clone());
            tokio::spawn(async move {
                consume(&connection, &names, &queue, prefetch, retry, recording, shutdown).await
            })
        };
        let publisher = Publisher::open(&connection).await.unwrap();
        Self {
            connection,
            names,
            queue,
            publisher,
            shutdown,
            consumer: Some(consumer),
            calls,
        }
    }

    async fn publish(&self, body: &str, headers: &[(&str, AMQPValue)]) {
        let mut table = FieldTable::default();
        for (k, v) in headers {
            table.insert(ShortString::from(*k), v.clone());
        }
        let props = BasicProperties::default()
            .with_message_id(ShortString::from(uuid::Uuid::new_v4().to_string()))
            .with_type(ShortString::from(names::PAYMENT_RECEIVED))
            .with_delivery_mode(2)
            .with_headers(table);
        self.publisher
            .publish("", &self.queue, body.as_bytes(), props, true)
            .await
            .unwrap();
    }

    fn calls(&self, body: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.body == body)
            .cloned()
            .collect()
    }

    /// Polls until `body` has been handled `n` times.
    async fn wait_calls(&self, body: &str, n: usize, deadline: Duration) -> Vec<Call> {
        let start = Instant::now();
        loop {
            let calls = self.calls(body);
            if calls.len() >= n {
                return calls;
            }
            assert!(
                start.elapsed() < deadline,
                "{body:?} handled {} times in {deadline:?}, expected {n}",
                calls.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn message_count(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.unwrap();
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = channel.close(200, "counted".into()).await;
        declared.message_count()
    }

    /// Messages waiting in any delay queue of the work queue (the former one is not
    /// declared with quorum queues, and nothing is sent to it).
    async fn waiting_for_retry(&self) -> u32 {
        let mut total = 0;
        for (tier, _) in RETRY_TIERS {
            total += self
                .message_count(&Names::retry_tier_queue(&self.queue, tier))
                .await;
        }
        total
    }

    /// Polls the dead-letter queue until it holds a message; returns its body and headers.
    async fn dead_letter(&self) -> (String, FieldTable) {
        let channel = self.connection.create_channel().await.unwrap();
        let start = Instant::now();
        loop {
            let got = channel
                .basic_get(
                    self.names.dead_letter_queue().as_str().into(),
                    BasicGetOptions::default(),
                )
                .await
                .unwrap();
            if let Some(message) = got {
                message
                    .delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .unwrap();
                let headers = message.delivery.properties.headers().clone().unwrap_or_default();
                let _ = channel.close(200, "read".into()).await;
                return (
                    String::from_utf8_lossy(&message.delivery.data).into_owned(),
                    headers,
                );
            }
            assert!(start.elapsed() < DEADLINE, "no dead letter within {DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(consumer) = self.consumer.take() {
            let _ = consumer.await;
        }
        let channel = self.connection.create_channel().await.unwrap();
        let _ = delete_topology(&channel, &self.names).await;
        self.publisher.close().await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

fn header(headers: &FieldTable, key: &str) -> String {
    match headers.inner().get(key) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("header {key}: {other:?}"),
    }
}

fn transient(what: &str) -> HandlerError {
    HandlerError::Transient(anyhow::anyhow!("{what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_retry_is_not_held_behind_a_five_minute_one() {
    let policy = RetryPolicy {
        base: Duration::from_secs(1),
        max_delay: Duration::from_secs(3600),
        budget: Duration::from_secs(86_400),
        max_retries: None,
    };
    // "slow" fails for good (it has failed 8 times already: its next wait is 2^8 s, the 5
    // minute tier); "quick" fails once, then goes through.
    let broker = Broker::start(policy, 4, |message: Incoming| async move {
        match (message.body.as_slice(), message.retries) {
            (b"quick", 0) | (b"slow", _) => Err(transient("mail server busy (421)")),
            _ => Ok(()),
        }
    })
    .await;
    broker
        .publish("slow", &[(names::HEADER_RETRY_COUNT, AMQPValue::LongLongInt(8))])
        .await;
    broker.wait_calls("slow", 1, DEADLINE).await;
    let start = Instant::now();
    while broker.waiting_for_retry().await == 0 {
        assert!(
            start.elapsed() < DEADLINE,
            "the slow message's retry was never scheduled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The quick message's retry is scheduled after the slow one's, yet comes back first.
    broker.publish("quick", &[]).await;
    let quick = broker.wait_calls("quick", 2, Duration::from_secs(20)).await;
    let waited = quick[1].at - quick[0].at;
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "the 1 s retry came back after {waited:?}"
    );
    assert_eq!(quick[1].retries, 1);
    assert_eq!(
        broker.calls("slow").len(),
        1,
        "the slow one still waits its 5 minutes"
    );
    assert_eq!(
        broker
            .message_count(&Names::retry_tier_queue(&broker.queue, "5m"))
            .await,
        1,
        "it waits in the 5 minute tier"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_that_outlasts_many_attempts_but_not_the_budget_still_succeeds() {
    let policy = RetryPolicy {
        base: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        budget: Duration::from_secs(60),
        max_retries: None,
    };
    // Seven failures: more than the five retries relance used to allow.
    let broker = Broker::start(policy, 4, |message: Incoming| async move {
        if message.retries < 7 {
            Err(transient("connection refused"))
        } else {
            Ok(())
        }
    })
    .await;
    broker.publish("payment", &[]).await;
    let calls = broker.wait_calls("payment", 8, DEADLINE).await;
    assert_eq!(
        calls.iter().map(|c| c.retries).collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>()
    );
    // The budget runs from the first failure: every retry carries that same time.
    assert_eq!(calls[0].first_failure, None);
    let first = calls[1]
        .first_failure
        .clone()
        .expect("the first failure is stamped");
    assert!(
        calls[1..]
            .iter()
            .all(|c| c.first_failure.as_ref() == Some(&first)),
        "{calls:?}"
    );
    // Handled, not dead-lettered: nothing waits anywhere.
    let start = Instant::now();
    while broker.waiting_for_retry().await + broker.message_count(&broker.queue).await > 0 {
        assert!(start.elapsed() < DEADLINE, "still queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(broker.message_count(&broker.names.dead_letter_queue()).await, 0);
    assert_eq!(broker.calls("payment").len(), 8, "no attempt after the success");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_that_outlasts_the_budget_is_dead_lettered_naming_the_budget() {
    let policy = RetryPolicy {
        base: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        budget: Duration::from_secs(2),
        max_retries: None,
    };
    let broker = Broker::start(policy, 4, |_message: Incoming| async move {
        Err(transient("451 4.3.0 mail server unavailable"))
    })
    .await;
    broker.publish("thanks", &[]).await;
    let (body, headers) = broker.dead_letter().await;
    assert_eq!(body, "thanks");
    let reason = header(&headers, names::HEADER_DEAD_LETTER_REASON);
    assert!(
        reason.contains("the retry budget of 2s is spent") && reason.contains("451 4.3.0"),
        "{reason}"
    );
    let calls = broker.calls("thanks");
    let tried_for = calls.last().unwrap().at - calls[0].at;
    assert!(
        calls.len() > 3 && tried_for >= Duration::from_millis(1900),
        "{} attempts over {tried_for:?}",
        calls.len()
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_handler_panics_is_dead_lettered_with_the_panic_and_the_next_is_handled() {
    let policy = RetryPolicy {
        base: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        budget: Duration::from_secs(60),
        max_retries: None,
    };
    // One message at a time: an unacknowledged message would hold up the next.
    let broker = Broker::start(policy, 1, |message: Incoming| async move {
        if message.body == b"boom" {
            panic!("invoice {} has no customer", "F-1");
        }
        Ok(())
    })
    .await;
    broker.publish("boom", &[]).await;
    broker.publish("next", &[]).await;
    broker.wait_calls("next", 1, DEADLINE).await;
    let (body, headers) = broker.dead_letter().await;
    assert_eq!(body, "boom");
    let reason = header(&headers, names::HEADER_DEAD_LETTER_REASON);
    assert!(
        reason.starts_with("handler panicked: ") && reason.contains("invoice F-1 has no customer"),
        "{reason}"
    );
    assert_eq!(header(&headers, names::HEADER_DEAD_LETTER_QUEUE), broker.queue);
    assert_eq!(broker.calls("boom").len(), 1, "dead-lettered, not retried");
    broker.stop().await;
}

/// A handler that found every connection of its pool in use (the database answering) is
/// tried again soon without spending a retry, and counted as `pool_busy`, not as an outage:
/// four such attempts go through where a retry cap of two would have dead-lettered them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_found_the_pool_busy_is_tried_again_soon_without_spending_its_retries() {
    relance_telemetry::metrics::install();
    let counted_before = pool_busy_retries();
    let policy = RetryPolicy {
        base: Duration::from_secs(1),
        max_delay: Duration::from_secs(300),
        budget: Duration::from_secs(3600),
        max_retries: Some(2),
    };
    let busy = Arc::new(Mutex::new(4));
    let broker = Broker::start(policy, 4, move |_message: Incoming| {
        let busy = busy.clone();
        async move {
            let mut left = busy.lock().unwrap();
            if *left == 0 {
                return Ok(());
            }
            *left -= 1;
            let timed_out = anyhow::Error::new(sqlx::Error::PoolTimedOut)
                .context("recording the payment")
                .context(relance_storage::PoolBusy { size: 8 });
            Err(HandlerError::Transient(timed_out))
        }
    })
    .await;
    broker.publish("pool-busy", &[]).await;
    let calls = broker.wait_calls("pool-busy", 5, DEADLINE).await;
    assert_eq!(
        calls.iter().map(|c| c.retries).collect::<Vec<_>>(),
        [0, 0, 0, 0, 0],
        "no retry spent on a busy pool"
    );
    // Each time after the shortest wait (the 1 s base, its tier), not longer each time as in
    // an outage (1, 2, 4, 8 s rounded to their tiers: 17 s or more).
    let waited = calls[4].at - calls[0].at;
    assert!(
        waited < Duration::from_secs(12),
        "four busy attempts took {waited:?}"
    );
    let start = Instant::now();
    while broker.waiting_for_retry().await + broker.message_count(&broker.queue).await > 0 {
        assert!(start.elapsed() < DEADLINE, "still queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(broker.message_count(&broker.names.dead_letter_queue()).await, 0);
    assert_eq!(pool_busy_retries() - counted_before, 4.0, "counted as pool_busy");
    broker.stop().await;
}

/// `relance_messages_retried_total{reason_class="pool_busy"}` in this process, all queues
/// (the recorder is the process's: read it before and after).
fn pool_busy_retries() -> f64 {
    relance_telemetry::metrics::render()
        .lines()
        .filter(|l| {
            l.starts_with("relance_messages_retried_total{") && l.contains("reason_class=\"pool_busy\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
