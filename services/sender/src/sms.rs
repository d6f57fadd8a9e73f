//! Text messages: a gateway behind the small `SmsGateway` trait. `HttpSmsGateway` speaks
//! the common HTTP SMS API shape (JSON POST of `to`, `from`, `text` and a reference, bearer
//! or basic credentials, a message id back); `SmsOutbox` writes JSON lines to a dated
//! folder when no gateway is configured (demo, trials).

use crate::courier::{Courier, DeliveryError, DeliveryGate, Parcel, Receipt, RequestLimit};
use crate::http;
use crate::outbox_file;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use relance_config::ChannelSettings;
use relance_contracts::{ReminderSentV1, SmsSentV1};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// One text message for a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingSms {
    /// E.164.
    pub to: String,
    /// Sender name or number; empty: the gateway's default.
    pub from: String,
    pub text: String,
    /// The idempotency key: the same at every attempt of one step.
    pub reference: String,
    pub invoice_number: String,
}

/// The gateway's acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsAccepted {
    /// The gateway's message id (or where the outbox wrote it).
    pub message_id: Option<String>,
    /// One line: status and id.
    pub answer: String,
}

/// Something that takes text messages for delivery.
pub trait SmsGateway: Send + Sync {
    fn send<'a>(&'a self, sms: &'a OutgoingSms) -> BoxFuture<'a, Result<SmsAccepted, DeliveryError>>;
}

/// A gateway reached over HTTP.
pub struct HttpSmsGateway {
    api: http::JsonApi,
}

impl HttpSmsGateway {
    pub fn new(url: &str, token: Option<String>, timeout: std::time::Duration) -> anyhow::Result<Self> {
        Ok(Self {
            api: http::JsonApi::new("the SMS gateway", url, token, timeout)?,
        })
    }
}

impl SmsGateway for HttpSmsGateway {
    fn send<'a>(&'a self, sms: &'a OutgoingSms) -> BoxFuture<'a, Result<SmsAccepted, DeliveryError>> {
        async move {
            let mut body = json!({ "to": sms.to, "text": sms.text, "reference": sms.reference });
            if !sms.from.is_empty() {
                body["from"] = json!(sms.from);
            }
            let (status, answer) = self.api.post(&sms.reference, &body).await?;
            let message_id = http::answer_field(&answer, &["message_id", "messageId", "id", "sid"]);
            Ok(SmsAccepted {
                answer: http::answer_line(status, "id", message_id.as_deref()),
                message_id,
            })
        }
        .boxed()
    }
}

/// Text messages written as JSON lines to `<dir>/<date>/sms.jsonl`, once per reference.
pub struct SmsOutbox {
    dir: PathBuf,
    /// One writer at a time in this process: the check for a reference and the append.
    lock: tokio::sync::Mutex<()>,
}

impl SmsOutbox {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    async fn write(&self, sms: &OutgoingSms, at: DateTime<Utc>) -> anyhow::Result<PathBuf> {
        let _guard = self.lock.lock().await;
        if let Some(file) = outbox_file::written(&self.dir, at, "sms.jsonl", &sms.reference).await {
            return Ok(file);
        }
        let file = outbox_file::dated_folder(&self.dir, at).await?.join("sms.jsonl");
        let line = json!({
            "reference": sms.reference, "invoice": sms.invoice_number, "to": sms.to,
            "from": sms.from, "text": sms.text, "at": at,
        });
        outbox_file::append_line(&file, &line, "the SMS outbox").await?;
        Ok(file)
    }
}

/// [`SmsOutbox`] with the time to date its folder.
struct DatedSmsOutbox<'a> {
    outbox: &'a SmsOutbox,
    at: DateTime<Utc>,
}

impl SmsGateway for DatedSmsOutbox<'_> {
    fn send<'a>(&'a self, sms: &'a OutgoingSms) -> BoxFuture<'a, Result<SmsAccepted, DeliveryError>> {
        async move {
            let file =
                self.outbox.write(sms, self.at).await.map_err(|e| {
                    DeliveryError::Transient(format!("writing the text message failed: {e:#}"))
                })?;
            Ok(SmsAccepted {
                message_id: Some(format!("{}#{}", file.display(), sms.reference)),
                answer: format!("written to {}", file.display()),
            })
        }
        .boxed()
    }
}

/// Where text messages go.
pub enum SmsProvider {
    Gateway(Arc<dyn SmsGateway>),
    Outbox(SmsOutbox),
}

/// The SMS channel's courier.
pub struct SmsCourier {
    provider: SmsProvider,
    sender: String,
    requests: RequestLimit,
}

impl SmsCourier {
    pub fn new(provider: SmsProvider, sender: String) -> Self {
        Self {
            provider,
            sender,
            requests: RequestLimit::default(),
        }
    }

    /// Has at most `max` messages at the provider at once (0: no limit).
    pub fn limited(mut self, max: usize) -> Self {
        self.requests = RequestLimit::new(max);
        self
    }

    /// The HTTP gateway of the settings, or the outbox folder when none is set.
    pub fn from_settings(channels: &ChannelSettings) -> anyhow::Result<Self> {
        let provider = match &channels.sms_gateway_url {
            Some(url) => SmsProvider::Gateway(Arc::new(HttpSmsGateway::new(
                url,
                channels.sms_gateway_token.clone(),
                channels.provider_timeout,
            )?)),
            None => SmsProvider::Outbox(SmsOutbox::new(channels.sms_dir.clone())),
        };
        Ok(Self::new(provider, channels.sms_sender.clone()).limited(channels.provider_max_requests))
    }
}

impl Courier for SmsCourier {
    fn kind(&self) -> &'static str {
        "sms"
    }

    fn deliver<'a>(
        &'a self,
        parcel: &'a Parcel,
        gate: &'a dyn DeliveryGate,
    ) -> BoxFuture<'a, Result<Receipt, DeliveryError>> {
        async move {
            let to = parcel
                .rendered
                .recipients
                .first()
                .cloned()
                .ok_or_else(|| DeliveryError::Permanent("the text message has no recipient".into()))?;
            let sms = OutgoingSms {
                to,
                // The invoice's creditor's sender id; the deployment's when it has none.
                from: match parcel.creditor.sms_sender.trim() {
                    "" => self.sender.clone(),
                    own => own.to_string(),
                },
                text: parcel.rendered.body_text.clone(),
                reference: parcel.key().to_string(),
                invoice_number: parcel.step.invoice_number.clone(),
            };
            // A turn at the provider first: the last check comes after any wait for it.
            let _turn = self.requests.turn().await;
            // One request: the last check right before it, no lock held across it. A request
            // that may have left makes an interrupted delivery ambiguous (stage
            // `data_end_sent`); it is resent with the same idempotency key only by policy.
            gate.confirm().await.map_err(DeliveryError::Aborted)?;
            let accepted = match &self.provider {
                SmsProvider::Gateway(gateway) => gateway.send(&sms).await?,
                SmsProvider::Outbox(outbox) => {
                    // Dated when it goes, not when it was claimed: the turn may have taken a while.
                    DatedSmsOutbox {
                        outbox,
                        at: gate.now(),
                    }
                    .send(&sms)
                    .await?
                }
            };
            Ok(Receipt {
                proof: accepted.answer.clone(),
                reference: accepted.message_id.clone(),
                detail: ReminderSentV1::Sms(SmsSentV1 {
                    message_id: sms.reference.clone(),
                    gateway_message_id: accepted.message_id,
                    gateway_response: accepted.answer,
                    recipients: vec![sms.to.clone()],
                    stop_requested: None,
                }),
            })
        }
        .boxed()
    }
}
