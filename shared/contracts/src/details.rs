//! The typed `detail` of every outbound event (`EventV1.detail` on `<ns>.events`), one
//! struct per routing key, each tied to its routing key by [`EventDetail`]. Field names,
//! optionality and JSON shapes are those the services put on the wire: amounts as decimal
//! strings (`"1500"`, as `Decimal::normalize` writes them), dates as `YYYY-MM-DD`,
//! timestamps as RFC 3339 UTC.
//!
//! A field that is sometimes left out and sometimes set is `Option` with
//! `skip_serializing_if`; a field always written, possibly as `null`, is a plain `Option`.
//! `invoice.handed_off`'s detail is [`crate::HandOffDetailV1`] (`handoff.rs`).

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::events::EventDetail;
use crate::handoff::HandOffDetailV1;
use crate::names;
use crate::schema::ContractVisitor;

/// `invoice.registered`: an `invoice.issued` was accepted and its reminder plan created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceRegisteredV1 {
    /// The `event_id` of the `invoice.issued` that registered it.
    pub event_id: String,
    /// The customer's risk segment the plan was made for: `low`, `medium`, `high`.
    pub risk: String,
    /// The holiday calendar the steps were placed on: `FR`, `FR-ALSACE-MOSELLE`, `NONE`.
    pub calendar: String,
    /// The planned steps, in order (empty when the invoice is not chased).
    pub plan: Vec<PlannedStepV1>,
    /// Steps whose conditions do not hold for this invoice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<Vec<ExcludedStepV1>>,
    /// Why the invoice is not chased at all (below the policy's minimum amount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_chased: Option<String>,
    /// Fields dropped because relance could not use them (an invalid phone number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<FieldWarningV1>>,
    /// The invoice's creditor, when it names one (absent: the default creditor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creditor: Option<String>,
    /// The named policy the plan follows, when the invoice's creditor names one (absent: the
    /// deployment's default policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// One step of an invoice's reminder plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlannedStepV1 {
    pub step: String,
    pub channel: String,
    pub due_at: DateTime<Utc>,
}

/// A policy step left out of an invoice's plan, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExcludedStepV1 {
    pub step: String,
    pub reason: String,
}

/// A field relance dropped at intake, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FieldWarningV1 {
    /// The field's path in the message, e.g. `invoice.customer.phone`.
    pub field: String,
    pub reason: String,
}

/// `invoice.rejected`: an `invoice.issued` was refused by validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceRejectedV1 {
    /// The field at fault, e.g. `invoice.due_on` (`currency` for an unknown currency).
    pub field: String,
    pub reason: String,
    /// The refused message's `event_id`.
    pub event_id: String,
}

/// `invoice.duplicate`: an `invoice.issued` for a number already registered, under a new
/// `event_id`; nothing changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceDuplicateV1 {
    /// The repeat's `event_id`.
    pub event_id: String,
    /// Whether the repeat differs from the message that registered the invoice.
    pub conflict: bool,
    /// Empty without a conflict.
    pub differences: Vec<RegisteredDifferenceV1>,
}

/// A field in which a repeated `invoice.issued` differs from the registered invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegisteredDifferenceV1 {
    pub field: String,
    /// What relance kept; `null` when absent.
    pub registered: Option<String>,
    /// What the repeat says; `null` when absent.
    pub received: Option<String>,
}

/// `reminder.sent` (and, with the same shape, `thanks.sent`): the delivery proof. Which
/// variant is told by its fields (the JSON carries no tag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ReminderSentV1 {
    /// Sent by email (`smtp_response`).
    Email(EmailSentV1),
    /// Sent by SMS (`gateway_response`).
    Sms(SmsSentV1),
    /// Sent as a letter or a registered letter (`postal_response`).
    Letter(LetterSentV1),
    /// Went out inside another invoice's message (`grouped_into`).
    Grouped(GroupedSentV1),
    /// Settled by the sweep after its sender stopped once the provider had answered
    /// (`recovered`).
    Recovered(RecoveredSentV1),
}

