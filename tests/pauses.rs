//! Pauses and ends of the sequence, end to end through the queues: promises to pay,
//! disputes, credit notes, write-offs and e-invoicing lifecycle statuses, published on
//! `<ns>.inbound` as another system (or `relance invoice ...`) would, with the harness's
//! email-only policy in its send windows (medium risk, Paris): for an invoice due Monday 16
//! March 2026, the pre-due note on Wednesday 11 March (any working morning), the reminder on
//! Tuesday 24, the firm reminder on Tuesday 31 March, the final reminder on Tuesday 7 April and
//! the formal notice on Wednesday 15 April (reminders: Tuesday to Thursday, 09:00 to 12:00).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, TimeZone, Utc};
use relance_contracts::{names, EventV1};
use relance_domain::collections::CollectionStatus;
use relance_tests::{date, invoice_issued, payment_received, TestEnv};
use serde_json::{json, Value};

fn utc(m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).single().unwrap()
}

fn envelope(event_id: &str, key: &str, body: Value) -> Value {
    let mut message = json!({ "version": 1, "event_id": event_id, "occurred_at": "2026-03-02T06:00:00Z" });
    message[key] = body;
    message
}

fn promise(event_id: &str, invoice: &str, promised_on: &str) -> Value {
    envelope(
        event_id,
        "promise",
        json!({ "invoice_number": invoice, "promised_on": promised_on, "note": "Mme Martin, by phone" }),
    )
}

fn dispute(event_id: &str, invoice: &str, reason: &str) -> Value {
    envelope(
        event_id,
        "dispute",
        json!({ "invoice_number": invoice, "reason": reason }),
    )
}

fn credit_note(event_id: &str, id: &str, invoice: &str, amount: &str) -> Value {
    envelope(
        event_id,
        "credit_note",
        json!({ "id": id, "invoice_number": invoice, "amount": amount, "currency": "EUR", "issued_on": "2026-03-12" }),
    )
}

fn lifecycle(event_id: &str, invoice: &str, status: &str) -> Value {
    envelope(
        event_id,
        "lifecycle",
        json!({ "invoice_number": invoice, "status": status }),
    )
}

async fn register(env: &TestEnv, number: &str, amount: &str) {
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued(number, amount, date(2026, 3, 2), date(2026, 3, 16)),
    )
    .await;
    env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
}

/// The five reminder steps of the policy, in order, with these statuses.
fn sequence(statuses: [&str; 5]) -> Vec<(String, String)> {
    let names = [
        "pre_due",
        "reminder_1",
        "reminder_2",
        "reminder_3",
        "formal_notice",
    ];
    names
        .iter()
        .zip(statuses)
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

fn strings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn due_at(env: &TestEnv, invoice: &str, step: &str) -> DateTime<Utc> {
    sqlx::query_scalar(
        "SELECT s.due_at FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id WHERE i.number = $1 AND s.name = $2",
    )
    .bind(invoice)
    .bind(step)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

async fn invoice_status(env: &TestEnv, invoice: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, status_reason FROM invoices WHERE number = $1")
        .bind(invoice)
        .fetch_one(&env.db)
        .await
        .unwrap()
}

fn find<'a>(events: &'a [EventV1], invoice: &str, event_type: &str) -> Vec<&'a EventV1> {
    events
        .iter()
        .filter(|e| e.invoice_number == invoice && e.event_type == event_type)
        .collect()
}

