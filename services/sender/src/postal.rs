//! Letters: a postal service behind the small `PostalService` trait, which takes a PDF and
//! the address it goes to. `PostalOutbox` writes each letter (and the invoice PDF beside
//! it) to a dated folder with a manifest of JSON lines, for creditors who print and post
//! themselves; `HttpPostalService` uploads them to a print-and-post or registered-mail API.

use crate::courier::{Courier, DeliveryError, DeliveryGate, Parcel, Receipt, RequestLimit};
use crate::http;
use crate::outbox_file;
use anyhow::Context;
use base64::Engine;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use relance_config::ChannelSettings;
use relance_contracts::{LetterSentV1, ReminderSentV1};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// A PDF to print or upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedDocument {
    pub name: String,
    pub pdf: Vec<u8>,
    pub sha256: String,
}

impl PostedDocument {
    pub fn new(name: String, pdf: Vec<u8>) -> Self {
        let sha256 = hex::encode(Sha256::digest(&pdf));
        Self { name, pdf, sha256 }
    }
}

/// One letter for a postal service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterUpload {
    /// The idempotency key: the same at every attempt of one step.
    pub reference: String,
    pub invoice_number: String,
    pub step: String,
    pub step_id: uuid::Uuid,
    /// Registered with acknowledgement of receipt.
    pub registered: bool,
    /// The recipient's name, then the address lines.
    pub recipient: Vec<String>,
    /// The letter first, then enclosures (the invoice).
    pub documents: Vec<PostedDocument>,
    pub at: DateTime<Utc>,
}

/// The postal service's acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// Tracking number, the service's id, or the manifest written.
    pub reference: String,
    pub answer: String,
}

pub trait PostalService: Send + Sync {
    fn post<'a>(&'a self, letter: &'a LetterUpload) -> BoxFuture<'a, Result<Posted, DeliveryError>>;
}

fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The recipient's name and the address lines below it.
fn name_and_address(recipient: &[String]) -> (&str, &[String]) {
    match recipient.split_first() {
        Some((name, address)) => (name.as_str(), address),
        None => ("", &[]),
    }
}

/// Letters written to `<dir>/<date>/` with `manifest.jsonl`, once per reference.
pub struct PostalOutbox {
    dir: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl PostalOutbox {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    async fn write(&self, letter: &LetterUpload) -> anyhow::Result<PathBuf> {
        let _guard = self.lock.lock().await;
        if let Some(manifest) =
            outbox_file::written(&self.dir, letter.at, "manifest.jsonl", &letter.reference).await
        {
            return Ok(manifest);
        }
        let folder = outbox_file::dated_folder(&self.dir, letter.at).await?;
        let manifest = folder.join("manifest.jsonl");
        let mut files = Vec::new();
        for (i, document) in letter.documents.iter().enumerate() {
            let stem = format!(
                "{}-{}",
                file_safe(&letter.invoice_number),
                file_safe(&letter.step)
            );
            // The letter, the invoice, then other enclosures (the statement of account) under
            // their own names.
            let name = if i == 0 {
                format!("{stem}.pdf")
            } else if document.name == format!("{}.pdf", letter.invoice_number) {
                format!("{stem}-invoice.pdf")
            } else {
                let own = document.name.strip_suffix(".pdf").unwrap_or(&document.name);
                format!("{stem}-{}.pdf", file_safe(own))
            };
            let path = folder.join(&name);
            tokio::fs::write(&path, &document.pdf)
                .await
                .with_context(|| format!("writing {}", path.display()))?;
            files.push(json!({ "file": name, "sha256": document.sha256 }));
        }
        let (name, address) = name_and_address(&letter.recipient);
        let line = json!({
            "reference": letter.reference,
            "step": letter.step,
            "step_id": letter.step_id,
            "invoice": letter.invoice_number,
            "registered": letter.registered,
            "recipient": name,
            "address": address,
            "file": files.first().and_then(|f| f.get("file")),
            "sha256": letter.documents.first().map(|d| d.sha256.clone()),
            "enclosures": files.get(1..).unwrap_or_default(),
            "at": letter.at,
        });
        outbox_file::append_line(&manifest, &line, "the manifest").await?;
        Ok(manifest)
    }
}

impl PostalService for PostalOutbox {
    fn post<'a>(&'a self, letter: &'a LetterUpload) -> BoxFuture<'a, Result<Posted, DeliveryError>> {
        async move {
            let manifest = self.write(letter).await.map_err(|e| {
                DeliveryError::Transient(format!("writing the letter to the outbox failed: {e:#}"))
            })?;
            Ok(Posted {
                reference: format!("{}#{}", manifest.display(), letter.reference),
                answer: format!("written to {}", manifest.display()),
            })
        }
        .boxed()
    }
}

/// A print-and-post or registered-mail API: one JSON POST with the documents in base64.
pub struct HttpPostalService {
    api: http::JsonApi,
}

impl HttpPostalService {
    pub fn new(url: &str, token: Option<String>, timeout: std::time::Duration) -> anyhow::Result<Self> {
        Ok(Self {
            api: http::JsonApi::new("the postal service", url, token, timeout)?,
        })
    }
}

impl PostalService for HttpPostalService {
    fn post<'a>(&'a self, letter: &'a LetterUpload) -> BoxFuture<'a, Result<Posted, DeliveryError>> {
        async move {
            let (name, address) = name_and_address(&letter.recipient);
            let documents: Vec<_> = letter
                .documents
                .iter()
                .map(|d| {
                    json!({
                        "name": d.name,
                        "content_type": "application/pdf",
                        "sha256": d.sha256,
                        "content_base64": base64::engine::general_purpose::STANDARD.encode(&d.pdf),
                    })
                })
                .collect();
            let body = json!({
                "reference": letter.reference,
                "registered": letter.registered,
                "acknowledgement_of_receipt": letter.registered,
                "recipient": { "name": name, "address_lines": address },
                "documents": documents,
            });
            let (status, answer) = self.api.post(&letter.reference, &body).await?;
            let tracking = http::answer_field(&answer, &["tracking_number", "tracking", "id", "letter_id"]);
            Ok(Posted {
                answer: http::answer_line(status, "tracking", tracking.as_deref()),
                reference: tracking.unwrap_or_else(|| letter.reference.clone()),
            })
        }
        .boxed()
    }
}

/// The letter channel's courier (letters and registered letters).
pub struct LetterCourier {
    service: Arc<dyn PostalService>,
    requests: RequestLimit,
}

impl LetterCourier {
    pub fn new(service: Arc<dyn PostalService>) -> Self {
        Self {
            service,
            requests: RequestLimit::default(),
        }
    }

