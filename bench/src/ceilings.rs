//! The machine's own ceilings, measured in the same run as relance: what the broker, the
//! database and an SMTP sink can carry with nothing of relance in the way.

use crate::sink::{Sink, SinkOptions};
use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde::Serialize;
use sqlx::PgPool;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct Ceilings {
    /// Persistent 1 KiB messages published with confirms and consumed with manual acks.
    pub broker_msgs_per_s: f64,
    pub broker_messages: u64,
    /// Rows claimed per second by two workers, `FOR UPDATE SKIP LOCKED` in batches.
    pub pg_claim_rows_per_s: f64,
    pub pg_claim_batch: i64,
    /// One-row transactions committed per second by 16 connections at once (the services'
    /// pools together: commits are flushed in groups).
    pub pg_commits_per_s: f64,
    /// Messages per second lettre's own pooled transport hands the sink, with a pool of
    /// `smtp_pool` connections (no TCP_NODELAY on its sockets: the client relance had before
    /// issue #14).
    pub smtp_msgs_per_s: f64,
    pub smtp_pool: u32,
    pub smtp_sessions: u64,
    /// The same through the sender's own SMTP client (`relance_sender::smtp`, TCP_NODELAY,
    /// `smtp_pool` sessions kept open): the ceiling the sender's deliveries are held to.
    pub smtp_sender_msgs_per_s: f64,
    pub smtp_sender_sessions: u64,
    /// The sink's latency before it accepts a message (0: it answers at once), and the round
    /// trip before each batch of its answers (0: none), in these ceilings and in the runs.
    pub smtp_latency_ms: u64,
    pub smtp_sink_round_trip_ms: u64,
    /// The sender's client, same pool, to a sink whose every batch of answers leaves
    /// `smtp_round_trip_ms` after its commands (a distant server), first announcing no
    /// PIPELINING (each command waits for its answer: RSET, MAIL, RCPT, DATA, the end of
    /// DATA) then announcing it (one round trip for the envelope, one for the end of DATA).
    pub smtp_round_trip_ms: u64,
    pub smtp_unpipelined_msgs_per_s: f64,
    pub smtp_pipelined_msgs_per_s: f64,
}

/// Publishes `messages` persistent 1 KiB messages with publisher confirms to a queue of its
/// own while a consumer acks each one; messages per second, first publish to last ack. The
/// queue is deleted afterwards.
pub async fn broker(amqp_url: &str, messages: u64) -> anyhow::Result<f64> {
    let connection = crate::procs::connect_broker(amqp_url, "bench-ceiling").await?;
    let queue = format!("relance-bench.ceiling.{}", uuid::Uuid::new_v4().simple());
    let publishing = connection.create_channel().await.context("opening a channel")?;
    publishing
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("enabling publisher confirms")?;
    let mut arguments = FieldTable::default();
    // Gone by itself should the bench die before deleting it.
    arguments.insert("x-expires".into(), AMQPValue::LongUInt(600_000));
    // The type of queue the services declare (RELANCE_QUEUE_TYPE passes through to them):
    // a quorum queue writes every message to its Raft log, a classic one does not.
    if std::env::var("RELANCE_QUEUE_TYPE").as_deref() != Ok("classic") {
        arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    }
    publishing
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .with_context(|| format!("declaring {queue}"))?;
    let consuming = connection.create_channel().await.context("opening a channel")?;
    consuming
        .basic_qos(256, BasicQosOptions::default())
        .await
        .context("setting the prefetch")?;
    let mut consumer = consuming
        .basic_consume(
            queue.as_str().into(),
            "relance-bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("consuming the ceiling queue")?;
    let started = Instant::now();
    let acking = tokio::spawn(async move {
        let mut acked = 0u64;
        while acked < messages {
            let Some(delivery) = consumer.next().await else {
                anyhow::bail!("the consumer stopped after {acked} messages");
            };
            delivery
                .context("receiving")?
                .ack(BasicAckOptions::default())
                .await
                .context("acking")?;
            acked += 1;
        }
        Ok(Instant::now())
    });
    let payload = vec![b'x'; 1024];
    let mut confirms = Vec::with_capacity(512);
    for _ in 0..messages {
        confirms.push(
            publishing
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &payload,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .context("publishing")?,
        );
        if confirms.len() == 512 {
            for confirm in confirms.drain(..) {
                anyhow::ensure!(confirm.await.context("confirm")?.is_ack(), "the broker nacked");
            }
        }
    }
    for confirm in confirms.drain(..) {
        anyhow::ensure!(confirm.await.context("confirm")?.is_ack(), "the broker nacked");
    }
    let finished = acking.await.context("the consumer task")??;
    // The consumer goes first: a queue deleted under it has the broker cancel it, and lapin
    // takes that cancellation on a quorum queue for a protocol error on the connection.
    consuming
        .close(200, "measured".into())
        .await
        .context("closing the consuming channel")?;
    publishing
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .with_context(|| format!("deleting {queue}"))?;
    let _ = connection.close(200, "done".into()).await;
    Ok(messages as f64 / (finished - started).as_secs_f64().max(1e-9))
}

/// Two workers claim `rows` rows of a scratch table in batches of `batch` with
/// `FOR UPDATE SKIP LOCKED`, each batch its own transaction (the scheduler's claim,
/// without its joins); rows per second. Then one-row commits per second, 16 at once.
pub async fn database(db: &PgPool, url: &str, rows: i64, batch: i64) -> anyhow::Result<(f64, f64)> {
    sqlx::query(
        "CREATE TABLE bench_claim (id bigserial PRIMARY KEY, due_at timestamptz NOT NULL, claimed_at timestamptz)",
    )
    .execute(db)
    .await
    .context("creating the claim scratch table")?;
    sqlx::query("CREATE INDEX bench_claim_due ON bench_claim (due_at) WHERE claimed_at IS NULL")
        .execute(db)
        .await
        .context("indexing the claim scratch table")?;
    sqlx::query(
        "INSERT INTO bench_claim (due_at) SELECT now() - n * interval '1 millisecond' FROM generate_series(1, $1) n",
    )
    .bind(rows)
    .execute(db)
    .await
    .context("filling the claim scratch table")?;
    sqlx::query("ANALYZE bench_claim").execute(db).await?;
    let started = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                loop {
                    let mut tx = db.begin().await?;
                    let claimed = sqlx::query(
                        "UPDATE bench_claim SET claimed_at = now() WHERE id IN (
                             SELECT id FROM bench_claim WHERE claimed_at IS NULL AND due_at <= now()
                             ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)",
                    )
                    .bind(batch)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    tx.commit().await?;
                    if claimed == 0 {
                        return Ok::<_, sqlx::Error>(());
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.context("a claim worker")?.context("claiming")?;
    }
    let claim_rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-9);
    sqlx::query("DROP TABLE bench_claim").execute(db).await?;

    sqlx::query("CREATE TABLE bench_commit (id bigserial PRIMARY KEY, at timestamptz NOT NULL)")
        .execute(db)
        .await
        .context("creating the commit scratch table")?;
    const COMMITTERS: i64 = 16;
    let committers = relance_storage::connect(url, 16).await?;
    let per_worker = (rows / 50).clamp(100, 2_000);
    let started = Instant::now();
    let workers: Vec<_> = (0..COMMITTERS)
        .map(|_| {
            let db = committers.clone();
            tokio::spawn(async move {
                for _ in 0..per_worker {
                    sqlx::query("INSERT INTO bench_commit (at) VALUES (now())")
                        .execute(&db)
                        .await?;
                }
                Ok::<_, sqlx::Error>(())
            })
        })
        .collect();
    for worker in workers {
        worker.await.context("a commit worker")?.context("committing")?;
    }
    let commit_rate = (COMMITTERS * per_worker) as f64 / started.elapsed().as_secs_f64().max(1e-9);
    committers.close().await;
    sqlx::query("DROP TABLE bench_commit").execute(db).await?;
    Ok((claim_rate, commit_rate))
}

