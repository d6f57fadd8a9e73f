//! E-invoicing lifecycle statuses (`invoice.lifecycle_status`): each is journaled; by its
//! effect it also pauses the sequence, ends pauses, records a promise, closes the invoice
//! (refused, rejected) or records it cashed as a payment. A status that agrees with what
//! relance knows (cashed on a settled invoice, refused on a closed one) is only journaled;
//! one that contradicts it is refused.

use crate::amount_text;
use crate::inbound::{invoice_message, refused, require_open, timezone, today, InvoiceMessage};
use crate::sequence_effects::{close, end_pauses, pause};
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::{names, InvoiceClosedV1, InvoiceLifecycleStatusV1, LifecycleClosureV1};
use relance_domain::collections::InvoiceState;
use relance_domain::collections::{
    promise_pause_end, LifecycleEffect, LifecycleStatus, NewLifecycleStatus, PauseKind,
};
use relance_domain::{NewPayment, Rejection};
use relance_messaging::HandlerError;
use relance_sequence::actions::check;
use relance_storage::invoices::InvoiceRecord;
use relance_storage::pauses::{self, NewPause};
use relance_storage::{journal, PgConnection};
use serde_json::json;

impl InvoiceMessage for InvoiceLifecycleStatusV1 {
    invoice_message!(
        InvoiceLifecycleStatusV1,
        lifecycle,
        NewLifecycleStatus,
        names::INVOICE_LIFECYCLE_STATUS,
        "lifecycle status",
        check::lifecycle
    );

    async fn apply(
        &self,
        status: NewLifecycleStatus,
        tx: &mut PgConnection,
        config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        apply_lifecycle_status(tx, config, invoice, &status, &self.event_id, now).await
    }
}

/// A status that agrees with what relance knows (cashed on a settled invoice, refused on a
/// closed one) is only journaled; one that contradicts it is refused.
async fn apply_lifecycle_status(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    lifecycle: &NewLifecycleStatus,
    event_id: &str,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let status = lifecycle.status;
    let what = format!("lifecycle status {status}");
    journal_status(tx, invoice, lifecycle, event_id, now).await?;
    let reason = match &lifecycle.reason {
        Some(r) => format!("e-invoicing status {status} ({r})"),
        None => format!("e-invoicing status {status} ({})", status.label_fr()),
    };
    let open = invoice.status == InvoiceState::Open;
    let source = (names::INVOICE_LIFECYCLE_STATUS, event_id);
    match status.effect() {
        LifecycleEffect::JournalOnly => {}
        LifecycleEffect::EndPauses(kinds) => {
            if open {
                end_pauses(tx, config, invoice, kinds, &reason, now).await?;
            }
        }
        LifecycleEffect::Pause(kind) => {
            require_open(&what, invoice)?;
            pause_unless_paused(tx, invoice, kind, &reason, source, now).await?;
        }
        LifecycleEffect::PromiseToday => {
            if open {
                promise_today(tx, config, invoice, &what, &reason, source, now).await?;
            }
        }
        LifecycleEffect::Close => match invoice.status {
            InvoiceState::Open => close_on_status(tx, invoice, lifecycle, &what, now).await?,
            InvoiceState::Closed => {}
            other => return Err(refused(&what, &invoice.number, format!("the invoice is {other}"))),
        },
        LifecycleEffect::Settle => match invoice.status {
            InvoiceState::Open => record_cashed(tx, config, invoice, lifecycle, event_id, now).await?,
            InvoiceState::Settled => {}
            other => return Err(refused(&what, &invoice.number, format!("the invoice is {other}"))),
        },
    }
    Ok(())
}