    /// Has at most `max` letters at the postal service at once (0: no limit).
    pub fn limited(mut self, max: usize) -> Self {
        self.requests = RequestLimit::new(max);
        self
    }

    /// The HTTP API of the settings, or the outbox folder when none is set.
    pub fn from_settings(channels: &ChannelSettings) -> anyhow::Result<Self> {
        let service: Arc<dyn PostalService> = match &channels.postal_api_url {
            Some(url) => Arc::new(HttpPostalService::new(
                url,
                channels.postal_api_token.clone(),
                channels.provider_timeout,
            )?),
            None => Arc::new(PostalOutbox::new(channels.letter_dir.clone())),
        };
        Ok(Self::new(service).limited(channels.provider_max_requests))
    }
}

impl Courier for LetterCourier {
    fn kind(&self) -> &'static str {
        "letter"
    }

    fn deliver<'a>(
        &'a self,
        parcel: &'a Parcel,
        gate: &'a dyn DeliveryGate,
    ) -> BoxFuture<'a, Result<Receipt, DeliveryError>> {
        async move {
            let Some((pdf, sha256)) = parcel.document.clone() else {
                return Err(DeliveryError::Permanent("the letter has no rendered PDF".into()));
            };
            let letter_name = format!("{}-{}.pdf", parcel.step.invoice_number, parcel.step.name);
            let mut documents = vec![PostedDocument {
                name: letter_name,
                pdf,
                sha256: sha256.clone(),
            }];
            if let Some(invoice) = parcel.invoice_pdf.clone() {
                documents.push(PostedDocument::new(
                    format!("{}.pdf", parcel.step.invoice_number),
                    invoice,
                ));
            }
            // The statement of account goes in the same envelope, after the invoice.
            if let Some((name, statement)) = parcel.statement.clone() {
                documents.push(PostedDocument::new(name, statement));
            }
            if documents
                .first()
                .is_some_and(|d| hex::encode(Sha256::digest(&d.pdf)) != d.sha256)
            {
                return Err(DeliveryError::Permanent(
                    "the stored letter does not match its SHA-256: not posted".into(),
                ));
            }
            let mut upload = LetterUpload {
                reference: parcel.key().to_string(),
                invoice_number: parcel.step.invoice_number.clone(),
                step: parcel.step.name.clone(),
                step_id: parcel.step.id,
                registered: parcel.step.channel == relance_domain::Channel::RegisteredLetter,
                recipient: parcel.rendered.recipients.clone(),
                documents,
                at: parcel.at,
            };
            // A turn at the provider first: the last check comes after any wait for it.
            let _turn = self.requests.turn().await;
            // One request: the last check right before it, no lock held across it. A request
            // that may have left makes an interrupted delivery ambiguous (stage
            // `data_end_sent`); it is resent with the same idempotency key only by policy.
            gate.confirm().await.map_err(DeliveryError::Aborted)?;
            // Dated when it goes, not when it was claimed: the turn may have taken a while.
            upload.at = gate.now();
            let posted = self.service.post(&upload).await?;
            Ok(Receipt {
                proof: posted.answer.clone(),
                reference: Some(posted.reference.clone()),
                detail: ReminderSentV1::Letter(LetterSentV1 {
                    message_id: upload.reference.clone(),
                    sha256: sha256.clone(),
                    registered: upload.registered,
                    tracking: posted.reference,
                    postal_response: posted.answer,
                    recipients: upload.recipient.clone(),
                    enclosures: upload.documents.iter().skip(1).map(|d| d.name.clone()).collect(),
                    stop_requested: None,
                }),
            })
        }
        .boxed()
    }
}