/// A promise holds the sequence through the promised day and the grace days; unpaid, it
/// resumes at the step it had reached (the reminder, not the firm one), the rest of the
/// sequence keeps its rhythm, and every re-dated step waits for the next opening of its send
/// window on the customer's calendar: a resume on a Monday goes out on the Tuesday, a step
/// moved onto Easter Monday on the day after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_promise_resumes_the_sequence_at_the_step_it_had_reached() {
    let env = TestEnv::start(1).await;
    register(&env, "F-P1", "1000.00").await;
    env.run_until(date(2026, 3, 17)).await;
    assert_eq!(env.mail.wait_for_emails(1).await.len(), 1, "the pre-due note");
    assert_eq!(env.collections_status("F-P1").await, CollectionStatus::ToRemind);

    // 17 March, 23:00 UTC (18 March in Paris): the customer promises to pay by 26 March.
    env.publish(
        names::PROMISE_RECORDED,
        &promise("evt-promise-p1", "F-P1", "2026-03-26"),
    )
    .await;
    env.wait_journal("F-P1", names::INVOICE_PAUSED, 1).await;
    assert_eq!(env.collections_status("F-P1").await, CollectionStatus::Paused);

    // The reminder of Tuesday 24 March falls inside the pause (until 29 March, the third
    // grace day).
    env.run_until(date(2026, 3, 29)).await;
    assert_eq!(env.mail.emails().await.len(), 1, "nothing during the pause");
    // The promise ended at midnight in Paris, Monday 30 March: six days after the reminder's
    // day. Monday is outside the reminders' window: the reminder goes out on Tuesday 31 March
    // at 09:00 (summer time). The firm reminder moves from Tuesday 31 March by six days onto
    // Easter Monday, 6 April, a public holiday: Tuesday 7 April. The final reminder, Monday 13
    // → Tuesday 14; the formal notice, Tuesday 21 April.
    assert_eq!(due_at(&env, "F-P1", "reminder_1").await, utc(3, 31, 7));
    assert_eq!(due_at(&env, "F-P1", "reminder_2").await, utc(4, 7, 7));
    assert_eq!(due_at(&env, "F-P1", "reminder_3").await, utc(4, 14, 7));
    assert_eq!(due_at(&env, "F-P1", "formal_notice").await, utc(4, 21, 7));
    let events = env
        .events_until("F-P1's resumption", |e| {
            !find(e, "F-P1", names::INVOICE_RESUMED).is_empty()
        })
        .await;
    let resumed = find(&events, "F-P1", names::INVOICE_RESUMED);
    assert_eq!(resumed.len(), 1, "{events:?}");
    assert_eq!(resumed[0].detail["next_step"], "reminder_1");
    assert_eq!(resumed[0].detail["next_at"], "2026-03-31T07:00:00Z");
    assert!(
        resumed[0].detail["reason"]
            .as_str()
            .unwrap()
            .contains("promise to pay by 2026-03-26 not kept"),
        "{:?}",
        resumed[0]
    );
    let postponed: Vec<&EventV1> = find(&events, "F-P1", names::REMINDER_POSTPONED)
        .into_iter()
        .filter(|e| e.step.as_deref() == Some("reminder_1"))
        .collect();
    assert_eq!(
        postponed.last().map(|e| e.detail["until"].clone()),
        Some(json!("2026-03-31T07:00:00Z")),
        "{postponed:?}"
    );
    assert!(
        find(&events, "F-P1", names::REMINDER_SKIPPED).is_empty(),
        "nothing skipped"
    );

    // Monday 30 March, 09:00 in Paris: nothing.
    env.set_time(utc(3, 30, 7)).await;
    assert_eq!(env.mail.emails().await.len(), 1, "not on a Monday");
    // Tuesday 31 March, 09:00 in Paris: the reminder.
    env.set_time(utc(3, 31, 7)).await;
    let emails = env.mail.wait_for_emails(2).await;
    assert_eq!(emails.len(), 2);
    assert!(
        emails[1].subject.contains("en attente de règlement"),
        "the reminder, not the firm one: {}",
        emails[1].subject
    );
    assert_eq!(
        emails[1].date,
        Some(utc(3, 31, 7)),
        "sent on Tuesday at 09:00 in Paris"
    );
    let events = env
        .events_until("F-P1's reminder_1 sent", |e| {
            find(e, "F-P1", names::REMINDER_SENT)
                .iter()
                .any(|e| e.step.as_deref() == Some("reminder_1"))
        })
        .await;
    let sent = find(&events, "F-P1", names::REMINDER_SENT)
        .into_iter()
        .find(|e| e.step.as_deref() == Some("reminder_1"))
        .map(|e| e.occurred_at);
    assert_eq!(sent, Some(utc(3, 31, 7)));

    // Nothing on Easter Monday; the firm reminder on Tuesday 7 April.
    env.run_until(date(2026, 4, 6)).await;
    assert_eq!(env.mail.emails().await.len(), 2);
    env.set_time(utc(4, 7, 7)).await;
    let emails = env.mail.wait_for_emails(3).await;
    assert!(emails[2].subject.starts_with("Relance"), "{}", emails[2].subject);
    assert_eq!(emails[2].date, Some(utc(4, 7, 7)));
    assert_eq!(
        env.steps("F-P1").await,
        sequence(["sent", "sent", "sent", "pending", "pending"])
    );
    env.stop().await;
}

