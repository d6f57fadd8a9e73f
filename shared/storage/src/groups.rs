//! Grouped reminders: a step of one of the customer's overdue invoices that goes out inside
//! the message of another step (its lead) rather than in a message of its own. A member waits
//! in `queued` with `grouped_into` set; it becomes `sent` when its lead is sent, and is
//! released to go out on its own when its lead ends otherwise (a payment cancelled it). The
//! lead's rendering records which members it lists, so that a sender can tell that one of
//! them left the group (paid, closed, paused) before the message went out.

use crate::rows::{decode_error, parse};
use crate::steps::{StepRecord, StepStatus, STEP_RECORD};
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use relance_domain::Channel;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// A pending reminder step of another open invoice of the customer.
#[derive(Debug, Clone)]
pub struct OtherPending {
    pub step_id: Uuid,
    pub invoice_id: Uuid,
    pub invoice_due_on: NaiveDate,
    pub currency: String,
    pub emitted_today: bool,
    pub position: i32,
    pub channel: Channel,
    pub template: String,
    pub due_at: DateTime<Utc>,
}

/// [`OtherPending`] as stored, before its channel is checked.
#[derive(sqlx::FromRow)]
struct OtherPendingRow {
    step_id: Uuid,
    invoice_id: Uuid,
    invoice_due_on: NaiveDate,
    currency: String,
    emitted_today: bool,
    position: i32,
    channel: String,
    template: String,
    due_at: DateTime<Utc>,
}

impl TryFrom<OtherPendingRow> for OtherPending {
    type Error = anyhow::Error;
    fn try_from(row: OtherPendingRow) -> anyhow::Result<Self> {
        Ok(OtherPending {
            channel: parse("reminder_steps", row.step_id, "channel", &row.channel)?,
            step_id: row.step_id,
            invoice_id: row.invoice_id,
            invoice_due_on: row.invoice_due_on,
            currency: row.currency,
            emitted_today: row.emitted_today,
            position: row.position,
            template: row.template,
            due_at: row.due_at,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for OtherPending {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        OtherPendingRow::from_row(row)?.try_into().map_err(decode_error)
    }
}

/// The pending reminder steps of the customer's other open invoices of the lead's creditor,
/// whose invoices are locked for this transaction (those another scheduler holds are left
/// out). A paused
/// invoice's steps never join: no reminder of it goes out while the pause lasts (a promise
/// whose time is up counts until the scheduler ends it and re-dates its steps).
pub async fn other_pending(
    tx: &mut PgConnection,
    customer_id: &str,
    lead_invoice_id: Uuid,
    today: NaiveDate,
) -> anyhow::Result<Vec<OtherPending>> {
    sqlx::query_as(
        "WITH others AS (
             SELECT id, due_on, trim(currency) AS currency FROM invoices
             WHERE customer_id = $1 AND id <> $2 AND status = 'open'
               -- One message speaks for one creditor: invoices of another do not join.
               AND creditor_id IS NOT DISTINCT FROM (SELECT l.creditor_id FROM invoices l WHERE l.id = $2)
               AND NOT EXISTS (SELECT 1 FROM invoice_pauses p WHERE p.invoice_id = invoices.id AND p.ended_at IS NULL)
             FOR UPDATE SKIP LOCKED)
         SELECT s.id AS step_id, s.invoice_id, o.due_on AS invoice_due_on, o.currency,
             EXISTS (SELECT 1 FROM reminder_steps e WHERE e.invoice_id = s.invoice_id AND e.emitted_on = $3) AS emitted_today,
             s.position, s.channel, s.template, s.due_at
         FROM reminder_steps s JOIN others o ON o.id = s.invoice_id
         WHERE s.status = 'pending' AND s.kind = 'reminder'
         ORDER BY s.invoice_id, s.position",
    )
    .bind(customer_id)
    .bind(lead_invoice_id)
    .bind(today)
    .fetch_all(tx)
    .await
    .context("reading the customer's other pending steps")
}

/// Makes a pending step a member of `lead`'s message, emitted on the customer's `local_day`.
pub async fn join(
    tx: &mut PgConnection,
    id: Uuid,
    lead: Uuid,
    at: DateTime<Utc>,
    local_day: NaiveDate,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE reminder_steps SET status = 'queued', grouped_into = $2, emitted_at = $3, emitted_on = $4,
             updated_at = $3, status_changed_at = clock_timestamp()
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(lead)
    .bind(at)
    .bind(local_day)
    .execute(tx)
    .await
    .context("grouping a step")?;
    Ok(updated.rows_affected() == 1)
}

/// The members still waiting in `lead`'s message (a paid invoice's member is cancelled).
pub async fn members(db: &mut PgConnection, lead: Uuid) -> anyhow::Result<Vec<StepRecord>> {
    sqlx::query_as(&format!(
        "{STEP_RECORD} WHERE s.grouped_into = $1 AND s.status = 'queued' ORDER BY i.due_on, i.number"
    ))
    .bind(lead)
    .fetch_all(db)
    .await
    .context("reading the grouped steps")
}

/// A member whose lead has ended, locked, with how the lead ended.
#[derive(Debug, Clone)]
pub struct Settled {
    pub member: StepRecord,
    pub lead_id: Uuid,
    pub lead_invoice: String,
    pub lead_step: String,
    pub lead_status: StepStatus,
    pub lead_proof: Option<String>,
    pub lead_message_id: Option<String>,
}

#[derive(sqlx::FromRow)]
struct LeadOf {
    id: Uuid,
    lead_id: Uuid,
    lead_invoice: String,
    lead_step: String,
    lead_status: String,
    lead_proof: Option<String>,
    lead_message_id: Option<String>,
}

/// Members whose lead is sent, skipped, cancelled, failed or ambiguous: they are settled next.
pub async fn settled_leads(tx: &mut PgConnection, limit: i64) -> anyhow::Result<Vec<Settled>> {
    let leads: Vec<LeadOf> = sqlx::query_as(
        "SELECT m.id, l.id AS lead_id, li.number AS lead_invoice, l.name AS lead_step, l.status AS lead_status,
             l.delivery_proof AS lead_proof, r.message_id AS lead_message_id
         FROM reminder_steps m
         JOIN reminder_steps l ON l.id = m.grouped_into
         JOIN invoices li ON li.id = l.invoice_id
         LEFT JOIN rendered_messages r ON r.step_id = l.id
         WHERE m.status = 'queued' AND l.status IN ('sent', 'skipped', 'cancelled', 'failed', 'ambiguous')
         ORDER BY m.id LIMIT $1 FOR UPDATE OF m SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
    .context("reading grouped steps whose lead has ended")?;
    let mut out = Vec::new();
    for lead in leads {
        let member: StepRecord = sqlx::query_as(&format!("{STEP_RECORD} WHERE s.id = $1"))
            .bind(lead.id)
            .fetch_one(&mut *tx)
            .await
            .context("reading a grouped step")?;
        out.push(Settled {
            member,
            lead_id: lead.lead_id,
            lead_invoice: lead.lead_invoice,
            lead_step: lead.lead_step,
            lead_status: parse("reminder_steps", lead.lead_id, "status", &lead.lead_status)?,
            lead_proof: lead.lead_proof,
            lead_message_id: lead.lead_message_id,
        });
    }
    Ok(out)
}

/// A member whose lead was sent: sent too, with the lead's proof.
pub async fn mark_sent(
    tx: &mut PgConnection,
    id: Uuid,
    proof: Option<&str>,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE reminder_steps SET status = 'sent', delivery_proof = $2, updated_at = $3,
             status_changed_at = clock_timestamp()
         WHERE id = $1 AND status = 'queued'",
    )
    .bind(id)
    .bind(proof)
    .bind(at)
    .execute(tx)
    .await
    .context("marking a grouped step sent")?;
    Ok(updated.rows_affected() == 1)
}

/// A member whose lead will not go out: out of the group, to be sent on its own.
pub async fn release(tx: &mut PgConnection, id: Uuid, at: DateTime<Utc>) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE reminder_steps SET grouped_into = NULL, updated_at = $2, status_changed_at = clock_timestamp()
         WHERE id = $1 AND status = 'queued'",
    )
    .bind(id)
    .bind(at)
    .execute(tx)
    .await
    .context("releasing a grouped step")?;
    Ok(updated.rows_affected() == 1)
}

