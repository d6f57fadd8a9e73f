//! `pipeline`: the whole of relance against the machine's ceilings, in one run.
//! 1. ceilings: the broker, the database, lettre into the counting SMTP sink;
//! 2. a ledger loaded with COPY into a fresh database (see [`crate::ledger`]);
//! 3. the real services (`relance run all`, then one process per service with 1, 2, 4
//!    copies of renderer and sender) until every due step is sent: reminders/s, due-to-sent,
//!    CPU per reminder (relance, PostgreSQL, RabbitMQ), transactions per reminder, memory;
//! 4. the scheduler pass with nothing due, on ledgers all in the future and mostly overdue;
//! 5. payment-to-cancel idle and at load, intake invoices/s;
//! 6. a table of figures beside their ceilings, JSON and an SVG chart.

use crate::ledger::{self, Loaded, Shape};
use crate::procs::{self, Service, Usage};
use crate::profile::{self, Profile};
use crate::providers::Providers;
use crate::report::{Report, Row};
use crate::sink::{Sink, SinkOptions};
use crate::{ceilings, pass};
use anyhow::Context;
use chrono::{DateTime, Duration as Days, Utc};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages per reminder through the broker: `reminder.due`, `reminder.rendered.email`,
/// `reminder.sent` (the count; other events ride along).
pub const HOPS_PER_REMINDER: f64 = 3.0;

#[derive(Debug, Clone)]
pub struct Options {
    pub server_url: String,
    pub amqp_url: String,
    pub pipeline_invoices: i64,
    /// One invoice in this many has a step due in the delivery runs ([`Shape::Sparse`]);
    /// `None`: the pipeline mix (a quarter).
    pub due_every: Option<u32>,
    pub copies: Vec<usize>,
    pub pass_sizes: Vec<i64>,
    pub ceiling_messages: u64,
    pub smtp_pool: u32,
    /// How long the SMTP sink takes to accept each message.
    pub smtp_latency: Duration,
    /// The round trip to the SMTP sink of the runs (and to the pipelining ceiling's, 10 ms
    /// when zero).
    pub smtp_round_trip: Duration,
    pub payments: usize,
    pub intake: i64,
    /// Invoices of the other channels' run ([`Shape::Channels`]); 0: none.
    pub channel_invoices: i64,
    pub deadline: Duration,
    pub relance_bin: Option<PathBuf>,
    pub out: PathBuf,
    pub smoke: bool,
}

impl Options {
    /// How the runs' SMTP sink (and the ceilings measured against it) answers.
    fn sink(&self) -> SinkOptions {
        SinkOptions {
            latency: self.smtp_latency,
            round_trip: self.smtp_round_trip,
            ..SinkOptions::default()
        }
    }
}

/// A database of the bench's own beside `DATABASE_URL`'s, migrated; dropped by [`BenchDb::drop`].
pub struct BenchDb {
    pub url: String,
    pub name: String,
    pub pool: PgPool,
}

impl BenchDb {
    pub async fn create(server_url: &str) -> anyhow::Result<Self> {
        let base = server_url
            .rsplit_once('/')
            .map(|(server, _)| server)
            .context("DATABASE_URL has no database name")?;
        let name = format!("relance_bench_{}", uuid::Uuid::new_v4().simple());
        let url = format!("{base}/{name}");
        relance_storage::migrate(&url).await?;
        let pool = relance_storage::connect(&url, 4).await?;
        Ok(Self { url, name, pool })
    }

    /// Closes the pool (its backends flush their statistics as they exit) and opens another.
    pub async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.pool.close().await;
        self.pool = relance_storage::connect(&self.url, 4).await?;
        Ok(())
    }

    pub async fn drop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        relance_storage::drop_database(&self.url).await
    }

    /// Transactions committed in this database so far, read on a connection of its own
    /// (the services' backends flush their counts when they exit).
    async fn commits(&self) -> anyhow::Result<i64> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .context("connecting to read pg_stat_database")?;
        let commits: i64 = sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
            .bind(&self.name)
            .fetch_one(&mut conn)
            .await
            .context("reading pg_stat_database")?;
        let _ = conn.close().await;
        Ok(commits)
    }

    /// Rows of `reminder_steps` updated so far, and how many of those updates were HOT (the
    /// new version on the same page, no index entry written).
    async fn step_updates(&self) -> anyhow::Result<(i64, i64)> {
        sqlx::query_as(
            "/* relance-bench */ SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'reminder_steps'",
        )
        .fetch_one(&self.pool)
        .await
        .context("reading the updates of reminder_steps")
    }
}

/// The inbound exchange of a namespace, published to with confirms, as another system would.
struct Inbound {
    connection: Connection,
    channel: Channel,
    exchange: String,
}

impl Inbound {
    async fn open(amqp_url: &str, namespace: &str) -> anyhow::Result<Self> {
        let connection = crate::procs::connect_broker(amqp_url, "bench").await?;
        let channel = connection.create_channel().await.context("opening a channel")?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        Ok(Self {
            connection,
            channel,
            exchange: format!("{namespace}.inbound"),
        })
    }

