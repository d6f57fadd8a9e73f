//! An invoice's journal as the contracts show it: the linked entries of its hash chain, for
//! the collection hand-off and `relance journal export`.

use anyhow::Context;
use relance_contracts::{InvoiceJournalV1, JournalEntryV1};
use relance_storage::journal::{self, canonical, ChainedEntry};

/// A linked journal entry as the contract shows it; `None` for an entry without its link.
pub fn journal_entry_v1(e: &ChainedEntry) -> Option<JournalEntryV1> {
    Some(JournalEntryV1 {
        id: e.id,
        seq: e.seq?,
        at: canonical::timestamp(e.at),
        invoice_number: e.invoice_number.clone(),
        step_id: e.step_id,
        action: e.action.clone(),
        detail: e.detail.clone(),
        document_sha256: e.document_sha256.clone(),
        content_sha256: e.content_sha256.clone()?,
        prev_hash: e.prev_hash.clone()?,
        hash: e.hash.clone()?,
    })
}

/// One invoice's journal chain as committed so far (entries of the caller's own transaction
/// are linked only at its commit, so they are not part of it).
pub async fn invoice_journal_v1(
    conn: &mut sqlx::PgConnection,
    invoice_number: &str,
) -> anyhow::Result<InvoiceJournalV1> {
    let entries: Vec<JournalEntryV1> = journal::chain(conn, invoice_number)
        .await
        .context("reading the invoice's journal")?
        .iter()
        .filter_map(journal_entry_v1)
        .collect();
    let (head_seq, head_hash) = entries
        .last()
        .map(|e| (e.seq, e.hash.clone()))
        .unwrap_or((0, canonical::GENESIS_HASH.to_string()));
    Ok(InvoiceJournalV1 {
        chain: invoice_number.to_string(),
        head_seq,
        head_hash,
        entries,
    })
}
