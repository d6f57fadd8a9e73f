//! The emission claim looks past paused invoices: their steps stay pending with their old due
//! times while the pause holds, and however many there are, an invoice that is not paused and
//! has a step due is claimed (found by the benchmark: 400 paused invoices held every due
//! reminder of a 10,000-invoice ledger back).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{Duration, Utc};
use relance_storage::steps::claim_due_invoices;
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
    let id = Uuid::new_v4();
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
        .bind(Utc::now() - Duration::days(days_ago))
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

    let mut tx = db.begin().await.unwrap();
    let claimed: Vec<String> = claim_due_invoices(&mut tx, Utc::now(), 2)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.number)
        .collect();
    tx.rollback().await.unwrap();
    assert_eq!(claimed, ["F-DUE"]);
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
    let mut tx = db.begin().await.unwrap();
    let claimed = claim_due_invoices(&mut tx, Utc::now(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.number)
        .collect();
    tx.rollback().await.unwrap();
    claimed
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
