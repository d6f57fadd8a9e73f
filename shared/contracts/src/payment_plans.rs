//! Payment plans (échéancier): the inbound `payment_plan.agreed` (published on
//! `<ns>.inbound` by the creditor's systems, or by `relance invoice plan`), and the details
//! of the events relance announces about a plan (`payment_plan.agreed`,
//! `payment_plan.instalment_paid`, `payment_plan.completed`, `payment_plan.broken`).
//!
//! As in `inbound.rs`, the inbound fields are kept as the wire gives them (amounts as
//! decimal strings, optional dates) so that validation can say precisely what is wrong.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Routing key `payment_plan.agreed` (inbound): the customer agreed to pay one or several of
/// its invoices in instalments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentPlanAgreedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub plan: PaymentPlanV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentPlanV1 {
    /// The plan's own id in the creditor's systems (unique).
    pub id: String,
    /// The customer whose invoices the plan covers (all of them one customer's).
    pub customer_id: String,
    /// The invoices the plan covers: the instalments sum to their balance.
    pub invoice_numbers: Vec<String>,
    /// At least two, dates strictly increasing, the first not before today.
    pub instalments: Vec<InstalmentV1>,
    pub currency: String,
    /// Free text: who agreed, how.
    #[serde(default)]
    pub note: Option<String>,
    /// Where the action was taken: `customer_page`, `console`, `cli`; absent from another
    /// system (`api`). Optional; journaled as the entry's `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstalmentV1 {
    /// Optional on the wire only so that a missing date is refused with a clear reason.
    #[serde(default)]
    pub due_on: Option<NaiveDate>,
    /// Decimal string.
    pub amount: String,
}

/// One instalment as the events state it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanInstalmentV1 {
    /// 1, 2, 3... in the order of their due dates.
    pub position: u32,
    pub due_on: NaiveDate,
    /// Decimal string.
    pub amount: String,
    /// What payments covered so far, decimal string.
    pub paid: String,
}

/// `payment_plan.agreed` (event): the plan now holds the invoice's own sequence; its notes go
/// out instead. Announced on each invoice of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentPlanAgreedDetailV1 {
    pub plan_id: String,
    pub invoice_numbers: Vec<String>,
    pub currency: String,
    /// Decimal string: the sum of the instalments.
    pub total: String,
    pub instalments: Vec<PlanInstalmentV1>,
    /// Days after an instalment's due date before it breaks the plan (the policy's).
    pub grace_days: u32,
    pub note: Option<String>,
    /// The `event_id` of the message that brought the plan.
    pub event_id: String,
}

/// `payment_plan.instalment_paid`: payments covered an instalment (announced on the invoice
/// whose payment completed it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentPlanInstalmentPaidV1 {
    pub plan_id: String,
    pub instalment: PlanInstalmentV1,
    /// The payment that completed it.
    pub payment_id: String,
    /// How many instalments are left to pay.
    pub remaining: u32,
}

/// `payment_plan.completed`: every instalment paid. Announced on each invoice of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentPlanCompletedV1 {
    pub plan_id: String,
    /// Decimal string.
    pub total: String,
    pub currency: String,
}

/// `payment_plan.broken`: an instalment still unpaid after the grace days. The invoice's own
/// sequence resumes where it stood, on its whole balance. Announced on each invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentPlanBrokenV1 {
    pub plan_id: String,
    /// The instalment missed.
    pub instalment: PlanInstalmentV1,
    pub grace_days: u32,
    /// Decimal string: what is left to pay on the plan's invoices.
    pub balance: String,
    pub currency: String,
    pub reason: String,
}

/// Routing key `payment_plan.requested` (inbound): the customer asks to pay an invoice in
/// instalments (from the customer page). The sequence pauses (kind `plan_request`) while the
/// accounts team decides: it agrees a plan (`payment_plan.agreed`, which lifts the pause) or
/// declines the request (`resume.requested`, which resumes the sequence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentPlanRequestedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub request: PaymentPlanRequestV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentPlanRequestV1 {
    pub invoice_number: String,
    /// Over how many months the customer proposes to pay (2 to 36), or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months: Option<u32>,
    /// the instalments it proposes (at least two); one of the two is required.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instalments: Vec<InstalmentV1>,
    /// The customer's note (journaled, shown to the team).
    #[serde(default)]
    pub note: Option<String>,
    /// Where the request was made: `customer_page`, `console`, `cli`; absent from another
    /// system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}
