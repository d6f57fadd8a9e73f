//! The documents journal entries refer to: what the renderer produced for a step (the
//! message, a letter's PDF, and the invoice PDF attached), in the canonical form whose
//! SHA-256 the journal keeps.

use super::canonical::{canonical_json, sha256_hex, timestamp, DOCUMENT_FORMAT};
use crate::steps::RenderedMessage;
use anyhow::Context;
use sqlx::PgConnection;
use uuid::Uuid;

/// A rendered message as stored, with the SHA-256 of the PDF rendered for it (a letter) and
/// of the invoice PDF when it is attached, both computed from the bytes stored now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Document {
    #[sqlx(flatten)]
    pub message: RenderedMessage,
    pub rendered_pdf_sha256: Option<String>,
    pub invoice_pdf_sha256: Option<String>,
}

impl Document {
    /// The canonical form (docs/journal.md). Every field of the rendered message is listed:
    /// a field added to `RenderedMessage` must be added here (or deliberately left out), so
    /// that the proof covers what is sent.
    pub fn canonical(&self) -> String {
        let RenderedMessage {
            step_id,
            channel,
            message_id,
            recipients,
            cc,
            subject,
            body_text,
            body_html,
            attach_invoice,
            rendered_at,
        } = &self.message;
        canonical_json(&serde_json::json!({
            "format": DOCUMENT_FORMAT,
            "step_id": step_id.to_string(),
            "channel": channel,
            "message_id": message_id,
            "recipients": recipients,
            "cc": cc,
            "subject": subject,
            "body_text": body_text,
            "body_html": body_html,
            "attach_invoice": attach_invoice,
            "rendered_pdf_sha256": self.rendered_pdf_sha256,
            "invoice_pdf_sha256": self.invoice_pdf_sha256,
            "rendered_at": timestamp(*rendered_at),
        }))
    }

    pub fn sha256(&self) -> String {
        sha256_hex(self.canonical().as_bytes())
    }
}

/// The document of a step, if it was rendered.
pub async fn for_step(conn: &mut PgConnection, step_id: Uuid) -> anyhow::Result<Option<Document>> {
    sqlx::query_as(
        "SELECT r.step_id, r.channel, r.message_id, r.recipients, r.cc, r.subject, r.body_text, r.body_html,
                r.attach_invoice, r.rendered_at, encode(sha256(r.document), 'hex') AS rendered_pdf_sha256,
                CASE WHEN r.attach_invoice THEN i.pdf_sha256 END AS invoice_pdf_sha256
         FROM rendered_messages r
         JOIN reminder_steps s ON s.id = r.step_id
         JOIN invoices i ON i.id = s.invoice_id
         WHERE r.step_id = $1",
    )
    .bind(step_id)
    .fetch_optional(conn)
    .await
    .context("reading the rendered document")
}
