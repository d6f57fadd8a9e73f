//! Payment plans as stored: the plan, the invoices it covers, its instalments with what
//! payments covered, and its notes (steps of kind `plan`). Callers hold the plan's invoices
//! `FOR UPDATE` (payments listener, scheduler) around the changes; the rules of a plan are in
//! `relance_domain::collections::payment_plan`.

use crate::rows::parse;
use crate::steps::{StepRecord, STEP_RECORD};
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use relance_domain::collections::payment_plan::PlanStatus;
use relance_domain::plan::PlannedStep;
use relance_domain::StepKind;
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

/// A plan to record.
#[derive(Debug, Clone)]
pub struct NewPlanRow<'a> {
    pub plan_ref: &'a str,
    pub customer_id: &'a str,
    pub currency: &'a str,
    pub note: Option<&'a str>,
    pub grace_days: u32,
    pub event_id: &'a str,
    /// (invoice id, its balance now), in the plan's order.
    pub invoices: &'a [(Uuid, Decimal)],
    /// (due date, amount, when it breaks the plan unpaid), in order.
    pub instalments: &'a [(NaiveDate, Decimal, DateTime<Utc>)],
}

/// Records a plan, `active`; returns its id.
pub async fn insert(tx: &mut PgConnection, plan: &NewPlanRow<'_>, at: DateTime<Utc>) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO payment_plans (id, plan_ref, customer_id, currency, status, note, grace_days, event_id, agreed_at)
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(plan.plan_ref)
    .bind(plan.customer_id)
    .bind(plan.currency)
    .bind(plan.note)
    .bind(i32::try_from(plan.grace_days).unwrap_or(i32::MAX))
    .bind(plan.event_id)
    .bind(at)
    .execute(&mut *tx)
    .await
    .with_context(|| format!("recording payment plan {}", plan.plan_ref))?;
    for (position, (invoice_id, balance)) in plan.invoices.iter().enumerate() {
        sqlx::query(
            "INSERT INTO payment_plan_invoices (plan_id, invoice_id, position, balance) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(invoice_id)
        .bind(i32::try_from(position + 1).unwrap_or(i32::MAX))
        .bind(balance)
        .execute(&mut *tx)
        .await
        .context("recording a payment plan's invoice")?;
    }
    for (position, (due_on, amount, breaks_at)) in plan.instalments.iter().enumerate() {
        sqlx::query(
            "INSERT INTO payment_plan_instalments (plan_id, position, due_on, amount, breaks_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(i32::try_from(position + 1).unwrap_or(i32::MAX))
        .bind(due_on)
        .bind(amount)
        .bind(breaks_at)
        .execute(&mut *tx)
        .await
        .context("recording a payment plan's instalment")?;
    }
    Ok(id)
}

/// A plan as stored, with its invoices and instalments.
#[derive(Debug, Clone)]
pub struct PlanRecord {
    pub id: Uuid,
    pub plan_ref: String,
    pub customer_id: String,
    pub currency: String,
    pub status: PlanStatus,
    pub note: Option<String>,
    pub grace_days: u32,
    pub event_id: String,
    /// (invoice id, number), in the plan's order.
    pub invoices: Vec<(Uuid, String)>,
    pub instalments: Vec<InstalmentRecord>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InstalmentRecord {
    pub position: i32,
    pub due_on: NaiveDate,
    pub amount: Decimal,
    pub paid: Decimal,
    pub paid_at: Option<DateTime<Utc>>,
    pub breaks_at: DateTime<Utc>,
}

impl InstalmentRecord {
    pub fn is_paid(&self) -> bool {
        self.paid >= self.amount
    }
}

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: Uuid,
    plan_ref: String,
    customer_id: String,
    currency: String,
    status: String,
    note: Option<String>,
    grace_days: i32,
    event_id: String,
}

/// The plan, read whole.
pub async fn load(tx: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<PlanRecord>> {
    let row: Option<PlanRow> = sqlx::query_as(
        "SELECT id, plan_ref, customer_id, trim(currency) AS currency, status, note, grace_days, event_id
         FROM payment_plans WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .context("reading a payment plan")?;
    let Some(row) = row else {
        return Ok(None);
    };
    let invoices: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT i.id, i.number FROM payment_plan_invoices p JOIN invoices i ON i.id = p.invoice_id
         WHERE p.plan_id = $1 ORDER BY p.position",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await
    .context("reading a payment plan's invoices")?;
    let instalments: Vec<InstalmentRecord> = sqlx::query_as(
        "SELECT position, due_on, amount, paid, paid_at, breaks_at FROM payment_plan_instalments
         WHERE plan_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await
    .context("reading a payment plan's instalments")?;
    Ok(Some(PlanRecord {
        status: parse("payment_plans", row.id, "status", &row.status)?,
        grace_days: u32::try_from(row.grace_days).unwrap_or(0),
        id: row.id,
        plan_ref: row.plan_ref,
        customer_id: row.customer_id,
        currency: row.currency,
        note: row.note,
        event_id: row.event_id,
        invoices,
        instalments,
    }))
}

/// The active plan covering the invoice, if any.
pub async fn active_for_invoice(
    tx: &mut PgConnection,
    invoice_id: Uuid,
) -> anyhow::Result<Option<PlanRecord>> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "SELECT p.id FROM payment_plans p JOIN payment_plan_invoices pi ON pi.plan_id = p.id
         WHERE pi.invoice_id = $1 AND p.status = 'active'",
    )
    .bind(invoice_id)
    .fetch_optional(&mut *tx)
    .await
    .context("finding the invoice's payment plan")?;
    match id {
        Some(id) => load(tx, id).await,
        None => Ok(None),
    }
}

/// The plan of this id in the creditor's systems: (its id, status).
pub async fn find_by_ref(tx: &mut PgConnection, plan_ref: &str) -> anyhow::Result<Option<(Uuid, String)>> {
    sqlx::query_as("SELECT id, status FROM payment_plans WHERE plan_ref = $1")
        .bind(plan_ref)
        .fetch_optional(tx)
        .await
        .context("finding a payment plan by its id")
}

/// How many plans the invoice was under before (to name a new plan's notes apart).
pub async fn count_for_invoice(tx: &mut PgConnection, invoice_id: Uuid) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM payment_plan_invoices WHERE invoice_id = $1")
        .bind(invoice_id)
        .fetch_one(tx)
        .await
        .context("counting the invoice's payment plans")
}

/// Records what payments covered of an instalment.
pub async fn set_paid(
    tx: &mut PgConnection,
    plan_id: Uuid,
    position: i32,
    paid: Decimal,
    fully_paid_at: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE payment_plan_instalments SET paid = $3, paid_at = COALESCE(paid_at, $4)
         WHERE plan_id = $1 AND position = $2",
    )
    .bind(plan_id)
    .bind(position)
    .bind(paid)
    .bind(fully_paid_at)
    .execute(tx)
    .await
    .context("recording an instalment's payment")?;
    Ok(())
}

/// Ends an active plan (`completed` or `broken`); false if it was no longer active.
pub async fn end(
    tx: &mut PgConnection,
    plan_id: Uuid,
    status: PlanStatus,
    reason: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE payment_plans SET status = $2, ended_at = $3, end_reason = $4 WHERE id = $1 AND status = 'active'",
    )
    .bind(plan_id)
    .bind(status.as_str())
    .bind(at)
    .bind(reason)
    .execute(tx)
    .await
    .context("ending a payment plan")?;
    Ok(updated.rows_affected() == 1)
}

