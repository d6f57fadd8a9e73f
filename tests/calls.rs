//! Call tasks and channel fallbacks end to end. A policy of the test's own: an email two days
//! after the due date, a call task two days later, an SMS two days after that, a firm email
//! two days later; SMS and calls fall back to email. Due Monday 9 March 2026: Wednesday 11
//! (email), Friday 13 (call), Sunday 15 (SMS), Tuesday 17 (firm email), 09:00 Paris.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use relance_config::{Config, Settings};
use relance_contracts::{names, EventV1};
use relance_domain::collections::CollectionStatus;
use relance_tests::{date, invoice_issued, payment_received, TestEnv};
use serde_json::{json, Value};
use std::path::PathBuf;

fn policy() -> String {
    segments("[fallback]\nsms = [\"email\"]\ncall = [\"email\"]\n", CALL_STEPS)
}

/// A policy of `head` and the same `steps` in each segment.
fn segments(head: &str, steps: &str) -> String {
    let mut policy = format!("send_time = \"09:00\"\n\n{head}");
    for segment in ["low", "medium", "high"] {
        policy.push_str(&steps.replace("SEGMENT", segment));
    }
    policy
}

const CALL_STEPS: &str = r#"
[[segments.SEGMENT.steps]]
name = "reminder_1"
offset_days = 2
channel = "email"
template = "reminder"
tone = "courteous"

[[segments.SEGMENT.steps]]
name = "call_1"
offset_days = 4
channel = "call"
template = "call_script"
tone = "firm"

[[segments.SEGMENT.steps]]
name = "sms_1"
offset_days = 6
channel = "sms"
template = "sms_reminder"
tone = "firm"

[[segments.SEGMENT.steps]]
name = "reminder_2"
offset_days = 8
channel = "email"
template = "firm_reminder"
tone = "firm"
"#;

struct Setup {
    env: TestEnv,
    scratch: PathBuf,
}

async fn start(extra: &[(&str, &str)]) -> Setup {
    start_with(&policy(), extra).await
}