/// Records which members a lead's rendering lists, in the rendering's transaction.
pub async fn record_listed(tx: &mut PgConnection, lead: Uuid, members: &[Uuid]) -> anyhow::Result<()> {
    sqlx::query("UPDATE rendered_messages SET grouped_steps = $2 WHERE step_id = $1")
        .bind(lead)
        .bind(members)
        .execute(tx)
        .await
        .context("recording the invoices a grouped message lists")?;
    Ok(())
}

/// A member that a lead's rendering lists, as it stands now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub step_id: Uuid,
    pub invoice_id: Uuid,
    pub invoice_number: String,
    pub step: String,
    pub status: StepStatus,
    /// Still waiting in the lead's message (queued with it): it goes out with it.
    pub still_grouped: bool,
}

/// [`Listed`] as stored, before its status is checked.
#[derive(sqlx::FromRow)]
struct ListedRow {
    step_id: Uuid,
    invoice_id: Uuid,
    invoice_number: String,
    step: String,
    status: String,
    still_grouped: bool,
}

impl TryFrom<ListedRow> for Listed {
    type Error = anyhow::Error;
    fn try_from(row: ListedRow) -> anyhow::Result<Self> {
        Ok(Listed {
            status: parse("reminder_steps", row.step_id, "status", &row.status)?,
            step_id: row.step_id,
            invoice_id: row.invoice_id,
            invoice_number: row.invoice_number,
            step: row.step,
            still_grouped: row.still_grouped,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for Listed {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        ListedRow::from_row(row)?.try_into().map_err(decode_error)
    }
}

/// The members the lead's current rendering lists, with where each stands now, in the order
/// the message lists them.
pub async fn listed(db: &mut PgConnection, lead: Uuid) -> anyhow::Result<Vec<Listed>> {
    sqlx::query_as(
        "SELECT s.id AS step_id, s.invoice_id, i.number AS invoice_number, s.name AS step, s.status,
             (s.status = 'queued' AND s.grouped_into IS NOT DISTINCT FROM r.step_id) AS still_grouped
         FROM rendered_messages r
         CROSS JOIN LATERAL unnest(r.grouped_steps) AS listed(id)
         JOIN reminder_steps s ON s.id = listed.id
         JOIN invoices i ON i.id = s.invoice_id
         WHERE r.step_id = $1
         ORDER BY i.due_on, i.number",
    )
    .bind(lead)
    .fetch_all(db)
    .await
    .context("reading the invoices a grouped message lists")
}
