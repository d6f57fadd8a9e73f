//! `relance-bench`: measures relance on a ledger of the size given, on the local services,
//! and prints each figure beside the machine's own ceiling measured in the same run.
//!
//! `retention`: a ledger's worth of published outbox rows and inbox records (a 1M-invoice
//! ledger by default, each invoice with the rows its life leaves behind), half of them past
//! their retention window; then relance's purge (`relance_storage::retention::purge`, in
//! batches of `RELANCE_RETENTION_BATCH` rows, as the scheduler runs it) against the ceiling:
//! one unbatched `DELETE` of the same rows. While the purge runs, the outbox relay's claim
//! query is timed, to show that a purge never makes the relay wait.
//!
//! It works in a database of its own (`relance_bench_<uuid>` beside `DATABASE_URL`'s), dropped
//! at the end.
//!
//! `pipeline`: the whole of relance (the real services, as processes) against the machine's
//! ceilings measured in the same run; see [`pipeline`] and bench/README.md.

mod ceilings;
mod console;
mod ledger;
mod pass;
mod pipeline;
mod procs;
mod profile;
mod providers;
mod report;
mod sink;
mod writes;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use clap::{Parser, Subcommand};
use sqlx::PgPool;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "relance's benchmarks, beside the machine's ceilings measured in the same run")]
struct Cli {
    /// PostgreSQL server to work on (a database of the bench's own is created on it).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/relance"
    )]
    database_url: String,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Retention of published outbox rows and inbox records on a large ledger.
    Retention {
        /// Invoices in the ledger.
        #[arg(long, default_value_t = 1_000_000)]
        invoices: i64,
        /// Outbox rows an invoice's life leaves (events and jobs: registered, due, rendered,
        /// sent, queued... for three steps and a thank-you).
        #[arg(long, default_value_t = 12)]
        outbox_per_invoice: i64,
        /// Inbox records an invoice's life leaves (the messages each service applied once).
        #[arg(long, default_value_t = 8)]
        inbox_per_invoice: i64,
        /// Rows deleted per statement (`RELANCE_RETENTION_BATCH`).
        #[arg(long, env = "RELANCE_RETENTION_BATCH", default_value_t = 10_000)]
        batch: i64,
        /// Folder of the JSON result (default: bench/results).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// The whole pipeline, the scheduler pass, payment-to-cancel and intake, each beside the
    /// machine's ceilings measured in the same run (see bench/README.md).
    Pipeline(PipelineArgs),
    /// The scheduler pass with nothing due on one ledger loaded in bulk, job by job (the
    /// figure `pipeline` gives per size, alone: for a ledger too large to load twice, or to
    /// keep the ledger and look at the plans).
    Pass {
        /// Invoices in the ledger.
        #[arg(long, default_value_t = 1_000_000)]
        invoices: i64,
        /// `overdue` (mostly overdue, waiting on later steps, pauses and hand-offs) or
        /// `future` (every invoice due in the future).
        #[arg(long, default_value = "overdue")]
        shape: String,
        /// Timed passes (after one warm-up).
        #[arg(long, default_value_t = 5)]
        passes: usize,
        /// Keep the bench's database afterwards (its URL is printed), to look at its plans.
        #[arg(long)]
        keep: bool,
        /// Folder of the JSON result (default: bench/results).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Time the pass on a ledger an earlier `--keep` left (its URL) instead of loading
        /// one: to time a large ledger again on a quiet machine. The database is left as is.
        #[arg(long)]
        ledger_url: Option<String>,
    },
    /// Each page and API of the collections console on a ledger loaded in bulk.
    Console {
        /// Invoices in the ledger.
        #[arg(long, default_value_t = 1_000_000)]
        invoices: i64,
        /// Timed fetches of each page (after one warm-up).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Keep the bench's database afterwards (its URL is printed), to look at its plans.
        #[arg(long)]
        keep: bool,
    },
    /// A journal entry with the event it announces (the costliest write of a delivery run),
    /// as relance writes it (a statement per entry) against set-wise (a statement per
    /// transaction), in transactions of `--batch` entries, as a group commit makes them.
    Writes {
        /// Connections committing at once.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Seconds each mode runs, per round.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Entries per transaction (a group commit's reminders).
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Invoices the entries are about (their chains and event counters).
        #[arg(long, default_value_t = 50_000)]
        invoices: u64,
        /// Times both modes run, one after the other.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Folder of the JSON result (default: bench/results).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(clap::Args)]
struct PipelineArgs {
    /// Ledger size: the scheduler pass is timed at 100k, 1M and 10M invoices, those up to
    /// this (this size itself when below 100k).
    #[arg(long, default_value_t = 1_000_000)]
    invoices: i64,
    /// Invoices of each delivery run's ledger (about a quarter have a step due): default
    /// `--invoices`, at most 40,000.
    #[arg(long)]
    pipeline_invoices: Option<i64>,
    /// Only one invoice in N of each delivery run's ledger has a step due (the others not
    /// due, waiting, paused or with a hand-off pending): a run over a large ledger
    /// (`--pipeline-invoices 1000000 --due-every 50`) that lasts minutes, to see the
    /// services' memory and the scheduler at that size.
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..))]
    due_every: Option<u32>,
    /// Scheduler pass sizes instead of those `--invoices` gives (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pass_sizes: Option<Vec<i64>>,
    /// Renderer and sender copies of the runs with one process per service (`0`: none, only
    /// `run all`: a large ledger's run in half the time).
    #[arg(long, value_delimiter = ',')]
    copies: Option<Vec<usize>>,
    /// Messages of the broker ceiling (a quarter of them for the SMTP ceiling).
    #[arg(long)]
    ceiling_messages: Option<u64>,
    /// lettre's pool for the SMTP ceiling: the mails a sender delivers at once, on as many
    /// connections (`RELANCE_SMTP_MAX_CONNECTIONS`).
    #[arg(long, env = "RELANCE_SMTP_MAX_CONNECTIONS", default_value_t = 16)]
    smtp_pool: u32,
    /// Milliseconds the SMTP sink takes to accept each message, as a real mail server does
    /// (0: at once). With a latency, a sender copy waits on the network rather than on the
    /// machine's cores: the runs with 1, 2, 4 copies show what copies add where the machine
    /// is not the limit.
    #[arg(long, default_value_t = 0)]
    smtp_latency_ms: u64,
    /// Milliseconds of network round trip to the SMTP sink of the delivery runs (0: none),
    /// as to a distant mail server: each batch of the sink's answers leaves that long after
    /// the commands it answers. The pipelining ceiling (the sender's client without and with
    /// PIPELINING announced) uses a sink this far (10 ms when 0).
    #[arg(long, default_value_t = 0)]
    smtp_round_trip_ms: u64,
    /// Payments timed at load, and as many idle.
    #[arg(long)]
    payments: Option<usize>,
    /// `invoice.issued` messages of the intake figure: default `--pipeline-invoices`, at most 5,000.
    #[arg(long)]
    intake: Option<i64>,
    /// Invoices of the other channels' run (`run all`, each with a text message or a
    /// registered letter due, through the SMS gateway's and postal API's fakes); 0: none.
    /// Default 1,000 (20 with `--smoke`).
    #[arg(long)]
    channel_invoices: Option<i64>,
    /// Longest wait for a run to deliver every due step, in seconds.
    #[arg(long, default_value_t = 1800)]
    deadline_secs: u64,
    /// The `relance` binary (default: the one beside relance-bench).
    #[arg(long)]
    relance_bin: Option<std::path::PathBuf>,
    /// Folder of the JSON and SVG results (default: bench/results).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// CI's check that it works: small ceilings and ledgers, 1 and 2 copies; no figure is meaningful.
    #[arg(long)]
    smoke: bool,
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
}

