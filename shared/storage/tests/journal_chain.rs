//! The hash-chained journal against a real PostgreSQL: many concurrent writers keep every
//! chain valid, and a row modified, deleted or reordered by the database owner is found by
//! verification, with the entry named.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{DateTime, TimeZone, Utc};
use relance_storage::journal::{self, verify};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// A fresh, migrated database, dropped at the end (named like the end-to-end harness's, so
/// that a crashed run's leftovers are removed by it).
struct FreshDb {
    url: String,
    owner: PgPool,
}

impl FreshDb {
    async fn create() -> Self {
        let id = format!("{}_{}", Utc::now().timestamp(), Uuid::new_v4().simple());
        let url = format!("{}/relance_test_{id}", common::server_url());
        relance_storage::migrate(&url).await.expect("migrating");
        let owner = relance_storage::connect(&url, 20).await.expect("connecting");
        Self { url, owner }
    }

    /// A pool logged in as the workers' role, which may only append to the journal.
    async fn worker(&self, size: u32) -> PgPool {
        let url = self.url.replacen("postgres@", "relance_worker@", 1);
        relance_storage::connect(&url, size)
            .await
            .expect("connecting as relance_worker")
    }

    async fn drop_db(self) {
        self.owner.close().await;
        relance_storage::drop_database(&self.url).await.expect("dropping");
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        let url = self.url.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(async {
                    let _ = relance_storage::drop_database(&url).await;
                });
            }
        })
        .join();
    }
}

fn t(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).single().unwrap()
        + chrono::Duration::nanoseconds(987_654_321)
}

async fn append(
    db: &PgPool,
    invoice: &str,
    step: Option<Uuid>,
    action: &str,
    detail: serde_json::Value,
    at: DateTime<Utc>,
) {
    let mut tx = db.begin().await.unwrap();
    journal::append(&mut tx, at, invoice, step, action, detail)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Invoice F-1 with a rendered reminder (and its PDF attached), and a short journal for F-1
/// and F-2, written by the worker role as the services do. Returns the step id.
async fn ledger(db: &FreshDb) -> Uuid {
    let owner = &db.owner;
    common::insert_customer_c1(owner).await;
    let invoice_id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO invoices (id, number, customer_id, amount, currency, balance, issued_on, due_on, pdf, status, created_at)
         VALUES ($1, 'F-1', 'C-1', 100, 'EUR', 100, '2026-03-01', '2026-03-16', '%PDF-1.4 facture'::bytea, 'open', now())",
    )
    .bind(invoice_id)
    .execute(owner)
    .await
    .unwrap();
    let step = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at, status, updated_at)
         VALUES ($1, $2, 'reminder_1', 'reminder', 1, 'email', 'reminder', 'courteous', now(), 'rendered', now())",
    )
    .bind(step)
    .bind(invoice_id)
    .execute(owner)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO rendered_messages (step_id, channel, message_id, recipients, subject, body_text, body_html, attach_invoice, rendered_at)
         VALUES ($1, 'email', '<reminder_1@exemple.test>', '{jeanne@acme.test}', 'Facture F-1', 'Bonjour, 100,00 €', '<p>Bonjour</p>', true, $2)",
    )
    .bind(step)
    .bind(t(21, 8))
    .execute(owner)
    .await
    .unwrap();
    let worker = db.worker(2).await;
    append(
        &worker,
        "F-1",
        None,
        "invoice.registered",
        json!({"plan": ["reminder_1"]}),
        t(2, 6),
    )
    .await;
    append(&worker, "F-2", None, "invoice.registered", json!({}), t(2, 7)).await;
    append(
        &worker,
        "F-1",
        Some(step),
        "reminder.queued",
        json!({"step": "reminder_1"}),
        t(21, 8),
    )
    .await;
    append(
        &worker,
        "F-1",
        Some(step),
        "reminder.rendered",
        json!({"subject": "Facture F-1"}),
        t(21, 8),
    )
    .await;
    append(
        &worker,
        "F-2",
        None,
        "payment.recorded",
        json!({"amount": "10", "balance": "0"}),
        t(3, 7),
    )
    .await;
    append(
        &worker,
        "F-1",
        Some(step),
        "reminder.sent",
        json!({"smtp_response": "250 2.0.0 Ok", "smtp_ms": 12, "ratio": 0.25}),
        t(21, 9),
    )
    .await;
    append(
        &worker,
        "F-1",
        None,
        "payment.recorded",
        json!({"amount": "40", "balance": "60"}),
        t(22, 9),
    )
    .await;
    worker.close().await;
    step
}

