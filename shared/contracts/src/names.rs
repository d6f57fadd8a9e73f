//! Exchange, queue and routing-key names: a public contract other systems depend on.
//!
//! All names derive from a namespace (`relance` by default), so that a test or a second
//! installation on the same broker gets its own set: `relance.inbound`, `relance.events`...

/// Default namespace: gives `relance.inbound`, `relance.events`, `relance.jobs`.
pub const DEFAULT_NAMESPACE: &str = "relance";

/// Inbound routing keys (on the `<ns>.inbound` topic exchange).
pub const INVOICE_ISSUED: &str = "invoice.issued";
pub const PAYMENT_RECEIVED: &str = "payment.received";
/// Pauses and ends of the sequence, consumed with payments (see `pauses_and_ends.rs`).
pub const PROMISE_RECORDED: &str = "promise.recorded";
pub const DISPUTE_OPENED: &str = "dispute.opened";
pub const DISPUTE_RESOLVED: &str = "dispute.resolved";
pub const CREDIT_NOTE_ISSUED: &str = "credit_note.issued";
pub const INVOICE_WRITTEN_OFF: &str = "invoice.written_off";
pub const INVOICE_LIFECYCLE_STATUS: &str = "invoice.lifecycle_status";
/// A pause by hand (kind `manual`) and its release, from the accounts team.
pub const PAUSE_REQUESTED: &str = "pause.requested";
pub const RESUME_REQUESTED: &str = "resume.requested";
/// The outcome of a phone call a policy step asked for (see `calls.rs`).
pub const CALL_OUTCOME: &str = "call.outcome";
/// A payment plan agreed for one or several invoices of a customer (see `payment_plans.rs`).
pub const PAYMENT_PLAN_AGREED: &str = "payment_plan.agreed";
/// A customer asks for a payment plan (the customer page).
pub const PAYMENT_PLAN_REQUESTED: &str = "payment_plan.requested";
/// A step waiting for approval approved or rejected by the accounts team (see `approvals.rs`).
pub const APPROVAL_GRANTED: &str = "approval.granted";
pub const APPROVAL_REJECTED: &str = "approval.rejected";
/// A customer's reply handled by the accounts team, and a receipt acknowledged by the
/// customer (see `replies.rs`).
pub const REPLY_HANDLED: &str = "reply.handled";
pub const RECEIPT_ACKNOWLEDGED: &str = "receipt.acknowledged";
/// Every routing key the payments listener's queue is bound to.
pub const PAYMENTS_QUEUE_KEYS: [&str; 16] = [
    PAYMENT_RECEIVED,
    PROMISE_RECORDED,
    DISPUTE_OPENED,
    DISPUTE_RESOLVED,
    CREDIT_NOTE_ISSUED,
    INVOICE_WRITTEN_OFF,
    INVOICE_LIFECYCLE_STATUS,
    CALL_OUTCOME,
    PAUSE_REQUESTED,
    RESUME_REQUESTED,
    PAYMENT_PLAN_AGREED,
    APPROVAL_GRANTED,
    APPROVAL_REJECTED,
    REPLY_HANDLED,
    RECEIPT_ACKNOWLEDGED,
    PAYMENT_PLAN_REQUESTED,
];
/// A customer's details changed: consumed by the scheduler from its invoices queue.
pub const CUSTOMER_UPDATED: &str = "customer.updated";
/// A creditor's identity created or replaced: consumed by the scheduler from its invoices
/// queue, so that it is applied before the invoices published after it.
pub const CREDITOR_UPDATED: &str = "creditor.updated";

/// Internal job routing keys (on the `<ns>.jobs` direct exchange).
pub const REMINDER_DUE: &str = "reminder.due";
/// Rendered messages go to one queue per sender kind: `reminder.rendered.email`,
/// `reminder.rendered.sms`, `reminder.rendered.letter` (letters and registered letters).
pub const REMINDER_RENDERED_PREFIX: &str = "reminder.rendered";

/// Outbound event routing keys (on the `<ns>.events` topic exchange).
pub const REMINDER_SENT: &str = "reminder.sent";
pub const REMINDER_SKIPPED: &str = "reminder.skipped";
pub const REMINDER_CANCELLED: &str = "reminder.cancelled";
pub const REMINDER_FAILED: &str = "reminder.failed";
pub const REMINDER_POSTPONED: &str = "reminder.postponed";
/// A delivery interrupted after the end of DATA (or the provider's request) was sent and
/// before its answer was recorded: it may or may not have reached the customer. `detail`
/// has `reason`, `stage`, `message_id` and `policy` (`report`: the step ends `ambiguous`;
/// `resend`: delivered again with the same Message-ID / idempotency key).
pub const REMINDER_AMBIGUOUS: &str = "reminder.ambiguous";
pub const INVOICE_REGISTERED: &str = "invoice.registered";
pub const INVOICE_REJECTED: &str = "invoice.rejected";
/// An `invoice.issued` for an invoice number already registered, under a new event id: it
/// changes nothing; `detail.conflict` says whether it differs, `detail.differences` how.
pub const INVOICE_DUPLICATE: &str = "invoice.duplicate";
pub const INVOICE_SETTLED: &str = "invoice.settled";
pub const PAYMENT_RECORDED: &str = "payment.recorded";
/// A payment id already recorded came again with another amount, currency or invoice: it is
/// dead-lettered; `detail.differences` lists what differs.
pub const PAYMENT_CONFLICT: &str = "payment.conflict";
pub const THANKS_SENT: &str = "thanks.sent";
pub const INVOICE_PAUSED: &str = "invoice.paused";
pub const INVOICE_RESUMED: &str = "invoice.resumed";
pub const INVOICE_CLOSED: &str = "invoice.closed";
pub const CREDIT_NOTE_RECORDED: &str = "credit_note.recorded";
/// A step fell back to another channel: `detail` has `from`, `to` and `reason`.
pub const REMINDER_FALLBACK: &str = "reminder.fallback";
/// Call tasks: opened by the renderer, closed by an outcome, or expired by the scheduler.
pub const CALL_TASK_OPENED: &str = "call.task_opened";
pub const CALL_OUTCOME_RECORDED: &str = "call.outcome_recorded";
pub const CALL_TASK_EXPIRED: &str = "call.task_expired";
/// Journal-only: an informational e-invoicing lifecycle status.
pub const INVOICE_LIFECYCLE_RECORDED: &str = "invoice.lifecycle_recorded";
/// The sequence ended unpaid and the debt leaves relance (collection agency, lawyer); the
/// event carries the invoice's journal with its hashes (`HandOffDetailV1`).
pub const INVOICE_HANDED_OFF: &str = "invoice.handed_off";

