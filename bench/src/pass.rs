//! One scheduler pass, timed job by job: the jobs of the scheduler's tick (ending broken
//! promises, emitting due steps, recovering leases, handing off, settling groups, expiring
//! call tasks), called as the tick calls them, on a ledger where nothing is due.

use anyhow::Context;
use relance_config::{Config, Settings};
use serde::Serialize;
use sqlx::PgPool;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct PassTiming {
    /// Median milliseconds of each job over the passes.
    pub jobs: Vec<(String, f64)>,
    pub median_ms: f64,
    pub max_ms: f64,
    pub passes: usize,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `passes` passes (after one untimed warm-up pass) against `db`.
pub async fn time_passes(db: &PgPool, database_url: &str, passes: usize) -> anyhow::Result<PassTiming> {
    let settings = Settings::from_vars([("DATABASE_URL".to_string(), database_url.to_string())])
        .context("the scheduler's settings")?;
    let config = Config::from_settings(settings).context("the scheduler's configuration")?;
    let mut per_job: Vec<(String, Vec<f64>)> = Vec::new();
    let mut totals = Vec::new();
    for round in 0..=passes {
        let times = one_pass(db, &config).await?;
        if round == 0 {
            continue;
        }
        totals.push(times.iter().map(|(_, t)| t.as_secs_f64() * 1000.0).sum::<f64>());
        for (name, time) in times {
            match per_job.iter_mut().find(|(n, _)| n == name) {
                Some((_, all)) => all.push(time.as_secs_f64() * 1000.0),
                None => per_job.push((name.to_string(), vec![time.as_secs_f64() * 1000.0])),
            }
        }
    }
    let max_ms = totals.iter().copied().fold(0.0, f64::max);
    Ok(PassTiming {
        jobs: per_job.into_iter().map(|(n, all)| (n, median(all))).collect(),
        median_ms: median(totals),
        max_ms,
        passes,
    })
}

async fn one_pass(db: &PgPool, config: &Config) -> anyhow::Result<Vec<(&'static str, Duration)>> {
    let s = &config.settings;
    let mut times = Vec::new();
    let started = Instant::now();
    relance_sequence::resume::end_broken_promises(db, config).await?;
    times.push(("end_broken_promises", started.elapsed()));
    let started = Instant::now();
    relance_scheduler::emission::emit_due_steps(db, config).await?;
    times.push(("emit_due_steps", started.elapsed()));
    let started = Instant::now();
    relance_scheduler::sweep::recover_expired_leases(db, config).await?;
    times.push(("recover_expired_leases", started.elapsed()));
    let started = Instant::now();
    let delay = relance_storage::handoff::HandOffDelay {
        after_days: s.handoff_after_days,
        postal_days: s.postal_delivery_days,
    };
    let terms = s.channels.interest_terms();
    relance_scheduler::handoff::hand_off_due(db, config.clock.now(), delay, s.scheduler_batch, &terms)
        .await?;
    times.push(("hand_off_due", started.elapsed()));
    let started = Instant::now();
    relance_scheduler::grouping::settle_groups(db, config).await?;
    times.push(("settle_groups", started.elapsed()));
    let started = Instant::now();
    relance_scheduler::calls::expire_call_tasks(db, config).await?;
    times.push(("expire_call_tasks", started.elapsed()));
    Ok(times)
}

/// `relance-bench pass`: one ledger of `invoices` in `shape` (loaded first when `load`, else
/// already in `db`, as an earlier run with `--keep` left it), its pass timed job by job,
/// printed and written as `pass-<shape>-<invoices>-<UTC time>.json` under `out`.
pub async fn run(
    db: PgPool,
    url: String,
    invoices: i64,
    shape: crate::ledger::Shape,
    passes: usize,
    out: std::path::PathBuf,
    load: bool,
) -> anyhow::Result<()> {
    let at = chrono::Utc::now();
    let loaded = if load {
        println!("loading {invoices} invoices, {} (COPY)", shape.describe());
        let loaded = crate::ledger::load(&db, invoices, shape, at).await?;
        println!(
            "  loaded in {:.0} s: {} steps, {} waiting, {} paused, {} hand-off pending",
            loaded.seconds, loaded.steps, loaded.waiting, loaded.paused, loaded.hand_off_pending
        );
        Some(loaded)
    } else {
        let counted: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices")
            .fetch_one(&db)
            .await
            .context("counting the kept ledger's invoices")?;
        anyhow::ensure!(
            counted == invoices,
            "the kept ledger has {counted} invoices, not the {invoices} of --invoices"
        );
        println!(
            "timing the kept ledger of {invoices} invoices, {}",
            shape.describe()
        );
        None
    };
    let size: String = sqlx::query_scalar("SELECT pg_size_pretty(pg_database_size(current_database()))")
        .fetch_one(&db)
        .await
        .context("reading the database's size")?;
    let timing = time_passes(&db, &url, passes).await?;
    println!(
        "scheduler pass with nothing due, {invoices} invoices {} (database {size}): median {:.1} ms, max {:.1} ms over {passes} passes",
        shape.describe(),
        timing.median_ms,
        timing.max_ms
    );
    for (job, ms) in &timing.jobs {
        println!("  {job:<24} {ms:>8.2} ms (median)");
    }
    let gauges_ms = time_gauges(&url).await?;
    println!("collections gauges (one scheduler copy, every RELANCE_METRICS_INTERVAL_MS): {gauges_ms:.0} ms (second of two computations)");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let shape_name = match shape {
        crate::ledger::Shape::Future => "future",
        _ => "overdue",
    };
    let path = out.join(format!(
        "pass-{shape_name}-{invoices}-{}.json",
        at.format("%Y%m%dT%H%M")
    ));
    let report = serde_json::json!({
        "at": at,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "invoices": invoices,
        "shape": shape.describe(),
        "database_size": size,
        "load_seconds": loaded.as_ref().map(|l| l.seconds),
        "loaded": loaded,
        "timing": timing,
        "gauges_ms": gauges_ms,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// How long the collections gauges take to compute on this ledger, as the leading scheduler
/// copy computes them: the second of two computations (the first warms the cache).
pub async fn time_gauges(url: &str) -> anyhow::Result<f64> {
    let mut lead = relance_storage::gauges::try_lead(url)
        .await?
        .context("the gauges' lock of the bench's database is taken")?;
    let now = chrono::Utc::now();
    relance_storage::gauges::figures(&mut lead, now).await?;
    let started = Instant::now();
    relance_storage::gauges::figures(&mut lead, now).await?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}