/// A payment or closure committed while the message was going out, after the sender's last
/// check: the message went out anyway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StopRequestedV1 {
    /// When the payment (or closure) was committed, wall clock.
    pub at: DateTime<Utc>,
    /// E.g. `invoice settled`.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmailSentV1 {
    /// The email's `Message-ID` header.
    pub message_id: String,
    /// The mail server's answer to the end of DATA.
    pub smtp_response: String,
    pub recipients: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    /// How long the SMTP exchange took, in milliseconds.
    pub smtp_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_requested: Option<StopRequestedV1>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SmsSentV1 {
    /// relance's idempotency key (the gateway's `reference`, the `Idempotency-Key` header).
    pub message_id: String,
    /// The gateway's id for the message, if it gave one.
    pub gateway_message_id: Option<String>,
    pub gateway_response: String,
    /// The number, in E.164.
    pub recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_requested: Option<StopRequestedV1>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LetterSentV1 {
    /// The idempotency key of the letter.
    pub message_id: String,
    /// SHA-256 of the letter's PDF, kept by relance.
    pub sha256: String,
    pub registered: bool,
    /// The postal service's tracking number, or the outbox manifest the letter went to.
    pub tracking: String,
    pub postal_response: String,
    /// The addressee's name and address lines.
    pub recipients: Vec<String>,
    /// The file names of the documents sent with the letter (the invoice PDF).
    pub enclosures: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_requested: Option<StopRequestedV1>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupedSentV1 {
    /// The message it went out in.
    pub grouped_into: GroupedIntoV1,
    /// That message's `Message-ID`.
    pub message_id: Option<String>,
}

/// The message (of another invoice of the same customer) a grouped step went out in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupedIntoV1 {
    pub invoice_number: String,
    pub step: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecoveredSentV1 {
    /// Why the sweep, not the sender, recorded it.
    pub recovered: String,
    /// The delivery stage recorded (`answered`).
    pub stage: String,
    pub message_id: Option<String>,
    /// The provider's answer the sender had recorded.
    pub response: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_requested: Option<StopRequestedV1>,
}

/// `thanks.sent`: the thank-you went out; the same facts as `reminder.sent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ThanksSentV1(pub ReminderSentV1);

/// `reminder.skipped`: a planned reminder will not be sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReminderSkippedV1 {
    pub reason: String,
}

/// `reminder.failed`: a reminder could not be delivered (or rendered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReminderFailedV1 {
    pub reason: String,
    /// The delivery attempts made, when a sender gave up (absent when rendering refused it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

/// `reminder.cancelled`: a reminder not yet sent was cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReminderCancelledV1 {
    pub reason: String,
    /// The step's status until then: `pending`, `queued`, `rendered`, `deferred`, `sending` or
    /// `awaiting_outcome`.
    pub was: String,
    /// The delivery stage an interrupted delivery had reached (set by the sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// `reminder.postponed`: a reminder was moved to a later time, or held back by a pause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReminderPostponedV1 {
    pub reason: String,
    /// Until when; `null` for a pause without a known end (a dispute). Absent when a sender
    /// held the step back because its invoice was paused: the resumption dates it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub until: Option<Option<DateTime<Utc>>>,
    /// The holiday calendar of the send window it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
}

/// `reminder.fallback`: the step's channel cannot reach the customer; it goes out on another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReminderFallbackV1 {
    /// The step's own channel.
    pub from: String,
    /// The channel it goes out on (also the event's `channel`).
    pub to: String,
    /// The template used on that channel.
    pub template: String,
    /// Why the channels before it could not be used.
    pub reason: String,
}

/// `reminder.ambiguous`: a delivery may or may not have reached the customer. Which variant
/// is told by its fields (the JSON carries no tag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ReminderAmbiguousV1 {
    /// Listed in a grouped message that is itself ambiguous (`grouped_into`).
    Grouped(GroupedAmbiguousV1),
    /// Its sender stopped after the end of DATA (or the provider's request) was sent.
    Interrupted(InterruptedAmbiguousV1),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupedAmbiguousV1 {
    pub reason: String,
    pub grouped_into: GroupedIntoV1,
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InterruptedAmbiguousV1 {
    pub reason: String,
    /// The delivery stage recorded: `data_end_sent`.
    pub stage: String,
    pub message_id: Option<String>,
    /// `report` (the step ends `ambiguous`) or `resend` (delivered again, same Message-ID).
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_requested: Option<StopRequestedV1>,
}

/// `call.task_opened`: a call step opened a task for the accounts team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallTaskOpenedV1 {
    /// The number to call (E.164).
    pub phone: String,
    /// The call script's first line.
    pub title: String,
    pub expires_at: DateTime<Utc>,
}