/// Active plans with an instalment unpaid past its grace: (plan id, its first invoice's
/// number), oldest break first.
pub async fn breaking(
    db: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<Vec<(Uuid, String)>> {
    sqlx::query_as(
        "SELECT p.id, (SELECT i.number FROM payment_plan_invoices pi JOIN invoices i ON i.id = pi.invoice_id
                       WHERE pi.plan_id = p.id ORDER BY pi.position LIMIT 1)
         FROM payment_plans p
         WHERE p.status = 'active'
           AND EXISTS (SELECT 1 FROM payment_plan_instalments s
                       WHERE s.plan_id = p.id AND s.paid < s.amount AND s.breaks_at <= $1)
         ORDER BY p.agreed_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("finding broken payment plans")
}

/// Records one note of a plan's schedule: a pending step of kind `plan` on `invoice_id`.
pub async fn insert_note(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    plan_id: Uuid,
    instalment: u32,
    step: &PlannedStep,
    at: DateTime<Utc>,
) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at, status,
             updated_at, plan_id, plan_instalment)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12)",
    )
    .bind(id)
    .bind(invoice_id)
    .bind(&step.name)
    .bind(StepKind::Plan.as_str())
    .bind(step.position)
    .bind(step.channel.as_str())
    .bind(&step.template)
    .bind(step.tone.as_str())
    .bind(step.due_at)
    .bind(at)
    .bind(plan_id)
    .bind(i32::try_from(instalment).unwrap_or(i32::MAX))
    .execute(tx)
    .await
    .with_context(|| format!("planning the payment plan's note {}", step.name))?;
    Ok(id)
}

