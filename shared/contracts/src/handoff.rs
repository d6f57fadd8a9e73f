//! The `detail` of an `invoice.handed_off` event (on `<ns>.events`, envelope `EventV1`): what
//! a collection agency or a lawyer needs to take over, including the invoice's journal with
//! the hashes that let them check it (docs/journal.md).

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HandOffDetailV1 {
    /// Why, in words: the last step and the days waited.
    pub reason: String,
    /// `RELANCE_HANDOFF_AFTER_DAYS` at the time.
    pub after_days: u32,
    /// The last reminder step of the sequence, its final status and when it reached it.
    pub last_step: String,
    pub last_step_status: String,
    pub last_step_at: DateTime<Utc>,
    pub amount_due: AmountDueV1,
    pub journal: InvoiceJournalV1,
    /// The creditor the invoice is owed to, when it names one (`creditor.updated`); absent
    /// for the deployment's default creditor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creditor: Option<HandOffCreditorV1>,
}

/// Whom a handed-off invoice is owed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HandOffCreditorV1 {
    /// Its id, as `creditor.updated` gave it.
    pub id: String,
    /// Its legal name as stored at the hand-off.
    pub name: String,
}

/// Amounts as decimal strings in the currency's minor unit (`"1500.00"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AmountDueV1 {
    pub currency: String,
    /// The invoice total.
    pub invoiced: String,
    /// Sum of the credit notes applied to the invoice.
    pub credited: String,
    pub paid: String,
    /// What remains of the invoice itself: `invoiced - credited - paid`.
    pub principal: String,
    /// Late-payment interest on top of the principal, accrued from the day after the due date
    /// through `interest_through`, rounded half-even to the cent. `null` only in events from
    /// relance versions that did not compute it: never read `null` as zero.
    pub interest: Option<String>,
    /// The last day counted (the customer's local date of the hand-off), included.
    #[serde(default)]
    pub interest_through: Option<NaiveDate>,
    /// The annual rate of the latest interest period, in percent (`"12"`, `"10.15"`);
    /// `null` when nothing accrued.
    #[serde(default)]
    pub interest_rate_percent: Option<String>,
    /// The fixed recovery indemnity (40 for a business, nothing for a consumer), in
    /// `indemnity_currency`: euros, whatever the invoice's currency (D441-5).
    #[serde(default)]
    pub indemnity: Option<String>,
    /// Always `"EUR"`; absent from events of versions before it was added, which stated the
    /// indemnity in the invoice's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indemnity_currency: Option<String>,
    /// The first day interest ran: the day after the due date for a business, the day after
    /// the formal notice took effect for a consumer; `null` when none ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interest_from: Option<NaiveDate>,
    /// Where the rate comes from: `statutory` (ECB + 10 points), `contract` (the terms of
    /// sale), `floor` (three times the legal rate, above the contract's), `legal` (the legal
    /// interest rate, a consumer's debt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interest_rate_basis: Option<String>,
    /// True when the rate table lacked a half-year of the period: the interest is an
    /// estimate at the last known rates.
    #[serde(default)]
    pub rates_estimated: bool,
    /// What the collector claims in the invoice's currency: `principal + interest`, plus the
    /// indemnity when the invoice is in euros (otherwise the indemnity is owed besides, in
    /// euros).
    #[serde(default)]
    pub total: Option<String>,
}

/// One invoice's journal chain as it stood when it was handed off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceJournalV1 {
    /// The chain: the invoice number.
    pub chain: String,
    /// The last entry's `seq` and `hash`: keep them, a later rewrite of the chain cannot match.
    pub head_seq: i64,
    pub head_hash: String,
    /// Oldest first.
    pub entries: Vec<JournalEntryV1>,
}

/// A journal entry with everything its hashes are computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JournalEntryV1 {
    pub id: i64,
    /// Position in the chain, from 1.
    pub seq: i64,
    /// UTC with six decimals, exactly as hashed: `2026-03-28T08:00:00.000000Z`.
    pub at: String,
    pub invoice_number: Option<String>,
    pub step_id: Option<Uuid>,
    pub action: String,
    pub detail: serde_json::Value,
    /// SHA-256 of the canonical form of the document the entry refers to (a rendered message).
    pub document_sha256: Option<String>,
    pub content_sha256: String,
    pub prev_hash: String,
    pub hash: String,
}
