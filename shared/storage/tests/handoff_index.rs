//! The index of ended sequences behind the hand-off sweep: a reminder step that becomes final
//! is noted, the sweep folds the notes into `sequence_ended_at` (the time the last step became
//! final, once every step is), the claim finds the invoice from that index, a note that
//! changes an invoice another transaction holds waits for a later pass instead of blocking,
//! and a note that changes nothing never locks its invoice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use relance_storage::handoff::{claim_due, note_ended_sequences, HandOffDelay};
use sqlx::PgPool;
use uuid::Uuid;

fn t(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 8, 0, 0).single().unwrap()
}

/// An open invoice due on 16 March with two reminder steps, both pending.
async fn invoice(db: &PgPool, number: &str) -> (Uuid, [Uuid; 2]) {
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
    let steps = [Uuid::new_v4(), Uuid::new_v4()];
    for (position, step) in steps.iter().enumerate() {
        sqlx::query(
            "INSERT INTO reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at, status, updated_at)
             VALUES ($1, $2, $3, 'reminder', $4, 'email', 'reminder', 'firm', now(), 'pending', now())",
        )
        .bind(step)
        .bind(id)
        .bind(format!("reminder_{position}"))
        .bind(i32::try_from(position).unwrap())
        .execute(db)
        .await
        .unwrap();
    }
    (id, steps)
}

async fn finish(db: &PgPool, step: Uuid, status: &str, at: DateTime<Utc>) {
    sqlx::query("UPDATE reminder_steps SET status = $2, updated_at = $3 WHERE id = $1")
        .bind(step)
        .bind(status)
        .bind(at)
        .execute(db)
        .await
        .unwrap();
}

async fn ended_at(db: &PgPool, id: Uuid) -> Option<DateTime<Utc>> {
    sqlx::query_scalar("SELECT sequence_ended_at FROM invoices WHERE id = $1")
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap()
}

/// A payment's transaction holding `invoice`'s row, as the payments listener does; with
/// `nowait`, failing at once when another transaction holds it instead of waiting.
async fn payment_holding(
    db: &PgPool,
    invoice: Uuid,
    nowait: bool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut payment = db.begin().await?;
    let lock = if nowait { "FOR UPDATE NOWAIT" } else { "FOR UPDATE" };
    sqlx::query(&format!("SELECT 1 FROM invoices WHERE id = $1 {lock}"))
        .bind(invoice)
        .execute(&mut *payment)
        .await?;
    Ok(payment)
}

async fn fold(db: &PgPool) -> u64 {
    let mut tx = db.begin().await.unwrap();
    let consumed = note_ended_sequences(&mut tx, 100).await.unwrap();
    tx.commit().await.unwrap();
    consumed
}

async fn claimed(db: &PgPool, now: DateTime<Utc>) -> Vec<String> {
    let mut tx = db.begin().await.unwrap();
    let delay = HandOffDelay {
        after_days: 8,
        postal_days: 7,
    };
    let found = claim_due(&mut tx, now, delay, 100).await.unwrap();
    tx.rollback().await.unwrap();
    found.into_iter().map(|c| c.number).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_sequence_is_indexed_when_its_last_step_is_final_and_claimed_after_the_delay() {
    let (url, db) = common::fresh_database(4).await;
    common::insert_customer_c1(&db).await;
    let (a, [a1, a2]) = invoice(&db, "F-A").await;
    let (b, [b1, b2]) = invoice(&db, "F-B").await;

    // F-A: its last step goes out while the first is still pending: not over.
    finish(&db, a2, "sent", t(4, 1)).await;
    assert_eq!(fold(&db).await, 1);
    assert_eq!(ended_at(&db, a).await, None);
    // Then the first is skipped: over, as of the last step's transition.
    finish(&db, a1, "skipped", t(4, 2)).await;
    assert_eq!(fold(&db).await, 1);
    assert_eq!(ended_at(&db, a).await, Some(t(4, 1)));
    assert_eq!(fold(&db).await, 0, "every note consumed");

    // F-B ends too, but its invoice is held by another transaction (a payment) during the
    // sweep: its note waits for the next pass.
    finish(&db, b1, "sent", t(4, 3)).await;
    finish(&db, b2, "sent", t(4, 5)).await;
    let payment = payment_holding(&db, b, false).await.unwrap();
    assert_eq!(fold(&db).await, 0);
    assert_eq!(ended_at(&db, b).await, None);
    payment.rollback().await.unwrap();
    assert_eq!(fold(&db).await, 2);
    assert_eq!(ended_at(&db, b).await, Some(t(4, 5)));

    // F-C's first step goes out while the second is pending: its sequence is not over, the
    // note changes nothing. It is consumed even while a payment holds the invoice, and the
    // sweep's transaction never holds the invoice itself: a payment arriving during the
    // sweep does not wait for it.
    let (c, [c1, _]) = invoice(&db, "F-C").await;
    finish(&db, c1, "sent", t(4, 6)).await;
    let payment = payment_holding(&db, c, false).await.unwrap();
    assert_eq!(fold(&db).await, 1);
    payment.rollback().await.unwrap();
    let mut sweep = db.begin().await.unwrap();
    finish(&db, c1, "cancelled", t(4, 7)).await;
    assert_eq!(note_ended_sequences(&mut sweep, 100).await.unwrap(), 1);
    let payment = payment_holding(&db, c, true)
        .await
        .expect("the sweep holds no lock on an invoice whose sequence it leaves as it was");
    payment.rollback().await.unwrap();
    sweep.commit().await.unwrap();
    assert_eq!(ended_at(&db, c).await, None);

    // 8 whole days in Paris after 1 April: F-A from 10 April, F-B from 14 April.
    assert!(claimed(&db, t(4, 9)).await.is_empty());
    assert_eq!(claimed(&db, t(4, 10)).await, ["F-A"]);
    assert_eq!(claimed(&db, t(4, 14)).await, ["F-A", "F-B"]);
    // A paid invoice leaves the index.
    sqlx::query("UPDATE invoices SET status = 'settled', balance = 0 WHERE id = $1")
        .bind(a)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(claimed(&db, t(4, 14) + Duration::days(30)).await, ["F-B"]);
    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}

/// A re-plan removes an invoice's last pending step (its customer's segment now has fewer):
/// what is left is final, so its sequence is over as of the remaining last step, and the
/// invoice is handed off after the delay like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_ended_by_removing_its_pending_steps_is_indexed_and_handed_off() {
    let (url, db) = common::fresh_database(4).await;
    common::insert_customer_c1(&db).await;
    let (id, [first, last]) = invoice(&db, "F-R").await;
    finish(&db, first, "sent", t(4, 1)).await;
    assert_eq!(fold(&db).await, 1);
    assert_eq!(ended_at(&db, id).await, None, "its second step is still pending");

    let mut replan = db.begin().await.unwrap();
    assert!(relance_storage::steps::remove_pending(&mut replan, last)
        .await
        .unwrap());
    replan.commit().await.unwrap();
    assert_eq!(fold(&db).await, 1, "the removal is noted");
    assert_eq!(ended_at(&db, id).await, Some(t(4, 1)));
    assert!(claimed(&db, t(4, 9)).await.is_empty());
    assert_eq!(claimed(&db, t(4, 10)).await, ["F-R"]);
    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}