/// A promise kept: the payment during the pause settles the invoice, a thank-you goes out,
/// and no reminder ever does (not even those whose day fell inside the pause).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promise_followed_by_its_payment_ends_with_the_thank_you_only() {
    let env = TestEnv::start(1).await;
    register(&env, "F-P2", "800.00").await;
    env.publish(
        names::PROMISE_RECORDED,
        &promise("evt-promise-p2", "F-P2", "2026-03-20"),
    )
    .await;
    env.wait_journal("F-P2", names::INVOICE_PAUSED, 1).await;
    env.run_until(date(2026, 3, 22)).await;
    assert!(env.mail.emails().await.is_empty(), "the pre-due note waits too");
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-P2", "F-P2", "800.00", date(2026, 3, 22)),
    )
    .await;
    env.wait_journal("F-P2", names::INVOICE_SETTLED, 1).await;
    let emails = env.mail.wait_for_emails(1).await;
    assert!(emails[0].subject.contains("merci"), "{}", emails[0].subject);
    env.run_until(date(2026, 4, 5)).await;
    assert_eq!(env.mail.emails().await.len(), 1);
    assert_eq!(
        env.steps("F-P2").await,
        sequence(["cancelled"; 5])
            .into_iter()
            .chain(strings(&[("thanks", "sent")]))
            .collect::<Vec<_>>()
    );
    assert_eq!(env.journal_count("F-P2", "pause.ended").await, 1);
    assert_eq!(env.journal_count("F-P2", names::INVOICE_RESUMED).await, 0);
    assert_eq!(env.collections_status("F-P2").await, CollectionStatus::Settled);
    env.stop().await;
}

