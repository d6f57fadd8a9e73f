//! Approval requests: the request a due step opens when it must wait for a person's approval
//! (with a preview of what it will say), the decision once made, and the list
//! `relance approvals` and the console show. A request is open while its step is
//! `awaiting_approval`; the step's state machine stays in `steps.rs`. Callers hold the
//! invoice row `FOR UPDATE` (scheduler, payments listener, expiry sweep) around changes.
//! Decides nothing: whether a step needs approval is the policy's rule (domain).

use crate::rows::parse;
use crate::steps::StepStatus;
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalDecision {
    Granted,
    Rejected,
    Expired,
}

impl ApprovalDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalDecision::Granted => "granted",
            ApprovalDecision::Rejected => "rejected",
            ApprovalDecision::Expired => "expired",
        }
    }
}

/// Opens the approval request of a step that falls due (any open one left behind is
/// withdrawn first: one open request per step).
pub async fn open(
    tx: &mut PgConnection,
    step_id: Uuid,
    invoice_id: Uuid,
    preview: &serde_json::Value,
    requested_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<Uuid> {
    sqlx::query(
        "UPDATE approval_requests SET decision = 'withdrawn', decided_at = $2
         WHERE step_id = $1 AND decision IS NULL",
    )
    .bind(step_id)
    .bind(requested_at)
    .execute(&mut *tx)
    .await
    .context("withdrawing an earlier approval request")?;
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO approval_requests (id, step_id, invoice_id, requested_at, expires_at, preview)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(step_id)
    .bind(invoice_id)
    .bind(requested_at)
    .bind(expires_at)
    .bind(preview)
    .execute(tx)
    .await
    .context("opening the approval request")?;
    Ok(id)
}

/// Whether the step's latest request was granted: the scheduler then sends it.
pub async fn is_granted(tx: &mut PgConnection, step_id: Uuid) -> anyhow::Result<bool> {
    let decision: Option<Option<String>> = sqlx::query_scalar(
        "SELECT decision FROM approval_requests WHERE step_id = $1 ORDER BY requested_at DESC, id LIMIT 1",
    )
    .bind(step_id)
    .fetch_optional(tx)
    .await
    .context("reading the step's approval")?;
    Ok(decision.flatten().as_deref() == Some("granted"))
}

/// Records the decision of the step's open request. Returns the request decided, if there
/// was one to decide.
pub async fn decide(
    tx: &mut PgConnection,
    step_id: Uuid,
    decision: ApprovalDecision,
    decided_by: Option<&str>,
    reason: Option<&str>,
    event_id: Option<&str>,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<Uuid>> {
    sqlx::query_scalar(
        "UPDATE approval_requests SET decision = $2, decided_by = $3, reason = $4, event_id = $5, decided_at = $6
         WHERE step_id = $1 AND decision IS NULL RETURNING id",
    )
    .bind(step_id)
    .bind(decision.as_str())
    .bind(decided_by)
    .bind(reason)
    .bind(event_id)
    .bind(at)
    .fetch_optional(tx)
    .await
    .context("recording the approval decision")
}

/// The open request of a step: its id and preview (what the step was rendered with).
pub async fn open_request(
    tx: &mut PgConnection,
    step_id: Uuid,
) -> anyhow::Result<Option<(Uuid, serde_json::Value)>> {
    sqlx::query_as("SELECT id, preview FROM approval_requests WHERE step_id = $1 AND decision IS NULL")
        .bind(step_id)
        .fetch_optional(tx)
        .await
        .context("reading the step's open approval request")
}

/// Opens the approval request of an invoice's hand-off (none may be open already).
pub async fn open_hand_off(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    preview: &serde_json::Value,
    requested_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO approval_requests (id, step_id, invoice_id, requested_at, expires_at, preview, subject)
         VALUES ($1, NULL, $2, $3, $4, $5, 'hand_off')",
    )
    .bind(id)
    .bind(invoice_id)
    .bind(requested_at)
    .bind(expires_at)
    .bind(preview)
    .execute(tx)
    .await
    .context("opening the hand-off's approval request")?;
    Ok(id)
}

/// Whether the invoice's latest hand-off request was granted: the hand-off sweep then hands
/// it off.
pub async fn hand_off_granted(tx: &mut PgConnection, invoice_id: Uuid) -> anyhow::Result<bool> {
    let decision: Option<Option<String>> = sqlx::query_scalar(
        "SELECT decision FROM approval_requests WHERE invoice_id = $1 AND subject = 'hand_off'
         ORDER BY requested_at DESC, id LIMIT 1",
    )
    .bind(invoice_id)
    .fetch_optional(tx)
    .await
    .context("reading the hand-off's approval")?;
    Ok(decision.flatten().as_deref() == Some("granted"))
}

/// Whether `request_id` is the open hand-off request of the invoice.
pub async fn is_open_hand_off(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    request_id: Uuid,
) -> anyhow::Result<bool> {
    let found: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM approval_requests
         WHERE id = $1 AND invoice_id = $2 AND subject = 'hand_off' AND decision IS NULL",
    )
    .bind(request_id)
    .bind(invoice_id)
    .fetch_optional(tx)
    .await
    .context("reading the hand-off's approval request")?;
    Ok(found.is_some())
}

