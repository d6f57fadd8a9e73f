//! Payments (`payment.received`): recorded once per payment id, they lower the invoice
//! balance; when it reaches zero the invoice is settled: every step not yet sent is
//! cancelled and the thank-you queued. A step in `sending` is not cancelled but marked
//! (`steps::cancel_open`): its sender re-checks the invoice and the mark in a short
//! transaction right before the end of DATA, aborts if it finds either, and otherwise
//! journals what went out as sent with the payment's time beside it. No lock is held across
//! a network call.

use crate::amount_text;
use anyhow::Context;
use relance_config::Config;
use relance_contracts::{
    InvoiceSettledV1, PaymentConflictV1, PaymentReceivedV1, PaymentRecordedV1, RecordedDifferenceV1,
    ReminderCancelledV1,
};
use relance_domain::plan::PlannedStep;
use relance_domain::repeats::{payment_differences, Difference};
use relance_domain::validation::input::PaymentFields;
use relance_domain::validation::{NewPayment, Rejection};
use relance_domain::{validate_payment, Channel, StepKind, Tone};
use relance_messaging::{HandlerError, Incoming};
use relance_sequence::outgoing;
use relance_storage::steps::{self, StepStatus};
use relance_storage::{invoices, journal, mark_processed};
use serde_json::json;
use sqlx::PgPool;

const INBOX: &str = "payments.payment_received";

/// The wire fields of a `payment.received`, validated. Also what `relance import payments`
/// checks each row with before publishing it.
pub fn validate_received(event: &PaymentReceivedV1) -> Result<NewPayment, Rejection> {
    let p = &event.payment;
    validate_payment(PaymentFields {
        id: &p.id,
        invoice_number: &p.invoice_number,
        amount: &p.amount,
        currency: &p.currency,
        received_on: p.received_on,
    })
}

/// Handles `payment.received`. An invalid payment changes nothing and is dead-lettered; a
/// payment for an invoice not yet known is retried (it may have overtaken its invoice).
#[tracing::instrument(skip_all, fields(message_id = ?message.message_id), err)]
pub async fn record_payment(db: &PgPool, config: &Config, message: Incoming) -> Result<(), HandlerError> {
    let event: PaymentReceivedV1 = message.json()?;
    let payment = validate_received(&event)
        .map_err(|r| HandlerError::Permanent(format!("payment {} refused: {r}", event.payment.id)))?;
    let now = config.clock.now();
    let mut tx = db.begin().await.context("starting the payment transaction")?;
    let first_delivery = mark_processed(&mut tx, INBOX, &event.event_id, now).await?;
    // Under the invoice lock, so that two messages carrying one payment are serialised.
    let Some(invoice) = invoices::lock_for_payment(&mut tx, &payment.invoice_number).await? else {
        return Err(HandlerError::Transient(anyhow::anyhow!(
            "unknown invoice {:?}",
            payment.invoice_number
        )));
    };
    let recorded = invoices::recorded_payment(&mut tx, &payment.id).await?;
    let conflict = recorded
        .as_ref()
        .map(|r| payment_differences(r, &payment))
        .filter(|d| first_delivery && !d.is_empty());
    if let Some(differences) = conflict {
        return refuse_conflicting_payment(tx, &invoice, &payment, &event.event_id, &differences, now).await;
    }
    if !first_delivery || recorded.is_some() {
        tracing::info!("payment already recorded; message ignored");
        journal::append(
            &mut tx,
            now,
            &invoice.number,
            None,
            "payment.duplicate",
            json!({ "payment_id": payment.id, "event_id": event.event_id }),
        )
        .await?;
        tx.commit().await.context("committing the duplicate note")?;
        return Ok(());
    }
    if invoice.currency.trim() != payment.amount.currency.code() {
        return Err(HandlerError::Permanent(format!(
            "payment {} refused: currency {} differs from the invoice's {}",
            payment.id,
            payment.amount.currency.code(),
            invoice.currency.trim()
        )));
    }
    if payment.amount.amount > invoice.balance {
        return Err(HandlerError::Permanent(format!(
            "payment {} refused: {} exceeds the balance {} of invoice {} (overpayment)",
            payment.id,
            amount_text(payment.amount.amount),
            amount_text(invoice.balance),
            invoice.number
        )));
    }
    record_checked_payment(&mut tx, config, &invoice, &payment, None, now).await?;
    tx.commit().await.context("committing the payment")?;
    if payment.amount.amount == invoice.balance {
        // Settled: its steps not yet sent were cancelled in that transaction.
        relance_telemetry::metrics::observe_payment_to_cancel(now - event.occurred_at);
    }
    Ok(())
}

