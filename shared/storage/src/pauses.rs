//! Pauses of an invoice's sequence (promises, disputes, suspensions), and the steps a pause
//! holds back. Callers hold the invoice row `FOR UPDATE` (payments listener, scheduler's
//! resume sweep) or `FOR SHARE` (senders) around these calls, so a pause and a delivery
//! never interleave.

use crate::rows::{decode_error, parse};
use crate::steps::{StepRecord, STEP_RECORD};
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use relance_domain::collections::PauseKind;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct PauseRecord {
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub kind: PauseKind,
    pub reason: String,
    pub promised_on: Option<NaiveDate>,
    pub until: Option<DateTime<Utc>>,
    pub source: String,
    pub event_id: String,
    pub started_at: DateTime<Utc>,
}

/// A pause as stored, before its kind is checked.
#[derive(sqlx::FromRow)]
struct PauseRow {
    id: Uuid,
    invoice_id: Uuid,
    kind: String,
    reason: String,
    promised_on: Option<NaiveDate>,
    until: Option<DateTime<Utc>>,
    source: String,
    event_id: String,
    started_at: DateTime<Utc>,
}

impl TryFrom<PauseRow> for PauseRecord {
    type Error = anyhow::Error;
    fn try_from(row: PauseRow) -> anyhow::Result<Self> {
        Ok(PauseRecord {
            kind: parse("invoice_pauses", row.id, "kind", &row.kind)?,
            id: row.id,
            invoice_id: row.invoice_id,
            reason: row.reason,
            promised_on: row.promised_on,
            until: row.until,
            source: row.source,
            event_id: row.event_id,
            started_at: row.started_at,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for PauseRecord {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        PauseRow::from_row(row)?.try_into().map_err(decode_error)
    }
}

const PAUSE_RECORD: &str =
    "SELECT id, invoice_id, kind, reason, promised_on, until, source, event_id, started_at FROM invoice_pauses";

/// A pause to open.
#[derive(Debug, Clone)]
pub struct NewPause<'a> {
    pub kind: &'a str,
    pub reason: &'a str,
    pub promised_on: Option<NaiveDate>,
    pub until: Option<DateTime<Utc>>,
    /// The routing key of the message that opened it.
    pub source: &'a str,
    pub event_id: &'a str,
    /// Where the action was taken (`customer_page`, `console`, `cli`), if its message says.
    pub origin: Option<&'a str>,
}

pub async fn open(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    pause: &NewPause<'_>,
    at: DateTime<Utc>,
) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO invoice_pauses (id, invoice_id, kind, reason, promised_on, until, source, event_id, started_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(invoice_id)
    .bind(pause.kind)
    .bind(pause.reason)
    .bind(pause.promised_on)
    .bind(pause.until)
    .bind(pause.source)
    .bind(pause.event_id)
    .bind(at)
    .execute(tx)
    .await
    .with_context(|| format!("opening a {} pause", pause.kind))?;
    Ok(id)
}

/// The pauses holding the invoice now, oldest first.
pub async fn active(tx: &mut PgConnection, invoice_id: Uuid) -> anyhow::Result<Vec<PauseRecord>> {
    sqlx::query_as(&format!(
        "{PAUSE_RECORD} WHERE invoice_id = $1 AND ended_at IS NULL ORDER BY started_at, id"
    ))
    .bind(invoice_id)
    .fetch_all(tx)
    .await
    .context("reading the invoice's pauses")
}

/// Ends the active pauses of these kinds; returns those it ended.
pub async fn end_kinds(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    kinds: &[&str],
    reason: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<Vec<PauseRecord>> {
    sqlx::query_as(
        "UPDATE invoice_pauses SET ended_at = $4, end_reason = $3
         WHERE invoice_id = $1 AND kind = ANY($2) AND ended_at IS NULL
         RETURNING id, invoice_id, kind, reason, promised_on, until, source, event_id, started_at",
    )
    .bind(invoice_id)
    .bind(kinds)
    .bind(reason)
    .bind(at)
    .fetch_all(tx)
    .await
    .context("ending pauses")
}

/// Ends one pause if it is still active.
pub async fn end(tx: &mut PgConnection, id: Uuid, reason: &str, at: DateTime<Utc>) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE invoice_pauses SET ended_at = $3, end_reason = $2 WHERE id = $1 AND ended_at IS NULL",
    )
    .bind(id)
    .bind(reason)
    .bind(at)
    .execute(tx)
    .await
    .context("ending a pause")?;
    Ok(updated.rows_affected() == 1)
}

/// Promises whose time is up, oldest first: (pause id, invoice number).
pub async fn expired(
    db: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<Vec<(Uuid, String)>> {
    sqlx::query_as(
        "SELECT p.id, i.number FROM invoice_pauses p JOIN invoices i ON i.id = p.invoice_id
         WHERE p.ended_at IS NULL AND p.until <= $1 ORDER BY p.until LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("finding expired promises")
}

pub async fn find(tx: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<PauseRecord>> {
    sqlx::query_as(&format!("{PAUSE_RECORD} WHERE id = $1 AND ended_at IS NULL"))
        .bind(id)
        .fetch_optional(tx)
        .await
        .context("reading a pause")
}

// A step that had joined another invoice's grouped message leaves it: when the sequence
// resumes it goes out on its own (or joins another message).
const PULL_BACK: &str = "UPDATE reminder_steps SET status = 'pending', status_reason = $3, emitted_at = NULL,
        emitted_on = NULL, grouped_into = NULL, updated_at = $4, status_changed_at = clock_timestamp()
    WHERE kind = 'reminder' AND status = ANY($2)";

/// Takes the invoice's reminders that are on their way but not being delivered (queued,
/// rendered, deferred, or an open call task) back to `pending`: a pause stops them (nobody calls a
/// customer who disputes the invoice; the call comes back if the sequence resumes). Their rendering is dropped, so they are
/// rendered afresh (balance, dates) when the sequence resumes. A job still in a queue for
/// them finds them pending and is ignored.
pub async fn pull_back_in_flight(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    reason: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<Vec<StepRecord>> {
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!("{PULL_BACK} AND invoice_id = $1 RETURNING id"))
        .bind(invoice_id)
        .bind(vec!["queued", "rendered", "deferred", "awaiting_outcome"])
        .bind(reason)
        .bind(at)
        .fetch_all(&mut *tx)
        .await
        .context("pulling back steps in flight")?;
    drop_renderings(tx, &ids, reason, at).await?;
    sqlx::query_as(&format!("{STEP_RECORD} WHERE s.id = ANY($1) ORDER BY s.position"))
        .bind(&ids)
        .fetch_all(tx)
        .await
        .context("reading pulled-back steps")
}

/// A sender found the invoice paused as it was about to deliver: the step goes back from
/// `sending` to `pending`, to be re-dated when the sequence resumes.
pub async fn pull_back_delivery(
    tx: &mut PgConnection,
    step_id: Uuid,
    reason: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!("{PULL_BACK} AND id = $1 RETURNING id"))
        .bind(step_id)
        .bind(vec!["sending"])
        .bind(reason)
        .bind(at)
        .fetch_all(&mut *tx)
        .await
        .context("pulling back a delivery")?;
    drop_renderings(tx, &ids, reason, at).await?;
    Ok(!ids.is_empty())
}

async fn drop_renderings(
    tx: &mut PgConnection,
    step_ids: &[Uuid],
    reason: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    // Kept aside, not deleted: the journal recorded their hash when they were rendered.
    crate::steps::supersede_renderings(&mut *tx, step_ids, reason, at).await?;
    // A call task taken back is opened afresh when its step is rendered again.
    sqlx::query("DELETE FROM call_tasks WHERE step_id = ANY($1) AND outcome IS NULL")
        .bind(step_ids)
        .execute(tx)
        .await
        .context("dropping call tasks of pulled-back steps")?;
    Ok(())
}

/// The invoice's reminders not gone out yet, in plan order.
pub async fn pending_reminders(tx: &mut PgConnection, invoice_id: Uuid) -> anyhow::Result<Vec<StepRecord>> {
    sqlx::query_as(&format!(
        "{STEP_RECORD} WHERE s.invoice_id = $1 AND s.kind = 'reminder' AND s.status = 'pending' ORDER BY s.position"
    ))
    .bind(invoice_id)
    .fetch_all(tx)
    .await
    .context("reading pending reminders")
}

/// A customer's request for a payment plan waiting for the accounts team (an open pause of
/// kind `plan_request`).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct PlanRequest {
    pub invoice_number: String,
    pub customer_name: String,
    pub reason: String,
    pub started_at: DateTime<Utc>,
}

/// The requests for a payment plan waiting for an answer, the oldest first.
pub async fn plan_requests(db: &sqlx::PgPool) -> anyhow::Result<Vec<PlanRequest>> {
    sqlx::query_as(
        "SELECT i.number AS invoice_number, c.name AS customer_name, p.reason, p.started_at
         FROM invoice_pauses p JOIN invoices i ON i.id = p.invoice_id JOIN customers c ON c.id = i.customer_id
         WHERE p.kind = 'plan_request' AND p.ended_at IS NULL
         ORDER BY p.started_at, i.number",
    )
    .fetch_all(db)
    .await
    .context("listing the payment plan requests")
}