async fn start_with(policy: &str, extra: &[(&str, &str)]) -> Setup {
    let scratch = std::env::temp_dir().join(format!("relance-calls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    let policy_file = scratch.join("policy.toml");
    std::fs::write(&policy_file, policy).unwrap();
    let sms_dir = scratch.join("sms");
    let mut vars = vec![
        ("RELANCE_POLICY_FILE", policy_file.to_str().unwrap()),
        ("RELANCE_SMS_DIR", sms_dir.to_str().unwrap()),
    ];
    vars.extend_from_slice(extra);
    let env = TestEnv::try_start(1, &vars)
        .await
        .expect("starting the test environment");
    Setup { env, scratch }
}

impl Setup {
    async fn stop(self) {
        self.env.stop().await;
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// An invoice due Monday 9 March 2026, with a mobile number unless `phone` is `None`.
async fn register(env: &TestEnv, number: &str, phone: Option<&str>) {
    let mut invoice = invoice_issued(number, "1500.00", date(2026, 3, 2), date(2026, 3, 9));
    if let Some(phone) = phone {
        invoice["invoice"]["customer"]["phone"] = json!(phone);
    }
    env.publish(names::INVOICE_ISSUED, &invoice).await;
    env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
}

fn call_outcome(event_id: &str, invoice: &str, call: Value) -> Value {
    let mut call = call;
    call["invoice_number"] = json!(invoice);
    json!({ "version": 1, "event_id": event_id, "occurred_at": "2026-03-13T10:00:00Z", "call": call })
}

async fn step_status(env: &TestEnv, invoice: &str, step: &str) -> (String, String) {
    sqlx::query_as(
        "SELECT s.status, s.channel FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
         WHERE i.number = $1 AND s.name = $2",
    )
    .bind(invoice)
    .bind(step)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

async fn step_id(env: &TestEnv, invoice: &str, step: &str) -> uuid::Uuid {
    sqlx::query_scalar(
        "SELECT s.id FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id WHERE i.number = $1 AND s.name = $2",
    )
    .bind(invoice)
    .bind(step)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

async fn open_tasks(env: &TestEnv) -> Vec<String> {
    relance_storage::calls::list(&env.db, false)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.invoice_number)
        .collect()
}

fn find<'a>(events: &'a [EventV1], invoice: &str, event_type: &str) -> Vec<&'a EventV1> {
    events
        .iter()
        .filter(|e| e.invoice_number == invoice && e.event_type == event_type)
        .collect()
}

async fn relance_cli(env: &TestEnv, args: &[&str]) -> (bool, String, String) {
    let run = env.cli(args).await;
    (run.ok, run.stdout, run.stderr)
}

/// A call step opens a task with its script, listed by `relance tasks`; the lease sweep
/// leaves it alone; `no_answer` (through the CLI) closes it and the sequence goes on; a task
/// nobody answers expires with a journal entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_step_opens_a_task_that_ends_by_its_outcome_or_expires() {
    let s = start(&[("RELANCE_CALL_TASK_DAYS", "2")]).await;
    let env = &s.env;
    register(env, "F-C1", Some("06 12 34 56 78")).await;
    register(env, "F-C2", Some("+33 6 98 76 54 32")).await;
    env.run_until(date(2026, 3, 13)).await;
    assert_eq!(
        env.mail.wait_for_emails(2).await.len(),
        2,
        "reminder_1 of each invoice"
    );
    for invoice in ["F-C1", "F-C2"] {
        assert_eq!(
            step_status(env, invoice, "call_1").await,
            ("awaiting_outcome".to_string(), "call".to_string())
        );
    }
    assert_eq!(env.mail.emails().await.len(), 2, "a call is not an email");
    let events = env
        .events_until("F-C1's call task", |e| {
            !find(e, "F-C1", names::CALL_TASK_OPENED).is_empty()
        })
        .await;
    let opened = find(&events, "F-C1", names::CALL_TASK_OPENED);
    assert_eq!(opened.len(), 1, "{events:?}");
    assert_eq!(opened[0].detail["phone"], json!("+33612345678"));

    let (ok, stdout, stderr) = relance_cli(env, &["tasks"]).await;
    assert!(ok, "{stderr}");
    let call_1 = step_id(env, "F-C1", "call_1").await;
    let row = stdout
        .lines()
        .position(|l| l.starts_with(&call_1.to_string()))
        .unwrap_or_else(|| panic!("{stdout}"));
    let line = stdout.lines().nth(row).unwrap_or_default();
    for expected in [
        "F-C1",
        "ACME Industrie SA",
        "+33612345678",
        "2026-03-09",
        "1500.00 EUR",
        "open",
    ] {
        assert!(line.contains(expected), "{expected:?} in {line:?}");
    }
    // The script's first line, in the customer's language.
    let excerpt = stdout.lines().nth(row + 1).unwrap_or_default();
    assert!(
        excerpt.contains("Appeler ACME Industrie SA (Jeanne Martin) au +33612345678")
            && excerpt.contains("F-C1")
            && excerpt.contains("1\u{202f}500,00"),
        "{excerpt}"
    );
    assert!(stdout.contains("2 task(s), 2 open"), "{stdout}");
    let script: String = sqlx::query_scalar("SELECT body_text FROM rendered_messages WHERE step_id = $1")
        .bind(call_1)
        .fetch_one(&env.db)
        .await
        .unwrap();
    for expected in [
        "09/03/2026",
        "4 jours de retard",
        "Jeanne Martin",
        "litige",
        "date de paiement",
    ] {
        assert!(script.contains(expected), "{expected:?} in {script}");
    }

    // The lease sweep hands out steps left in flight; an open task is not one of them.
    sqlx::query(
        "UPDATE reminder_steps SET status_changed_at = status_changed_at - interval '1 day' WHERE id = $1",
    )
    .bind(call_1)
    .execute(&env.db)
    .await
    .unwrap();
    let sweep_settings = Settings::from_vars(vec![
        ("DATABASE_URL".to_string(), env.database_url.clone()),
        ("RELANCE_LEASE_MS".to_string(), "1".to_string()),
    ])
    .unwrap();
    let sweep = Config::with_clock(sweep_settings, env.shared_clock.clone()).unwrap();
    assert_eq!(
        relance_scheduler::recover_expired_leases(&env.db, &sweep)
            .await
            .unwrap(),
        0
    );
    assert_eq!(step_status(env, "F-C1", "call_1").await.0, "awaiting_outcome");

    // No answer, recorded through the CLI: the task closes, nothing pauses.
    let (ok, stdout, stderr) = relance_cli(
        env,
        &[
            "tasks",
            "outcome",
            "F-C1",
            "no_answer",
            "--note",
            "voicemail",
            "--wait",
            "30",
        ],
    )
    .await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("published call.outcome for F-C1"), "{stdout}");
    assert!(stdout.contains(names::CALL_OUTCOME_RECORDED), "{stdout}");
    assert_eq!(step_status(env, "F-C1", "call_1").await.0, "completed");
    assert_eq!(open_tasks(env).await, vec!["F-C2".to_string()]);
    let recorded = env.journal_details("F-C1", names::CALL_OUTCOME_RECORDED).await;
    assert_eq!(recorded[0]["outcome"], json!("no_answer"));
    assert_eq!(recorded[0]["note"], json!("voicemail"));

    // F-C2's task is open through Sunday 15 March (2 days), then expires.
    env.run_until(date(2026, 3, 14)).await;
    assert_eq!(step_status(env, "F-C2", "call_1").await.0, "awaiting_outcome");
    env.run_until(date(2026, 3, 16)).await;
    assert_eq!(step_status(env, "F-C2", "call_1").await.0, "expired");
    let expired = env.journal_details("F-C2", names::CALL_TASK_EXPIRED).await;
    assert_eq!(expired.len(), 1);
    assert!(
        expired[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("within 2 days"),
        "{expired:?}"
    );
    assert!(open_tasks(env).await.is_empty());
    let (ok, stdout, _) = relance_cli(env, &["tasks", "--all"]).await;
    assert!(ok && stdout.contains("2 task(s), 0 open"), "{stdout}");
    assert!(
        stdout.contains("no_answer") && stdout.contains("expired"),
        "{stdout}"
    );

    // The sequence went on for both: the SMS on Sunday 15 March (to the outbox folder).
    for invoice in ["F-C1", "F-C2"] {
        assert_eq!(step_status(env, invoice, "sms_1").await.0, "sent", "{invoice}");
        assert_eq!(env.collections_status(invoice).await, CollectionStatus::ToRemind);
    }

    // A late outcome for the expired task still counts: the promise pauses, the recap goes.
    let call_2 = step_id(env, "F-C2", "call_1").await;
    env.publish(
        names::CALL_OUTCOME,
        &call_outcome(
            "crm-call-2-late",
            "F-C2",
            json!({ "step_id": call_2.to_string(), "outcome": "reached", "promised_on": "2026-03-25" }),
        ),
    )
    .await;
    env.wait_journal("F-C2", names::INVOICE_PAUSED, 1).await;
    let recorded = env.journal_details("F-C2", names::CALL_OUTCOME_RECORDED).await;
    assert_eq!(recorded[0]["late"], json!(true));
    assert_eq!(step_status(env, "F-C2", "call_1").await.0, "expired");
    let emails = env.mail.wait_for_emails(3).await;
    assert!(
        emails[2].subject.contains("F-C2") && emails[2].subject.contains("25/03/2026"),
        "{}",
        emails[2].subject
    );
    s.stop().await;
}

/// `reached` with a date is a promise: the sequence pauses exactly like for
/// `promise.recorded`, and a recap email confirms the date. A duplicate is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reached_call_with_a_date_pauses_the_sequence_and_sends_a_recap() {
    let s = start(&[]).await;
    let env = &s.env;
    register(env, "F-C3", Some("0612345678")).await;
    env.run_until(date(2026, 3, 13)).await;
    assert_eq!(env.mail.wait_for_emails(1).await.len(), 1);
    let outcome = call_outcome(
        "crm-call-1",
        "F-C3",
        json!({ "outcome": "reached", "promised_on": "2026-03-20", "note": "Jeanne Martin: transfer on Friday" }),
    );
    env.publish(names::CALL_OUTCOME, &outcome).await;
    env.publish(names::CALL_OUTCOME, &outcome).await;
    env.wait_journal("F-C3", "message.duplicate", 1).await;
    env.idle().await;

    let emails = env.mail.wait_for_emails(2).await;
    let recap = &emails[1];
    assert_eq!(
        recap.subject,
        "Facture F-C3 : suite à notre appel, règlement prévu le 20/03/2026"
    );
    assert!(
        recap.text.contains("vous nous avez confirmé le règlement"),
        "{}",
        recap.text
    );
    assert!(
        recap.text.contains("le 20/03/2026") && recap.text.contains("1\u{202f}500,00"),
        "{}",
        recap.text
    );
    assert_eq!(recap.recipients(), vec!["compta+f-c3@acme.test"]);
    assert_eq!(step_status(env, "F-C3", "call_1").await.0, "completed");
    assert_eq!(
        step_status(env, "F-C3", "call_1_recap").await,
        ("sent".into(), "email".into())
    );

    // The promise, as promise.recorded would have opened it: until the 20th plus 3 grace days.
    let events = env
        .events_until("F-C3's pause", |e| {
            !find(e, "F-C3", names::INVOICE_PAUSED).is_empty()
        })
        .await;
    let paused = find(&events, "F-C3", names::INVOICE_PAUSED);
    assert_eq!(paused.len(), 1, "applied once: {events:?}");
    assert_eq!(paused[0].detail["kind"], json!("promise"));
    assert_eq!(paused[0].detail["promised_on"], json!("2026-03-20"));
    assert_eq!(paused[0].detail["until"], json!("2026-03-23T23:00:00Z"));
    assert_eq!(find(&events, "F-C3", names::CALL_OUTCOME_RECORDED).len(), 1);
    assert_eq!(env.journal_count("F-C3", names::INVOICE_PAUSED).await, 1);
    assert_eq!(env.collections_status("F-C3").await, CollectionStatus::Paused);

    // Nothing goes out while the promise holds.
    env.run_until(date(2026, 3, 20)).await;
    assert_eq!(env.mail.emails().await.len(), 2);
    assert_eq!(step_status(env, "F-C3", "sms_1").await.0, "pending");
    // Unpaid, the sequence resumes after the grace days at the step it had reached.
    env.run_until(date(2026, 3, 24)).await;
    assert_eq!(env.journal_count("F-C3", names::INVOICE_RESUMED).await, 1);
    assert_eq!(step_status(env, "F-C3", "sms_1").await.0, "sent");
    // The call, its outcome and the recap are in the invoice's hash-chained journal.
    let (ok, stdout, stderr) = relance_cli(env, &["journal", "verify"]).await;
    assert!(ok, "{stdout}\n{stderr}");
    s.stop().await;
}

/// `disputed` opens a dispute: the sequence pauses until it is resolved. A payment cancels an
/// open call task, after which an outcome for it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disputed_call_pauses_until_resolved_and_a_payment_cancels_an_open_task() {
    let s = start(&[]).await;
    let env = &s.env;
    register(env, "F-C4", Some("0612345678")).await;
    register(env, "F-C5", Some("0687654321")).await;
    env.run_until(date(2026, 3, 13)).await;
    let call_4 = step_id(env, "F-C4", "call_1").await;
    env.publish(
        names::CALL_OUTCOME,
        &call_outcome(
            "crm-call-4",
            "F-C4",
            json!({ "step_id": call_4.to_string(), "outcome": "disputed", "reason": "two pallets damaged" }),
        ),
    )
    .await;
    env.wait_journal("F-C4", names::INVOICE_PAUSED, 1).await;
    let paused = env.journal_details("F-C4", names::INVOICE_PAUSED).await;
    assert_eq!(paused[0]["kind"], json!("dispute"));
    assert_eq!(paused[0]["reason"], json!("two pallets damaged"));
    assert_eq!(step_status(env, "F-C4", "call_1").await.0, "completed");

    // F-C5 pays while its call task is open: the task is cancelled with the other steps.
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("VIR-C5", "F-C5", "1500.00", date(2026, 3, 14)),
    )
    .await;
    env.wait_journal("F-C5", names::INVOICE_SETTLED, 1).await;
    assert_eq!(step_status(env, "F-C5", "call_1").await.0, "cancelled");
    let cancelled = env.journal_details("F-C5", names::REMINDER_CANCELLED).await;
    assert!(cancelled.len() >= 3, "call_1, sms_1, reminder_2: {cancelled:?}");
    assert!(open_tasks(env).await.is_empty());
    env.publish(
        names::CALL_OUTCOME,
        &call_outcome("crm-call-5", "F-C5", json!({ "outcome": "no_answer" })),
    )
    .await;
    let reasons = env.wait_for_dead_letters(1).await;
    assert!(
        reasons[0].contains("call outcome for invoice F-C5 refused: the invoice is settled"),
        "{reasons:?}"
    );

    // The dispute holds F-C4's sequence (the SMS and the firm email wait) until resolved.
    env.run_until(date(2026, 3, 18)).await;
    assert_eq!(step_status(env, "F-C4", "sms_1").await.0, "pending");
    assert_eq!(step_status(env, "F-C4", "reminder_2").await.0, "pending");
    let resolved = json!({
        "version": 1, "event_id": "crm-call-4-resolved", "occurred_at": "2026-03-18T23:00:00Z",
        "resolution": { "invoice_number": "F-C4", "outcome": "upheld", "note": "pallets were fine" }
    });
    env.publish(names::DISPUTE_RESOLVED, &resolved).await;
    env.wait_journal("F-C4", names::INVOICE_RESUMED, 1).await;
    env.run_until(date(2026, 3, 19)).await;
    assert_eq!(
        step_status(env, "F-C4", "sms_1").await.0,
        "sent",
        "resumes at the step it had reached"
    );
    assert_eq!(step_status(env, "F-C4", "reminder_2").await.0, "pending");
    s.stop().await;
}

