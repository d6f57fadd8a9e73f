//! What mail read back from the customer does to an invoice, in the caller's transaction
//! (which holds the invoice `FOR UPDATE`): a pause opened (by a reply, as by a promise or a
//! dispute), an address that bounced (synchronously, refused by the SMTP server, or
//! asynchronously, a delivery status notification read from the mailbox), and an
//! acknowledgement of receipt (from the customer page or a read notification).

use chrono::{DateTime, Utc};
use relance_contracts::{InvoicePausedV1, InvoiceReceiptAcknowledgedV1, ReminderPostponedV1};
use relance_storage::invoices::InvoiceRecord;
use relance_storage::pauses::{self, NewPause};
use relance_storage::{deliveries, journal, replies};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::outgoing;

/// Opens a pause and stops the reminders on their way (queued, rendered): they go back to
/// pending and are re-dated when the sequence resumes.
pub async fn pause(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    new: &NewPause<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    pauses::open(tx, invoice.id, new, now).await?;
    let reason = format!("invoice paused ({})", new.kind);
    for step in pauses::pull_back_in_flight(tx, invoice.id, &reason, now).await? {
        outgoing::announce_step_detail(
            tx,
            now,
            &step,
            &ReminderPostponedV1 {
                reason: reason.clone(),
                until: Some(new.until),
                calendar: None,
            },
        )
        .await?;
    }
    outgoing::announce_detail(
        tx,
        now,
        &invoice.number,
        None,
        &InvoicePausedV1 {
            kind: new.kind.to_string(),
            reason: new.reason.to_string(),
            promised_on: new.promised_on,
            until: new.until,
            event_id: new.event_id.to_string(),
            source: new.origin.map(str::to_string),
        },
    )
    .await
}

/// Records that the customer's address bounced for good (see
/// `deliveries::record_email_bounce`): its later email steps fall back to the policy's next
/// channel. Journaled `customer.email_bounced` when it is still the customer's address.
/// Returns whether it was.
pub async fn record_bounce(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    invoice_number: &str,
    step_id: Option<Uuid>,
    addresses: &[String],
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let mut recorded = false;
    for address in addresses {
        if deliveries::record_email_bounce(tx, invoice_id, address, reason, now).await? {
            journal::append(
                tx,
                now,
                invoice_number,
                step_id,
                "customer.email_bounced",
                json!({ "reason": reason }),
            )
            .await?;
            recorded = true;
        }
    }
    Ok(recorded)
}

/// Records the customer's acknowledgement of receipt, journals and announces it
/// (`invoice.receipt_acknowledged`); false (nothing done) when the same acknowledgement was
/// recorded already.
pub async fn acknowledge_receipt(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    detail: &InvoiceReceiptAcknowledgedV1,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    if !replies::record_acknowledgement(
        tx,
        invoice.id,
        &detail.source,
        &detail.source_id,
        detail.acknowledged_at,
        now,
    )
    .await?
    {
        return Ok(false);
    }
    outgoing::announce_detail(tx, now, &invoice.number, None, detail).await?;
    Ok(true)
}
