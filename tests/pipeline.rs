//! End to end through the queues, as another system would use relance: invoices and
//! payments published on `<ns>.inbound`, emails read back from a real SMTP server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use relance_contracts::names;
use relance_tests::{date, invoice_issued, payment_received, wait_for, TestEnv, DEADLINE};
use serde_json::json;

/// A tiny PDF standing in for the invoice document.
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_gets_its_reminders_by_email_until_it_is_paid_then_a_thank_you() {
    let env = TestEnv::start(1).await;
    let mut invoice = invoice_issued("F-100", "1500.00", date(2026, 3, 2), date(2026, 3, 16));
    invoice["invoice"]["customer"]["cc"] = json!(["fournisseurs@acme.test"]);
    invoice["invoice"]["payment_link"] = json!("https://pay.exemple.test/F-100");
    invoice["invoice"]["pdf_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(PDF));
    env.publish(names::INVOICE_ISSUED, &invoice).await;
    env.wait_journal("F-100", names::INVOICE_REGISTERED, 1).await;

    // Nothing before J-5 (11 March, 09:00 in Paris).
    env.run_until(date(2026, 3, 10)).await;
    assert!(env.mail.emails().await.is_empty());

    env.run_until(date(2026, 3, 11)).await;
    let emails = env.mail.wait_for_emails(1).await;
    assert_eq!(emails.len(), 1);
    let pre_due = &emails[0];
    assert_eq!(pre_due.recipients(), vec!["compta+f-100@acme.test"]);
    assert_eq!(pre_due.cc, vec!["fournisseurs@acme.test".to_string()]);
    assert!(
        pre_due.subject.contains("F-100") && pre_due.subject.contains("16/03/2026"),
        "{}",
        pre_due.subject
    );
    assert!(pre_due.text.contains("Jeanne Martin"), "{}", pre_due.text);
    assert!(
        pre_due.text.contains("1\u{202f}500,00\u{a0}€"),
        "{}",
        pre_due.text
    );
    assert!(
        pre_due.text.contains("FR76 3000 6000 0112 3456 7890 189"),
        "{}",
        pre_due.text
    );
    assert!(
        pre_due.text.contains("https://pay.exemple.test/F-100"),
        "{}",
        pre_due.text
    );
    assert!(pre_due.html.contains("F-100"), "{}", pre_due.html);
    assert_eq!(pre_due.attachments.len(), 1);
    assert_eq!(
        pre_due.attachments,
        vec![("F-100.pdf".to_string(), "application/pdf".to_string())]
    );

    // J+5: the first reminder after the due date, never labelled "first reminder". J+5 is
    // Saturday 21 March: it waits for the reminder window, Tuesday 24 March.
    env.run_until(date(2026, 3, 23)).await;
    assert_eq!(env.mail.emails().await.len(), 1);
    env.run_until(date(2026, 3, 24)).await;
    let emails = env.mail.wait_for_emails(2).await;
    assert_eq!(emails.len(), 2);
    let reminder = &emails[1];
    assert!(reminder.subject.contains("F-100"), "{}", reminder.subject);
    assert!(
        !reminder.subject.to_lowercase().contains("première")
            && !reminder.text.to_lowercase().contains("première relance")
    );
    assert!(
        reminder.text.contains("1\u{202f}500,00\u{a0}€"),
        "{}",
        reminder.text
    );

    // Paid in full: the sequence stops and a thank-you goes out.
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-1", "F-100", "1500.00", date(2026, 3, 25)),
    )
    .await;
    env.wait_journal("F-100", names::INVOICE_SETTLED, 1).await;
    let emails = env.mail.wait_for_emails(3).await;
    assert!(
        emails[2].subject.to_lowercase().contains("merci"),
        "{}",
        emails[2].subject
    );
    assert_eq!(emails[2].recipients(), vec!["compta+f-100@acme.test"]);

    // Well past J+12: nothing more.
    env.run_until(date(2026, 4, 5)).await;
    assert_eq!(env.mail.emails().await.len(), 3);
    assert_eq!(
        env.steps("F-100").await,
        vec![
            ("pre_due".to_string(), "sent".to_string()),
            ("reminder_1".to_string(), "sent".to_string()),
            ("reminder_2".to_string(), "cancelled".to_string()),
            ("reminder_3".to_string(), "cancelled".to_string()),
            ("formal_notice".to_string(), "cancelled".to_string()),
            ("thanks".to_string(), "sent".to_string()),
        ]
    );
    let events: Vec<(String, Option<String>)> = env
        .events()
        .await
        .into_iter()
        .map(|e| (e.event_type, e.step))
        .collect();
    for expected in [
        ("reminder.sent", Some("pre_due")),
        ("reminder.sent", Some("reminder_1")),
        ("reminder.cancelled", Some("reminder_2")),
        ("invoice.settled", None),
        ("thanks.sent", Some("thanks")),
    ] {
        assert!(
            events.contains(&(expected.0.to_string(), expected.1.map(str::to_string))),
            "missing {expected:?} in {events:?}"
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_payment_changes_the_amount_in_the_next_reminder() {
    let env = TestEnv::start(1).await;
    let mut invoice = invoice_issued("F-200", "1000.00", date(2026, 3, 2), date(2026, 3, 16));
    invoice["invoice"]["customer"]["language"] = json!("en");
    env.publish(names::INVOICE_ISSUED, &invoice).await;
    env.run_until(date(2026, 3, 17)).await;
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-2", "F-200", "400.00", date(2026, 3, 17)),
    )
    .await;
    env.wait_journal("F-200", names::PAYMENT_RECORDED, 1).await;
    env.run_until(date(2026, 3, 24)).await;
    let emails = env.mail.wait_for_emails(2).await;
    assert_eq!(emails.len(), 2, "pre-due note and first reminder");
    let reminder = &emails[1];
    assert!(
        reminder.text.contains("€600.00"),
        "remaining balance missing: {}",
        reminder.text
    );
    assert!(
        reminder.text.contains("€400.00"),
        "partial payment missing: {}",
        reminder.text
    );
    assert!(
        reminder.text.contains("€1,000.00"),
        "total missing: {}",
        reminder.text
    );
    assert_eq!(
        env.steps("F-200").await[2],
        ("reminder_2".to_string(), "pending".to_string()),
        "the sequence goes on"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_payments_and_redelivered_jobs_have_no_second_effect() {
    let env = TestEnv::start(1).await;
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-300", "250.00", date(2026, 3, 2), date(2026, 3, 16)),
    )
    .await;
    // The same invoice event twice: planned once.
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-300", "250.00", date(2026, 3, 2), date(2026, 3, 16)),
    )
    .await;
    env.wait_journal("F-300", "invoice.duplicate", 1).await;
    assert_eq!(env.steps("F-300").await.len(), 5);

    env.run_until(date(2026, 3, 11)).await;
    env.mail.wait_for_emails(1).await;

    // Replay the jobs the pipeline already handled, as a broker redelivery would.
    let jobs: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT routing_key, payload FROM outbox WHERE destination = 'jobs' ORDER BY id")
            .fetch_all(&env.db)
            .await
            .unwrap();
    assert_eq!(jobs.len(), 2, "one reminder.due and one reminder.rendered.email");
    for (routing_key, payload) in &jobs {
        env.publish_raw(
            &env.names.jobs_exchange(),
            routing_key,
            &serde_json::to_vec(payload).unwrap(),
        )
        .await;
    }
    wait_for("both replayed jobs to be ignored", DEADLINE, || async {
        Ok(env.journal_count("F-300", "job.ignored").await >= 2)
    })
    .await
    .unwrap();

    // The same payment twice (and once more under another event id): applied once.
    let payment = payment_received("PAY-3", "F-300", "250.00", date(2026, 3, 12));
    env.publish(names::PAYMENT_RECEIVED, &payment).await;
    env.publish(names::PAYMENT_RECEIVED, &payment).await;
    let mut again = payment.clone();
    again["event_id"] = json!("evt-bank-resend");
    env.publish(names::PAYMENT_RECEIVED, &again).await;
    env.wait_journal("F-300", "payment.duplicate", 2).await;
    env.idle().await;

    let emails = env.mail.emails().await;
    assert_eq!(
        emails.len(),
        2,
        "one pre-due note and one thank-you: {:?}",
        emails.iter().map(|e| &e.subject).collect::<Vec<_>>()
    );
    assert_eq!(env.journal_count("F-300", names::PAYMENT_RECORDED).await, 1);
    assert_eq!(env.journal_count("F-300", names::THANKS_SENT).await, 1);
    let balance: rust_decimal::Decimal =
        sqlx::query_scalar("SELECT balance FROM invoices WHERE number = 'F-300'")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert!(balance.is_zero());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_with_a_reason_and_the_queue_keeps_flowing() {
    let env = TestEnv::start(1).await;
    let inbound = env.names.inbound_exchange();
    env.publish_raw(&inbound, names::INVOICE_ISSUED, b"{ this is not json")
        .await;
    let mut future_version = invoice_issued("F-401", "10.00", date(2026, 3, 2), date(2026, 3, 16));
    future_version["version"] = json!(2);
    env.publish_raw(
        &inbound,
        names::INVOICE_ISSUED,
        &serde_json::to_vec(&future_version).unwrap(),
    )
    .await;
    let mut missing = invoice_issued("F-402", "10.00", date(2026, 3, 2), date(2026, 3, 16));
    missing["invoice"].as_object_mut().unwrap().remove("customer");
    env.publish_raw(
        &inbound,
        names::INVOICE_ISSUED,
        &serde_json::to_vec(&missing).unwrap(),
    )
    .await;
    env.publish_raw(&inbound, names::PAYMENT_RECEIVED, b"[]").await;
    env.publish_raw(
        &inbound,
        names::PAYMENT_RECEIVED,
        b"{\"version\": 1, \"event_id\": \"\xe9t\xe9\"}",
    )
    .await;
    env.publish_raw(&inbound, "invoice.exploded", b"{}").await;
    // Due before it was issued: refused with a reason, announced, dead-lettered.
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-403", "10.00", date(2026, 3, 2), date(2026, 2, 20)),
    )
    .await;
    // And a good one behind them all.
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-404", "10.00", date(2026, 3, 2), date(2026, 3, 16)),
    )
    .await;
    env.wait_journal("F-404", names::INVOICE_REGISTERED, 1).await;

    let mut reasons = env.wait_for_dead_letters(7).await;
    reasons.sort();
    let expect = [
        "body is not JSON",
        "unsupported version 2",
        "invalid invoice.issued message",
        "missing \"version\"",
        "invoice.due_on",
    ];
    for fragment in expect {
        assert!(
            reasons.iter().any(|r| r.contains(fragment)),
            "no reason with {fragment:?} in {reasons:?}"
        );
    }
    // The unknown routing key has no reason header: the broker routed it there.
    assert_eq!(reasons.iter().filter(|r| r.is_empty()).count(), 1, "{reasons:?}");
    // Its event is published by the outbox relay a moment after the commit: F-404 may be
    // registered first (the consumer handles many messages at once).
    let rejected: Vec<_> = env
        .events_until_count(names::INVOICE_REJECTED, 1)
        .await
        .into_iter()
        .filter(|e| e.event_type == names::INVOICE_REJECTED)
        .collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].invoice_number, "F-403");
    assert_eq!(rejected[0].detail["field"], "invoice.due_on");
    assert!(env.steps("F-403").await.is_empty());
    assert_eq!(env.steps("F-404").await.len(), 5);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_invoice_gets_only_its_latest_due_step_and_one_reminder_a_day() {
    let env = TestEnv::start(1).await;
    // Due 14 February, arriving Monday 2 March: J-5, J+5 and J+12 are all past. The latest
    // waits for the reminder window (Tuesday 3 March); J+20 and J+30 are still ahead.
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-500", "700.00", date(2026, 1, 15), date(2026, 2, 14)),
    )
    .await;
    env.wait_journal("F-500", names::INVOICE_REGISTERED, 1).await;
    env.run_until(date(2026, 3, 6)).await;
    let emails = env.mail.wait_for_emails(1).await;
    assert_eq!(emails.len(), 1);
    assert!(emails[0].text.contains("F-500"));
    assert_eq!(
        env.steps("F-500").await,
        vec![
            ("pre_due".to_string(), "skipped".to_string()),
            ("reminder_1".to_string(), "skipped".to_string()),
            ("reminder_2".to_string(), "sent".to_string()),
            ("reminder_3".to_string(), "pending".to_string()),
            ("formal_notice".to_string(), "pending".to_string()),
        ]
    );
    let skipped = env
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == names::REMINDER_SKIPPED)
        .count();
    assert_eq!(skipped, 2);
    env.stop().await;
}

