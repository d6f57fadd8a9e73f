//! Reminder steps: the plan of each invoice, and the state machine every service moves them
//! through. Transitions are conditional updates (`WHERE status = ANY(from)`), so a step moves
//! forward once, whichever copy of a service gets there first.

use crate::rows::{decode_error, parse};
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use relance_domain::{Channel, PlannedStep, Risk, StepKind, Tone};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Where a step is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Planned, waiting for its time.
    Pending,
    /// Emitted by the scheduler, waiting for the renderer.
    Queued,
    /// Rendered, waiting for its channel's sender.
    Rendered,
    /// Refused for now by the provider (a 4xx, a refused connection): waits for its retry
    /// at `next_attempt_at`, within the retry budget.
    Deferred,
    /// The sender is delivering it right now.
    Sending,
    Sent,
    Skipped,
    Cancelled,
    Failed,
    /// A call task is open: a person is to call the customer and record the outcome.
    AwaitingOutcome,
    /// The call's outcome was recorded.
    Completed,
    /// Nobody recorded the call's outcome in time.
    Expired,
    /// The sender died after the end of DATA (or the provider's request) was sent and before
    /// the answer was recorded: it may or may not have reached the customer (reported).
    Ambiguous,
    /// Due, but held until a person approves it (`approvals.rs`); not yet rendered.
    AwaitingApproval,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Queued => "queued",
            StepStatus::Rendered => "rendered",
            StepStatus::Deferred => "deferred",
            StepStatus::Sending => "sending",
            StepStatus::Sent => "sent",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Failed => "failed",
            StepStatus::AwaitingOutcome => "awaiting_outcome",
            StepStatus::Completed => "completed",
            StepStatus::Expired => "expired",
            StepStatus::Ambiguous => "ambiguous",
            StepStatus::AwaitingApproval => "awaiting_approval",
        }
    }

    /// Statuses from which a payment cancels the step (an open call task included). A step
    /// in `sending` is not cancelled but marked (see [`cancel_open`]): its sender decides.
    pub const ALL: [StepStatus; 14] = [
        StepStatus::Pending,
        StepStatus::Queued,
        StepStatus::Rendered,
        StepStatus::Deferred,
        StepStatus::Sending,
        StepStatus::Sent,
        StepStatus::Skipped,
        StepStatus::Cancelled,
        StepStatus::Failed,
        StepStatus::AwaitingOutcome,
        StepStatus::Completed,
        StepStatus::Expired,
        StepStatus::Ambiguous,
        StepStatus::AwaitingApproval,
    ];

    /// Not gone out yet: pending, or in flight (queued, rendered, deferred, sending).
    pub fn is_unsent(self) -> bool {
        matches!(
            self,
            StepStatus::Pending
                | StepStatus::Queued
                | StepStatus::Rendered
                | StepStatus::Deferred
                | StepStatus::Sending
        )
    }

    pub const OPEN: [StepStatus; 6] = [
        StepStatus::Pending,
        StepStatus::Queued,
        StepStatus::Rendered,
        StepStatus::Deferred,
        StepStatus::AwaitingOutcome,
        StepStatus::AwaitingApproval,
    ];
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StepStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown step status {s:?}"))
    }
}

fn names(statuses: &[StepStatus]) -> Vec<&'static str> {
    statuses.iter().map(|s| s.as_str()).collect()
}

pub async fn insert_planned(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    kind: StepKind,
    step: &PlannedStep,
    status: StepStatus,
    at: DateTime<Utc>,
) -> anyhow::Result<Uuid> {
    // Time-ordered (UUIDv7): a new step's index entries go where the last ones went, not to
    // a random page of indexes that hold millions (see `invoices::insert_invoice`).
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at, status, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(invoice_id)
    .bind(&step.name)
    .bind(kind.as_str())
    .bind(step.position)
    .bind(step.channel.as_str())
    .bind(&step.template)
    .bind(step.tone.as_str())
    .bind(step.due_at)
    .bind(status.as_str())
    .bind(at)
    .execute(tx)
    .await
    .with_context(|| format!("planning step {}", step.name))?;
    Ok(id)
}

/// Stores a plan's steps of one invoice in one statement (an invoice's six steps in one
/// round trip and one executor run, rather than six): the intake's largest cost per invoice.
/// Returns their ids, in the order of `planned`.
pub async fn insert_planned_all(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    kind: StepKind,
    planned: &[PlannedStep],
    status: StepStatus,
    at: DateTime<Utc>,
) -> anyhow::Result<Vec<Uuid>> {
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    // Time-ordered (UUIDv7), as in `insert_planned`.
    let ids: Vec<Uuid> = planned.iter().map(|_| Uuid::now_v7()).collect();
    let names: Vec<&str> = planned.iter().map(|s| s.name.as_str()).collect();
    let positions: Vec<i32> = planned.iter().map(|s| s.position).collect();
    let channels: Vec<&str> = planned.iter().map(|s| s.channel.as_str()).collect();
    let templates: Vec<&str> = planned.iter().map(|s| s.template.as_str()).collect();
    let tones: Vec<&str> = planned.iter().map(|s| s.tone.as_str()).collect();
    let due: Vec<DateTime<Utc>> = planned.iter().map(|s| s.due_at).collect();
    sqlx::query(
        "INSERT INTO reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at, status, updated_at)
         SELECT s.id, $2, s.name, $3, s.position, s.channel, s.template, s.tone, s.due_at, $4, $5
         FROM UNNEST($1::uuid[], $6::text[], $7::int4[], $8::text[], $9::text[], $10::text[], $11::timestamptz[])
              AS s (id, name, position, channel, template, tone, due_at)",
    )
    .bind(&ids)
    .bind(invoice_id)
    .bind(kind.as_str())
    .bind(status.as_str())
    .bind(at)
    .bind(&names)
    .bind(&positions)
    .bind(&channels)
    .bind(&templates)
    .bind(&tones)
    .bind(&due)
    .execute(tx)
    .await
    .with_context(|| {
        format!(
            "planning steps {}",
            names.join(", ")
        )
    })?;
    Ok(ids)
}

