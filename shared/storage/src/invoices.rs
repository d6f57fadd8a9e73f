//! Customers, invoices and payments.

use crate::rows::{decode_error, parse, parse_tz};
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use relance_domain::collections::InvoiceState;
use relance_domain::repeats::{Facts, RecordedPayment};
use relance_domain::{CustomerKind, Language, NewCustomer, NewInvoice, NewPayment, Risk};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// Creates the customer or refreshes its details (the latest invoice carries the truth).
pub async fn upsert_customer(
    tx: &mut PgConnection,
    c: &NewCustomer,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO customers (id, name, contact_name, email, phone, postal_address, language, timezone, risk, kind, cc, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (id) DO UPDATE SET name = $2, contact_name = $3, email = $4, phone = $5, postal_address = $6,
             language = $7, timezone = $8, risk = $9, kind = $10, cc = $11, updated_at = $12",
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
    .bind(at)
    .execute(tx)
    .await
    .context("saving the customer")?;
    Ok(())
}

/// Inserts the invoice with the facts of the message that registered it; returns `None`
/// when its number is already known.
pub async fn insert_invoice(
    tx: &mut PgConnection,
    invoice: &NewInvoice,
    facts: &Facts,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<Uuid>> {
    // Time-ordered (UUIDv7), as the steps' ids: on a ledger of millions, random ids sent each
    // insert to a random page of the primary key and of every index on `invoice_id` (the
    // steps' among them), pages that no longer fit in memory; time-ordered ones fill the same
    // few pages. The id says when the row was written, nothing more.
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO invoices (id, number, customer_id, amount, currency, balance, issued_on, due_on, payment_link, pdf, status, created_at,
             registered_facts)
         VALUES ($1, $2, $3, $4, $5, $4, $6, $7, $8, $9, 'open', $10, $11)
         ON CONFLICT (number) DO NOTHING",
    )
    .bind(id)
    .bind(&invoice.number)
    .bind(&invoice.customer.id)
    .bind(invoice.amount.amount)
    .bind(invoice.amount.currency.code())
    .bind(invoice.issued_on)
    .bind(invoice.due_on)
    .bind(&invoice.payment_link)
    .bind(&invoice.pdf)
    .bind(at)
    .bind(sqlx::types::Json(facts))
    .execute(tx)
    .await
    .context("saving the invoice")?;
    Ok((inserted.rows_affected() == 1).then_some(id))
}

/// The facts an invoice was registered with, if its number is known (held in share mode
/// until the transaction ends); empty facts for a row that has none.
pub async fn registered_facts(tx: &mut PgConnection, number: &str) -> anyhow::Result<Option<Facts>> {
    let row: Option<Option<sqlx::types::Json<Facts>>> =
        sqlx::query_scalar("SELECT registered_facts FROM invoices WHERE number = $1 FOR SHARE")
            .bind(number)
            .fetch_optional(tx)
            .await
            .context("reading the invoice's registered facts")?;
    Ok(row.map(|facts| facts.map(|f| f.0).unwrap_or_default()))
}

/// An invoice with its customer: what the renderer and the payments listener work from.
#[derive(Debug, Clone)]
pub struct InvoiceRecord {
    pub id: Uuid,
    pub number: String,
    pub amount: Decimal,
    pub currency: String,
    pub balance: Decimal,
    /// Sum of the credit notes: what is owed in all is `amount - credited`.
    pub credited: Decimal,
    pub issued_on: NaiveDate,
    pub due_on: NaiveDate,
    pub payment_link: Option<String>,
    pub has_pdf: bool,
    pub status: InvoiceState,
    pub customer_id: String,
    pub customer_name: String,
    pub contact_name: String,
    pub email: String,
    pub cc: Vec<String>,
    pub language: Language,
    pub timezone: Tz,
    pub risk: Risk,
    pub kind: CustomerKind,
    /// The customer's country (ISO 3166-1) and region (ISO 3166-2): its holiday calendar.
    pub country: String,
    pub region: Option<String>,
    /// The late-payment rate agreed with the customer, if any (percent a year).
    pub late_interest_percent: Option<Decimal>,
    /// The named policy of the invoice's creditor (`None`: the default policy):
    /// `config.policy_for(invoice.policy.as_deref())`.
    pub policy: Option<String>,
    /// The template folder of the invoice's creditor (`None`: the deployment's templates).
    pub templates: Option<String>,
}

/// An invoice as stored, before its status and its customer's language, time zone, risk and
/// kind are checked.
#[derive(sqlx::FromRow)]
struct InvoiceRow {
    id: Uuid,
    number: String,
    amount: Decimal,
    currency: String,
    balance: Decimal,
    credited: Decimal,
    issued_on: NaiveDate,
    due_on: NaiveDate,
    payment_link: Option<String>,
    has_pdf: bool,
    status: String,
    customer_id: String,
    customer_name: String,
    contact_name: String,
    email: String,
    cc: Vec<String>,
    language: String,
    timezone: String,
    risk: String,
    kind: String,
    country: String,
    region: Option<String>,
    late_interest_percent: Option<Decimal>,
    policy: Option<String>,
    templates: Option<String>,
}

impl TryFrom<InvoiceRow> for InvoiceRecord {
    type Error = anyhow::Error;
    fn try_from(row: InvoiceRow) -> anyhow::Result<Self> {
        let invoice = format!("invoice {}", row.number);
        let customer = format!("{} (customer of invoice {})", row.customer_id, row.number);
        Ok(InvoiceRecord {
            status: parse("invoices", &invoice, "status", &row.status)?,
            language: parse("customers", &customer, "language", &row.language)?,
            timezone: parse_tz("customers", &customer, &row.timezone)?,
            risk: parse("customers", &customer, "risk", &row.risk)?,
            kind: parse("customers", &customer, "kind", &row.kind)?,
            id: row.id,
            number: row.number,
            amount: row.amount,
            currency: row.currency,
            balance: row.balance,
            credited: row.credited,
            issued_on: row.issued_on,
            due_on: row.due_on,
            payment_link: row.payment_link,
            has_pdf: row.has_pdf,
            customer_id: row.customer_id,
            customer_name: row.customer_name,
            contact_name: row.contact_name,
            email: row.email,
            cc: row.cc,
            country: row.country,
            region: row.region,
            late_interest_percent: row.late_interest_percent,
            policy: row.policy,
            templates: row.templates,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for InvoiceRecord {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        InvoiceRow::from_row(row)?.try_into().map_err(decode_error)
    }
}

const INVOICE_RECORD: &str = "SELECT i.id, i.number, i.amount, i.currency, i.balance, i.credited, i.issued_on, i.due_on, i.payment_link,
        i.pdf IS NOT NULL AS has_pdf, i.status, c.id AS customer_id, c.name AS customer_name, c.contact_name, c.email, c.cc,
        c.language, c.timezone, c.risk, c.kind, c.country, c.region, c.late_interest_percent,
        cr.policy, cr.templates
    FROM invoices i JOIN customers c ON c.id = i.customer_id LEFT JOIN creditors cr ON cr.id = i.creditor_id";

pub async fn find_by_id(db: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<InvoiceRecord>> {
    sqlx::query_as(&format!("{INVOICE_RECORD} WHERE i.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
        .context("reading the invoice")
}

/// The customer's invoices still owed (open or handed off, a balance left), oldest due first.
pub async fn open_of_customer(
    db: &mut PgConnection,
    customer_id: &str,
) -> anyhow::Result<Vec<InvoiceRecord>> {
    sqlx::query_as(&format!(
        "{INVOICE_RECORD} WHERE i.customer_id = $1 AND i.status IN ('open', 'handed_off') AND i.balance > 0
         ORDER BY i.due_on, i.number"
    ))
    .bind(customer_id)
    .fetch_all(db)
    .await
    .context("reading the customer's open invoices")
}

pub async fn find_by_number(db: &mut PgConnection, number: &str) -> anyhow::Result<Option<InvoiceRecord>> {
    sqlx::query_as(&format!("{INVOICE_RECORD} WHERE i.number = $1"))
        .bind(number)
        .fetch_optional(db)
        .await
        .context("reading the invoice")
}

/// Locks the invoice for a balance change. Waits for any sender holding it in share mode,
/// so a payment is recorded either before a send's final check or after the send.
pub async fn lock_for_payment(tx: &mut PgConnection, number: &str) -> anyhow::Result<Option<InvoiceRecord>> {
    sqlx::query_as(&format!("{INVOICE_RECORD} WHERE i.number = $1 FOR UPDATE OF i"))
        .bind(number)
        .fetch_optional(tx)
        .await
        .context("locking the invoice")
}

/// Holds the invoice in share mode while a message is delivered, and returns its status:
/// a payment cannot be committed in between.
pub async fn hold_for_delivery(tx: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<InvoiceState>> {
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM invoices WHERE id = $1 FOR SHARE")
        .bind(id)
        .fetch_optional(tx)
        .await
        .context("holding the invoice for delivery")?;
    status
        .map(|status| parse("invoices", format!("invoice {id}"), "status", &status))
        .transpose()
}

/// Holds several invoices in share mode (in id order, as every caller does), for a delivery
/// that speaks of them: a payment of one of them waits for the delivery to be recorded.
pub async fn hold_all_for_delivery(tx: &mut PgConnection, ids: &[Uuid]) -> anyhow::Result<()> {
    sqlx::query("SELECT id FROM invoices WHERE id = ANY($1) ORDER BY id FOR SHARE")
        .bind(ids)
        .fetch_all(tx)
        .await
        .context("holding the grouped invoices for delivery")?;
    Ok(())
}

pub async fn invoice_pdf(db: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<Vec<u8>>> {
    let pdf: Option<Option<Vec<u8>>> = sqlx::query_scalar("SELECT pdf FROM invoices WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
        .context("reading the invoice PDF")?;
    Ok(pdf.flatten())
}

/// Inserts the payment; returns false when this payment id was already recorded.
pub async fn insert_payment(
    tx: &mut PgConnection,
    p: &NewPayment,
    invoice_id: Uuid,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO payments (id, invoice_id, amount, currency, received_on, recorded_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&p.id)
    .bind(invoice_id)
    .bind(p.amount.amount)
    .bind(p.amount.currency.code())
    .bind(p.received_on)
    .bind(at)
    .execute(tx)
    .await
    .context("saving the payment")?;
    Ok(inserted.rows_affected() == 1)
}

/// The payment recorded under this id, if any: its invoice, amount and currency.
pub async fn recorded_payment(
    tx: &mut PgConnection,
    payment_id: &str,
) -> anyhow::Result<Option<RecordedPayment>> {
    let row: Option<(String, Decimal, String)> = sqlx::query_as(
        "SELECT i.number, p.amount, p.currency FROM payments p JOIN invoices i ON i.id = p.invoice_id
         WHERE p.id = $1",
    )
    .bind(payment_id)
    .fetch_optional(tx)
    .await
    .context("looking up the payment")?;
    Ok(row.map(|(invoice_number, amount, currency)| RecordedPayment {
        invoice_number,
        amount,
        currency: currency.trim().to_string(),
    }))
}

/// Lowers the balance; settles the invoice when it reaches zero.
pub async fn apply_payment(
    tx: &mut PgConnection,
    id: Uuid,
    new_balance: Decimal,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE invoices SET balance = $2,
             status = CASE WHEN $2 = 0 THEN 'settled' ELSE status END,
             settled_at = CASE WHEN $2 = 0 THEN $3 ELSE settled_at END
         WHERE id = $1",
    )
    .bind(id)
    .bind(new_balance)
    .bind(at)
    .execute(tx)
    .await
    .context("updating the invoice balance")?;
    Ok(())
}
