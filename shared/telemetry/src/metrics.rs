//! Metrics: one process-wide recorder (the `metrics` crate) rendered in the Prometheus
//! exposition format by the health server's `GET /metrics`, pushed over OTLP to a collector,
//! or both (`RELANCE_METRICS_EXPORTER`). Every metric relance exports is
//! named and described here, and recorded through the functions of this module, so that
//! names and labels stay the same everywhere (see `docs/operations.md`).
//!
//! Labels hold bounded values only: channels and step names come from the policy, queues
//! are named without their namespace, outcomes and reason classes are fixed words. Never an
//! invoice number, an address, a phone number or a customer id.

use anyhow::Context as _;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::layers::{FanoutBuilder, Layer as _};
use std::sync::OnceLock;
use std::time::Duration;

pub const STEPS_PLANNED: &str = "relance_steps_planned_total";
pub const STEPS_EMITTED: &str = "relance_steps_emitted_total";
pub const STEPS_RENDERED: &str = "relance_steps_rendered_total";
pub const STEPS_SENT: &str = "relance_steps_sent_total";
pub const STEPS_FAILED: &str = "relance_steps_failed_total";
pub const STEPS_SKIPPED: &str = "relance_steps_skipped_total";
pub const STEPS_CANCELLED: &str = "relance_steps_cancelled_total";
pub const STEPS_POSTPONED: &str = "relance_steps_postponed_total";
pub const DELIVERIES: &str = "relance_deliveries_total";
pub const DUE_TO_SENT: &str = "relance_due_to_sent_seconds";
pub const PAYMENT_TO_CANCEL: &str = "relance_payment_to_cancel_seconds";
pub const MESSAGES_CONSUMED: &str = "relance_messages_consumed_total";
pub const MESSAGES_RETRIED: &str = "relance_messages_retried_total";
pub const MESSAGES_DEAD_LETTERED: &str = "relance_messages_dead_lettered_total";
pub const HANDLER_DURATION: &str = "relance_handler_duration_seconds";
pub const COMMIT_BATCH_SIZE: &str = "relance_commit_batch_pieces";
pub const COMMIT_BATCHES_UNDONE: &str = "relance_commit_batches_undone_total";
pub const OUTBOX_BACKLOG: &str = "relance_outbox_backlog_messages";
pub const OUTBOX_OLDEST_AGE: &str = "relance_outbox_oldest_age_seconds";
pub const OUTBOX_RELAY_LEADING: &str = "relance_outbox_relay_leading";
pub const SCHEDULER_PASS_DURATION: &str = "relance_scheduler_pass_duration_seconds";
pub const SCHEDULER_PASS_STEPS: &str = "relance_scheduler_pass_steps_claimed";
pub const CALL_TASKS_OPEN: &str = "relance_call_tasks_open";
pub const REPLIES_TO_HANDLE: &str = "relance_replies_to_handle";
pub const INVOICES_PAUSED: &str = "relance_invoices_paused";
pub const INVOICES: &str = "relance_invoices";
pub const OUTSTANDING: &str = "relance_outstanding_amount";
pub const DSO: &str = "relance_dso_days";
pub const STEP_PAID_WITHIN: &str = "relance_step_paid_within_days_ratio";
pub const GAUGES_REFRESHED: &str = "relance_collections_gauges_refreshed_timestamp_seconds";
pub const READ_DATABASE_LAG: &str = "relance_read_database_lag_seconds";
pub const LOOP_LAST_SUCCESS: &str = "relance_loop_last_success_seconds";
pub const LOOP_STALLED: &str = "relance_loop_stalled";

/// Every metric relance names (besides the settings' gauges of the health server and the
/// `process_*` metrics), each documented in `docs/operations.md`.
pub const ALL: [&str; 34] = [
    STEPS_PLANNED,
    STEPS_EMITTED,
    STEPS_RENDERED,
    STEPS_SENT,
    STEPS_FAILED,
    STEPS_SKIPPED,
    STEPS_CANCELLED,
    STEPS_POSTPONED,
    DELIVERIES,
    DUE_TO_SENT,
    PAYMENT_TO_CANCEL,
    MESSAGES_CONSUMED,
    MESSAGES_RETRIED,
    MESSAGES_DEAD_LETTERED,
    HANDLER_DURATION,
    COMMIT_BATCH_SIZE,
    COMMIT_BATCHES_UNDONE,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_RELAY_LEADING,
    SCHEDULER_PASS_DURATION,
    SCHEDULER_PASS_STEPS,
    CALL_TASKS_OPEN,
    REPLIES_TO_HANDLE,
    INVOICES_PAUSED,
    INVOICES,
    OUTSTANDING,
    DSO,
    STEP_PAID_WITHIN,
    GAUGES_REFRESHED,
    READ_DATABASE_LAG,
    LOOP_LAST_SUCCESS,
    LOOP_STALLED,
    "relance_settings_warnings",
];

