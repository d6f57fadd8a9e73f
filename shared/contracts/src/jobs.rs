//! Jobs between relance's own services, on the `<ns>.jobs` exchange. They carry ids only:
//! the database row is the truth, the job is a notification that it is ready for work.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Routing key `reminder.due`: scheduler -> renderer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReminderDueV1 {
    pub version: u32,
    pub job_id: Uuid,
    pub step_id: Uuid,
    pub invoice_number: String,
    /// Step name from the policy, e.g. `reminder_1`, or `thanks`.
    pub step: String,
    pub channel: String,
}

/// Routing key `reminder.rendered.<channel>`: renderer -> channel sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReminderRenderedV1 {
    pub version: u32,
    pub job_id: Uuid,
    pub step_id: Uuid,
    pub invoice_number: String,
    pub step: String,
    pub channel: String,
}