#[derive(Debug, Clone)]
pub struct StepRecord {
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub invoice_number: String,
    pub name: String,
    pub kind: StepKind,
    pub position: i32,
    pub channel: Channel,
    pub template: String,
    pub tone: Tone,
    pub due_at: DateTime<Utc>,
    pub status: StepStatus,
    pub emitted_on: Option<NaiveDate>,
}

/// A step as stored, before its kind, channel, tone and status are checked.
#[derive(sqlx::FromRow)]
struct StepRow {
    id: Uuid,
    invoice_id: Uuid,
    invoice_number: String,
    name: String,
    kind: String,
    position: i32,
    channel: String,
    template: String,
    tone: String,
    due_at: DateTime<Utc>,
    status: String,
    emitted_on: Option<NaiveDate>,
}

impl TryFrom<StepRow> for StepRecord {
    type Error = anyhow::Error;
    fn try_from(row: StepRow) -> anyhow::Result<Self> {
        let named = format!(
            "{} (step {:?} of invoice {})",
            row.id, row.name, row.invoice_number
        );
        Ok(StepRecord {
            kind: parse("reminder_steps", &named, "kind", &row.kind)?,
            channel: parse("reminder_steps", &named, "channel", &row.channel)?,
            tone: parse("reminder_steps", &named, "tone", &row.tone)?,
            status: parse("reminder_steps", &named, "status", &row.status)?,
            id: row.id,
            invoice_id: row.invoice_id,
            invoice_number: row.invoice_number,
            name: row.name,
            position: row.position,
            template: row.template,
            due_at: row.due_at,
            emitted_on: row.emitted_on,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for StepRecord {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        StepRow::from_row(row)?.try_into().map_err(decode_error)
    }
}

pub(crate) const STEP_RECORD: &str =
    "SELECT s.id, s.invoice_id, i.number AS invoice_number, s.name, s.kind, s.position, s.channel,
        s.template, s.tone, s.due_at, s.status, s.emitted_on
    FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id";

pub async fn find(db: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<StepRecord>> {
    sqlx::query_as(&format!("{STEP_RECORD} WHERE s.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
        .context("reading the step")
}

pub async fn for_invoice(db: &mut PgConnection, invoice_id: Uuid) -> anyhow::Result<Vec<StepRecord>> {
    sqlx::query_as(&format!(
        "{STEP_RECORD} WHERE s.invoice_id = $1 ORDER BY s.kind, s.position"
    ))
    .bind(invoice_id)
    .fetch_all(db)
    .await
    .context("reading the steps")
}

/// Moves a step from one of `from` to `to`. Returns false when it was not in `from`
/// (another copy got there first, or a payment cancelled it).
pub async fn transition(
    tx: &mut PgConnection,
    id: Uuid,
    from: &[StepStatus],
    to: StepStatus,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE reminder_steps SET status = $3, status_reason = COALESCE($4, status_reason), updated_at = $5,
             status_changed_at = clock_timestamp()
         WHERE id = $1 AND status = ANY($2)",
    )
    .bind(id)
    .bind(names(from))
    .bind(to.as_str())
    .bind(reason)
    .bind(at)
    .execute(tx)
    .await
    .with_context(|| format!("moving step {id} to {}", to.as_str()))?;
    Ok(updated.rows_affected() == 1)
}

/// Moves a queued step to the channel (and template) it falls back to.
pub async fn fall_back(
    tx: &mut PgConnection,
    id: Uuid,
    channel: relance_domain::Channel,
    template: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE reminder_steps SET channel = $2, template = $3, updated_at = $4 WHERE id = $1 AND status = 'queued'",
    )
    .bind(id)
    .bind(channel.as_str())
    .bind(template)
    .bind(at)
    .execute(tx)
    .await
    .context("moving the step to its fallback channel")?;
    Ok(updated.rows_affected() == 1)
}

/// Records the emission of a reminder on the customer's local day. The unique index refuses
/// a second reminder for the invoice on that day.
pub async fn mark_queued(
    tx: &mut PgConnection,
    id: Uuid,
    at: DateTime<Utc>,
    local_day: NaiveDate,
) -> anyhow::Result<bool> {
    queue(tx, id, at, local_day, None).await
}

/// [`mark_queued`], keeping the trace context of the emission (W3C headers) for whoever
/// hands the step out again, in the same update (one row version per emission, not two).
pub async fn mark_queued_traced(
    tx: &mut PgConnection,
    id: Uuid,
    at: DateTime<Utc>,
    local_day: NaiveDate,
    trace: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<bool> {
    queue(tx, id, at, local_day, Some(trace)).await
}

async fn queue(
    tx: &mut PgConnection,
    id: Uuid,
    at: DateTime<Utc>,
    local_day: NaiveDate,
    trace: Option<&std::collections::BTreeMap<String, String>>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE reminder_steps SET status = 'queued', emitted_at = $2, emitted_on = CASE WHEN kind = 'reminder' THEN $3 END,
             updated_at = $2, status_changed_at = clock_timestamp(), trace_context = COALESCE($4, trace_context)
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(at)
    .bind(local_day)
    .bind(trace.map(sqlx::types::Json))
    .execute(tx)
    .await
    .context("marking the step queued")?;
    Ok(updated.rows_affected() == 1)
}

/// The trace context of a step's emission; empty when none was kept.
pub async fn trace_context(
    tx: &mut PgConnection,
    id: Uuid,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let kept: Option<sqlx::types::Json<std::collections::BTreeMap<String, String>>> =
        sqlx::query_scalar("SELECT trace_context FROM reminder_steps WHERE id = $1")
            .bind(id)
            .fetch_optional(tx)
            .await
            .context("reading the step's trace context")?
            .flatten();
    Ok(kept.map(|json| json.0).unwrap_or_default())
}

pub async fn postpone(
    tx: &mut PgConnection,
    id: Uuid,
    to: DateTime<Utc>,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE reminder_steps SET due_at = $2, updated_at = $3 WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(to)
    .bind(at)
    .execute(tx)
    .await
    .context("postponing the step")?;
    Ok(())
}

/// An open invoice with reminder steps whose time has come, locked for this scheduler.
#[derive(Debug, Clone)]
pub struct DueInvoice {
    pub id: Uuid,
    pub number: String,
    pub timezone: Tz,
    /// The customer's segment, country and region: they choose the steps' windows and calendar.
    pub risk: Risk,
    pub country: String,
    pub region: Option<String>,
    /// For grouping the customer's reminders: who, when due, in which currency.
    pub customer_id: String,
    pub due_on: NaiveDate,
    pub currency: String,
    /// The named policy of its creditor (`None`: the default policy).
    pub policy: Option<String>,
}

/// A due invoice as stored, before its time zone and risk are checked.
#[derive(sqlx::FromRow)]
struct DueInvoiceRow {
    id: Uuid,
    number: String,
    timezone: String,
    risk: String,
    country: String,
    region: Option<String>,
    customer_id: String,
    due_on: NaiveDate,
    currency: String,
    policy: Option<String>,
}

impl TryFrom<DueInvoiceRow> for DueInvoice {
    type Error = anyhow::Error;
    fn try_from(row: DueInvoiceRow) -> anyhow::Result<Self> {
        let named = format!("of invoice {} (customer {})", row.number, row.customer_id);
        Ok(DueInvoice {
            timezone: crate::rows::parse_tz("customers", &named, &row.timezone)?,
            risk: parse("customers", &named, "risk", &row.risk)?,
            id: row.id,
            number: row.number,
            country: row.country,
            region: row.region,
            customer_id: row.customer_id,
            due_on: row.due_on,
            currency: row.currency,
            policy: row.policy,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for DueInvoice {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        DueInvoiceRow::from_row(row)?.try_into().map_err(decode_error)
    }
}

/// Where a scheduler pass's claims have read up to in the due steps (by due time, then id).
///
/// Every step a claim emits leaves `pending`, but its old version stays in the index of
/// pending steps until no snapshot can see it (a long read elsewhere, such as the gauges'
/// aggregates over the ledger, holds them for seconds). A pass that claimed batch after
/// batch from the start of that index walked every step emitted before it in the pass: on a
/// 1,000,000-invoice ledger with 20,000 steps due at once, about 100 ms a claim. A cursor
/// starts each claim of the pass after the steps the earlier claims took. A new pass starts
/// from the beginning ([`ClaimCursor::default`]), so a step passed over (its invoice held by
/// another scheduler, say) is found again a pass later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClaimCursor {
    after: Option<(DateTime<Utc>, Uuid)>,
    /// Whether the last claim's window was full: more due steps may lie beyond the cursor.
    more: bool,
}

impl ClaimCursor {
    /// Whether the last claim read as many due steps as it looks at in one go, so that
    /// more may follow even if it claimed fewer invoices than asked.
    pub fn more(&self) -> bool {
        self.more
    }
}

/// Due steps a claim looks at for each invoice it may claim: an invoice often has several
/// due at once (a late invoice's overtaken steps).
const STEPS_LOOKED_AT_PER_INVOICE: i64 = 4;

/// Claims up to `limit` open invoices with due pending steps, from the due steps after
/// `cursor`, which it moves on. Invoices another scheduler holds are skipped (`SKIP
/// LOCKED`), so two schedulers never emit the same step. Paused invoices wait: their steps
/// are re-dated when the pause ends.
pub async fn claim_due_invoices(
    tx: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
    cursor: &mut ClaimCursor,
) -> anyhow::Result<Vec<DueInvoice>> {
    let window_size = limit.saturating_mul(STEPS_LOOKED_AT_PER_INVOICE);
    // The index of unheld pending steps by (due time, id) is read from the cursor on (two
    // statements rather than one with `$3 IS NULL OR ...`, whose generic plan would not seek).
    let after = match cursor.after {
        Some(_) => "AND (s.due_at, s.id) > ($3, $4)",
        None => "",
    };
    let query = format!(
        "SELECT s.due_at, s.id, s.invoice_id FROM reminder_steps s
         WHERE s.status = 'pending' AND s.due_at <= $1
           -- Paused invoices keep their old due times: skipped here, or enough of them would
           -- fill this window and hold everyone back. `held` (kept by triggers, migration
           -- ...20261207000500) leaves them out of the index read; the pauses are checked
           -- below. Not here as well: the planner cannot know that held steps are those of
           -- paused invoices, takes the anti-join for one that leaves nothing, and reads the
           -- whole table instead of the index's first rows (7.8 s a pass at 10M invoices).
           AND NOT s.held
           {after}
         ORDER BY s.due_at, s.id
         LIMIT $2"
    );
    let mut window = sqlx::query_as::<_, (DateTime<Utc>, Uuid, Uuid)>(&query)
        .bind(now)
        .bind(window_size);
    if let Some((due_at, id)) = cursor.after {
        window = window.bind(due_at).bind(id);
    }
    let window = window
        .fetch_all(&mut *tx)
        .await
        .context("reading the due steps")?;
    let Some(&(last_due, last_id, _)) = window.last() else {
        cursor.more = false;
        return Ok(Vec::new());
    };
    let mut invoice_ids: Vec<Uuid> = window.iter().map(|(_, _, invoice)| *invoice).collect();
    invoice_ids.sort_unstable();
    invoice_ids.dedup();
    let claimed: Vec<DueInvoice> = sqlx::query_as(
        "SELECT i.id, i.number, c.timezone, c.risk, c.country, c.region, i.customer_id, i.due_on,
             trim(i.currency) AS currency,
             (SELECT cr.policy FROM creditors cr WHERE cr.id = i.creditor_id) AS policy
         FROM invoices i JOIN customers c ON c.id = i.customer_id
         WHERE i.id = ANY($1)
           AND i.status = 'open'
           AND NOT EXISTS (SELECT 1 FROM invoice_pauses p WHERE p.invoice_id = i.id AND p.ended_at IS NULL)
         ORDER BY i.id
         LIMIT $2
         FOR UPDATE OF i SKIP LOCKED",
    )
    .bind(&invoice_ids)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
    .context("claiming due invoices")?;
    // Fewer than asked: every invoice of the window was claimed, or is not to be (held by
    // another scheduler, paused, no longer open), and the next claim starts past the window.
    // As many as asked: the limit may have left some out, and the next claim starts at the
    // first step of an invoice not claimed.
    let full = i64::try_from(claimed.len()).unwrap_or(i64::MAX) >= limit;
    let first_left = if full {
        let taken: std::collections::HashSet<Uuid> = claimed.iter().map(|i| i.id).collect();
        window.iter().position(|(_, _, invoice)| !taken.contains(invoice))
    } else {
        None
    };
    cursor.after = match first_left {
        Some(0) => cursor.after,
        Some(k) => Some((window[k - 1].0, window[k - 1].1)),
        None => Some((last_due, last_id)),
    };
    cursor.more = i64::try_from(window.len()).unwrap_or(i64::MAX) >= window_size;
    Ok(claimed)
}

/// The due pending steps of the claimed invoices.
pub async fn due_steps(
    tx: &mut PgConnection,
    invoice_ids: &[Uuid],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<StepRecord>> {
    sqlx::query_as(&format!(
        "{STEP_RECORD} WHERE s.invoice_id = ANY($1) AND s.status = 'pending' AND s.due_at <= $2 ORDER BY s.invoice_id, s.position"
    ))
    .bind(invoice_ids)
    .bind(now)
    .fetch_all(tx)
    .await
    .context("reading due steps")
}

/// Every pending reminder step of the claimed invoices, due or not (a due step overtakes
/// the earlier ones, even those not due yet).
pub async fn pending_steps(tx: &mut PgConnection, invoice_ids: &[Uuid]) -> anyhow::Result<Vec<StepRecord>> {
    sqlx::query_as(&format!(
        "{STEP_RECORD} WHERE s.invoice_id = ANY($1) AND s.status = 'pending' AND s.kind = 'reminder'
         ORDER BY s.invoice_id, s.position"
    ))
    .bind(invoice_ids)
    .fetch_all(tx)
    .await
    .context("reading pending steps")
}

/// Gives a pending step the values of a new plan (re-planning); a step that left `pending`
/// meanwhile is not touched. Returns whether it changed.
pub async fn replan_pending(
    tx: &mut PgConnection,
    id: Uuid,
    step: &PlannedStep,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE reminder_steps SET position = $2, channel = $3, template = $4, tone = $5, due_at = $6, updated_at = $7
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(step.position)
    .bind(step.channel.as_str())
    .bind(&step.template)
    .bind(step.tone.as_str())
    .bind(step.due_at)
    .bind(at)
    .execute(tx)
    .await
    .with_context(|| format!("re-planning step {}", step.name))?;
    Ok(updated.rows_affected() == 1)
}

/// Removes a pending step that a new plan no longer has. Nothing was sent for it, so
/// nothing refers to it but the journal, which keeps its history. The removal is noted for
/// the hand-off sweep (a trigger, migration ...20261207001100): without its last pending
/// step, the invoice's sequence may be over.
pub async fn remove_pending(tx: &mut PgConnection, id: Uuid) -> anyhow::Result<bool> {
    let deleted = sqlx::query("DELETE FROM reminder_steps WHERE id = $1 AND status = 'pending'")
        .bind(id)
        .execute(tx)
        .await
        .context("removing a pending step")?;
    Ok(deleted.rows_affected() == 1)
}

/// The local days on which reminders of these invoices were emitted.
pub async fn emission_days(
    tx: &mut PgConnection,
    invoice_ids: &[Uuid],
) -> anyhow::Result<Vec<(Uuid, NaiveDate)>> {
    sqlx::query_as("SELECT invoice_id, emitted_on FROM reminder_steps WHERE invoice_id = ANY($1) AND emitted_on IS NOT NULL")
        .bind(invoice_ids)
        .fetch_all(tx)
        .await
        .context("reading emission days")
}

/// Cancels every step of the invoice that has not gone out yet (open call tasks, call
/// recaps and payment plan notes included); returns them, each with the status it had until now. A step in
/// `sending` is not cancelled: its sender may already have sent the end of DATA. It is
/// marked instead (`stop_requested_at`, `stop_reason`), and its sender, which re-checks the
/// invoice and the mark right before the end of DATA, decides: aborted and cancelled, or
/// sent with the stop's time beside it.
pub async fn cancel_open(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    reason: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<Vec<CancelledStep>> {
    sqlx::query(
        "UPDATE reminder_steps SET stop_requested_at = COALESCE(stop_requested_at, clock_timestamp()),
             stop_reason = COALESCE(stop_reason, $2)
         WHERE invoice_id = $1 AND kind IN ('reminder', 'recap', 'plan') AND status = 'sending'",
    )
    .bind(invoice_id)
    .bind(reason)
    .execute(&mut *tx)
    .await
    .context("marking deliveries in progress")?;
    // The subquery locks the open steps and reads their status before the update: RETURNING
    // alone would give the new one ('cancelled').
    let was_stored: Vec<(Uuid, String)> = sqlx::query_as(
        "UPDATE reminder_steps s SET status = 'cancelled', status_reason = $3, updated_at = $4,
             status_changed_at = clock_timestamp()
         FROM (SELECT id, status FROM reminder_steps
               WHERE invoice_id = $1 AND kind IN ('reminder', 'recap', 'plan') AND status = ANY($2)
               ORDER BY id FOR UPDATE) old
         WHERE s.id = old.id AND s.status = old.status
         RETURNING s.id, old.status",
    )
    .bind(invoice_id)
    .bind(names(&StepStatus::OPEN))
    .bind(reason)
    .bind(at)
    .fetch_all(&mut *tx)
    .await
    .context("cancelling open steps")?;
    let was = was_stored
        .into_iter()
        .map(|(id, status)| Ok((id, parse::<StepStatus>("reminder_steps", id, "status", &status)?)))
        .collect::<anyhow::Result<Vec<(Uuid, StepStatus)>>>()?;
    let ids: Vec<Uuid> = was.iter().map(|(id, _)| *id).collect();
    let records: Vec<StepRecord> =
        sqlx::query_as(&format!("{STEP_RECORD} WHERE s.id = ANY($1) ORDER BY s.position"))
            .bind(&ids)
            .fetch_all(tx)
            .await
            .context("reading cancelled steps")?;
    records
        .into_iter()
        .map(|step| {
            let was = was
                .iter()
                .find(|(id, _)| *id == step.id)
                .map(|(_, status)| *status)
                .with_context(|| format!("no status read before cancelling step {}", step.id))?;
            Ok(CancelledStep { step, was })
        })
        .collect()
}

/// A step [`cancel_open`] cancelled, with the status it had before (`pending`, `queued`...).
#[derive(Debug, Clone)]
pub struct CancelledStep {
    pub step: StepRecord,
    pub was: StepStatus,
}

/// What the renderer produced for a step.
#[derive(Debug, Clone)]
pub struct RenderedMessage {
    pub step_id: Uuid,
    pub channel: Channel,
    pub message_id: String,
    pub recipients: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub body_text: String,
    pub body_html: Option<String>,
    pub attach_invoice: bool,
    pub rendered_at: DateTime<Utc>,
}

/// A rendered message as stored, before its channel is checked.
#[derive(sqlx::FromRow)]
struct RenderedRow {
    step_id: Uuid,
    channel: String,
    message_id: String,
    recipients: Vec<String>,
    cc: Vec<String>,
    subject: String,
    body_text: String,
    body_html: Option<String>,
    attach_invoice: bool,
    rendered_at: DateTime<Utc>,
}

impl TryFrom<RenderedRow> for RenderedMessage {
    type Error = anyhow::Error;
    fn try_from(row: RenderedRow) -> anyhow::Result<Self> {
        Ok(RenderedMessage {
            channel: parse("rendered_messages", row.step_id, "channel", &row.channel)?,
            step_id: row.step_id,
            message_id: row.message_id,
            recipients: row.recipients,
            cc: row.cc,
            subject: row.subject,
            body_text: row.body_text,
            body_html: row.body_html,
            attach_invoice: row.attach_invoice,
            rendered_at: row.rendered_at,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for RenderedMessage {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        RenderedRow::from_row(row)?.try_into().map_err(decode_error)
    }
}

/// Stores the rendered message once; a redelivered job finds it already there.
pub async fn save_rendered(tx: &mut PgConnection, m: &RenderedMessage) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO rendered_messages (step_id, channel, message_id, recipients, cc, subject, body_text, body_html, attach_invoice, rendered_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (step_id) DO NOTHING",
    )
    .bind(m.step_id)
    .bind(m.channel.as_str())
    .bind(&m.message_id)
    .bind(&m.recipients)
    .bind(&m.cc)
    .bind(&m.subject)
    .bind(&m.body_text)
    .bind(&m.body_html)
    .bind(m.attach_invoice)
    .bind(m.rendered_at)
    .execute(tx)
    .await
    .context("saving the rendered message")?;
    Ok(inserted.rows_affected() == 1)
}

/// Moves the renderings of these steps, not delivered, to `superseded_renderings` (with why),
/// so that they can be rendered afresh: the journal entries that recorded their hash still
/// verify, and the proof keeps what was rendered and never sent.
pub async fn supersede_renderings(
    tx: &mut PgConnection,
    step_ids: &[Uuid],
    reason: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "WITH gone AS (DELETE FROM rendered_messages WHERE step_id = ANY($1) RETURNING *)
         INSERT INTO superseded_renderings (step_id, channel, message_id, recipients, cc, subject, body_text,
             body_html, attach_invoice, rendered_at, document, document_sha256, grouped_steps, superseded_at, reason,
             statement, statement_name, statement_sha256)
         SELECT step_id, channel, message_id, recipients, cc, subject, body_text, body_html, attach_invoice,
             rendered_at, document, document_sha256, grouped_steps, $3, $2, statement, statement_name, statement_sha256
         FROM gone",
    )
    .bind(step_ids)
    .bind(reason)
    .bind(at)
    .execute(tx)
    .await
    .context("superseding renderings")?;
    Ok(())
}

pub async fn find_rendered(db: &mut PgConnection, step_id: Uuid) -> anyhow::Result<Option<RenderedMessage>> {
    sqlx::query_as(
        "SELECT step_id, channel, message_id, recipients, cc, subject, body_text, body_html, attach_invoice, rendered_at
         FROM rendered_messages WHERE step_id = $1",
    )
    .bind(step_id)
    .fetch_optional(db)
    .await
    .context("reading the rendered message")
}

/// What a sender delivers for a step, read in one statement: the rendered message, the
/// document it carries (a letter's PDF, with its SHA-256) and the statement of account
/// attached (file name, PDF). `None` when the step has no rendered message.
pub struct RenderedParcel {
    pub message: RenderedMessage,
    pub document: Option<(Vec<u8>, String)>,
    pub statement: Option<(String, Vec<u8>)>,
}

pub async fn find_rendered_parcel(
    db: &mut PgConnection,
    step_id: Uuid,
) -> anyhow::Result<Option<RenderedParcel>> {
    let Some(row) = sqlx::query(
        "SELECT step_id, channel, message_id, recipients, cc, subject, body_text, body_html, attach_invoice, rendered_at,
                document, document_sha256, statement_name, statement
         FROM rendered_messages WHERE step_id = $1",
    )
    .bind(step_id)
    .fetch_optional(db)
    .await
    .context("reading the rendered message")?
    else {
        return Ok(None);
    };
    let message = RenderedMessage::from_row(&row).context("reading the rendered message")?;
    let document: Option<Vec<u8>> = row.try_get("document").context("reading the rendered document")?;
    let sha: Option<String> = row
        .try_get("document_sha256")
        .context("reading the rendered document")?;
    let statement_name: Option<String> = row
        .try_get("statement_name")
        .context("reading the attached statement")?;
    let statement: Option<Vec<u8>> = row
        .try_get("statement")
        .context("reading the attached statement")?;
    Ok(Some(RenderedParcel {
        message,
        document: document.zip(sha),
        statement: statement_name.zip(statement),
    }))
}

/// Steps not yet in a final state whose time has come (tests and the demo wait for zero).
/// The pending steps of a paused invoice are not due while the pause lasts (but for a payment
/// plan's own notes, which go out while it holds); a plan whose instalment is unpaid past its
/// grace, not broken yet, counts as unfinished work; a promise whose
/// time is up but that the scheduler has not ended yet counts as unfinished work, and so does
/// a call task whose time is up. An open call task waits for a person: it is not unfinished;
/// nor is a step waiting for approval (nor the steps grouped into its message), until its
/// request expires.
pub async fn unfinished_due_count(db: &sqlx::PgPool, now: DateTime<Utc>) -> anyhow::Result<i64> {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
                 WHERE s.due_at <= $1 AND s.status IN ('pending', 'queued', 'rendered', 'deferred', 'sending')
                   AND (i.status = 'open' OR s.kind = 'thanks')
                   AND NOT (s.status = 'pending' AND s.kind <> 'plan'
                            AND EXISTS (SELECT 1 FROM invoice_pauses p WHERE p.invoice_id = i.id AND p.ended_at IS NULL))
                   -- Grouped into a message waiting for approval: it waits with it.
                   AND NOT (s.grouped_into IS NOT NULL
                            AND EXISTS (SELECT 1 FROM reminder_steps l
                                        WHERE l.id = s.grouped_into AND l.status = 'awaiting_approval')))
              + (SELECT count(*) FROM invoice_pauses WHERE ended_at IS NULL AND until <= $1)
              + (SELECT count(*) FROM payment_plan_instalments pi JOIN payment_plans pp ON pp.id = pi.plan_id
                 WHERE pp.status = 'active' AND pi.paid < pi.amount AND pi.breaks_at <= $1)
              + (SELECT count(*) FROM call_tasks t JOIN reminder_steps s ON s.id = t.step_id
                 WHERE s.status = 'awaiting_outcome' AND t.expires_at <= $1)
              + (SELECT count(*) FROM approval_requests r JOIN reminder_steps s ON s.id = r.step_id
                 WHERE s.status = 'awaiting_approval' AND r.decision IS NULL AND r.expires_at <= $1)
              + (SELECT count(*) FROM approval_requests r JOIN invoices i ON i.id = r.invoice_id
                 WHERE r.subject = 'hand_off' AND i.status = 'open' AND r.decision IS NULL AND r.expires_at <= $1)",
    )
    .bind(now)
    .fetch_one(db)
    .await
    .context("counting unfinished steps")
}

/// Locks the step for delivery and returns its status. Held until the delivery is recorded,
/// so a sweep never mistakes a live delivery for an interrupted one.
pub async fn lock_for_delivery(tx: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<StepStatus>> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM reminder_steps WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(tx)
            .await
            .context("locking the step for delivery")?;
    status
        .map(|status| parse("reminder_steps", id, "status", &status))
        .transpose()
}

/// Steps left in flight (queued, rendered or sending) for longer than `lease`, by wall
/// clock (since their status changed and since their delivery last renewed its lease), and
/// deferred ones whose retry is overdue by more than `lease` (the retry message
/// was lost), not locked by a live sender. Locked for the caller.
pub async fn claim_expired_leases(
    tx: &mut PgConnection,
    lease: std::time::Duration,
    limit: i64,
) -> anyhow::Result<Vec<StepRecord>> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM reminder_steps
         WHERE grouped_into IS NULL
           AND ((status IN ('queued', 'rendered', 'sending')
                 AND status_changed_at < clock_timestamp() - make_interval(secs => $1)
                 AND (delivery_renewed_at IS NULL OR delivery_renewed_at < clock_timestamp() - make_interval(secs => $1)))
             OR (status = 'deferred' AND retry_wall_at < clock_timestamp() - make_interval(secs => $1)))
         ORDER BY status_changed_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(lease.as_secs_f64())
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
    .context("claiming expired leases")?;
    sqlx::query_as(&format!("{STEP_RECORD} WHERE s.id = ANY($1)"))
        .bind(&ids)
        .fetch_all(tx)
        .await
        .context("reading steps with expired leases")
}

/// Renews the lease of a step that is handed out again.
pub async fn renew_lease(tx: &mut PgConnection, id: Uuid) -> anyhow::Result<()> {
    sqlx::query("UPDATE reminder_steps SET status_changed_at = clock_timestamp() WHERE id = $1")
        .bind(id)
        .execute(tx)
        .await
        .context("renewing the lease")?;
    Ok(())
}

/// How far a delivery got, recorded durably at each stage (see the migration
/// `delivery_stages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeliveryStage {
    /// `rendered -> sending` committed; nothing sent to the provider yet.
    Claimed,
    /// Connected to the provider (SMTP greeting and EHLO answered).
    Connected,
    /// The SMTP server took the envelope (MAIL, RCPT) and DATA; the body may be on its way.
    EnvelopeAccepted,
    /// The last check passed and was committed: the end of DATA (or the provider's request)
    /// is being sent. From here a delivery interrupted is ambiguous.
    DataEndSent,
    /// The provider accepted the message (its answer is the step's delivery proof).
    Answered,
}

impl DeliveryStage {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStage::Claimed => "claimed",
            DeliveryStage::Connected => "connected",
            DeliveryStage::EnvelopeAccepted => "envelope_accepted",
            DeliveryStage::DataEndSent => "data_end_sent",
            DeliveryStage::Answered => "answered",
        }
    }

    /// Parses a stored stage; an unknown value is an error that names it.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "claimed" => DeliveryStage::Claimed,
            "connected" => DeliveryStage::Connected,
            "envelope_accepted" => DeliveryStage::EnvelopeAccepted,
            "data_end_sent" => DeliveryStage::DataEndSent,
            "answered" => DeliveryStage::Answered,
            other => anyhow::bail!("unknown delivery stage {other:?}"),
        })
    }

    /// Whether the provider may have the message: the end of DATA (or the request) may have
    /// left.
    pub fn may_have_reached_provider(self) -> bool {
        self >= DeliveryStage::DataEndSent
    }
}

/// Claims a rendered (or deferred) step for delivery under a new attempt id: `-> sending`,
/// stage `claimed`, no stop mark. Returns false when the step was neither.
pub async fn claim_delivery(
    tx: &mut PgConnection,
    id: Uuid,
    attempt: Uuid,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE reminder_steps SET status = 'sending', delivery_attempt = $2, delivery_stage = 'claimed',
             delivery_renewed_at = NULL, stop_requested_at = NULL, stop_reason = NULL, next_attempt_at = NULL, retry_wall_at = NULL,
             updated_at = $3, status_changed_at = clock_timestamp()
         WHERE id = $1 AND status IN ('rendered', 'deferred')",
    )
    .bind(id)
    .bind(attempt)
    .bind(at)
    .execute(tx)
    .await
    .context("claiming the step for delivery")?;
    Ok(updated.rows_affected() == 1)
}

