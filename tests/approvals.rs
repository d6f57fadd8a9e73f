//! Approval before formal steps, end to end through the real services on the simulated
//! clock. A policy of the test's own: a reminder email two days after the due date, then the
//! formal notice by email four days later, which waits for approval (`[approvals]`, whose
//! default holds the `formal_notice` template) at most three days. Due Monday 9 March 2026:
//! the reminder on Wednesday 11 March, the formal notice falls due on Sunday 15 March, 09:00
//! Paris (any time window).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use relance_contracts::names;
use relance_tests::{date, invoice_issued, open_form_page, payment_received, squeeze, FormPage, TestEnv};
use serde_json::json;
use std::path::PathBuf;

const STEPS: &str = r#"
[[segments.SEGMENT.steps]]
name = "reminder_1"
offset_days = 2
channel = "email"
template = "reminder"
tone = "courteous"

[[segments.SEGMENT.steps]]
name = "formal_notice"
offset_days = 6
channel = "email"
template = "formal_notice"
tone = "formal"
"#;

fn policy() -> String {
    let mut policy = "send_time = \"09:00\"\n\n[approvals]\nexpires_after_days = 3\n".to_string();
    for segment in ["low", "medium", "high"] {
        policy.push_str(&STEPS.replace("SEGMENT", segment));
    }
    policy
}

struct Setup {
    env: TestEnv,
    scratch: PathBuf,
}