/// With quorum queues (what a deployment declares by default; the harness runs the other
/// suites on classic queues, see `tests/harness.rs`) a reminder goes from the scheduler to
/// SMTP, and `RELANCE_QUEUE_TYPE=classic` (a deployment not yet migrated) carries one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_quorum_queues_a_reminder_goes_out() {
    let env = TestEnv::try_start(1, &[("RELANCE_QUEUE_TYPE", "quorum")])
        .await
        .unwrap();
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-501", "700.00", date(2026, 1, 15), date(2026, 2, 14)),
    )
    .await;
    env.wait_journal("F-501", names::INVOICE_REGISTERED, 1).await;
    env.run_until(date(2026, 3, 6)).await;
    let emails = env.mail.wait_for_emails(1).await;
    assert!(emails[0].text.contains("F-501"));
    env.wait_journal("F-501", names::REMINDER_SENT, 1).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_for_an_unknown_invoice_is_retried_then_dead_lettered() {
    let env = TestEnv::start(1).await;
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-9", "F-NOPE", "10.00", date(2026, 3, 2)),
    )
    .await;
    let reasons = env.wait_for_dead_letters(1).await;
    assert!(
        reasons[0].contains("gave up after 3 retries") && reasons[0].contains("F-NOPE"),
        "{reasons:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reminder_is_one_trace_from_scheduler_to_smtp() {
    let env = TestEnv::start(1).await;
    // Due in four days: the pre-due note is due this Monday morning.
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-600", "90.00", date(2026, 3, 1), date(2026, 3, 6)),
    )
    .await;
    env.wait_journal("F-600", names::INVOICE_REGISTERED, 1).await;
    env.run_until(date(2026, 3, 2)).await;
    env.wait_journal("F-600", names::REMINDER_SENT, 1).await;
    env.idle().await;
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT routing_key, headers->>'traceparent' FROM outbox
         WHERE correlation_id = 'F-600' AND routing_key IN ('reminder.due', 'reminder.rendered.email', 'reminder.sent')
         ORDER BY id",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec!["reminder.due", "reminder.rendered.email", "reminder.sent"]
    );
    let trace_ids: Vec<String> = rows
        .iter()
        .map(|(_, tp)| {
            let tp = tp.clone().expect("a traceparent header");
            tp.split('-').nth(1).expect("a W3C traceparent").to_string()
        })
        .collect();
    assert_ne!(trace_ids[0], "00000000000000000000000000000000");
    assert!(
        trace_ids.iter().all(|t| *t == trace_ids[0]),
        "one trace across services: {trace_ids:?}"
    );
    env.stop().await;
}