impl PipelineArgs {
    fn options(self, server_url: String) -> pipeline::Options {
        let pipeline_invoices = self.pipeline_invoices.unwrap_or(self.invoices.min(40_000));
        let pass_sizes = self.pass_sizes.unwrap_or_else(|| {
            let sizes: Vec<i64> = [100_000, 1_000_000, 10_000_000]
                .into_iter()
                .filter(|n| *n <= self.invoices)
                .collect();
            if sizes.is_empty() {
                vec![self.invoices]
            } else {
                sizes
            }
        });
        let smoke = self.smoke;
        pipeline::Options {
            server_url,
            amqp_url: self.amqp_url,
            pipeline_invoices,
            due_every: self.due_every,
            copies: self
                .copies
                .unwrap_or(if smoke { vec![1, 2] } else { vec![1, 2, 4] }),
            pass_sizes,
            ceiling_messages: self
                .ceiling_messages
                .unwrap_or(if smoke { 2_000 } else { 20_000 }),
            smtp_pool: self.smtp_pool,
            smtp_latency: std::time::Duration::from_millis(self.smtp_latency_ms),
            smtp_round_trip: std::time::Duration::from_millis(self.smtp_round_trip_ms),
            payments: self.payments.unwrap_or(if smoke { 5 } else { 30 }),
            intake: self.intake.unwrap_or(pipeline_invoices.min(5_000)),
            channel_invoices: self.channel_invoices.unwrap_or(if smoke { 20 } else { 1_000 }),
            deadline: std::time::Duration::from_secs(self.deadline_secs),
            relance_bin: self.relance_bin,
            out: self.out.unwrap_or_else(pipeline::default_out),
            smoke,
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.bench {
        Bench::Retention {
            invoices,
            outbox_per_invoice,
            inbox_per_invoice,
            batch,
            out,
        } => {
            let ledger = Ledger {
                invoices,
                outbox_per_invoice,
                inbox_per_invoice,
            };
            let out = out.unwrap_or_else(pipeline::default_out);
            with_bench_database(&cli.database_url, |db| retention(db, ledger, batch, out)).await
        }
        Bench::Pipeline(args) => pipeline::run(args.options(cli.database_url)).await,
        Bench::Pass {
            invoices,
            shape,
            passes,
            keep,
            out,
            ledger_url,
        } => {
            let shape = ledger::Shape::parse_pass(&shape)?;
            let out = out.unwrap_or_else(pipeline::default_out);
            match ledger_url {
                Some(url) => {
                    let db = relance_storage::connect(&url, 4).await?;
                    let timed = pass::run(db.clone(), url, invoices, shape, passes, out, false).await;
                    db.close().await;
                    timed
                }
                None => {
                    let bench = |db, url| pass::run(db, url, invoices, shape, passes, out, true);
                    with_bench_database_url(&cli.database_url, keep, bench).await
                }
            }
        }
        Bench::Writes {
            clients,
            seconds,
            batch,
            invoices,
            rounds,
            out,
        } => {
            let opts = writes::Options {
                clients: clients.max(1),
                seconds,
                batch: batch.max(1),
                invoices,
                rounds: rounds.max(1),
            };
            let out = out.unwrap_or_else(pipeline::default_out);
            let bench = |db, url| async move { writes::run(db, url, opts, &out).await };
            with_bench_database_url(&cli.database_url, false, bench).await
        }
        Bench::Console { invoices, runs, keep } => {
            let bench = |db, url| console::run(db, url, invoices, runs);
            with_bench_database_url(&cli.database_url, keep, bench).await
        }
    }
}

/// Runs `bench` on a fresh, migrated database of its own, dropped afterwards.
async fn with_bench_database<F, Fut>(server_url: &str, bench: F) -> anyhow::Result<()>
where
    F: FnOnce(PgPool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    with_bench_database_url(server_url, false, |db, _| bench(db)).await
}

/// As [`with_bench_database`], giving the database's URL too; with `keep`, the database is
/// left in place (and its URL printed).
async fn with_bench_database_url<F, Fut>(server_url: &str, keep: bool, bench: F) -> anyhow::Result<()>
where
    F: FnOnce(PgPool, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let base = server_url
        .rsplit_once('/')
        .map(|(server, _)| server)
        .context("DATABASE_URL has no database name")?;
    let url = format!("{base}/relance_bench_{}", uuid::Uuid::new_v4().simple());
    relance_storage::migrate(&url).await?;
    let db = relance_storage::connect(&url, 4).await?;
    let outcome = bench(db.clone(), url.clone()).await;
    db.close().await;
    if keep {
        println!("the bench's database is kept: {url}");
    } else {
        relance_storage::drop_database(&url).await?;
    }
    outcome
}

#[derive(Clone, Copy)]
struct Ledger {
    invoices: i64,
    outbox_per_invoice: i64,
    inbox_per_invoice: i64,
}

impl Ledger {
    fn outbox_rows(self) -> i64 {
        self.invoices * self.outbox_per_invoice
    }
    fn inbox_rows(self) -> i64 {
        self.invoices * self.inbox_per_invoice
    }
}

/// Fills the outbox and the inbox: half the rows of each are older than `cutoff` (and so
/// due for removal), half newer; the newest 1,000 outbox rows are not published yet (a
/// purge must never touch them, whatever their age).
async fn fill(db: &PgPool, ledger: Ledger, cutoff: DateTime<Utc>, round: u8) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO outbox (destination, routing_key, message_id, correlation_id, payload, created_at, published_at, sequence)
         SELECT 'events', 'reminder.sent', gen_random_uuid(), 'F-' || (n % $2),
                '{\"version\":1,\"event_type\":\"reminder.sent\"}'::jsonb,
                $3 + (n - $1 / 2) * interval '1 millisecond',
                CASE WHEN n > $1 - 1000 THEN NULL ELSE $3 + (n - $1 / 2) * interval '1 millisecond' END,
                n
         FROM generate_series(1, $1) AS n",
    )
    .bind(ledger.outbox_rows())
    .bind(ledger.invoices)
    .bind(cutoff)
    .execute(db)
    .await
    .context("filling the outbox")?;
    sqlx::query(
        "INSERT INTO processed_messages (consumer, message_id, processed_at)
         SELECT 'payments', 'evt-' || $3 || '-' || n, $2 + (n - $1 / 2) * interval '1 millisecond'
         FROM generate_series(1, $1) AS n",
    )
    .bind(ledger.inbox_rows())
    .bind(cutoff)
    .bind(i32::from(round))
    .execute(db)
    .await
    .context("filling the inbox")?;
    for table in ["outbox", "processed_messages"] {
        sqlx::query(&format!("ANALYZE {table}"))
            .execute(db)
            .await
            .with_context(|| format!("analyzing {table}"))?;
    }
    Ok(())
}