/// Records the stage a delivery reached (and renews its lease), if the step is still in
/// `sending` under this attempt. One short statement, outside any transaction; it changes
/// no indexed column, so PostgreSQL can update the row in place (HOT).
pub async fn record_stage<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: Uuid,
    attempt: Uuid,
    stage: DeliveryStage,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE reminder_steps SET delivery_stage = $3, delivery_renewed_at = clock_timestamp()
         WHERE id = $1 AND status = 'sending' AND delivery_attempt = $2",
    )
    .bind(id)
    .bind(attempt)
    .bind(stage.as_str())
    .execute(db)
    .await
    .with_context(|| format!("recording the delivery stage {}", stage.as_str()))?;
    Ok(updated.rows_affected() == 1)
}

/// Records the provider's answer: stage `answered` with the proof, in one short statement,
/// so that a sender dying before it records the delivery leaves a step the sweep can settle
/// as sent.
pub async fn record_answer(db: &sqlx::PgPool, id: Uuid, attempt: Uuid, proof: &str) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE reminder_steps SET delivery_stage = 'answered', delivery_proof = $3,
             delivery_renewed_at = clock_timestamp()
         WHERE id = $1 AND status = 'sending' AND delivery_attempt = $2",
    )
    .bind(id)
    .bind(attempt)
    .bind(proof)
    .execute(db)
    .await
    .context("recording the provider's answer")?;
    Ok(updated.rows_affected() == 1)
}

