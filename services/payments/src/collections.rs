//! What pauses or ends a sequence besides a payment: promises to pay, disputes, credit notes,
//! write-offs and e-invoicing lifecycle statuses. Each message is applied once (inbox by
//! `event_id`), under the invoice row lock like a payment, and its effect is journaled and
//! announced through the outbox in the same transaction. A refused message changes nothing:
//! the transaction is dropped and the message dead-lettered with the reason.

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use relance_config::Config;
use relance_contracts::names;
use relance_contracts::{
    CallOutcomeV1, CreditNoteIssuedV1, CreditNoteRecordedV1, DisputeOpenedV1, DisputeResolvedV1,
    InvoiceClosedV1, InvoiceLifecycleStatusV1, InvoicePausedV1, InvoiceWrittenOffV1, LifecycleClosureV1,
    PromiseRecordedV1, ReminderCancelledV1, ReminderPostponedV1, ResolutionCreditNoteV1,
};
use relance_domain::collections::validate::CreditNoteFields;
use relance_domain::collections::InvoiceState;
use relance_domain::collections::{
    promise_pause_end, validate_credit_note, validate_dispute, validate_lifecycle_status, validate_promise,
    validate_resolution, validate_write_off, LifecycleEffect, LifecycleStatus, NewCreditNote, NewDispute,
    NewLifecycleStatus, NewPromise, NewResolution, NewWriteOff, Outcome, PauseKind,
};
use relance_domain::{NewPayment, Rejection};
use relance_messaging::{HandlerError, Incoming};
use relance_sequence::{outgoing, resume};
use relance_storage::invoices::{self, InvoiceRecord};
use relance_storage::pauses::{self, NewPause};
use relance_storage::steps;
use relance_storage::{adjustments, journal, mark_processed, PgConnection, Transaction};
use serde_json::json;
use sqlx::{PgPool, Postgres};

type Tx = Transaction<'static, Postgres>;

pub(crate) fn refused(what: &str, number: &str, reason: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(format!("{what} for invoice {number} refused: {reason}"))
}

pub(crate) fn rejected<'a>(what: &'a str, number: &'a str) -> impl FnOnce(Rejection) -> HandlerError + 'a {
    move |r| refused(what, number, r)
}

use crate::amount_text;

pub(crate) fn timezone(invoice: &InvoiceRecord) -> Tz {
    invoice.timezone
}

pub(crate) fn today(config: &Config, invoice: &InvoiceRecord) -> chrono::NaiveDate {
    config.clock.now().with_timezone(&timezone(invoice)).date_naive()
}

// Promise, dispute, resolution, credit note, write-off and lifecycle messages parsed and
// validated, without I/O: the CLI calls these too, to refuse a bad command before publishing.

pub fn promise(m: &PromiseRecordedV1) -> Result<NewPromise, Rejection> {
    let p = &m.promise;
    validate_promise(&p.invoice_number, p.promised_on, p.note.as_deref())
}

pub fn dispute(m: &DisputeOpenedV1) -> Result<NewDispute, Rejection> {
    validate_dispute(&m.dispute.invoice_number, &m.dispute.reason)
}

fn credit_fields(c: &ResolutionCreditNoteV1) -> CreditNoteFields<'_> {
    CreditNoteFields {
        id: &c.id,
        amount: &c.amount,
        currency: &c.currency,
        issued_on: c.issued_on,
        reason: None,
    }
}

pub fn resolution(m: &DisputeResolvedV1) -> Result<NewResolution, Rejection> {
    let r = &m.resolution;
    validate_resolution(
        &r.invoice_number,
        &r.outcome,
        r.note.as_deref(),
        r.credit_note.as_ref().map(credit_fields),
        m.occurred_at.date_naive(),
    )
}

pub fn credit_note(m: &CreditNoteIssuedV1) -> Result<NewCreditNote, Rejection> {
    let c = &m.credit_note;
    validate_credit_note(
        "credit_note",
        &c.invoice_number,
        CreditNoteFields {
            id: &c.id,
            amount: &c.amount,
            currency: &c.currency,
            issued_on: c.issued_on,
            reason: c.reason.as_deref(),
        },
        m.occurred_at.date_naive(),
    )
}

