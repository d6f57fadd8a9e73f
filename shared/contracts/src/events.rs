//! Outbound events on `<ns>.events`, one envelope for every routing key, so that other
//! systems (and tests) can follow what happened to each invoice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventV1 {
    pub version: u32,
    pub event_id: Uuid,
    /// The routing key, repeated in the body: `reminder.sent`, `invoice.settled`, ...
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub invoice_number: String,
    /// The policy step concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The event's rank among the events of its invoice (its `correlation_id`): 1, 2, 3... in
    /// the order relance committed them, with no gap. Events may arrive out of this order
    /// (several relays publish); a consumer orders them by it. Absent from events written
    /// before relance numbered them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// Event-specific facts: a reason, the SMTP server's answer, the remaining balance...
    #[serde(default)]
    pub detail: serde_json::Value,
}
