//! The pipeline's report: every figure beside its ceiling (or the issue's target) as a ratio,
//! printed as a Markdown table, written as JSON and as a small SVG bar chart of the ratios.

use crate::ceilings::Ceilings;
use crate::pipeline::{ChannelsRun, DeliveryRun, Idle, PassRun};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub at: DateTime<Utc>,
    pub command: String,
    /// The checkout it ran in ([`crate::procs::revision`]).
    pub revision: Option<String>,
    /// The caller's `RELANCE_*` settings the services were given (the rest are defaults):
    /// how a run comparing a setting's before and after tells which is which.
    pub settings: Vec<String>,
    pub smoke: bool,
    /// PostgreSQL's `autovacuum` setting during the run (as shipped: on).
    pub autovacuum: String,
    pub cores: usize,
    pub hops_per_reminder: f64,
    pub ceilings: Ceilings,
    pub runs: Vec<DeliveryRun>,
    pub idle: Idle,
    /// The other channels' run (text messages and registered letters), when asked for.
    pub channels: Option<ChannelsRun>,
    pub passes: Vec<PassRun>,
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub figure: String,
    pub relance: String,
    pub ceiling: String,
    /// relance's figure over the ceiling (throughputs: higher is better) or over the target
    /// (latencies, pass times: above 1 misses it).
    pub ratio: Option<f64>,
}

fn row(figure: String, relance: String, ceiling: String, ratio: Option<f64>) -> Row {
    Row {
        figure,
        relance,
        ceiling,
        ratio,
    }
}

impl Report {
    /// The value the services ran with for setting `name`: the caller's, else relance's
    /// default.
    fn setting(&self, name: &str) -> String {
        let given = self
            .settings
            .iter()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='));
        given
            .or_else(|| relance_config::variables::variable(name)?.default.value())
            .unwrap_or("unset")
            .to_string()
    }