/// A dispute holds the sequence, stops the reminders already on their way (including one a
/// sender is about to deliver), and the sequence resumes when the dispute is resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispute_pauses_the_sequence_until_it_is_resolved() {
    let env = TestEnv::start(1).await;
    register(&env, "F-D1", "1200.00").await;
    // As if the scheduler had just queued the pre-due note.
    sqlx::query(
        "UPDATE reminder_steps SET status = 'queued', emitted_at = now(), emitted_on = '2026-03-02'
         WHERE name = 'pre_due' AND invoice_id = (SELECT id FROM invoices WHERE number = 'F-D1')",
    )
    .execute(&env.db)
    .await
    .unwrap();
    env.publish(
        names::DISPUTE_OPENED,
        &dispute("evt-dispute-d1", "F-D1", "Goods delivered damaged"),
    )
    .await;
    env.wait_journal("F-D1", names::INVOICE_PAUSED, 1).await;
    assert_eq!(
        env.steps("F-D1").await[0],
        ("pre_due".to_string(), "pending".to_string())
    );
    assert_eq!(env.journal_count("F-D1", names::REMINDER_POSTPONED).await, 1);

    // A delivery job for a rendered reminder reaches the sender during the dispute: the sender
    // re-checks the invoice, refuses to deliver and puts the step back.
    let step_id: uuid::Uuid = sqlx::query_scalar(
        "UPDATE reminder_steps SET status = 'rendered' WHERE name = 'reminder_1'
           AND invoice_id = (SELECT id FROM invoices WHERE number = 'F-D1') RETURNING id",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO rendered_messages (step_id, channel, message_id, recipients, subject, body_text, attach_invoice, rendered_at)
         VALUES ($1, 'email', '<x@exemple.test>', '{compta+f-d1@acme.test}', 'Facture F-D1', 'Bonjour', false, now())",
    )
    .bind(step_id)
    .execute(&env.db)
    .await
    .unwrap();
    let job = json!({
        "version": 1, "job_id": uuid::Uuid::new_v4(), "step_id": step_id,
        "invoice_number": "F-D1", "step": "reminder_1", "channel": "email"
    });
    env.publish_raw(
        &env.names.jobs_exchange(),
        &names::reminder_rendered("email"),
        &serde_json::to_vec(&job).unwrap(),
    )
    .await;
    env.wait_journal("F-D1", names::REMINDER_POSTPONED, 2).await;
    assert_eq!(
        env.steps("F-D1").await[1],
        ("reminder_1".to_string(), "pending".to_string())
    );
    let renderings: i64 = sqlx::query_scalar("SELECT count(*) FROM rendered_messages WHERE step_id = $1")
        .bind(step_id)
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(renderings, 0, "rendered afresh when the sequence resumes");

    env.run_until(date(2026, 3, 25)).await;
    assert!(env.mail.emails().await.is_empty());
    assert_eq!(env.collections_status("F-D1").await, CollectionStatus::Paused);

    env.publish(
        names::DISPUTE_RESOLVED,
        &envelope(
            "evt-resolved-d1",
            "resolution",
            json!({ "invoice_number": "F-D1", "outcome": "upheld", "note": "photos show no damage" }),
        ),
    )
    .await;
    env.wait_journal("F-D1", names::INVOICE_RESUMED, 1).await;
    // Thursday 26 March, 09:00 in Paris.
    env.set_time(utc(3, 26, 8)).await;
    let emails = env.mail.wait_for_emails(1).await;
    assert_eq!(emails.len(), 1);
    assert!(
        emails[0].subject.contains("en attente de règlement"),
        "{}",
        emails[0].subject
    );
    assert_eq!(
        env.steps("F-D1").await,
        sequence(["skipped", "sent", "pending", "pending", "pending"])
    );
    // Resolved on Thursday 26 March at 00:00 in Paris: the reminder of Tuesday 24 went out that
    // Thursday at 09:00, and the later steps moved by two days, each in its window: the
    // firm reminder on Thursday 2 April, the formal notice from Friday 17 to Tuesday 21 April.
    assert_eq!(emails[0].date, Some(utc(3, 26, 8)));
    assert_eq!(due_at(&env, "F-D1", "reminder_2").await, utc(4, 2, 7));
    assert_eq!(due_at(&env, "F-D1", "reminder_3").await, utc(4, 9, 7));
    assert_eq!(due_at(&env, "F-D1", "formal_notice").await, utc(4, 21, 7));
    assert_eq!(env.collections_status("F-D1").await, CollectionStatus::ToRemind);
    env.stop().await;
}

/// A credit note for the whole invoice, or a write-off, closes it: its reminders are
/// cancelled, and no thank-you goes out. A partial credit note lowers what the reminders ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_notes_and_write_offs_close_invoices_without_a_thank_you() {
    let env = TestEnv::start(1).await;
    register(&env, "F-C1", "1000.00").await;
    let mut partial = invoice_issued("F-C2", "1000.00", date(2026, 3, 2), date(2026, 3, 16));
    partial["invoice"]["customer"]["language"] = json!("en");
    env.publish(names::INVOICE_ISSUED, &partial).await;
    env.wait_journal("F-C2", names::INVOICE_REGISTERED, 1).await;
    register(&env, "F-W1", "500.00").await;
    env.run_until(date(2026, 3, 11)).await;
    env.mail.wait_for_emails(3).await;

    env.publish(
        names::CREDIT_NOTE_ISSUED,
        &credit_note("evt-credit-c1", "AV-1", "F-C1", "1000.00"),
    )
    .await;
    env.publish(
        names::CREDIT_NOTE_ISSUED,
        &credit_note("evt-credit-c2", "AV-2", "F-C2", "400.00"),
    )
    .await;
    env.publish(
        names::INVOICE_WRITTEN_OFF,
        &envelope(
            "evt-writeoff-w1",
            "write_off",
            json!({ "invoice_number": "F-W1", "reason": "customer in liquidation" }),
        ),
    )
    .await;
    env.wait_journal("F-C1", names::INVOICE_CLOSED, 1).await;
    env.wait_journal("F-C2", names::CREDIT_NOTE_RECORDED, 1).await;
    env.wait_journal("F-W1", names::INVOICE_CLOSED, 1).await;

    env.run_until(date(2026, 4, 1)).await;
    let emails = env.mail.emails().await;
    let subjects: Vec<&str> = emails.iter().map(|e| e.subject.as_str()).collect();
    // Three pre-due notes, then only F-C2's two reminders (24 and 31 March).
    assert_eq!(emails.len(), 5, "{subjects:?}");
    assert!(
        emails[3..].iter().all(|e| e.subject.contains("F-C2")),
        "{subjects:?}"
    );
    assert!(emails[3].text.contains("€600.00"), "{}", emails[3].text);
    assert!(!emails[3].text.contains("€1,000.00"), "{}", emails[3].text);
    for (invoice, reason) in [("F-C1", "credit_note"), ("F-W1", "written_off")] {
        assert_eq!(
            env.steps(invoice).await,
            sequence(["sent", "cancelled", "cancelled", "cancelled", "cancelled"]),
            "{invoice}: cancelled, and no thank-you planned"
        );
        assert_eq!(
            invoice_status(&env, invoice).await,
            ("closed".to_string(), Some(reason.to_string()))
        );
        assert_eq!(env.collections_status(invoice).await, CollectionStatus::Closed);
    }
    let events = env
        .events_until("F-C1 closed and F-C2's credit note", |e| {
            !find(e, "F-C1", names::INVOICE_CLOSED).is_empty()
                && !find(e, "F-C2", names::CREDIT_NOTE_RECORDED).is_empty()
        })
        .await;
    assert_eq!(
        find(&events, "F-C1", names::INVOICE_CLOSED)[0].detail["credit_note_id"],
        "AV-1"
    );
    assert!(find(&events, "F-C1", names::INVOICE_SETTLED).is_empty());
    assert_eq!(
        find(&events, "F-C2", names::CREDIT_NOTE_RECORDED)[0].detail["balance"],
        "600"
    );
    env.stop().await;
}

