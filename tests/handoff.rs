//! Hand-off on the simulated clock, with the harness's email-only policy in its send windows:
//! an invoice that goes through its whole sequence unpaid is handed off once the days after
//! its formal notice are over, once, with an `invoice.handed_off` event carrying its journal
//! and the amount due with the late interest, the indemnity and the total; a paid invoice
//! never is, nor one paused by a promise to pay.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{TimeZone, Utc};
use relance_contracts::{names, HandOffDetailV1};
use relance_domain::interest::InterestTerms;
use relance_tests::{date, invoice_issued, payment_received, TestEnv};
use rust_decimal::Decimal;
use serde_json::json;

async fn status(env: &TestEnv, number: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, status_reason FROM invoices WHERE number = $1")
        .bind(number)
        .fetch_one(&env.db)
        .await
        .unwrap()
}

/// The late-payment terms of the test: a contractual 12 % a year (above 2026-H1's 7.86 %
/// floor).
fn terms() -> InterestTerms {
    InterestTerms::contractual(Decimal::from(12))
}

/// Two copies of every service, running as the workers' database role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_invoice_is_handed_off_once_with_its_journal_and_a_paid_one_never() {
    let env = TestEnv::try_start(
        2,
        &[
            ("RELANCE_TEST_DB_USER", "relance_worker"),
            ("RELANCE_INTEREST_CONTRACT_PERCENT", "12"),
        ],
    )
    .await
    .unwrap();
    // Due Monday 16 March (medium risk), 09:00 in Paris: the pre-due note on 11 March, the
    // reminders on Tuesdays 24 and 31 March and 7 April, the formal notice on Wednesday 15
    // April. It gives 8 days: handed off from 24 April, 00:00 in Paris.
    for (number, amount) in [
        ("F-900", "1500.00"),
        ("F-901", "800.00"),
        ("F-902", "1000.00"),
        ("F-903", "300.00"),
    ] {
        env.publish(
            names::INVOICE_ISSUED,
            &invoice_issued(number, amount, date(2026, 3, 2), date(2026, 3, 16)),
        )
        .await;
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    env.run_until(date(2026, 3, 21)).await;
    // F-901 paid in full, F-902 in part.
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-901", "F-901", "800.00", date(2026, 3, 22)),
    )
    .await;
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-902", "F-902", "400.00", date(2026, 3, 22)),
    )
    .await;
    env.wait_journal("F-901", names::INVOICE_SETTLED, 1).await;
    env.wait_journal("F-902", names::PAYMENT_RECORDED, 1).await;

    // F-903's customer promises, after the firm reminder, to pay on 15 May.
    env.run_until(date(2026, 3, 31)).await;
    env.publish(
        names::PROMISE_RECORDED,
        &json!({
            "version": 1,
            "event_id": "crm-promise-903",
            "occurred_at": "2026-04-01T09:00:00Z",
            "promise": { "invoice_number": "F-903", "promised_on": "2026-05-15" }
        }),
    )
    .await;
    env.wait_journal("F-903", names::INVOICE_PAUSED, 1).await;

    // 23 April, 23:00 in Paris: the deadline day is not over.
    let deadline_evening = Utc.with_ymd_and_hms(2026, 4, 23, 21, 0, 0).single().unwrap();
    env.run_until(date(2026, 4, 22)).await;
    env.set_time(deadline_evening).await;
    let handed = relance_scheduler::handoff::hand_off_due(
        &env.db,
        deadline_evening,
        relance_storage::handoff::HandOffDelay {
            after_days: 8,
            postal_days: 7,
        },
        100,
        &terms(),
    )
    .await
    .unwrap();
    assert_eq!(handed, 0);
    assert_eq!(status(&env, "F-900").await.0, "open");
    assert_eq!(
        env.journal_count("F-900", names::REMINDER_SENT).await,
        5,
        "the whole sequence went out"
    );

    // 24 April, 00:30 in Paris.
    env.set_time(Utc.with_ymd_and_hms(2026, 4, 23, 22, 30, 0).single().unwrap())
        .await;
    env.wait_journal("F-900", names::INVOICE_HANDED_OFF, 1).await;
    env.wait_journal("F-902", names::INVOICE_HANDED_OFF, 1).await;
    // And weeks later, with two schedulers sweeping all along: still once, and never the
    // paid invoice.
    env.run_until(date(2026, 5, 8)).await;
    env.idle().await;
    for number in ["F-900", "F-902"] {
        assert_eq!(env.journal_count(number, names::INVOICE_HANDED_OFF).await, 1);
        let (status, reason) = status(&env, number).await;
        assert_eq!(status, "handed_off");
        assert!(reason.unwrap_or_default().contains("formal_notice"));
    }
    assert_eq!(status(&env, "F-901").await.0, "settled");
    assert_eq!(env.journal_count("F-901", names::INVOICE_HANDED_OFF).await, 0);
    assert_eq!(status(&env, "F-903").await.0, "open", "held by its promise");
    assert_eq!(env.journal_count("F-903", names::INVOICE_HANDED_OFF).await, 0);

    let events: Vec<_> = env
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == names::INVOICE_HANDED_OFF)
        .collect();
    let mut numbers: Vec<&str> = events.iter().map(|e| e.invoice_number.as_str()).collect();
    numbers.sort();
    assert_eq!(numbers, vec!["F-900", "F-902"]);
    for event in &events {
        let detail: HandOffDetailV1 = serde_json::from_value(event.detail.clone()).unwrap();
        assert_eq!(detail.after_days, 8);
        assert_eq!(
            (detail.last_step.as_str(), detail.last_step_status.as_str()),
            ("formal_notice", "sent")
        );
        // Interest at 12 % a year from 17 March through 24 April, the hand-off day in Paris
        // (15 + 24 = 39 days), on what was unpaid each day, / 36 500, rounded half-even:
        // F-900: 1500 × 12 × 39 / 36 500 = 19.2328… → 19.23; + 40 indemnity = 1559.23.
        // F-902: (1000 × 12 × 5 (17–21 March) + 600 × 12 × 34 (from the payment on 22 March))
        // / 36 500 = 304 800 / 36 500 = 8.3506… → 8.35; 600 + 8.35 + 40 = 648.35.
        let expected = match event.invoice_number.as_str() {
            "F-900" => ("1500.00", "0.00", "1500.00", "19.23", "1559.23"),
            _ => ("1000.00", "400.00", "600.00", "8.35", "648.35"),
        };
        let due = &detail.amount_due;
        assert_eq!(
            (
                due.interest.as_deref(),
                due.indemnity.as_deref(),
                due.total.as_deref()
            ),
            (Some(expected.3), Some("40.00"), Some(expected.4))
        );
        assert_eq!(due.interest_through, Some(date(2026, 4, 24)));
        assert_eq!(due.interest_rate_percent.as_deref(), Some("12"));
        assert_eq!(
            (
                due.invoiced.as_str(),
                due.paid.as_str(),
                due.principal.as_str(),
                due.currency.as_str()
            ),
            (expected.0, expected.1, expected.2, "EUR")
        );
        assert_eq!(due.credited, "0.00");
        // The journal as it stood: every entry, linked, ending at the head that the
        // hand-off entry itself records.
        let journal = &detail.journal;
        assert_eq!(journal.chain, event.invoice_number);
        let actions: Vec<&str> = journal.entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions.first(), Some(&names::INVOICE_REGISTERED));
        assert_eq!(actions.iter().filter(|a| **a == names::REMINDER_SENT).count(), 5);
        assert!(!actions.contains(&names::INVOICE_HANDED_OFF));
        for (i, entry) in journal.entries.iter().enumerate() {
            assert_eq!(entry.seq, i as i64 + 1);
            let previous = if i == 0 {
                "0".repeat(64)
            } else {
                journal.entries[i - 1].hash.clone()
            };
            assert_eq!(entry.prev_hash, previous);
        }
        let last = journal.entries.last().unwrap();
        assert_eq!((journal.head_seq, &journal.head_hash), (last.seq, &last.hash));
        let stored: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, hash, action FROM journal WHERE invoice_number = $1 AND seq <= $2 ORDER BY seq",
        )
        .bind(&event.invoice_number)
        .bind(journal.head_seq)
        .fetch_all(&env.db)
        .await
        .unwrap();
        let sent: Vec<(i64, String, String)> = journal
            .entries
            .iter()
            .map(|e| (e.seq, e.hash.clone(), e.action.clone()))
            .collect();
        assert_eq!(sent, stored, "the event carries the journal as stored");
        let pinned: serde_json::Value = sqlx::query_scalar(
            "SELECT detail->'journal_head' FROM journal WHERE invoice_number = $1 AND action = 'invoice.handed_off'",
        )
        .bind(&event.invoice_number)
        .fetch_one(&env.db)
        .await
        .unwrap();
        assert_eq!(pinned["hash"], journal.head_hash.as_str());
    }
    let report = relance_storage::journal::verify::verify_all(&env.db)
        .await
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    env.stop().await;
}
