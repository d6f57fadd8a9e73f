//! The journal: an append-only, hash-chained record of every action, the creditor's proof.
//!
//! One chain per invoice. Each entry stores the SHA-256 of its content (and of the document
//! it refers to); the database links it to the previous entry of its chain when the
//! transaction commits (trigger of migration ...0006; since ...20261204100000 the transaction's
//! own entries are found by id, noted at insert). Services only ever call [`append`] (or
//! [`append_with_message`], an entry and its outbox message in one statement).
//! The formats are in docs/journal.md; [`verify`] checks them.

pub mod canonical;
pub mod document;
pub mod verify;

use crate::outbox::{self, OutgoingMessage, PgQuery};
use anyhow::Context;
use canonical::EntryContent;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Appends an entry in the caller's transaction. An entry about a step that has a rendered
/// document carries that document's hash.
pub async fn append(
    tx: &mut PgConnection,
    at: DateTime<Utc>,
    invoice_number: &str,
    step_id: Option<Uuid>,
    action: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    append_to_chain(tx, at, Some(invoice_number), step_id, action, detail).await
}

/// Appends an entry about no invoice (an operator's action on the transport, such as a
/// dead letter replayed), in the caller's transaction: it goes to the chain `''`.
pub async fn append_unattached(
    tx: &mut PgConnection,
    at: DateTime<Utc>,
    action: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    append_to_chain(tx, at, None, None, action, detail).await
}

/// Appends an entry about `invoice_number` and, when given, adds `message` to the outbox,
/// both in the caller's transaction and in one statement: an event and its entry (or a job
/// and the entry that says it was queued) are one fact, and one round trip to the database
/// instead of two (on the hot path, three pairs per reminder).
pub async fn append_with_message(
    tx: &mut PgConnection,
    at: DateTime<Utc>,
    invoice_number: &str,
    step_id: Option<Uuid>,
    action: &str,
    detail: serde_json::Value,
    message: Option<&OutgoingMessage>,
) -> anyhow::Result<()> {
    let Some(message) = message else {
        return append_to_chain(tx, at, Some(invoice_number), step_id, action, detail).await;
    };
    let entry = Entry::new(&mut *tx, at, Some(invoice_number), step_id, action, detail).await?;
    let query = sqlx::query(
        "WITH entry AS (
             INSERT INTO journal (at, invoice_number, step_id, action, detail, document_sha256, content_sha256)
             VALUES ($1, $2, $3, $4, $5, $6, $7))
         INSERT INTO outbox (destination, routing_key, message_id, correlation_id, payload, headers, created_at)
         VALUES ($8, $9, $10, $11, $12, $13, $14)",
    );
    outbox::bind_message(entry.bind(query), message, at)
        .execute(tx)
        .await
        .with_context(|| format!("journaling {action} with its {} message", message.routing_key))?;
    Ok(())
}

/// An entry ready to be inserted: its time at the stored precision, and its hashes.
struct Entry<'a> {
    at: DateTime<Utc>,
    invoice_number: Option<&'a str>,
    step_id: Option<Uuid>,
    action: &'a str,
    detail: serde_json::Value,
    document_sha256: Option<String>,
    content_sha256: String,
}

impl<'a> Entry<'a> {
    /// Hashes an entry's content; one about a step that has a rendered document carries that
    /// document's hash (read in the caller's transaction).
    async fn new(
        tx: &mut PgConnection,
        at: DateTime<Utc>,
        invoice_number: Option<&'a str>,
        step_id: Option<Uuid>,
        action: &'a str,
        detail: serde_json::Value,
    ) -> anyhow::Result<Self> {
        let at = canonical::to_stored_precision(at);
        let document_sha256 = match step_id {
            Some(id) => document::for_step(&mut *tx, id).await?.map(|d| d.sha256()),
            None => None,
        };
        let content_sha256 = EntryContent {
            at,
            invoice_number,
            step_id,
            action,
            detail: &detail,
            document_sha256: document_sha256.as_deref(),
        }
        .sha256();
        Ok(Entry {
            at,
            invoice_number,
            step_id,
            action,
            detail,
            document_sha256,
            content_sha256,
        })
    }

    /// Binds the entry's seven columns, in the order of the journal's inserts above, as a
    /// query's first parameters.
    fn bind<'q>(self, query: PgQuery<'q>) -> PgQuery<'q>
    where
        'a: 'q,
    {
        query
            .bind(self.at)
            .bind(self.invoice_number)
            .bind(self.step_id)
            .bind(self.action)
            .bind(self.detail)
            .bind(self.document_sha256)
            .bind(self.content_sha256)
    }
}

