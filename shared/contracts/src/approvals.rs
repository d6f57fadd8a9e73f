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
    /// The step waiting for approval (a UUID, as `relance approvals` lists it).
    pub step_id: String,
    /// Who decided (journaled).
    pub decided_by: String,
    /// Why: required to reject, optional to approve (journaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