/// `call.outcome_recorded`: the outcome of a call was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallOutcomeRecordedV1 {
    /// `reached`, `disputed` or `no_answer`.
    pub outcome: String,
    /// With `reached`: the date promised.
    pub promised_on: Option<NaiveDate>,
    /// With `disputed`: what the customer contests.
    pub reason: Option<String>,
    pub note: Option<String>,
    /// Whether the task had expired before its outcome came.
    pub late: bool,
    /// The `call.outcome` message's `event_id`.
    pub event_id: String,
}

/// `call.task_expired`: nobody recorded the call's outcome in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallTaskExpiredV1 {
    pub reason: String,
}

/// `payment.recorded`: a payment was applied to the invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentRecordedV1 {
    pub payment_id: String,
    /// Decimal string.
    pub amount: String,
    pub currency: String,
    /// What remains to pay, decimal string.
    pub balance: String,
    pub received_on: NaiveDate,
    /// The routing key of the message it came with, when not `payment.received`
    /// (`invoice.lifecycle_status` for a `cashed` status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `payment.conflict`: a recorded payment id came again with other facts; nothing applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentConflictV1 {
    pub payment_id: String,
    /// The conflicting message's `event_id`.
    pub event_id: String,
    /// The dead-letter reason.
    pub reason: String,
    pub differences: Vec<RecordedDifferenceV1>,
}

/// A field in which a conflicting payment differs from the one recorded under its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecordedDifferenceV1 {
    pub field: String,
    pub recorded: Option<String>,
    pub received: Option<String>,
}

/// `invoice.settled`: the invoice is paid in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceSettledV1 {
    /// The invoice net of its credit notes, decimal string.
    pub amount_paid: String,
    pub currency: String,
}

/// `invoice.paused`: a promise, a dispute, an e-invoicing status or the accounts team (by
/// hand) paused the sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoicePausedV1 {
    /// `promise`, `dispute`, `suspension`, `manual` (a pause by hand), `plan` (a payment
    /// plan holds the sequence) or `reply` (a customer's reply waits to be handled).
    pub kind: String,
    pub reason: String,
    /// Promises: the date promised.
    pub promised_on: Option<NaiveDate>,
    /// Promises: when the pause ends by itself.
    pub until: Option<DateTime<Utc>>,
    /// The `event_id` of the message that opened the pause.
    pub event_id: String,
    /// Where the action that opened it was taken (`customer_page`, `console`, `cli`), when
    /// its message says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `invoice.resumed`: the last pause ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceResumedV1 {
    pub reason: String,
    /// The kinds of the pauses that ended.
    pub pauses: Vec<String>,
    /// The next step and when it goes out; `null` when no step is left.
    pub next_step: Option<String>,
    pub next_at: Option<DateTime<Utc>>,
}

/// `invoice.closed`: the invoice was closed without payment, tagged by `reason`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "reason")]
pub enum InvoiceClosedV1 {
    /// A credit note for the whole balance of an invoice nothing was paid on.
    #[serde(rename = "credit_note")]
    CreditNote {
        credit_note_id: String,
        /// Decimal string.
        amount: String,
        currency: String,
    },
    /// The creditor wrote the debt off.
    #[serde(rename = "written_off")]
    WrittenOff {
        /// The write-off's reason.
        note: String,
        /// The balance written off, decimal string.
        balance: String,
        currency: String,
    },
    /// The e-invoicing platform's `refused` status (210).
    #[serde(rename = "refused")]
    Refused(LifecycleClosureV1),
    /// The e-invoicing platform's `rejected` status (213).
    #[serde(rename = "rejected")]
    Rejected(LifecycleClosureV1),
}

