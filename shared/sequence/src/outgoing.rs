//! Announcing what happens to an invoice: the outbox messages built from contract types (with
//! the current trace context attached), each event journaled in the same transaction, and a
//! step moved from one status to another with its event.

use anyhow::Context;
use chrono::{DateTime, Utc};
use relance_contracts::{EventDetail, EventV1, VERSION_1};
use relance_storage::journal;
use relance_storage::outbox::{self, Destination, OutgoingMessage};
use relance_storage::steps::{StepRecord, StepStatus};
use uuid::Uuid;

/// An outbound event about an invoice (and possibly one of its steps).
pub fn event(
    event_type: &str,
    invoice_number: &str,
    step: Option<(&str, &str)>,
    detail: serde_json::Value,
    at: DateTime<Utc>,
) -> OutgoingMessage {
    let body = EventV1 {
        version: VERSION_1,
        event_id: Uuid::new_v4(),
        event_type: event_type.to_string(),
        occurred_at: at,
        invoice_number: invoice_number.to_string(),
        step: step.map(|(name, _)| name.to_string()),
        channel: step.map(|(_, channel)| channel.to_string()),
        // Numbered when its transaction commits (the outbox's `outbox_sequence` trigger).
        sequence: None,
        detail,
    };
    OutgoingMessage {
        destination: Destination::Events,
        routing_key: event_type.to_string(),
        message_id: body.event_id,
        correlation_id: invoice_number.to_string(),
        payload: serde_json::to_value(&body).unwrap_or(serde_json::Value::Null),
        headers: relance_telemetry::current_trace_headers(),
    }
}

/// A job for another relance service.
pub fn job<T: serde::Serialize>(
    routing_key: &str,
    job_id: Uuid,
    invoice_number: &str,
    body: &T,
) -> anyhow::Result<OutgoingMessage> {
    Ok(OutgoingMessage {
        destination: Destination::Jobs,
        routing_key: routing_key.to_string(),
        message_id: job_id,
        correlation_id: invoice_number.to_string(),
        payload: serde_json::to_value(body)?,
        headers: relance_telemetry::current_trace_headers(),
    })
}

/// Journals an event and adds it to the outbox, in the caller's transaction: what relance
/// keeps as proof and what it announces are one fact.
pub async fn announce(
    tx: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
    invoice_number: &str,
    step: Option<&StepRecord>,
    event_type: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    journal::append(
        tx,
        now,
        invoice_number,
        step.map(|s| s.id),
        event_type,
        detail.clone(),
    )
    .await?;
    let step_names = step.map(|s| (s.name.as_str(), s.channel.as_str()));
    outbox::enqueue(
        tx,
        &event(event_type, invoice_number, step_names, detail, now),
        now,
    )
    .await
}

/// [`announce`] for an event about one step.
pub async fn announce_step(
    tx: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
    step: &StepRecord,
    event_type: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    announce(tx, now, &step.invoice_number, Some(step), event_type, detail).await
}

/// [`announce`] with a typed detail: the event type is the detail's (`D::EVENT_TYPE`).
pub async fn announce_detail<D: EventDetail>(
    tx: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
    invoice_number: &str,
    step: Option<&StepRecord>,
    detail: &D,
) -> anyhow::Result<()> {
    let value = detail
        .to_detail()
        .with_context(|| format!("encoding the detail of {}", D::EVENT_TYPE))?;
    announce(tx, now, invoice_number, step, D::EVENT_TYPE, value).await
}

/// [`announce_detail`] for an event about one step.
pub async fn announce_step_detail<D: EventDetail>(
    tx: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
    step: &StepRecord,
    detail: &D,
) -> anyhow::Result<()> {
    announce_detail(tx, now, &step.invoice_number, Some(step), detail).await
}

/// Moves a step from one of `from` to `to` with `reason`, and if it moved (another worker may
/// have moved it first), journals and announces `event_type` with that reason. Returns
/// whether it moved.
pub async fn transition_and_announce(
    tx: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
    step: &StepRecord,
    from: &[StepStatus],
    to: StepStatus,
    event_type: &str,
    reason: &str,
) -> anyhow::Result<bool> {
    if !relance_storage::steps::transition(tx, step.id, from, to, Some(reason), now).await? {
        return Ok(false);
    }
    announce_step(tx, now, step, event_type, serde_json::json!({ "reason": reason })).await?;
    Ok(true)
}