/// Records the decision of an open hand-off request. Returns whether it was open.
pub async fn decide_hand_off(
    tx: &mut PgConnection,
    request_id: Uuid,
    decision: ApprovalDecision,
    decided_by: Option<&str>,
    reason: Option<&str>,
    event_id: Option<&str>,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE approval_requests SET decision = $2, decided_by = $3, reason = $4, event_id = $5, decided_at = $6
         WHERE id = $1 AND subject = 'hand_off' AND decision IS NULL",
    )
    .bind(request_id)
    .bind(decision.as_str())
    .bind(decided_by)
    .bind(reason)
    .bind(event_id)
    .bind(at)
    .execute(tx)
    .await
    .context("recording the hand-off's approval decision")?;
    Ok(updated.rows_affected() == 1)
}

/// The invoice number of an approval request (a hand-off's, as `relance approvals` lists it).
pub async fn invoice_of_request(db: &PgPool, request_id: Uuid) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT i.number FROM approval_requests r JOIN invoices i ON i.id = r.invoice_id WHERE r.id = $1",
    )
    .bind(request_id)
    .fetch_optional(db)
    .await
    .context("reading the approval request's invoice")
}

/// A step waiting for approval, with its preview, as `relance approvals` and the console
/// show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PendingApproval {
    /// The id a decision names: the step's, or for a hand-off the request's.
    pub step_id: Uuid,
    /// The request's own id.
    pub approval_id: Uuid,
    /// `step` or `hand_off` (then `step`, `template` and `channel` read `hand_off`, `-`).
    pub subject: String,
    pub step: String,
    pub status: StepStatus,
    pub template: String,
    pub channel: String,
    pub invoice_number: String,
    pub customer_name: String,
    pub due_on: NaiveDate,
    pub balance: rust_decimal::Decimal,
    pub currency: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub preview: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    step_id: Uuid,
    approval_id: Uuid,
    subject: String,
    step: String,
    status: String,
    template: String,
    channel: String,
    invoice_number: String,
    customer_name: String,
    due_on: NaiveDate,
    balance: rust_decimal::Decimal,
    currency: String,
    requested_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    preview: serde_json::Value,
}