/// A step whose job was lost (broker data loss) is handed out again once its lease expires;
/// one left in `sending` by a sender that died after the end of DATA is reported ambiguous
/// (`reminder.ambiguous`), not resent (tests/deliveries.rs covers the other stages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_left_in_flight_are_recovered_when_their_lease_expires() {
    let env = TestEnv::try_start(1, &[("RELANCE_LEASE_MS", "300")])
        .await
        .unwrap();
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-700", "80.00", date(2026, 3, 2), date(2026, 3, 20)),
    )
    .await;
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-701", "80.00", date(2026, 3, 2), date(2026, 3, 20)),
    )
    .await;
    env.wait_journal("F-700", names::INVOICE_REGISTERED, 1).await;
    env.wait_journal("F-701", names::INVOICE_REGISTERED, 1).await;
    // As if the scheduler had queued F-700's pre-due note and its job had vanished, and a
    // sender had died while delivering F-701's.
    for (number, status) in [("F-700", "queued"), ("F-701", "sending")] {
        sqlx::query(
            "UPDATE reminder_steps SET status = $2, emitted_on = '2026-03-02', status_changed_at = clock_timestamp() - interval '1 hour',
                 delivery_stage = CASE WHEN $2 = 'sending' THEN 'data_end_sent' END
             WHERE name = 'pre_due' AND invoice_id = (SELECT id FROM invoices WHERE number = $1)",
        )
        .bind(number)
        .bind(status)
        .execute(&env.db)
        .await
        .unwrap();
    }
    env.wait_journal("F-700", names::REMINDER_SENT, 1).await;
    env.wait_journal("F-701", names::REMINDER_AMBIGUOUS, 1).await;
    env.idle().await;
    let emails = env.mail.emails().await;
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].recipients(), vec!["compta+f-700@acme.test"]);
    let ambiguous = env
        .events()
        .await
        .into_iter()
        .find(|e| e.event_type == names::REMINDER_AMBIGUOUS)
        .expect("an ambiguous-delivery event");
    assert_eq!(ambiguous.invoice_number, "F-701");
    assert!(
        ambiguous.detail["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("interrupted"),
        "{ambiguous:?}"
    );
    env.stop().await;
}

