//! `writes`: what the database spends on relance's most frequent write, a journal entry with
//! the message it announces (`journal::append_with_message`: about three per email reminder,
//! the costliest statement of a delivery run's profile), written as relance writes it, one
//! statement per entry, against the same rows written set-wise, one statement for all the
//! entries of a transaction (the plan of docs/scaling.md, "Where the limit moves next").
//!
//! Each transaction holds `batch` entries about as many invoices, as a group commit of
//! `batch` reminders does, and commits: the journal's links and the events' numbers run at
//! commit in both modes (the same functions). `clients` connections commit such transactions
//! for `seconds`, mode after mode, `rounds` times, each mode first every other round (the
//! machine's speed drifts: compare the modes within a round). Per entry: wall time, PostgreSQL's CPU (its processes on this
//! machine) and, where the server loads `pg_stat_statements`, the statements' time split
//! into the inserts and the work at commit.

use crate::{procs, profile};
use anyhow::Context;
use chrono::Utc;
use relance_storage::journal;
use relance_storage::outbox::{Destination, OutgoingMessage};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Clone, Copy)]
pub struct Options {
    pub clients: usize,
    pub seconds: u64,
    pub batch: usize,
    pub invoices: u64,
    pub rounds: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    /// `journal::append_with_message`, once per entry: relance's own code.
    OneByOne,
    /// One `INSERT ... SELECT FROM unnest(...)` per table for the whole transaction.
    SetWise,
}

#[derive(Debug, Serialize)]
struct Measured {
    round: usize,
    mode: Mode,
    entries: u64,
    entries_per_s: f64,
    /// PostgreSQL's CPU time (every `postgres` process of this machine) per entry.
    postgres_cpu_ms_each: Option<f64>,
    /// Statement time per entry: the inserts, then the commit-time link and numbering.
    insert_ms_each: Option<f64>,
    commit_ms_each: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    bench: &'static str,
    at: String,
    /// The command line that produced the report.
    command: String,
    /// The checkout it ran in.
    revision: Option<String>,
    clients: usize,
    seconds: u64,
    batch: usize,
    invoices: u64,
    runs: Vec<Measured>,
}

pub async fn run(db: PgPool, url: String, opts: Options, out: &Path) -> anyhow::Result<()> {
    println!(
        "journal entries with their events: {} clients, transactions of {} entries, {} s per mode, {} rounds, {} invoices",
        opts.clients, opts.batch, opts.seconds, opts.rounds, opts.invoices
    );
    let pool = relance_storage::connect(&url, opts.clients as u32).await?;
    let ticks = procs::clock_ticks();
    let local_postgres = procs::cpu_ticks_of("postgres") > 0;
    let mut runs = Vec::new();
    for round in 1..=opts.rounds {
        // Each mode goes first every other round: the machine's drift favours neither.
        let order = if round % 2 == 1 {
            [Mode::OneByOne, Mode::SetWise]
        } else {
            [Mode::SetWise, Mode::OneByOne]
        };
        for mode in order {
            let profiled = profile::start(&db).await.is_ok();
            let cpu_before = procs::cpu_ticks_of("postgres");
            let started = Instant::now();
            let entries = drive(&pool, mode, opts).await?;
            let wall = started.elapsed().as_secs_f64();
            let cpu = procs::cpu_ticks_of("postgres").saturating_sub(cpu_before) as f64 / ticks;
            let per = |x: f64| x / entries.max(1) as f64;
            let (insert_ms, commit_ms) = if profiled {
                statement_time(&db).await?
            } else {
                (None, None)
            };
            let measured = Measured {
                round,
                mode,
                entries,
                entries_per_s: entries as f64 / wall,
                postgres_cpu_ms_each: local_postgres.then(|| per(cpu * 1000.0)),
                insert_ms_each: insert_ms.map(per),
                commit_ms_each: commit_ms.map(per),
            };
            print_row(&measured);
            runs.push(measured);
        }
    }
    pool.close().await;
    let report = Report {
        bench: "writes",
        at: Utc::now().to_rfc3339(),
        command: crate::procs::command_line(),
        revision: crate::procs::revision(),
        clients: opts.clients,
        seconds: opts.seconds,
        batch: opts.batch,
        invoices: opts.invoices,
        runs,
    };
    let path = write(&report, out)?;
    println!("written: {}", path.display());
    Ok(())
}

fn print_row(m: &Measured) {
    let show = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    println!(
        "  round {} {:<11} {:>9.0} entries/s  PostgreSQL CPU {} ms/entry  statements: inserts {} + commit {} ms/entry",
        m.round,
        match m.mode {
            Mode::OneByOne => "one-by-one",
            Mode::SetWise => "set-wise",
        },
        m.entries_per_s,
        show(m.postgres_cpu_ms_each),
        show(m.insert_ms_each),
        show(m.commit_ms_each),
    );
}

