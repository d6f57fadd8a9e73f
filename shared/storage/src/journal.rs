//! The journal: an append-only record of every action, the creditor's proof.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

pub async fn append(
    tx: &mut PgConnection,
    at: DateTime<Utc>,
    invoice_number: &str,
    step_id: Option<Uuid>,
    action: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO journal (at, invoice_number, step_id, action, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(at)
    .bind(invoice_number)
    .bind(step_id)
    .bind(action)
    .bind(detail)
    .execute(tx)
    .await
    .with_context(|| format!("journaling {action}"))?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct JournalEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub invoice_number: Option<String>,
    pub step_id: Option<Uuid>,
    pub action: String,
    pub detail: serde_json::Value,
}

/// One invoice's journal, oldest first.
pub async fn for_invoice(db: &sqlx::PgPool, invoice_number: &str) -> anyhow::Result<Vec<JournalEntry>> {
    sqlx::query_as("SELECT id, at, invoice_number, step_id, action, detail FROM journal WHERE invoice_number = $1 ORDER BY id")
        .bind(invoice_number)
        .fetch_all(db)
        .await
        .context("reading the journal")
}