const PENDING: &str =
    "SELECT COALESCE(r.step_id, r.id) AS step_id, r.id AS approval_id, r.subject,
        COALESCE(s.name, 'hand_off') AS step, COALESCE(s.status, 'awaiting_approval') AS status,
        COALESCE(s.template, 'hand_off') AS template, COALESCE(s.channel, '-') AS channel, i.number AS invoice_number,
        c.name AS customer_name, i.due_on, i.balance, i.currency, r.requested_at, r.expires_at, r.preview
    FROM approval_requests r
    LEFT JOIN reminder_steps s ON s.id = r.step_id
    JOIN invoices i ON i.id = r.invoice_id
    JOIN customers c ON c.id = i.customer_id
    WHERE r.decision IS NULL AND (s.status = 'awaiting_approval' OR (r.subject = 'hand_off' AND i.status = 'open'))";

fn checked(row: PendingRow) -> anyhow::Result<PendingApproval> {
    Ok(PendingApproval {
        status: parse("reminder_steps", row.step_id, "status", &row.status)?,
        step_id: row.step_id,
        approval_id: row.approval_id,
        subject: row.subject,
        step: row.step,
        template: row.template,
        channel: row.channel,
        invoice_number: row.invoice_number,
        customer_name: row.customer_name,
        due_on: row.due_on,
        balance: row.balance,
        currency: row.currency,
        requested_at: row.requested_at,
        expires_at: row.expires_at,
        preview: row.preview,
    })
}

/// Every step waiting for approval, the oldest request first.
pub async fn pending(db: &PgPool) -> anyhow::Result<Vec<PendingApproval>> {
    let rows: Vec<PendingRow> = sqlx::query_as(&format!("{PENDING} ORDER BY r.requested_at, i.number"))
        .fetch_all(db)
        .await
        .context("listing the steps waiting for approval")?;
    rows.into_iter().map(checked).collect()
}

/// One step waiting for approval, if it is.
pub async fn find_pending(db: &mut PgConnection, step_id: Uuid) -> anyhow::Result<Option<PendingApproval>> {
    let row: Option<PendingRow> = sqlx::query_as(&format!("{PENDING} AND COALESCE(r.step_id, r.id) = $1"))
        .bind(step_id)
        .fetch_optional(db)
        .await
        .context("reading a step waiting for approval")?;
    row.map(checked).transpose()
}

/// An open request whose time is up.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExpiredRequest {
    pub id: Uuid,
    /// The step waiting (none for a hand-off).
    pub step_id: Option<Uuid>,
    pub invoice_id: Uuid,
    pub invoice_number: String,
}

/// Open requests whose time is up, the oldest first.
pub async fn expired(
    db: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<Vec<ExpiredRequest>> {
    sqlx::query_as(
        "SELECT r.id, r.step_id, r.invoice_id, i.number AS invoice_number FROM approval_requests r
         LEFT JOIN reminder_steps s ON s.id = r.step_id
         JOIN invoices i ON i.id = r.invoice_id
         WHERE r.decision IS NULL AND r.expires_at <= $1
           AND (s.status = 'awaiting_approval' OR (r.subject = 'hand_off' AND i.status = 'open'))
         ORDER BY r.expires_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("finding expired approval requests")
}

/// The customer's own approval setting (`manual`, `auto`), if any.
pub async fn customer_setting(tx: &mut PgConnection, customer_id: &str) -> anyhow::Result<Option<String>> {
    let setting: Option<Option<String>> = sqlx::query_scalar("SELECT approval FROM customers WHERE id = $1")
        .bind(customer_id)
        .fetch_optional(tx)
        .await
        .context("reading the customer's approval setting")?;
    Ok(setting.flatten())
}

/// The approval setting of the invoice's customer (`manual`, `auto`), if any.
pub async fn invoice_customer_setting(
    tx: &mut PgConnection,
    invoice_id: Uuid,
) -> anyhow::Result<Option<String>> {
    let setting: Option<Option<String>> = sqlx::query_scalar(
        "SELECT c.approval FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE i.id = $1",
    )
    .bind(invoice_id)
    .fetch_optional(tx)
    .await
    .context("reading the customer's approval setting")?;
    Ok(setting.flatten())
}