async fn entry_id(db: &PgPool, invoice: &str, action: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM journal WHERE invoice_number = $1 AND action = $2")
        .bind(invoice)
        .bind(action)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Polls (10 s at most) until a session of the test's database waits for a lock: `who`, the
/// session the test made wait, is named if it never does.
async fn until_a_session_waits_for_a_lock(db: &PgPool, who: &str) {
    let start = std::time::Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(db)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{who} never waited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn verify_all(db: &PgPool) -> verify::Verification {
    verify::verify_all(db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_untouched_journal_verifies_and_carries_document_hashes() {
    let db = FreshDb::create().await;
    let step = ledger(&db).await;
    let report = verify_all(&db.owner).await;
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!((report.chains, report.entries, report.documents), (2, 7, 1));
    // Entries about the rendered step carry its document's hash; the others none.
    let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT action, document_sha256, seq FROM journal WHERE invoice_number = 'F-1' ORDER BY seq",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    let document = journal::document::for_step(&mut db.owner.acquire().await.unwrap(), step)
        .await
        .unwrap()
        .unwrap();
    assert!(document.invoice_pdf_sha256.is_some());
    let expected: Vec<(String, Option<String>, i64)> = vec![
        ("invoice.registered".into(), None, 1),
        ("reminder.queued".into(), Some(document.sha256()), 2),
        ("reminder.rendered".into(), Some(document.sha256()), 3),
        ("reminder.sent".into(), Some(document.sha256()), 4),
        ("payment.recorded".into(), None, 5),
    ];
    assert_eq!(rows, expected);
    let head = journal::head(&mut db.owner.acquire().await.unwrap(), "F-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.seq, 5);
    db.drop_db().await;
}

/// 12 writers, each its own connection as the worker role, 30 transactions each: some with
/// one entry, some with entries for two invoices in opposite orders (as a scheduler batch and
/// a lease sweep may), some rolled back. Every chain stays complete and valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_keep_every_chain_valid() {
    let db = FreshDb::create().await;
    let worker = db.worker(12).await;
    let invoices = ["F-A", "F-B", "F-C", "F-D"];
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..12usize {
        let worker = worker.clone();
        writers.spawn(async move {
            let mut committed = 0u64;
            for i in 0..30usize {
                let mut tx = worker.begin().await.unwrap();
                let first = invoices[(w + i) % invoices.len()];
                let second = invoices[(w + 2 * i + 1) % invoices.len()];
                let order = if (w + i) % 2 == 0 {
                    [first, second]
                } else {
                    [second, first]
                };
                let count = 1 + (i % 2);
                for invoice in order.iter().take(count) {
                    let detail = json!({"writer": w, "i": i});
                    journal::append(&mut tx, Utc::now(), invoice, None, "test.written", detail)
                        .await
                        .unwrap();
                }
                // A little work inside the transaction, so that commits interleave.
                sqlx::query("SELECT pg_sleep(0.001)")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                if i % 7 == 3 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                    committed += count as u64;
                }
            }
            committed
        });
    }
    let mut committed = 0;
    while let Some(done) = writers.join_next().await {
        committed += done.unwrap();
    }
    let report = verify_all(&db.owner).await;
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.entries, committed);
    assert_eq!(report.chains, 4);
    let heads: i64 = sqlx::query_scalar("SELECT sum(seq)::bigint FROM journal_heads")
        .fetch_one(&db.owner)
        .await
        .unwrap();
    assert_eq!(
        heads as u64, committed,
        "positions 1..n in every chain, nothing skipped"
    );
    worker.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worker_role_cannot_rewrite_the_journal_nor_its_heads() {
    let db = FreshDb::create().await;
    ledger(&db).await;
    let worker = db.worker(1).await;
    for statement in [
        "UPDATE journal SET action = 'forged'",
        "DELETE FROM journal",
        "UPDATE journal_heads SET seq = 1",
        "DELETE FROM journal_heads",
        "INSERT INTO journal_heads (chain, seq, hash, updated_at) VALUES ('X', 1, 'x', now())",
        "SELECT journal_link_pending()",
    ] {
        assert!(
            sqlx::query(statement).execute(&worker).await.is_err(),
            "the worker role could run {statement}"
        );
    }
    assert!(verify_all(&db.owner).await.is_intact());
    worker.close().await;
    db.drop_db().await;
}

/// Each tampering, done as the database owner on a fresh ledger, and what verify must say.
async fn tampered(statements: &[&str]) -> (verify::Verification, FreshDb) {
    let db = FreshDb::create().await;
    ledger(&db).await;
    for statement in statements {
        sqlx::query(statement).execute(&db.owner).await.unwrap();
    }
    (verify_all(&db.owner).await, db)
}

fn only_problem(report: &verify::Verification) -> &verify::Problem {
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    &report.problems[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_modified_entry_is_named() {
    let (report, db) = tampered(&[
        "UPDATE journal SET detail = '{\"amount\": \"400\", \"balance\": \"60\"}' WHERE action = 'payment.recorded' AND invoice_number = 'F-1'",
    ])
    .await;
    let problem = only_problem(&report);
    assert_eq!(
        problem.entry_id,
        Some(entry_id(&db.owner, "F-1", "payment.recorded").await)
    );
    assert_eq!(problem.chain, "F-1");
    assert!(problem.reason.contains("was modified"), "{problem}");
    assert!(problem.to_string().contains("payment.recorded"), "{problem}");

    // Changing a time (to move an entry earlier or later) is a modification too, and so is
    // recomputing the content hash without the link.
    let (report, db2) =
        tampered(&["UPDATE journal SET at = at - interval '10 days' WHERE action = 'reminder.sent'"]).await;
    assert_eq!(
        only_problem(&report).entry_id,
        Some(entry_id(&db2.owner, "F-1", "reminder.sent").await)
    );
    db.drop_db().await;
    db2.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_entry_is_found_in_the_middle_and_at_the_end() {
    let db = FreshDb::create().await;
    ledger(&db).await;
    let sent = entry_id(&db.owner, "F-1", "reminder.sent").await;
    let after = entry_id(&db.owner, "F-1", "payment.recorded").await;
    sqlx::query("DELETE FROM journal WHERE id = $1")
        .bind(sent)
        .execute(&db.owner)
        .await
        .unwrap();
    let report = verify_all(&db.owner).await;
    let problem = only_problem(&report);
    assert_eq!(problem.entry_id, Some(after), "the entry after the gap is named");
    assert!(problem.reason.contains("deleted"), "{problem}");
    db.drop_db().await;

    // The last entry: the chain is shorter than its head says.
    let (report, db) = tampered(&[
        "DELETE FROM journal WHERE id = (SELECT max(id) FROM journal WHERE invoice_number = 'F-1')",
    ])
    .await;
    let problem = only_problem(&report);
    assert_eq!((problem.chain.as_str(), problem.entry_id), ("F-1", None));
    assert!(problem.reason.contains("last entries were removed"), "{problem}");
    db.drop_db().await;

    // A whole chain, head kept.
    let (report, db) = tampered(&["DELETE FROM journal WHERE invoice_number = 'F-2'"]).await;
    assert_eq!(only_problem(&report).chain, "F-2");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reordered_entries_are_found() {
    // Swap the positions of the 2nd and 3rd entries of F-1.
    let (report, db) = tampered(&[
        "UPDATE journal SET seq = -seq WHERE invoice_number = 'F-1' AND seq IN (2, 3)",
        "UPDATE journal SET seq = 5 + seq WHERE invoice_number = 'F-1' AND seq IN (-2, -3)",
    ])
    .await;
    let problem = only_problem(&report);
    assert_eq!(problem.seq, Some(2));
    assert_eq!(
        problem.entry_id,
        Some(entry_id(&db.owner, "F-1", "reminder.rendered").await)
    );
    assert!(problem.reason.contains("reordered"), "{problem}");
    db.drop_db().await;

    // Swap two entries' contents (what they say), keeping their places.
    let (report, db) = tampered(&[
        "UPDATE journal a SET action = b.action, detail = b.detail, at = b.at
         FROM journal b
         WHERE a.invoice_number = 'F-1' AND b.invoice_number = 'F-1'
           AND ((a.seq = 4 AND b.seq = 5) OR (a.seq = 5 AND b.seq = 4))",
    ])
    .await;
    assert_eq!(only_problem(&report).seq, Some(4));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_modified_document_or_pdf_is_found() {
    let (report, db) = tampered(&["UPDATE rendered_messages SET body_text = 'Bonjour, 10,00 €'"]).await;
    let problem = only_problem(&report);
    assert_eq!(
        problem.entry_id,
        Some(entry_id(&db.owner, "F-1", "reminder.queued").await)
    );
    assert!(problem.reason.contains("document"), "{problem}");
    db.drop_db().await;

    let (report, db) = tampered(&["UPDATE invoices SET pdf = '%PDF-1.4 autre facture'::bytea"]).await;
    assert!(only_problem(&report).reason.contains("PDF"));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_slipped_in_without_relance_is_found() {
    let (report, db) = tampered(&[
        "INSERT INTO journal (at, invoice_number, action, detail) VALUES (now(), 'F-2', 'payment.recorded', '{}')",
    ])
    .await;
    let problem = only_problem(&report);
    assert_eq!(problem.chain, "F-2");
    assert!(problem.reason.contains("no hash"), "{problem}");
    db.drop_db().await;
}

/// Entries written before the chain existed are hashed and linked by `relance migrate`,
/// and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_entries_are_linked_by_migrate() {
    let db = FreshDb::create().await;
    ledger(&db).await;
    // As if these three had been written before migration ...0006.
    sqlx::query(
        "INSERT INTO journal (at, invoice_number, step_id, action, detail)
         VALUES (now(), 'F-OLD', NULL, 'invoice.registered', '{\"plan\": [1, 2.5, \"x\"]}'),
                (now(), 'F-OLD', NULL, 'reminder.sent', '{}'),
                (now(), NULL, NULL, 'invoice.rejected', '{\"field\": \"invoice.number\"}')",
    )
    .execute(&db.owner)
    .await
    .unwrap();
    sqlx::query("UPDATE journal_legacy SET up_to_id = (SELECT max(id) FROM journal)")
        .execute(&db.owner)
        .await
        .unwrap();
    assert!(!verify_all(&db.owner).await.is_intact());
    relance_storage::migrate(&db.url).await.unwrap();
    let report = verify_all(&db.owner).await;
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.entries, 10);
    db.drop_db().await;
}

/// The chain's lock is taken at commit, after every row lock of the transaction: a payment
/// that journals and then waits for the step a renderer holds, while that renderer journals
/// about the same invoice, is no deadlock (were the head locked at insert, it would be).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linking_at_commit_cannot_deadlock_with_row_locks() {
    let db = FreshDb::create().await;
    let step = ledger(&db).await;
    let worker = db.worker(2).await;
    let mut renderer = worker.begin().await.unwrap();
    sqlx::query("UPDATE reminder_steps SET status = 'sent' WHERE id = $1")
        .bind(step)
        .execute(&mut *renderer)
        .await
        .unwrap();
    let mut payment = worker.begin().await.unwrap();
    journal::append(&mut payment, t(23, 9), "F-1", None, "payment.recorded", json!({}))
        .await
        .unwrap();
    let cancel = tokio::spawn(async move {
        sqlx::query("UPDATE reminder_steps SET status = 'cancelled' WHERE id = $1 AND status <> 'sent'")
            .bind(step)
            .execute(&mut *payment)
            .await?;
        payment.commit().await
    });
    until_a_session_waits_for_a_lock(&db.owner, "the payment").await;
    journal::append(
        &mut renderer,
        t(23, 9),
        "F-1",
        Some(step),
        "reminder.sent",
        json!({}),
    )
    .await
    .unwrap();
    renderer.commit().await.expect("the renderer commits");
    cancel.await.unwrap().expect("the payment commits");
    let report = verify_all(&db.owner).await;
    assert!(report.is_intact(), "{:?}", report.problems);
    let head = journal::head(&mut db.owner.acquire().await.unwrap(), "F-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.seq, 7);
    worker.close().await;
    db.drop_db().await;
}

/// An entry committed while a chain is verified, between the verification's reads of its
/// entries and of its head, is not taken for a cut chain: the verification reads one
/// snapshot (the services run on while `relance journal verify` does, and a replica
/// replays).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_committed_while_a_chain_is_verified_is_not_taken_for_a_cut() {
    let db = FreshDb::create().await;
    ledger(&db).await;
    let mut conn = db.owner.acquire().await.unwrap();
    let before = verify::verify_chain(&mut conn, "F-2").await.unwrap();
    assert!(before.is_intact(), "{:?}", before.problems);
    // The writer holds the heads' table: the verification reads F-2's entries, then waits
    // to read its head until the writer's entry (and the head it moves) is committed.
    let mut writer = db.owner.begin().await.unwrap();
    sqlx::query("LOCK TABLE journal_heads IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *writer)
        .await
        .unwrap();
    let owner = db.owner.clone();
    let verification = tokio::spawn(async move {
        let mut conn = owner.acquire().await?;
        verify::verify_chain(&mut conn, "F-2").await
    });
    until_a_session_waits_for_a_lock(&db.owner, "the verification").await;
    journal::append(&mut writer, t(24, 9), "F-2", None, "payment.recorded", json!({}))
        .await
        .unwrap();
    writer.commit().await.unwrap();
    let during = verification.await.unwrap().unwrap();
    assert!(during.is_intact(), "{:?}", during.problems);
    assert_eq!(
        during.entries, before.entries,
        "the chain as it was when the verification began"
    );
    let after = verify::verify_chain(&mut conn, "F-2").await.unwrap();
    assert!(after.is_intact(), "{:?}", after.problems);
    assert_eq!(after.entries, before.entries + 1);
    drop(conn);
    db.drop_db().await;
}

/// A letter's PDF, kept beside its rendered message, is part of the document hashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_letter_pdf_changed_after_posting_is_found() {
    let db = FreshDb::create().await;
    ledger(&db).await;
    let letter = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at, status, updated_at)
         SELECT $1, id, 'formal_notice', 'reminder', 2, 'registered_letter', 'formal_notice', 'formal', now(), 'rendered', now()
         FROM invoices WHERE number = 'F-1'",
    )
    .bind(letter)
    .execute(&db.owner)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO rendered_messages (step_id, channel, message_id, recipients, subject, body_text, attach_invoice, rendered_at, document, document_sha256)
         VALUES ($1, 'registered_letter', 'LR-1', '{ACME, 1 rue X}', 'Mise en demeure', 'Mise en demeure', false, now(),
                 '%PDF-1.7 mise en demeure'::bytea, encode(sha256('%PDF-1.7 mise en demeure'::bytea), 'hex'))",
    )
    .bind(letter)
    .execute(&db.owner)
    .await
    .unwrap();
    let worker = db.worker(1).await;
    append(
        &worker,
        "F-1",
        Some(letter),
        "reminder.sent",
        json!({"tracking": "1A234"}),
        t(28, 9),
    )
    .await;
    worker.close().await;
    assert!(verify_all(&db.owner).await.is_intact());
    let document = journal::document::for_step(&mut db.owner.acquire().await.unwrap(), letter)
        .await
        .unwrap()
        .unwrap();
    assert!(document.canonical().contains(r#""rendered_pdf_sha256":""#));
    // The PDF replaced, its stored hash too: the journal still knows.
    sqlx::query(
        "UPDATE rendered_messages SET document = '%PDF-1.7 simple rappel'::bytea,
             document_sha256 = encode(sha256('%PDF-1.7 simple rappel'::bytea), 'hex') WHERE step_id = $1",
    )
    .bind(letter)
    .execute(&db.owner)
    .await
    .unwrap();
    let report = verify_all(&db.owner).await;
    let problem = only_problem(&report);
    assert_eq!(problem.action.as_deref(), Some("reminder.sent"));
    assert_eq!(problem.seq, Some(6));
    assert!(problem.reason.contains(&letter.to_string()), "{problem}");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rendering_superseded_before_delivery_still_verifies_and_cannot_be_altered() {
    let db = FreshDb::create().await;
    ledger(&db).await;
    let step: Uuid = sqlx::query_scalar("SELECT id FROM reminder_steps WHERE name = 'reminder_1'")
        .fetch_one(&db.owner)
        .await
        .unwrap();
    // The worker sets the rendering aside (a grouped message lost an invoice), renders the
    // step again and journals about the new one.
    let worker = db.worker(2).await;
    let mut tx = worker.begin().await.unwrap();
    relance_storage::steps::supersede_renderings(&mut tx, &[step], "re-rendered", t(22, 10))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO rendered_messages (step_id, channel, message_id, recipients, subject, body_text, attach_invoice, rendered_at)
         VALUES ($1, 'email', '<reminder_1@exemple.test>', '{jeanne@acme.test}', 'Facture F-1', 'Bonjour, 60,00 €', true, $2)",
    )
    .bind(step)
    .bind(t(22, 10))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    append(
        &worker,
        "F-1",
        Some(step),
        "reminder.rendered",
        json!({"subject": "Facture F-1"}),
        t(22, 10),
    )
    .await;
    let report = verify_all(&db.owner).await;
    assert!(report.is_intact(), "{:?}", report.problems);
    // The workers may add superseded renderings, never change or remove them.
    for statement in [
        "UPDATE superseded_renderings SET body_text = 'Bonjour'",
        "DELETE FROM superseded_renderings",
    ] {
        let refused = sqlx::query(statement).execute(&worker).await;
        assert!(
            refused.is_err_and(|e| e.to_string().contains("permission denied")),
            "{statement}"
        );
    }
    // The owner alters the rendering set aside: the entries that recorded it break.
    sqlx::query("UPDATE superseded_renderings SET body_text = 'Bonjour, 10,00 €'")
        .execute(&db.owner)
        .await
        .unwrap();
    let report = verify_all(&db.owner).await;
    let problem = only_problem(&report);
    assert_eq!(
        problem.entry_id,
        Some(entry_id(&db.owner, "F-1", "reminder.queued").await)
    );
    assert!(problem.reason.contains("no longer matches"), "{problem}");
    worker.close().await;
    db.drop_db().await;
}

/// Two transactions journal about one invoice, the first to insert committing last: the chain
/// follows the commit order, each transaction links only its own entries (the other's are
/// still uncommitted), and an entry rolled back with its savepoint takes no position.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transactions_chain_in_commit_order_each_linking_its_own() {
    let db = FreshDb::create().await;
    let worker = db.worker(2).await;
    let mut early = worker.begin().await.unwrap();
    journal::append(&mut early, t(2, 9), "F-X", None, "test.early", json!({}))
        .await
        .unwrap();
    let mut late = worker.begin().await.unwrap();
    journal::append(&mut late, t(2, 9), "F-X", None, "test.late", json!({}))
        .await
        .unwrap();
    sqlx::query("SAVEPOINT s").execute(&mut *late).await.unwrap();
    journal::append(&mut late, t(2, 9), "F-X", None, "test.rolled_back", json!({}))
        .await
        .unwrap();
    sqlx::query("ROLLBACK TO SAVEPOINT s")
        .execute(&mut *late)
        .await
        .unwrap();
    journal::append(&mut late, t(2, 9), "F-Y", None, "test.late", json!({}))
        .await
        .unwrap();
    late.commit().await.unwrap();
    let unlinked: i64 = sqlx::query_scalar("SELECT count(*) FROM journal WHERE hash IS NULL")
        .fetch_one(&db.owner)
        .await
        .unwrap();
    assert_eq!(
        unlinked, 0,
        "the committed transaction left no entry of its own unlinked"
    );
    journal::append(&mut early, t(2, 9), "F-X", None, "test.early_again", json!({}))
        .await
        .unwrap();
    early.commit().await.unwrap();
    let chain = journal::chain(&mut db.owner.acquire().await.unwrap(), "F-X")
        .await
        .unwrap();
    let order: Vec<(Option<i64>, &str)> = chain.iter().map(|e| (e.seq, e.action.as_str())).collect();
    assert_eq!(
        order,
        [
            (Some(1), "test.late"),
            (Some(2), "test.early"),
            (Some(3), "test.early_again")
        ]
    );
    let report = verify_all(&db.owner).await;
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.entries, 4);
    worker.close().await;
    db.drop_db().await;
}

/// An entry written with its outbox message in one statement (`append_with_message`, as the
/// services announce events and queue jobs) is chained at commit like any other, and its
/// event numbered in the invoice's sequence: two transactions, each a plain entry and an
/// entry with its event, give one chain of four and events 1 and 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_written_with_its_event_in_one_statement_is_chained_and_the_event_numbered() {
    use relance_storage::outbox::{Destination, OutgoingMessage};
    let db = FreshDb::create().await;
    let worker = db.worker(2).await;
    for (day, action) in [(2, "reminder.sent"), (3, "reminder.failed")] {
        let mut tx = worker.begin().await.unwrap();
        journal::append(&mut tx, t(day, 8), "F-9", None, "note", json!({ "day": day }))
            .await
            .unwrap();
        let event = OutgoingMessage {
            destination: Destination::Events,
            routing_key: action.to_string(),
            message_id: Uuid::new_v4(),
            correlation_id: "F-9".to_string(),
            payload: json!({ "event_type": action, "sequence": null }),
            headers: Default::default(),
        };
        journal::append_with_message(&mut tx, t(day, 9), "F-9", None, action, json!({}), Some(&event))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let chain: Vec<(String, i64)> =
        sqlx::query_as("SELECT action, seq FROM journal WHERE invoice_number = 'F-9' ORDER BY seq")
            .fetch_all(&db.owner)
            .await
            .unwrap();
    let expected: Vec<(String, i64)> = vec![
        ("note".into(), 1),
        ("reminder.sent".into(), 2),
        ("note".into(), 3),
        ("reminder.failed".into(), 4),
    ];
    assert_eq!(chain, expected);
    let report = verify_all(&db.owner).await;
    assert!(report.is_intact(), "{:?}", report.problems);
    let events: Vec<(String, Option<i64>, serde_json::Value)> = sqlx::query_as(
        "SELECT routing_key, sequence, payload->'sequence' FROM outbox WHERE correlation_id = 'F-9' ORDER BY id",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    let expected: Vec<(String, Option<i64>, serde_json::Value)> = vec![
        ("reminder.sent".into(), Some(1), json!(1)),
        ("reminder.failed".into(), Some(2), json!(2)),
    ];
    assert_eq!(events, expected);
    worker.close().await;
    db.drop_db().await;
}

/// One transaction journals and announces for several invoices at once, as a group commit
/// or a scheduler batch does: some with one entry and event, some with several, some whose
/// chains exist and some that start here. Every chain is linked in id order, each invoice's
/// events numbered in id order, and a later transaction of the same shape chains on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_about_many_invoices_links_every_chain_and_numbers_every_invoice_in_order() {
    use relance_storage::outbox::{Destination, OutgoingMessage};
    let db = FreshDb::create().await;
    let worker = db.worker(2).await;
    append(&worker, "M-2", None, "before", json!({}), t(1, 9)).await;
    // (invoice, entries in this transaction), interleaved as handlers of a batch write them.
    let shapes = [("M-1", 1), ("M-2", 3), ("M-3", 2), ("M-4", 1)];
    for day in [2, 3] {
        let mut tx = worker.begin().await.unwrap();
        for round in 0..3 {
            for (invoice, entries) in shapes {
                if round >= entries {
                    continue;
                }
                let event = OutgoingMessage {
                    destination: Destination::Events,
                    routing_key: format!("test.{day}.{round}"),
                    message_id: Uuid::new_v4(),
                    correlation_id: invoice.to_string(),
                    payload: json!({ "sequence": null }),
                    headers: Default::default(),
                };
                let action = format!("test.{day}.{round}");
                journal::append_with_message(
                    &mut tx,
                    t(day, 9),
                    invoice,
                    None,
                    &action,
                    json!({}),
                    Some(&event),
                )
                .await
                .unwrap();
            }
        }
        // An entry of the global chain too (no invoice).
        journal::append_unattached(&mut tx, t(day, 9), "test.global", json!({ "day": day }))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    for (invoice, entries) in shapes {
        let chain: Vec<(String, i64)> =
            sqlx::query_as("SELECT action, seq FROM journal WHERE invoice_number = $1 ORDER BY id")
                .bind(invoice)
                .fetch_all(&db.owner)
                .await
                .unwrap();
        let earlier = usize::from(invoice == "M-2");
        let mut expected: Vec<String> = if earlier == 1 {
            vec!["before".into()]
        } else {
            vec![]
        };
        for day in [2, 3] {
            expected.extend((0..entries).map(|round| format!("test.{day}.{round}")));
        }
        let actions: Vec<String> = chain.iter().map(|(action, _)| action.clone()).collect();
        assert_eq!(actions, expected, "{invoice}: entries in id order");
        let positions: Vec<i64> = chain.iter().map(|(_, seq)| *seq).collect();
        let counted: Vec<i64> = (1..=i64::try_from(chain.len()).unwrap()).collect();
        assert_eq!(positions, counted, "{invoice}: linked in id order, from 1");
        let events: Vec<(String, Option<i64>, serde_json::Value)> = sqlx::query_as(
            "SELECT routing_key, sequence, payload->'sequence' FROM outbox WHERE correlation_id = $1 ORDER BY id",
        )
        .bind(invoice)
        .fetch_all(&db.owner)
        .await
        .unwrap();
        let numbered: Vec<(String, Option<i64>, serde_json::Value)> = events
            .iter()
            .enumerate()
            .map(|(i, (key, _, _))| {
                let n = i64::try_from(i + 1).unwrap();
                (key.clone(), Some(n), json!(n))
            })
            .collect();
        assert_eq!(events.len(), 2 * entries, "{invoice}: every event kept");
        assert_eq!(events, numbered, "{invoice}: events numbered in id order, from 1");
    }
    let global: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM journal WHERE action = 'test.global' ORDER BY id")
            .fetch_all(&db.owner)
            .await
            .unwrap();
    assert_eq!(global.len(), 2);
    assert_eq!(
        global[1],
        global[0] + 1,
        "the global chain moves on by one per transaction"
    );
    let report = verify_all(&db.owner).await;
    assert!(report.is_intact(), "{:?}", report.problems);
    worker.close().await;
    db.drop_db().await;
}

/// While another transaction is creating a chain's head (its first entry, not yet
/// committed), a commit that needs that head and one that exists waits for the creation
/// holding no head at all: a third commit journaling about the existing chain goes through.
/// (Were the existing head locked before the missing one was created, the third would wait
/// for the second, and with the first needing the existing head too the three would
/// deadlock.) Events' counters are taken the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_waiting_to_create_a_head_holds_no_other_head() {
    use std::time::Duration;
    let db = FreshDb::create().await;
    let worker = db.worker(3).await;
    // "D-2" has a head; "D-1" (sorted before it) has none yet.
    append(&worker, "D-2", None, "first", json!({}), t(4, 8)).await;
    // Another transaction creating D-1's head, not committed yet.
    let mut creating = db.owner.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO journal_heads (chain, seq, hash, updated_at) VALUES ('D-1', 0, repeat('0', 64), now())",
    )
    .execute(&mut *creating)
    .await
    .unwrap();
    let mut both = worker.begin().await.unwrap();
    for invoice in ["D-1", "D-2"] {
        journal::append(&mut both, t(4, 9), invoice, None, "both", json!({}))
            .await
            .unwrap();
    }
    let both = tokio::spawn(async move { both.commit().await });
    // Its commit waits for the creation of D-1's head.
    until_a_session_waits_for_a_lock(&db.owner, "the commit").await;
    let mut existing = worker.begin().await.unwrap();
    journal::append(&mut existing, t(4, 10), "D-2", None, "existing", json!({}))
        .await
        .unwrap();
    let through = tokio::time::timeout(Duration::from_secs(10), existing.commit()).await;
    // Whatever happened, the creation ends (rolled back: the waiting commit creates the head).
    creating.rollback().await.unwrap();
    assert!(
        matches!(through, Ok(Ok(()))),
        "a commit about the existing chain waited for one waiting to create another: {through:?}"
    );
    both.await.unwrap().expect("the commit that waited goes through");
    let order: Vec<(String, i64)> =
        sqlx::query_as("SELECT action, seq FROM journal WHERE invoice_number = 'D-2' ORDER BY seq")
            .fetch_all(&db.owner)
            .await
            .unwrap();
    let expected: Vec<(String, i64)> = vec![("first".into(), 1), ("existing".into(), 2), ("both".into(), 3)];
    assert_eq!(order, expected, "D-2 chained in commit order");
    let report = verify_all(&db.owner).await;
    assert!(report.is_intact(), "{:?}", report.problems);
    worker.close().await;
    db.drop_db().await;
}
