//! Announcing what happens to an invoice: the outbox messages built from contract types (with
//! the current trace context attached), each event journaled in the same transaction, and a
//! step moved from one status to another with its event.

use anyhow::Context;
use chrono::{DateTime, Utc};
use relance_contracts::{
    EventDetail, EventV1, ReminderFailedV1, ReminderSentV1, ReminderSkippedV1, StepRef, StopRequestedV1,
    ThanksSentV1, VERSION_1,
};
use relance_storage::journal;
use relance_storage::outbox::{Destination, OutgoingMessage};
use relance_storage::steps::{DeliveryState, StepRecord, StepStatus};
use uuid::Uuid;

/// An outbound event about an invoice (and possibly one of its steps); its routing key and
/// `event_type` are the detail's (`D::EVENT_TYPE`).
pub fn event<D: EventDetail>(
    invoice_number: &str,
    step: Option<StepRef<'_>>,
    detail: &D,
    at: DateTime<Utc>,
) -> anyhow::Result<OutgoingMessage> {
    let value = detail
        .to_detail()
        .with_context(|| format!("encoding the detail of {}", D::EVENT_TYPE))?;
    Ok(event_with_value(D::EVENT_TYPE, invoice_number, step, value, at))
}

/// The event of [`event`], its detail already encoded.
fn event_with_value(
    event_type: &str,
    invoice_number: &str,
    step: Option<StepRef<'_>>,
    detail: serde_json::Value,
    at: DateTime<Utc>,
) -> OutgoingMessage {
    let body = EventV1 {
        version: VERSION_1,
        event_id: Uuid::new_v4(),
        event_type: event_type.to_string(),
        occurred_at: at,
        invoice_number: invoice_number.to_string(),
        step: step.map(|s| s.name.to_string()),
        channel: step.map(|s| s.channel.to_string()),
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
/// keeps as proof and what it announces are one fact. The event type is the detail's
/// (`D::EVENT_TYPE`).
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
    let step_ref = step.map(|s| StepRef {
        name: &s.name,
        channel: s.channel.as_str(),
    });
    let message = event_with_value(D::EVENT_TYPE, invoice_number, step_ref, value.clone(), now);
    journal::append_with_message(
        tx,
        now,
        invoice_number,
        step.map(|s| s.id),
        D::EVENT_TYPE,
        value,
        Some(&message),
    )
    .await
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

/// Announces a delivery's proof: `thanks.sent` for a thank-you, `reminder.sent` otherwise.
pub async fn announce_sent(
    tx: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
    step: &StepRecord,
    thanks: bool,
    sent: ReminderSentV1,
) -> anyhow::Result<()> {
    if thanks {
        announce_step_detail(tx, now, step, &ThanksSentV1(sent)).await
    } else {
        announce_step_detail(tx, now, step, &sent).await
    }
}

/// The detail of an event that ends a step for a reason, the reason the step keeps.
pub trait StepOutcome: EventDetail {
    fn reason(&self) -> &str;
}

impl StepOutcome for ReminderSkippedV1 {
    fn reason(&self) -> &str {
        &self.reason
    }
}

impl StepOutcome for relance_contracts::ReminderCancelledV1 {
    fn reason(&self) -> &str {
        &self.reason
    }
}

impl StepOutcome for ReminderFailedV1 {
    fn reason(&self) -> &str {
        &self.reason
    }
}

/// Moves a step from one of `from` to `to` with the detail's reason, and if it moved (another
/// worker may have moved it first), journals and announces `detail`. Returns whether it
/// moved.
pub async fn transition_and_announce<D: StepOutcome>(
    tx: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
    step: &StepRecord,
    from: &[StepStatus],
    to: StepStatus,
    detail: &D,
) -> anyhow::Result<bool> {
    if !relance_storage::steps::transition(tx, step.id, from, to, Some(detail.reason()), now).await? {
        return Ok(false);
    }
    announce_step_detail(tx, now, step, detail).await?;
    Ok(true)
}

/// The stop (a payment or closure) committed while a delivery was going out, as events tell
/// it (`stop_requested`).
pub fn stop_requested(state: &DeliveryState) -> Option<StopRequestedV1> {
    state.stop_requested_at.map(|at| StopRequestedV1 {
        at,
        reason: state.stop_reason.clone(),
    })
}
