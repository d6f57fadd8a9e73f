//! The outbox and the inbox over time: published messages and the records of applied ones
//! are removed after their retention window, without forgetting a message that may still be
//! delivered again; and the events of one invoice carry a sequence that orders them, however
//! many relays publish them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, Utc};
use relance_contracts::names;
use relance_tests::{date, invoice_issued, start_time, wait_for, TestEnv, DEADLINE};
use serde_json::Value;

async fn inbox_has(env: &TestEnv, event_id: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM processed_messages WHERE message_id = $1)")
        .bind(event_id)
        .fetch_one(&env.db)
        .await
        .unwrap()
}

/// Outbox rows published before `before` (all of them for `None`).
async fn published_before(env: &TestEnv, before: Option<DateTime<Utc>>) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL AND published_at < $1")
        .bind(before.unwrap_or(DateTime::<Utc>::MAX_UTC))
        .fetch_one(&env.db)
        .await
        .unwrap()
}

/// The journal's details of `action` for `invoice`.
async fn journal_details(env: &TestEnv, invoice: &str, action: &str) -> Vec<Value> {
    sqlx::query_scalar("SELECT detail FROM journal WHERE invoice_number = $1 AND action = $2 ORDER BY id")
        .bind(invoice)
        .bind(action)
        .fetch_all(&env.db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_outbox_rows_and_inbox_records_are_removed_and_a_recent_redelivery_is_still_a_duplicate() {
    let env = TestEnv::try_start(1, &[("RELANCE_RETENTION_INTERVAL_MS", "20")])
        .await
        .unwrap();
    let t0 = start_time();
    // Due in the summer: nothing falls due in the five weeks the test covers.
    let old = invoice_issued("RET-OLD", "100.00", date(2026, 3, 1), date(2026, 7, 31));
    let recent = invoice_issued("RET-RECENT", "200.00", date(2026, 3, 1), date(2026, 7, 31));
    let new = invoice_issued("RET-NEW", "300.00", date(2026, 3, 1), date(2026, 7, 31));

    env.publish(names::INVOICE_ISSUED, &old).await;
    env.wait_journal("RET-OLD", names::INVOICE_REGISTERED, 1).await;
    env.set_time(t0 + Duration::days(10)).await;
    env.publish(names::INVOICE_ISSUED, &recent).await;
    env.wait_journal("RET-RECENT", names::INVOICE_REGISTERED, 1).await;
    env.idle().await;
    assert!(inbox_has(&env, "evt-invoice-RET-OLD").await);
    assert!(published_before(&env, None).await > 0, "the relay published");

    // 35 days on: RET-OLD was applied 35 days ago (past the 30-day inbox window), RET-RECENT
    // 25 days ago; every outbox row so far was published more than a day ago.
    let now = t0 + Duration::days(35);
    env.set_time(now).await;
    env.publish(names::INVOICE_ISSUED, &new).await;
    env.wait_journal("RET-NEW", names::INVOICE_REGISTERED, 1).await;
    env.idle().await;
    wait_for("the scheduler to remove expired rows", DEADLINE, || async {
        Ok(!inbox_has(&env, "evt-invoice-RET-OLD").await
            && published_before(&env, Some(now - Duration::days(1))).await == 0)
    })
    .await
    .unwrap();
    // What is within its window stays, and a pass finds nothing more to remove.
    let again =
        relance_storage::retention::purge(&env.db, now - Duration::days(1), now - Duration::days(30), 10)
            .await
            .unwrap();
    assert_eq!((again.outbox, again.inbox), (0, 0), "{again:?}");
    assert!(
        inbox_has(&env, "evt-invoice-RET-RECENT").await,
        "a 25-day-old inbox record is kept"
    );
    assert!(inbox_has(&env, "evt-invoice-RET-NEW").await);
    assert!(
        published_before(&env, None).await > 0,
        "today's published rows are kept"
    );
    let unpublished = relance_storage::outbox::pending_count(&env.db).await.unwrap();
    assert_eq!(unpublished, 0);

    // RET-RECENT delivered again within the window: the inbox knows it (noted, nothing
    // announced). RET-OLD delivered again after it: only the ledger knows it (a duplicate
    // invoice, announced); either way nothing changes.
    env.publish(names::INVOICE_ISSUED, &recent).await;
    env.publish(names::INVOICE_ISSUED, &old).await;
    env.wait_journal("RET-RECENT", names::INVOICE_DUPLICATE, 1).await;
    env.wait_journal("RET-OLD", names::INVOICE_DUPLICATE, 1).await;
    env.idle().await;
    let recent_dup = journal_details(&env, "RET-RECENT", names::INVOICE_DUPLICATE).await;
    assert_eq!(
        recent_dup,
        vec![serde_json::json!({ "event_id": "evt-invoice-RET-RECENT" })],
        "recognised by the inbox as the same message"
    );
    let old_dup = journal_details(&env, "RET-OLD", names::INVOICE_DUPLICATE).await;
    assert_eq!(old_dup.len(), 1, "{old_dup:?}");
    assert_eq!(old_dup[0]["conflict"], Value::Bool(false), "{old_dup:?}");
    let invoices: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(invoices, 3);
    env.stop().await;
}
