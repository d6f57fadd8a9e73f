//! Payment plans (échéancier), end to end through the queues: a `payment_plan.agreed`
//! published on `<ns>.inbound` as another system (or `relance invoice plan`) would, with the
//! harness's email-only policy (medium risk, Paris) and the default `[payment_plans]` rules:
//! a note 5 days before each instalment and a reminder 3 days after a missed one, both at
//! the policy's send time (09:00 in Paris), and a plan broken by an instalment still unpaid
//! 10 days after its due date. The invoice is due Monday 16 March 2026; its own sequence
//! would send the reminder on Tuesday 24 March.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, TimeZone, Utc};
use relance_contracts::{names, EventV1};
use relance_domain::collections::CollectionStatus;
use relance_tests::{date, invoice_issued, payment_received, squeeze, TestEnv};
use serde_json::{json, Value};

fn utc(m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).single().unwrap()
}

fn plan(event_id: &str, plan_id: &str, invoice: &str, instalments: &[(&str, &str)]) -> Value {
    json!({
        "version": 1,
        "event_id": event_id,
        "occurred_at": "2026-03-17T23:00:00Z",
        "plan": {
            "id": plan_id,
            "customer_id": format!("C-{invoice}"),
            "invoice_numbers": [invoice],
            "instalments": instalments
                .iter()
                .map(|(due_on, amount)| json!({ "due_on": due_on, "amount": amount }))
                .collect::<Vec<_>>(),
            "currency": "EUR",
            "note": "agreed with Mme Martin by phone",
        }
    })
}

async fn register(env: &TestEnv, number: &str, amount: &str) {
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued(number, amount, date(2026, 3, 2), date(2026, 3, 16)),
    )
    .await;
    env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
}

fn of_type<'a>(events: &'a [EventV1], event_type: &str) -> Vec<&'a EventV1> {
    events.iter().filter(|e| e.event_type == event_type).collect()
}

/// When the invoice's step of this name is (or was) due.
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

/// The status of the invoice's step of this name.
async fn status_of(env: &TestEnv, invoice: &str, step: &str) -> String {
    env.steps(invoice)
        .await
        .into_iter()
        .find(|(name, _)| name == step)
        .map(|(_, status)| status)
        .unwrap_or_else(|| panic!("no step {step} for {invoice}"))
}

