//! Hand-off queries: invoices whose dunning sequence is over, unpaid, past the last deadline;
//! and the status change that ends relance's part.

use crate::rows::{decode_error, parse, parse_tz};
use crate::steps::StepStatus;
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use relance_domain::{Channel, CustomerKind};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// An invoice ready for hand-off, locked for the caller.
#[derive(Debug, Clone)]
pub struct HandOffCandidate {
    pub id: Uuid,
    pub number: String,
    pub amount: Decimal,
    /// Sum of the credit notes.
    pub credited: Decimal,
    pub balance: Decimal,
    pub currency: String,
    pub due_on: NaiveDate,
    /// The customer's kind (`business`, `consumer`) and time zone: what it owes on top of
    /// the balance, and on which local day.
    pub customer_kind: CustomerKind,
    pub timezone: Tz,
    /// The late-payment rate agreed with the customer, if any.
    pub late_interest_percent: Option<Decimal>,
    /// The last reminder step of the sequence (highest position), and when it reached its
    /// final status (clock time).
    pub last_step: String,
    pub last_step_status: StepStatus,
    pub last_step_at: DateTime<Utc>,
    /// Its channel: a letter's deadline runs from its receipt, some days after it was posted.
    pub last_step_channel: Channel,
    /// The creditor it names (id, name), `None` for the default creditor, and that
    /// creditor's named policy (`None`: the default policy).
    pub creditor: Option<(String, String)>,
    pub policy: Option<String>,
}

/// A hand-off candidate as stored, before its customer's kind and time zone and its last
/// step's status and channel are checked.
#[derive(sqlx::FromRow)]
struct HandOffRow {
    id: Uuid,
    number: String,
    amount: Decimal,
    credited: Decimal,
    balance: Decimal,
    currency: String,
    due_on: NaiveDate,
    customer_kind: String,
    timezone: String,
    late_interest_percent: Option<Decimal>,
    last_step: String,
    last_step_status: String,
    last_step_at: DateTime<Utc>,
    last_step_channel: String,
    creditor_id: Option<String>,
    creditor_name: Option<String>,
    policy: Option<String>,
}