/// A customer without a phone number gets the SMS and the call as emails (the policy's
/// fallback), and the journal says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_without_a_phone_gets_emails_instead_of_the_sms_and_the_call() {
    let s = start(&[]).await;
    let env = &s.env;
    register(env, "F-C6", None).await;
    env.run_until(date(2026, 3, 15)).await;
    let emails = env.mail.wait_for_emails(3).await;
    assert_eq!(emails.len(), 3, "reminder_1, then call_1 and sms_1 by email");
    assert!(emails[1].subject.contains("F-C6"), "{}", emails[1].subject);
    assert_eq!(emails[1].recipients(), vec!["compta+f-c6@acme.test"]);
    for step in ["call_1", "sms_1"] {
        assert_eq!(
            step_status(env, "F-C6", step).await,
            ("sent".into(), "email".into())
        );
    }
    let fallbacks = env.journal_details("F-C6", names::REMINDER_FALLBACK).await;
    let summary: Vec<(String, String, String)> = fallbacks
        .iter()
        .map(|d| {
            (
                d["from"].as_str().unwrap_or_default().to_string(),
                d["to"].as_str().unwrap_or_default().to_string(),
                d["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let no_phone = "the customer has no phone number".to_string();
    assert_eq!(
        summary,
        vec![
            ("call".into(), "email".into(), no_phone.clone()),
            ("sms".into(), "email".into(), no_phone)
        ]
    );
    let events = env
        .events_until("F-C6's two fallbacks", |e| {
            find(e, "F-C6", names::REMINDER_FALLBACK).len() >= 2
        })
        .await;
    let announced = find(&events, "F-C6", names::REMINDER_FALLBACK);
    assert_eq!(announced.len(), 2, "{events:?}");
    assert_eq!(announced[0].step.as_deref(), Some("call_1"));
    assert_eq!(announced[0].channel.as_deref(), Some("email"));
    assert_eq!(env.journal_count("F-C6", names::REMINDER_SKIPPED).await, 0);
    assert!(
        open_tasks(env).await.is_empty(),
        "no task for a customer one cannot call"
    );
    s.stop().await;
}

/// Malformed or refused outcomes are dead-lettered with the reason and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_refused_outcomes_are_dead_lettered_with_a_reason() {
    let s = start(&[]).await;
    let env = &s.env;
    register(env, "F-C7", Some("0612345678")).await;
    // Before the call step: no task is open yet.
    env.publish(
        names::CALL_OUTCOME,
        &call_outcome("bad-0", "F-C7", json!({ "outcome": "no_answer" })),
    )
    .await;
    let early = env.wait_for_dead_letters(1).await;
    assert!(early[0].contains("no call task is open on it"), "{early:?}");
    env.run_until(date(2026, 3, 13)).await;
    env.publish_raw(&env.names.inbound_exchange(), names::CALL_OUTCOME, b"{not json")
        .await;
    let refused = [
        json!({ "outcome": "voicemail" }),
        json!({ "outcome": "disputed" }),
        json!({ "outcome": "reached", "promised_on": "2026-03-01" }),
        json!({ "outcome": "no_answer", "step_id": "call_1" }),
        json!({ "outcome": "no_answer", "step_id": uuid::Uuid::new_v4().to_string() }),
    ];
    for (i, call) in refused.iter().enumerate() {
        env.publish(
            names::CALL_OUTCOME,
            &call_outcome(&format!("bad-{}", i + 1), "F-C7", call.clone()),
        )
        .await;
    }
    let reasons = env.wait_for_dead_letters(6).await;
    let expected = [
        "call.outcome: unknown outcome \"voicemail\"",
        "call.reason: is required",
        "call.promised_on: 2026-03-01 is already past",
        "call.step_id: \"call_1\" is not a step id",
        "is not a call task of this invoice",
    ];
    for fragment in expected {
        assert!(
            reasons.iter().any(|r| r.contains(fragment)),
            "{fragment:?} in {reasons:?}"
        );
    }
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    assert_eq!(step_status(env, "F-C7", "call_1").await.0, "awaiting_outcome");
    assert_eq!(env.journal_count("F-C7", names::CALL_OUTCOME_RECORDED).await, 0);
    assert_eq!(env.journal_count("F-C7", names::INVOICE_PAUSED).await, 0);
    // The CLI refuses before publishing, with the same rules.
    let (ok, _, stderr) = relance_cli(env, &["tasks", "outcome", "F-C7", "disputed", "--reason", " "]).await;
    assert!(
        !ok && stderr.contains("refused before publishing: call.reason"),
        "{stderr}"
    );
    s.stop().await;
}

/// An email address the SMTP server refuses for good (550) is recorded as bounced: the
/// customer's next email step falls back to a letter (the policy's `[fallback] email`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_permanent_smtp_refusal_the_next_email_step_becomes_a_letter() {
    let steps = r#"
[[segments.SEGMENT.steps]]
name = "reminder_1"
offset_days = 2
channel = "email"
template = "reminder"
tone = "courteous"

[[segments.SEGMENT.steps]]
name = "reminder_2"
offset_days = 4
channel = "email"
template = "firm_reminder"
tone = "firm"
"#;
    // The services talk to a MailDev of this test's own through the refusing proxy.
    let mail = relance_tests::MailDev::start().await.unwrap();
    let proxy = relance_tests::smtp_proxy::SmtpFaultProxy::start(mail.smtp_port)
        .await
        .unwrap();
    proxy.refuse_recipients(["compta+f-c8@acme.test".to_string()]);
    let smtp = format!("smtp://127.0.0.1:{}", proxy.port);
    let letters =
        std::env::temp_dir().join(format!("relance-calls-letters-{}", uuid::Uuid::new_v4().simple()));
    let s = start_with(
        &segments("[fallback]\nemail = [\"letter\"]\n", steps),
        &[
            ("SMTP_URL", &smtp),
            ("RELANCE_LETTER_DIR", letters.to_str().unwrap()),
        ],
    )
    .await;
    let env = &s.env;
    let mut invoice = invoice_issued("F-C8", "1500.00", date(2026, 3, 2), date(2026, 3, 9));
    invoice["invoice"]["customer"]["postal_address"] = json!("12 rue des Forges\n69002 Lyon");
    env.publish(names::INVOICE_ISSUED, &invoice).await;
    env.wait_journal("F-C8", names::INVOICE_REGISTERED, 1).await;

    env.run_until(date(2026, 3, 11)).await;
    assert_eq!(step_status(env, "F-C8", "reminder_1").await.0, "failed");
    assert!(proxy.permanent_refusals() >= 1);
    assert_eq!(env.journal_count("F-C8", "customer.email_bounced").await, 1);

    env.run_until(date(2026, 3, 13)).await;
    assert_eq!(
        step_status(env, "F-C8", "reminder_2").await,
        ("sent".into(), "letter".into())
    );
    let fallback = env.journal_details("F-C8", names::REMINDER_FALLBACK).await;
    assert_eq!(fallback.len(), 1, "{fallback:?}");
    assert_eq!(
        (fallback[0]["from"].as_str(), fallback[0]["to"].as_str()),
        (Some("email"), Some("letter"))
    );
    assert_eq!(fallback[0]["template"], json!("letter_reminder"));
    let reason = fallback[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("the customer's email address bounced (SMTP server refused the message")
            && reason.contains("550"),
        "{reason}"
    );
    let posted = std::fs::read_dir(&letters)
        .map(|days| days.flatten().count())
        .unwrap_or(0);
    assert_eq!(posted, 1, "one dated folder with the letter");
    assert!(mail.emails().await.is_empty(), "nothing reached the mailbox");
    s.stop().await;
    let mut mail = mail;
    mail.stop().await;
    let _ = std::fs::remove_dir_all(&letters);
}
