//! Replies and acknowledgements of receipt (see docs/messages.md#replies-and-acknowledgements):
//! a reply the replies reader matched is marked handled by the accounts team
//! (`reply.handled`, which lifts the pause a reply opened), and a customer acknowledges
//! receiving an invoice (`receipt.acknowledged`, from the customer page; read notifications
//! found in the mailbox are recorded by the reader itself). Announced as
//! `invoice.receipt_acknowledged`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Routing key `reply.handled`: someone handled a customer's reply (as `relance tasks`
/// lists it); the pause it opened ends, and the sequence resumes if nothing else holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplyHandledV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub reply: HandledReplyV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HandledReplyV1 {
    pub invoice_number: String,
    /// The reply's id (`relance tasks` lists it).
    pub reply_id: String,
    /// What was done about it (journaled).
    #[serde(default)]
    pub note: Option<String>,
}

/// Routing key `receipt.acknowledged`: the customer acknowledged receiving the invoice
/// (the customer page's "I have received this invoice").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReceiptAcknowledgedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub receipt: ReceiptV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReceiptV1 {
    pub invoice_number: String,
    /// Where the acknowledgement came from, e.g. `customer page`.
    pub source: String,
}

/// `invoice.receipt_acknowledged`: proof that the customer received the invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceReceiptAcknowledgedV1 {
    /// `customer page` or `read notification` (an MDN from the customer's mail program).
    pub source: String,
    /// When the customer acknowledged it (the click, or the notification's date).
    pub acknowledged_at: DateTime<Utc>,
    /// The message that carried it: the inbound `event_id`, or the notification's Message-ID.
    pub source_id: String,
    /// The notification's `Disposition` field, for a read notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
}