/// A plan kept: each instalment is announced by its own note (its own date and amount, the
/// whole schedule with what is paid), payments go to the instalments in order, the last one
/// completes the plan and settles the invoice with the thank-you, and nothing of the
/// invoice's own sequence goes out while the plan holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_kept_replaces_the_sequence_by_its_own_notes_until_the_thank_you() {
    let env = TestEnv::start(1).await;
    register(&env, "F-PL1", "1000.00").await;
    env.run_until(date(2026, 3, 17)).await;
    assert_eq!(env.mail.wait_for_emails(1).await.len(), 1, "the pre-due note");

    env.publish(
        names::PAYMENT_PLAN_AGREED,
        &plan(
            "evt-plan-pl1",
            "PLAN-1",
            "F-PL1",
            &[("2026-04-01", "600.00"), ("2026-05-04", "400.00")],
        ),
    )
    .await;
    env.wait_journal("F-PL1", names::PAYMENT_PLAN_AGREED_EVENT, 1)
        .await;
    assert_eq!(env.collections_status("F-PL1").await, CollectionStatus::Paused);
    let events = env
        .events_until("the plan agreed", |e| {
            !of_type(e, names::PAYMENT_PLAN_AGREED_EVENT).is_empty()
        })
        .await;
    let agreed = of_type(&events, names::PAYMENT_PLAN_AGREED_EVENT);
    assert_eq!(agreed[0].detail["plan_id"], "PLAN-1");
    assert_eq!(agreed[0].detail["total"], "1000");
    assert_eq!(agreed[0].detail["instalments"][1]["due_on"], "2026-05-04");
    let paused = of_type(&events, names::INVOICE_PAUSED);
    assert_eq!(paused.last().unwrap().detail["kind"], "plan");

    // Friday 27 March, 09:00 in Paris: the note before the first instalment. The invoice's
    // own reminder of Tuesday 24 March is held.
    env.run_until(date(2026, 3, 31)).await;
    let emails = env.mail.wait_for_emails(2).await;
    assert_eq!(emails.len(), 2, "the plan's first note only");
    let note = &emails[1];
    assert_eq!(
        due_at(&env, "F-PL1", "plan_1_pre_due").await,
        utc(3, 27, 8),
        "5 days before 1 April, at 09:00 in Paris"
    );
    assert_eq!(status_of(&env, "F-PL1", "plan_1_pre_due").await, "sent");
    assert!(note.subject.contains("échéance n° 1"), "{}", note.subject);
    assert!(note.subject.contains("600,00"), "{}", note.subject);
    assert!(note.subject.contains("01/04/2026"), "{}", note.subject);
    assert!(
        note.text.contains("04/05/2026"),
        "the whole schedule: {}",
        note.text
    );
    assert!(note.text.contains("400,00"), "{}", note.text);
    assert_eq!(status_of(&env, "F-PL1", "reminder_1").await, "pending");

    // The first instalment is paid on time.
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-PL1-1", "F-PL1", "600.00", date(2026, 3, 31)),
    )
    .await;
    env.wait_journal("F-PL1", names::PAYMENT_PLAN_INSTALMENT_PAID, 1)
        .await;
    let events = env
        .events_until_count(names::PAYMENT_PLAN_INSTALMENT_PAID, 1)
        .await;
    let paid = of_type(&events, names::PAYMENT_PLAN_INSTALMENT_PAID);
    assert_eq!(paid[0].detail["instalment"]["position"], 1);
    assert_eq!(paid[0].detail["remaining"], 1);
    assert_eq!(status_of(&env, "F-PL1", "plan_1_reminder_1").await, "cancelled");

    // Wednesday 29 April, 09:00 in Paris (summer time): the note before the second one,
    // stating the first as paid.
    env.run_until(date(2026, 5, 2)).await;
    let emails = env.mail.wait_for_emails(3).await;
    assert_eq!(emails.len(), 3, "no reminder between the instalments");
    let note = &emails[2];
    assert_eq!(due_at(&env, "F-PL1", "plan_2_pre_due").await, utc(4, 29, 7));
    assert_eq!(status_of(&env, "F-PL1", "plan_2_pre_due").await, "sent");
    assert!(note.subject.contains("échéance n° 2"), "{}", note.subject);
    assert!(note.subject.contains("400,00"), "{}", note.subject);
    assert!(note.subject.contains("04/05/2026"), "{}", note.subject);
    assert!(
        note.text.contains("(réglée)"),
        "the first instalment paid: {}",
        note.text
    );
    assert!(note.text.contains("Reste à régler : 400,00"), "{}", note.text);

    // The last instalment: the plan is completed, the invoice settled, the thank-you sent.
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-PL1-2", "F-PL1", "400.00", date(2026, 5, 4)),
    )
    .await;
    env.wait_journal("F-PL1", names::PAYMENT_PLAN_COMPLETED, 1).await;
    env.wait_journal("F-PL1", names::THANKS_SENT, 1).await;
    let emails = env.mail.wait_for_emails(4).await;
    assert!(emails[3].subject.contains("merci"), "{}", emails[3].subject);
    let events = env.events_until_count(names::THANKS_SENT, 1).await;
    assert_eq!(of_type(&events, names::PAYMENT_PLAN_COMPLETED).len(), 1);
    assert_eq!(of_type(&events, names::INVOICE_SETTLED).len(), 1);
    assert_eq!(env.collections_status("F-PL1").await, CollectionStatus::Settled);

    // Nothing of the invoice's own sequence went out while the plan held.
    for step in ["reminder_1", "reminder_2", "reminder_3", "formal_notice"] {
        assert_eq!(status_of(&env, "F-PL1", step).await, "cancelled", "{step}");
    }
    env.run_until(date(2026, 5, 20)).await;
    assert_eq!(env.mail.emails().await.len(), 4, "nothing after the thank-you");
    env.stop().await;
}