/// Latencies of a reminder's path: from a fraction of a second (all in one process) to a
/// day (a provider refusing for hours).
const LATENCY_BUCKETS: [f64; 17] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21_600.0,
    86_400.0,
];
/// A handler or a scheduler pass: milliseconds to a minute.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];
/// Steps claimed by one scheduler pass (the batch is 200 by default).
const COUNT_BUCKETS: [f64; 10] = [0.0, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

struct Exporter {
    /// The Prometheus exposition (`RELANCE_METRICS_EXPORTER=prometheus|both`).
    handle: Option<PrometheusHandle>,
    /// The OTLP pipeline (`otlp|both`): its periodic reader pushes every
    /// `OTEL_METRIC_EXPORT_INTERVAL` (60 s by default); shut down (flushed) at exit.
    otlp: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    process: metrics_process::Collector,
}

static EXPORTER: OnceLock<Option<Exporter>> = OnceLock::new();

/// Where the metrics of this process go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exporters {
    /// Rendered by [`render`] (the health server's `/metrics`).
    pub prometheus: bool,
    /// Pushed over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/metrics`).
    pub otlp: bool,
}

impl Default for Exporters {
    fn default() -> Self {
        Self {
            prometheus: true,
            otlp: false,
        }
    }
}

/// Installs the process-wide recorder with the Prometheus exposition only, unless
/// [`install_with`] came first (once; later calls do nothing). Until it is installed,
/// recording costs nothing and is lost. Returns whether relance's recorder is the one in
/// place (another recorder installed first by an embedding program keeps its place).
pub fn install() -> bool {
    install_with(Exporters::default(), "relance")
}

/// Installs the process-wide recorder for `exporters` (once; see [`install`]); the OTLP
/// metrics carry `service_name` as their resource's `service.name`.
pub fn install_with(exporters: Exporters, service_name: &str) -> bool {
    EXPORTER
        .get_or_init(|| match build(exporters, service_name) {
            Ok(exporter) => Some(exporter),
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "metrics: cannot be exported; metrics are off"
                );
                None
            }
        })
        .is_some()
}

fn build(exporters: Exporters, service_name: &str) -> anyhow::Result<Exporter> {
    let prometheus = if exporters.prometheus {
        Some(prometheus_recorder()?)
    } else {
        None
    };
    let handle = prometheus.as_ref().map(PrometheusRecorder::handle);
    let otlp = if exporters.otlp {
        Some(otlp_recorder(service_name)?)
    } else {
        None
    };
    let installed = match (prometheus, otlp.as_ref()) {
        (Some(prometheus), Some((_, otlp))) => metrics::set_global_recorder(
            FanoutBuilder::default()
                .add_recorder(prometheus)
                .add_recorder(otlp_filtered(otlp.clone()))
                .build(),
        )
        .is_ok(),
        (Some(prometheus), None) => metrics::set_global_recorder(prometheus).is_ok(),
        (None, Some((_, otlp))) => metrics::set_global_recorder(otlp_filtered(otlp.clone())).is_ok(),
        (None, None) => return Err(anyhow::anyhow!("no metrics exporter chosen")),
    };
    if !installed {
        anyhow::bail!("another recorder is installed; relance's metrics go nowhere");
    }
    describe();
    let process = metrics_process::Collector::default();
    process.describe();
    Ok(Exporter {
        handle,
        otlp: otlp.map(|(provider, _)| provider),
        process,
    })
}

fn prometheus_recorder() -> anyhow::Result<PrometheusRecorder> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in BUCKETS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.into()), buckets)
            .context("metrics: bad histogram buckets")?;
    }
    Ok(builder.build_recorder())
}