async fn start() -> Setup {
    let scratch = std::env::temp_dir().join(format!("relance-approvals-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    let policy_file = scratch.join("policy.toml");
    std::fs::write(&policy_file, policy()).unwrap();
    let env = TestEnv::try_start(1, &[("RELANCE_POLICY_FILE", policy_file.to_str().unwrap())])
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

/// An invoice of 1,500.00 EUR due Monday 9 March 2026; `manual`: its customer's every
/// reminder waits for approval.
async fn register(env: &TestEnv, number: &str, manual: bool) {
    let mut invoice = invoice_issued(number, "1500.00", date(2026, 3, 2), date(2026, 3, 9));
    if manual {
        invoice["invoice"]["customer"]["approval"] = json!("manual");
    }
    env.publish(names::INVOICE_ISSUED, &invoice).await;
    env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
}

async fn step_of(env: &TestEnv, invoice: &str, step: &str) -> (uuid::Uuid, String, Option<String>) {
    sqlx::query_as(
        "SELECT s.id, s.status, s.status_reason FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
         WHERE i.number = $1 AND s.name = $2",
    )
    .bind(invoice)
    .bind(step)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

async fn formal_notices_sent(env: &TestEnv) -> usize {
    env.mail
        .emails()
        .await
        .iter()
        .filter(|e| e.subject.contains("Mise en demeure"))
        .count()
}

/// The formal notice falls due and waits (nothing is sent), listed by `relance approvals`
/// with what it will say; approved through the CLI it goes out, and the journal names who
/// approved it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_formal_notice_waits_for_approval_and_goes_out_once_approved() {
    let s = start().await;
    let env = &s.env;
    register(env, "F-A1", false).await;
    env.run_until(date(2026, 3, 15)).await;
    assert_eq!(env.mail.wait_for_emails(1).await.len(), 1, "the first reminder");
    let (step_id, status, _) = step_of(env, "F-A1", "formal_notice").await;
    assert_eq!(status, "awaiting_approval");
    assert_eq!(formal_notices_sent(env).await, 0, "nothing sent before approval");
    let requested = env.journal_details("F-A1", "approval.requested").await;
    assert_eq!(requested.len(), 1, "{requested:?}");
    let preview = &requested[0]["preview"];
    assert_eq!(preview["template"], "formal_notice");
    assert_eq!(preview["channel"], "email");
    assert_eq!(preview["balance"], "1500.00");
    assert_eq!(preview["indemnity"], "40.00", "{preview}");
    assert_ne!(
        preview["interest"], "0.00",
        "a business owes late interest: {preview}"
    );

    let list = env.cli(&["approvals"]).await;
    assert!(list.ok, "{}", list.stderr);
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with(&step_id.to_string()))
        .unwrap_or_else(|| panic!("{}", list.stdout));
    for expected in ["F-A1", "ACME Industrie SA", "formal_notice", "email", "EUR"] {
        assert!(line.contains(expected), "{expected:?} in {line:?}");
    }
    assert!(list.stdout.contains("balance 1500.00"), "{}", list.stdout);
    let json_list = env.cli(&["approvals", "--format", "json"]).await;
    assert!(
        json_list.stdout.contains("\"invoice\":\"F-A1\"")
            || json_list.stdout.contains("\"invoice\": \"F-A1\""),
        "{}",
        json_list.stdout
    );

    env.approve_with_cli(step_id, "Marie Dupont").await;
    env.idle().await;
    let emails = env.mail.wait_for_emails(2).await;
    let notice = emails
        .iter()
        .find(|e| e.subject.contains("Mise en demeure"))
        .unwrap_or_else(|| panic!("the formal notice in {emails:?}"));
    assert!(notice.subject.contains("F-A1"), "{}", notice.subject);
    assert!(
        notice.to.iter().any(|t| t.contains("compta+f-a1@acme.test")),
        "{:?}",
        notice.to
    );
    assert!(notice.text.contains("500,00"), "{}", notice.text);
    assert_eq!(step_of(env, "F-A1", "formal_notice").await.1, "sent");
    let granted = env.journal_details("F-A1", names::APPROVAL_GRANTED).await;
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["decided_by"], "Marie Dupont");
    let after = env.cli(&["approvals"]).await;
    assert!(!after.stdout.contains(&step_id.to_string()), "{}", after.stdout);
    s.stop().await;
}

/// A rejected formal notice never goes out: the step is skipped with the reason and the
/// journal names who rejected it. A reason is required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_formal_notice_is_never_sent() {
    let s = start().await;
    let env = &s.env;
    register(env, "F-A2", false).await;
    env.run_until(date(2026, 3, 15)).await;
    let (step_id, status, _) = step_of(env, "F-A2", "formal_notice").await;
    assert_eq!(status, "awaiting_approval");
    let blank = env
        .cli(&[
            "approvals",
            "reject",
            &step_id.to_string(),
            "--by",
            "Paul",
            "--reason",
            " ",
        ])
        .await;
    assert!(
        !blank.ok && blank.stderr.contains("approval.reason"),
        "{}",
        blank.stderr
    );
    let reject = env
        .cli(&[
            "approvals",
            "reject",
            &step_id.to_string(),
            "--by",
            "Paul Martin",
            "--reason",
            "customer is a key account, call first",
            "--wait",
            "30",
        ])
        .await;
    assert!(reject.ok, "{}", reject.stderr);
    // A second decision on the same step is refused: it is no longer waiting.
    let again = env
        .cli(&[
            "approvals",
            "approve",
            &step_id.to_string(),
            "--by",
            "Paul Martin",
        ])
        .await;
    assert!(again.ok, "published: {}", again.stderr);
    let reasons = env.wait_for_dead_letters(1).await;
    assert!(reasons[0].contains("not waiting for approval"), "{reasons:?}");
    env.run_until(date(2026, 3, 25)).await;
    let (_, status, reason) = step_of(env, "F-A2", "formal_notice").await;
    assert_eq!(status, "skipped");
    assert!(reason.unwrap_or_default().contains("call first"));
    assert_eq!(formal_notices_sent(env).await, 0);
    let rejected = env.journal_details("F-A2", names::APPROVAL_REJECTED).await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["decided_by"], "Paul Martin");
    assert_eq!(rejected[0]["reason"], "customer is a key account, call first");
    assert_eq!(formal_notices_sent(env).await, 0);
    s.stop().await;
}

/// A payment while the formal notice waits cancels it like any pending step: nothing goes
/// out after the payment but the thank-you, and the approval is no longer listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_while_waiting_cancels_the_approval() {
    let s = start().await;
    let env = &s.env;
    register(env, "F-A3", false).await;
    env.run_until(date(2026, 3, 15)).await;
    let (step_id, status, _) = step_of(env, "F-A3", "formal_notice").await;
    assert_eq!(status, "awaiting_approval");
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("P-A3", "F-A3", "1500.00", date(2026, 3, 15)),
    )
    .await;
    env.wait_journal("F-A3", names::PAYMENT_RECORDED, 1).await;
    env.run_until(date(2026, 3, 25)).await;
    assert_eq!(step_of(env, "F-A3", "formal_notice").await.1, "cancelled");
    assert_eq!(formal_notices_sent(env).await, 0);
    let list = env.cli(&["approvals"]).await;
    assert!(!list.stdout.contains(&step_id.to_string()), "{}", list.stdout);
    s.stop().await;
}