/// A plan broken: the first instalment unpaid, its reminder goes out 3 days after its due
/// date, and 10 days after it the plan breaks (`payment_plan.broken`), its notes are
/// cancelled and the invoice's own sequence resumes at the step it had reached, re-dated
/// into its send window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_instalment_beyond_the_grace_breaks_the_plan_and_the_sequence_resumes() {
    let env = TestEnv::start(1).await;
    register(&env, "F-PL2", "1000.00").await;
    env.run_until(date(2026, 3, 17)).await;
    assert_eq!(env.mail.wait_for_emails(1).await.len(), 1, "the pre-due note");
    env.publish(
        names::PAYMENT_PLAN_AGREED,
        &plan(
            "evt-plan-pl2",
            "PLAN-2",
            "F-PL2",
            &[("2026-04-01", "500.00"), ("2026-05-04", "500.00")],
        ),
    )
    .await;
    env.wait_journal("F-PL2", names::PAYMENT_PLAN_AGREED_EVENT, 1)
        .await;

    // The note before the instalment, then (Saturday 4 April) its reminder.
    env.run_until(date(2026, 4, 10)).await;
    let emails = env.mail.wait_for_emails(3).await;
    assert_eq!(emails.len(), 3, "the plan's note and its reminder only");
    assert_eq!(
        due_at(&env, "F-PL2", "plan_1_reminder_1").await,
        utc(4, 4, 7),
        "3 days after 1 April, 09:00 in Paris"
    );
    assert_eq!(status_of(&env, "F-PL2", "plan_1_reminder_1").await, "sent");
    assert!(emails[2].subject.contains("impayée"), "{}", emails[2].subject);
    assert!(emails[2].text.contains("500,00"), "{}", emails[2].text);
    assert_eq!(env.journal_count("F-PL2", names::PAYMENT_PLAN_BROKEN).await, 0);

    // Saturday 11 April, 23:00 in Paris: not yet. Sunday 12 April, midnight in Paris (22:00
    // UTC): 10 days after the due date, the plan breaks.
    env.set_time(utc(4, 11, 21)).await;
    assert_eq!(env.journal_count("F-PL2", names::PAYMENT_PLAN_BROKEN).await, 0);
    env.set_time(utc(4, 11, 22)).await;
    env.wait_journal("F-PL2", names::PAYMENT_PLAN_BROKEN, 1).await;
    let events = env
        .events_until("the plan broken and the sequence resumed", |e| {
            !of_type(e, names::PAYMENT_PLAN_BROKEN).is_empty()
                && !of_type(e, names::INVOICE_RESUMED).is_empty()
        })
        .await;
    let broken = of_type(&events, names::PAYMENT_PLAN_BROKEN);
    assert_eq!(broken[0].detail["plan_id"], "PLAN-2");
    assert_eq!(broken[0].detail["instalment"]["position"], 1);
    assert_eq!(broken[0].detail["balance"], "1000");
    let resumed = of_type(&events, names::INVOICE_RESUMED);
    assert_eq!(resumed[0].detail["next_step"], "reminder_1");
    assert_eq!(status_of(&env, "F-PL2", "plan_2_pre_due").await, "cancelled");
    assert_eq!(env.collections_status("F-PL2").await, CollectionStatus::ToRemind);

    // The reminder the sequence had reached goes out in its window: Tuesday 14 April.
    assert_eq!(due_at(&env, "F-PL2", "reminder_1").await, utc(4, 14, 7));
    env.run_until(date(2026, 4, 14)).await;
    let emails = env.mail.wait_for_emails(4).await;
    assert_eq!(emails.len(), 4);
    assert!(
        emails[3].subject.contains("en attente de règlement"),
        "the invoice's own reminder: {}",
        emails[3].subject
    );
    assert!(
        squeeze(&emails[3].text).contains("1000,00€"),
        "on the whole balance: {}",
        emails[3].text
    );
    env.stop().await;
}

