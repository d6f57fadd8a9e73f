//! Approval decisions: the accounts team approves or rejects a step that waits for approval
//! (a formal notice, or any reminder of a customer set to manual), published on
//! `<ns>.inbound` by the creditor's tools, `relance approvals approve|reject` or the
//! console. Fields are kept as the wire gives them so that validation can say precisely what
//! is wrong.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Routing key `approval.granted`: the step goes out (at its window's next opening).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalGrantedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub approval: ApprovalDecisionV1,
}

/// Routing key `approval.rejected`: the step never goes out; it is skipped with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRejectedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub approval: ApprovalDecisionV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalDecisionV1 {
    pub invoice_number: String,
    /// The step waiting for approval (a UUID, as `relance approvals` lists it); for an
    /// invoice's hand-off, the id of its approval request (also listed, and in
    /// `approval.requested`'s `approval_id`).
    pub step_id: String,
    /// Who decided (journaled).
    pub decided_by: String,
    /// Why: required to reject, optional to approve (journaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the action was taken: `customer_page`, `console`, `cli`; absent from another
    /// system (`api`). Optional; journaled as the entry's `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// What an approval request is about: one step of the invoice's sequence (`step`), or the
/// invoice's hand-off to collection (`hand_off`).
pub const APPROVAL_SUBJECT_STEP: &str = "step";
pub const APPROVAL_SUBJECT_HAND_OFF: &str = "hand_off";

/// Event `approval.requested` (on `<ns>.events`): a step that fell due, or an invoice due for
/// hand-off, waits for the accounts team's approval. The envelope's `step` names the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRequestedV1 {
    /// The request's id (a UUID): for a hand-off, the id `approval.granted|rejected` name in
    /// `step_id`.
    pub approval_id: String,
    /// `step` or `hand_off`.
    pub subject: String,
    /// The step's name (absent for a hand-off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Who asked for the approval: `policy` (its `[approvals]` or the step's own `approval`)
    /// or `customer` (the customer is set to manual).
    pub by: String,
    /// When the request expires undecided (the step is then skipped; the invoice is not
    /// handed off).
    pub expires_at: DateTime<Utc>,
    /// What approval will do: for a step, its template, channel, recipient, the figures it
    /// states (`balance`, `interest`, `indemnity`, `total`, `as_of`) and `message`, the exact
    /// rendering approval sends (`subject`, `text`, `html`, and a letter's `pdf_sha256`); for
    /// a hand-off, `amount_due` as `invoice.handed_off` will carry it.
    pub preview: serde_json::Value,
}

/// Event `approval.granted` (on `<ns>.events`): the request was approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalGrantedEventV1 {
    pub approval_id: String,
    /// `step` or `hand_off`.
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub decided_by: String,
    pub reason: Option<String>,
    /// The `approval.granted` inbound message that decided it.
    pub event_id: String,
    /// Absent when the step goes out exactly as previewed; else why it is rendered again
    /// (the figures changed since the preview: a payment, a day's interest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerendered: Option<String>,
    /// Where the decision was taken (`console`, `cli`), when its message says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Event `approval.rejected` (on `<ns>.events`): the step is skipped, or the invoice is not
/// handed off, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRejectedEventV1 {
    pub approval_id: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub decided_by: String,
    pub reason: String,
    pub event_id: String,
    /// Where the decision was taken (`console`, `cli`), when its message says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Event `approval.expired` (on `<ns>.events`): nobody decided within the policy's
/// `expires_after_days`: the step is skipped, or the invoice is not handed off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalExpiredV1 {
    pub approval_id: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub after_days: u32,
}
