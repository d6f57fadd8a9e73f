//! What ends or lowers a debt other than a payment: credit notes, and closing an invoice
//! (credit note for the whole of it, write-off, e-invoicing refusal). Callers hold the
//! invoice `FOR UPDATE`.

use anyhow::Context;
use chrono::{DateTime, Utc};
use relance_domain::collections::NewCreditNote;
use sqlx::PgConnection;
use uuid::Uuid;

/// Records the credit note and lowers the balance by its amount. Returns false, changing
/// nothing, when a credit note with this id was already recorded.
pub async fn record_credit_note(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    note: &NewCreditNote,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO credit_notes (id, invoice_id, amount, currency, issued_on, reason, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&note.id)
    .bind(invoice_id)
    .bind(note.amount.amount)
    .bind(note.amount.currency.code())
    .bind(note.issued_on)
    .bind(&note.reason)
    .bind(at)
    .execute(&mut *tx)
    .await
    .context("saving the credit note")?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("UPDATE invoices SET balance = balance - $2, credited = credited + $2 WHERE id = $1")
        .bind(invoice_id)
        .bind(note.amount.amount)
        .execute(tx)
        .await
        .context("lowering the balance by the credit note")?;
    Ok(true)
}

pub async fn credit_note_invoice(tx: &mut PgConnection, id: &str) -> anyhow::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT invoice_id FROM credit_notes WHERE id = $1")
        .bind(id)
        .fetch_optional(tx)
        .await
        .context("looking up the credit note")
}

/// Whether any payment was recorded for the invoice.
pub async fn has_payments(tx: &mut PgConnection, invoice_id: Uuid) -> anyhow::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM payments WHERE invoice_id = $1)")
        .bind(invoice_id)
        .fetch_one(tx)
        .await
        .context("looking up payments")
}

/// Closes an open invoice, with the reason (`credit_note`, `written_off`, `refused`...).
pub async fn close(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    reason: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE invoices SET status = 'closed', status_reason = $2, status_changed_at = $3
         WHERE id = $1 AND status = 'open'",
    )
    .bind(invoice_id)
    .bind(reason)
    .bind(at)
    .execute(tx)
    .await
    .context("closing the invoice")?;
    Ok(updated.rows_affected() == 1)
}