/// A plan that does not hold together is refused with the reason, like any invalid inbound
/// message, and changes nothing; the command refuses it before publishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_plan_is_refused_with_the_reason() {
    let env = TestEnv::start(1).await;
    register(&env, "F-PL3", "1000.00").await;
    env.run_until(date(2026, 3, 17)).await;
    let cases = [
        plan(
            "evt-bad-sum",
            "PLAN-3",
            "F-PL3",
            &[("2026-04-01", "500.00"), ("2026-05-04", "400.00")],
        ),
        plan("evt-bad-one", "PLAN-4", "F-PL3", &[("2026-04-01", "1000.00")]),
        plan(
            "evt-bad-order",
            "PLAN-5",
            "F-PL3",
            &[("2026-05-04", "500.00"), ("2026-04-01", "500.00")],
        ),
        plan(
            "evt-bad-past",
            "PLAN-6",
            "F-PL3",
            &[("2026-03-10", "500.00"), ("2026-05-04", "500.00")],
        ),
    ];
    for body in &cases {
        env.publish(names::PAYMENT_PLAN_AGREED, body).await;
    }
    let reasons = env.wait_for_dead_letters(cases.len()).await;
    for fragment in [
        "sum to 900.00 EUR but the balance of the invoices is 1000",
        "a plan has at least 2",
        "plan.instalments[1].due_on: 2026-04-01 is not after",
        "plan.instalments[0].due_on: 2026-03-10 is already past",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(fragment)),
            "{fragment:?} not in {reasons:?}"
        );
    }
    assert_eq!(
        env.journal_count("F-PL3", names::PAYMENT_PLAN_AGREED_EVENT).await,
        0
    );
    assert_eq!(env.collections_status("F-PL3").await, CollectionStatus::ToRemind);

    let run = env
        .cli(&["invoice", "plan", "F-PL3", "--instalment", "2026-04-01:1000.00"])
        .await;
    assert!(!run.ok, "{}", run.stdout);
    assert!(run.stderr.contains("at least 2"), "{}", run.stderr);
    let run = env
        .cli(&[
            "invoice",
            "plan",
            "F-PL3",
            "--instalment",
            "2026-04-01:500,00",
            "--instalment",
            "x",
        ])
        .await;
    assert!(!run.ok);
    assert!(run.stderr.contains("YYYY-MM-DD:AMOUNT"), "{}", run.stderr);
    env.stop().await;
}

/// The same message twice (a redelivery, a second publish) is applied once; the command
/// publishes the same message and waits until it is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_applied_once_and_the_command_publishes_the_same_message() {
    let env = TestEnv::start(1).await;
    register(&env, "F-PL4", "1000.00").await;
    register(&env, "F-PL5", "300.00").await;
    env.run_until(date(2026, 3, 17)).await;
    let body = plan(
        "evt-plan-pl4",
        "PLAN-7",
        "F-PL4",
        &[("2026-04-01", "500.00"), ("2026-05-04", "500.00")],
    );
    env.publish(names::PAYMENT_PLAN_AGREED, &body).await;
    env.publish(names::PAYMENT_PLAN_AGREED, &body).await;
    env.wait_journal("F-PL4", "message.duplicate", 1).await;
    assert_eq!(
        env.journal_count("F-PL4", names::PAYMENT_PLAN_AGREED_EVENT).await,
        1
    );
    let plans: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_plans")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(plans, 1);
    let notes: i64 = sqlx::query_scalar("SELECT count(*) FROM reminder_steps WHERE kind = 'plan'")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(
        notes, 4,
        "a note before each instalment and a reminder after each"
    );

    let run = env
        .cli(&[
            "invoice",
            "plan",
            "F-PL5",
            "--instalment",
            "2026-04-15:150.00",
            "--instalment",
            "2026-05-15:150.00",
            "--id",
            "PLAN-CLI",
            "--wait",
            "30",
        ])
        .await;
    assert!(run.ok, "{} {}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(names::PAYMENT_PLAN_AGREED_EVENT),
        "{}",
        run.stdout
    );
    assert_eq!(env.collections_status("F-PL5").await, CollectionStatus::Paused);
    env.stop().await;
}