/// Nobody decides within the policy's three days: the request expires and the step is
/// skipped (`approval expired`), journaled; nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecided_approval_expires_after_the_policys_days() {
    let s = start().await;
    let env = &s.env;
    register(env, "F-A4", false).await;
    env.run_until(date(2026, 3, 17)).await;
    assert_eq!(step_of(env, "F-A4", "formal_notice").await.1, "awaiting_approval");
    env.run_until(date(2026, 3, 18)).await;
    let (_, status, reason) = step_of(env, "F-A4", "formal_notice").await;
    assert_eq!(status, "skipped");
    assert_eq!(reason.as_deref(), Some("approval expired"));
    let expired = env.journal_details("F-A4", "approval.expired").await;
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["after_days"], 3);
    assert_eq!(formal_notices_sent(env).await, 0);
    s.stop().await;
}

/// A customer set to manual waits on its first reminder already.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_customer_waits_for_approval_on_its_first_reminder() {
    let s = start().await;
    let env = &s.env;
    register(env, "F-A5", true).await;
    env.run_until(date(2026, 3, 12)).await;
    let (step_id, status, _) = step_of(env, "F-A5", "reminder_1").await;
    assert_eq!(status, "awaiting_approval");
    assert!(env.mail.emails().await.is_empty(), "nothing sent");
    let requested = env.journal_details("F-A5", "approval.requested").await;
    assert_eq!(requested[0]["by"], "customer");
    env.approve_with_cli(step_id, "Marie Dupont").await;
    env.idle().await;
    assert_eq!(env.mail.wait_for_emails(1).await.len(), 1);
    assert_eq!(step_of(env, "F-A5", "reminder_1").await.1, "sent");
    s.stop().await;
}

