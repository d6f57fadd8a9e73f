//! Grouped reminders whose group changes between rendering and sending: a customer with three
//! overdue invoices gets one message listing them; one of them is paid after the message was
//! rendered but before a sender delivered it. The sender re-checks the invoices the message
//! lists, sends it back to the renderer, and the customer gets one message listing only the
//! unpaid invoices with the right total, plus the thank-you for the paid one. Delivery is
//! held deterministically: the email sender is not started until the payment is recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, TimeZone, Utc};
use relance_contracts::names;
use relance_tests::{date, invoice_issued, payment_received, TestEnv};
use serde_json::{json, Value};

/// The email sender (`relance_sender::SERVICE`), held back at start.
const EMAIL_SENDER: &str = "sender";

fn utc(m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).single().unwrap()
}

/// An invoice of the one customer, due Monday 16 March 2026.
fn grouped_invoice(number: &str, amount: &str) -> Value {
    let mut body = invoice_issued(number, amount, date(2026, 3, 2), date(2026, 3, 16));
    body["invoice"]["customer"]["id"] = json!("C-GROUP");
    body["invoice"]["customer"]["email"] = json!("compta@groupe.test");
    body
}

async fn step_status(env: &TestEnv, invoice: &str, step: &str) -> String {
    sqlx::query_scalar(
        "SELECT s.status FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id WHERE i.number = $1 AND s.name = $2",
    )
    .bind(invoice)
    .bind(step)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

/// The lead's rendered message as stored now: (Message-ID, text).
async fn rendered(env: &TestEnv, invoice: &str) -> (String, String) {
    sqlx::query_as(
        "SELECT r.message_id, r.body_text FROM rendered_messages r JOIN reminder_steps s ON s.id = r.step_id
         JOIN invoices i ON i.id = s.invoice_id WHERE i.number = $1 AND s.name = 'reminder_1'",
    )
    .bind(invoice)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

/// Two email senders, started once the payment is recorded: the message is re-rendered and
/// sent once, whichever takes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_paid_after_the_grouped_message_was_rendered_is_not_in_the_message_sent() {
    let mut env = TestEnv::try_start_holding(1, &[EMAIL_SENDER], &[]).await.unwrap();
    // Three invoices of one customer, due Monday 16 March; their first reminders (the
    // harness's email-only policy) are all due Tuesday 24 March at 09:00 in Paris.
    for (number, amount) in [("F-G1", "1000.00"), ("F-G2", "500.00"), ("F-G3", "250.00")] {
        env.publish(names::INVOICE_ISSUED, &grouped_invoice(number, amount))
            .await;
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    // Straight to Tuesday 24 March, 09:00 in Paris (not `set_time`: with the sender held the
    // pipeline does not go idle). The three invoices are due at once: the oldest (F-G1, by
    // number) leads, the two others join its message; their pre-due notes are overtaken.
    env.clock.set(utc(3, 24, 8));
    env.wait_journal("F-G2", "reminder.grouped", 1).await;
    env.wait_journal("F-G3", "reminder.grouped", 1).await;
    env.wait_journal("F-G1", "reminder.rendered", 1).await;
    let (first_message_id, text) = rendered(&env, "F-G1").await;
    assert!(text.contains("F-G2") && text.contains("F-G3"), "{text}");
    assert!(
        text.contains("1\u{202f}750,00\u{a0}€"),
        "the total of the three: {text}"
    );

    // F-G2 is paid after the message was rendered, before any sender delivered it.
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-G2", "F-G2", "500.00", date(2026, 3, 24)),
    )
    .await;
    env.wait_journal("F-G2", names::INVOICE_SETTLED, 1).await;
    assert_eq!(step_status(&env, "F-G2", "reminder_1").await, "cancelled");
    assert_eq!(
        env.mail.emails().await.len(),
        0,
        "nothing delivered while the sender is held"
    );

    env.start_held(2, &[EMAIL_SENDER]);
    env.wait_journal("F-G1", names::REMINDER_SENT, 1).await;
    env.wait_journal("F-G3", names::REMINDER_SENT, 1).await;
    env.wait_journal("F-G2", names::THANKS_SENT, 1).await;
    env.idle().await;

    let emails = env.mail.wait_for_emails(2).await;
    assert_eq!(emails.len(), 2, "one reminder, one thank-you");
    let reminder = emails
        .iter()
        .find(|e| e.subject.contains("F-G1"))
        .expect("the grouped reminder");
    assert!(
        reminder.subject.contains("en attente de règlement"),
        "{}",
        reminder.subject
    );
    assert_eq!(reminder.recipients(), vec!["compta@groupe.test"]);
    assert!(reminder.text.contains("F-G3"), "{}", reminder.text);
    assert!(
        !reminder.text.contains("F-G2"),
        "the paid invoice is gone: {}",
        reminder.text
    );
    // 1000.00 + 250.00, not 1750.00.
    assert!(
        reminder
            .text
            .contains("Montant total restant dû : 1\u{202f}250,00\u{a0}€"),
        "{}",
        reminder.text
    );
    assert!(!reminder.text.contains("1\u{202f}750,00"), "{}", reminder.text);
    let thanks = emails
        .iter()
        .find(|e| e.subject.contains("F-G2"))
        .expect("the thank-you");
    assert!(thanks.subject.contains("merci"), "{}", thanks.subject);

    // The message sent is the new rendering (the step's Message-ID: the first one never went
    // out); the first one is kept aside as rendered, never sent.
    let (message_id, text) = rendered(&env, "F-G1").await;
    assert_eq!(message_id, first_message_id);
    assert_eq!(
        reminder.message_id,
        message_id.trim_matches(|c| c == '<' || c == '>')
    );
    assert!(!text.contains("F-G2"), "{text}");
    let superseded: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.body_text, r.reason FROM superseded_renderings r JOIN reminder_steps s ON s.id = r.step_id
         JOIN invoices i ON i.id = s.invoice_id WHERE i.number = 'F-G1'",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    assert_eq!(superseded.len(), 1);
    assert!(superseded[0].0.contains("F-G2"), "{}", superseded[0].0);
    assert!(
        superseded[0].1.contains("left it before it was sent"),
        "{}",
        superseded[0].1
    );

    // Re-rendered once, journaled with the invoice dropped; sent once; F-G3 went with it.
    assert_eq!(env.journal_count("F-G1", "reminder.rerendered").await, 1);
    let detail: Value = sqlx::query_scalar(
        "SELECT detail FROM journal WHERE invoice_number = 'F-G1' AND action = 'reminder.rerendered'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(detail["dropped"][0]["invoice_number"], "F-G2");
    assert_eq!(detail["dropped"][0]["status"], "cancelled");
    assert_eq!(detail["kept"], json!(["F-G3"]));
    assert_eq!(env.journal_count("F-G1", names::REMINDER_SENT).await, 1);
    assert_eq!(env.journal_count("F-G1", "reminder.rendered").await, 2);
    assert_eq!(step_status(&env, "F-G1", "reminder_1").await, "sent");
    assert_eq!(step_status(&env, "F-G3", "reminder_1").await, "sent");
    let events = env
        .events_until("F-G3's reminder.sent", |e| {
            e.iter()
                .any(|e| e.invoice_number == "F-G3" && e.event_type == names::REMINDER_SENT)
        })
        .await;
    let joined = events
        .iter()
        .find(|e| e.invoice_number == "F-G3" && e.event_type == names::REMINDER_SENT)
        .expect("F-G3's reminder.sent");
    assert_eq!(joined.detail["grouped_into"]["invoice_number"], "F-G1");
    assert_eq!(joined.detail["message_id"], json!(message_id));
    assert_eq!(env.journal_count("F-G2", names::REMINDER_SENT).await, 0);

    // Nothing more goes out later that day, and the journal, superseded rendering included,
    // still verifies.
    env.set_time(utc(3, 24, 16)).await;
    assert_eq!(env.mail.emails().await.len(), 2);
    let report = relance_storage::journal::verify::verify_all(&env.db)
        .await
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    env.stop().await;
}

/// The only other invoice of a grouped message is paused (a promise to pay) after the message
/// was rendered: the lead goes out as a plain reminder, the paused invoice's step leaves the
/// group, and while the pause lasts none of its steps joins the lead's next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grouped_message_left_with_its_lead_only_goes_out_as_a_plain_reminder() {
    let mut env = TestEnv::try_start_holding(1, &[EMAIL_SENDER], &[]).await.unwrap();
    for (number, amount) in [("F-H1", "1000.00"), ("F-H2", "500.00")] {
        env.publish(names::INVOICE_ISSUED, &grouped_invoice(number, amount))
            .await;
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    env.clock.set(utc(3, 24, 8));
    env.wait_journal("F-H2", "reminder.grouped", 1).await;
    env.wait_journal("F-H1", "reminder.rendered", 1).await;
    assert!(rendered(&env, "F-H1").await.1.contains("F-H2"));

    // F-H2's customer promises to pay by 10 April: its reminder leaves the message.
    env.publish(
        names::PROMISE_RECORDED,
        &json!({
            "version": 1,
            "event_id": "crm-promise-h2",
            "occurred_at": "2026-03-24T08:00:00Z",
            "promise": { "invoice_number": "F-H2", "promised_on": "2026-04-10" }
        }),
    )
    .await;
    env.wait_journal("F-H2", names::INVOICE_PAUSED, 1).await;
    assert_eq!(step_status(&env, "F-H2", "reminder_1").await, "pending");

    env.start_held(1, &[EMAIL_SENDER]);
    env.wait_journal("F-H1", names::REMINDER_SENT, 1).await;
    env.idle().await;
    let emails = env.mail.wait_for_emails(1).await;
    assert_eq!(emails.len(), 1);
    assert!(emails[0].subject.contains("F-H1"), "{}", emails[0].subject);
    assert!(!emails[0].text.contains("F-H2"), "{}", emails[0].text);
    assert!(
        !emails[0].text.contains("Montant total restant dû"),
        "a plain reminder: {}",
        emails[0].text
    );
    let detail: Value = sqlx::query_scalar(
        "SELECT detail FROM journal WHERE invoice_number = 'F-H1' AND action = 'reminder.rerendered'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(detail["dropped"][0]["invoice_number"], "F-H2");
    assert_eq!(detail["dropped"][0]["status"], "pending");
    assert_eq!(detail["kept"], json!([]));
    let grouped_into: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT s.grouped_into FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
         WHERE i.number = 'F-H2' AND s.name = 'reminder_1'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(grouped_into, None, "out of the group");

    // Tuesday 31 March, 09:00: F-H1's firm reminder. F-H2's, due the same day, waits for the
    // end of its pause (13 April): it does not join.
    env.set_time(utc(3, 31, 7)).await;
    let emails = env.mail.wait_for_emails(2).await;
    assert_eq!(emails.len(), 2);
    assert!(emails[1].subject.contains("F-H1"), "{}", emails[1].subject);
    assert!(!emails[1].text.contains("F-H2"), "{}", emails[1].text);
    assert_eq!(step_status(&env, "F-H2", "reminder_2").await, "pending");
    assert_eq!(env.journal_count("F-H2", "reminder.grouped").await, 1);
    assert_eq!(env.journal_count("F-H2", names::REMINDER_SENT).await, 0);
    let report = relance_storage::journal::verify::verify_all(&env.db)
        .await
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    env.stop().await;
}
