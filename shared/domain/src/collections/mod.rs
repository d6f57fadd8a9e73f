//! Pauses and ends of the dunning sequence, and the collections status of an invoice.
//! Pure rules: validation of the messages that pause or end a sequence, the e-invoicing
//! lifecycle statuses and what each one does, when a pause ends and how the sequence resumes,
//! and the status an accounts team sees. No I/O.

pub mod lifecycle;
pub mod pause;
pub mod payment_plan;
pub mod status;
pub mod validate;

pub use lifecycle::{LifecycleEffect, LifecycleStatus};
pub use pause::{
    promise_pause_end, redate_after_pause, resume_slot, PauseKind, PausedStep, Redate, Resumption,
};
pub use status::{
    collection_status, collection_status_at, CollectionStatus, InvoiceState, PlanAt, StepSnapshot,
};
pub use validate::{
    validate_approval_decision, validate_credit_note, validate_dispute, validate_lifecycle_status,
    validate_manual_pause, validate_manual_resume, validate_promise, validate_resolution, validate_write_off,
    NewApprovalDecision, NewCreditNote, NewDispute, NewLifecycleStatus, NewManualPause, NewManualResume,
    NewPromise, NewResolution, NewWriteOff, Outcome,
};