/// Customer-supplied text cannot inject HTML into emails nor headers into subjects, and the
/// services run as a database role that cannot change the schema nor rewrite the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_text_is_escaped_and_workers_have_no_ddl_rights() {
    let env = TestEnv::try_start(1, &[("RELANCE_TEST_DB_USER", "relance_worker")])
        .await
        .unwrap();
    let mut invoice = invoice_issued("F-800", "42.00", date(2026, 3, 1), date(2026, 3, 6));
    invoice["invoice"]["customer"]["contact_name"] = json!("<script>alert('x')</script> Jeanne");
    env.publish(names::INVOICE_ISSUED, &invoice).await;
    env.wait_journal("F-800", names::INVOICE_REGISTERED, 1).await;
    env.run_until(date(2026, 3, 2)).await;
    let emails = env.mail.wait_for_emails(1).await;
    let email = &emails[0];
    assert!(!email.html.contains("<script>"), "{}", email.html);
    assert!(email.html.contains("&lt;script&gt;"), "{}", email.html);
    assert!(
        email.text.contains("<script>alert('x')</script> Jeanne"),
        "plain text is not escaped: {}",
        email.text
    );
    // A subject is one line whatever the data.
    assert!(!email.subject.contains('\n') && !email.subject.contains('\r'));

    let worker_url = env.database_url.replacen("postgres@", "relance_worker@", 1);
    let worker = sqlx::PgPool::connect(&worker_url).await.unwrap();
    let ddl = sqlx::query("CREATE TABLE intruder (id int)")
        .execute(&worker)
        .await;
    assert!(ddl.is_err(), "the worker role created a table");
    let rewrite = sqlx::query("UPDATE journal SET action = 'forged'")
        .execute(&worker)
        .await;
    assert!(rewrite.is_err(), "the worker role rewrote the journal");
    let erase = sqlx::query("DELETE FROM journal").execute(&worker).await;
    assert!(erase.is_err(), "the worker role erased the journal");
    worker.close().await;
    env.stop().await;
}
