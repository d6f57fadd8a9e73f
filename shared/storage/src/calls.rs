//! Call tasks: the task a call step opens for the accounts team, its outcome once recorded,
//! and the list `relance tasks` shows. A task is open while its step is `awaiting_outcome`;
//! the step's state machine stays in `steps.rs`. Callers hold the invoice row `FOR UPDATE`
//! (payments listener, scheduler's expiry sweep) around changes, like for pauses.

use crate::rows::{decode_error, parse};
use crate::steps::StepStatus;
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

/// Opens the task of a call step (or opens it afresh after a pause took it back).
pub async fn open(
    tx: &mut PgConnection,
    step_id: Uuid,
    invoice_id: Uuid,
    phone: &str,
    opened_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO call_tasks (step_id, invoice_id, phone, opened_at, expires_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (step_id) DO UPDATE SET phone = $3, opened_at = $4, expires_at = $5
         WHERE call_tasks.outcome IS NULL",
    )
    .bind(step_id)
    .bind(invoice_id)
    .bind(phone)
    .bind(opened_at)
    .bind(expires_at)
    .execute(tx)
    .await
    .context("opening the call task")?;
    Ok(())
}

/// A call task with what the caller needs, and its outcome once recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallTask {
    pub step_id: Uuid,
    pub step: String,
    /// The step's status: `awaiting_outcome` while the task is open.
    pub status: StepStatus,
    pub invoice_id: Uuid,
    pub invoice_number: String,
    pub customer_name: String,
    pub contact_name: String,
    pub phone: String,
    pub due_on: NaiveDate,
    pub balance: rust_decimal::Decimal,
    pub currency: String,
    pub opened_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The call script, as rendered (absent if the rendering was dropped).
    pub title: Option<String>,
    pub script: Option<String>,
    pub outcome: Option<String>,
    pub promised_on: Option<NaiveDate>,
    pub reason: Option<String>,
    pub note: Option<String>,
    pub recorded_at: Option<DateTime<Utc>>,
    pub recap_step_id: Option<Uuid>,
}

/// A call task as stored, before its step's status is checked.
#[derive(sqlx::FromRow)]
struct CallTaskRow {
    step_id: Uuid,
    step: String,
    status: String,
    invoice_id: Uuid,
    invoice_number: String,
    customer_name: String,
    contact_name: String,
    phone: String,
    due_on: NaiveDate,
    balance: rust_decimal::Decimal,
    currency: String,
    opened_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    title: Option<String>,
    script: Option<String>,
    outcome: Option<String>,
    promised_on: Option<NaiveDate>,
    reason: Option<String>,
    note: Option<String>,
    recorded_at: Option<DateTime<Utc>>,
    recap_step_id: Option<Uuid>,
}

