//! The documents journal entries refer to: what the renderer produced for a step (the
//! message, a letter's PDF, and the invoice PDF attached), in the canonical form whose
//! SHA-256 the journal keeps; and the renderings a step had before, replaced before delivery.

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

/// A rendering of a step replaced before it was delivered (see
/// `steps::supersede_renderings`), in the same canonical form.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Superseded {
    pub id: i64,
    #[sqlx(flatten)]
    pub document: Document,
    pub superseded_at: chrono::DateTime<chrono::Utc>,
    pub reason: String,
}

/// The renderings of a step that were replaced before delivery, oldest first.
pub async fn superseded_for_step(conn: &mut PgConnection, step_id: Uuid) -> anyhow::Result<Vec<Superseded>> {
    sqlx::query_as(
        "SELECT r.id, r.step_id, r.channel, r.message_id, r.recipients, r.cc, r.subject, r.body_text, r.body_html,
                r.attach_invoice, r.rendered_at, encode(sha256(r.document), 'hex') AS rendered_pdf_sha256,
                CASE WHEN r.attach_invoice THEN i.pdf_sha256 END AS invoice_pdf_sha256,
                r.superseded_at, r.reason
         FROM superseded_renderings r
         JOIN reminder_steps s ON s.id = r.step_id
         JOIN invoices i ON i.id = s.invoice_id
         WHERE r.step_id = $1
         ORDER BY r.id",
    )
    .bind(step_id)
    .fetch_all(conn)
    .await
    .context("reading the superseded renderings")
}

/// The PDF of a superseded rendering (a letter), as rendered.
pub async fn superseded_pdf(conn: &mut PgConnection, id: i64) -> anyhow::Result<Option<Vec<u8>>> {
    let pdf: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT document FROM superseded_renderings WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await
            .context("reading a superseded PDF")?;
    Ok(pdf.flatten())
}

/// The hashes of every document a step had: its current rendering, then those it replaced.
pub async fn hashes_for_step(conn: &mut PgConnection, step_id: Uuid) -> anyhow::Result<Vec<String>> {
    let mut hashes: Vec<String> = for_step(&mut *conn, step_id)
        .await?
        .map(|d| d.sha256())
        .into_iter()
        .collect();
    hashes.extend(
        superseded_for_step(conn, step_id)
            .await?
            .iter()
            .map(|s| s.document.sha256()),
    );
    Ok(hashes)
}
