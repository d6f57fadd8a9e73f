//! Message contracts of relance: the serde types that cross the broker, and the names of
//! exchanges and routing keys. Nothing else lives here (no I/O, no business rules).
//!
//! Contracts change additively: a new optional field is fine, a breaking change is a new
//! version (`...V2`). Every body carries `"version"`. Documented with examples in
//! `docs/messages.md`.

pub mod calls;
pub mod collections;
pub mod events;
pub mod handoff;
pub mod inbound;
pub mod jobs;
pub mod names;

pub use calls::{CallOutcomeV1, CallV1};
pub use collections::{
    CreditNoteIssuedV1, CreditNoteV1, DisputeOpenedV1, DisputeResolvedV1, DisputeV1,
    InvoiceLifecycleStatusV1, InvoiceWrittenOffV1, LifecycleStatusV1, PromiseRecordedV1, PromiseV1,
    ResolutionCreditNoteV1, ResolutionV1, WriteOffV1,
};
pub use events::EventV1;
pub use handoff::{AmountDueV1, HandOffDetailV1, InvoiceJournalV1, JournalEntryV1};
pub use inbound::{CustomerUpdatedV1, CustomerV1, InvoiceIssuedV1, InvoiceV1, PaymentReceivedV1, PaymentV1};
pub use jobs::{ReminderDueV1, ReminderRenderedV1};

/// The only version of the message bodies defined so far.
pub const VERSION_1: u32 = 1;

/// Reads the `version` field of a JSON body without committing to a type, so a consumer can
/// refuse an unknown version with a clear reason instead of a confusing field error.
pub fn body_version(body: &serde_json::Value) -> Option<u64> {
    body.get("version").and_then(serde_json::Value::as_u64)
}