/// Histograms and their buckets, the same for both exporters.
const BUCKETS: [(&str, &[f64]); 6] = [
    (DUE_TO_SENT, &LATENCY_BUCKETS),
    (PAYMENT_TO_CANCEL, &LATENCY_BUCKETS),
    (HANDLER_DURATION, &DURATION_BUCKETS),
    (SCHEDULER_PASS_DURATION, &DURATION_BUCKETS),
    (SCHEDULER_PASS_STEPS, &COUNT_BUCKETS),
    (COMMIT_BATCH_SIZE, &BATCH_BUCKETS),
];

/// Pieces of work per group commit (at most `RELANCE_COMMIT_BATCH`, 32 by default).
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// A `metrics` recorder on the OpenTelemetry metrics SDK, pushing over OTLP/HTTP (the
/// exporter reads `OTEL_EXPORTER_OTLP_ENDPOINT` and appends `/v1/metrics`).
fn otlp_recorder(
    service_name: &str,
) -> anyhow::Result<(
    opentelemetry_sdk::metrics::SdkMeterProvider,
    metrics_exporter_opentelemetry::Recorder,
)> {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .build()
        .context("metrics: building the OTLP exporter")?;
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter).build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_string())
        .build();
    let (provider, recorder) = metrics_exporter_opentelemetry::Recorder::builder("relance")
        .with_meter_provider(|builder| {
            builder.with_resource(resource).with_reader(reader).with_view(
                |instrument: &opentelemetry_sdk::metrics::Instrument| {
                    let (_, buckets) = BUCKETS.iter().find(|(name, _)| instrument.name() == *name)?;
                    opentelemetry_sdk::metrics::Stream::builder()
                        .with_aggregation(opentelemetry_sdk::metrics::Aggregation::ExplicitBucketHistogram {
                            boundaries: buckets.to_vec(),
                            record_min_max: true,
                        })
                        .build()
                        .ok()
                },
            )
        })
        .build();
    Ok((provider, recorder))
}

/// The OTLP side leaves out the CPU time counter: `metrics-process` sets it as an absolute
/// value, which the OpenTelemetry recorder (a fresh handle at each registration) would add
/// again at each collection.
fn otlp_filtered(recorder: metrics_exporter_opentelemetry::Recorder) -> impl metrics::Recorder + Sync + Send {
    metrics_util::layers::FilterLayer::from_patterns(["process_cpu_seconds_total"])
        .layer(Undescribed(recorder))
}

/// The OpenTelemetry recorder without descriptions. metrics-exporter-opentelemetry 0.2 gives
/// a metric's description and unit to its first registration only (it takes them out of its
/// table), and every `counter!` registers anew: the SDK then holds two instruments of one
/// name (with and without a description), each counting part of the increments, and the
/// collector receives two series that disagree. Without descriptions every registration is
/// the same instrument. The units stay in the names (`_seconds`, `_bytes`).
struct Undescribed(metrics_exporter_opentelemetry::Recorder);

impl metrics::Recorder for Undescribed {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, metadata: &metrics::Metadata<'_>) -> metrics::Counter {
        self.0.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &metrics::Key, metadata: &metrics::Metadata<'_>) -> metrics::Gauge {
        self.0.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &metrics::Key, metadata: &metrics::Metadata<'_>) -> metrics::Histogram {
        self.0.register_histogram(key, metadata)
    }
}

/// The Prometheus exposition of every metric recorded in this process (the process's CPU and
/// memory read now). Empty when the recorder could not be installed, or when metrics go
/// over OTLP only.
pub fn render() -> String {
    install();
    match EXPORTER.get() {
        Some(Some(exporter)) => {
            exporter.process.collect();
            match &exporter.handle {
                Some(handle) => {
                    handle.run_upkeep();
                    handle.render()
                }
                None => String::new(),
            }
        }
        _ => String::new(),
    }
}

/// Reads the process's CPU and memory into their metrics (done by [`render`] for a scrape;
/// the OTLP exporter needs it done on an interval).
pub fn collect_process() {
    if let Some(Some(exporter)) = EXPORTER.get() {
        exporter.process.collect();
    }
}

/// Whether the metrics go over OTLP (then someone must refresh the gauges a scrape would).
pub fn exported_over_otlp() -> bool {
    matches!(EXPORTER.get(), Some(Some(Exporter { otlp: Some(_), .. })))
}