/// A plan over two invoices of one customer: payments go to the plan's instalments in
/// order whatever invoice they pay; when the invoice carrying the plan's notes is settled
/// first (its thank-you goes out), the notes still to come go on with the other invoice; the
/// last payment completes the plan on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_over_two_invoices_allocates_payments_in_order_across_them() {
    let env = TestEnv::start(1).await;
    register(&env, "F-PM1", "500.00").await;
    let mut second = invoice_issued("F-PM2", "300.00", date(2026, 3, 2), date(2026, 3, 16));
    second["invoice"]["customer"]["id"] = json!("C-F-PM1");
    env.publish(names::INVOICE_ISSUED, &second).await;
    env.wait_journal("F-PM2", names::INVOICE_REGISTERED, 1).await;
    env.run_until(date(2026, 3, 17)).await;
    let mut body = plan(
        "evt-plan-pm",
        "PLAN-PM",
        "F-PM1",
        &[("2026-04-01", "400.00"), ("2026-05-04", "400.00")],
    );
    body["plan"]["invoice_numbers"] = json!(["F-PM1", "F-PM2"]);
    env.publish(names::PAYMENT_PLAN_AGREED, &body).await;
    env.wait_journal("F-PM1", names::PAYMENT_PLAN_AGREED_EVENT, 1)
        .await;
    env.wait_journal("F-PM2", names::PAYMENT_PLAN_AGREED_EVENT, 1)
        .await;
    assert_eq!(env.collections_status("F-PM2").await, CollectionStatus::Paused);

    // 500 paid on the first invoice: the first instalment (400) and 100 of the second.
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-PM-1", "F-PM1", "500.00", date(2026, 3, 31)),
    )
    .await;
    env.wait_journal("F-PM1", names::PAYMENT_PLAN_INSTALMENT_PAID, 1)
        .await;
    env.wait_journal("F-PM1", names::THANKS_SENT, 1).await;
    env.wait_journal("F-PM2", "payment_plan.notes_moved", 1).await;
    let allocated = env
        .journal_details("F-PM1", "payment_plan.payment_allocated")
        .await;
    assert_eq!(allocated[0]["instalments"][0]["paid"], "400");
    assert_eq!(allocated[0]["instalments"][1]["paid"], "100");
    assert_eq!(status_of(&env, "F-PM2", "plan_2_pre_due").await, "pending");

    // The note before the second instalment, from the invoice still open: 300 left of it.
    env.run_until(date(2026, 5, 1)).await;
    assert_eq!(status_of(&env, "F-PM2", "plan_2_pre_due").await, "sent");
    let emails = env.mail.emails().await;
    let note = emails
        .iter()
        .find(|e| e.subject.contains("échéance n° 2"))
        .expect("the note before the second instalment");
    assert!(note.subject.contains("300,00"), "{}", note.subject);
    assert!(note.text.contains("F-PM1, F-PM2"), "{}", note.text);

    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-PM-2", "F-PM2", "300.00", date(2026, 5, 4)),
    )
    .await;
    env.wait_journal("F-PM1", names::PAYMENT_PLAN_COMPLETED, 1).await;
    env.wait_journal("F-PM2", names::PAYMENT_PLAN_COMPLETED, 1).await;
    env.wait_journal("F-PM2", names::THANKS_SENT, 1).await;
    assert_eq!(env.collections_status("F-PM2").await, CollectionStatus::Settled);
    env.stop().await;
}

