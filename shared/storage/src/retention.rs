//! Retention: removes published outbox rows and inbox records (`processed_messages`) older
//! than their window, in batches of at most `batch` rows per statement, each batch in its own
//! short transaction, so that no lock is held for long and the relays and consumers never
//! wait behind a purge. One process purges at a time: each batch first takes a transaction
//! advisory lock, and a process that finds it taken leaves the work to its holder.
//! It never touches an unpublished outbox row, whatever its age.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The advisory lock of the purge.
const PURGE_LOCK: i64 = crate::locks::RETENTION_PURGE;

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub outbox: u64,
    pub inbox: u64,
    /// Another process held the purge lock: it does the work.
    pub skipped: bool,
}

#[derive(Debug, Clone, Copy)]
enum Table {
    Outbox,
    Inbox,
}

impl Table {
    /// One batch: the oldest rows past the cutoff, through the index on their time
    /// (migration 20261203200000), deleted by row address.
    fn statement(self) -> &'static str {
        match self {
            Table::Outbox => {
                "DELETE FROM outbox WHERE id = ANY(ARRAY(
                     SELECT id FROM outbox WHERE published_at < $1 ORDER BY published_at LIMIT $2))"
            }
            Table::Inbox => {
                "DELETE FROM processed_messages WHERE ctid = ANY(ARRAY(
                     SELECT ctid FROM processed_messages WHERE processed_at < $1 ORDER BY processed_at LIMIT $2))"
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Table::Outbox => "published outbox rows",
            Table::Inbox => "inbox records",
        }
    }
}

/// Deletes one batch; `None` when another process holds the purge lock.
async fn purge_batch(
    db: &PgPool,
    table: Table,
    before: DateTime<Utc>,
    batch: i64,
) -> anyhow::Result<Option<u64>> {
    let mut tx = db.begin().await.context("starting a purge transaction")?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(PURGE_LOCK)
        .fetch_one(&mut *tx)
        .await
        .context("taking the purge lock")?;
    if !locked {
        return Ok(None);
    }
    let deleted = sqlx::query(table.statement())
        .bind(before)
        .bind(batch)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("deleting {} older than {before}", table.name()))?
        .rows_affected();
    tx.commit().await.context("committing a purge batch")?;
    Ok(Some(deleted))
}

/// Deletes, batch after batch, every row of `table` older than `before`. Returns how many,
/// or `None` when another process holds the purge lock.
async fn purge_table(
    db: &PgPool,
    table: Table,
    before: DateTime<Utc>,
    batch: i64,
) -> anyhow::Result<Option<u64>> {
    let mut total = 0u64;
    loop {
        let Some(deleted) = purge_batch(db, table, before, batch).await? else {
            return Ok((total > 0).then_some(total));
        };
        total = total.saturating_add(deleted);
        if deleted < u64::try_from(batch).unwrap_or(u64::MAX) {
            return Ok(Some(total));
        }
    }
}

/// One pass: published outbox rows published before `outbox_before`, inbox records of
/// messages applied before `inbox_before`.
pub async fn purge(
    db: &PgPool,
    outbox_before: DateTime<Utc>,
    inbox_before: DateTime<Utc>,
    batch: i64,
) -> anyhow::Result<Purged> {
    let outbox = purge_table(db, Table::Outbox, outbox_before, batch).await?;
    let inbox = purge_table(db, Table::Inbox, inbox_before, batch).await?;
    Ok(Purged {
        outbox: outbox.unwrap_or(0),
        inbox: inbox.unwrap_or(0),
        skipped: outbox.is_none() && inbox.is_none(),
    })
}