/// Pushes what the OTLP exporter has not sent yet and stops it (at exit).
pub fn shutdown() {
    if let Some(Some(Exporter {
        otlp: Some(provider), ..
    })) = EXPORTER.get()
    {
        if let Err(e) = provider.shutdown() {
            eprintln!("telemetry: flushing metrics failed: {e}");
        }
    }
}

fn describe() {
    let steps = [
        (
            STEPS_PLANNED,
            "reminder steps planned (at an invoice's registration)",
        ),
        (
            STEPS_EMITTED,
            "steps the scheduler emitted (queued as reminder.due)",
        ),
        (
            STEPS_RENDERED,
            "steps rendered (message written, queued for its sender)",
        ),
        (STEPS_SENT, "steps delivered (reminder.sent and thanks.sent)"),
        (STEPS_FAILED, "steps failed (reminder.failed)"),
        (STEPS_SKIPPED, "steps skipped (reminder.skipped)"),
        (STEPS_CANCELLED, "steps cancelled (reminder.cancelled)"),
        (STEPS_POSTPONED, "steps postponed (reminder.postponed)"),
    ];
    for (name, help) in steps {
        describe_counter!(name, Unit::Count, help);
    }
    describe_counter!(
        DELIVERIES,
        Unit::Count,
        "delivery attempts by channel, outcome (sent, deferred, failed, stopped) and provider reply class (2xx, 4xx, 5xx, none)"
    );
    describe_histogram!(
        DUE_TO_SENT,
        Unit::Seconds,
        "from a step's due time to its delivery, by channel"
    );
    describe_histogram!(
        PAYMENT_TO_CANCEL,
        Unit::Seconds,
        "from a payment's arrival on the broker to the cancellation of the steps it stopped"
    );
    describe_counter!(MESSAGES_CONSUMED, Unit::Count, "messages handled, by queue");
    describe_counter!(
        MESSAGES_RETRIED,
        Unit::Count,
        "messages sent to a delay queue for a later attempt, by queue and reason class"
    );
    describe_counter!(
        MESSAGES_DEAD_LETTERED,
        Unit::Count,
        "messages given up (dead-lettered), by queue and reason class"
    );
    describe_histogram!(
        HANDLER_DURATION,
        Unit::Seconds,
        "time a handler took on one message, by queue"
    );
    describe_histogram!(
        COMMIT_BATCH_SIZE,
        Unit::Count,
        "handlers' pieces of work committed in one transaction (group commit), by service"
    );
    describe_counter!(
        COMMIT_BATCHES_UNDONE,
        Unit::Count,
        "group commits rolled back because one piece (or the commit) failed, their pieces then run alone, by service"
    );
    describe_gauge!(OUTBOX_BACKLOG, Unit::Count, "outbox rows not yet published");
    describe_gauge!(
        OUTBOX_RELAY_LEADING,
        "1 when this process's outbox relay leads (listens and drains the outbox), 0 when it stands by"
    );
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "age of the oldest outbox row not yet published (0 when none)"
    );
    describe_histogram!(
        SCHEDULER_PASS_DURATION,
        Unit::Seconds,
        "time one scheduler pass took (emission, sweep, hand-off, grouping, call expiry)"
    );
    describe_histogram!(
        SCHEDULER_PASS_STEPS,
        Unit::Count,
        "steps claimed by one scheduler pass"
    );
    describe_gauge!(
        CALL_TASKS_OPEN,
        Unit::Count,
        "call tasks waiting for their outcome"
    );
    describe_gauge!(
        REPLIES_TO_HANDLE,
        Unit::Count,
        "customers' replies read from the mailbox and not yet marked handled"
    );
    describe_gauge!(
        INVOICES_PAUSED,
        Unit::Count,
        "invoices held by a promise or a dispute"
    );
    describe_gauge!(INVOICES, Unit::Count, "invoices by collections status");
    describe_gauge!(
        OUTSTANDING,
        "amounts outstanding on invoices still chased, by currency and aging bucket (days past due)"
    );
    describe_gauge!(
        DSO,
        "days sales outstanding by the countback method, per currency, over the last 12 months of sales"
    );
    describe_gauge!(
        STEP_PAID_WITHIN,
        "share (0 to 1) of the reminders a step sent in the last 90 days whose invoice was settled within `within` days"
    );
    describe_gauge!(
        GAUGES_REFRESHED,
        Unit::Seconds,
        "when this process last computed the collections gauges (Unix time); only one process computes them"
    );
    describe_gauge!(
        READ_DATABASE_LAG,
        Unit::Seconds,
        "how far RELANCE_READ_DATABASE_URL (a replica) replays behind the primary, when the gauges were computed; absent without a read database"
    );
    describe_gauge!(
        LOOP_LAST_SUCCESS,
        Unit::Seconds,
        "seconds since each loop (scheduler pass, outbox relay, consumer) last completed"
    );
    describe_gauge!(
        LOOP_STALLED,
        "1 when the loop has not completed for longer than RELANCE_LOOP_STALL_MS"
    );
}

