//! The rules of a dunning sequence that several services apply, in the caller's transaction:
//! queue a step ([`queue_step`]), move a step and announce it, journal and announce an event
//! ([`outgoing`]), end pauses and resume or re-date the steps held back ([`resume`]), and
//! show an invoice's journal as the contracts do ([`journal`]); build and check the inbound
//! messages the accounts team sends from the CLI or the console ([`actions`],
//! [`call_outcome`]), with the checks the payments listener applies ([`actions::check`]). Services depend on this crate,
//! never on one another; it carries nothing itself (the outbox relay in `relance-messaging`
//! publishes what it adds to the outbox).

pub mod actions;
pub mod approvals;
pub mod call_outcome;
pub mod journal;
pub mod outgoing;
pub mod payment_plan;
pub mod portal_link;
pub mod queue;
pub mod replies;
pub mod reply_handled;
pub mod resume;

pub use queue::queue_step;