/// The console's approvals page shows the waiting formal notice with its preview; its
/// Approve form (with the CSRF cookie and token) sends it; without the token it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consoles_approve_form_sends_the_waiting_step() {
    let s = start().await;
    let env = &s.env;
    register(env, "F-A6", false).await;
    env.run_until(date(2026, 3, 15)).await;
    let (step_id, status, _) = step_of(env, "F-A6", "formal_notice").await;
    assert_eq!(status, "awaiting_approval");
    let base = env.start_console(None).await.unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let FormPage {
        status,
        cookie,
        token,
        html,
    } = open_form_page(&client, &format!("{base}/approvals")).await;
    assert_eq!(status, 200);
    assert!(!cookie.is_empty() && !token.is_empty(), "{html}");
    for expected in [
        "F-A6",
        "formal_notice",
        "1500.00 EUR",
        "40.00 EUR",
        &step_id.to_string(),
    ] {
        assert!(html.contains(expected), "{expected:?} in the approvals page");
    }
    let form = |csrf: &str| format!("csrf={csrf}&step_id={step_id}&decision=approve&decided_by=Marie+Dupont");
    let forged = client
        .post(format!("{base}/approvals/decide"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &cookie)
        .body(form("forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(step_of(env, "F-A6", "formal_notice").await.1, "awaiting_approval");
    let answer = client
        .post(format!("{base}/approvals/decide"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &cookie)
        .body(form(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let location = answer.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("outcome=applied"), "{location}");
    let after = client
        .get(format!("{base}{location}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(after.contains("approval.granted for F-A6: applied"), "{after}");
    assert!(!after.contains(&step_id.to_string()), "no longer waiting");
    env.idle().await;
    assert_eq!(formal_notices_sent(env).await, 1);
    let granted = env.journal_details("F-A6", names::APPROVAL_GRANTED).await;
    assert_eq!(granted[0]["decided_by"], "Marie Dupont");
    assert_eq!(granted[0]["source"], "console");
    s.stop().await;
}

/// The rendered message of a step, as stored for its sender: subject, text, HTML.
async fn rendering_of(env: &TestEnv, step_id: uuid::Uuid) -> (String, String, Option<String>, String) {
    sqlx::query_as(
        "SELECT subject, body_text, body_html, message_id FROM rendered_messages WHERE step_id = $1",
    )
    .bind(step_id)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

/// The held formal notice is rendered before it waits: `approval.requested` (journal and
/// event) carries its exact subject, text and HTML, `relance approvals show` and the console
/// print them, and approved the same day, the message that goes out is byte for byte that
/// rendering (the same stored row, the same Message-ID), announced `approval.granted`
/// without `rerendered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approved_message_is_exactly_the_preview() {
    let s = start().await;
    let env = &s.env;
    register(env, "F-A7", false).await;
    // Noon UTC on Sunday 15 March: the notice fell due at 09:00 Paris; approved the same day,
    // its figures are those of the preview.
    env.run_until(date(2026, 3, 14)).await;
    env.set_time(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 3, 15, 12, 0, 0).unwrap())
        .await;
    let (step_id, status, _) = step_of(env, "F-A7", "formal_notice").await;
    assert_eq!(status, "awaiting_approval");
    let requested = env.journal_details("F-A7", "approval.requested").await;
    let message = requested[0]["preview"]["message"].clone();
    let subject = message["subject"].as_str().unwrap().to_string();
    let text = message["text"].as_str().unwrap().to_string();
    assert!(
        subject.contains("Mise en demeure") && subject.contains("F-A7"),
        "{subject}"
    );
    assert!(
        text.contains("1 500,00") || text.contains("1\u{202f}500,00") || squeeze(&text).contains("1500,00"),
        "{text}"
    );
    let events = env.events_until_count(names::APPROVAL_REQUESTED_EVENT, 1).await;
    let event = events
        .iter()
        .find(|e| e.event_type == names::APPROVAL_REQUESTED_EVENT)
        .unwrap();
    assert_eq!(event.step.as_deref(), Some("formal_notice"));
    assert_eq!(event.detail["subject"], "step");
    assert_eq!(event.detail["preview"]["message"]["subject"], subject.as_str());

    let show = env.cli(&["approvals", "show", &step_id.to_string()]).await;
    assert!(show.ok, "{}", show.stderr);
    assert!(show.stdout.contains(&subject), "{}", show.stdout);
    assert!(
        show.stdout.contains(text.lines().next().unwrap()),
        "{}",
        show.stdout
    );
    let base = env.start_console(None).await.unwrap();
    let page = reqwest::get(format!("{base}/approvals"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Exactly what approval sends"), "{page}");
    assert!(page.contains("preview-subject"), "{page}");

    env.approve_with_cli(step_id, "Marie Dupont").await;
    env.idle().await;
    let emails = env.mail.wait_for_emails(2).await;
    let notice = emails
        .iter()
        .find(|e| e.subject.contains("Mise en demeure"))
        .unwrap_or_else(|| panic!("the formal notice in {emails:?}"));
    assert_eq!(step_of(env, "F-A7", "formal_notice").await.1, "sent");
    // What the sender delivered is the rendering the preview showed, unchanged.
    let (sent_subject, sent_text, sent_html, message_id) = rendering_of(env, step_id).await;
    assert_eq!(sent_subject, subject);
    assert_eq!(
        sent_text, text,
        "the stored rendering is the preview's, byte for byte"
    );
    assert_eq!(sent_html.as_deref(), message["html"].as_str());
    assert_eq!(message["message_id"].as_str(), Some(message_id.as_str()));
    assert!(
        notice.message_id.contains(message_id.trim_matches(['<', '>'])),
        "{} / {message_id}",
        notice.message_id
    );
    assert_eq!(notice.subject, subject);
    assert_eq!(squeeze(&notice.text), squeeze(&text));
    let granted = env.journal_details("F-A7", names::APPROVAL_GRANTED).await;
    assert_eq!(granted[0]["decided_by"], "Marie Dupont");
    assert!(granted[0].get("rerendered").is_none(), "{}", granted[0]);
    assert_eq!(granted[0]["source"], "cli");
    let events = env.events_until_count(names::APPROVAL_GRANTED_EVENT, 1).await;
    let granted = events
        .iter()
        .find(|e| e.event_type == names::APPROVAL_GRANTED_EVENT)
        .unwrap();
    assert_eq!(granted.detail["decided_by"], "Marie Dupont");
    assert_eq!(granted.detail["approval_id"], event.detail["approval_id"]);
    s.stop().await;
}

/// A payment after the preview changes the figures the held notice states: approval does
/// not send the stale rendering; it is superseded (kept as proof), the notice rendered again
/// with the new balance, and `approval.granted` says why (`rerendered`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_after_the_figures_changed_renders_the_notice_again() {
    let s = start().await;
    let env = &s.env;
    register(env, "F-A8", false).await;
    env.run_until(date(2026, 3, 15)).await;
    let (step_id, status, _) = step_of(env, "F-A8", "formal_notice").await;
    assert_eq!(status, "awaiting_approval");
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("P-A8", "F-A8", "500.00", date(2026, 3, 15)),
    )
    .await;
    env.wait_journal("F-A8", names::PAYMENT_RECORDED, 1).await;
    env.approve_with_cli(step_id, "Marie Dupont").await;
    let granted = env.journal_details("F-A8", names::APPROVAL_GRANTED).await;
    let why = granted[0]["rerendered"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("balance"), "{}", granted[0]);
    let superseded: i64 = sqlx::query_scalar("SELECT count(*) FROM superseded_renderings WHERE step_id = $1")
        .bind(step_id)
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(superseded, 1, "the stale rendering is kept as proof");
    env.run_until(date(2026, 3, 17)).await;
    assert_eq!(step_of(env, "F-A8", "formal_notice").await.1, "sent");
    let (_, text, _, _) = rendering_of(env, step_id).await;
    assert!(squeeze(&text).contains("1000,00"), "the new balance: {text}");
    assert_eq!(formal_notices_sent(env).await, 1);
    s.stop().await;
}

/// The hand-off waits for approval too (`[approvals]` without `hand_off`: manual): listed
/// by `relance approvals` with the amount it will claim, approved it is handed off, rejected
/// it is not (the invoice stays open), both journaled and announced with who decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_waits_for_approval() {
    let s = start().await;
    let env = &s.env;
    register(env, "F-A9", false).await;
    register(env, "F-A10", false).await;
    register(env, "F-A13", false).await;
    env.run_until(date(2026, 3, 15)).await;
    // The formal notices are rejected: the sequences end on 15 March.
    for number in ["F-A9", "F-A10", "F-A13"] {
        let (step_id, _, _) = step_of(env, number, "formal_notice").await;
        let reject = env
            .cli(&[
                "approvals",
                "reject",
                &step_id.to_string(),
                "--by",
                "Paul",
                "--reason",
                "call first",
                "--wait",
                "30",
            ])
            .await;
        assert!(reject.ok, "{}", reject.stderr);
    }
    // Rejected on 16 March, Paris time (the clock is at 23:00 UTC): handed off from 25 March.
    env.run_until(date(2026, 3, 25)).await;
    for number in ["F-A9", "F-A10"] {
        let (status, _): (String, Option<String>) =
            sqlx::query_as("SELECT status, status_reason FROM invoices WHERE number = $1")
                .bind(number)
                .fetch_one(&env.db)
                .await
                .unwrap();
        assert_eq!(status, "open", "{number} waits for approval, not handed off");
        let requested = env.journal_details(number, "approval.requested").await;
        let hand_off = requested
            .iter()
            .find(|r| r["subject"] == "hand_off")
            .unwrap_or_else(|| panic!("{requested:?}"));
        assert_eq!(hand_off["preview"]["amount_due"]["principal"], "1500.00");
    }
    let id_of = |number: &'static str| async move {
        let id: uuid::Uuid = sqlx::query_scalar(
            "SELECT r.id FROM approval_requests r JOIN invoices i ON i.id = r.invoice_id
             WHERE i.number = $1 AND r.subject = 'hand_off'",
        )
        .bind(number)
        .fetch_one(&env.db)
        .await
        .unwrap();
        id
    };
    let (a9, a10) = (id_of("F-A9").await, id_of("F-A10").await);
    let list = env.cli(&["approvals"]).await;
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with(&a9.to_string()))
        .unwrap_or_else(|| panic!("{}", list.stdout));
    assert!(line.contains("F-A9") && line.contains("hand_off"), "{line}");
    let show = env.cli(&["approvals", "show", &a9.to_string()]).await;
    assert!(
        show.stdout.contains("hands the invoice off") && show.stdout.contains("1500.00"),
        "{}",
        show.stdout
    );

    env.approve_with_cli(a9, "Marie Dupont").await;
    env.wait_journal("F-A9", names::INVOICE_HANDED_OFF, 1).await;
    let reject = env
        .cli(&[
            "approvals",
            "reject",
            &a10.to_string(),
            "--by",
            "Paul Martin",
            "--reason",
            "settlement talks",
            "--wait",
            "30",
        ])
        .await;
    assert!(reject.ok, "{}", reject.stderr);
    env.run_until(date(2026, 3, 31)).await;
    assert_eq!(env.journal_count("F-A10", names::INVOICE_HANDED_OFF).await, 0);
    // Nobody decided F-A13's hand-off within the policy's three days: expired, not handed off.
    assert_eq!(env.journal_count("F-A13", names::INVOICE_HANDED_OFF).await, 0);
    let expired = env.journal_details("F-A13", "approval.expired").await;
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0]["subject"], "hand_off");
    assert_eq!(expired[0]["after_days"], 3);
    let rejected = env.journal_details("F-A10", names::APPROVAL_REJECTED).await;
    let last = rejected.last().unwrap();
    assert_eq!(last["subject"], "hand_off");
    assert_eq!(last["decided_by"], "Paul Martin");
    assert_eq!(last["reason"], "settlement talks");
    let granted = env.journal_details("F-A9", names::APPROVAL_GRANTED).await;
    assert_eq!(granted[0]["subject"], "hand_off");
    let events = env
        .events_until("the hand-off decisions", |events| {
            events
                .iter()
                .any(|e| e.event_type == names::APPROVAL_GRANTED_EVENT && e.detail["subject"] == "hand_off")
                && events.iter().any(|e| {
                    e.event_type == names::APPROVAL_REJECTED_EVENT && e.detail["subject"] == "hand_off"
                })
        })
        .await;
    assert!(events
        .iter()
        .any(|e| e.event_type == names::INVOICE_HANDED_OFF && e.invoice_number == "F-A9"));
    s.stop().await;
}

