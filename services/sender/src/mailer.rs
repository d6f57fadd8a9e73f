//! Email delivery: over SMTP when `SMTP_URL` is set (the conversation in `smtp`, gated
//! before the end of DATA), otherwise into `.eml` files (the demo needs no mail server). Classifies failures as transient (4xx, network)
//! or permanent (5xx), and returns the server's answer as proof.

use crate::courier::{Courier, DeliveryGate, Parcel, Receipt};
use crate::smtp::SmtpEndpoint;
use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use relance_config::Settings;
use relance_contracts::{EmailSentV1, ReminderSentV1};
use relance_storage::steps::RenderedMessage;
use std::path::PathBuf;
use std::time::Duration;

pub enum Mailer {
    /// Over SMTP, one transaction per message on a reused connection, gated before the end
    /// of DATA.
    Smtp(SmtpEndpoint),
    Files(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

pub use crate::courier::DeliveryError;
pub use crate::smtp::SMTP_REFUSAL;

/// Whether a failure reason is the SMTP server's permanent refusal (a bounce), as opposed
/// to a message relance could not build.
pub fn is_smtp_refusal(reason: &str) -> bool {
    reason.starts_with(SMTP_REFUSAL)
}

impl Mailer {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        match &settings.smtp_url {
            Some(url) => {
                let endpoint = SmtpEndpoint::from_url(url, Duration::from_secs(30))
                    .context("SMTP_URL is not a valid smtp:// or smtps:// URL")?
                    .pooled(settings.smtp_pool_size)
                    .limited(settings.smtp_max_connections);
                let endpoint = match &settings.smtp_ca_file {
                    Some(file) => {
                        let pem = std::fs::read(file)
                            .with_context(|| format!("reading RELANCE_SMTP_CA_FILE {}", file.display()))?;
                        endpoint
                            .trusting(&pem)
                            .with_context(|| format!("RELANCE_SMTP_CA_FILE {}", file.display()))?
                    }
                    None => endpoint,
                };
                Ok(Mailer::Smtp(endpoint))
            }
            None => {
                std::fs::create_dir_all(&settings.mail_dir)
                    .with_context(|| format!("creating the mail folder {}", settings.mail_dir.display()))?;
                Ok(Mailer::Files(
                    AsyncFileTransport::new(&settings.mail_dir),
                    settings.mail_dir.clone(),
                ))
            }
        }
    }

    /// Delivers the message, past `gate`'s last check; returns the proof (the SMTP server's
    /// answer, or the file) and how long the exchange took (not counting a wait for a free
    /// SMTP connection).
    pub async fn deliver(
        &self,
        message: Message,
        gate: &dyn DeliveryGate,
    ) -> Result<(String, Duration), DeliveryError> {
        match self {
            Mailer::Smtp(endpoint) => {
                endpoint
                    .deliver_timed(message.envelope(), &message.formatted(), gate)
                    .await
            }
            Mailer::Files(transport, dir) => {
                let started = std::time::Instant::now();
                gate.confirm().await.map_err(DeliveryError::Aborted)?;
                match transport.send(message).await {
                    Ok(id) => Ok((
                        format!("written to {}", dir.join(format!("{id}.eml")).display()),
                        started.elapsed(),
                    )),
                    Err(e) => Err(DeliveryError::Transient(format!(
                        "writing the email file failed: {e}"
                    ))),
                }
            }
        }
    }
}

/// `Disposition-Notification-To` (RFC 8098): where the customer's mail program sends a read
/// notification, when the policy's step asks for an acknowledgement of receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispositionNotificationTo(String);

impl lettre::message::header::Header for DispositionNotificationTo {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Disposition-Notification-To")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.trim().to_string()))
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// Builds the MIME message: text and HTML alternatives, the invoice PDF attached, then the
/// statement of account (its file name, its PDF) when the message carries one.
pub fn build_message(
    rendered: &RenderedMessage,
    mail_from: &str,
    reply_to: &str,
    invoice_number: &str,
    pdf: Option<Vec<u8>>,
    statement: Option<(String, Vec<u8>)>,
    at: DateTime<Utc>,
) -> Result<Message, DeliveryError> {
    let mailbox = |address: &str| -> Result<Mailbox, DeliveryError> {
        address
            .parse::<Mailbox>()
            .map_err(|e| DeliveryError::Permanent(format!("invalid address {address:?}: {e}")))
    };
    let mut builder = Message::builder()
        .from(mailbox(mail_from)?)
        .reply_to(mailbox(reply_to)?)
        .subject(rendered.subject.clone())
        .message_id(Some(rendered.message_id.clone()))
        .date(at.into());
    for to in &rendered.recipients {
        builder = builder.to(mailbox(to)?);
    }
    for cc in &rendered.cc {
        builder = builder.cc(mailbox(cc)?);
    }
    let alternatives = match &rendered.body_html {
        Some(html) => MultiPart::alternative_plain_html(rendered.body_text.clone(), html.clone()),
        None => MultiPart::alternative().singlepart(SinglePart::plain(rendered.body_text.clone())),
    };
    let mut attachments = Vec::new();
    if let Some(pdf) = pdf {
        let file_name = format!(
            "{}.pdf",
            invoice_number.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "_")
        );
        attachments.push((file_name, pdf));
    }
    attachments.extend(statement);
    let body = if attachments.is_empty() {
        alternatives
    } else {
        let pdf_type =
            ContentType::parse("application/pdf").map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        attachments.into_iter().fold(
            MultiPart::mixed().multipart(alternatives),
            |mixed, (file_name, pdf)| {
                mixed.singlepart(Attachment::new(file_name).body(pdf, pdf_type.clone()))
            },
        )
    };
    builder
        .multipart(body)
        .map_err(|e| DeliveryError::Permanent(format!("building the email failed: {e}")))
}

/// The email channel's courier: the mailer and the default creditor's addresses (an
/// invoice's creditor's own, on its parcel, come first).
pub struct EmailCourier {
    pub mailer: Mailer,
    pub mail_from: String,
    pub reply_to: String,
}

impl Courier for EmailCourier {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn deliver<'a>(
        &'a self,
        parcel: &'a Parcel,
        gate: &'a dyn DeliveryGate,
    ) -> BoxFuture<'a, Result<Receipt, DeliveryError>> {
        async move {
            let rendered = &parcel.rendered;
            // The invoice's creditor's addresses; the deployment's when it has none.
            let own = |address: &'a str, default: &'a str| {
                if address.trim().is_empty() {
                    default
                } else {
                    address
                }
            };
            let mut email = build_message(
                rendered,
                own(&parcel.creditor.mail_from, &self.mail_from),
                own(&parcel.creditor.reply_to, &self.reply_to),
                &parcel.step.invoice_number,
                parcel.invoice_pdf.clone(),
                parcel.statement.clone(),
                parcel.at,
            )?;
            if parcel.request_receipt {
                // A read notification (RFC 8098) goes to the reply-to mailbox, which the
                // replies reader reads.
                let to = self.reply_to.parse::<Mailbox>().map_err(|e| {
                    DeliveryError::Permanent(format!("invalid address {:?}: {e}", self.reply_to))
                })?;
                email.headers_mut().set(DispositionNotificationTo(to.to_string()));
            }
            let (answer, took) = self.mailer.deliver(email, gate).await?;
            Ok(Receipt {
                proof: answer.clone(),
                reference: None,
                detail: ReminderSentV1::Email(EmailSentV1 {
                    message_id: rendered.message_id.clone(),
                    smtp_response: answer,
                    recipients: rendered.recipients.clone(),
                    cc: rendered.cc.clone(),
                    subject: rendered.subject.clone(),
                    smtp_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                    stop_requested: None,
                }),
            })
        }
        .boxed()
    }
}
