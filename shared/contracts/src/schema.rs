//! The list of every message of the contract (inbound messages, jobs, outbound events with
//! their typed detail) and their JSON Schemas, as committed under `docs/schema/`. The
//! contract's tests read the same list, so a message missing from it is missing everywhere.

use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;

use crate::details::visit_event_details;
use crate::events::EventDetail;
use crate::{approvals, calls, inbound, jobs, names, pauses_and_ends, payment_plans, replies};

/// Where a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// `<ns>.inbound`: other systems to relance.
    Inbound,
    /// `<ns>.jobs`: between relance's services.
    Jobs,
    /// `<ns>.events`: relance to anyone (envelope `EventV1`).
    Events,
}

impl Exchange {
    /// The folder of `docs/schema/` holding its messages' schemas.
    pub fn folder(self) -> &'static str {
        match self {
            Exchange::Inbound => "inbound",
            Exchange::Jobs => "jobs",
            Exchange::Events => "events",
        }
    }
}

/// A body that crosses the broker.
pub trait Message: Serialize + DeserializeOwned + JsonSchema {}
impl<T: Serialize + DeserializeOwned + JsonSchema> Message for T {}

/// Sees every message type of the contract (see [`visit_contract`]).
pub trait ContractVisitor {
    /// An inbound message or a job, by its routing key (`reminder.rendered` stands for
    /// `reminder.rendered.<kind>`).
    fn message<M: Message>(&mut self, exchange: Exchange, routing_key: &'static str);
    /// An outbound event, by the type of its detail (its routing key is `D::EVENT_TYPE`).
    fn event<D: EventDetail + Message>(&mut self);
}

/// Shows `visitor` every message type of the contract.
pub fn visit_contract(visitor: &mut impl ContractVisitor) {
    use Exchange::{Inbound, Jobs};
    visitor.message::<inbound::InvoiceIssuedV1>(Inbound, names::INVOICE_ISSUED);
    visitor.message::<inbound::PaymentReceivedV1>(Inbound, names::PAYMENT_RECEIVED);
    visitor.message::<inbound::CustomerUpdatedV1>(Inbound, names::CUSTOMER_UPDATED);
    visitor.message::<inbound::CreditorUpdatedV1>(Inbound, names::CREDITOR_UPDATED);
    visitor.message::<pauses_and_ends::PromiseRecordedV1>(Inbound, names::PROMISE_RECORDED);
    visitor.message::<pauses_and_ends::DisputeOpenedV1>(Inbound, names::DISPUTE_OPENED);
    visitor.message::<pauses_and_ends::DisputeResolvedV1>(Inbound, names::DISPUTE_RESOLVED);
    visitor.message::<pauses_and_ends::CreditNoteIssuedV1>(Inbound, names::CREDIT_NOTE_ISSUED);
    visitor.message::<pauses_and_ends::InvoiceWrittenOffV1>(Inbound, names::INVOICE_WRITTEN_OFF);
    visitor.message::<pauses_and_ends::InvoiceLifecycleStatusV1>(Inbound, names::INVOICE_LIFECYCLE_STATUS);
    visitor.message::<calls::CallOutcomeV1>(Inbound, names::CALL_OUTCOME);
    visitor.message::<pauses_and_ends::PauseRequestedV1>(Inbound, names::PAUSE_REQUESTED);
    visitor.message::<pauses_and_ends::ResumeRequestedV1>(Inbound, names::RESUME_REQUESTED);
    visitor.message::<payment_plans::PaymentPlanAgreedV1>(Inbound, names::PAYMENT_PLAN_AGREED);
    visitor.message::<approvals::ApprovalGrantedV1>(Inbound, names::APPROVAL_GRANTED);
    visitor.message::<approvals::ApprovalRejectedV1>(Inbound, names::APPROVAL_REJECTED);
    visitor.message::<replies::ReplyHandledV1>(Inbound, names::REPLY_HANDLED);
    visitor.message::<replies::ReceiptAcknowledgedV1>(Inbound, names::RECEIPT_ACKNOWLEDGED);
    visitor.message::<payment_plans::PaymentPlanRequestedV1>(Inbound, names::PAYMENT_PLAN_REQUESTED);
    visitor.message::<jobs::ReminderDueV1>(Jobs, names::REMINDER_DUE);
    visitor.message::<jobs::ReminderRenderedV1>(Jobs, names::REMINDER_RENDERED_PREFIX);
    visit_event_details(visitor);
}

/// One message's schema and the file it is committed as.
#[derive(Debug, Clone)]
pub struct MessageSchema {
    /// Relative to `docs/schema/`: `inbound/invoice.issued.json`, `events/reminder.sent.json`.
    pub file: String,
    pub schema: serde_json::Value,
}

/// The schema of every message of the contract.
pub fn message_schemas() -> Vec<MessageSchema> {
    let mut collector = SchemaCollector(Vec::new());
    visit_contract(&mut collector);
    collector.0
}

/// The schema of an inbound message or a job.
pub fn message_schema<M: JsonSchema>(routing_key: &str) -> serde_json::Value {
    let schema = SchemaGenerator::default().into_root_schema_for::<M>();
    finish(schema, routing_key, None)
}

/// The schema of an outbound event: the `EventV1` envelope whose `event_type` is
/// `D::EVENT_TYPE` and whose `detail` is a `D`.
pub fn event_schema<D: EventDetail + JsonSchema>() -> serde_json::Value {
    let schema = SchemaGenerator::default().into_root_schema_for::<TypedEventV1<D>>();
    finish(schema, D::EVENT_TYPE, Some(D::EVENT_TYPE))
}

/// An outbound event on `<ns>.events`: the `EventV1` envelope, with the detail of its
/// `event_type`.
#[derive(JsonSchema)]
#[allow(dead_code)] // Only its schema is used.
struct TypedEventV1<D> {
    version: u32,
    event_id: Uuid,
    /// The routing key, repeated in the body.
    event_type: String,
    occurred_at: DateTime<Utc>,
    invoice_number: String,
    /// The policy step concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    /// The event's rank among the events of its invoice: 1, 2, 3... in commit order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sequence: Option<u64>,
    detail: D,
}

/// Titles the schema with its routing key and pins `version` (and an event's `event_type`)
/// to the one value they may have.
fn finish(schema: Schema, routing_key: &str, event_type: Option<&str>) -> serde_json::Value {
    let mut schema = schema.to_value();
    if let Some(root) = schema.as_object_mut() {
        root.insert("title".into(), routing_key.into());
        if let Some(properties) = root.get_mut("properties").and_then(|p| p.as_object_mut()) {
            if let Some(version) = properties.get_mut("version").and_then(|v| v.as_object_mut()) {
                version.insert("const".into(), crate::VERSION_1.into());
            }
            if let Some(event_type) = event_type {
                properties.insert(
                    "event_type".into(),
                    serde_json::json!({
                        "description": "The routing key, repeated in the body.",
                        "type": "string",
                        "const": event_type,
                    }),
                );
            }
        }
    }
    schema
}

struct SchemaCollector(Vec<MessageSchema>);

impl ContractVisitor for SchemaCollector {
    fn message<M: Message>(&mut self, exchange: Exchange, routing_key: &'static str) {
        self.0.push(MessageSchema {
            file: format!("{}/{routing_key}.json", exchange.folder()),
            schema: message_schema::<M>(routing_key),
        });
    }

    fn event<D: EventDetail + Message>(&mut self) {
        self.0.push(MessageSchema {
            file: format!("{}/{}.json", Exchange::Events.folder(), D::EVENT_TYPE),
            schema: event_schema::<D>(),
        });
    }
}