pub fn write_off(m: &InvoiceWrittenOffV1) -> Result<NewWriteOff, Rejection> {
    validate_write_off(&m.write_off.invoice_number, &m.write_off.reason)
}

pub fn lifecycle(m: &InvoiceLifecycleStatusV1) -> Result<NewLifecycleStatus, Rejection> {
    let l = &m.lifecycle;
    validate_lifecycle_status(
        &l.invoice_number,
        &l.status,
        l.reason.as_deref(),
        l.amount.as_deref(),
        l.currency.as_deref(),
    )
}

/// Handles one of the routing keys of this module.
pub async fn handle(db: &PgPool, config: &Config, message: Incoming) -> Result<(), HandlerError> {
    match message.routing_key.as_str() {
        names::PROMISE_RECORDED => apply_once::<PromiseRecordedV1>(db, config, &message).await,
        names::DISPUTE_OPENED => apply_once::<DisputeOpenedV1>(db, config, &message).await,
        names::DISPUTE_RESOLVED => apply_once::<DisputeResolvedV1>(db, config, &message).await,
        names::CREDIT_NOTE_ISSUED => apply_once::<CreditNoteIssuedV1>(db, config, &message).await,
        names::INVOICE_WRITTEN_OFF => apply_once::<InvoiceWrittenOffV1>(db, config, &message).await,
        names::INVOICE_LIFECYCLE_STATUS => apply_once::<InvoiceLifecycleStatusV1>(db, config, &message).await,
        names::CALL_OUTCOME => apply_once::<CallOutcomeV1>(db, config, &message).await,
        other => Err(HandlerError::Permanent(format!(
            "routing key {other:?} is not handled on {}",
            message.queue
        ))),
    }
}

/// An inbound message that pauses or ends a sequence, applied by [`apply_once`].
pub(crate) trait InvoiceMessage: serde::de::DeserializeOwned {
    /// The message validated, without I/O.
    type Valid;
    const ROUTING_KEY: &'static str;
    /// What it is, in refusals ("promise for invoice F-1 refused: ...").
    const WHAT: &'static str;
    fn event_id(&self) -> &str;
    /// The invoice number as sent, to name it in a refusal of an invalid message.
    fn invoice_number_sent(&self) -> &str;
    fn invoice_number(valid: &Self::Valid) -> &str;
    fn validate(&self) -> Result<Self::Valid, Rejection>;
    /// The effect, in the transaction that holds the invoice `FOR UPDATE`.
    async fn apply(
        &self,
        valid: Self::Valid,
        tx: &mut PgConnection,
        config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError>;
}

/// What every handler of this module does: parse and validate the message (an invalid one is
/// refused before anything is read), then apply it once, under the invoice lock, and commit.
#[tracing::instrument(skip_all, fields(message_id = ?message.message_id, routing_key = M::ROUTING_KEY), err)]
pub(crate) async fn apply_once<M: InvoiceMessage>(
    db: &PgPool,
    config: &Config,
    message: &Incoming,
) -> Result<(), HandlerError> {
    let event: M = message.json()?;
    let valid = event
        .validate()
        .map_err(rejected(M::WHAT, event.invoice_number_sent()))?;
    let number = M::invoice_number(&valid).to_string();
    let Some((mut tx, invoice, now)) = begin(db, config, M::ROUTING_KEY, event.event_id(), &number).await?
    else {
        return Ok(());
    };
    event.apply(valid, &mut tx, config, &invoice, now).await?;
    tx.commit()
        .await
        .with_context(|| format!("committing the {}", M::WHAT))?;
    Ok(())
}

/// The fields of [`InvoiceMessage`] every message of this module has alike.
macro_rules! invoice_message {
    ($message:ty, $body:ident, $valid:ty, $key:expr, $what:expr, $validate:path) => {
        type Valid = $valid;
        const ROUTING_KEY: &'static str = $key;
        const WHAT: &'static str = $what;
        fn event_id(&self) -> &str {
            &self.event_id
        }
        fn invoice_number_sent(&self) -> &str {
            &self.$body.invoice_number
        }
        fn invoice_number(valid: &$valid) -> &str {
            &valid.invoice_number
        }
        fn validate(&self) -> Result<$valid, Rejection> {
            $validate(self)
        }
    };
}
pub(crate) use invoice_message;

/// Starts the transaction of an inbound message: records its `event_id` and locks its
/// invoice. `None` when the message was already applied (journaled, committed, nothing else
/// to do). An unknown invoice is retried: the message may have overtaken its invoice.
pub(crate) async fn begin(
    db: &PgPool,
    config: &Config,
    routing_key: &str,
    event_id: &str,
    number: &str,
) -> Result<Option<(Tx, InvoiceRecord, DateTime<Utc>)>, HandlerError> {
    let now = config.clock.now();
    let mut tx = db.begin().await.context("starting the transaction")?;
    let inbox = format!("payments.{routing_key}");
    let first_delivery = mark_processed(&mut tx, &inbox, event_id, now).await?;
    let Some(invoice) = invoices::lock_for_payment(&mut tx, number).await? else {
        return Err(HandlerError::Transient(anyhow::anyhow!(
            "unknown invoice {number:?}"
        )));
    };
    if !first_delivery {
        tracing::info!(routing_key, "message already applied; ignored");
        journal::append(
            &mut tx,
            now,
            number,
            None,
            "message.duplicate",
            json!({ "routing_key": routing_key, "event_id": event_id }),
        )
        .await?;
        tx.commit().await.context("committing the duplicate note")?;
        return Ok(None);
    }
    Ok(Some((tx, invoice, now)))
}

/// Refuses a message about an invoice that is no longer being chased.
pub(crate) fn require_open(what: &str, invoice: &InvoiceRecord) -> Result<(), HandlerError> {
    if invoice.status == InvoiceState::Open {
        Ok(())
    } else {
        Err(refused(
            what,
            &invoice.number,
            format!("the invoice is {}: its sequence is over", invoice.status),
        ))
    }
}

/// Opens a pause and stops the reminders on their way (queued, rendered): they go back to
/// pending and are re-dated when the sequence resumes.
async fn pause(
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
        },
    )
    .await
}