/// E-invoicing lifecycle statuses: "refused" closes, "cashed" settles (with the thank-you),
/// "disputed" pauses until "approved", and informational ones are only journaled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_invoicing_statuses_close_settle_pause_or_are_journaled() {
    let env = TestEnv::start(1).await;
    for number in ["F-E1", "F-E2", "F-E3"] {
        register(&env, number, "300.00").await;
    }
    env.publish(
        names::INVOICE_LIFECYCLE_STATUS,
        &lifecycle("evt-e1-200", "F-E1", "deposited"),
    )
    .await;
    env.wait_journal("F-E1", names::INVOICE_LIFECYCLE_RECORDED, 1)
        .await;
    assert_eq!(invoice_status(&env, "F-E1").await.0, "open");
    env.publish(
        names::INVOICE_LIFECYCLE_STATUS,
        &lifecycle("evt-e1-210", "F-E1", "210"),
    )
    .await;
    env.publish(
        names::INVOICE_LIFECYCLE_STATUS,
        &lifecycle("evt-e2-212", "F-E2", "cashed"),
    )
    .await;
    env.publish(
        names::INVOICE_LIFECYCLE_STATUS,
        &lifecycle("evt-e3-207", "F-E3", "disputed"),
    )
    .await;
    env.wait_journal("F-E1", names::INVOICE_CLOSED, 1).await;
    env.wait_journal("F-E2", names::INVOICE_SETTLED, 1).await;
    env.wait_journal("F-E3", names::INVOICE_PAUSED, 1).await;
    assert_eq!(
        invoice_status(&env, "F-E1").await,
        ("closed".to_string(), Some("refused".to_string()))
    );
    assert_eq!(env.steps("F-E1").await, sequence(["cancelled"; 5]));
    let emails = env.mail.wait_for_emails(1).await;
    assert!(emails[0].subject.contains("F-E2") && emails[0].subject.contains("merci"));
    assert_eq!(env.collections_status("F-E3").await, CollectionStatus::Paused);
    // "Cashed" again on the settled invoice agrees with it: journaled, nothing else.
    env.publish(
        names::INVOICE_LIFECYCLE_STATUS,
        &lifecycle("evt-e2-212-bis", "F-E2", "cashed"),
    )
    .await;
    env.publish(
        names::INVOICE_LIFECYCLE_STATUS,
        &lifecycle("evt-e3-205", "F-E3", "approved"),
    )
    .await;
    env.wait_journal("F-E2", names::INVOICE_LIFECYCLE_RECORDED, 2)
        .await;
    env.wait_journal("F-E3", names::INVOICE_RESUMED, 1).await;
    assert_eq!(env.collections_status("F-E3").await, CollectionStatus::ToWarn);
    env.idle().await;
    assert_eq!(env.mail.emails().await.len(), 1);
    assert_eq!(env.journal_count("F-E2", names::PAYMENT_RECORDED).await, 1);
    env.stop().await;
}