/// A step's moves as the outbox relay publishes them (after their transaction committed):
/// the jobs `reminder.due` (emitted) and `reminder.rendered.*` (rendered), and the events
/// `invoice.registered` (its plan: planned), `reminder.sent`/`thanks.sent`,
/// `reminder.failed`, `reminder.skipped`, `reminder.cancelled` and `reminder.postponed`.
pub fn record_published(routing_key: &str, payload: &serde_json::Value) {
    let name = match routing_key {
        "reminder.due" => STEPS_EMITTED,
        key if key.starts_with("reminder.rendered.") => STEPS_RENDERED,
        "reminder.sent" | "thanks.sent" => STEPS_SENT,
        "reminder.failed" => STEPS_FAILED,
        "reminder.skipped" => STEPS_SKIPPED,
        "reminder.cancelled" => STEPS_CANCELLED,
        "reminder.postponed" => STEPS_POSTPONED,
        "invoice.registered" => {
            let plan = payload
                .pointer("/detail/plan")
                .and_then(|p| p.as_array())
                .map(Vec::as_slice)
                .unwrap_or_default();
            for step in plan {
                count_step(STEPS_PLANNED, step);
            }
            return;
        }
        _ => return,
    };
    count_step(name, payload);
}

fn count_step(name: &'static str, fields: &serde_json::Value) {
    let text = |field: &str| {
        fields
            .get(field)
            .and_then(|v| v.as_str())
            .map(bounded)
            .unwrap_or_else(|| "none".to_string())
    };
    counter!(name, "channel" => text("channel"), "step" => text("step")).increment(1);
}

/// A label value from the policy (a step or channel name), cut short should a policy name
/// one at length.
fn bounded(value: &str) -> String {
    value.chars().take(40).collect()
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Sent,
    /// Refused for now (a 4xx, a provider down): retried later.
    Deferred,
    Failed,
    /// Not delivered: the invoice was paid or paused before the point of no return.
    Stopped,
    /// No answer after the message was handed over: it may or may not have gone out.
    Ambiguous,
}

impl DeliveryOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Deferred => "deferred",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Ambiguous => "ambiguous",
        }
    }
}

/// The class of a provider's answer from its code (an SMTP reply `250 2.0.0 ok`, an HTTP
/// status `202`): `2xx`, `4xx`, `5xx`, or `none` when there was no answer.
pub fn reply_class(code: Option<u16>) -> &'static str {
    match code {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "none",
    }
}

/// The code at the start of a provider's answer (`250 2.0.0 Ok` gives 250).
pub fn reply_code(answer: &str) -> Option<u16> {
    let digits: String = answer
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (digits.len() == 3).then(|| digits.parse().ok()).flatten()
}

/// The first reply code (a word of three digits, 200 to 599) in a proof or a failure's
/// reason (`SMTP delivery failed: 451 4.7.1 try later` gives 451).
pub fn reply_code_in(text: &str) -> Option<u16> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|word| word.len() == 3)
        .filter_map(|word| word.parse::<u16>().ok())
        .find(|code| (200..600).contains(code))
}

pub fn record_delivery(channel: &str, outcome: DeliveryOutcome, reply: Option<u16>) {
    counter!(
        DELIVERIES,
        "channel" => bounded(channel),
        "outcome" => outcome.as_str(),
        "reply_class" => reply_class(reply)
    )
    .increment(1);
}

/// A step delivered `latency` after it was due.
pub fn observe_due_to_sent(channel: &str, latency: chrono::TimeDelta) {
    histogram!(DUE_TO_SENT, "channel" => bounded(channel)).record(seconds(latency));
}