/// The plan and instalment a note of kind `plan` is about.
pub async fn note_of(tx: &mut PgConnection, step_id: Uuid) -> anyhow::Result<Option<(Uuid, i32)>> {
    let row: Option<(Option<Uuid>, Option<i32>)> =
        sqlx::query_as("SELECT plan_id, plan_instalment FROM reminder_steps WHERE id = $1")
            .bind(step_id)
            .fetch_optional(tx)
            .await
            .context("reading a plan note's plan")?;
    Ok(row.and_then(|(plan, instalment)| Some((plan?, instalment?))))
}

/// Notes of active plans whose time has come: (step, its plan), oldest first.
pub async fn due_notes(
    db: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<Vec<StepRecord>> {
    sqlx::query_as(&format!(
        "{STEP_RECORD} JOIN payment_plans p ON p.id = s.plan_id
         WHERE s.kind = 'plan' AND s.status = 'pending' AND s.due_at <= $1 AND p.status = 'active'
         ORDER BY s.due_at LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("finding due payment plan notes")
}

/// The plan's notes not gone out yet (pending or queued), for these instalments (all when
/// `instalments` is `None`).
pub async fn open_notes(
    tx: &mut PgConnection,
    plan_id: Uuid,
    instalments: Option<&[i32]>,
) -> anyhow::Result<Vec<StepRecord>> {
    sqlx::query_as(&format!(
        "{STEP_RECORD} WHERE s.plan_id = $1 AND s.status IN ('pending', 'queued', 'rendered', 'deferred')
           AND ($2::int[] IS NULL OR s.plan_instalment = ANY($2))
         ORDER BY s.due_at"
    ))
    .bind(plan_id)
    .bind(instalments.map(<[i32]>::to_vec))
    .fetch_all(tx)
    .await
    .context("reading a payment plan's open notes")
}

/// Moves the plan's notes still pending from one invoice to another of the plan (the first
/// one was settled while instalments remain); returns how many moved.
pub async fn move_pending_notes(
    tx: &mut PgConnection,
    plan_id: Uuid,
    from_invoice: Uuid,
    to_invoice: Uuid,
    at: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let moved = sqlx::query(
        "UPDATE reminder_steps SET invoice_id = $3, updated_at = $4
         WHERE plan_id = $1 AND invoice_id = $2 AND status = 'pending'",
    )
    .bind(plan_id)
    .bind(from_invoice)
    .bind(to_invoice)
    .bind(at)
    .execute(tx)
    .await
    .context("moving a payment plan's notes to another of its invoices")?;
    Ok(moved.rows_affected())
}