/// The same message twice is applied once; so is a credit note sent again under a new id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_message_is_applied_once() {
    let env = TestEnv::start(1).await;
    register(&env, "F-X1", "1000.00").await;
    let message = promise("evt-promise-x1", "F-X1", "2026-03-20");
    env.publish(names::PROMISE_RECORDED, &message).await;
    env.publish(names::PROMISE_RECORDED, &message).await;
    env.wait_journal("F-X1", "message.duplicate", 1).await;
    let note = credit_note("evt-credit-x1", "AV-9", "F-X1", "100.00");
    let mut again = note.clone();
    again["event_id"] = json!("evt-credit-x1-resent");
    env.publish(names::CREDIT_NOTE_ISSUED, &note).await;
    env.publish(names::CREDIT_NOTE_ISSUED, &again).await;
    env.wait_journal("F-X1", "credit_note.duplicate", 1).await;
    env.idle().await;
    assert_eq!(env.journal_count("F-X1", names::INVOICE_PAUSED).await, 1);
    assert_eq!(env.journal_count("F-X1", names::CREDIT_NOTE_RECORDED).await, 1);
    let (pauses, balance, credited): (i64, rust_decimal::Decimal, rust_decimal::Decimal) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM invoice_pauses), balance, credited FROM invoices WHERE number = 'F-X1'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(
        (
            pauses,
            balance.normalize().to_string(),
            credited.normalize().to_string()
        ),
        (1, "900".to_string(), "100".to_string())
    );
    env.stop().await;
}

/// Malformed or impossible messages are dead-lettered with the reason and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_refused_messages_are_dead_lettered_with_a_reason() {
    let env = TestEnv::start(1).await;
    register(&env, "F-M1", "100.00").await;
    register(&env, "F-M2", "100.00").await;
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-M2", "F-M2", "100.00", date(2026, 3, 2)),
    )
    .await;
    env.wait_journal("F-M2", names::INVOICE_SETTLED, 1).await;

    let inbound = env.names.inbound_exchange();
    env.publish_raw(&inbound, names::PROMISE_RECORDED, b"{ not json")
        .await;
    let mut no_date = promise("evt-m-1", "F-M1", "2026-03-20");
    no_date["promise"].as_object_mut().unwrap().remove("promised_on");
    let cases = [
        (names::PROMISE_RECORDED, no_date),
        (names::PROMISE_RECORDED, promise("evt-m-2", "F-M1", "2026-02-01")),
        (names::PROMISE_RECORDED, promise("evt-m-3", "F-M2", "2026-03-20")),
        (names::DISPUTE_OPENED, dispute("evt-m-4", "F-M1", "   ")),
        (
            names::CREDIT_NOTE_ISSUED,
            credit_note("evt-m-5", "AV-M", "F-M1", "abc"),
        ),
        (
            names::CREDIT_NOTE_ISSUED,
            credit_note("evt-m-6", "AV-M", "F-M1", "150.00"),
        ),
        (
            names::INVOICE_LIFECYCLE_STATUS,
            lifecycle("evt-m-7", "F-M1", "paid"),
        ),
        (
            names::DISPUTE_RESOLVED,
            envelope(
                "evt-m-8",
                "resolution",
                json!({ "invoice_number": "F-M1", "outcome": "upheld" }),
            ),
        ),
        (
            names::PROMISE_RECORDED,
            promise("evt-m-9", "F-NOPE", "2026-03-20"),
        ),
    ];
    for (key, body) in &cases {
        env.publish_raw(&inbound, key, &serde_json::to_vec(body).unwrap())
            .await;
    }
    let reasons = env.wait_for_dead_letters(cases.len() + 1).await;
    for fragment in [
        "body is not JSON",
        "promise.promised_on: is required",
        "promise.promised_on: 2026-02-01 is already past",
        "the invoice is settled",
        "dispute.reason: is required",
        "credit_note.amount: \"abc\" is not a decimal",
        "150 exceeds the balance 100",
        "lifecycle.status: unknown lifecycle status \"paid\"",
        "no dispute is open",
        "gave up after 3 retries: unknown invoice \"F-NOPE\"",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(fragment)),
            "no reason with {fragment:?} in {reasons:#?}"
        );
    }
    let (pauses, credit_notes): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM invoice_pauses), (SELECT count(*) FROM credit_notes)")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!((pauses, credit_notes), (0, 0));
    assert_eq!(invoice_status(&env, "F-M1").await.0, "open");
    assert_eq!(env.steps("F-M1").await, sequence(["pending"; 5]));
    env.stop().await;
}