/// Steps cancelled by a payment `latency` after the payment reached relance.
pub fn observe_payment_to_cancel(latency: chrono::TimeDelta) {
    histogram!(PAYMENT_TO_CANCEL).record(seconds(latency));
}

fn seconds(delta: chrono::TimeDelta) -> f64 {
    delta.to_std().unwrap_or_default().as_secs_f64()
}

/// Why a message was retried or given up, as a fixed word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonClass {
    /// A transient failure (a provider refusing for now, a row not there yet).
    Transient,
    /// The database was unreachable: the message waits the outage out.
    DatabaseUnavailable,
    /// Every connection of the service's pool was in use (`RELANCE_DB_POOL_SIZE` smaller
    /// than the work in flight): the message is tried again soon, its retries not spent.
    PoolBusy,
    /// The message can never succeed (malformed, invalid).
    Permanent,
    /// Transient failures until the retry budget (or the retry cap) was spent.
    RetriesExhausted,
    /// The handler panicked.
    Panic,
}

impl ReasonClass {
    fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::DatabaseUnavailable => "database_unavailable",
            Self::PoolBusy => "pool_busy",
            Self::Permanent => "permanent",
            Self::RetriesExhausted => "retries_exhausted",
            Self::Panic => "panic",
        }
    }
}

/// A message handled on `queue` (named without the namespace) in `took`.
pub fn record_consumed(queue: &str, took: Duration) {
    counter!(MESSAGES_CONSUMED, "queue" => queue.to_string()).increment(1);
    histogram!(HANDLER_DURATION, "queue" => queue.to_string()).record(took.as_secs_f64());
}

/// A group commit of `service` committed `pieces` handlers' work in one transaction.
pub fn observe_commit_batch(service: &'static str, pieces: usize) {
    histogram!(COMMIT_BATCH_SIZE, "service" => service).record(pieces as f64);
}

/// The group commits of `service` have started: their undone batches are counted from zero
/// (a series that exists before the first one, so that a rate of none reads 0, not "no data").
pub fn start_commit_batches(service: &'static str) {
    counter!(COMMIT_BATCHES_UNDONE, "service" => service).increment(0);
}

/// A group commit of `service` was rolled back for one piece's failure (or its commit's).
pub fn record_commit_batch_undone(service: &'static str) {
    counter!(COMMIT_BATCHES_UNDONE, "service" => service).increment(1);
}

pub fn record_retried(queue: &str, class: ReasonClass) {
    counter!(MESSAGES_RETRIED, "queue" => queue.to_string(), "reason_class" => class.as_str()).increment(1);
}

pub fn record_dead_lettered(queue: &str, class: ReasonClass) {
    counter!(MESSAGES_DEAD_LETTERED, "queue" => queue.to_string(), "reason_class" => class.as_str())
        .increment(1);
}

/// One scheduler pass: how long it took and how many steps it claimed.
pub fn record_scheduler_pass(took: Duration, steps_claimed: usize) {
    histogram!(SCHEDULER_PASS_DURATION).record(took.as_secs_f64());
    histogram!(SCHEDULER_PASS_STEPS).record(steps_claimed as f64);
}