    pub fn rows(&self) -> Vec<Row> {
        let c = &self.ceilings;
        let per_reminder_ceiling = c.broker_msgs_per_s / self.hops_per_reminder;
        let mut rows = Vec::new();
        for r in &self.runs {
            rows.push(row(
                format!("email reminders/s, {}", r.layout),
                format!("{:.1} ({} sent in {:.1} s)", r.reminders_per_s, r.sent, r.seconds),
                format!(
                    "broker {:.0} msg/s / {} hops = {per_reminder_ceiling:.0}",
                    c.broker_msgs_per_s, self.hops_per_reminder
                ),
                Some(r.reminders_per_s / per_reminder_ceiling.max(1e-9)),
            ));
            rows.push(row(
                format!("due-to-sent, {}", r.layout),
                format!(
                    "p50 {:.0} ms, p99 {:.0} ms",
                    r.due_to_sent.p50_ms, r.due_to_sent.p99_ms
                ),
                String::new(),
                None,
            ));
            let commit_bound = c.pg_commits_per_s / r.transactions_per_reminder.max(1e-9);
            rows.push(row(
                format!("database transactions per reminder, {}", r.layout),
                format!("{:.1}", r.transactions_per_reminder),
                format!(
                    "{:.0} one-row commits/s -> {commit_bound:.0} reminders/s (target <= 4 each)",
                    c.pg_commits_per_s
                ),
                Some(r.reminders_per_s / commit_bound.max(1e-9)),
            ));
            rows.push(row(
                format!("reminder_steps row updates per reminder, {}", r.layout),
                format!(
                    "{:.1}, {:.0}% HOT (no index entry written)",
                    r.step_updates_per_reminder,
                    r.step_updates_hot_share * 100.0
                ),
                String::new(),
                None,
            ));
            let total_cpu = r.relance_cpu_ms_per_reminder
                + r.postgres_cpu_ms_per_reminder
                + r.rabbitmq_cpu_ms_per_reminder;
            let cpu_bound = self.cores as f64 * 1000.0 / total_cpu.max(1e-9);
            let services: Vec<String> = r
                .cpu_ms_per_reminder
                .iter()
                .map(|(s, ms)| format!("{s} {ms:.2}"))
                .collect();
            rows.push(row(
                format!("CPU ms per reminder, {}", r.layout),
                format!(
                    "relance {:.2} ({}), PostgreSQL {:.2}, RabbitMQ {:.2}",
                    r.relance_cpu_ms_per_reminder,
                    services.join(", "),
                    r.postgres_cpu_ms_per_reminder,
                    r.rabbitmq_cpu_ms_per_reminder
                ),
                format!("{} cores -> {cpu_bound:.0} reminders/s if CPU-bound", self.cores),
                Some(r.reminders_per_s / cpu_bound.max(1e-9)),
            ));
            rows.push(row(
                format!("SMTP, {}", r.layout),
                format!("{} mails in {} sessions", r.smtp_accepted, r.smtp_sessions),
                format!(
                    "the sender's SMTP client, pool {}, sink latency {} ms, round trip {} ms: {:.0} mails/s ({} sessions; lettre's own pool: {:.0} mails/s in {} sessions)",
                    c.smtp_pool,
                    c.smtp_latency_ms,
                    c.smtp_sink_round_trip_ms,
                    c.smtp_sender_msgs_per_s,
                    c.smtp_sender_sessions,
                    c.smtp_msgs_per_s,
                    c.smtp_sessions
                ),
                Some(r.reminders_per_s / c.smtp_sender_msgs_per_s.max(1e-9)),
            ));
            if let Some(p) = &r.payment_to_cancel_at_load {
                rows.push(row(
                    format!("payment-to-cancel at load, {}", r.layout),
                    format!(
                        "p50 {:.0} ms, p99 {:.0} ms ({} payments)",
                        p.p50_ms, p.p99_ms, p.samples
                    ),
                    "target p99 < 1000 ms".to_string(),
                    (p.samples > 0).then_some(p.p99_ms / 1000.0),
                ));
            }
            let memory: Vec<String> = r
                .peak_memory_mib
                .iter()
                .map(|(p, mib)| format!("{p} {mib:.0}"))
                .collect();
            rows.push(row(
                format!("messages that found the database pool busy, {}", r.layout),
                format!("{} retries ({} reminders sent)", r.pool_busy_retries, r.sent),
                format!(
                    "RELANCE_DB_POOL_SIZE {} per service, RELANCE_PREFETCH {}",
                    self.setting("RELANCE_DB_POOL_SIZE"),
                    self.setting("RELANCE_PREFETCH")
                ),
                None,
            ));
            rows.push(row(
                format!("peak memory MiB, {}", r.layout),
                memory.join(", "),
                String::new(),
                None,
            ));
        }
        if let Some(all) = self.runs.first() {
            rows.push(row(
                "emission vs the claim ceiling, run all".to_string(),
                format!("{:.1} reminders/s", all.reminders_per_s),
                format!(
                    "{:.0} rows/s claimed (SKIP LOCKED, batches of {})",
                    c.pg_claim_rows_per_s, c.pg_claim_batch
                ),
                Some(all.reminders_per_s / c.pg_claim_rows_per_s.max(1e-9)),
            ));
        }
        let separate: Vec<&DeliveryRun> = self.runs.iter().skip(1).collect();
        if let Some(one) = separate.first() {
            for more in separate.iter().skip(1) {
                rows.push(row(
                    format!("scaling: {} vs {}", more.layout, one.layout),
                    format!("{:.2}x", more.reminders_per_s / one.reminders_per_s.max(1e-9)),
                    "target >= 1.6x for 2 copies".to_string(),
                    None,
                ));
            }
        }
        rows.push(row(
            format!(
                "SMTP to a server {} ms away, the sender's client, pool {}",
                c.smtp_round_trip_ms, c.smtp_pool
            ),
            format!("{:.0} mails/s with PIPELINING", c.smtp_pipelined_msgs_per_s),
            format!(
                "{:.0} mails/s one command at a time",
                c.smtp_unpipelined_msgs_per_s
            ),
            Some(c.smtp_pipelined_msgs_per_s / c.smtp_unpipelined_msgs_per_s.max(1e-9)),
        ));
        let p = &self.idle.payment_to_cancel;
        rows.push(row(
            "payment-to-cancel idle, run all".to_string(),
            format!(
                "p50 {:.0} ms, p99 {:.0} ms ({} payments)",
                p.p50_ms, p.p99_ms, p.samples
            ),
            "target p99 < 100 ms".to_string(),
            (p.samples > 0).then_some(p.p99_ms / 100.0),
        ));
        let intake_ceiling = c.broker_msgs_per_s / 2.0;
        rows.push(row(
            "intake, invoice.issued stored, run all".to_string(),
            format!(
                "{:.0} invoices/s ({} invoices)",
                self.idle.intake_per_s, self.idle.intake_invoices
            ),
            format!(
                "broker {:.0} msg/s / 2 hops = {intake_ceiling:.0}",
                c.broker_msgs_per_s
            ),
            Some(self.idle.intake_per_s / intake_ceiling.max(1e-9)),
        ));
        if let Some(ch) = &self.channels {
            rows.push(row(
                "text messages and registered letters/s, run all".to_string(),
                format!(
                    "{:.1} ({} sent in {:.1} s: {} SMS, {} letters)",
                    ch.run.reminders_per_s, ch.run.sent, ch.run.seconds, ch.sms_due, ch.letters_due
                ),
                format!(
                    "broker {:.0} msg/s / {} hops = {per_reminder_ceiling:.0}",
                    c.broker_msgs_per_s, self.hops_per_reminder
                ),
                Some(ch.run.reminders_per_s / per_reminder_ceiling.max(1e-9)),
            ));
            rows.push(row(
                "handed to the providers' fakes, run all".to_string(),
                format!(
                    "SMS gateway {} requests ({} keys), postal API {} requests ({} keys)",
                    ch.sms.requests, ch.sms.distinct_keys, ch.letters.requests, ch.letters.distinct_keys
                ),
                format!("{} SMS and {} letters due: each once", ch.sms_due, ch.letters_due),
                None,
            ));
        }
        for pass in &self.passes {
            let slowest = pass
                .timing
                .jobs
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(j, ms)| format!("; slowest {j} {ms:.1} ms"))
                .unwrap_or_default();
            rows.push(row(
                format!(
                    "scheduler pass, nothing due, {} invoices {}",
                    pass.invoices, pass.shape
                ),
                format!(
                    "median {:.1} ms, max {:.1} ms{slowest}",
                    pass.timing.median_ms, pass.timing.max_ms
                ),
                "target < 50 ms, flat".to_string(),
                Some(pass.timing.median_ms / 50.0),
            ));
            rows.push(row(
                format!("collections gauges, {} invoices {}", pass.invoices, pass.shape),
                format!("{:.0} ms per computation", pass.gauges_ms),
                "RELANCE_METRICS_INTERVAL_MS 30,000 ms (spaced to 5x the computation when longer)"
                    .to_string(),
                Some(pass.gauges_ms / 30_000.0),
            ));
        }
        rows
    }
}