impl TryFrom<CallTaskRow> for CallTask {
    type Error = anyhow::Error;
    fn try_from(row: CallTaskRow) -> anyhow::Result<Self> {
        Ok(CallTask {
            status: parse("reminder_steps", row.step_id, "status", &row.status)?,
            step_id: row.step_id,
            step: row.step,
            invoice_id: row.invoice_id,
            invoice_number: row.invoice_number,
            customer_name: row.customer_name,
            contact_name: row.contact_name,
            phone: row.phone,
            due_on: row.due_on,
            balance: row.balance,
            currency: row.currency,
            opened_at: row.opened_at,
            expires_at: row.expires_at,
            title: row.title,
            script: row.script,
            outcome: row.outcome,
            promised_on: row.promised_on,
            reason: row.reason,
            note: row.note,
            recorded_at: row.recorded_at,
            recap_step_id: row.recap_step_id,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for CallTask {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        CallTaskRow::from_row(row)?.try_into().map_err(decode_error)
    }
}

const CALL_TASK: &str =
    "SELECT t.step_id, s.name AS step, s.status, t.invoice_id, i.number AS invoice_number,
        c.name AS customer_name, c.contact_name, t.phone, i.due_on, i.balance, trim(i.currency) AS currency,
        t.opened_at, t.expires_at, r.subject AS title, r.body_text AS script, t.outcome, t.promised_on,
        t.reason, t.note, t.recorded_at, t.recap_step_id
    FROM call_tasks t
    JOIN reminder_steps s ON s.id = t.step_id
    JOIN invoices i ON i.id = t.invoice_id
    JOIN customers c ON c.id = i.customer_id
    LEFT JOIN rendered_messages r ON r.step_id = t.step_id";

/// Open tasks (or all of them with `all`), the oldest first.
pub async fn list(db: &PgPool, all: bool) -> anyhow::Result<Vec<CallTask>> {
    sqlx::query_as(&format!(
        "{CALL_TASK} WHERE $1 OR s.status = 'awaiting_outcome' ORDER BY t.opened_at, i.number"
    ))
    .bind(all)
    .fetch_all(db)
    .await
    .context("reading call tasks")
}

/// The task an outcome is for: the step's, or else the invoice's open task (the latest).
/// Locked for the caller.
pub async fn find_for_outcome(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    step_id: Option<Uuid>,
) -> anyhow::Result<Option<CallTask>> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "SELECT t.step_id FROM call_tasks t JOIN reminder_steps s ON s.id = t.step_id
         WHERE t.invoice_id = $1 AND ($2::uuid IS NULL AND s.status = 'awaiting_outcome' OR t.step_id = $2)
         ORDER BY t.opened_at DESC LIMIT 1 FOR UPDATE OF t",
    )
    .bind(invoice_id)
    .bind(step_id)
    .fetch_optional(&mut *tx)
    .await
    .context("finding the call task")?;
    let Some(id) = id else { return Ok(None) };
    sqlx::query_as(&format!("{CALL_TASK} WHERE t.step_id = $1"))
        .bind(id)
        .fetch_optional(tx)
        .await
        .context("reading the call task")
}

/// What the caller recorded.
#[derive(Debug, Clone)]
pub struct RecordedOutcome<'a> {
    pub outcome: &'a str,
    pub promised_on: Option<NaiveDate>,
    pub reason: Option<&'a str>,
    pub note: Option<&'a str>,
    pub event_id: &'a str,
}

/// Records the outcome of a task that has none yet. Returns false if one was recorded.
pub async fn record_outcome(
    tx: &mut PgConnection,
    step_id: Uuid,
    outcome: &RecordedOutcome<'_>,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE call_tasks SET outcome = $2, promised_on = $3, reason = $4, note = $5, event_id = $6, recorded_at = $7
         WHERE step_id = $1 AND outcome IS NULL",
    )
    .bind(step_id)
    .bind(outcome.outcome)
    .bind(outcome.promised_on)
    .bind(outcome.reason)
    .bind(outcome.note)
    .bind(outcome.event_id)
    .bind(at)
    .execute(tx)
    .await
    .context("recording the call outcome")?;
    Ok(updated.rows_affected() == 1)
}

/// Links the email that confirms the call's promise.
pub async fn set_recap(tx: &mut PgConnection, step_id: Uuid, recap_step_id: Uuid) -> anyhow::Result<()> {
    sqlx::query("UPDATE call_tasks SET recap_step_id = $2 WHERE step_id = $1")
        .bind(step_id)
        .bind(recap_step_id)
        .execute(tx)
        .await
        .context("linking the call recap")?;
    Ok(())
}

/// The call a recap step confirms: (promised date, when the outcome was recorded).
pub async fn recap_facts(
    db: &mut PgConnection,
    recap_step_id: Uuid,
) -> anyhow::Result<Option<(Option<NaiveDate>, Option<DateTime<Utc>>)>> {
    sqlx::query_as("SELECT promised_on, recorded_at FROM call_tasks WHERE recap_step_id = $1")
        .bind(recap_step_id)
        .fetch_optional(db)
        .await
        .context("reading the call a recap confirms")
}

/// Open tasks whose time is up, the oldest first: (step id, invoice number).
pub async fn expired(
    db: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<Vec<(Uuid, String)>> {
    sqlx::query_as(
        "SELECT t.step_id, i.number FROM call_tasks t
         JOIN reminder_steps s ON s.id = t.step_id JOIN invoices i ON i.id = t.invoice_id
         WHERE s.status = 'awaiting_outcome' AND t.expires_at <= $1 ORDER BY t.expires_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("finding expired call tasks")
}

/// The number of the invoice a step belongs to (`relance tasks outcome <step id>`).
pub async fn invoice_of_step(db: &PgPool, step_id: Uuid) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT i.number FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id WHERE s.id = $1",
    )
    .bind(step_id)
    .fetch_optional(db)
    .await
    .context("finding the step's invoice")
}