    async fn publish_unconfirmed(
        &self,
        routing_key: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<lapin::PublisherConfirm> {
        let id = body["event_id"].as_str().unwrap_or_default().to_string();
        self.channel
            .basic_publish(
                self.exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &serde_json::to_vec(body)?,
                BasicProperties::default()
                    .with_message_id(id.as_str().into())
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2),
            )
            .await
            .with_context(|| format!("publishing {routing_key}"))
    }

    async fn publish(&self, routing_key: &str, body: &serde_json::Value) -> anyhow::Result<()> {
        let confirm = self.publish_unconfirmed(routing_key, body).await?;
        confirmed(confirm, routing_key).await
    }

    async fn close(self) {
        let _ = self.channel.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

async fn confirmed(confirm: lapin::PublisherConfirm, routing_key: &str) -> anyhow::Result<()> {
    match confirm.await.context("waiting for the broker's confirm")? {
        lapin::Confirmation::Ack(None) | lapin::Confirmation::NotRequested => Ok(()),
        other => anyhow::bail!("the broker did not take {routing_key}: {other:?}"),
    }
}

/// p50 and p99 of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Latency {
    fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((ms.len() as f64 - 1.0) * q).round();
            ms.get(i as usize).copied().unwrap_or(0.0)
        };
        Self {
            samples: ms.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
        }
    }
}

/// One delivery run: a layout of processes on a fresh ledger until every due step is sent.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRun {
    pub layout: String,
    pub ledger: Loaded,
    pub due_steps: i64,
    pub sent: i64,
    pub not_sent: i64,
    pub seconds: f64,
    pub reminders_per_s: f64,
    pub due_to_sent: Latency,
    pub transactions_per_reminder: f64,
    /// Row updates of `reminder_steps` per reminder, and the share of them PostgreSQL made
    /// HOT (no index entries written).
    pub step_updates_per_reminder: f64,
    pub step_updates_hot_share: f64,
    /// CPU milliseconds per reminder, per service (copies summed), then PostgreSQL and RabbitMQ.
    pub cpu_ms_per_reminder: Vec<(String, f64)>,
    pub relance_cpu_ms_per_reminder: f64,
    pub postgres_cpu_ms_per_reminder: f64,
    pub rabbitmq_cpu_ms_per_reminder: f64,
    pub peak_memory_mib: Vec<(String, f64)>,
    pub smtp_sessions: u64,
    pub smtp_accepted: u64,
    /// Messages tried again because every connection of their service's database pool was
    /// in use (`relance_messages_retried_total{reason_class="pool_busy"}`, all processes).
    pub pool_busy_retries: u64,
    pub payment_to_cancel_at_load: Option<Latency>,
    /// Where the database spent its time, per statement (when the server loads
    /// `pg_stat_statements`).
    pub profile: Option<Profile>,
}

