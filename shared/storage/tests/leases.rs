//! The lease sweep takes back a delivery whose sender went silent, and only that: a
//! delivery records its stages and renews its lease in a column no index holds
//! (`delivery_renewed_at`, so PostgreSQL can update the row in place), and the sweep reads a
//! step's last sign of life as the later of that renewal and its last change of status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use relance_storage::steps::{self, DeliveryStage};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn the_sweep_takes_back_a_silent_delivery_and_leaves_one_that_renews_its_lease() {
    let (url, db) = common::fresh_database(2).await;
    common::insert_customer_c1(&db).await;
    sqlx::query(
        "INSERT INTO invoices (id, number, customer_id, amount, currency, balance, issued_on, due_on, status, created_at)
         VALUES (gen_random_uuid(), 'F-1', 'C-1', 100, 'EUR', 100, date '2026-05-01', date '2026-06-01', 'open', now())",
    )
    .execute(&db)
    .await
    .unwrap();
    // Four deliveries claimed an hour ago, each under its attempt.
    let names = ["renewed", "staged", "answered", "silent"];
    let mut attempts = Vec::new();
    for (position, name) in names.iter().enumerate() {
        let attempt = Uuid::new_v4();
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at,
                                         status, delivery_attempt, delivery_stage, updated_at, status_changed_at)
             SELECT gen_random_uuid(), i.id, $1, 'reminder', $2, 'email', 'reminder', 'courteous', now() - interval '1 hour',
                    'sending', $3, 'claimed', now(), clock_timestamp() - interval '1 hour'
             FROM invoices i WHERE i.number = 'F-1'
             RETURNING id",
        )
        .bind(name)
        .bind(i32::try_from(position).unwrap())
        .bind(attempt)
        .fetch_one(&db)
        .await
        .unwrap();
        attempts.push((*name, id, attempt));
    }
    let lease = Duration::from_secs(60);
    let swept = |db: sqlx::PgPool| async move {
        let mut tx = db.begin().await.unwrap();
        let mut names: Vec<String> = steps::claim_expired_leases(&mut tx, lease, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        tx.rollback().await.unwrap();
        names.sort();
        names
    };
    assert_eq!(
        swept(db.clone()).await,
        ["answered", "renewed", "silent", "staged"]
    );

    // Three senders give a sign of life; the fourth stays silent.
    let (_, renewed, attempt) = attempts[0];
    assert!(steps::renew_delivery_lease(&db, renewed, attempt).await.unwrap());
    let (_, staged, attempt) = attempts[1];
    assert!(
        steps::record_stage(&db, staged, attempt, DeliveryStage::DataEndSent)
            .await
            .unwrap()
    );
    let (_, answered, attempt) = attempts[2];
    assert!(
        steps::record_answer(&db, answered, attempt, "250 2.0.0 Ok: queued")
            .await
            .unwrap()
    );
    // A renewal under another attempt is not this delivery's: it renews nothing.
    let (_, silent, _) = attempts[3];
    assert!(!steps::renew_delivery_lease(&db, silent, Uuid::new_v4())
        .await
        .unwrap());
    assert_eq!(swept(db.clone()).await, ["silent"]);

    // A renewal older than the lease is no sign of life either.
    sqlx::query("UPDATE reminder_steps SET delivery_renewed_at = clock_timestamp() - interval '2 minutes' WHERE id = $1")
        .bind(renewed)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(swept(db.clone()).await, ["renewed", "silent"]);

    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}
