//! Verification of the journal: every chain is complete (positions 1, 2, 3... up to its
//! head), every entry's content, link and document still hash to what was recorded. It reads
//! only; what it cannot see is a chain rewritten whole with its head (hashes recomputed by
//! someone with the owner's rights): the head hashes carried by exports and hand-off events
//! are the outside copies that expose that.

use super::canonical::{link_hash, GENESIS_HASH};
use super::{chain, document, ChainedEntry, Head};
use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use uuid::Uuid;

/// The first thing wrong in one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub chain: String,
    /// The entry at fault, when there is one (none when the chain lost its last entries).
    pub entry_id: Option<i64>,
    pub seq: Option<i64>,
    pub action: Option<String>,
    pub at: Option<DateTime<Utc>>,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry_id {
            Some(id) => write!(
                f,
                "entry #{id} (invoice {:?}, seq {}, {} at {})",
                self.chain,
                self.seq.map_or("none".to_string(), |s| s.to_string()),
                self.action.as_deref().unwrap_or("?"),
                self.at.map_or("?".to_string(), super::canonical::timestamp),
            )?,
            None => write!(f, "invoice {:?}", self.chain)?,
        }
        write!(f, ": {}", self.reason)
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    pub chains: u64,
    pub entries: u64,
    pub documents: u64,
    /// At most one per chain (later entries of a broken chain are not trusted either), in
    /// chain-name order.
    pub problems: Vec<Problem>,
}

impl Verification {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// The broken entry with the lowest id: the earliest written of the first breaks.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems
            .iter()
            .min_by_key(|p| p.entry_id.unwrap_or(i64::MAX))
    }
}

/// Verifies every chain, one after the other.
pub async fn verify_all(db: &PgPool) -> anyhow::Result<Verification> {
    let mut conn = db.acquire().await.context("acquiring a connection")?;
    let chains: Vec<String> = sqlx::query_scalar(
        "SELECT chain FROM journal_heads UNION SELECT DISTINCT COALESCE(invoice_number, '') FROM journal ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .context("listing the journal's chains")?;
    // A snapshot per chain, not one for the whole journal: a run over millions of entries
    // would hold back the primary's vacuum (or, on a replica, be cancelled by its replay).
    let mut report = Verification::default();
    for name in chains {
        let mut tx = snapshot(&mut conn).await?;
        verify_into(&mut tx, &name, &mut report).await?;
        tx.commit().await.context("ending a chain's verification")?;
    }
    Ok(report)
}

/// Verifies one chain (one invoice's journal). `conn` must not be in a transaction: the
/// verification takes its own snapshot.
pub async fn verify_chain(conn: &mut PgConnection, name: &str) -> anyhow::Result<Verification> {
    let mut tx = snapshot(conn).await?;
    let report = verify_chain_in_snapshot(&mut tx, name).await?;
    tx.commit().await.context("ending the chain's verification")?;
    Ok(report)
}

/// Verifies one chain in the caller's transaction, which must be a [`snapshot`] (as an
/// export that reads the chain, its head and its documents besides is).
pub async fn verify_chain_in_snapshot(conn: &mut PgConnection, name: &str) -> anyhow::Result<Verification> {
    let mut report = Verification::default();
    verify_into(conn, name, &mut report).await?;
    Ok(report)
}

/// A snapshot for a verification ([`crate::read_snapshot`]): a chain's entries and its head
/// are read by separate statements, and an entry committed between them (the services run
/// on) would otherwise look like a chain cut short after its last entry read.
pub async fn snapshot(conn: &mut PgConnection) -> anyhow::Result<sqlx::Transaction<'_, sqlx::Postgres>> {
    crate::read_snapshot(conn)
        .await
        .context("reading the journal in one snapshot")
}

