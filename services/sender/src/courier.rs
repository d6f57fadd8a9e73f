//! What every channel's delivery has in common: a courier takes a rendered step to its
//! provider (SMTP server, SMS gateway, postal service) and returns the provider's answer as
//! proof, or says whether a failure is worth retrying. Couriers know nothing of the
//! database or the broker: the delivery flow in `lib.rs` holds the invoice and records.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use relance_storage::steps::{RenderedMessage, StepRecord};

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying later: SMTP 4xx, HTTP 5xx/408/429, timeouts, connection failures.
    #[error("transient: {0}")]
    Transient(String),
    /// Never going to work: SMTP 5xx, HTTP 4xx, invalid addresses.
    #[error("permanent: {0}")]
    Permanent(String),
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
    pub at: DateTime<Utc>,
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
    pub detail: serde_json::Value,
}

/// Delivers one channel's messages.
pub trait Courier: Send + Sync {
    /// The sender kind: `email`, `sms` or `letter`.
    fn kind(&self) -> &'static str;
    fn deliver<'a>(&'a self, parcel: &'a Parcel) -> BoxFuture<'a, Result<Receipt, DeliveryError>>;
}
