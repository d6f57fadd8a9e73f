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
        "command": crate::procs::command_line(),
        "revision": crate::procs::revision(),
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
    let svg_path = path.with_extension("svg");
    let latest = latest_passes(&out)?;
    std::fs::write(&svg_path, chart(&latest, &timing, &out, invoices, shape_name, at))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    println!("wrote {}", svg_path.display());
    Ok(())
}

/// The latest pass result of each shape and ledger size under `out` (this run's included).
#[derive(Debug, Clone, PartialEq)]
struct LatestPass {
    shape: String,
    invoices: i64,
    median_ms: f64,
    at: chrono::DateTime<chrono::Utc>,
}

fn latest_passes(out: &std::path::Path) -> anyhow::Result<Vec<LatestPass>> {
    let mut latest: Vec<LatestPass> = Vec::new();
    let entries = std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", out.display()))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some(rest) = name.strip_prefix("pass-").and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        let shape = rest.split('-').next().unwrap_or_default();
        // A file that is not a pass result (or not one this version reads) is left out of the
        // chart: it must not fail the run, whose own result is written already.
        let value = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
        let found = value.as_ref().and_then(|value| {
            Some(LatestPass {
                shape: shape.to_string(),
                invoices: value["invoices"].as_i64()?,
                median_ms: value["timing"]["median_ms"].as_f64()?,
                at: value["at"].as_str()?.parse().ok()?,
            })
        });
        let Some(found) = found else {
            eprintln!(
                "  {}: not a pass result the chart reads; left out",
                path.display()
            );
            continue;
        };
        match latest
            .iter_mut()
            .find(|l| l.shape == found.shape && l.invoices == found.invoices)
        {
            Some(kept) if kept.at < found.at => *kept = found,
            Some(_) => {}
            None => latest.push(found),
        }
    }
    latest.sort_by(|a, b| (a.invoices, &a.shape).cmp(&(b.invoices, &b.shape)));
    Ok(latest)
}

/// The pass's target: under 50 ms, whatever the ledger's size.
const TARGET_MS: f64 = 50.0;

/// Left: the latest pass of each ledger size and shape found beside this run (is it flat?);
/// right: this run's pass job by job. Both against the 50 ms target (dashed).
fn chart(
    latest: &[LatestPass],
    timing: &PassTiming,
    out: &std::path::Path,
    invoices: i64,
    shape: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    use std::fmt::Write;
    let (plot_h, top, bar_w) = (220.0, 60.0, 26.0);
    let highest = latest
        .iter()
        .map(|l| l.median_ms)
        .chain(timing.jobs.iter().map(|(_, ms)| *ms))
        .fold(TARGET_MS * 1.2, f64::max);
    let y = |ms: f64| top + plot_h - ms / highest * plot_h;
    let sizes_w = 60.0 + latest.len() as f64 * (bar_w + 10.0);
    let jobs_x = sizes_w + 60.0;
    let width = (jobs_x + timing.jobs.len() as f64 * (bar_w + 44.0) + 40.0).max(1000.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{:.0}" font-family="sans-serif" font-size="11">"#,
        top + plot_h + 90.0
    );
    let _ = writeln!(
        s,
        r#"<text x="8" y="18" font-size="13" font-weight="bold">relance-bench pass {}: the scheduler pass with nothing due, median ms (target {TARGET_MS:.0} ms, dashed)</text>"#,
        at.format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(
        s,
        r#"<text x="8" y="36">left: latest pass of each ledger size under {} (blue: all in the future, orange: mostly overdue); right: this run, {invoices} invoices {shape}, job by job</text>"#,
        crate::report::escape(&out.display().to_string())
    );
    let _ = writeln!(
        s,
        r##"<line x1="40" y1="{t:.1}" x2="{:.0}" y2="{t:.1}" stroke="#c33" stroke-dasharray="5 3"/><text x="4" y="{:.1}" fill="#c33">{TARGET_MS:.0} ms</text>"##,
        width - 10.0,
        y(TARGET_MS) + 4.0,
        t = y(TARGET_MS)
    );
    let bar = |s: &mut String, x: f64, ms: f64, colour: &str, label: &str| {
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="{bar_w}" height="{:.1}" fill="{colour}"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{ms:.1}</text><text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            y(ms),
            (top + plot_h - y(ms)).max(1.0),
            x + bar_w / 2.0,
            y(ms) - 3.0,
            x + bar_w / 2.0,
            top + plot_h + 14.0,
        );
    };
    for (i, pass) in latest.iter().enumerate() {
        let colour = if pass.shape == "future" { "#58c" } else { "#e93" };
        let label = match pass.invoices {
            n if n >= 1_000_000 => format!("{}M", n / 1_000_000),
            n if n >= 1_000 => format!("{}k", n / 1_000),
            n => n.to_string(),
        };
        bar(
            &mut s,
            50.0 + i as f64 * (bar_w + 10.0),
            pass.median_ms,
            colour,
            &label,
        );
    }
    for (i, (job, ms)) in timing.jobs.iter().enumerate() {
        let x = jobs_x + i as f64 * (bar_w + 44.0);
        bar(&mut s, x, *ms, "#4a9", "");
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" transform="rotate(30 {:.1} {:.1})">{job}</text>"#,
            x,
            top + plot_h + 28.0,
            x,
            top + plot_h + 28.0
        );
    }
    s.push_str("</svg>\n");
    s
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn result(dir: &std::path::Path, name: &str, invoices: i64, median_ms: f64, at: &str) {
        let value =
            serde_json::json!({ "invoices": invoices, "at": at, "timing": { "median_ms": median_ms } });
        std::fs::write(dir.join(name), value.to_string()).unwrap();
    }

    #[test]
    fn the_chart_keeps_the_latest_pass_of_each_size_and_shape() {
        let dir = std::env::temp_dir().join(format!("relance-bench-pass-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        result(
            &dir,
            "pass-overdue-1000000-20261205T2247.json",
            1_000_000,
            6.0,
            "2026-12-05T22:47:00Z",
        );
        result(
            &dir,
            "pass-overdue-1000000-20261206T1353.json",
            1_000_000,
            12.0,
            "2026-12-06T13:53:00Z",
        );
        result(
            &dir,
            "pass-future-1000000-20261205T2251.json",
            1_000_000,
            5.7,
            "2026-12-05T22:51:00Z",
        );
        result(
            &dir,
            "pass-overdue-100000-20261205T2247.json",
            100_000,
            8.6,
            "2026-12-05T22:47:00Z",
        );
        std::fs::write(dir.join("pipeline-8000-20261206T1622.json"), "{}").unwrap();
        std::fs::write(dir.join("pass-overdue-5-20261207T0000.json"), "cut short").unwrap();
        let latest = latest_passes(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let kept: Vec<(&str, i64, f64)> = latest
            .iter()
            .map(|l| (l.shape.as_str(), l.invoices, l.median_ms))
            .collect();
        assert_eq!(
            kept,
            [
                ("overdue", 100_000, 8.6),
                ("future", 1_000_000, 5.7),
                ("overdue", 1_000_000, 12.0)
            ]
        );

        let timing = PassTiming {
            jobs: vec![("emit_due".into(), 3.0)],
            median_ms: 12.0,
            max_ms: 13.0,
            passes: 5,
        };
        let svg = chart(
            &latest,
            &timing,
            &dir,
            1_000_000,
            "mostly overdue",
            chrono::Utc::now(),
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for label in ["100k", "1M", "emit_due", "12.0", "50 ms"] {
            assert!(svg.contains(label), "{label} missing from the chart");
        }
    }
}
