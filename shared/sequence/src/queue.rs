//! Queueing a step: its `reminder.due` job into the outbox and `reminder.queued` into the
//! journal, in the caller's transaction, in one statement. Reminders and the thank-you go
//! through it alike.

use crate::outgoing;
use chrono::{DateTime, Utc};
use relance_contracts::names;
use relance_contracts::{ReminderDueV1, VERSION_1};
use relance_storage::journal;
use serde_json::json;
use uuid::Uuid;

/// Adds the `reminder.due` job of a step to the outbox and journals it.
pub async fn queue_step(
    tx: &mut sqlx::PgConnection,
    step_id: Uuid,
    invoice_number: &str,
    step_name: &str,
    channel: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let job = ReminderDueV1 {
        version: VERSION_1,
        job_id: Uuid::new_v4(),
        step_id,
        invoice_number: invoice_number.to_string(),
        step: step_name.to_string(),
        channel: channel.to_string(),
    };
    journal::append_with_message(
        tx,
        now,
        invoice_number,
        Some(step_id),
        "reminder.queued",
        json!({ "step": step_name, "channel": channel }),
        Some(&outgoing::job(
            names::REMINDER_DUE,
            job.job_id,
            invoice_number,
            &job,
        )?),
    )
    .await
}
