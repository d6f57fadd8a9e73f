//! The machinery every inbound message about an invoice goes through, besides
//! `payment.received` (see `payments`): dispatch by routing key, parse and validate (a
//! refused message changes nothing and is dead-lettered with the reason), apply once (inbox
//! by `event_id`) under the invoice row lock, and commit what its handler journaled and
//! announced through the outbox. Each kind's handler is in its own module.

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use relance_config::Config;
use relance_contracts::names;
use relance_contracts::{
    ApprovalGrantedV1, ApprovalRejectedV1, CallOutcomeV1, CreditNoteIssuedV1, DisputeOpenedV1,
    DisputeResolvedV1, InvoiceLifecycleStatusV1, InvoiceWrittenOffV1, PauseRequestedV1, PromiseRecordedV1,
    ReceiptAcknowledgedV1, ReplyHandledV1, ResumeRequestedV1,
};
use relance_domain::collections::InvoiceState;
use relance_domain::Rejection;
use relance_messaging::{HandlerError, Incoming};
use relance_storage::invoices::{self, InvoiceRecord};
use relance_storage::{journal, mark_processed, PgConnection, Transaction};
use serde_json::json;
use sqlx::{PgPool, Postgres};

type Tx = Transaction<'static, Postgres>;

pub(crate) fn refused(what: &str, number: &str, reason: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(format!("{what} for invoice {number} refused: {reason}"))
}

pub(crate) fn rejected<'a>(what: &'a str, number: &'a str) -> impl FnOnce(Rejection) -> HandlerError + 'a {
    move |r| refused(what, number, r)
}

pub(crate) fn timezone(invoice: &InvoiceRecord) -> Tz {
    invoice.timezone
}

pub(crate) fn today(config: &Config, invoice: &InvoiceRecord) -> chrono::NaiveDate {
    config.clock.now().with_timezone(&timezone(invoice)).date_naive()
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
        names::PAUSE_REQUESTED => apply_once::<PauseRequestedV1>(db, config, &message).await,
        names::RESUME_REQUESTED => apply_once::<ResumeRequestedV1>(db, config, &message).await,
        names::PAYMENT_PLAN_AGREED => crate::plans::agree(db, config, &message).await,
        names::APPROVAL_GRANTED => apply_once::<ApprovalGrantedV1>(db, config, &message).await,
        names::APPROVAL_REJECTED => apply_once::<ApprovalRejectedV1>(db, config, &message).await,
        names::REPLY_HANDLED => apply_once::<ReplyHandledV1>(db, config, &message).await,
        names::RECEIPT_ACKNOWLEDGED => apply_once::<ReceiptAcknowledgedV1>(db, config, &message).await,
        names::PAYMENT_PLAN_REQUESTED => {
            apply_once::<relance_contracts::PaymentPlanRequestedV1>(db, config, &message).await
        }
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