impl TryFrom<HandOffRow> for HandOffCandidate {
    type Error = anyhow::Error;
    fn try_from(row: HandOffRow) -> anyhow::Result<Self> {
        let customer = format!("of invoice {}", row.number);
        let step = format!("{:?} of invoice {}", row.last_step, row.number);
        Ok(HandOffCandidate {
            customer_kind: parse("customers", &customer, "kind", &row.customer_kind)?,
            timezone: parse_tz("customers", &customer, &row.timezone)?,
            last_step_status: parse("reminder_steps", &step, "status", &row.last_step_status)?,
            last_step_channel: parse("reminder_steps", &step, "channel", &row.last_step_channel)?,
            id: row.id,
            number: row.number,
            amount: row.amount,
            credited: row.credited,
            balance: row.balance,
            currency: row.currency,
            due_on: row.due_on,
            late_interest_percent: row.late_interest_percent,
            last_step: row.last_step,
            last_step_at: row.last_step_at,
            creditor: row.creditor_id.zip(row.creditor_name),
            policy: row.policy,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for HandOffCandidate {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        HandOffRow::from_row(row)?.try_into().map_err(decode_error)
    }
}

/// How long an unpaid invoice waits after the last step of its sequence.
#[derive(Debug, Clone, Copy)]
pub struct HandOffDelay {
    /// Whole days after the last step became final.
    pub after_days: u32,
    /// Added when that step was a letter sent by post.
    pub postal_days: u32,
}

/// Folds up to `limit` rows of `sequence_endings` (reminder steps that became final) into
/// their invoices' `sequence_ended_at`: the time the last reminder step of the sequence became
/// final once every reminder step is final, else NULL (migration ...20261204100001). Returns
/// how many rows were consumed.
///
/// Only the invoices whose value changes are written, each locked with SKIP LOCKED (the
/// rows of an invoice another transaction holds stay for a later pass). Most notes change
/// nothing (a step sent while later ones are pending): those are consumed without touching
/// or locking their invoice, so a payment never waits on the sweep for them. Before, every
/// noted invoice was locked and rewritten (with its indexes) for the whole statement: at a
/// million invoices, half a second a batch during which a payment of any of them waited.
/// A note read before a concurrent change of the steps is safe to consume: that change
/// notes the invoice again, for a later pass.
pub async fn note_ended_sequences(tx: &mut PgConnection, limit: i64) -> anyhow::Result<u64> {
    let consumed: i64 = sqlx::query_scalar(
        "WITH picked AS (
             SELECT id, invoice_id FROM sequence_endings ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
         ), computed AS (
             SELECT i.id, i.sequence_ended_at AS was, (
                 SELECT CASE WHEN last.status IN ('sent', 'skipped', 'cancelled', 'failed', 'completed', 'expired')
                              AND NOT EXISTS (SELECT 1 FROM reminder_steps o
                                              WHERE o.invoice_id = i.id AND o.kind = 'reminder'
                                                AND o.status IN ('pending', 'queued', 'rendered', 'deferred', 'sending', 'awaiting_outcome', 'awaiting_approval'))
                             THEN last.updated_at END
                 FROM (SELECT s.status, s.updated_at FROM reminder_steps s
                       WHERE s.invoice_id = i.id AND s.kind = 'reminder'
                       ORDER BY s.position DESC LIMIT 1) last) AS ended
             FROM invoices i WHERE i.id IN (SELECT invoice_id FROM picked)
         ), locked AS (
             -- Re-checked on the row's latest version: one another sweep changed since this
             -- statement's snapshot is left, its note kept for a later pass.
             SELECT i.id FROM invoices i JOIN computed c ON c.id = i.id
             WHERE c.ended IS DISTINCT FROM c.was AND i.sequence_ended_at IS NOT DISTINCT FROM c.was
             ORDER BY i.id FOR NO KEY UPDATE OF i SKIP LOCKED
         ), updated AS (
             UPDATE invoices i SET sequence_ended_at = c.ended
             FROM locked JOIN computed c ON c.id = locked.id
             WHERE i.id = locked.id
             RETURNING i.id
         ), consumed AS (
             DELETE FROM sequence_endings e USING picked
             WHERE e.id = picked.id
               AND (picked.invoice_id IN (SELECT id FROM updated)
                    OR picked.invoice_id IN (SELECT id FROM computed WHERE ended IS NOT DISTINCT FROM was)
                    OR NOT EXISTS (SELECT 1 FROM invoices WHERE id = picked.invoice_id))
             RETURNING e.id
         )
         SELECT count(*) FROM consumed",
    )
    .bind(limit)
    .fetch_one(tx)
    .await
    .context("noting the sequences that ended")?;
    Ok(u64::try_from(consumed).unwrap_or(0))
}

/// Claims up to `limit` open, unpaid, overdue, unpaused invoices whose reminder steps are all
/// final (a call task ended: completed or expired; an open one holds the hand-off) and
/// whose last step became final more than `after_days` whole days ago, counted in the
/// customer's calendar: with 8, a last reminder sent on 28 March is handed off from 6 April,
/// 00:00 local time. When that step was a letter (a registered formal notice) sent, the
/// postal days are added: its deadline runs from receipt. A pause (promise, dispute, suspension) holds the hand-off while it lasts;
/// once it ends unpaid past that day, the invoice goes at once. Invoices another scheduler
/// holds are skipped (`SKIP LOCKED`).
pub async fn claim_due(
    tx: &mut PgConnection,
    now: DateTime<Utc>,
    delay: HandOffDelay,
    limit: i64,
) -> anyhow::Result<Vec<HandOffCandidate>> {
    sqlx::query_as(
        "SELECT i.id, i.number, i.amount, i.credited, i.balance, i.currency, i.due_on,
                c.kind AS customer_kind, c.timezone, c.late_interest_percent,
                last.name AS last_step, last.status AS last_step_status, last.updated_at AS last_step_at,
                last.channel AS last_step_channel, cr.id AS creditor_id, cr.name AS creditor_name, cr.policy
         FROM invoices i
         JOIN customers c ON c.id = i.customer_id
         LEFT JOIN creditors cr ON cr.id = i.creditor_id
         JOIN LATERAL (SELECT s.name, s.status, s.updated_at, s.channel FROM reminder_steps s
                       WHERE s.invoice_id = i.id AND s.kind = 'reminder'
                       ORDER BY s.position DESC LIMIT 1) last ON true
         WHERE i.status = 'open' AND i.sequence_ended_at IS NOT NULL
           -- The index's range: a local day is at most a day and a few hours long, so an
           -- invoice due under the rule below ended at most after_days days minus one ago.
           AND i.sequence_ended_at <= $1 - make_interval(days => $2::int - 2)
           AND i.balance > 0
           AND i.due_on <= ($1 AT TIME ZONE 'UTC')::date + 1
           AND i.due_on < ($1 AT TIME ZONE c.timezone)::date
           AND last.status IN ('sent', 'skipped', 'cancelled', 'failed', 'completed', 'expired')
           AND ($1 AT TIME ZONE c.timezone)::date > (last.updated_at AT TIME ZONE c.timezone)::date + $2::int
               + CASE WHEN last.status = 'sent' AND last.channel IN ('letter', 'registered_letter') THEN $4::int ELSE 0 END
           AND NOT EXISTS (SELECT 1 FROM invoice_pauses p WHERE p.invoice_id = i.id AND p.ended_at IS NULL)
           AND NOT EXISTS (SELECT 1 FROM reminder_steps o
                           WHERE o.invoice_id = i.id AND o.kind = 'reminder'
                             AND o.status IN ('pending', 'queued', 'rendered', 'deferred', 'sending', 'awaiting_outcome', 'awaiting_approval'))
           -- A hand-off waiting for approval, or whose approval was refused or expired, stays.
           AND NOT EXISTS (SELECT 1 FROM approval_requests r
                           WHERE r.invoice_id = i.id AND r.subject = 'hand_off'
                             AND (r.decision IS NULL OR r.decision IN ('rejected', 'expired')))
         ORDER BY i.sequence_ended_at, i.id
         LIMIT $3
         FOR UPDATE OF i SKIP LOCKED",
    )
    .bind(now)
    .bind(i32::try_from(delay.after_days).unwrap_or(i32::MAX))
    .bind(limit)
    .bind(i32::try_from(delay.postal_days).unwrap_or(i32::MAX))
    .fetch_all(tx)
    .await
    .context("claiming invoices to hand off")
}

/// Marks the invoice handed off, if it is still open. Returns false otherwise.
pub async fn mark_handed_off(
    tx: &mut PgConnection,
    id: Uuid,
    reason: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE invoices SET status = 'handed_off', status_reason = $2, status_changed_at = $3
         WHERE id = $1 AND status = 'open'",
    )
    .bind(id)
    .bind(reason)
    .bind(at)
    .execute(tx)
    .await
    .context("marking the invoice handed off")?;
    Ok(updated.rows_affected() == 1)
}
