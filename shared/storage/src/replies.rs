//! The reply-to mailbox as relance read it: each mail taken once (`mailbox_messages`), the
//! customers' replies until someone handles them (`mail_replies`), and acknowledgements of
//! receipt (`receipt_acknowledgements`).

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A mail taken from the mailbox.
#[derive(Debug, Clone)]
pub struct TakenMail<'a> {
    /// Its Message-ID, or the SHA-256 of its bytes when it has none.
    pub key: &'a str,
    pub mailbox: &'a str,
    pub uid_validity: u32,
    pub uid: u32,
    pub sha256: &'a str,
    /// `reply`, `bounce`, `acknowledgement`, `unmatched` or `ignored`.
    pub outcome: &'a str,
    pub invoice_id: Option<Uuid>,
}

/// Records a mail as taken; false when it already was (another copy of the reader, an
/// earlier run, a second copy of the mail): the caller then does nothing with it.
pub async fn take(tx: &mut PgConnection, mail: &TakenMail<'_>, at: DateTime<Utc>) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO mailbox_messages (mail_key, mailbox, uid_validity, uid, sha256, outcome, invoice_id, processed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(mail.key)
    .bind(mail.mailbox)
    .bind(i64::from(mail.uid_validity))
    .bind(i64::from(mail.uid))
    .bind(mail.sha256)
    .bind(mail.outcome)
    .bind(mail.invoice_id)
    .bind(at)
    .execute(tx)
    .await
    .context("recording the mail as taken")?;
    Ok(inserted.rows_affected() == 1)
}

/// The UIDs of the mailbox already taken (under this UIDVALIDITY).
pub async fn taken_uids(db: &PgPool, mailbox: &str, uid_validity: u32) -> anyhow::Result<Vec<u32>> {
    let uids: Vec<i64> =
        sqlx::query_scalar("SELECT uid FROM mailbox_messages WHERE mailbox = $1 AND uid_validity = $2")
            .bind(mailbox)
            .bind(i64::from(uid_validity))
            .fetch_all(db)
            .await
            .context("reading the mails already taken")?;
    Ok(uids.into_iter().filter_map(|u| u32::try_from(u).ok()).collect())
}

/// The UIDs of the mails taken that concern an invoice (every outcome but `unmatched`): they
/// are to be flagged `\Seen` (again, if a reader stopped between its commit and the flag).
pub async fn uids_to_flag(db: &PgPool, mailbox: &str, uid_validity: u32) -> anyhow::Result<Vec<u32>> {
    let uids: Vec<i64> = sqlx::query_scalar(
        "SELECT uid FROM mailbox_messages WHERE mailbox = $1 AND uid_validity = $2 AND outcome <> 'unmatched'",
    )
    .bind(mailbox)
    .bind(i64::from(uid_validity))
    .fetch_all(db)
    .await
    .context("reading the mails to flag")?;
    Ok(uids.into_iter().filter_map(|u| u32::try_from(u).ok()).collect())
}

/// Whether a mail of that key was taken already.
pub async fn is_taken(db: &PgPool, key: &str) -> anyhow::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM mailbox_messages WHERE mail_key = $1)")
        .bind(key)
        .fetch_one(db)
        .await
        .context("looking the mail up")
}

/// A message relance sent, found by its Message-ID.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SentMessage {
    pub step_id: Uuid,
    pub invoice_id: Uuid,
    pub invoice_number: String,
    pub message_id: String,
    /// Its recipients, as rendered.
    pub recipients: Vec<String>,
}

/// The messages relance sent under these Message-IDs (with or without angle brackets),
/// each with the invoices it spoke of (a grouped message: one row per invoice).
pub async fn sent_messages(db: &PgPool, message_ids: &[String]) -> anyhow::Result<Vec<SentMessage>> {
    let ids: Vec<String> = message_ids
        .iter()
        .map(|id| format!("<{}>", id.trim().trim_start_matches('<').trim_end_matches('>')))
        .collect();
    sqlx::query_as(
        "SELECT r.step_id, i.id AS invoice_id, i.number AS invoice_number, r.message_id, r.recipients
         FROM rendered_messages r
         JOIN reminder_steps s ON s.id = ANY(array_prepend(r.step_id, r.grouped_steps))
         JOIN invoices i ON i.id = s.invoice_id
         WHERE r.message_id = ANY($1)
         ORDER BY i.number",
    )
    .bind(&ids)
    .fetch_all(db)
    .await
    .context("finding the messages replied to")
}