/// A payment id already recorded, under a new event id, with another amount, currency or
/// invoice: neither a duplicate to ignore nor a new payment to apply. Journals and announces
/// `payment.conflict` on the invoice the message names, commits that (the payment recorded
/// stays as it is), and dead-letters the message with the reason.
async fn refuse_conflicting_payment(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    invoice: &invoices::InvoiceRecord,
    payment: &relance_domain::NewPayment,
    event_id: &str,
    differences: &[Difference],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), HandlerError> {
    let listed: Vec<String> = differences
        .iter()
        .map(|d| {
            format!(
                "{} {} (recorded) vs {} (received)",
                d.field,
                d.applied.as_deref().unwrap_or("none"),
                d.received.as_deref().unwrap_or("none")
            )
        })
        .collect();
    let reason = format!(
        "payment {} refused: conflict: payment id already recorded with other facts: {}",
        payment.id,
        listed.join(", ")
    );
    let detail = PaymentConflictV1 {
        payment_id: payment.id.to_string(),
        event_id: event_id.to_string(),
        reason: reason.clone(),
        differences: differences
            .iter()
            .map(|d| RecordedDifferenceV1 {
                field: d.field.clone(),
                recorded: d.applied.clone(),
                received: d.received.clone(),
            })
            .collect(),
    };
    outgoing::announce_detail(&mut tx, now, &invoice.number, None, &detail).await?;
    tx.commit().await.context("committing the payment conflict")?;
    Err(HandlerError::Permanent(reason))
}

/// Records a payment already checked against the invoice (currency, not over the balance):
/// lowers the balance, announces `payment.recorded` (with `source` when it did not come as
/// `payment.received`), and settles the invoice when nothing is left to pay.
pub(crate) async fn record_checked_payment(
    tx: &mut sqlx::PgConnection,
    config: &Config,
    invoice: &invoices::InvoiceRecord,
    payment: &relance_domain::NewPayment,
    source: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    if !invoices::insert_payment(tx, payment, invoice.id, now).await? {
        // Recorded meanwhile under this id (against another invoice, whose lock this is
        // not): try again, and the message is then seen as a duplicate or a conflict.
        anyhow::bail!("payment {} was recorded concurrently", payment.id);
    }
    let balance = invoice.balance - payment.amount.amount;
    invoices::apply_payment(tx, invoice.id, balance, now).await?;
    let detail = PaymentRecordedV1 {
        payment_id: payment.id.to_string(),
        amount: amount_text(payment.amount.amount),
        currency: invoice.currency.trim().to_string(),
        balance: amount_text(balance),
        received_on: payment.received_on,
        source: source.map(ToString::to_string),
    };
    outgoing::announce_detail(tx, now, &invoice.number, None, &detail).await?;
    // A payment plan's instalments are paid in order, before the settlement's thank-you.
    relance_sequence::payment_plan::allocate_payment(
        tx,
        config,
        invoice,
        &payment.id,
        payment.amount.amount,
        balance.is_zero(),
        now,
    )
    .await?;
    if balance.is_zero() {
        settle(tx, config, invoice, now).await?;
    }
    Ok(())
}

/// The invoice is paid: stop every reminder not yet sent, end its pauses and queue the
/// thank-you.
pub(crate) async fn settle(
    tx: &mut sqlx::PgConnection,
    config: &Config,
    invoice: &invoices::InvoiceRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let reason = "invoice settled";
    for cancelled in steps::cancel_open(tx, invoice.id, reason, now).await? {
        let detail = ReminderCancelledV1 {
            reason: reason.to_string(),
            was: cancelled.was.to_string(),
            stage: None,
        };
        outgoing::announce_detail(tx, now, &invoice.number, Some(&cancelled.step), &detail).await?;
    }
    crate::sequence_effects::end_all_pauses(tx, invoice, reason, now).await?;
    let detail = InvoiceSettledV1 {
        amount_paid: amount_text(invoice.amount - invoice.credited),
        currency: invoice.currency.trim().to_string(),
    };
    outgoing::announce_detail(tx, now, &invoice.number, None, &detail).await?;
    let thanks = PlannedStep {
        name: "thanks".to_string(),
        position: 1000,
        channel: Channel::Email,
        template: config
            .policy_for(invoice.policy.as_deref())
            .thanks_template
            .clone(),
        tone: Tone::Courteous,
        due_at: now,
    };
    let step_id = steps::insert_planned(
        tx,
        invoice.id,
        StepKind::Thanks,
        &thanks,
        StepStatus::Pending,
        now,
    )
    .await?;
    steps::mark_queued(tx, step_id, now, now.date_naive()).await?;
    // The thank-you goes through the same pipeline as reminders.
    relance_sequence::queue_step(
        tx,
        step_id,
        &invoice.number,
        &thanks.name,
        thanks.channel.as_str(),
        now,
    )
    .await
}
