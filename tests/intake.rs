//! What relance does with inbound messages that repeat a known key (an invoice number, a
//! payment id) or carry a field it cannot use (an amount out of range, a bad phone number),
//! and what it says when it cancels steps: seen from outside, in events, the journal, dead
//! letters and the mail server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{TimeZone, Utc};
use relance_contracts::names;
use relance_contracts::EventV1;
use relance_tests::{date, invoice_issued, payment_received, TestEnv, POLICY_SHIPPED};
use serde_json::{json, Value};

/// The held-back email sender, by its service name.
const EMAIL_SENDER: &str = "sender";

fn of_type<'a>(events: &'a [EventV1], event_type: &str) -> Vec<&'a EventV1> {
    events.iter().filter(|e| e.event_type == event_type).collect()
}

/// (field, registered or recorded, received) of each difference of a duplicate or conflict.
fn differences(detail: &Value, applied_key: &str) -> Vec<(String, String, String)> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    detail["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .map(|d| (text(d, "field"), text(d, applied_key), text(d, "received")))
        .collect()
}

fn customer_updated(event_id: &str, occurred_at: &str, customer: Value) -> Value {
    json!({ "version": 1, "event_id": event_id, "occurred_at": occurred_at, "customer": customer })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_invoice_number_changes_nothing_and_a_differing_one_is_announced_as_a_conflict() {
    let env = TestEnv::start(1).await;
    let original = invoice_issued("F-D1", "250.00", date(2026, 3, 2), date(2026, 3, 16));
    env.publish(names::INVOICE_ISSUED, &original).await;
    env.wait_journal("F-D1", names::INVOICE_REGISTERED, 1).await;

    // The same invoice under another event id: a true duplicate.
    let mut same = original.clone();
    same["event_id"] = json!("evt-resent");
    env.publish(names::INVOICE_ISSUED, &same).await;
    env.wait_journal("F-D1", names::INVOICE_DUPLICATE, 1).await;
    // Then with another email and risk: a conflict, ignored as well.
    let mut other = original.clone();
    other["event_id"] = json!("evt-changed");
    other["invoice"]["customer"]["email"] = json!("new-address@acme.test");
    other["invoice"]["customer"]["risk"] = json!("high");
    env.publish(names::INVOICE_ISSUED, &other).await;
    env.wait_journal("F-D1", names::INVOICE_DUPLICATE, 2).await;

    let events = env.events_until_count(names::INVOICE_DUPLICATE, 2).await;
    let mut duplicates = of_type(&events, names::INVOICE_DUPLICATE);
    assert_eq!(duplicates.len(), 2, "{events:?}");
    // In the order they were applied (relays may publish them in another).
    duplicates.sort_by_key(|e| e.sequence);
    assert_eq!(duplicates[0].detail["conflict"], json!(false));
    assert_eq!(differences(&duplicates[0].detail, "registered"), vec![]);
    assert_eq!(duplicates[1].detail["conflict"], json!(true));
    assert_eq!(duplicates[1].detail["event_id"], json!("evt-changed"));
    assert_eq!(
        differences(&duplicates[1].detail, "registered"),
        vec![
            (
                "invoice.customer.email".to_string(),
                "compta+f-d1@acme.test".to_string(),
                "new-address@acme.test".to_string()
            ),
            (
                "invoice.customer.risk".to_string(),
                "medium".to_string(),
                "high".to_string()
            ),
        ]
    );
    assert_eq!(of_type(&events, names::INVOICE_REGISTERED).len(), 1);

    // The note before the due date goes to the address the invoice was registered with.
    env.run_until(date(2026, 3, 11)).await;
    let emails = env.mail.wait_for_emails(1).await;
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].recipients(), vec!["compta+f-d1@acme.test"]);

    // The risk was not stored behind the planner's back: a customer.updated to high is a
    // change, and re-plans the invoice on high's dates.
    let customer = json!({
        "id": "C-F-D1",
        "name": "ACME Industrie SA",
        "contact_name": "Jeanne Martin",
        "email": "compta+f-d1@acme.test",
        "risk": "high",
    });
    env.publish(
        names::CUSTOMER_UPDATED,
        &customer_updated("crm-d1", "2026-03-11T12:00:00Z", customer),
    )
    .await;
    env.wait_journal("F-D1", "steps.replanned", 1).await;
    let replanned: (String, String) = sqlx::query_as(
        "SELECT detail->>'old_segment', detail->>'new_segment' FROM journal
         WHERE invoice_number = 'F-D1' AND action = 'steps.replanned'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(replanned, ("medium".to_string(), "high".to_string()));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_in_exponent_form_or_beyond_the_columns_range_are_refused_at_once_naming_the_field() {
    let env = TestEnv::start(1).await;
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-A0", "500.00", date(2026, 3, 2), date(2026, 3, 16)),
    )
    .await;
    env.wait_journal("F-A0", names::INVOICE_REGISTERED, 1).await;
    for (number, amount) in [("F-A1", "1e3"), ("F-A2", "12345678901234567")] {
        env.publish(
            names::INVOICE_ISSUED,
            &invoice_issued(number, amount, date(2026, 3, 2), date(2026, 3, 16)),
        )
        .await;
        env.wait_journal(number, names::INVOICE_REJECTED, 1).await;
    }
    for (id, amount) in [("P-A1", "1e2"), ("P-A2", "12345678901234567")] {
        env.publish(
            names::PAYMENT_RECEIVED,
            &payment_received(id, "F-A0", amount, date(2026, 3, 3)),
        )
        .await;
    }
    let mut reasons = env.wait_for_dead_letters(4).await;
    reasons.sort();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    for reason in &reasons {
        assert!(!reason.contains("gave up"), "refused at once: {reason}");
    }
    assert!(
        reasons[0].starts_with("invoice F-A1 refused: invoice.amount: \"1e3\" is not a decimal number"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("invoice F-A2 refused: invoice.amount: \"12345678901234567\" has 17 digits"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].starts_with("payment P-A1 refused: payment.amount: \"1e2\" is not a decimal number"),
        "{reasons:?}"
    );
    assert!(
        reasons[3].starts_with("payment P-A2 refused: payment.amount: \"12345678901234567\" has 17 digits"),
        "{reasons:?}"
    );

    let events = env.events_until_count(names::INVOICE_REJECTED, 2).await;
    let rejected: Vec<(String, String)> = of_type(&events, names::INVOICE_REJECTED)
        .iter()
        .map(|e| {
            (
                e.invoice_number.clone(),
                e.detail["field"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            ("F-A1".to_string(), "invoice.amount".to_string()),
            ("F-A2".to_string(), "invoice.amount".to_string())
        ]
    );
    assert!(of_type(&events, names::PAYMENT_RECORDED).is_empty());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_id_reused_with_another_amount_is_a_conflict_whatever_the_balance() {
    let env = TestEnv::start(1).await;
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-P1", "300.00", date(2026, 3, 2), date(2026, 3, 16)),
    )
    .await;
    env.wait_journal("F-P1", names::INVOICE_REGISTERED, 1).await;
    let first = payment_received("P-1", "F-P1", "100.00", date(2026, 3, 3));
    env.publish(names::PAYMENT_RECEIVED, &first).await;
    env.wait_journal("F-P1", names::PAYMENT_RECORDED, 1).await;

    // The id again: for less than the balance, then for more than it.
    for (event_id, amount) in [("evt-p1-150", "150.00"), ("evt-p1-250", "250.00")] {
        let mut reused = first.clone();
        reused["event_id"] = json!(event_id);
        reused["payment"]["amount"] = json!(amount);
        env.publish(names::PAYMENT_RECEIVED, &reused).await;
    }
    let mut reasons = env.wait_for_dead_letters(2).await;
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "payment P-1 refused: conflict: payment id already recorded with other facts: payment.amount 100 (recorded) vs 150 (received)".to_string(),
            "payment P-1 refused: conflict: payment id already recorded with other facts: payment.amount 100 (recorded) vs 250 (received)".to_string(),
        ]
    );
    // A true duplicate under a new event id: applied once, silently.
    let mut resent = first.clone();
    resent["event_id"] = json!("evt-p1-resent");
    env.publish(names::PAYMENT_RECEIVED, &resent).await;
    env.wait_journal("F-P1", "payment.duplicate", 1).await;

    let events = env.events_until_count(names::PAYMENT_CONFLICT, 2).await;
    let mut conflicts = of_type(&events, names::PAYMENT_CONFLICT);
    assert_eq!(conflicts.len(), 2, "{events:?}");
    // Both were published at once: they may be applied in either order.
    conflicts.sort_by_key(|e| e.detail["event_id"].as_str().unwrap_or("").to_string());
    assert_eq!(
        differences(&conflicts[0].detail, "recorded"),
        vec![("payment.amount".to_string(), "100".to_string(), "150".to_string())]
    );
    assert_eq!(conflicts[1].detail["event_id"], json!("evt-p1-250"));
    assert_eq!(env.journal_count("F-P1", names::PAYMENT_CONFLICT).await, 2);
    assert_eq!(of_type(&events, names::PAYMENT_RECORDED).len(), 1);
    assert_eq!(
        of_type(&events, names::PAYMENT_RECORDED)[0].detail["balance"],
        json!("200")
    );
    assert!(
        env.dead_letters().await.is_empty(),
        "the true duplicate is not dead-lettered"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_phone_number_is_dropped_with_a_warning_and_the_sms_step_falls_back_to_email() {
    let env = TestEnv::try_start(1, &[("RELANCE_POLICY_FILE", POLICY_SHIPPED)])
        .await
        .unwrap();
    // Due 10 February: by Monday 2 March the SMS step (J+17, Friday 27 February) is the latest
    // one due; it waits for its window, 09:00 in Paris.
    let mut invoice = invoice_issued("F-T1", "480.00", date(2026, 1, 10), date(2026, 2, 10));
    invoice["invoice"]["customer"]["phone"] = json!("06 12");
    env.publish(names::INVOICE_ISSUED, &invoice).await;
    env.wait_journal("F-T1", names::INVOICE_REGISTERED, 1).await;
    let events = env.events_until_count(names::INVOICE_REGISTERED, 1).await;
    let registered = of_type(&events, names::INVOICE_REGISTERED);
    let warnings = registered[0].detail["warnings"]
        .as_array()
        .expect("warnings")
        .clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["field"], json!("invoice.customer.phone"));
    assert!(
        warnings[0]["reason"].as_str().unwrap().contains("\"06 12\""),
        "{warnings:?}"
    );
    let journaled: Value = sqlx::query_scalar(
        "SELECT detail FROM journal WHERE invoice_number = 'F-T1' AND action = 'invoice.registered'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(journaled["warnings"], json!(warnings));
    assert!(of_type(&events, names::INVOICE_REJECTED).is_empty());

    env.set_time(Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap())
        .await;
    env.wait_journal("F-T1", names::REMINDER_FALLBACK, 1).await;
    let emails = env.mail.wait_for_emails(1).await;
    assert_eq!(emails[0].recipients(), vec!["compta+f-t1@acme.test"]);
    let fallback: Value = sqlx::query_scalar(
        "SELECT detail FROM journal WHERE invoice_number = 'F-T1' AND action = 'reminder.fallback'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(
        (&fallback["from"], &fallback["to"]),
        (&json!("sms"), &json!("email"))
    );

    // The same for a customer.updated: accepted without the number, journaled on its invoices.
    let customer = json!({
        "id": "C-F-T1",
        "name": "ACME Industrie SA",
        "contact_name": "Jeanne Martin",
        "email": "compta+f-t1@acme.test",
        "phone": "not a phone",
    });
    env.publish(
        names::CUSTOMER_UPDATED,
        &customer_updated("crm-t1", "2026-03-02T10:00:00Z", customer),
    )
    .await;
    env.wait_journal("F-T1", "customer.field_dropped", 1).await;
    let dropped: Value = sqlx::query_scalar(
        "SELECT detail FROM journal WHERE invoice_number = 'F-T1' AND action = 'customer.field_dropped'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(dropped["warnings"][0]["field"], json!("customer.phone"));
    assert!(env.dead_letters().await.is_empty());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_reminder_says_what_it_was_before() {
    let env = TestEnv::try_start_holding(1, &[EMAIL_SENDER], &[]).await.unwrap();
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-C1", "250.00", date(2026, 3, 2), date(2026, 3, 16)),
    )
    .await;
    env.wait_journal("F-C1", names::INVOICE_REGISTERED, 1).await;
    // The note before the due date is rendered, and waits for the held sender.
    env.move_clock(Utc.with_ymd_and_hms(2026, 3, 11, 8, 0, 0).unwrap())
        .await;
    env.wait_journal("F-C1", "reminder.rendered", 1).await;
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("P-C1", "F-C1", "250.00", date(2026, 3, 11)),
    )
    .await;
    env.wait_journal("F-C1", names::INVOICE_SETTLED, 1).await;

    let events = env.events_until_count(names::REMINDER_CANCELLED, 5).await;
    let cancelled: Vec<(String, String)> = of_type(&events, names::REMINDER_CANCELLED)
        .iter()
        .map(|e| {
            (
                e.step.clone().unwrap_or_default(),
                e.detail["was"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        cancelled,
        vec![
            ("pre_due".to_string(), "rendered".to_string()),
            ("reminder_1".to_string(), "pending".to_string()),
            ("reminder_2".to_string(), "pending".to_string()),
            ("reminder_3".to_string(), "pending".to_string()),
            ("formal_notice".to_string(), "pending".to_string()),
        ]
    );
    let journaled: Vec<String> = sqlx::query_scalar(
        "SELECT detail->>'was' FROM journal WHERE invoice_number = 'F-C1' AND action = 'reminder.cancelled' ORDER BY id",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    assert_eq!(
        journaled,
        vec!["rendered", "pending", "pending", "pending", "pending"]
    );
    env.stop().await;
}