/// Closes the invoice: cancels every reminder not sent yet and ends its pauses. No thank-you.
async fn close(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    detail: &InvoiceClosedV1,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let reason = detail.reason();
    adjustments::close(tx, invoice.id, reason, now).await?;
    let why = format!("invoice closed ({reason})");
    for cancelled in steps::cancel_open(tx, invoice.id, &why, now).await? {
        let cancelled_detail = ReminderCancelledV1 {
            reason: why.clone(),
            was: cancelled.was.to_string(),
            stage: None,
        };
        outgoing::announce_detail(tx, now, &invoice.number, Some(&cancelled.step), &cancelled_detail).await?;
    }
    end_all_pauses(tx, invoice, &why, now).await?;
    outgoing::announce_detail(tx, now, &invoice.number, None, detail).await
}

/// Ends every pause of an invoice whose sequence is over (settled, closed).
pub(crate) async fn end_all_pauses(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let all = [
        PauseKind::Promise.as_str(),
        PauseKind::Dispute.as_str(),
        PauseKind::Suspension.as_str(),
    ];
    let ended = pauses::end_kinds(tx, invoice.id, &all, reason, now).await?;
    resume::journal_ended(tx, &invoice.number, &ended, reason, now).await
}

/// Ends the pauses of these kinds and resumes the sequence if nothing else holds it.
async fn end_pauses(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    kinds: &[PauseKind],
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let ended = pauses::end_kinds(tx, invoice.id, &kinds, reason, now).await?;
    resume::after_pauses_ended(tx, config, invoice, &ended, reason, now, now).await
}

impl InvoiceMessage for PromiseRecordedV1 {
    invoice_message!(
        PromiseRecordedV1,
        promise,
        NewPromise,
        names::PROMISE_RECORDED,
        "promise",
        promise
    );

