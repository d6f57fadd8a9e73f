//! The spans of publishing and consuming, named and described by the OpenTelemetry messaging
//! semantic conventions for RabbitMQ: a producer span per message published, a consumer span
//! per message processed, `error.type` set when either fails. It records ids and names only,
//! never a message's content.

use tracing::field::Empty;

/// The producer span of one message published on `exchange` (`""`, the default exchange,
/// for a delay queue). The caller puts the span's trace context in the message's headers
/// (see [`relance_telemetry::trace_headers_of`]) so that its consumer is its child.
pub fn publish_span(exchange: &str, routing_key: &str, message_id: &str) -> tracing::Span {
    tracing::info_span!(
        "publish",
        otel.name = format!("publish {exchange}"),
        otel.kind = "producer",
        otel.status_code = Empty,
        messaging.system = "rabbitmq",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = exchange,
        messaging.rabbitmq.destination.routing_key = routing_key,
        messaging.message.id = message_id,
        error.type = Empty,
    )
}

/// The consumer span of one message taken from `queue`; its parent is set from the
/// message's headers by the caller.
pub fn process_span(queue: &str, routing_key: &str, message_id: Option<&str>) -> tracing::Span {
    tracing::info_span!(
        "process",
        otel.name = format!("process {queue}"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.system = "rabbitmq",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = queue,
        messaging.rabbitmq.destination.routing_key = routing_key,
        messaging.message.id = message_id.unwrap_or_default(),
        error.type = Empty,
    )
}

/// Marks `span` as failed with a low-cardinality error class (`transient`, `permanent`,
/// `panic`, `broker_refused`, ...).
pub fn record_error(span: &tracing::Span, class: &str) {
    span.record("error.type", class);
    span.record("otel.status_code", "error");
}