/// With grouping, the held formal notice's message lists the customer's other formal notice
/// due within the days: that step waits in the group (the pipeline still goes idle), and
/// approving the lead sends one message for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grouped_formal_notice_waits_with_its_lead_and_goes_with_it() {
    let scratch = std::env::temp_dir().join(format!("relance-approvals-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    let policy_file = scratch.join("policy.toml");
    std::fs::write(
        &policy_file,
        policy().replace("[approvals]", "[grouping]\nwithin_days = 3\n\n[approvals]"),
    )
    .unwrap();
    let env = TestEnv::try_start(1, &[("RELANCE_POLICY_FILE", policy_file.to_str().unwrap())])
        .await
        .unwrap();
    for (number, due) in [("F-A11", 9), ("F-A12", 10)] {
        let mut invoice = invoice_issued(number, "700.00", date(2026, 3, 2), date(2026, 3, due));
        invoice["invoice"]["customer"]["id"] = json!("C-GROUP");
        invoice["invoice"]["customer"]["email"] = json!("compta@group.test");
        env.publish(names::INVOICE_ISSUED, &invoice).await;
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    env.run_until(date(2026, 3, 14)).await;
    env.set_time(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 3, 15, 12, 0, 0).unwrap())
        .await;
    let (lead, status, _) = step_of(&env, "F-A11", "formal_notice").await;
    assert_eq!(status, "awaiting_approval");
    assert_eq!(
        step_of(&env, "F-A12", "formal_notice").await.1,
        "queued",
        "grouped into the lead"
    );
    env.approve_with_cli(lead, "Marie Dupont").await;
    env.idle().await;
    assert_eq!(step_of(&env, "F-A11", "formal_notice").await.1, "sent");
    assert_eq!(step_of(&env, "F-A12", "formal_notice").await.1, "sent");
    assert_eq!(formal_notices_sent(&env).await, 1, "one message for both");
    env.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);
}
