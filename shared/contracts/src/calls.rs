//! Call outcomes: what a person of the accounts team learnt on a phone call that a policy
//! step asked for, published on `<ns>.inbound` by the creditor's tools or by
//! `relance tasks outcome ...`. Fields are kept as the wire gives them so that validation can
//! say precisely what is wrong.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Routing key `call.outcome`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallOutcomeV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub call: CallV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallV1 {
    pub invoice_number: String,
    /// The call step (a UUID, as `relance tasks` lists it); absent: the invoice's open task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// `"reached"`, `"disputed"` or `"no_answer"`.
    pub outcome: String,
    /// With `reached`: the date the customer promised to pay by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promised_on: Option<NaiveDate>,
    /// With `disputed`: what the customer contests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Free text: who called, who answered, what was said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