/// Sends mails `0..messages` with `send`, `at_once` at a time, into `sink`; messages per
/// second, and the sessions the sink saw. Every mail must have been accepted.
async fn drive_sink<F, Fut>(sink: &Sink, messages: u64, at_once: usize, send: F) -> anyhow::Result<(f64, u64)>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let sent: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..messages)
        .map(send)
        .buffer_unordered(at_once.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    for outcome in sent {
        outcome?;
    }
    anyhow::ensure!(
        sink.accepted() == messages,
        "the sink accepted {} of {messages}",
        sink.accepted()
    );
    Ok((messages as f64 / elapsed.as_secs_f64().max(1e-9), sink.sessions()))
}

/// lettre's pooled async transport hands `messages` 1 KiB mails to the sink, `pool` at once;
/// messages per second, and the sessions the sink saw. The sink answers as `sink` says.
pub async fn smtp(messages: u64, pool: u32, sink: SinkOptions) -> anyhow::Result<(f64, u64)> {
    use lettre::transport::smtp::PoolConfig;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let sink = Sink::start_with(sink).await?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(sink.addr.ip().to_string())
        .port(sink.addr.port())
        .pool_config(PoolConfig::new().max_size(pool))
        .build();
    let body = "x".repeat(1024);
    let at_once = usize::try_from(pool).unwrap_or(1);
    drive_sink(&sink, messages, at_once, |n| {
        let (transport, body) = (transport.clone(), body.clone());
        async move {
            let message = Message::builder()
                .from("Bench <bench@relance.test>".parse().context("from")?)
                .to(format!("c{n}@bench.test").parse().context("to")?)
                .subject(format!("ceiling {n}"))
                .body(body)
                .context("building a mail")?;
            transport.send(message).await.context("sending to the sink")?;
            Ok(())
        }
    })
    .await
}

/// As [`smtp`], through the sender's own SMTP client (the one `relance run sender` delivers
/// with): `messages` 1 KiB mails, `pool` at once on as many kept sessions, into a sink that
/// answers as `sink` says; messages per second, and the sessions the sink saw.
pub async fn smtp_sender(messages: u64, pool: u32, sink: SinkOptions) -> anyhow::Result<(f64, u64)> {
    use lettre::address::Envelope;
    use relance_sender::courier::OpenGate;
    use relance_sender::smtp::SmtpEndpoint;
    let sink = Sink::start_with(sink).await?;
    let at_once = usize::try_from(pool).unwrap_or(1).max(1);
    let endpoint = SmtpEndpoint::from_url(&sink.url(), std::time::Duration::from_secs(30))?.pooled(at_once);
    let body = "x".repeat(1024);
    drive_sink(&sink, messages, at_once, |n| {
        let (endpoint, body) = (endpoint.clone(), body.clone());
        async move {
            let envelope = Envelope::new(
                Some("bench@relance.test".parse().context("from")?),
                vec![format!("c{n}@bench.test").parse().context("to")?],
            )
            .context("an envelope")?;
            let mail = format!(
                "From: Bench <bench@relance.test>\r\nTo: c{n}@bench.test\r\nSubject: ceiling {n}\r\n\r\n{body}\r\n"
            );
            endpoint
                .deliver(&envelope, mail.as_bytes(), &OpenGate)
                .await
                .map_err(|e| anyhow::anyhow!("sending to the sink: {e}"))?;
            Ok(())
        }
    })
    .await
}