/// What runs: (process label, services), e.g. ("renderer-2", ["renderer"]).
type Layout = Vec<(String, Vec<&'static str>)>;

fn layouts(copies: &[usize]) -> Vec<(String, Layout)> {
    let mut all = vec![("run all".to_string(), vec![("all".to_string(), vec!["all"])])];
    for &n in copies.iter().filter(|&&n| n > 0) {
        let mut layout: Layout = vec![
            ("scheduler".to_string(), vec!["scheduler"]),
            ("payments".to_string(), vec!["payments"]),
        ];
        for copy in 1..=n {
            layout.push((format!("renderer-{copy}"), vec!["renderer"]));
            layout.push((format!("sender-{copy}"), vec!["sender"]));
        }
        all.push((format!("separate, {n} renderer + {n} sender"), layout));
    }
    all
}

/// The services' environment: the bench's database, namespace, sink and policy; the
/// caller's own `RELANCE_*` settings pass through (to compare a setting's before/after).
struct Environment {
    binary: PathBuf,
    work: PathBuf,
    policy: PathBuf,
    amqp_url: String,
    /// The SMS gateway's and postal API's fakes, for every run (the email runs send them
    /// nothing).
    providers: Providers,
}

/// The caller's `RELANCE_*` variables, which the services are given ([`Environment::vars`]).
fn passed_settings() -> Vec<String> {
    let mut passed: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("RELANCE_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    passed.sort();
    passed
}

impl Environment {
    fn vars(&self, db: &BenchDb, namespace: &str, sink: &Sink, health_port: u16) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("RELANCE_") || k == "RUST_LOG")
            .collect();
        let out = |d: &str| self.work.join(d).display().to_string();
        let ours = [
            ("DATABASE_URL", db.url.clone()),
            ("AMQP_URL", self.amqp_url.clone()),
            ("SMTP_URL", sink.url()),
            ("RELANCE_NAMESPACE", namespace.to_string()),
            ("RELANCE_POLICY_FILE", self.policy.display().to_string()),
            // The benchmark's ledger is billed by the example creditor.
            ("RELANCE_EXAMPLE_CREDITOR", "allow".to_string()),
            ("RELANCE_HEALTH_ADDR", format!("127.0.0.1:{health_port}")),
            ("RELANCE_QUEUE_EXPIRES_MS", "600000".to_string()),
            ("RELANCE_MAIL_DIR", out("mail")),
            ("RELANCE_SMS_DIR", out("sms")),
            ("RELANCE_LETTER_DIR", out("letters")),
            ("RELANCE_SMS_GATEWAY_URL", self.providers.sms_url()),
            ("RELANCE_POSTAL_API_URL", self.providers.letters_url()),
        ];
        vars.retain(|(k, _)| !ours.iter().any(|(o, _)| o == k));
        if !vars.iter().any(|(k, _)| k == "RUST_LOG") {
            vars.push(("RUST_LOG".to_string(), "warn".to_string()));
        }
        vars.extend(ours.into_iter().map(|(k, v)| (k.to_string(), v)));
        vars
    }

    /// Starts the layout and waits until every process is ready (`/health/ready`). Returns
    /// the processes and the probes answered (each runs a `SELECT 1`: a transaction).
    async fn start(
        &self,
        layout: &Layout,
        db: &BenchDb,
        namespace: &str,
        sink: &Sink,
    ) -> anyhow::Result<(Vec<Service>, Vec<u16>, i64)> {
        let mut services = Vec::new();
        let mut ports = Vec::new();
        for (label, names) in layout {
            let port = procs::free_port()?;
            let vars = self.vars(db, namespace, sink, port);
            services.push(Service::spawn(&self.binary, label, names, &vars, &self.work)?);
            ports.push(port);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut probes = 0;
        for (port, service) in ports.iter().zip(services.iter_mut()) {
            loop {
                let (answered, ready) = procs::ready(*port).await;
                probes += i64::from(answered);
                if ready {
                    break;
                }
                anyhow::ensure!(
                    !service.has_exited(),
                    "{} exited at start: see {}",
                    service.label,
                    self.work.join(format!("{}.log", service.label)).display()
                );
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{} not ready within 60 s",
                    service.label
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok((services, ports, probes))
    }
}

/// The default policy with every send window open all day, every day, weekends and public
/// holidays included (the run must not depend on the day or hour it starts).
fn open_policy() -> String {
    let every_day = "days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]";
    let all_day = "closes = \"24:00\"\nbusiness_days_only = false";
    relance_domain::policy::DEFAULT_POLICY_TOML
        .replace("days = [\"tue\", \"wed\", \"thu\"]", every_day)
        .replace("days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]", every_day)
        .replace("opens = \"09:00\"", "opens = \"00:00\"")
        .replace("closes = \"12:00\"", all_day)
        .replace("closes = \"18:00\"", all_day)
}

/// Deletes the namespace's exchanges and queues.
async fn delete_namespace(amqp_url: &str, namespace: &str) -> anyhow::Result<()> {
    let connection = crate::procs::connect_broker(amqp_url, "bench-cleanup").await?;
    let channel = connection.create_channel().await.context("opening a channel")?;
    relance_messaging::delete_topology(&channel, &relance_contracts::names::Names::new(namespace)).await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

/// Polls `f` every `every` until it returns `Some`, or fails after `deadline`.
async fn poll<T, F, Fut>(what: &str, every: Duration, deadline: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < until, "{what}: not done within {deadline:?}");
        tokio::time::sleep(every).await;
    }
}

fn payment(number: &str, amount: &str, now: DateTime<Utc>) -> serde_json::Value {
    let id = uuid::Uuid::new_v4().to_string();
    json!({
        "version": 1,
        "event_id": format!("bench-pay-{id}"),
        "occurred_at": now.to_rfc3339(),
        "payment": {
            "id": format!("BENCH-{id}"),
            "invoice_number": number,
            "amount": amount,
            "currency": "EUR",
            "received_on": now.date_naive().to_string(),
        }
    })
}

/// Publishes a payment for a not-due invoice and waits until its pending steps are cancelled.
async fn payment_to_cancel(
    db: &PgPool,
    inbound: &Inbound,
    (number, amount): &(String, String),
    polls: &AtomicU64,
    every: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    inbound
        .publish("payment.received", &payment(number, amount, Utc::now()))
        .await?;
    poll("payment to cancel", every, Duration::from_secs(60), || async {
        polls.fetch_add(1, Ordering::Relaxed);
        let (pending, cancelled): (i64, i64) = sqlx::query_as(
            "/* relance-bench */ SELECT count(*) FILTER (WHERE s.status = 'pending'), count(*) FILTER (WHERE s.status = 'cancelled')
             FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
             WHERE i.number = $1 AND s.kind = 'reminder'",
        )
        .bind(number)
        .fetch_one(db)
        .await
        .context("polling the paid invoice's steps")?;
        Ok((pending == 0 && cancelled > 0).then_some(()))
    })
    .await?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Runs a layout on a fresh ledger of `invoices` invoices of `shape` until every due step
/// is delivered.
#[allow(clippy::too_many_arguments)]
async fn delivery_run(
    opts: &Options,
    env: &Environment,
    label: &str,
    layout: &Layout,
    (invoices, shape): (i64, Shape),
    ticks: f64,
    keep_for_idle: bool,
) -> anyhow::Result<(DeliveryRun, Option<(BenchDb, String, Sink, Loaded)>)> {
    let mut db = BenchDb::create(&opts.server_url).await?;
    let loaded_at = Utc::now();
    let loaded = ledger::load(&db.pool, invoices, shape, loaded_at).await?;
    // Cleared before the pool closes, so that its own transactions are counted before the run.
    let profiling = match profile::start(&db.pool).await {
        Ok(()) => true,
        Err(e) => {
            println!("  {label}: no statement profile: {e:#}");
            false
        }
    };
    db.reconnect().await?;
    let namespace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let sink = Sink::start_with(opts.sink()).await?;
    let polls = Arc::new(AtomicU64::new(0));
    let updates_before = db.step_updates().await?;
    let (commits_before, pg_before, rabbit_before) = (
        db.commits().await?,
        procs::cpu_ticks_of("postgres"),
        procs::cpu_ticks_of("beam.smp"),
    );
    let started_at = Utc::now();
    let started = Instant::now();
    let (services, health_ports, probes) = env.start(layout, &db, &namespace, &sink).await?;
    let inbound = Inbound::open(&opts.amqp_url, &namespace).await?;

    // Payments at load: one after the other while the backlog drains.
    let draining = Arc::new(AtomicBool::new(true));
    let at_load = {
        let (db, draining, polls) = (db.pool.clone(), draining.clone(), polls.clone());
        let payable: Vec<_> = loaded.payable.iter().take(opts.payments).cloned().collect();
        let inbound = Inbound::open(&opts.amqp_url, &namespace).await?;
        tokio::spawn(async move {
            let mut ms = Vec::new();
            for invoice in &payable {
                if !draining.load(Ordering::Relaxed) {
                    break;
                }
                // Polled less often than idle: the polls themselves load the database.
                ms.push(payment_to_cancel(&db, &inbound, invoice, &polls, Duration::from_millis(10)).await?);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            inbound.close().await;
            Ok::<_, anyhow::Error>(ms)
        })
    };
    let window = (loaded_at - Days::hours(1), loaded_at);
    // Polled with a question the partial indexes answer at once ("is any due step still on
    // its way?") rather than a count over the ledger: the poll's own cost stays out of the
    // database's CPU per reminder. The steps sent are counted once, at the end. The bench's
    // customers have one invoice each, so no step is grouped into another's message: the
    // indexes of steps in flight, which hold ungrouped steps only, answer for all.
    poll(
        "delivering every due step",
        Duration::from_millis(100),
        opts.deadline,
        || async {
            polls.fetch_add(1, Ordering::Relaxed);
            let open: bool = sqlx::query_scalar(
                "/* relance-bench */ SELECT EXISTS (SELECT 1 FROM reminder_steps
                                WHERE status = 'pending' AND kind = 'reminder' AND due_at > $1 AND due_at <= $2)
                     OR EXISTS (SELECT 1 FROM reminder_steps
                                WHERE status IN ('queued', 'rendered', 'sending') AND grouped_into IS NULL)
                     OR EXISTS (SELECT 1 FROM reminder_steps WHERE status = 'deferred' AND grouped_into IS NULL)",
            )
            .bind(window.0)
            .bind(window.1)
            .fetch_one(&db.pool)
            .await
            .context("asking whether due steps remain")?;
            Ok((!open).then_some(()))
        },
    )
    .await?;
    polls.fetch_add(1, Ordering::Relaxed);
    let sent: i64 = sqlx::query_scalar(
        "/* relance-bench */ SELECT count(*) FROM reminder_steps
         WHERE kind = 'reminder' AND status = 'sent' AND due_at > $1 AND due_at <= $2",
    )
    .bind(window.0)
    .bind(window.1)
    .fetch_one(&db.pool)
    .await
    .context("counting delivered steps")?;
    draining.store(false, Ordering::Relaxed);
    // A step the services moved out of the window (deferred to a later day, held) is not
    // delivered: the run's figures would be meaningless, so it fails.
    anyhow::ensure!(
        sent == loaded.due_steps,
        "{label}: {sent} of {} due reminders were sent, the others left their due time \
         (deferred or held: is the bench's policy open today?); logs in {}",
        loaded.due_steps,
        env.work.display()
    );
    let at_load = at_load.await.context("the payments at load")??;
    let (last_sent, p50, p99): (Option<DateTime<Utc>>, Option<f64>, Option<f64>) = sqlx::query_as(
        "/* relance-bench */ SELECT max(status_changed_at),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM status_changed_at - greatest(due_at, $3)) * 1000),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM status_changed_at - greatest(due_at, $3)) * 1000)
         FROM reminder_steps WHERE kind = 'reminder' AND status = 'sent' AND due_at > $1 AND due_at <= $2",
    )
    .bind(window.0)
    .bind(window.1)
    .bind(started_at)
    .fetch_one(&db.pool)
    .await
    .context("due-to-sent")?;
    polls.fetch_add(1, Ordering::Relaxed);
    let seconds = last_sent
        .map(|t| (t - started_at).num_milliseconds() as f64 / 1000.0)
        .unwrap_or_else(|| started.elapsed().as_secs_f64())
        .max(1e-3);
    let usage: Vec<Usage> = services.iter().map(|s| s.usage(ticks)).collect();
    // Messages that found every connection of their service's pool in use (each process's
    // own count, read from its /metrics before it stops).
    let mut pool_busy = 0.0;
    for port in &health_ports {
        pool_busy += procs::metric_sum(
            *port,
            "relance_messages_retried_total",
            "reason_class=\"pool_busy\"",
        )
        .await
        .context("reading a service's /metrics")?;
    }
    for service in services {
        service.stop(Duration::from_secs(15)).await?;
    }
    inbound.close().await;
    // The bench's own pool's backends flush their counts as they close; the bench's own
    // transactions (its polls, and the read of the count before) are left out.
    db.reconnect().await?;
    let commits =
        db.commits().await? - commits_before - i64::try_from(polls.load(Ordering::Relaxed))? - probes - 1;
    let updates_after = db.step_updates().await?;
    let profile = if profiling {
        profile::read(&db.pool, sent, "reminder").await
    } else {
        None
    };
    let (updates, hot) = (
        updates_after.0 - updates_before.0,
        updates_after.1 - updates_before.1,
    );
    let pg_cpu = (procs::cpu_ticks_of("postgres").saturating_sub(pg_before)) as f64 / ticks;
    let rabbit_cpu = (procs::cpu_ticks_of("beam.smp").saturating_sub(rabbit_before)) as f64 / ticks;
    let per = |cpu_s: f64| cpu_s * 1000.0 / (sent.max(1) as f64);
    let mut by_service: Vec<(String, f64)> = Vec::new();
    for u in &usage {
        let service = u.label.split('-').next().unwrap_or(&u.label).to_string();
        match by_service.iter_mut().find(|(s, _)| *s == service) {
            Some((_, cpu)) => *cpu += u.cpu_seconds,
            None => by_service.push((service, u.cpu_seconds)),
        }
    }
    let relance_cpu: f64 = usage.iter().map(|u| u.cpu_seconds).sum();
    let run = DeliveryRun {
        layout: label.to_string(),
        due_steps: loaded.due_steps,
        sent,
        not_sent: loaded.due_steps - sent,
        seconds,
        reminders_per_s: sent as f64 / seconds,
        due_to_sent: Latency {
            samples: usize::try_from(sent).unwrap_or(0),
            p50_ms: p50.unwrap_or(0.0),
            p99_ms: p99.unwrap_or(0.0),
        },
        transactions_per_reminder: commits as f64 / sent.max(1) as f64,
        step_updates_per_reminder: updates as f64 / sent.max(1) as f64,
        step_updates_hot_share: hot as f64 / updates.max(1) as f64,
        cpu_ms_per_reminder: by_service.into_iter().map(|(s, c)| (s, per(c))).collect(),
        relance_cpu_ms_per_reminder: per(relance_cpu),
        postgres_cpu_ms_per_reminder: per(pg_cpu),
        rabbitmq_cpu_ms_per_reminder: per(rabbit_cpu),
        peak_memory_mib: usage
            .iter()
            .map(|u| (u.label.clone(), u.peak_memory_mib))
            .collect(),
        smtp_sessions: sink.sessions(),
        smtp_accepted: sink.accepted(),
        pool_busy_retries: pool_busy as u64,
        payment_to_cancel_at_load: Some(Latency::of(at_load)),
        ledger: loaded.clone(),
        profile,
    };
    println!(
        "  {label}: {sent} of {} due reminders sent in {seconds:.1} s: {:.1}/s, {:.1} transactions each, {:.1} step updates each ({:.0}% HOT)",
        loaded.due_steps,
        run.reminders_per_s,
        run.transactions_per_reminder,
        run.step_updates_per_reminder,
        run.step_updates_hot_share * 100.0
    );
    if let Some(profile) = &run.profile {
        println!(
            "    database statement time {:.2} ms per reminder in {:.1} top-level statements, the bench's polls {:.2} apart (pg_stat_statements, track {}; * inside a function); the costliest:",
            profile.top_level_ms_each, profile.top_level_calls_each, profile.bench_ms_each, profile.track
        );
        for line in profile.lines(8) {
            println!("    {line}");
        }
    }
    if keep_for_idle {
        return Ok((run, Some((db, namespace, sink, loaded))));
    }
    delete_namespace(&opts.amqp_url, &namespace).await?;
    db.drop().await?;
    Ok((run, None))
}

#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    pub payment_to_cancel: Latency,
    pub intake_invoices: i64,
    pub intake_per_s: f64,
    /// Where the database spent its time per invoice taken in (with `pg_stat_statements`).
    pub intake_profile: Option<Profile>,
}

/// On the drained ledger of `run all`, restarted: payments one at a time with nothing else
/// going on, then a burst of `invoice.issued` timed until every invoice is stored.
async fn idle_run(
    opts: &Options,
    env: &Environment,
    (db, namespace, sink, loaded): (BenchDb, String, Sink, Loaded),
) -> anyhow::Result<Idle> {
    let layout: Layout = vec![("all-idle".to_string(), vec!["all"])];
    let (services, _, _) = env.start(&layout, &db, &namespace, &sink).await?;
    let inbound = Inbound::open(&opts.amqp_url, &namespace).await?;
    let polls = AtomicU64::new(0);
    let mut ms = Vec::new();
    // Those paid at load are settled already: take the next ones.
    for invoice in loaded.payable.iter().skip(opts.payments).take(opts.payments) {
        ms.push(payment_to_cancel(&db.pool, &inbound, invoice, &polls, Duration::from_millis(2)).await?);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let profiling = profile::start(&db.pool).await.is_ok();
    let today = Utc::now().date_naive();
    let started = Instant::now();
    let mut confirms = Vec::new();
    for n in 0..opts.intake {
        let body = json!({
            "version": 1,
            "event_id": format!("bench-issued-{}", uuid::Uuid::new_v4()),
            "occurred_at": Utc::now().to_rfc3339(),
            "invoice": {
                "number": format!("IN-{n:09}"),
                "customer": {
                    "id": format!("CI-{n:09}"), "name": format!("Intake {n} SAS"),
                    "contact_name": "Jeanne Martin", "email": format!("i{n}@bench.test"),
                    "language": "fr", "timezone": "Europe/Paris", "risk": "medium", "country": "BE"
                },
                "amount": "1500.00", "currency": "EUR",
                "issued_on": today.to_string(), "due_on": (today + Days::days(40)).to_string(),
                "payment_link": format!("https://pay.example.test/i/IN-{n:09}")
            }
        });
        confirms.push(inbound.publish_unconfirmed("invoice.issued", &body).await?);
        if confirms.len() == 256 {
            for c in confirms.drain(..) {
                confirmed(c, "invoice.issued").await?;
            }
        }
    }
    for c in confirms.drain(..) {
        confirmed(c, "invoice.issued").await?;
    }
    // Counted by their numbers through the unique index: a `LIKE` over the ledger read every
    // invoice at each poll, which on a million invoices was most of the database's work
    // during the intake (8.8 ms per invoice taken in, `pipeline-1000000-20261206T1043`).
    let numbers: Vec<String> = (0..opts.intake).map(|n| format!("IN-{n:09}")).collect();
    poll("intake", Duration::from_millis(20), opts.deadline, || async {
        let stored: i64 =
            sqlx::query_scalar("/* relance-bench */ SELECT count(*) FROM invoices WHERE number = ANY($1)")
                .bind(&numbers)
                .fetch_one(&db.pool)
                .await
                .context("counting the invoices taken in")?;
        Ok((stored >= opts.intake).then_some(()))
    })
    .await?;
    let intake_seconds = started.elapsed().as_secs_f64();
    let intake_profile = if profiling {
        profile::read(&db.pool, opts.intake, "invoice").await
    } else {
        None
    };
    if let Some(profile) = &intake_profile {
        println!(
            "  intake: database statement time {:.2} ms per invoice, the bench's polls {:.2} apart; the costliest:",
            profile.top_level_ms_each, profile.bench_ms_each
        );
        for line in profile.lines(8) {
            println!("    {line}");
        }
    }
    for service in services {
        service.stop(Duration::from_secs(15)).await?;
    }
    inbound.close().await;
    delete_namespace(&opts.amqp_url, &namespace).await?;
    db.drop().await?;
    Ok(Idle {
        payment_to_cancel: Latency::of(ms),
        intake_invoices: opts.intake,
        intake_per_s: opts.intake as f64 / intake_seconds.max(1e-9),
        intake_profile,
    })
}

/// The other channels' run: text messages and registered letters through the providers'
/// fakes, and what those received.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelsRun {
    pub run: DeliveryRun,
    pub sms_due: i64,
    pub letters_due: i64,
    pub sms: crate::providers::Seen,
    pub letters: crate::providers::Seen,
}

#[derive(Debug, Clone, Serialize)]
pub struct PassRun {
    pub invoices: i64,
    pub shape: String,
    pub load_seconds: f64,
    pub timing: pass::PassTiming,
    /// One computation of the collections gauges on the same ledger (the second of two).
    pub gauges_ms: f64,
}

async fn pass_run(opts: &Options, invoices: i64, shape: Shape) -> anyhow::Result<PassRun> {
    let db = BenchDb::create(&opts.server_url).await?;
    let loaded = ledger::load(&db.pool, invoices, shape, Utc::now()).await?;
    let timing = pass::time_passes(&db.pool, &db.url, if opts.smoke { 3 } else { 5 }).await?;
    let gauges_ms = pass::time_gauges(&db.url).await?;
    let shape_name = shape.describe();
    println!(
        "  scheduler pass, {invoices} invoices {shape_name}: median {:.1} ms, max {:.1} ms (loaded in {:.0} s); gauges {gauges_ms:.0} ms",
        timing.median_ms, timing.max_ms, loaded.seconds
    );
    db.drop().await?;
    Ok(PassRun {
        invoices,
        shape: shape_name.to_string(),
        load_seconds: loaded.seconds,
        timing,
        gauges_ms,
    })
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let binary = procs::relance_binary(opts.relance_bin.as_deref())?;
    let work = std::env::temp_dir().join(format!("relance-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let policy = work.join("policy.toml");
    std::fs::write(&policy, open_policy()).context("writing the bench's policy")?;
    let env = Environment {
        binary,
        work: work.clone(),
        policy,
        amqp_url: opts.amqp_url.clone(),
        providers: Providers::start().await?,
    };
    let ticks = procs::clock_ticks();
    println!("relance-bench pipeline: logs and outboxes in {}", work.display());

    println!("1. ceilings");
    let broker = ceilings::broker(&opts.amqp_url, opts.ceiling_messages).await?;
    let scratch = BenchDb::create(&opts.server_url).await?;
    let autovacuum: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(&scratch.pool)
        .await
        .context("reading the autovacuum setting")?;
    let batch = 200;
    let claim_rows = if opts.smoke { 5_000 } else { 100_000 };
    let (claim, commits) = ceilings::database(&scratch.pool, &scratch.url, claim_rows, batch).await?;
    scratch.drop().await?;
    let (smtp, smtp_sessions) =
        ceilings::smtp(opts.ceiling_messages / 4, opts.smtp_pool, opts.sink()).await?;
    let (smtp_sender, smtp_sender_sessions) =
        ceilings::smtp_sender(opts.ceiling_messages / 4, opts.smtp_pool, opts.sink()).await?;
    // Pipelining saves round trips: it shows with a distant server.
    let distant_round_trip = if opts.smtp_round_trip.is_zero() {
        Duration::from_millis(10)
    } else {
        opts.smtp_round_trip
    };
    let distant = |no_pipelining| SinkOptions {
        round_trip: distant_round_trip,
        no_pipelining,
        ..SinkOptions::default()
    };
    let distant_messages = (opts.ceiling_messages / 40).max(opts.smtp_pool.into());
    let (unpipelined, _) = ceilings::smtp_sender(distant_messages, opts.smtp_pool, distant(true)).await?;
    let (pipelined, _) = ceilings::smtp_sender(distant_messages, opts.smtp_pool, distant(false)).await?;
    let ceilings = ceilings::Ceilings {
        broker_msgs_per_s: broker,
        broker_messages: opts.ceiling_messages,
        pg_claim_rows_per_s: claim,
        pg_claim_batch: batch,
        pg_commits_per_s: commits,
        smtp_msgs_per_s: smtp,
        smtp_pool: opts.smtp_pool,
        smtp_sessions,
        smtp_sender_msgs_per_s: smtp_sender,
        smtp_sender_sessions,
        smtp_latency_ms: u64::try_from(opts.smtp_latency.as_millis()).unwrap_or(u64::MAX),
        smtp_sink_round_trip_ms: u64::try_from(opts.smtp_round_trip.as_millis()).unwrap_or(u64::MAX),
        smtp_round_trip_ms: u64::try_from(distant_round_trip.as_millis()).unwrap_or(u64::MAX),
        smtp_unpipelined_msgs_per_s: unpipelined,
        smtp_pipelined_msgs_per_s: pipelined,
    };
    println!(
        "  broker {broker:.0} msg/s, claim {claim:.0} rows/s, commits {commits:.0}/s, SMTP pool {}: the sender's client {smtp_sender:.0} mails/s, lettre's own pool {smtp:.0} mails/s (sink latency {} ms, round trip {} ms); autovacuum {autovacuum}",
        opts.smtp_pool,
        opts.smtp_latency.as_millis(),
        opts.smtp_round_trip.as_millis()
    );
    println!(
        "  the sender's client to a server {} ms away: {unpipelined:.0} mails/s without PIPELINING, {pipelined:.0} with it",
        distant_round_trip.as_millis()
    );

    println!(
        "2-3. delivery: {} invoices per ledger (COPY), the services until every due step is sent",
        opts.pipeline_invoices
    );
    let mut runs = Vec::new();
    let mut idle_input = None;
    let email_ledger = (
        opts.pipeline_invoices,
        opts.due_every.map_or(Shape::Pipeline, Shape::Sparse),
    );
    for (i, (label, layout)) in layouts(&opts.copies).iter().enumerate() {
        let (run, kept) = delivery_run(&opts, &env, label, layout, email_ledger, ticks, i == 0).await?;
        runs.push(run);
        if kept.is_some() {
            idle_input = kept;
        }
    }
    println!("5. payment-to-cancel idle, intake");
    let idle = match idle_input {
        Some(input) => idle_run(&opts, &env, input).await?,
        None => anyhow::bail!("the run-all ledger was not kept"),
    };
    let channels = if opts.channel_invoices > 0 {
        println!(
            "6. other channels: {} invoices, each with a text message or a registered letter due, run all, through the SMS gateway's and postal API's fakes",
            opts.channel_invoices
        );
        anyhow::ensure!(
            env.providers.seen("sms").requests == 0 && env.providers.seen("letters").requests == 0,
            "the email runs reached the SMS gateway or the postal API"
        );
        let layout: Layout = vec![("all".to_string(), vec!["all"])];
        let ledger = (opts.channel_invoices, Shape::Channels);
        let label = "run all, text messages and letters";
        let (run, _) = delivery_run(&opts, &env, label, &layout, ledger, ticks, false).await?;
        let letters_due = opts.channel_invoices / 2;
        let (sms, letters) = (env.providers.seen("sms"), env.providers.seen("letters"));
        println!(
            "  the SMS gateway received {} requests ({} keys), the postal API {} ({} keys)",
            sms.requests, sms.distinct_keys, letters.requests, letters.distinct_keys
        );
        Some(ChannelsRun {
            run,
            sms_due: opts.channel_invoices - letters_due,
            letters_due,
            sms,
            letters,
        })
    } else {
        None
    };
    println!("4. scheduler pass with nothing due");
    let mut passes = Vec::new();
    for &size in &opts.pass_sizes {
        for shape in [Shape::Future, Shape::Overdue] {
            passes.push(pass_run(&opts, size, shape).await?);
        }
    }
    let report = Report {
        at: Utc::now(),
        command: crate::procs::command_line(),
        revision: crate::procs::revision(),
        settings: passed_settings(),
        smoke: opts.smoke,
        autovacuum,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        hops_per_reminder: HOPS_PER_REMINDER,
        ceilings,
        runs,
        idle,
        channels,
        passes,
    };
    let rows: Vec<Row> = report.rows();
    crate::report::print(&report, &rows);
    let written = crate::report::write(&report, &rows, &opts.out)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Where results go: `bench/results` of the workspace when run from it.
pub fn default_out() -> PathBuf {
    let here = Path::new("bench/results");
    if Path::new("bench/Cargo.toml").exists() {
        here.to_path_buf()
    } else {
        PathBuf::from("results")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relance_domain::policy::{DunningPolicy, DEFAULT_POLICY_TOML};

    #[test]
    fn zero_copies_leaves_only_run_all() {
        let labels =
            |copies: &[usize]| -> Vec<String> { layouts(copies).into_iter().map(|(l, _)| l).collect() };
        assert_eq!(labels(&[0]), vec!["run all"]);
        assert_eq!(
            labels(&[1, 2]),
            vec![
                "run all",
                "separate, 1 renderer + 1 sender",
                "separate, 2 renderer + 2 sender"
            ]
        );
        let (_, two) = &layouts(&[2])[1];
        let processes: Vec<&str> = two.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            processes,
            vec![
                "scheduler",
                "payments",
                "renderer-1",
                "sender-1",
                "renderer-2",
                "sender-2"
            ]
        );
    }

    #[test]
    fn the_bench_policy_opens_every_window_all_day_every_day() {
        let policy = DunningPolicy::parse(&open_policy(), "bench policy").unwrap();
        let default = DunningPolicy::parse(DEFAULT_POLICY_TOML, "default policy").unwrap();
        assert_eq!(policy.windows.len(), default.windows.len());
        for (name, window) in &policy.windows {
            assert_eq!(window.weekdays.len(), 7, "{name} misses a day");
            assert_eq!(window.opens, chrono::NaiveTime::MIN, "{name} opens late");
            assert_eq!(
                window.closes,
                relance_domain::window::END_OF_DAY,
                "{name} closes early"
            );
            // A Saturday or a public holiday must not defer a due step: the bench runs any day.
            assert!(!window.business_days_only, "{name} skips weekends and holidays");
        }
    }

    #[test]
    fn latency_percentiles() {
        let l = Latency::of((1..=100).map(f64::from).collect());
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50_ms, 51.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(Latency::of(Vec::new()).p99_ms, 0.0);
    }
}
