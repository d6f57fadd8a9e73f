//! Rows are parsed once, when read: a value no enum knows (written by hand, bypassing the
//! code that writes rows) is an error naming the row and the value, never a silent default.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{TimeZone, Utc};
use relance_storage::{invoices, overview, steps};
use uuid::Uuid;

#[tokio::test]
async fn an_impossible_time_zone_or_channel_is_an_error_naming_the_row() {
    // A fresh database named like the harness's, so a crashed run's leftover is removed.
    let (url, db) = common::fresh_database(2).await;
    sqlx::query(
        "INSERT INTO customers (id, name, contact_name, email, language, timezone, risk, kind, updated_at)
         VALUES ('C-1', 'ACME', 'J. Martin', 'compta@acme.test', 'fr', 'Mars/Olympus', 'medium', 'business', now()),
                ('C-2', 'Globex', 'H. Scorpio', 'ap@globex.test', 'en', 'Europe/Paris', 'low', 'business', now())",
    )
    .execute(&db)
    .await
    .unwrap();
    let (mars, paris) = (Uuid::new_v4(), Uuid::new_v4());
    sqlx::query(
        "INSERT INTO invoices (id, number, customer_id, amount, currency, balance, issued_on, due_on, status, created_at)
         VALUES ($1, 'F-MARS', 'C-1', 100, 'EUR', 100, date '2026-01-01', date '2026-03-01', 'open', now()),
                ($2, 'F-PARIS', 'C-2', 100, 'EUR', 100, date '2026-01-01', date '2026-03-01', 'open', now())",
    )
    .bind(mars)
    .bind(paris)
    .execute(&db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at, status, updated_at)
         VALUES ($1, $2, 'pigeon_reminder', 'reminder', 1, 'carrier_pigeon', 'first_reminder', 'courteous', now(), 'pending', now())",
    )
    .bind(Uuid::new_v4())
    .bind(paris)
    .execute(&db)
    .await
    .unwrap();
    let mut conn = db.acquire().await.unwrap();

    // The invoice whose customer lives on Mars is not read as if in Paris.
    let error = invoices::find_by_number(&mut conn, "F-MARS").await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("F-MARS"), "{message}");
    assert!(message.contains("Mars/Olympus"), "{message}");
    // The same through the overview.
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0).single().unwrap();
    let error = overview::list(&db, now, None).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("F-MARS") && message.contains("Mars/Olympus"),
        "{message}"
    );

    // A sound invoice reads as before, its fields typed.
    let invoice = invoices::find_by_number(&mut conn, "F-PARIS")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(invoice.timezone, chrono_tz::Europe::Paris);
    assert_eq!(invoice.risk, relance_domain::Risk::Low);

    // A step on a channel nobody knows names the step, its invoice and the channel.
    let error = steps::for_invoice(&mut conn, paris).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("pigeon_reminder") && message.contains("F-PARIS"),
        "{message}"
    );
    assert!(message.contains("carrier_pigeon"), "{message}");

    drop(conn);
    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}
