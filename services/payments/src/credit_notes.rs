//! Credit notes (`credit_note.issued`, or a dispute resolved by one) and write-offs
//! (`invoice.written_off`): a credit note lowers the balance and, when nothing is left,
//! closes the invoice (or settles it, if it was partly paid); a write-off closes it.

use crate::amount_text;
use crate::inbound::{invoice_message, refused, require_open, InvoiceMessage};
use crate::sequence_effects::close;
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::{
    names, CreditNoteIssuedV1, CreditNoteRecordedV1, InvoiceClosedV1, InvoiceWrittenOffV1,
};
use relance_domain::collections::{NewCreditNote, NewWriteOff};
use relance_domain::Rejection;
use relance_messaging::HandlerError;
use relance_sequence::actions::check;
use relance_sequence::outgoing;
use relance_storage::invoices::{self, InvoiceRecord};
use relance_storage::{adjustments, journal, PgConnection};
use serde_json::json;

/// What a credit note is called in refusals.
const WHAT_CREDIT_NOTE: &str = "credit note";

/// What a credit note left of the debt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Balance {
    /// Something is still owed: the sequence goes on.
    Remains,
    /// Nothing is owed any more: the invoice is closed, or settled if it was partly paid.
    Ended,
}

/// Records a credit note on an open invoice held `FOR UPDATE`. Full (nothing paid and
/// nothing left): closes the invoice. Partial: lowers the balance; if payments made up the
/// rest, the invoice is settled with its thank-you.
pub(crate) async fn apply_credit_note(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    note: &NewCreditNote,
    now: DateTime<Utc>,
) -> Result<Balance, HandlerError> {
    if let Some(balance) = already_recorded(tx, invoice, note, now).await? {
        return Ok(balance);
    }
    check_against_invoice(invoice, note)?;
    adjustments::record_credit_note(tx, invoice.id, note, now).await?;
    let currency = invoice.currency.trim();
    let balance = invoice.balance - note.amount.amount;
    outgoing::announce_detail(
        tx,
        now,
        &invoice.number,
        None,
        &CreditNoteRecordedV1 {
            credit_note_id: note.id.clone(),
            amount: amount_text(note.amount.amount),
            currency: currency.to_string(),
            balance: amount_text(balance),
            issued_on: note.issued_on,
            reason: note.reason.clone(),
        },
    )
    .await?;
    if !balance.is_zero() {
        return Ok(Balance::Remains);
    }
    if adjustments::has_payments(tx, invoice.id).await? {
        invoices::apply_payment(tx, invoice.id, balance, now).await?;
        crate::payments::settle(tx, config, invoice, now).await?;
    } else {
        let detail = InvoiceClosedV1::CreditNote {
            credit_note_id: note.id.clone(),
            amount: amount_text(note.amount.amount),
            currency: currency.to_string(),
        };
        close(tx, invoice, &detail, now).await?;
    }
    Ok(Balance::Ended)
}

/// A credit note id already recorded: for this invoice, a repeat (journaled as
/// `credit_note.duplicate`, and what is left of the debt returned); for another, refused.
/// `None` for a credit note not seen before.
async fn already_recorded(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    note: &NewCreditNote,
    now: DateTime<Utc>,
) -> Result<Option<Balance>, HandlerError> {
    let Some(owner) = adjustments::credit_note_invoice(tx, &note.id).await? else {
        return Ok(None);
    };
    if owner != invoice.id {
        return Err(refused(
            WHAT_CREDIT_NOTE,
            &invoice.number,
            format!("credit note {} is already recorded for another invoice", note.id),
        ));
    }
    journal::append(
        tx,
        now,
        &invoice.number,
        None,
        "credit_note.duplicate",
        json!({ "credit_note_id": note.id }),
    )
    .await?;
    Ok(Some(if invoice.balance.is_zero() {
        Balance::Ended
    } else {
        Balance::Remains
    }))
}

/// A credit note must be in the invoice's currency and no more than its balance (it cannot
/// create a refund here).
fn check_against_invoice(invoice: &InvoiceRecord, note: &NewCreditNote) -> Result<(), HandlerError> {
    let currency = invoice.currency.trim();
    if note.amount.currency.code() != currency {
        return Err(refused(
            WHAT_CREDIT_NOTE,
            &invoice.number,
            format!(
                "currency {} differs from the invoice's {currency}",
                note.amount.currency.code()
            ),
        ));
    }
    if note.amount.amount > invoice.balance {
        return Err(refused(
            WHAT_CREDIT_NOTE,
            &invoice.number,
            format!(
                "{} exceeds the balance {} (a credit note cannot create a refund here)",
                amount_text(note.amount.amount),
                amount_text(invoice.balance)
            ),
        ));
    }
    Ok(())
}

impl InvoiceMessage for CreditNoteIssuedV1 {
    invoice_message!(
        CreditNoteIssuedV1,
        credit_note,
        NewCreditNote,
        names::CREDIT_NOTE_ISSUED,
        "credit note",
        check::credit_note
    );

    async fn apply(
        &self,
        note: NewCreditNote,
        tx: &mut PgConnection,
        config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        require_open(Self::WHAT, invoice)?;
        apply_credit_note(tx, config, invoice, &note, now).await?;
        Ok(())
    }
}

impl InvoiceMessage for InvoiceWrittenOffV1 {
    invoice_message!(
        InvoiceWrittenOffV1,
        write_off,
        NewWriteOff,
        names::INVOICE_WRITTEN_OFF,
        "write-off",
        check::write_off
    );

    async fn apply(
        &self,
        write_off: NewWriteOff,
        tx: &mut PgConnection,
        _config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        require_open(Self::WHAT, invoice)?;
        let detail = InvoiceClosedV1::WrittenOff {
            note: write_off.reason.to_string(),
            balance: amount_text(invoice.balance),
            currency: invoice.currency.trim().to_string(),
        };
        close(tx, invoice, &detail, now).await?;
        Ok(())
    }
}