/// Journals `invoice.lifecycle_recorded`, whatever the status then does.
async fn journal_status(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    lifecycle: &NewLifecycleStatus,
    event_id: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let status = lifecycle.status;
    journal::append(
        tx,
        now,
        &invoice.number,
        None,
        names::INVOICE_LIFECYCLE_RECORDED,
        json!({
            "status": status.as_str(),
            "code": status.code(),
            "label": status.label_fr(),
            "reason": lifecycle.reason,
            "amount": lifecycle.amount.map(|m| amount_text(m.amount)),
            "event_id": event_id,
        }),
    )
    .await
}

/// Pauses the invoice with a pause of `kind`, unless one is already active.
async fn pause_unless_paused(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    kind: PauseKind,
    reason: &str,
    (source, event_id): (&str, &str),
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let active = pauses::active(tx, invoice.id).await?;
    if active.iter().any(|p| p.kind == kind) {
        return Ok(());
    }
    let new = NewPause {
        kind: kind.as_str(),
        reason,
        promised_on: None,
        until: None,
        source,
        event_id,
        origin: None,
    };
    pause(tx, invoice, &new, now).await
}

/// A status that says the payment is on its way: a promise to pay today (with the grace
/// days), unless a promise already holds the invoice.
async fn promise_today(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    what: &str,
    reason: &str,
    (source, event_id): (&str, &str),
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let active = pauses::active(tx, invoice.id).await?;
    if active.iter().any(|p| p.kind == PauseKind::Promise) {
        return Ok(());
    }
    let today = today(config, invoice);
    let until = promise_pause_end(
        today,
        today,
        config.settings.promise_grace_days,
        timezone(invoice),
    )
    .map_err(|r| refused(what, &invoice.number, r))?;
    let new = NewPause {
        kind: PauseKind::Promise.as_str(),
        reason,
        promised_on: Some(today),
        until: Some(until),
        source,
        event_id,
        origin: None,
    };
    pause(tx, invoice, &new, now).await?;
    Ok(())
}

/// A refused or rejected invoice: closed.
async fn close_on_status(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    lifecycle: &NewLifecycleStatus,
    what: &str,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let status = lifecycle.status;
    let closure = LifecycleClosureV1 {
        status: status.as_str().to_string(),
        code: status.code(),
        note: lifecycle.reason.clone(),
    };
    let detail = match status {
        LifecycleStatus::Refused => InvoiceClosedV1::Refused(closure),
        LifecycleStatus::Rejected => InvoiceClosedV1::Rejected(closure),
        other => {
            let why = format!("e-invoicing status {other} does not close an invoice");
            return Err(refused(what, &invoice.number, why));
        }
    };
    close(tx, invoice, &detail, now).await?;
    Ok(())
}

/// "Cashed": the creditor received the money. Recorded as a payment (its id derived from the
/// message's, so a replay is recognised), of the amount given or the whole balance.
async fn record_cashed(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    lifecycle: &NewLifecycleStatus,
    event_id: &str,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let what = "lifecycle status cashed";
    let currency = relance_domain::Money::parse_currency(invoice.currency.trim())
        .map_err(|e| refused(what, &invoice.number, e))?;
    let amount = lifecycle
        .amount
        .unwrap_or(relance_domain::Money::new(invoice.balance, currency));
    if amount.currency != currency {
        return Err(refused(
            what,
            &invoice.number,
            format!(
                "currency {} differs from the invoice's {}",
                amount.currency.code(),
                currency.code()
            ),
        ));
    }
    if amount.amount > invoice.balance {
        return Err(refused(
            what,
            &invoice.number,
            format!(
                "{} exceeds the balance {} (overpayment)",
                amount_text(amount.amount),
                amount_text(invoice.balance)
            ),
        ));
    }
    let payment = NewPayment {
        id: format!("cashed:{event_id}"),
        invoice_number: invoice.number.clone(),
        amount,
        received_on: today(config, invoice),
    };
    crate::payments::record_checked_payment(
        tx,
        config,
        invoice,
        &payment,
        Some(names::INVOICE_LIFECYCLE_STATUS),
        now,
    )
    .await?;
    Ok(())
}
