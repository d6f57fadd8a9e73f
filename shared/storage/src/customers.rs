//! Customers: their details, kept current from every `invoice.issued` and `customer.updated`,
//! and what planning needs from them. Decides nothing: the scheduler compares and re-plans.

use crate::rows::{parse, parse_tz};
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use relance_domain::{CustomerKind, NewCustomer, Risk};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

/// The details of a customer that decide the plan of its invoices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanningDetails {
    pub risk: Risk,
    pub kind: CustomerKind,
    pub timezone: Tz,
    pub country: String,
    pub region: Option<String>,
}

/// [`PlanningDetails`] as stored, before the risk, kind and time zone are checked.
#[derive(sqlx::FromRow)]
struct PlanningRow {
    risk: String,
    kind: String,
    timezone: String,
    country: String,
    region: Option<String>,
}

impl PlanningRow {
    fn checked(self, id: &str) -> anyhow::Result<PlanningDetails> {
        Ok(PlanningDetails {
            risk: parse("customers", id, "risk", &self.risk)?,
            kind: parse("customers", id, "kind", &self.kind)?,
            timezone: parse_tz("customers", id, &self.timezone)?,
            country: self.country,
            region: self.region,
        })
    }
}

/// Locks the customer's row (until the transaction ends) and returns its planning details,
/// or `None` for a customer not seen before. Serialises concurrent updates of one customer.
pub async fn lock(tx: &mut PgConnection, id: &str) -> anyhow::Result<Option<PlanningDetails>> {
    let row: Option<PlanningRow> = sqlx::query_as(
        "SELECT risk, kind, timezone, country, region FROM customers WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(tx)
    .await
    .context("locking the customer")?;
    row.map(|row| row.checked(id)).transpose()
}

/// Creates the customer or refreshes its details, unless the stored details come from a
/// message newer than `as_of` (an older message arriving late changes nothing). Returns
/// whether it wrote.
pub async fn save(
    tx: &mut PgConnection,
    c: &NewCustomer,
    as_of: DateTime<Utc>,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let written = sqlx::query(
        "INSERT INTO customers (id, name, contact_name, email, phone, postal_address, language, timezone, risk, kind, cc,
             country, region, details_as_of, updated_at, late_interest_percent, approval)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (id) DO UPDATE SET name = $2, contact_name = $3, email = $4, phone = $5, postal_address = $6,
             language = $7, timezone = $8, risk = $9, kind = $10, cc = $11, country = $12, region = $13,
             details_as_of = $14, updated_at = $15, late_interest_percent = $16,
             approval = COALESCE($17, customers.approval)
         WHERE customers.details_as_of IS NULL OR customers.details_as_of <= $14",
    )
    .bind(&c.id)
    .bind(&c.name)
    .bind(&c.contact_name)
    .bind(&c.email)
    .bind(&c.phone)
    .bind(&c.postal_address)
    .bind(c.language.as_str())
    .bind(c.timezone.name())
    .bind(c.risk.as_str())
    .bind(c.kind.as_str())
    .bind(&c.cc)
    .bind(&c.country)
    .bind(&c.region)
    .bind(as_of)
    .bind(at)
    .bind(c.late_interest_percent)
    .bind(c.approval.map(|a| a.as_str()))
    .execute(tx)
    .await
    .context("saving the customer")?;
    Ok(written.rows_affected() == 1)
}

/// An open invoice of a customer, as re-planning needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OpenInvoice {
    pub id: Uuid,
    pub number: String,
    pub amount: Decimal,
    pub currency: String,
    pub due_on: NaiveDate,
    /// The named policy of its creditor (`None`: the default policy).
    pub policy: Option<String>,
}

/// The customer's open invoices, locked: a scheduler emitting one of their steps finishes
/// first, and none emits while they are re-planned.
pub async fn lock_open_invoices(
    tx: &mut PgConnection,
    customer_id: &str,
) -> anyhow::Result<Vec<OpenInvoice>> {
    sqlx::query_as(
        "SELECT i.id, i.number, i.amount, i.currency, i.due_on, cr.policy
         FROM invoices i LEFT JOIN creditors cr ON cr.id = i.creditor_id
         WHERE i.customer_id = $1 AND i.status = 'open' ORDER BY i.number FOR UPDATE OF i",
    )
    .bind(customer_id)
    .fetch_all(tx)
    .await
    .context("locking the customer's open invoices")
}
