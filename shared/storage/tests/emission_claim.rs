//! The emission claim looks past paused invoices: their steps stay pending with their old due
//! times while the pause holds, and however many there are, an invoice that is not paused and
//! has a step due is claimed (found by the benchmark: 400 paused invoices held every due
//! reminder of a 10,000-invoice ledger back).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{Duration, Utc};
use relance_storage::steps::{claim_due_invoices, ClaimCursor};
use sqlx::PgPool;
use uuid::Uuid;

/// A fresh migrated database (its URL, to drop it) with customer C-1.
async fn database_with_a_customer() -> (String, PgPool) {
    let (url, db) = common::fresh_database(4).await;
    common::insert_customer_c1(&db).await;
    (url, db)
}

/// An open invoice with two reminder steps, pending and due `days_ago` days ago.
async fn invoice(db: &PgPool, number: &str, days_ago: i64) -> Uuid {
    invoice_due_at(db, number, Utc::now() - Duration::days(days_ago)).await
}

/// An open invoice with two reminder steps, pending and due at `due`.
async fn invoice_due_at(db: &PgPool, number: &str, due: chrono::DateTime<Utc>) -> Uuid {
    invoice_with_id(db, Uuid::new_v4(), number, due).await
}

/// [`invoice_due_at`] with the invoice's id.
async fn invoice_with_id(db: &PgPool, id: Uuid, number: &str, due: chrono::DateTime<Utc>) -> Uuid {
    sqlx::query(
        "INSERT INTO invoices (id, number, customer_id, amount, currency, balance, issued_on, due_on, status, created_at)
         VALUES ($1, $2, 'C-1', 100, 'EUR', 100, '2026-03-01', '2026-03-16', 'open', now())",
    )
    .bind(id)
    .bind(number)
    .execute(db)
    .await
    .unwrap();
    for position in 0..2 {
        sqlx::query(
            "INSERT INTO reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at, status, updated_at)
             VALUES ($1, $2, $3, 'reminder', $4, 'email', 'reminder', 'firm', $5, 'pending', now())",
        )
        .bind(Uuid::new_v4())
        .bind(id)
        .bind(format!("reminder_{position}"))
        .bind(position)
        .bind(due)
        .execute(db)
        .await
        .unwrap();
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_with_a_due_step_is_claimed_past_any_number_of_paused_ones() {
    let (url, db) = database_with_a_customer().await;
    // Twenty disputed invoices whose steps fell due long ago (40 steps, more than the claim
    // looks at for a batch of two), and one invoice due yesterday.
    for i in 0..20 {
        let paused = invoice(&db, &format!("F-PAUSED-{i:02}"), 30).await;
        sqlx::query(
            "INSERT INTO invoice_pauses (id, invoice_id, kind, reason, source, event_id, started_at)
             VALUES ($1, $2, 'dispute', 'disputed', 'dispute.opened', $3, now())",
        )
        .bind(Uuid::new_v4())
        .bind(paused)
        .bind(format!("EV-{i}"))
        .execute(&db)
        .await
        .unwrap();
    }
    invoice(&db, "F-DUE", 1).await;

    assert_eq!(claim(&db, 2, &mut ClaimCursor::default()).await, ["F-DUE"]);
    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}

/// Which of the invoice's steps are marked held (the claim's index leaves them out).
async fn held(db: &PgPool, invoice: Uuid) -> Vec<bool> {
    sqlx::query_scalar("SELECT held FROM reminder_steps WHERE invoice_id = $1 ORDER BY position")
        .bind(invoice)
        .fetch_all(db)
        .await
        .unwrap()
}

async fn claimable(db: &PgPool) -> Vec<String> {
    claim(db, 10, &mut ClaimCursor::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_are_held_exactly_while_a_pause_is_active_and_claimed_once_it_ends() {
    let (url, db) = database_with_a_customer().await;
    let id = invoice(&db, "F-1", 2).await;
    assert_eq!(held(&db, id).await, [false, false]);
    assert_eq!(claimable(&db).await, ["F-1"]);

    // Two pauses: the steps stay held until both have ended.
    let (promise, dispute) = (Uuid::new_v4(), Uuid::new_v4());
    for (pause, kind) in [(promise, "manual"), (dispute, "dispute")] {
        sqlx::query(
            "INSERT INTO invoice_pauses (id, invoice_id, kind, reason, source, event_id, started_at)
             VALUES ($1, $2, $3, 'held', 'pause.requested', $4, now())",
        )
        .bind(pause)
        .bind(id)
        .bind(kind)
        .bind(pause.to_string())
        .execute(&db)
        .await
        .unwrap();
    }
    assert_eq!(held(&db, id).await, [true, true]);
    assert!(claimable(&db).await.is_empty());

    // A step planned while the invoice is paused is held from the start.
    sqlx::query(
        "INSERT INTO reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at, status, updated_at)
         VALUES ($1, $2, 'reminder_2', 'reminder', 2, 'email', 'reminder', 'firm', now(), 'pending', now())",
    )
    .bind(Uuid::new_v4())
    .bind(id)
    .execute(&db)
    .await
    .unwrap();
    assert_eq!(held(&db, id).await, [true, true, true]);

    let end = |pause: Uuid| {
        let db = db.clone();
        async move {
            sqlx::query("UPDATE invoice_pauses SET ended_at = now(), end_reason = 'done' WHERE id = $1")
                .bind(pause)
                .execute(&db)
                .await
                .unwrap();
        }
    };
    end(promise).await;
    assert_eq!(held(&db, id).await, [true, true, true], "one pause still holds");
    assert!(claimable(&db).await.is_empty());
    end(dispute).await;
    assert_eq!(held(&db, id).await, [false, false, false]);
    assert_eq!(claimable(&db).await, ["F-1"]);
    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}

/// Claims with `cursor` and commits: the numbers claimed.
async fn claim(db: &PgPool, limit: i64, cursor: &mut ClaimCursor) -> Vec<String> {
    let mut tx = db.begin().await.unwrap();
    let claimed = claim_due_invoices(&mut tx, Utc::now(), limit, cursor)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.number)
        .collect();
    tx.commit().await.unwrap();
    claimed
}

/// A pass's claims read on from where the last one stopped: with steps left pending (as if
/// each claim's emission had not moved them yet), the second claim takes the next invoice,
/// not the first again; a new pass (a new cursor) starts over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_claim_of_a_pass_reads_on_after_the_steps_the_last_one_took() {
    let (url, db) = database_with_a_customer().await;
    // Claims take invoices by id: here the ids are in the order the steps fall due.
    for (n, number) in [(1u8, "F-A"), (2, "F-B"), (3, "F-C")] {
        let due = Utc::now() - Duration::days(4 - i64::from(n));
        invoice_with_id(&db, Uuid::from_u128(u128::from(n)), number, due).await;
    }
    let mut pass = ClaimCursor::default();
    assert_eq!(claim(&db, 1, &mut pass).await, ["F-A"]);
    assert!(pass.more(), "four steps read, as many as a claim of one looks at");
    assert_eq!(claim(&db, 1, &mut pass).await, ["F-B"]);
    assert_eq!(claim(&db, 1, &mut pass).await, ["F-C"]);
    assert!(!pass.more(), "the last two steps");
    assert!(claim(&db, 1, &mut pass).await.is_empty());
    assert!(!pass.more());
    // The next pass finds them all again (nothing was emitted).
    assert_eq!(
        claim(&db, 10, &mut ClaimCursor::default()).await,
        ["F-A", "F-B", "F-C"]
    );
    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}

/// A claim that could take more invoices than it is allowed leaves the cursor before the
/// first one it left out: nothing due is passed over within a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_cut_short_by_its_limit_leaves_the_rest_to_the_next_claim() {
    let (url, db) = database_with_a_customer().await;
    // Five invoices, two steps each, a second apart: a claim of two looks at eight steps
    // (the first four invoices) and takes two of them, by id, which may be any two.
    let due = Utc::now() - Duration::days(1);
    for i in 0..5 {
        invoice_due_at(&db, &format!("F-{i}"), due + Duration::seconds(i)).await;
    }
    let mut pass = ClaimCursor::default();
    let mut claimed = Vec::new();
    for _ in 0..5 {
        let batch = claim(&db, 2, &mut pass).await;
        // As the scheduler does: the claimed invoices' steps leave `pending`.
        sqlx::query(
            "UPDATE reminder_steps SET status = 'queued' WHERE invoice_id IN (SELECT id FROM invoices WHERE number = ANY($1))",
        )
        .bind(&batch)
        .execute(&db)
        .await
        .unwrap();
        claimed.extend(batch);
    }
    claimed.sort();
    assert_eq!(claimed, ["F-0", "F-1", "F-2", "F-3", "F-4"]);
    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}

/// The steps' table is vacuumed after a count of dead steps that grows slowly with it, not
/// after a fifth of it as PostgreSQL's default would: each pass's claim walks the dead
/// entries of the due steps' index until a vacuum removes them (docs/scaling.md, 10M invoices).
#[tokio::test]
async fn the_steps_table_is_vacuumed_after_a_count_of_dead_steps_not_a_share_of_the_ledger() {
    let (url, db) = database_with_a_customer().await;
    let options: Vec<String> = sqlx::query_scalar(
        "SELECT unnest(reloptions) FROM pg_class WHERE oid = 'reminder_steps'::regclass ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    for wanted in [
        "autovacuum_vacuum_scale_factor=0.002",
        "autovacuum_vacuum_threshold=50000",
    ] {
        assert!(options.iter().any(|o| o == wanted), "{wanted} not in {options:?}");
    }
    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}