async fn append_to_chain(
    tx: &mut PgConnection,
    at: DateTime<Utc>,
    invoice_number: Option<&str>,
    step_id: Option<Uuid>,
    action: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let entry = Entry::new(&mut *tx, at, invoice_number, step_id, action, detail).await?;
    let query = sqlx::query(
        "INSERT INTO journal (at, invoice_number, step_id, action, detail, document_sha256, content_sha256)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    );
    entry
        .bind(query)
        .execute(tx)
        .await
        .with_context(|| format!("journaling {action}"))?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct JournalEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub invoice_number: Option<String>,
    pub step_id: Option<Uuid>,
    pub action: String,
    pub detail: serde_json::Value,
}

/// One invoice's journal, oldest first.
pub async fn for_invoice(db: &sqlx::PgPool, invoice_number: &str) -> anyhow::Result<Vec<JournalEntry>> {
    sqlx::query_as("SELECT id, at, invoice_number, step_id, action, detail FROM journal WHERE invoice_number = $1 ORDER BY id")
        .bind(invoice_number)
        .fetch_all(db)
        .await
        .context("reading the journal")
}

/// An entry with its place in its chain, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChainedEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub invoice_number: Option<String>,
    pub step_id: Option<Uuid>,
    pub action: String,
    pub detail: serde_json::Value,
    pub document_sha256: Option<String>,
    pub content_sha256: Option<String>,
    pub seq: Option<i64>,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

impl ChainedEntry {
    pub fn content(&self) -> EntryContent<'_> {
        EntryContent {
            at: self.at,
            invoice_number: self.invoice_number.as_deref(),
            step_id: self.step_id,
            action: &self.action,
            detail: &self.detail,
            document_sha256: self.document_sha256.as_deref(),
        }
    }
}

const CHAINED_ENTRY: &str =
    "SELECT id, at, invoice_number, step_id, action, detail, document_sha256, content_sha256,
        seq, prev_hash, hash
    FROM journal";

/// Every entry of a chain (an invoice number), in chain order; entries without a link
/// (which relance never leaves behind) last.
pub async fn chain(conn: &mut PgConnection, chain: &str) -> anyhow::Result<Vec<ChainedEntry>> {
    sqlx::query_as(&format!(
        "{CHAINED_ENTRY} WHERE COALESCE(invoice_number, '') = $1 ORDER BY seq NULLS LAST, id"
    ))
    .bind(chain)
    .fetch_all(conn)
    .await
    .with_context(|| format!("reading the journal of {chain:?}"))
}

/// The last link of a chain, as recorded in `journal_heads`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Head {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
}

pub async fn head(conn: &mut PgConnection, chain: &str) -> anyhow::Result<Option<Head>> {
    sqlx::query_as("SELECT chain, seq, hash FROM journal_heads WHERE chain = $1")
        .bind(chain)
        .fetch_optional(conn)
        .await
        .context("reading the journal head")
}

/// Computes the content hashes of entries written before the journal was chained, and links
/// them. Run by `relance migrate` as the owner; does nothing once done.
pub async fn link_legacy_entries(db: &PgPool) -> anyhow::Result<u64> {
    let mut tx = db.begin().await.context("starting to link old journal entries")?;
    let legacy: Vec<ChainedEntry> = sqlx::query_as(&format!(
        "{CHAINED_ENTRY} WHERE hash IS NULL AND content_sha256 IS NULL AND id <= (SELECT max(up_to_id) FROM journal_legacy)
         ORDER BY id FOR UPDATE"
    ))
    .fetch_all(&mut *tx)
    .await
    .context("reading old journal entries")?;
    for entry in &legacy {
        let document_sha256 = match entry.step_id {
            Some(id) => document::for_step(&mut tx, id).await?.map(|d| d.sha256()),
            None => None,
        };
        let content = EntryContent {
            document_sha256: document_sha256.as_deref(),
            ..entry.content()
        };
        sqlx::query("UPDATE journal SET document_sha256 = $2, content_sha256 = $3 WHERE id = $1")
            .bind(entry.id)
            .bind(&document_sha256)
            .bind(content.sha256())
            .execute(&mut *tx)
            .await
            .context("hashing an old journal entry")?;
    }
    if !legacy.is_empty() {
        let ids: Vec<i64> = legacy.iter().map(|entry| entry.id).collect();
        sqlx::query("SELECT journal_link_ids($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .context("linking old journal entries")?;
    }
    tx.commit()
        .await
        .context("committing the old journal entries' links")?;
    Ok(legacy.len() as u64)
}
