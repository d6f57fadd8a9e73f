//! A customer's and an invoice's pages: the customer's details and balance, an invoice's
//! facts, and the merged journal timeline (sends with their subject and the stored message,
//! payments, pauses, call tasks and outcomes, fallbacks, hand-off). Read-only.

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub contact_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub postal_address: Option<String>,
    pub language: String,
    pub timezone: String,
    pub segment: String,
    pub kind: String,
}

/// One entry of the journal as the timeline shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TimelineEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub invoice_number: Option<String>,
    pub step_id: Option<Uuid>,
    pub action: String,
    pub detail: serde_json::Value,
    /// The subject of the message a send delivered.
    pub subject: Option<String>,
    /// Whether the exact message is stored as proof (see [`proof`]).
    pub has_proof: bool,
}

/// An invoice's facts for its page.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct InvoiceFacts {
    pub number: String,
    pub customer_id: String,
    pub customer_name: String,
    pub amount: Decimal,
    pub balance: Decimal,
    pub credited: Decimal,
    pub currency: String,
    pub issued_on: NaiveDate,
    pub due_on: NaiveDate,
    pub status: String,
    pub status_reason: Option<String>,
}

/// The exact message stored for a step: what the renderer produced and the sender delivered.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Proof {
    pub step_id: Uuid,
    pub invoice_number: String,
    pub channel: String,
    pub message_id: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub body_text: String,
    pub document_sha256: Option<String>,
    pub rendered_at: DateTime<Utc>,
}

const ENTRY: &str = "SELECT j.id, j.at, j.invoice_number, j.step_id, j.action, j.detail,
        r.subject, (r.step_id IS NOT NULL) AS has_proof
    FROM journal j
    LEFT JOIN rendered_messages r ON r.step_id = j.step_id AND j.action IN ('reminder.sent', 'thanks.sent')";

pub async fn customer(db: &PgPool, id: &str) -> anyhow::Result<Option<Customer>> {
    sqlx::query_as(
        "SELECT id, name, contact_name, email, phone, postal_address, language, timezone,
                risk AS segment, kind FROM customers WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
    .context("reading the customer")
}

/// What a customer owes, per currency, on its invoices still open.
pub async fn customer_balance(db: &PgPool, id: &str) -> anyhow::Result<BTreeMap<String, Decimal>> {
    let rows: Vec<(String, Decimal)> = sqlx::query_as(
        "SELECT trim(currency), sum(balance) FROM invoices
         WHERE customer_id = $1 AND status = 'open' GROUP BY 1",
    )
    .bind(id)
    .fetch_all(db)
    .await
    .context("reading the customer's balance")?;
    Ok(rows.into_iter().collect())
}

/// The merged timeline of a customer's invoices, newest last, at most `limit` entries (the
/// latest ones).
pub async fn customer_timeline(db: &PgPool, id: &str, limit: i64) -> anyhow::Result<Vec<TimelineEntry>> {
    let mut entries: Vec<TimelineEntry> = sqlx::query_as(&format!(
        "{ENTRY} WHERE j.invoice_number IN (SELECT number FROM invoices WHERE customer_id = $1)
         ORDER BY j.at DESC, j.id DESC LIMIT $2"
    ))
    .bind(id)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("reading the customer's timeline")?;
    entries.reverse();
    Ok(entries)
}

pub async fn invoice(db: &PgPool, number: &str) -> anyhow::Result<Option<InvoiceFacts>> {
    sqlx::query_as(
        "SELECT i.number, c.id AS customer_id, c.name AS customer_name, i.amount, i.balance, i.credited,
                trim(i.currency) AS currency, i.issued_on, i.due_on, i.status, i.status_reason
         FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE i.number = $1",
    )
    .bind(number)
    .fetch_optional(db)
    .await
    .context("reading the invoice")
}

/// An invoice's journal, in order.
pub async fn invoice_timeline(db: &PgPool, number: &str) -> anyhow::Result<Vec<TimelineEntry>> {
    sqlx::query_as(&format!("{ENTRY} WHERE j.invoice_number = $1 ORDER BY j.id"))
        .bind(number)
        .fetch_all(db)
        .await
        .context("reading the invoice's timeline")
}

/// The id of the invoice's latest journal entry (0 when it has none): what an action's
/// entries come after.
pub async fn last_entry_id(db: &PgPool, number: &str) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM journal WHERE invoice_number = $1")
        .bind(number)
        .fetch_one(db)
        .await
        .context("reading the invoice's latest journal entry")
}

/// The invoice's journal entries after entry `after`, in order.
pub async fn invoice_timeline_since(
    db: &PgPool,
    number: &str,
    after: i64,
) -> anyhow::Result<Vec<TimelineEntry>> {
    sqlx::query_as(&format!(
        "{ENTRY} WHERE j.invoice_number = $1 AND j.id > $2 ORDER BY j.id"
    ))
    .bind(number)
    .bind(after)
    .fetch_all(db)
    .await
    .context("reading the invoice's latest journal entries")
}

/// The kinds of the pauses holding the invoice now (`promise`, `dispute`, ...).
pub async fn active_pause_kinds(db: &PgPool, number: &str) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT p.kind FROM invoice_pauses p JOIN invoices i ON i.id = p.invoice_id
         WHERE i.number = $1 AND p.ended_at IS NULL ORDER BY p.started_at",
    )
    .bind(number)
    .fetch_all(db)
    .await
    .context("reading the invoice's pauses")
}

/// Whether `consumer` (e.g. `payments.promise.recorded`) has applied the inbound message
/// `message_id`: its inbox has it.
pub async fn applied(db: &PgPool, consumer: &str, message_id: &str) -> anyhow::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM processed_messages WHERE consumer = $1 AND message_id = $2)",
    )
    .bind(consumer)
    .bind(message_id)
    .fetch_one(db)
    .await
    .context("looking up the message in the inbox")
}

pub async fn proof(db: &PgPool, step_id: Uuid) -> anyhow::Result<Option<Proof>> {
    sqlx::query_as(
        "SELECT r.step_id, i.number AS invoice_number, r.channel, r.message_id, r.recipients, r.subject,
                r.body_text, r.document_sha256, r.rendered_at
         FROM rendered_messages r JOIN reminder_steps s ON s.id = r.step_id
         JOIN invoices i ON i.id = s.invoice_id WHERE r.step_id = $1",
    )
    .bind(step_id)
    .fetch_optional(db)
    .await
    .context("reading the stored message")
}

/// Whether an invoice's journal chain verifies, and the first problem if not.
#[derive(Debug, Clone, Serialize)]
pub struct ChainStatus {
    pub intact: bool,
    pub entries: u64,
    pub problem: Option<String>,
}

pub async fn verify(db: &PgPool, number: &str) -> anyhow::Result<ChainStatus> {
    let mut conn = db.acquire().await.context("verifying the journal")?;
    let verification = crate::journal::verify::verify_chain(&mut conn, number).await?;
    Ok(ChainStatus {
        intact: verification.is_intact(),
        entries: verification.entries,
        problem: verification.first_problem().map(|p| p.to_string()),
    })
}