/// Renews the lease of a delivery in progress (its sender is alive), under this attempt.
pub async fn renew_delivery_lease(db: &sqlx::PgPool, id: Uuid, attempt: Uuid) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE reminder_steps SET delivery_renewed_at = clock_timestamp()
         WHERE id = $1 AND status = 'sending' AND delivery_attempt = $2",
    )
    .bind(id)
    .bind(attempt)
    .execute(db)
    .await
    .context("renewing the delivery lease")?;
    Ok(updated.rows_affected() == 1)
}

/// Where a delivery stands, read under the step's row lock.
#[derive(Debug, Clone)]
pub struct DeliveryState {
    pub status: StepStatus,
    pub delivery_attempt: Option<Uuid>,
    pub delivery_stage: Option<String>,
    pub delivery_proof: Option<String>,
    /// Set by a payment or a closure that found the step in `sending`.
    pub stop_requested_at: Option<DateTime<Utc>>,
    pub stop_reason: Option<String>,
}

/// A delivery state as stored, before its status is checked.
#[derive(sqlx::FromRow)]
struct DeliveryStateRow {
    id: Uuid,
    status: String,
    delivery_attempt: Option<Uuid>,
    delivery_stage: Option<String>,
    delivery_proof: Option<String>,
    stop_requested_at: Option<DateTime<Utc>>,
    stop_reason: Option<String>,
}