async fn verify_into(conn: &mut PgConnection, name: &str, report: &mut Verification) -> anyhow::Result<()> {
    let entries = chain(&mut *conn, name).await?;
    let head = super::head(&mut *conn, name).await?;
    let mut documents: HashMap<Uuid, Vec<String>> = HashMap::new();
    for entry in &entries {
        if let (Some(_), Some(step)) = (&entry.document_sha256, entry.step_id) {
            if let Entry::Vacant(slot) = documents.entry(step) {
                slot.insert(document::hashes_for_step(&mut *conn, step).await?);
            }
        }
    }
    report.chains += 1;
    report.entries += entries.len() as u64;
    report.documents += documents.len() as u64;
    if let Some(problem) = first_break(name, &entries, head.as_ref(), &documents) {
        report.problems.push(problem);
    }
    Ok(())
}

/// Walks a chain in order and returns what is wrong first. `documents` holds the hashes of
/// each referred step's documents as stored now: its rendering, and the renderings it
/// replaced before delivery (empty: the documents are gone).
pub fn first_break(
    name: &str,
    entries: &[ChainedEntry],
    head: Option<&Head>,
    documents: &HashMap<Uuid, Vec<String>>,
) -> Option<Problem> {
    let at_entry = |e: &ChainedEntry, reason: String| Problem {
        chain: name.to_string(),
        entry_id: Some(e.id),
        seq: e.seq,
        action: Some(e.action.clone()),
        at: Some(e.at),
        reason,
    };
    let mut prev_hash = GENESIS_HASH.to_string();
    let mut expected_seq = 1;
    for e in entries {
        let (Some(seq), Some(prev), Some(hash), Some(content_sha256)) =
            (e.seq, &e.prev_hash, &e.hash, &e.content_sha256)
        else {
            return Some(at_entry(
                e,
                "it has no hash: it was not written by relance (or predates the chain and `relance migrate` has not linked it yet)".into(),
            ));
        };
        if seq != expected_seq {
            return Some(at_entry(
                e,
                if seq > expected_seq {
                    format!("it is at position {seq} where {expected_seq} was expected: the entries before it were deleted")
                } else {
                    format!("it is at position {seq}, already taken: entries were reordered")
                },
            ));
        }
        if *prev != prev_hash {
            return Some(at_entry(
                e,
                "its prev_hash is not the hash of the entry before it: entries were removed, inserted or reordered".into(),
            ));
        }
        if e.content().sha256() != *content_sha256 {
            return Some(at_entry(
                e,
                "its content no longer matches its content_sha256: the entry was modified".into(),
            ));
        }
        if link_hash(e.id, seq, prev, content_sha256) != *hash {
            return Some(at_entry(
                e,
                "its hash does not match its id, position, prev_hash and content: the entry was modified"
                    .into(),
            ));
        }
        if let (Some(recorded), Some(step)) = (&e.document_sha256, e.step_id) {
            match documents.get(&step) {
                Some(stored) if stored.contains(recorded) => {}
                Some(stored) if !stored.is_empty() => {
                    return Some(at_entry(
                        e,
                        format!("the document of step {step} no longer matches the hash recorded: the rendered message (or its attached invoice PDF) was modified"),
                    ))
                }
                _ => {
                    return Some(at_entry(
                        e,
                        format!("the document of step {step} it refers to is missing"),
                    ))
                }
            }
        }
        prev_hash = hash.clone();
        expected_seq = seq + 1;
    }
    let last_seq = expected_seq - 1;
    let cut = |reason: String| Problem {
        chain: name.to_string(),
        entry_id: None,
        seq: None,
        action: None,
        at: None,
        reason,
    };
    match head {
        None if last_seq > 0 => Some(cut(
            "the chain has no head record (journal_heads): it was removed".into(),
        )),
        None => None,
        Some(h) if h.seq != last_seq || h.hash != prev_hash => Some(cut(format!(
            "the chain ends at position {last_seq} but its head records position {} with hash {}: its last entries were removed (or the head was altered)",
            h.seq, h.hash
        ))),
        Some(_) => None,
    }
}