async fn count(db: &PgPool, sql: &str) -> anyhow::Result<i64> {
    sqlx::query_scalar(sql)
        .fetch_one(db)
        .await
        .with_context(|| format!("counting: {sql}"))
}

/// The outbox relay's claim, timed (what a purge must not slow down).
async fn relay_claim(db: &PgPool) -> anyhow::Result<std::time::Duration> {
    let started = Instant::now();
    let mut tx = db.begin().await?;
    sqlx::query(
        "SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await
    .context("the relay's claim")?;
    tx.rollback().await?;
    Ok(started.elapsed())
}

async fn retention(db: PgPool, ledger: Ledger, batch: i64, out: std::path::PathBuf) -> anyhow::Result<()> {
    let cutoff = Utc::now() - Duration::days(60);
    println!(
        "relance-bench retention: a ledger of {} invoices: {} outbox rows, {} inbox records; batch {batch}",
        ledger.invoices,
        ledger.outbox_rows(),
        ledger.inbox_rows()
    );
    let filling = Instant::now();
    fill(&db, ledger, cutoff, 1).await?;
    println!("filled in {:.1} s", filling.elapsed().as_secs_f64());
    let due: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM outbox WHERE published_at < $1)
              + (SELECT count(*) FROM processed_messages WHERE processed_at < $1)",
    )
    .bind(cutoff)
    .fetch_one(&db)
    .await
    .context("counting the rows past their window")?;
    let recent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at >= $1")
        .bind(cutoff)
        .fetch_one(&db)
        .await
        .context("counting the recent rows")?;

    // relance's purge, with the relay's claim timed beside it.
    let purging = {
        let db = db.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let purged = relance_storage::retention::purge(&db, cutoff, cutoff, batch).await;
            (purged, started.elapsed())
        })
    };
    let mut claims = Vec::new();
    while !purging.is_finished() {
        claims.push(relay_claim(&db).await?);
    }
    let (purged, purge_time) = purging.await.context("the purge task")?;
    let purged = purged?;
    let removed = purged.outbox + purged.inbox;
    anyhow::ensure!(
        removed == u64::try_from(due)?,
        "the purge left rows past their window"
    );
    anyhow::ensure!(
        count(&db, "SELECT count(*) FROM outbox WHERE published_at IS NULL").await? == 1000
            && count(&db, "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL").await? == recent,
        "the purge touched unpublished or recent outbox rows"
    );
    claims.sort();
    let p99 = claims
        .get(claims.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or_default();
    let max = claims.last().copied().unwrap_or_default();

    // The ceiling: the same number of rows removed by one unbatched statement per table.
    fill(&db, ledger, cutoff, 2).await?;
    let ceiling_started = Instant::now();
    let raw: u64 = sqlx::query("DELETE FROM outbox WHERE published_at < $1")
        .bind(cutoff)
        .execute(&db)
        .await
        .context("the unbatched outbox delete")?
        .rows_affected()
        + sqlx::query("DELETE FROM processed_messages WHERE processed_at < $1")
            .bind(cutoff)
            .execute(&db)
            .await
            .context("the unbatched inbox delete")?
            .rows_affected();
    let ceiling_time = ceiling_started.elapsed();

    let rate = |rows: u64, time: std::time::Duration| rows as f64 / time.as_secs_f64().max(1e-9);
    println!("| figure | relance | ceiling (one unbatched DELETE) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| rows removed (of {due} past their window) | {removed} (outbox {}, inbox {}) | {raw} | |",
        purged.outbox, purged.inbox
    );
    println!(
        "| removal rate | {:.0} rows/s in {:.1} s | {:.0} rows/s in {:.1} s | {:.0}% |",
        rate(removed, purge_time),
        purge_time.as_secs_f64(),
        rate(raw, ceiling_time),
        ceiling_time.as_secs_f64(),
        100.0 * rate(removed, purge_time) / rate(raw, ceiling_time).max(1e-9)
    );
    println!(
        "| relay claim during the purge | {} claims, p99 {:.1} ms, max {:.1} ms | | |",
        claims.len(),
        p99.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let at = Utc::now();
    let path = out.join(format!(
        "retention-{}-{}.json",
        ledger.invoices,
        at.format("%Y%m%dT%H%M")
    ));
    let report = serde_json::json!({
        "bench": "retention",
        "at": at,
        "command": crate::procs::command_line(),
        "revision": crate::procs::revision(),
        "invoices": ledger.invoices,
        "batch": batch,
        "past_window": due,
        "removed": { "outbox": purged.outbox, "inbox": purged.inbox },
        "purge_seconds": purge_time.as_secs_f64(),
        "purge_rows_per_s": rate(removed, purge_time),
        "ceiling_rows": raw,
        "ceiling_seconds": ceiling_time.as_secs_f64(),
        "ceiling_rows_per_s": rate(raw, ceiling_time),
        "relay_claims_during_purge": claims.len(),
        "relay_claim_p99_ms": p99.as_secs_f64() * 1000.0,
        "relay_claim_max_ms": max.as_secs_f64() * 1000.0,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