impl TryFrom<DeliveryStateRow> for DeliveryState {
    type Error = anyhow::Error;
    fn try_from(row: DeliveryStateRow) -> anyhow::Result<Self> {
        Ok(DeliveryState {
            status: parse("reminder_steps", row.id, "status", &row.status)?,
            delivery_attempt: row.delivery_attempt,
            delivery_stage: row.delivery_stage,
            delivery_proof: row.delivery_proof,
            stop_requested_at: row.stop_requested_at,
            stop_reason: row.stop_reason,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for DeliveryState {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        DeliveryStateRow::from_row(row)?.try_into().map_err(decode_error)
    }
}

impl DeliveryState {
    /// The stage, parsed (a step claimed before stages were recorded counts as `claimed`).
    pub fn stage(&self) -> anyhow::Result<DeliveryStage> {
        self.delivery_stage
            .as_deref()
            .map_or(Ok(DeliveryStage::Claimed), DeliveryStage::parse)
    }
}

/// Locks the step and reads its delivery state.
pub async fn lock_delivery(tx: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<DeliveryState>> {
    sqlx::query_as(
        "SELECT id, status, delivery_attempt, delivery_stage, delivery_proof, stop_requested_at, stop_reason
         FROM reminder_steps WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(tx)
    .await
    .context("locking the step's delivery")
}

/// Moves the step to `to` if it is still in `sending` under this attempt.
pub async fn end_delivery(
    tx: &mut PgConnection,
    id: Uuid,
    attempt: Uuid,
    to: StepStatus,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    end_delivery_with_proof(tx, id, attempt, to, reason, None, at).await
}

/// [`end_delivery`], saving the delivery's proof (the provider's answer) in the same update.
pub async fn end_delivery_with_proof(
    tx: &mut PgConnection,
    id: Uuid,
    attempt: Uuid,
    to: StepStatus,
    reason: Option<&str>,
    proof: Option<&str>,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE reminder_steps SET status = $3, status_reason = COALESCE($4, status_reason), updated_at = $5,
             status_changed_at = clock_timestamp(), delivery_proof = COALESCE($6, delivery_proof)
         WHERE id = $1 AND status = 'sending' AND delivery_attempt = $2",
    )
    .bind(id)
    .bind(attempt)
    .bind(to.as_str())
    .bind(reason)
    .bind(at)
    .bind(proof)
    .execute(tx)
    .await
    .with_context(|| format!("moving step {id} from sending to {}", to.as_str()))?;
    Ok(updated.rows_affected() == 1)
}

/// A delivery deferred by a transient failure: `sending -> deferred` with the reason and the
/// time of its next attempt (on relance's clock; `retry_in` from now on the wall clock, when
/// its retry comes back from the delay queue), if still in `sending` under this attempt.
pub async fn defer_delivery(
    tx: &mut PgConnection,
    id: Uuid,
    attempt: Uuid,
    reason: &str,
    next_attempt_at: Option<DateTime<Utc>>,
    retry_in: std::time::Duration,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE reminder_steps SET status = 'deferred', status_reason = $3, next_attempt_at = $4, updated_at = $5,
             status_changed_at = clock_timestamp(),
             retry_wall_at = clock_timestamp() + make_interval(secs => $6)
         WHERE id = $1 AND status = 'sending' AND delivery_attempt = $2",
    )
    .bind(id)
    .bind(attempt)
    .bind(reason)
    .bind(next_attempt_at)
    .bind(at)
    .bind(retry_in.as_secs_f64())
    .execute(tx)
    .await
    .context("deferring the delivery")?;
    Ok(updated.rows_affected() == 1)
}