async fn relance_cli(env: &TestEnv, args: &[&str]) -> std::process::Output {
    env.cli_output(args).await
}

/// The accounts team's commands publish the same messages, checked first by the same rules,
/// and list invoices with their collections status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pauses_and_lists_invoices_through_the_same_messages() {
    let env = TestEnv::start(1).await;
    register(&env, "F-CLI", "250.00").await;
    let refused = relance_cli(&env, &["invoice", "credit", "F-CLI", "--amount", "abc"]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refused before publishing: credit_note.amount"),
        "{stderr}"
    );
    let out = relance_cli(
        &env,
        &[
            "invoice",
            "dispute",
            "F-CLI",
            "--reason",
            "wrong quantity",
            "--wait",
            "30",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("published dispute.opened for F-CLI"), "{stdout}");
    assert!(stdout.contains("invoice.paused"), "{stdout}");
    assert!(
        !stdout.contains("invoice.registered"),
        "only what the message did: {stdout}"
    );
    assert_eq!(env.collections_status("F-CLI").await, CollectionStatus::Paused);
    let listed = relance_cli(&env, &["invoices", "--status", "paused"]).await;
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("F-CLI"))
        .unwrap_or_default();
    assert!(
        line.contains("paused") && line.contains("250.00 EUR") && line.contains("dispute"),
        "{stdout}"
    );
    assert!(stdout.contains("1 invoice(s)"), "{stdout}");
    let none = relance_cli(&env, &["invoices", "--status", "to_formalise"]).await;
    assert!(String::from_utf8_lossy(&none.stdout).contains("0 invoice(s)"));
    assert_eq!(env.journal_count("F-CLI", names::CREDIT_NOTE_RECORDED).await, 0);
    env.stop().await;
}

