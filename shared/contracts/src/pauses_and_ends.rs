//! Inbound messages that pause or end an invoice's dunning sequence, published on
//! `<ns>.inbound` by the creditor's systems (or by `relance invoice ...`): promises to pay,
//! disputes, credit notes, write-offs and e-invoicing lifecycle statuses.
//!
//! As in `inbound.rs`, fields are kept as the wire gives them (amounts as decimal strings,
//! optional dates) so that validation can say precisely what is wrong.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Routing key `promise.recorded`: the customer promised to pay by a date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromiseRecordedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub promise: PromiseV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromiseV1 {
    pub invoice_number: String,
    /// Optional on the wire only so that a missing date is refused with a clear reason.
    #[serde(default)]
    pub promised_on: Option<NaiveDate>,
    /// Free text: who promised, how it was obtained.
    #[serde(default)]
    pub note: Option<String>,
    /// Where the action was taken: `customer_page`, `console`, `cli`; absent from another
    /// system (`api`). Optional; journaled as the entry's `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Routing key `dispute.opened`: the customer contests the invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DisputeOpenedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub dispute: DisputeV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DisputeV1 {
    pub invoice_number: String,
    pub reason: String,
    /// Where the action was taken: `customer_page`, `console`, `cli`; absent from another
    /// system (`api`). Optional; journaled as the entry's `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Routing key `dispute.resolved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DisputeResolvedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub resolution: ResolutionV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResolutionV1 {
    pub invoice_number: String,
    /// `"upheld"`: the invoice stands and the sequence resumes; `"credited"`: resolved by
    /// the credit note given in `credit_note`.
    pub outcome: String,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub credit_note: Option<ResolutionCreditNoteV1>,
}

/// The credit note that resolves a dispute (its invoice is the resolution's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResolutionCreditNoteV1 {
    pub id: String,
    /// Decimal string.
    pub amount: String,
    pub currency: String,
    #[serde(default)]
    pub issued_on: Option<NaiveDate>,
}

/// Routing key `credit_note.issued`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreditNoteIssuedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub credit_note: CreditNoteV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreditNoteV1 {
    pub id: String,
    pub invoice_number: String,
    /// Decimal string.
    pub amount: String,
    pub currency: String,
    #[serde(default)]
    pub issued_on: Option<NaiveDate>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Routing key `invoice.written_off`: the creditor gives up on the debt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceWrittenOffV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub write_off: WriteOffV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WriteOffV1 {
    pub invoice_number: String,
    pub reason: String,
}

/// Routing key `invoice.lifecycle_status`: a status of the French e-invoicing reform's
/// invoice lifecycle, as the creditor's platform reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceLifecycleStatusV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub lifecycle: LifecycleStatusV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LifecycleStatusV1 {
    pub invoice_number: String,
    /// The status name (`"disputed"`) or its code (`"207"`).
    pub status: String,
    /// The reason the platform gives, if any (dispute, refusal, suspension).
    #[serde(default)]
    pub reason: Option<String>,
    /// For `cashed`: the amount cashed, decimal string; absent means the whole balance.
    #[serde(default)]
    pub amount: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
}

/// Routing key `pause.requested`: the accounts team holds the invoice's reminders by hand
/// (a pause of kind `manual`) until it releases them with `resume.requested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PauseRequestedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub pause: ManualPauseV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ManualPauseV1 {
    pub invoice_number: String,
    /// Why the reminders are held (journaled).
    pub reason: String,
    /// Where the action was taken: `customer_page`, `console`, `cli`; absent from another
    /// system (`api`). Optional; journaled as the entry's `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Routing key `resume.requested`: ends the invoice's manual pause; the sequence resumes
/// unless another pause (a promise, a dispute, a suspension) still holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResumeRequestedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub resume: ManualResumeV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ManualResumeV1 {
    pub invoice_number: String,
    #[serde(default)]
    pub note: Option<String>,
    /// Where the action was taken: `customer_page`, `console`, `cli`; absent from another
    /// system (`api`). Optional; journaled as the entry's `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}
