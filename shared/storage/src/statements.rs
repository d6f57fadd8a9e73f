//! What a customer's statement of account is drawn from: the customer, its invoices still
//! owed, each with the payments, credit notes and formal notice its claim depends on; and
//! the statement attached to a rendered message. Reads and stores only: the figures are the
//! renderer's (`relance_renderer::statement`).

use crate::deliveries::{self, ClaimHistory};
use crate::invoices::{self, InvoiceRecord};
use crate::rows::{parse, parse_tz};
use anyhow::Context;
use chrono::NaiveDate;
use chrono_tz::Tz;
use relance_domain::Language;
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

/// The customer a statement is addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementCustomer {
    pub id: String,
    pub name: String,
    pub contact_name: String,
    pub postal_address: Option<String>,
    pub email: String,
    pub language: Language,
    pub timezone: Tz,
}

/// A credit note on one of the invoices.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CreditNoteLine {
    pub id: String,
    pub issued_on: NaiveDate,
    pub amount: Decimal,
}

/// An invoice still owed and what its figures are computed from.
#[derive(Debug, Clone)]
pub struct StatementInvoice {
    pub invoice: InvoiceRecord,
    pub history: ClaimHistory,
    pub credit_notes: Vec<CreditNoteLine>,
}

/// Everything a statement of account states, as stored.
#[derive(Debug, Clone)]
pub struct StatementSource {
    pub customer: StatementCustomer,
    pub invoices: Vec<StatementInvoice>,
}

#[derive(sqlx::FromRow)]
struct CustomerRow {
    id: String,
    name: String,
    contact_name: String,
    postal_address: Option<String>,
    email: String,
    language: String,
    timezone: String,
}

/// Reads the customer and its invoices still owed; `None` for an unknown customer.
pub async fn load(db: &mut PgConnection, customer_id: &str) -> anyhow::Result<Option<StatementSource>> {
    let row: Option<CustomerRow> = sqlx::query_as(
        "SELECT id, name, contact_name, postal_address, email, language, timezone FROM customers WHERE id = $1",
    )
    .bind(customer_id)
    .fetch_optional(&mut *db)
    .await
    .context("reading the customer of the statement")?;
    let Some(row) = row else {
        return Ok(None);
    };
    let named = format!("customer {}", row.id);
    let customer = StatementCustomer {
        language: parse("customers", &named, "language", &row.language)?,
        timezone: parse_tz("customers", &named, &row.timezone)?,
        id: row.id,
        name: row.name,
        contact_name: row.contact_name,
        postal_address: row.postal_address,
        email: row.email,
    };
    let mut lines = Vec::new();
    for invoice in invoices::open_of_customer(&mut *db, customer_id).await? {
        let history = deliveries::claim_history(&mut *db, invoice.id, None).await?;
        let credit_notes = sqlx::query_as(
            "SELECT id, issued_on, amount FROM credit_notes WHERE invoice_id = $1 ORDER BY issued_on, id",
        )
        .bind(invoice.id)
        .fetch_all(&mut *db)
        .await
        .context("reading the invoice's credit notes")?;
        lines.push(StatementInvoice {
            invoice,
            history,
            credit_notes,
        });
    }
    Ok(Some(StatementSource {
        customer,
        invoices: lines,
    }))
}

/// Keeps the statement attached to a step's rendered message (once), with its file name.
pub async fn save_attached(
    tx: &mut PgConnection,
    step_id: Uuid,
    name: &str,
    pdf: &[u8],
    sha256: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE rendered_messages SET statement = $2, statement_name = $3, statement_sha256 = $4
         WHERE step_id = $1 AND statement IS NULL",
    )
    .bind(step_id)
    .bind(pdf)
    .bind(name)
    .bind(sha256)
    .execute(tx)
    .await
    .context("saving the attached statement")?;
    Ok(())
}

/// The statement attached to a step's rendered message: its file name and PDF.
pub async fn attached_to(db: &mut PgConnection, step_id: Uuid) -> anyhow::Result<Option<(String, Vec<u8>)>> {
    let row: Option<(Option<String>, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT statement_name, statement FROM rendered_messages WHERE step_id = $1")
            .bind(step_id)
            .fetch_optional(db)
            .await
            .context("reading the attached statement")?;
    Ok(row.and_then(|(name, pdf)| name.zip(pdf)))
}