    async fn apply(
        &self,
        promise: NewPromise,
        tx: &mut PgConnection,
        config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        require_open(Self::WHAT, invoice)?;
        let until = promise_pause_end(
            promise.promised_on,
            today(config, invoice),
            config.settings.promise_grace_days,
            timezone(invoice),
        )
        .map_err(rejected(Self::WHAT, &invoice.number))?;
        let reason = promise
            .note
            .clone()
            .unwrap_or_else(|| format!("promise to pay by {}", promise.promised_on));
        let source = (Self::ROUTING_KEY, self.event_id.as_str());
        promise_pause(tx, invoice, promise.promised_on, until, &reason, source, now).await?;
        Ok(())
    }
}

/// Pauses the invoice on a promise to pay by `promised_on` until `until`, replacing its
/// current promise. `source`: the routing key and event id of the message that brought it
/// (`promise.recorded`, or the outcome of a call).
pub(crate) async fn promise_pause(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    promised_on: chrono::NaiveDate,
    until: DateTime<Utc>,
    reason: &str,
    (source, event_id): (&str, &str),
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let replaced = format!("replaced by the promise to pay by {promised_on}");
    let previous = pauses::end_kinds(tx, invoice.id, &[PauseKind::Promise.as_str()], &replaced, now).await?;
    resume::journal_ended(tx, &invoice.number, &previous, &replaced, now).await?;
    let new = NewPause {
        kind: PauseKind::Promise.as_str(),
        reason,
        promised_on: Some(promised_on),
        until: Some(until),
        source,
        event_id,
    };
    pause(tx, invoice, &new, now).await
}

impl InvoiceMessage for DisputeOpenedV1 {
    invoice_message!(
        DisputeOpenedV1,
        dispute,
        NewDispute,
        names::DISPUTE_OPENED,
        "dispute",
        dispute
    );

    async fn apply(
        &self,
        dispute: NewDispute,
        tx: &mut PgConnection,
        _config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        require_open(Self::WHAT, invoice)?;
        let source = (Self::ROUTING_KEY, self.event_id.as_str());
        dispute_pause(tx, invoice, Self::WHAT, &dispute.reason, source, now).await
    }
}

/// Pauses the invoice on a dispute until it is resolved; refused (as `what`) when a
/// dispute is already open. `source`: the routing key and event id of the message.
pub(crate) async fn dispute_pause(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    what: &str,
    reason: &str,
    (source, event_id): (&str, &str),
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    if let Some(open) = pauses::active(tx, invoice.id)
        .await?
        .into_iter()
        .find(|p| p.kind == PauseKind::Dispute)
    {
        return Err(refused(
            what,
            &invoice.number,
            format!(
                "a dispute is already open since {} ({})",
                open.started_at, open.reason
            ),
        ));
    }
    let new = NewPause {
        kind: PauseKind::Dispute.as_str(),
        reason,
        promised_on: None,
        until: None,
        source,
        event_id,
    };
    pause(tx, invoice, &new, now).await?;
    Ok(())
}

impl InvoiceMessage for DisputeResolvedV1 {
    invoice_message!(
        DisputeResolvedV1,
        resolution,
        NewResolution,
        names::DISPUTE_RESOLVED,
        "dispute resolution",
        resolution
    );

    async fn apply(
        &self,
        resolution: NewResolution,
        tx: &mut PgConnection,
        config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        require_open(Self::WHAT, invoice)?;
        let open = pauses::active(tx, invoice.id).await?;
        if !open.iter().any(|p| p.kind == PauseKind::Dispute) {
            return Err(refused(Self::WHAT, &invoice.number, "no dispute is open on it"));
        }
        let reason = match &resolution.outcome {
            Outcome::Upheld => "dispute resolved: the invoice is upheld".to_string(),
            Outcome::Credited(note) => format!("dispute resolved by credit note {}", note.id),
        };
        let reason = match &resolution.note {
            Some(note) => format!("{reason} ({note})"),
            None => reason,
        };
        if let Outcome::Credited(note) = &resolution.outcome {
            if apply_credit_note(tx, config, invoice, note, now).await? == Balance::Ended {
                return Ok(());
            }
        }
        // The balance may have changed: resume from the invoice as it is now.
        let invoice = invoices::find_by_id(tx, invoice.id)
            .await?
            .context("re-reading the invoice")?;
        end_pauses(tx, config, &invoice, &[PauseKind::Dispute], &reason, now).await?;
        Ok(())
    }
}

