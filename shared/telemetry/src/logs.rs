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
        // The JSON format writes one object a line: the ids go in before its closing brace
        // (hexadecimal, nothing to escape), the fields keeping their order.
        match line.trim_end().strip_suffix('}') {
            Some(open) if open.starts_with('{') => {
                writeln!(
                    writer,
                    r#"{open},"trace_id":"{trace_id}","span_id":"{span_id}"}}"#
                )
            }
            _ => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WithTraceIds;
    use opentelemetry::trace::TracerProvider as _;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn a_json_line_logged_in_a_span_carries_its_trace_and_span_ids() {
        let lines = Lines::default();
        let writer = lines.clone();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || writer.clone())
                    .event_format(WithTraceIds(tracing_subscriber::fmt::format().json()))
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new()),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!("deliver");
            let _entered = span.enter();
            tracing::info!(step = "reminder_1", "inside");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(parsed.len(), 2, "{text}");
        assert!(parsed[0].get("trace_id").is_none(), "{text}");
        let trace_id = parsed[1]["trace_id"].as_str().unwrap();
        let span_id = parsed[1]["span_id"].as_str().unwrap();
        assert_eq!((trace_id.len(), span_id.len()), (32, 16), "{text}");
        assert_eq!(parsed[1]["fields"]["message"], "inside", "{text}");
        assert!(
            text.lines().nth(1).unwrap().starts_with(r#"{"timestamp""#),
            "{text}"
        );
    }
}