/// A dispute opened while a plan holds stops the plan's notes too: the note before the next
/// instalment is skipped, nobody is asked to pay an invoice under dispute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispute_during_a_plan_holds_its_notes_too() {
    let env = TestEnv::start(1).await;
    register(&env, "F-PL6", "1000.00").await;
    env.run_until(date(2026, 3, 17)).await;
    assert_eq!(env.mail.wait_for_emails(1).await.len(), 1, "the pre-due note");
    env.publish(
        names::PAYMENT_PLAN_AGREED,
        &plan(
            "evt-plan-pl6",
            "PLAN-6",
            "F-PL6",
            &[("2026-04-01", "500.00"), ("2026-05-04", "500.00")],
        ),
    )
    .await;
    env.wait_journal("F-PL6", names::PAYMENT_PLAN_AGREED_EVENT, 1)
        .await;
    env.publish(
        names::DISPUTE_OPENED,
        &json!({
            "version": 1, "event_id": "evt-dispute-pl6", "occurred_at": "2026-03-18T10:00:00Z",
            "dispute": { "invoice_number": "F-PL6", "reason": "two pallets damaged" }
        }),
    )
    .await;
    env.wait_journal("F-PL6", names::INVOICE_PAUSED, 2).await;
    env.run_until(date(2026, 3, 28)).await;
    assert_eq!(status_of(&env, "F-PL6", "plan_1_pre_due").await, "skipped");
    assert_eq!(env.mail.emails().await.len(), 1, "no note during the dispute");
    let skipped = env.journal_details("F-PL6", names::REMINDER_SKIPPED).await;
    assert!(
        skipped
            .iter()
            .any(|d| d["reason"] == "the invoice is paused (dispute)"),
        "{skipped:?}"
    );
    env.stop().await;
}

/// A customer set to manual approval: its plan's notes wait for approval like its reminders
/// (held with their exact rendering, `approval.requested` by `customer`), and go out once
/// approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_customers_plan_notes_wait_for_approval() {
    let env = TestEnv::start(1).await;
    let mut issued = invoice_issued("F-PL9", "1000.00", date(2026, 3, 2), date(2026, 3, 16));
    issued["invoice"]["customer"]["approval"] = json!("manual");
    env.publish(names::INVOICE_ISSUED, &issued).await;
    env.wait_journal("F-PL9", names::INVOICE_REGISTERED, 1).await;
    env.publish(
        names::PAYMENT_PLAN_AGREED,
        &plan(
            "evt-plan-pl9",
            "PLAN-9",
            "F-PL9",
            &[("2026-04-01", "600.00"), ("2026-05-04", "400.00")],
        ),
    )
    .await;
    env.wait_journal("F-PL9", names::PAYMENT_PLAN_AGREED_EVENT, 1)
        .await;
    env.run_until(date(2026, 3, 27)).await;
    assert_eq!(
        status_of(&env, "F-PL9", "plan_1_pre_due").await,
        "awaiting_approval"
    );
    assert!(env.mail.emails().await.is_empty(), "nothing sent before approval");
    let requested = env.journal_details("F-PL9", "approval.requested").await;
    let held = requested
        .iter()
        .find(|r| r["step"] == "plan_1_pre_due")
        .unwrap_or_else(|| panic!("{requested:?}"));
    assert_eq!(held["by"], "customer");
    let subject = held["preview"]["message"]["subject"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(subject.contains("échéance n° 1"), "{subject}");
    let step_id: uuid::Uuid = sqlx::query_scalar(
        "SELECT s.id FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
         WHERE i.number = 'F-PL9' AND s.name = 'plan_1_pre_due'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    env.approve_with_cli(step_id, "Marie Dupont").await;
    env.idle().await;
    let emails = env.mail.wait_for_emails(1).await;
    assert_eq!(emails[0].subject, subject);
    assert_eq!(status_of(&env, "F-PL9", "plan_1_pre_due").await, "sent");
    env.stop().await;
}