/// What a credit note left of the debt.
#[derive(Debug, PartialEq, Eq)]
enum Balance {
    /// Something is still owed: the sequence goes on.
    Remains,
    /// Nothing is owed any more: the invoice is closed, or settled if it was partly paid.
    Ended,
}

/// Records a credit note on an open invoice held `FOR UPDATE`. Full (nothing paid and
/// nothing left): closes the invoice. Partial: lowers the balance; if payments made up the
/// rest, the invoice is settled with its thank-you.
async fn apply_credit_note(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    note: &NewCreditNote,
    now: DateTime<Utc>,
) -> Result<Balance, HandlerError> {
    let what = "credit note";
    if let Some(owner) = adjustments::credit_note_invoice(tx, &note.id).await? {
        if owner != invoice.id {
            return Err(refused(
                what,
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
        return Ok(if invoice.balance.is_zero() {
            Balance::Ended
        } else {
            Balance::Remains
        });
    }
    let currency = invoice.currency.trim();
    if note.amount.currency.code() != currency {
        return Err(refused(
            what,
            &invoice.number,
            format!(
                "currency {} differs from the invoice's {currency}",
                note.amount.currency.code()
            ),
        ));
    }
    if note.amount.amount > invoice.balance {
        return Err(refused(
            what,
            &invoice.number,
            format!(
                "{} exceeds the balance {} (a credit note cannot create a refund here)",
                amount_text(note.amount.amount),
                amount_text(invoice.balance)
            ),
        ));
    }
    adjustments::record_credit_note(tx, invoice.id, note, now).await?;
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
        crate::settle(tx, config, invoice, now).await?;
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

impl InvoiceMessage for CreditNoteIssuedV1 {
    invoice_message!(
        CreditNoteIssuedV1,
        credit_note,
        NewCreditNote,
        names::CREDIT_NOTE_ISSUED,
        "credit note",
        credit_note
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
        write_off
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

impl InvoiceMessage for InvoiceLifecycleStatusV1 {
    invoice_message!(
        InvoiceLifecycleStatusV1,
        lifecycle,
        NewLifecycleStatus,
        names::INVOICE_LIFECYCLE_STATUS,
        "lifecycle status",
        lifecycle
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
    .await?;
    let reason = match &lifecycle.reason {
        Some(r) => format!("e-invoicing status {status} ({r})"),
        None => format!("e-invoicing status {status} ({})", status.label_fr()),
    };
    let open = invoice.status == InvoiceState::Open;
    match status.effect() {
        LifecycleEffect::JournalOnly => {}
        LifecycleEffect::EndPauses(kinds) => {
            if open {
                end_pauses(tx, config, invoice, kinds, &reason, now).await?;
            }
        }
        LifecycleEffect::Pause(kind) => {
            require_open(&what, invoice)?;
            let active = pauses::active(tx, invoice.id).await?;
            if !active.iter().any(|p| p.kind == kind) {
                let new = NewPause {
                    kind: kind.as_str(),
                    reason: &reason,
                    promised_on: None,
                    until: None,
                    source: names::INVOICE_LIFECYCLE_STATUS,
                    event_id,
                };
                pause(tx, invoice, &new, now).await?;
            }
        }
        LifecycleEffect::PromiseToday => {
            let active = pauses::active(tx, invoice.id).await?;
            if open && !active.iter().any(|p| p.kind == PauseKind::Promise) {
                let today = today(config, invoice);
                let until = promise_pause_end(
                    today,
                    today,
                    config.settings.promise_grace_days,
                    timezone(invoice),
                )
                .map_err(|r| refused(&what, &invoice.number, r))?;
                let new = NewPause {
                    kind: PauseKind::Promise.as_str(),
                    reason: &reason,
                    promised_on: Some(today),
                    until: Some(until),
                    source: names::INVOICE_LIFECYCLE_STATUS,
                    event_id,
                };
                pause(tx, invoice, &new, now).await?;
            }
        }
        LifecycleEffect::Close => match invoice.status {
            InvoiceState::Open => {
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
                        return Err(refused(&what, &invoice.number, why));
                    }
                };
                close(tx, invoice, &detail, now).await?;
            }
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
    crate::record_checked_payment(
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
