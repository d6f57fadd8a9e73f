//! Two copies of every service over a ledger of a few hundred invoices: every due reminder
//! goes out exactly once, and none after its invoice was paid.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{Duration, TimeZone, Utc};
use relance_contracts::names;
use relance_domain::{plan_invoice, CustomerKind, FrenchCalendar, Money, PlanInput, Risk};
use relance_tests::{date, invoice_issued, payment_received, TestEnv};
use std::collections::{BTreeMap, BTreeSet};

const INVOICES: usize = 240;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_of_each_service_send_every_due_reminder_exactly_once() {
    let env = TestEnv::start(2).await;
    // The run ends on 10 April at 23:00 UTC: an unpaid invoice gets every step the policy
    // plans before then (a J+20 or J+30 may fall after).
    let end = Utc.with_ymd_and_hms(2026, 4, 10, 23, 0, 0).single().unwrap();
    let policy = relance_tests::email_only_policy();
    let steps_before_end = |due_on| {
        let plan = plan_invoice(
            &policy,
            &PlanInput {
                risk: Risk::Medium,
                kind: CustomerKind::Business,
                amount: Money::new(
                    rust_decimal::Decimal::new(120, 0),
                    Money::parse_currency("EUR").unwrap(),
                ),
                due_on,
                tz: chrono_tz::Europe::Paris,
                calendar: &FrenchCalendar::default(),
            },
        );
        plan.steps.iter().filter(|s| s.due_at <= end).count()
    };
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    let mut paid = BTreeSet::new();
    for i in 0..INVOICES {
        let number = format!("S-{i:04}");
        // Due dates spread over 10 to 25 March.
        let due = date(2026, 3, 10) + Duration::days((i % 16) as i64);
        env.publish(
            names::INVOICE_ISSUED,
            &invoice_issued(&number, "120.00", date(2026, 3, 1), due),
        )
        .await;
        // Every fifth invoice is paid the day after its due date: pre-due note + thank-you.
        let count = if i % 5 == 0 {
            paid.insert((number.clone(), due + Duration::days(1)));
            2
        } else {
            steps_before_end(due)
        };
        expected.insert(format!("compta+{}@acme.test", number.to_lowercase()), count);
    }
    relance_tests::wait_for("every invoice registered", relance_tests::DEADLINE, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices")
            .fetch_one(&env.db)
            .await?;
        Ok(n == INVOICES as i64)
    })
    .await
    .unwrap();

    let mut day = date(2026, 3, 2);
    while day <= date(2026, 4, 10) {
        for (number, _) in paid.iter().filter(|(_, on)| *on == day) {
            env.publish(
                names::PAYMENT_RECEIVED,
                &payment_received(&format!("P-{number}"), number, "120.00", day),
            )
            .await;
        }
        if paid.iter().any(|(_, on)| *on == day) {
            let settled = paid.iter().filter(|(_, on)| *on <= day).count() as i64;
            relance_tests::wait_for("the day's payments", relance_tests::DEADLINE, || async {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices WHERE status = 'settled'")
                    .fetch_one(&env.db)
                    .await?;
                Ok(n == settled)
            })
            .await
            .unwrap();
        }
        env.run_until(day).await;
        day += Duration::days(1);
    }

    let total: usize = expected.values().sum();
    let emails = env.mail.wait_for_emails(total).await;
    let ids: BTreeSet<&str> = emails.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(ids.len(), emails.len(), "an email was sent twice");
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for email in &emails {
        *received.entry(email.recipients()[0].to_string()).or_default() += 1;
    }
    assert_eq!(received, expected, "emails per customer");
    // And none after payment: every paid invoice's later steps were cancelled.
    let after_payment: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
         WHERE s.kind = 'reminder' AND s.status = 'sent' AND i.settled_at IS NOT NULL AND s.updated_at > i.settled_at",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(after_payment, 0);
    env.stop().await;
}