/// A customer's reply to record.
#[derive(Debug, Clone)]
pub struct NewReply<'a> {
    pub invoice_id: Uuid,
    pub step_id: Option<Uuid>,
    pub mail_key: &'a str,
    pub from: &'a str,
    pub subject: &'a str,
    pub sent_at: Option<DateTime<Utc>>,
    pub excerpt: &'a str,
    pub sha256: &'a str,
    /// Whether it paused the sequence.
    pub pauses: bool,
}

pub async fn insert_reply(
    tx: &mut PgConnection,
    reply: &NewReply<'_>,
    at: DateTime<Utc>,
) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO mail_replies (id, invoice_id, step_id, mail_key, from_address, subject, sent_at, excerpt, sha256, received_at, pauses)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(reply.invoice_id)
    .bind(reply.step_id)
    .bind(reply.mail_key)
    .bind(reply.from)
    .bind(reply.subject)
    .bind(reply.sent_at)
    .bind(reply.excerpt)
    .bind(reply.sha256)
    .bind(at)
    .bind(reply.pauses)
    .execute(tx)
    .await
    .context("recording the reply")?;
    Ok(id)
}

/// A reply as `relance tasks` and the console's task page list it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ReplyTask {
    pub id: Uuid,
    pub invoice_number: String,
    pub customer_name: String,
    pub from_address: String,
    pub subject: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub excerpt: String,
    pub received_at: DateTime<Utc>,
    pub pauses: bool,
    pub handled_at: Option<DateTime<Utc>>,
    pub handled_note: Option<String>,
}

/// The replies to handle (all of them with `all`), oldest first.
pub async fn list(db: &PgPool, all: bool) -> anyhow::Result<Vec<ReplyTask>> {
    sqlx::query_as(
        "SELECT r.id, i.number AS invoice_number, c.name AS customer_name, r.from_address, r.subject,
                r.sent_at, r.excerpt, r.received_at, r.pauses, r.handled_at, r.handled_note
         FROM mail_replies r JOIN invoices i ON i.id = r.invoice_id JOIN customers c ON c.id = i.customer_id
         WHERE $1 OR r.handled_at IS NULL
         ORDER BY r.received_at, r.id",
    )
    .bind(all)
    .fetch_all(db)
    .await
    .context("listing the replies")
}

/// A reply as `reply.handled` addresses it: its invoice, and whether it was handled.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReplyRef {
    pub invoice_number: String,
    pub handled_at: Option<DateTime<Utc>>,
}

/// The reply `id`, to address `reply.handled` (and not to send one for a reply handled).
pub async fn find_reply(db: &PgPool, id: Uuid) -> anyhow::Result<Option<ReplyRef>> {
    sqlx::query_as(
        "SELECT i.number AS invoice_number, r.handled_at
         FROM mail_replies r JOIN invoices i ON i.id = r.invoice_id WHERE r.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
    .context("finding the reply")
}

/// Marks the invoice's reply handled; false when it is not a reply of that invoice or was
/// handled already.
pub async fn mark_handled(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    id: Uuid,
    note: Option<&str>,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE mail_replies SET handled_at = $3, handled_note = $4
         WHERE id = $1 AND invoice_id = $2 AND handled_at IS NULL",
    )
    .bind(id)
    .bind(invoice_id)
    .bind(at)
    .bind(note)
    .execute(tx)
    .await
    .context("marking the reply handled")?;
    Ok(updated.rows_affected() == 1)
}

/// How many of the invoice's replies that paused it are still to handle.
pub async fn open_pausing(tx: &mut PgConnection, invoice_id: Uuid) -> anyhow::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM mail_replies WHERE invoice_id = $1 AND pauses AND handled_at IS NULL",
    )
    .bind(invoice_id)
    .fetch_one(tx)
    .await
    .context("counting the replies to handle")
}

/// Records an acknowledgement of receipt; false when the same one (same source message) was
/// recorded already.
pub async fn record_acknowledgement(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    source: &str,
    source_id: &str,
    acknowledged_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO receipt_acknowledgements (invoice_id, source, source_id, acknowledged_at, recorded_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(invoice_id)
    .bind(source)
    .bind(source_id)
    .bind(acknowledged_at)
    .bind(at)
    .execute(tx)
    .await
    .context("recording the acknowledgement of receipt")?;
    Ok(inserted.rows_affected() == 1)
}

/// Whether the customer acknowledged receiving the invoice, and when first.
pub async fn acknowledged_at(db: &PgPool, invoice_number: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "SELECT min(a.acknowledged_at) FROM receipt_acknowledgements a JOIN invoices i ON i.id = a.invoice_id
         WHERE i.number = $1",
    )
    .bind(invoice_number)
    .fetch_one(db)
    .await
    .context("reading the acknowledgements of receipt")
}
