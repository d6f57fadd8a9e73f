//! Outbound events on `<ns>.events`, one envelope for every routing key, so that other
//! systems (and tests) can follow what happened to each invoice; and the tie between each
//! routing key and the type of its `detail` ([`EventDetail`], implemented in `details.rs`).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

use crate::VERSION_1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// Its type is the [`EventDetail`] of `event_type` (see `details.rs`).
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// The typed `detail` of one outbound event type: `EVENT_TYPE` is its routing key (and the
/// envelope's `event_type`).
pub trait EventDetail: Serialize {
    const EVENT_TYPE: &'static str;

    /// The detail as the envelope carries it.
    fn to_detail(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::to_value(self)
    }
}

/// The policy step an event is about: its name and the channel it goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRef<'a> {
    pub name: &'a str,
    pub channel: &'a str,
}

impl EventV1 {
    /// A new event (`sequence` is numbered when its transaction commits) whose `event_type`
    /// is the detail's.
    pub fn new<D: EventDetail>(
        event_id: Uuid,
        occurred_at: DateTime<Utc>,
        invoice_number: &str,
        step: Option<StepRef<'_>>,
        detail: &D,
    ) -> serde_json::Result<Self> {
        Ok(Self {
            version: VERSION_1,
            event_id,
            event_type: D::EVENT_TYPE.to_string(),
            occurred_at,
            invoice_number: invoice_number.to_string(),
            step: step.map(|s| s.name.to_string()),
            channel: step.map(|s| s.channel.to_string()),
            sequence: None,
            detail: detail.to_detail()?,
        })
    }

    /// The detail as `D`, if this event is of `D`'s type: `None` for another event type.
    pub fn detail_as<D: EventDetail + DeserializeOwned>(&self) -> Option<serde_json::Result<D>> {
        (self.event_type == D::EVENT_TYPE).then(|| serde_json::from_value(self.detail.clone()))
    }
}
