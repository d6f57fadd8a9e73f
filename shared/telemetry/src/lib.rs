//! Telemetry: structured logs with `tracing`, traces exported over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and W3C trace context carried in AMQP headers so
//! that one reminder is one trace from the scheduler to the SMTP server.
//!
//! Personal data (names, emails, amounts) never goes into span fields: spans carry ids only.

pub mod liveness;
mod logs;
pub mod metrics;
mod redact;

pub use redact::redact;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;

/// Keeps the tracer provider alive; flushes pending spans (and OTLP metrics) when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        metrics::shutdown();
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("telemetry: flushing spans failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber: logs to stderr (`RUST_LOG`, default `info`, filters the logs only), plus OTLP
/// export when `otlp_endpoint` is set (spans of level info and above). Spans always get trace ids, so that trace context is
/// propagated through the broker even when nothing is exported. Logs are JSON lines unless
/// stderr is a terminal (see [`init_with_log_format`]).
pub fn init(service_name: &str, otlp_endpoint: Option<&str>) -> anyhow::Result<TelemetryGuard> {
    init_with_log_format(service_name, otlp_endpoint, None)
}

/// [`init`], with the log format chosen (`RELANCE_LOG_FORMAT`): `Some(true)` JSON lines,
/// each carrying the `trace_id` and `span_id` of the span it was logged in; `Some(false)`
/// text, coloured only on a terminal; `None`: JSON unless stderr is a terminal.
pub fn init_with_log_format(
    service_name: &str,
    otlp_endpoint: Option<&str>,
    json: Option<bool>,
) -> anyhow::Result<TelemetryGuard> {
    let resource = Resource::builder()
        .with_service_name(service_name.to_string())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if otlp_endpoint.is_some() {
        // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT itself and appends /v1/traces.
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service_name.to_string());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let logs = if json.unwrap_or(!terminal) {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .event_format(logs::WithTraceIds(
                tracing_subscriber::fmt::format().json().with_target(false),
            ))
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(terminal)
            .boxed()
    };
    // `RUST_LOG` filters the logs only: a quieter log (`warn`) must not silence the spans,
    // which the trace context in messages and the exported traces need (info and above).
    let registry = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        );
    // A second init in one process (tests, `relance run all`) keeps the first subscriber.
    let _ = registry.try_init();
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

struct MapInjector<'a>(&'a mut BTreeMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

struct MapExtractor<'a>(&'a BTreeMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The trace context of the current span as W3C headers (`traceparent`, `tracestate`), to
/// store with an outgoing message.
pub fn current_trace_headers() -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut MapInjector(&mut headers));
    headers
}

/// Makes `span` a child of the trace carried by an incoming message's headers.
pub fn link_to_parent(span: &tracing::Span, headers: &BTreeMap<String, String>) {
    let parent = TraceContextPropagator::new().extract(&MapExtractor(headers));
    let _ = span.set_parent(parent);
}

/// Adds to `span` a link to `target` (a span of another trace, or one it does not descend
/// from): a scheduler pass links to each reminder it emitted, each of which starts a trace of
/// its own.
pub fn add_link(span: &tracing::Span, target: &tracing::Span) {
    let context = target.context();
    span.add_link(context.span().span_context().clone());
}

/// The W3C trace context of `span`, as [`current_trace_headers`] gives it for the current one.
pub fn trace_headers_of(span: &tracing::Span) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut MapInjector(&mut headers));
    headers
}