/// Runs a CLI command that publishes a message and waits for it to be applied; returns what
/// it printed, after checking it succeeded.
async fn applied(env: &TestEnv, args: &[&str]) -> String {
    let mut args = args.to_vec();
    args.extend(["--wait", "30"]);
    let out = relance_cli(env, &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invoice_command_of_the_cli_applies_its_message() {
    let env = TestEnv::start(1).await;
    for number in ["F-CLI-P", "F-CLI-R", "F-CLI-W", "F-CLI-L"] {
        register(&env, number, "250.00").await;
    }

    // A promise: paused until the date plus the grace days.
    let out = applied(
        &env,
        &[
            "invoice",
            "promise",
            "F-CLI-P",
            "--date",
            "2026-03-20",
            "--note",
            "by transfer",
        ],
    )
    .await;
    assert!(out.contains("published promise.recorded for F-CLI-P"), "{out}");
    assert!(out.contains("invoice.paused"), "{out}");
    assert_eq!(env.collections_status("F-CLI-P").await, CollectionStatus::Paused);

    // A dispute, then its resolution: the sequence resumes.
    applied(
        &env,
        &["invoice", "dispute", "F-CLI-R", "--reason", "wrong quantity"],
    )
    .await;
    let out = applied(
        &env,
        &["invoice", "resolve", "F-CLI-R", "--note", "quantity checked"],
    )
    .await;
    assert!(out.contains("published dispute.resolved for F-CLI-R"), "{out}");
    assert!(out.contains("invoice.resumed"), "{out}");
    assert_ne!(env.collections_status("F-CLI-R").await, CollectionStatus::Paused);

    // A write-off: closed, its reminders cancelled, no thank-you.
    let out = applied(
        &env,
        &[
            "invoice",
            "write-off",
            "F-CLI-W",
            "--reason",
            "customer in liquidation",
        ],
    )
    .await;
    assert!(out.contains("invoice.closed"), "{out}");
    assert_eq!(invoice_status(&env, "F-CLI-W").await.0, "closed");
    assert_eq!(env.collections_status("F-CLI-W").await, CollectionStatus::Closed);
    assert_eq!(env.journal_count("F-CLI-W", names::THANKS_SENT).await, 0);

    // The e-invoicing platform says "cashed": a payment of the balance, settled, thanked.
    let out = applied(&env, &["invoice", "lifecycle", "F-CLI-L", "cashed"]).await;
    assert!(out.contains("payment.recorded"), "{out}");
    assert!(out.contains("invoice.settled"), "{out}");
    assert_eq!(invoice_status(&env, "F-CLI-L").await.0, "settled");
    env.wait_journal("F-CLI-L", names::THANKS_SENT, 1).await;
    env.stop().await;
}

/// `relance invoice pause` holds the reminders by hand and `resume` releases them, but only
/// that pause: a dispute still open keeps the sequence paused until it is resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pauses_by_hand_and_a_resume_does_not_lift_an_open_dispute() {
    let env = TestEnv::start(1).await;
    register(&env, "F-HAND", "250.00").await;
    let refused = relance_cli(&env, &["invoice", "pause", "F-HAND", "--reason", " "]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refused before publishing: pause.reason"),
        "{stderr}"
    );

    let out = applied(
        &env,
        &[
            "invoice",
            "pause",
            "F-HAND",
            "--reason",
            "waiting for the purchase order",
        ],
    )
    .await;
    assert!(out.contains("published pause.requested for F-HAND"), "{out}");
    assert!(out.contains("invoice.paused"), "{out}");
    let paused = env.journal_details("F-HAND", names::INVOICE_PAUSED).await;
    assert_eq!(paused[0]["kind"], "manual");
    assert_eq!(env.collections_status("F-HAND").await, CollectionStatus::Paused);

    // A dispute meanwhile: releasing the pause by hand leaves the sequence paused.
    applied(
        &env,
        &["invoice", "dispute", "F-HAND", "--reason", "wrong quantity"],
    )
    .await;
    let out = applied(&env, &["invoice", "resume", "F-HAND", "--note", "order received"]).await;
    assert!(out.contains("published resume.requested for F-HAND"), "{out}");
    assert!(
        !out.contains("invoice.resumed"),
        "the dispute still holds it: {out}"
    );
    assert_eq!(env.collections_status("F-HAND").await, CollectionStatus::Paused);
    let out = applied(&env, &["invoice", "resolve", "F-HAND"]).await;
    assert!(out.contains("invoice.resumed"), "{out}");
    assert_ne!(env.collections_status("F-HAND").await, CollectionStatus::Paused);
    env.stop().await;
}

/// A message the accounts team sends with the CLI carries W3C trace context (`traceparent`),
/// so that what it causes in relance continues the CLI's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_message_carries_its_trace_context() {
    use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable, ShortString};

    let env = TestEnv::start(1).await;
    register(&env, "F-TRACE", "120.00").await;
    // A queue of the test's own beside the payments listener's, on the dispute's key.
    let queue = format!("{}.test-watch-disputes", env.names.namespace);
    let channel = env.connection.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-expires"), AMQPValue::LongLongInt(600_000));
    channel
        .queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            env.names.inbound_exchange().as_str().into(),
            names::DISPUTE_OPENED.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let out = relance_cli(
        &env,
        &["invoice", "dispute", "F-TRACE", "--reason", "wrong quantity"],
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let message = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the CLI's dispute on the inbound exchange");
    let headers = message.delivery.properties.headers().clone().unwrap_or_default();
    let traceparent = match headers.inner().get("traceparent") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("no traceparent header: {other:?}"),
    };
    // version-traceid-spanid-flags, with a real (non-zero) trace id.
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!((fields[1].len(), fields[2].len()), (32, 16), "{traceparent}");
    assert!(fields[1].chars().any(|c| c != '0'), "{traceparent}");
    // The test's own queue goes with it (it would expire by itself after ten minutes).
    channel
        .queue_delete(
            queue.as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    env.stop().await;
}
