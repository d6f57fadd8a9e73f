//! What the SMS and letter channels read and keep beside the email path: the customer's
//! phone and postal address (and whether its email bounced), the payments that late
//! interest is computed from, a letter's PDF with its SHA-256, and the provider's reference
//! as proof.

use crate::rows::parse;
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use relance_domain::Channel;
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

/// Where a customer can be reached besides email, and whether its email address works.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct Contact {
    /// E.164, normalised at intake.
    pub phone: Option<String>,
    pub postal_address: Option<String>,
    /// The SMTP server's refusal, while the customer's address is still the one refused.
    pub email_bounce: Option<String>,
}

pub async fn contact_of(db: &mut PgConnection, customer_id: &str) -> anyhow::Result<Contact> {
    let contact: Option<Contact> = sqlx::query_as(
        "SELECT phone, postal_address, CASE WHEN lower(bounced_email) = lower(email) THEN bounce_reason END AS email_bounce
         FROM customers WHERE id = $1",
    )
    .bind(customer_id)
    .fetch_optional(db)
    .await
    .context("reading the customer's phone and address")?;
    Ok(contact.unwrap_or_default())
}

/// (value date, amount) of every payment applied to the invoice.
pub async fn payments_of(
    db: &mut PgConnection,
    invoice_id: Uuid,
) -> anyhow::Result<Vec<(NaiveDate, Decimal)>> {
    sqlx::query_as("SELECT received_on, amount FROM payments WHERE invoice_id = $1 ORDER BY received_on, id")
        .bind(invoice_id)
        .fetch_all(db)
        .await
        .context("reading the invoice's payments")
}

/// What an invoice's claim and its wording depend on besides the invoice row: the payments,
/// the formal notice if one went out, and how many reminders reached the customer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimHistory {
    /// Value date and amount of each payment.
    pub payments: Vec<(NaiveDate, Decimal)>,
    /// The first formal notice sent (a reminder step of tone `formal`): when, and on which
    /// channel.
    pub formal_notice: Option<(DateTime<Utc>, Channel)>,
    /// Reminder messages sent (every channel; call tasks are not messages).
    pub reminders_sent: i64,
}

impl ClaimHistory {
    /// The customer's local day the formal notice took effect: sent by email that day, by
    /// post `postal_delivery_days` later.
    pub fn formal_notice_effective_on(
        &self,
        tz: chrono_tz::Tz,
        postal_delivery_days: u32,
    ) -> Option<NaiveDate> {
        self.formal_notice.as_ref().map(|(sent_at, channel)| {
            let by_post = channel.is_postal();
            relance_domain::claim::notice_takes_effect(
                sent_at.with_timezone(&tz).date_naive(),
                by_post,
                postal_delivery_days,
            )
        })
    }
}

/// Reads an invoice's [`ClaimHistory`], leaving out the step `except` (the one being
/// rendered).
pub async fn claim_history(
    db: &mut PgConnection,
    invoice_id: Uuid,
    except: Option<Uuid>,
) -> anyhow::Result<ClaimHistory> {
    let payments = payments_of(db, invoice_id).await?;
    let formal_notice_stored: Option<(DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT updated_at, channel FROM reminder_steps
         WHERE invoice_id = $1 AND kind = 'reminder' AND tone = 'formal' AND status = 'sent'
         ORDER BY updated_at LIMIT 1",
    )
    .bind(invoice_id)
    .fetch_optional(&mut *db)
    .await
    .context("reading the invoice's formal notice")?;
    let formal_notice = formal_notice_stored
        .map(|(sent_at, channel)| {
            let named = format!("formal notice of invoice {invoice_id}");
            Ok::<_, anyhow::Error>((sent_at, parse("reminder_steps", named, "channel", &channel)?))
        })
        .transpose()?;
    let reminders_sent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reminder_steps
         WHERE invoice_id = $1 AND kind = 'reminder' AND status = 'sent'
           AND id IS DISTINCT FROM $2",
    )
    .bind(invoice_id)
    .bind(except)
    .fetch_one(&mut *db)
    .await
    .context("counting the invoice's reminders sent")?;
    Ok(ClaimHistory {
        payments,
        formal_notice,
        reminders_sent,
    })
}

/// Stores the rendered document (a letter's PDF) of a step, once.
pub async fn save_document(
    tx: &mut PgConnection,
    step_id: Uuid,
    document: &[u8],
    sha256: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE rendered_messages SET document = $2, document_sha256 = $3 WHERE step_id = $1 AND document IS NULL",
    )
    .bind(step_id)
    .bind(document)
    .bind(sha256)
    .execute(tx)
    .await
    .context("saving the rendered document")?;
    Ok(())
}

/// A step's rendered document and its SHA-256.
pub async fn document_of(db: &mut PgConnection, step_id: Uuid) -> anyhow::Result<Option<(Vec<u8>, String)>> {
    let row: Option<(Option<Vec<u8>>, Option<String>)> =
        sqlx::query_as("SELECT document, document_sha256 FROM rendered_messages WHERE step_id = $1")
            .bind(step_id)
            .fetch_optional(db)
            .await
            .context("reading the rendered document")?;
    Ok(row.and_then(|(document, sha)| document.zip(sha)))
}

/// Keeps the provider's reference for the step (message id, tracking number, file).
pub async fn set_delivery_reference(
    tx: &mut PgConnection,
    step_id: Uuid,
    reference: &str,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE reminder_steps SET delivery_reference = $2 WHERE id = $1")
        .bind(step_id)
        .bind(reference)
        .execute(tx)
        .await
        .context("saving the delivery reference")?;
    Ok(())
}

/// Records that the SMTP server refused `address` for good (a 5xx), if it is still the email
/// address of the invoice's customer: its later email steps fall back (see the policy).
pub async fn record_email_bounce(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    address: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE customers SET bounced_email = $2, bounced_at = $3, bounce_reason = $4
         WHERE id = (SELECT customer_id FROM invoices WHERE id = $1) AND lower(email) = lower($2)",
    )
    .bind(invoice_id)
    .bind(address)
    .bind(at)
    .bind(reason)
    .execute(tx)
    .await
    .context("recording the email bounce")?;
    Ok(updated.rows_affected() == 1)
}