impl InvoiceClosedV1 {
    /// The closure's `reason`, its tag on the wire: `credit_note`, `written_off`, `refused`
    /// or `rejected`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CreditNote { .. } => "credit_note",
            Self::WrittenOff { .. } => "written_off",
            Self::Refused(_) => "refused",
            Self::Rejected(_) => "rejected",
        }
    }
}

/// The facts of a closure by an e-invoicing lifecycle status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LifecycleClosureV1 {
    /// The status name: `refused` or `rejected`.
    pub status: String,
    /// Its code: 210 or 213.
    pub code: u16,
    /// The platform's reason, if it gave one.
    pub note: Option<String>,
}

/// `credit_note.recorded`: a credit note was applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreditNoteRecordedV1 {
    pub credit_note_id: String,
    /// Decimal string.
    pub amount: String,
    pub currency: String,
    /// What remains to pay, decimal string.
    pub balance: String,
    pub issued_on: NaiveDate,
    pub reason: Option<String>,
}

/// Reads a field that is present (possibly `null`) as `Some`: with `#[serde(default)]`, an
/// absent field stays `None`, so `Option<Option<T>>` tells absent from `null`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

macro_rules! event_details {
    ($($detail:ty => $event_type:expr),* $(,)?) => {
        $(impl EventDetail for $detail {
            const EVENT_TYPE: &'static str = $event_type;
        })*

        /// Shows `visitor` every outbound event's detail type, in the order of
        /// `docs/messages.md`'s table.
        pub fn visit_event_details(visitor: &mut impl ContractVisitor) {
            $(visitor.event::<$detail>();)*
        }
    };
}

event_details! {
    InvoiceRegisteredV1 => names::INVOICE_REGISTERED,
    InvoiceRejectedV1 => names::INVOICE_REJECTED,
    InvoiceDuplicateV1 => names::INVOICE_DUPLICATE,
    ReminderSentV1 => names::REMINDER_SENT,
    ReminderSkippedV1 => names::REMINDER_SKIPPED,
    ReminderFallbackV1 => names::REMINDER_FALLBACK,
    CallTaskOpenedV1 => names::CALL_TASK_OPENED,
    CallOutcomeRecordedV1 => names::CALL_OUTCOME_RECORDED,
    CallTaskExpiredV1 => names::CALL_TASK_EXPIRED,
    ReminderPostponedV1 => names::REMINDER_POSTPONED,
    ReminderCancelledV1 => names::REMINDER_CANCELLED,
    ReminderFailedV1 => names::REMINDER_FAILED,
    ReminderAmbiguousV1 => names::REMINDER_AMBIGUOUS,
    PaymentRecordedV1 => names::PAYMENT_RECORDED,
    PaymentConflictV1 => names::PAYMENT_CONFLICT,
    InvoiceSettledV1 => names::INVOICE_SETTLED,
    ThanksSentV1 => names::THANKS_SENT,
    InvoicePausedV1 => names::INVOICE_PAUSED,
    InvoiceResumedV1 => names::INVOICE_RESUMED,
    InvoiceClosedV1 => names::INVOICE_CLOSED,
    CreditNoteRecordedV1 => names::CREDIT_NOTE_RECORDED,
    HandOffDetailV1 => names::INVOICE_HANDED_OFF,
    crate::payment_plans::PaymentPlanAgreedDetailV1 => names::PAYMENT_PLAN_AGREED_EVENT,
    crate::payment_plans::PaymentPlanInstalmentPaidV1 => names::PAYMENT_PLAN_INSTALMENT_PAID,
    crate::payment_plans::PaymentPlanCompletedV1 => names::PAYMENT_PLAN_COMPLETED,
    crate::payment_plans::PaymentPlanBrokenV1 => names::PAYMENT_PLAN_BROKEN,
    crate::replies::InvoiceReceiptAcknowledgedV1 => names::INVOICE_RECEIPT_ACKNOWLEDGED,
    crate::approvals::ApprovalRequestedV1 => names::APPROVAL_REQUESTED_EVENT,
    crate::approvals::ApprovalGrantedEventV1 => names::APPROVAL_GRANTED_EVENT,
    crate::approvals::ApprovalRejectedEventV1 => names::APPROVAL_REJECTED_EVENT,
    crate::approvals::ApprovalExpiredV1 => names::APPROVAL_EXPIRED_EVENT,
}
