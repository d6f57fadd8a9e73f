//! JSON log lines that carry the trace they belong to: `trace_id` and `span_id` of the span
//! an event is logged in, as the trace viewer shows them, so that a log line leads to its
//! trace and back.

use std::fmt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Wraps a JSON event format: adds `trace_id` and `span_id` to each line logged inside a
/// span.
pub(crate) struct WithTraceIds<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let ids = ctx.parent_span().and_then(|span| {
            let extensions = span.extensions();
            let otel = extensions.get::<tracing_opentelemetry::OtelData>()?;
            Some((otel.trace_id()?, otel.span_id()?))
        });
        let ids = ids.filter(|(trace_id, _)| *trace_id != opentelemetry::TraceId::INVALID);
        let Some((trace_id, span_id)) = ids else {
            return writer.write_str(&line);
        };
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(mut object)) => {
                object.insert("trace_id".into(), trace_id.to_string().into());
                object.insert("span_id".into(), span_id.to_string().into());
                let json = serde_json::to_string(&object).map_err(|_| fmt::Error)?;
                writeln!(writer, "{json}")
            }
            _ => writer.write_str(&line),
        }
    }
}