/// Payment plans: agreed (the same name as the inbound message, on the events exchange), an
/// instalment paid, every instalment paid, an instalment missed beyond the grace.
pub const PAYMENT_PLAN_AGREED_EVENT: &str = "payment_plan.agreed";
pub const PAYMENT_PLAN_INSTALMENT_PAID: &str = "payment_plan.instalment_paid";
pub const PAYMENT_PLAN_COMPLETED: &str = "payment_plan.completed";
pub const PAYMENT_PLAN_BROKEN: &str = "payment_plan.broken";
/// The customer acknowledged receiving the invoice (customer page, read notification).
pub const INVOICE_RECEIPT_ACKNOWLEDGED: &str = "invoice.receipt_acknowledged";

/// Approvals: a step or a hand-off waits for approval, and how its request ended (the same
/// names as the inbound decisions, on the events exchange).
pub const APPROVAL_REQUESTED_EVENT: &str = "approval.requested";
pub const APPROVAL_GRANTED_EVENT: &str = "approval.granted";
pub const APPROVAL_REJECTED_EVENT: &str = "approval.rejected";
pub const APPROVAL_EXPIRED_EVENT: &str = "approval.expired";

/// AMQP header carrying the reason a message was dead-lettered.
pub const HEADER_DEAD_LETTER_REASON: &str = "x-relance-reason";
/// AMQP header naming the queue a dead-lettered message came from.
pub const HEADER_DEAD_LETTER_QUEUE: &str = "x-relance-queue";
/// AMQP header: a unique id given to each dead-lettering, so that the record kept of it
/// (`dead_letters`) is written once however often the broker redelivers it.
pub const HEADER_DEAD_LETTER_ID: &str = "x-relance-dead-letter-id";
/// AMQP header: when a message was dead-lettered (RFC 3339, UTC).
pub const HEADER_DEAD_LETTERED_AT: &str = "x-relance-dead-lettered-at";
/// AMQP header on a replayed dead letter: the id of the record it replays.
pub const HEADER_REPLAY_OF: &str = "x-relance-replay-of";
/// AMQP header counting the retries of a message.
pub const HEADER_RETRY_COUNT: &str = "x-relance-retries";
/// How many times a message waited out an outage of the database (not counted as retries).
pub const HEADER_OUTAGE_WAITS: &str = "x-relance-outage-waits";
/// AMQP header keeping a message's original routing key through its retries (a retried
/// message comes back from its delay queue under the queue's name).
pub const HEADER_ROUTING_KEY: &str = "x-relance-routing-key";
/// AMQP header: when a message first failed transiently (RFC 3339, UTC). Its retry budget
/// (`RELANCE_RETRY_BUDGET`) runs from then.
pub const HEADER_FIRST_FAILURE: &str = "x-relance-first-failure";

/// The routing key of a rendered message for one channel.
pub fn reminder_rendered(channel: &str) -> String {
    format!("{REMINDER_RENDERED_PREFIX}.{channel}")
}

/// Names of every exchange and queue for one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub namespace: String,
}

impl Names {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
        }
    }

    /// Topic exchange where other systems publish invoices and payments.
    pub fn inbound_exchange(&self) -> String {
        format!("{}.inbound", self.namespace)
    }
    /// Topic exchange where relance publishes what happened.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.namespace)
    }
    /// Direct exchange carrying work between relance's own services.
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.namespace)
    }
    /// Fanout exchange receiving messages that could not be processed.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dead-letter", self.namespace)
    }
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead-letter", self.namespace)
    }
    pub fn invoices_queue(&self) -> String {
        format!("{}.scheduler.invoices", self.namespace)
    }
    pub fn payments_queue(&self) -> String {
        format!("{}.payments.payments", self.namespace)
    }
    pub fn renderer_queue(&self) -> String {
        format!("{}.renderer.jobs", self.namespace)
    }
    pub fn sender_queue(&self, channel: &str) -> String {
        format!("{}.sender.{channel}", self.namespace)
    }
    /// The former single delay queue in front of a work queue (per-message TTL). Still
    /// declared, so that what an older relance left there drains back to the work queue;
    /// nothing is published to it any more (see [`Names::retry_tier_queue`]).
    pub fn retry_queue(queue: &str) -> String {
        format!("{queue}.retry")
    }
    /// The delay queue of one backoff tier in front of a work queue: every message in it
    /// waits the same time (`tier`, e.g. `5m`), so none waits behind a longer one.
    pub fn retry_tier_queue(queue: &str, tier: &str) -> String {
        format!("{queue}.retry.{tier}")
    }
}

impl Default for Names {
    fn default() -> Self {
        Self::new(DEFAULT_NAMESPACE)
    }
}