/// The inserts' time and the commit-time functions' time since [`profile::start`] (top-level
/// statements of this database; the functions' own statements are counted in their callers).
async fn statement_time(db: &PgPool) -> anyhow::Result<(Option<f64>, Option<f64>)> {
    let (insert, commit): (Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT sum(total_exec_time) FILTER (WHERE query ILIKE '%INSERT INTO journal%'),
                sum(total_exec_time) FILTER (WHERE query ~ '^SELECT (journal_link_pending|outbox_sequence_pending)\\(\\)')
         FROM pg_stat_statements
         WHERE toplevel AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(db)
    .await
    .context("reading pg_stat_statements")?;
    Ok((insert, commit))
}

/// `clients` tasks committing transactions of `batch` entries until `seconds` have passed;
/// returns the entries committed.
async fn drive(pool: &PgPool, mode: Mode, opts: Options) -> anyhow::Result<u64> {
    let until = Instant::now() + Duration::from_secs(opts.seconds);
    let mut tasks = Vec::new();
    for client in 0..opts.clients {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut committed = 0u64;
            let mut n = client as u64;
            while Instant::now() < until {
                let invoices: Vec<String> = (0..opts.batch)
                    .map(|i| {
                        // Spread over the ledger: consecutive transactions touch other invoices.
                        n = n
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407 + i as u64);
                        format!("W-{:07}", (n >> 33) % opts.invoices.max(1))
                    })
                    .collect();
                let mut tx = pool.begin().await.context("starting a transaction")?;
                match mode {
                    Mode::OneByOne => one_by_one(&mut tx, &invoices).await?,
                    Mode::SetWise => set_wise(&mut tx, &invoices).await?,
                }
                tx.commit().await.context("committing")?;
                committed += invoices.len() as u64;
            }
            anyhow::Ok(committed)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.context("a client panicked")??;
    }
    Ok(total)
}

/// What a delivered reminder's entry says and the event it announces, as relance writes them.
fn entry_of(invoice: &str) -> (serde_json::Value, OutgoingMessage) {
    let detail = serde_json::json!({
        "channel": "email",
        "template": "firm",
        "message_id": format!("<{}@relance.example>", Uuid::new_v4()),
        "delivery_proof": "250 2.0.0 Ok: queued as 4XkQ2T0q1Zz",
    });
    let message_id = Uuid::new_v4();
    let payload = serde_json::json!({
        "version": 1,
        "event_id": message_id,
        "event_type": "reminder.sent",
        "invoice_number": invoice,
        "step_id": Uuid::new_v4(),
        "channel": "email",
        "template": "firm",
        "occurred_at": Utc::now(),
    });
    let message = OutgoingMessage {
        destination: Destination::Events,
        routing_key: "reminder.sent".into(),
        message_id,
        correlation_id: invoice.to_string(),
        payload,
        headers: BTreeMap::new(),
    };
    (detail, message)
}

async fn one_by_one(tx: &mut sqlx::PgConnection, invoices: &[String]) -> anyhow::Result<()> {
    let now = Utc::now();
    for invoice in invoices {
        let (detail, message) = entry_of(invoice);
        journal::append_with_message(
            &mut *tx,
            now,
            invoice,
            None,
            "reminder.sent",
            detail,
            Some(&message),
        )
        .await?;
    }
    Ok(())
}

/// The same rows in one statement. The content hashes are stand-ins (unique, 64 hex
/// digits): the link only needs one per entry, and computing relance's (in Rust) is not the
/// database's work.
async fn set_wise(tx: &mut sqlx::PgConnection, invoices: &[String]) -> anyhow::Result<()> {
    let now = Utc::now();
    let mut details = Vec::new();
    let mut hashes = Vec::new();
    let mut message_ids = Vec::new();
    let mut payloads = Vec::new();
    for invoice in invoices {
        let (detail, message) = entry_of(invoice);
        details.push(detail);
        hashes.push(format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()));
        message_ids.push(message.message_id);
        payloads.push(message.payload);
    }
    sqlx::query(
        "WITH entry AS (
             INSERT INTO journal (at, invoice_number, step_id, action, detail, document_sha256, content_sha256)
             SELECT $1, invoice, NULL, 'reminder.sent', detail, NULL, hash
             FROM unnest($2::text[], $3::jsonb[], $4::text[]) AS e(invoice, detail, hash))
         INSERT INTO outbox (destination, routing_key, message_id, correlation_id, payload, headers, created_at)
         SELECT 'events', 'reminder.sent', message_id, invoice, payload, '{}', $1
         FROM unnest($2::text[], $5::uuid[], $6::jsonb[]) AS m(invoice, message_id, payload)",
    )
    .bind(now)
    .bind(invoices)
    .bind(&details)
    .bind(&hashes)
    .bind(&message_ids)
    .bind(&payloads)
    .execute(tx)
    .await
    .context("writing the entries and their events set-wise")?;
    Ok(())
}

fn write(report: &Report, out: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let stamp = Utc::now().format("%Y%m%dT%H%M");
    let path = out.join(format!("writes-{}-{stamp}.json", report.batch));
    let json = serde_json::to_string_pretty(report).context("writing the report")?;
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
