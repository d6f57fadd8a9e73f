//! An invoice's planned steps stored in one statement are stored as planned: each with its
//! own name, position, channel, template, tone and due time, under the ids returned.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{TimeZone, Utc};
use relance_domain::{Channel, PlannedStep, StepKind, Tone};
use relance_storage::steps::{self, StepStatus};
use uuid::Uuid;

#[tokio::test]
async fn a_plans_steps_are_stored_in_one_statement_as_planned() {
    let (url, db) = common::fresh_database(2).await;
    common::insert_customer_c1(&db).await;
    let invoice: Uuid = sqlx::query_scalar(
        "INSERT INTO invoices (id, number, customer_id, amount, currency, balance, issued_on, due_on, status, created_at)
         VALUES (gen_random_uuid(), 'F-1', 'C-1', 100, 'EUR', 100, date '2026-04-01', date '2026-06-01', 'open', now())
         RETURNING id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let day = |d: u32| Utc.with_ymd_and_hms(2026, 6, d, 8, 0, 0).unwrap();
    let planned = vec![
        PlannedStep {
            name: "avant_echeance".into(),
            position: 0,
            channel: Channel::Email,
            template: "pre_due".into(),
            tone: Tone::Courteous,
            due_at: day(1),
        },
        PlannedStep {
            name: "relance_sms".into(),
            position: 3,
            channel: Channel::Sms,
            template: "sms_reminder".into(),
            tone: Tone::Firm,
            due_at: day(20),
        },
        PlannedStep {
            name: "mise_en_demeure".into(),
            position: 5,
            channel: Channel::Letter,
            template: "formal_notice".into(),
            tone: Tone::Formal,
            due_at: day(30),
        },
    ];
    let at = Utc.with_ymd_and_hms(2026, 5, 1, 9, 0, 0).unwrap();
    let mut tx = db.begin().await.unwrap();
    let ids = steps::insert_planned_all(
        &mut tx,
        invoice,
        StepKind::Reminder,
        &planned,
        StepStatus::Pending,
        at,
    )
    .await
    .unwrap();
    assert!(
        steps::insert_planned_all(&mut tx, invoice, StepKind::Reminder, &[], StepStatus::Pending, at)
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();

    assert_eq!(ids.len(), 3);
    let mut conn = db.acquire().await.unwrap();
    for (id, step) in ids.iter().zip(&planned) {
        let stored = steps::find(&mut conn, *id)
            .await
            .unwrap()
            .expect("the step under its id");
        assert_eq!(stored.invoice_id, invoice);
        assert_eq!(stored.name, step.name);
        assert_eq!(stored.position, step.position);
        assert_eq!(stored.channel, step.channel);
        assert_eq!(stored.template, step.template);
        assert_eq!(stored.tone, step.tone);
        assert_eq!(stored.due_at, step.due_at);
        assert_eq!(stored.kind, StepKind::Reminder);
        assert_eq!(stored.status, StepStatus::Pending);
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM reminder_steps WHERE invoice_id = $1")
        .bind(invoice)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(count, 3, "nothing more stored");
    drop(conn);
    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}