/// The collections gauges, computed by one process at a time.
#[derive(Debug, Clone, Default)]
pub struct CollectionsGauges {
    pub outbox_backlog: u64,
    pub outbox_oldest_age: Duration,
    pub call_tasks_open: u64,
    pub replies_to_handle: u64,
    pub invoices_paused: u64,
    /// Invoices per collections status (every status, zeros included).
    pub invoices: Vec<(&'static str, u64)>,
    /// Amount outstanding per (currency, aging bucket), in the currency's units.
    pub outstanding: Vec<(String, &'static str, f64)>,
    /// DSO in days per currency.
    pub dso_days: Vec<(String, f64)>,
    /// Share (0 to 1) of each (step, channel)'s sends paid within 7 days; NaN when the step
    /// sent nothing in the window (no share to give, and not 0).
    pub step_paid_within_7_days: Vec<(String, String, f64)>,
    /// When they were computed, Unix seconds.
    pub at_unix_seconds: f64,
}

/// Whether this process's outbox relay leads (one process at a time does).
pub fn set_outbox_relay_leading(leading: bool) {
    gauge!(OUTBOX_RELAY_LEADING).set(if leading { 1.0 } else { 0.0 });
}

pub fn set_collections_gauges(g: &CollectionsGauges) {
    gauge!(OUTBOX_BACKLOG).set(g.outbox_backlog as f64);
    gauge!(OUTBOX_OLDEST_AGE).set(g.outbox_oldest_age.as_secs_f64());
    gauge!(CALL_TASKS_OPEN).set(g.call_tasks_open as f64);
    gauge!(REPLIES_TO_HANDLE).set(g.replies_to_handle as f64);
    gauge!(INVOICES_PAUSED).set(g.invoices_paused as f64);
    for (status, count) in &g.invoices {
        gauge!(INVOICES, "status" => *status).set(*count as f64);
    }
    for (currency, bucket, amount) in &g.outstanding {
        gauge!(OUTSTANDING, "currency" => bounded(currency), "aging_bucket" => *bucket).set(*amount);
    }
    for (currency, days) in &g.dso_days {
        gauge!(DSO, "currency" => bounded(currency)).set(*days);
    }
    for (step, channel, ratio) in &g.step_paid_within_7_days {
        gauge!(STEP_PAID_WITHIN, "step" => bounded(step), "channel" => bounded(channel), "within" => "7")
            .set(*ratio);
    }
    gauge!(GAUGES_REFRESHED).set(g.at_unix_seconds);
}

/// How far the read database (`RELANCE_READ_DATABASE_URL`) replays behind the primary, as
/// the gauges' leader found it when it computed them.
pub fn set_read_database_lag(seconds: f64) {
    gauge!(READ_DATABASE_LAG).set(seconds);
}

/// A loop's heartbeat as gauges, set when `/metrics` is read.
pub fn set_loop(service: &str, name: &str, age: Duration, stalled: bool) {
    let labels = [("service", service.to_string()), ("loop", name.to_string())];
    gauge!(LOOP_LAST_SUCCESS, &labels).set(age.as_secs_f64());
    gauge!(LOOP_STALLED, &labels).set(if stalled { 1.0 } else { 0.0 });
}

/// A gauge set by the health server at scrape time (settings warnings).
pub fn set_gauge(name: &'static str, help: &'static str, value: f64) {
    describe_gauge!(name, help);
    gauge!(name).set(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_documented_in_the_operations_guide() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operations.md");
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        for name in ALL {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} is not in docs/operations.md"
            );
        }
    }

    #[test]
    fn a_reply_is_classed_by_its_code() {
        assert_eq!(reply_class(reply_code("250 2.0.0 Ok: queued")), "2xx");
        assert_eq!(reply_class(reply_code("451 4.7.1 try later")), "4xx");
        assert_eq!(reply_class(reply_code("550 no such user")), "5xx");
        assert_eq!(reply_class(reply_code("connection refused")), "none");
        assert_eq!(reply_class(Some(202)), "2xx");
        assert_eq!(
            reply_code_in("SMTP delivery failed: 451 4.7.1 try later"),
            Some(451)
        );
        assert_eq!(
            reply_code_in("the gateway answered 503 Service Unavailable"),
            Some(503)
        );
        assert_eq!(reply_code_in("connection refused (os error 111)"), None);
    }

    #[test]
    fn the_relay_counts_a_step_by_channel_and_step_and_a_plan_step_by_step() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let sent = serde_json::json!({"event_type": "reminder.sent", "invoice_number": "F-1",
                "step": "reminder_1", "channel": "email", "detail": {"recipients": ["a@b.test"]}});
            record_published("reminder.sent", &sent);
            record_published("reminder.sent", &sent);
            let registered = serde_json::json!({"invoice_number": "F-1", "detail": {"plan": [
                {"step": "pre_due", "channel": "email"}, {"step": "reminder_1", "channel": "email"}]}});
            record_published("invoice.registered", &registered);
            record_published("payment.recorded", &registered);
        });
        let text = handle.render();
        assert!(
            text.contains(r#"relance_steps_sent_total{channel="email",step="reminder_1"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"relance_steps_planned_total{channel="email",step="pre_due"} 1"#),
            "{text}"
        );
        assert!(!text.contains("F-1") && !text.contains("a@b.test"), "{text}");
    }
}