pub fn print(report: &Report, rows: &[Row]) {
    println!();
    println!(
        "relance-bench pipeline, {}, checkout {} ({} cores, autovacuum {}{})",
        report.at.format("%Y-%m-%d %H:%M UTC"),
        report.revision.as_deref().unwrap_or("unknown"),
        report.cores,
        report.autovacuum,
        if report.smoke {
            ", smoke run: no figure is meaningful"
        } else {
            ""
        }
    );
    if !report.settings.is_empty() {
        println!("settings given to the services: {}", report.settings.join(" "));
    }
    println!("| figure | relance | ceiling (same run) or target | ratio |");
    println!("|---|---|---|---|");
    for r in rows {
        let ratio = r.ratio.map(|x| format!("{:.1}%", x * 100.0)).unwrap_or_default();
        println!("| {} | {} | {} | {ratio} |", r.figure, r.relance, r.ceiling);
    }
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A bar per ratio, on a scale where the ceiling (or target) is the dashed line.
pub fn svg(report: &Report, rows: &[Row]) -> String {
    let bars: Vec<&Row> = rows.iter().filter(|r| r.ratio.is_some()).collect();
    let (label_w, bar_w, line_h) = (470.0, 300.0, 22.0);
    let height = 50.0 + line_h * bars.len() as f64 + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="11">"#,
        w = label_w + bar_w + 90.0
    );
    let _ = writeln!(
        s,
        r#"<text x="8" y="18" font-size="13" font-weight="bold">relance-bench pipeline {}: figure / ceiling (throughput) or / target (latency)</text>"#,
        report.at.format("%Y-%m-%d %H:%M UTC")
    );
    let scale = |ratio: f64| ratio.clamp(0.0, 2.0) / 2.0 * bar_w;
    let one = label_w + scale(1.0);
    let _ = writeln!(
        s,
        r##"<line x1="{one}" y1="30" x2="{one}" y2="{}" stroke="#888" stroke-dasharray="4 3"/><text x="{}" y="40" fill="#555">100%</text>"##,
        height - 15.0,
        one + 3.0
    );
    for (i, r) in bars.iter().enumerate() {
        let y = 50.0 + line_h * i as f64;
        let ratio = r.ratio.unwrap_or(0.0);
        let latency = r.ceiling.starts_with("target");
        let colour = match (latency, ratio <= 1.0) {
            (true, true) => "#4a9",
            (true, false) => "#d65",
            (false, _) => "#58c",
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{label_w}" y="{}" width="{:.1}" height="{}" fill="{colour}"/><text x="{:.1}" y="{}">{:.1}%</text>"#,
            label_w - 6.0,
            y + 12.0,
            escape(&r.figure),
            y + 2.0,
            scale(ratio).max(1.0),
            line_h - 6.0,
            label_w + scale(ratio).max(1.0) + 4.0,
            y + 12.0,
            ratio * 100.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Writes `pipeline-<invoices>-<time>.json` and `.svg` under `out`; returns their paths.
pub fn write(report: &Report, rows: &[Row], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let invoices = report.runs.first().map_or(0, |r| r.ledger.invoices);
    let stem = format!(
        "pipeline-{invoices}{}-{}",
        if report.smoke { "-smoke" } else { "" },
        report.at.format("%Y%m%dT%H%M")
    );
    let json_path = out.join(format!("{stem}.json"));
    let svg_path = out.join(format!("{stem}.svg"));
    let json = serde_json::json!({ "report": report, "table": rows });
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    std::fs::write(&svg_path, svg(report, rows))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    Ok(vec![json_path, svg_path])
}
