//! What every channel's delivery has in common: a courier takes a rendered step to its
//! provider (SMTP server, SMS gateway, postal service) and returns the provider's answer as
//! proof, or says whether a failure is worth retrying. Couriers know nothing of the
//! database or the broker: they tell a [`DeliveryGate`] how far they got, and ask it, right
//! before the point of no return (the end of DATA, the provider's request), whether the
//! message may still go; the delivery flow in `lib.rs` implements the gate and records.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use relance_contracts::{ReminderSentV1, StopRequestedV1};
use relance_storage::steps::{DeliveryStage, RenderedMessage, StepRecord};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying later: SMTP 4xx, HTTP 5xx/408/429, timeouts, connection failures.
    #[error("transient: {0}")]
    Transient(String),
    /// Never going to work: SMTP 5xx, HTTP 4xx, invalid addresses.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The gate refused the message at the last check (invoice paid, paused, group changed,
    /// or the database could not be read): the courier aborted without sending the end of
    /// DATA (or the request). Nothing went out.
    #[error("aborted before sending: {0}")]
    Aborted(String),
    /// The end of DATA (or the request) left, and no answer came back: the provider may or
    /// may not have the message. Settled as an ambiguous delivery, never retried blindly.
    #[error("unanswered: {0}")]
    Unanswered(String),
}

impl DeliveryError {
    /// Its kind as one word (a span's `error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transient(_) => "transient",
            Self::Permanent(_) => "permanent",
            Self::Aborted(_) => "aborted",
            Self::Unanswered(_) => "unanswered",
        }
    }
}

/// Where a delivery reports its progress, and asks, last thing, whether it may go on.
pub trait DeliveryGate: Send + Sync {
    /// Records that the delivery reached `stage` (best effort: a stage not recorded only
    /// makes an interrupted delivery look less advanced, which is resent, never lost).
    fn reached(&self, stage: DeliveryStage) -> BoxFuture<'_, ()>;
    /// The last check, right before the point of no return. `Ok` means the stage
    /// `data_end_sent` is committed and the courier must now send the end of DATA (or the
    /// request); `Err(reason)` means abort: send nothing more.
    fn confirm(&self) -> BoxFuture<'_, Result<(), String>>;
    /// The time now on the service's clock: what a courier dates the message it hands over
    /// with, once through its turn and the last check (a letter written to the outbox folder
    /// after waiting past midnight belongs to the new day's folder, not to its claim's).
    fn now(&self) -> DateTime<Utc>;
}

/// A gate that lets everything through and records nothing (tests of couriers alone).
pub struct OpenGate;

impl DeliveryGate for OpenGate {
    fn reached(&self, _stage: DeliveryStage) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn confirm(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// At most so many at once (0: no limit), shared by a sender's messages in flight: requests
/// at a provider (`RELANCE_PROVIDER_MAX_REQUESTS`: a gateway's rate limit is met by waiting
/// here rather than by a 429 and a retry later), SMTP connections
/// (`RELANCE_SMTP_MAX_CONNECTIONS`). A courier takes its turn *before* the last check, so a
/// payment recorded while a message waits still stops it.
#[derive(Clone, Default)]
pub struct RequestLimit(Option<Arc<Semaphore>>);

impl RequestLimit {
    /// At most `max` at once; 0: no limit.
    pub fn new(max: usize) -> Self {
        Self((max > 0).then(|| Arc::new(Semaphore::new(max))))
    }

    /// Waits for a turn, held until the returned permit is dropped; `None` without a limit.
    pub async fn turn(&self) -> Option<OwnedSemaphorePermit> {
        match &self.0 {
            // The semaphore is never closed: acquiring fails only on a closed one.
            Some(requests) => requests.clone().acquire_owned().await.ok(),
            None => None,
        }
    }
}

/// A rendered step ready to go, with what it carries.
#[derive(Debug, Clone)]
pub struct Parcel {
    pub step: StepRecord,
    pub rendered: RenderedMessage,
    /// The invoice PDF, when the rendered message asks for it.
    pub invoice_pdf: Option<Vec<u8>>,
    /// The rendered document (a letter's PDF) and its SHA-256.
    pub document: Option<(Vec<u8>, String)>,
    /// The statement of account going with the message: its file name and PDF.
    pub statement: Option<(String, Vec<u8>)>,
    /// The invoice's creditor: its sender addresses (email `From`/`Reply-To`, SMS sender).
    pub creditor: relance_config::Creditor,
    pub at: DateTime<Utc>,
    /// The policy's step asks for an acknowledgement of receipt (`request_receipt`): the
    /// email carries `Disposition-Notification-To`.
    pub request_receipt: bool,
}

impl Parcel {
    /// The idempotency key of this delivery: the same at every attempt.
    pub fn key(&self) -> &str {
        &self.rendered.message_id
    }
}

/// What the provider said.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// One line kept as the step's delivery proof (the SMTP answer, the gateway's id...).
    pub proof: String,
    /// The provider's reference for the message: gateway message id, tracking number, file.
    pub reference: Option<String>,
    /// Facts for the `reminder.sent` event and the journal.
    pub detail: ReminderSentV1,
}

/// Notes on a delivery proof that a payment or closure came while it was going out.
pub fn note_stop_requested(sent: &mut ReminderSentV1, stop: StopRequestedV1) {
    match sent {
        ReminderSentV1::Email(email) => email.stop_requested = Some(stop),
        ReminderSentV1::Sms(sms) => sms.stop_requested = Some(stop),
        ReminderSentV1::Letter(letter) => letter.stop_requested = Some(stop),
        ReminderSentV1::Recovered(recovered) => recovered.stop_requested = Some(stop),
        // Grouped members are settled with their lead, never delivered by a courier.
        ReminderSentV1::Grouped(_) => {}
    }
}

/// Delivers one channel's messages.
pub trait Courier: Send + Sync {
    /// The sender kind: `email`, `sms` or `letter`.
    fn kind(&self) -> &'static str;
    /// Delivers the parcel, reporting to `gate` and passing its last check before the point
    /// of no return.
    fn deliver<'a>(
        &'a self,
        parcel: &'a Parcel,
        gate: &'a dyn DeliveryGate,
    ) -> BoxFuture<'a, Result<Receipt, DeliveryError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Eight requests through a limit of two: never more than two at once, and all of them
    /// go; with no limit, all eight at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_limit_lets_so_many_through_at_once_and_no_more() {
        for (max, expected) in [(2, 2), (0, 8)] {
            let limit = RequestLimit::new(max);
            let (now, most, done) = (
                Arc::new(AtomicUsize::new(0)),
                Arc::new(AtomicUsize::new(0)),
                Arc::new(AtomicUsize::new(0)),
            );
            // Every request waits until all eight have started or the limit holds them back.
            let started = Arc::new(tokio::sync::Barrier::new(expected));
            let requests: Vec<_> = (0..8)
                .map(|_| {
                    let (limit, now, most, done, started) = (
                        limit.clone(),
                        now.clone(),
                        most.clone(),
                        done.clone(),
                        started.clone(),
                    );
                    tokio::spawn(async move {
                        let _turn = limit.turn().await;
                        most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        started.wait().await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        done.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for request in requests {
                request.await.unwrap();
            }
            assert_eq!(done.load(Ordering::SeqCst), 8, "max {max}");
            assert_eq!(most.load(Ordering::SeqCst), expected, "max {max}");
        }
    }
}
