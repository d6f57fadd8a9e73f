//! The statement of account end to end: a formal notice whose policy step says
//! `attach_statement = true` reaches the customer with the statement as a second PDF,
//! listing every open invoice of the customer, the payments and credit notes, the balance
//! and the interest to date; and `relance statement` writes the same document from a shell.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use relance_contracts::names;
use relance_tests::{date, invoice_issued, manifest_lines, payment_received, squeeze, TestEnv};
use serde_json::{json, Value};
use std::path::PathBuf;

/// One step in every segment: a formal notice on `channel` eight days after the due date,
/// with the statement of account attached. Due Monday 9 March 2026: Tuesday 17 March.
fn policy(channel: &str) -> String {
    let step = r#"
[[segments.SEGMENT.steps]]
name = "formal_notice"
offset_days = 8
channel = "CHANNEL"
template = "formal_notice"
tone = "formal"
attach_statement = true
"#
    .replace("CHANNEL", channel);
    let mut policy = "send_time = \"09:00\"\n".to_string();
    for segment in ["low", "medium", "high"] {
        policy.push_str(&step.replace("SEGMENT", segment));
    }
    policy
}

struct Setup {
    env: TestEnv,
    scratch: PathBuf,
    letters: PathBuf,
}

async fn start(channel: &str) -> Setup {
    let scratch = std::env::temp_dir().join(format!("relance-statement-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    let policy_file = scratch.join("policy.toml");
    std::fs::write(&policy_file, policy(channel)).unwrap();
    let letters = scratch.join("letters");
    let env = TestEnv::try_start(
        1,
        &[
            ("RELANCE_POLICY_FILE", policy_file.to_str().unwrap()),
            ("RELANCE_LETTER_DIR", letters.to_str().unwrap()),
        ],
    )
    .await
    .expect("starting the test environment");
    Setup {
        env,
        scratch,
        letters,
    }
}

/// An invoice of customer C-ACME, with its postal address.
fn invoice(number: &str, amount: &str, issued_on: chrono::NaiveDate, due_on: chrono::NaiveDate) -> Value {
    let mut invoice = invoice_issued(number, amount, issued_on, due_on);
    let customer = &mut invoice["invoice"]["customer"];
    customer["id"] = json!("C-ACME");
    customer["email"] = json!("compta@acme.test");
    customer["postal_address"] = json!("12 rue des Forges\n69002 Lyon");
    invoice
}

fn credit_note(id: &str, invoice: &str, amount: &str) -> Value {
    json!({
        "version": 1,
        "event_id": format!("evt-credit-{id}"),
        "occurred_at": "2026-03-05T10:00:00Z",
        "credit_note": { "id": id, "invoice_number": invoice, "amount": amount, "currency": "EUR", "issued_on": "2026-03-05" }
    })
}

/// ACME owes F-S1 (1 500.00 due 9 March, 500.00 paid on 13 March) and F-S2 (800.00 due
/// 31 March, a 200.00 credit note AV-S2).
async fn acme_ledger(env: &TestEnv) {
    env.publish(
        names::INVOICE_ISSUED,
        &invoice("F-S1", "1500.00", date(2026, 2, 7), date(2026, 3, 9)),
    )
    .await;
    env.publish(
        names::INVOICE_ISSUED,
        &invoice("F-S2", "800.00", date(2026, 3, 1), date(2026, 3, 31)),
    )
    .await;
    env.wait_journal("F-S1", names::INVOICE_REGISTERED, 1).await;
    env.wait_journal("F-S2", names::INVOICE_REGISTERED, 1).await;
    env.publish(names::CREDIT_NOTE_ISSUED, &credit_note("AV-S2", "F-S2", "200.00"))
        .await;
    env.wait_journal("F-S2", names::CREDIT_NOTE_RECORDED, 1).await;
    env.run_until(date(2026, 3, 13)).await;
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("P-S1", "F-S1", "500.00", date(2026, 3, 13)),
    )
    .await;
    env.wait_journal("F-S1", names::PAYMENT_RECORDED, 1).await;
}

/// What the statement of ACME on 17 March 2026 must say, whatever carries it.
fn assert_lists_acmes_debts(text: &str) {
    let squeezed = squeeze(text);
    for expected in [
        "Relevé de compte au 17/03/2026",
        "ACME Industrie SA",
        "69002 Lyon",
        "C-ACME",
        "F-S1",
        "F-S2",
        "Avoir AV-S2",
        "Règlement",
        "Factures ouvertes",
        "D441-5",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from {text}");
    }
    // F-S1: 1 000.00 left, 8 days late, 3.16 of interest (the formal notice's own figure);
    // F-S2: 600.00 left, not due. In all 1 600.00 + 3.16 + one indemnity of 40.00.
    for expected in ["1000,00€", "600,00€", "3,16€", "40,00€", "1643,16€"] {
        assert!(squeezed.contains(expected), "{expected:?} missing from {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_formal_notice_carries_the_statement_of_account_when_its_step_says_so() {
    let s = start("email").await;
    acme_ledger(&s.env).await;
    s.env.run_until(date(2026, 3, 17)).await;
    let emails = s.env.mail.wait_for_emails(1).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    let email = &emails[0];
    assert!(email.subject.contains("F-S1"), "{}", email.subject);
    let name = "releve-de-compte-C-ACME-2026-03-17.pdf";
    assert!(
        email
            .attachments
            .iter()
            .any(|(file, kind)| file == name && kind.starts_with("application/pdf")),
        "{:?}",
        email.attachments
    );
    let pdf = s.env.mail.attachment(email, name).await;
    assert!(pdf.starts_with(b"%PDF"));
    let text = pdf_extract::extract_text_from_mem(&pdf).unwrap();
    assert_lists_acmes_debts(&text);

    // The journal names the statement sent and its hash.
    let rendered = s.env.journal_details("F-S1", "reminder.rendered").await;
    let statement = &rendered[0]["statement"];
    assert_eq!(statement["file"], json!(name));
    assert_eq!(
        statement["sha256"],
        json!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&pdf)))
    );

    s.env.stop().await;
    let _ = std::fs::remove_dir_all(&s.scratch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relance_statement_writes_the_customers_statement_as_pdf() {
    let s = start("email").await;
    acme_ledger(&s.env).await;
    let out = s.scratch.join("acme.pdf");
    let run = s
        .env
        .cli(&[
            "statement",
            "C-ACME",
            "--out",
            out.to_str().unwrap(),
            "--as-of",
            "2026-03-17",
        ])
        .await;
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("2 open invoice(s)"), "{}", run.stdout);
    let pdf = std::fs::read(&out).unwrap();
    assert!(pdf.starts_with(b"%PDF"));
    assert_lists_acmes_debts(&pdf_extract::extract_text_from_mem(&pdf).unwrap());

    let unknown = s
        .env
        .cli(&["statement", "C-NOBODY", "--out", out.to_str().unwrap()])
        .await;
    assert!(!unknown.ok);
    assert!(
        unknown.stderr.contains("no customer \"C-NOBODY\""),
        "{}",
        unknown.stderr
    );

    s.env.stop().await;
    let _ = std::fs::remove_dir_all(&s.scratch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_formal_notice_encloses_the_statement_after_the_letter() {
    let s = start("registered_letter").await;
    acme_ledger(&s.env).await;
    s.env.run_until(date(2026, 3, 17)).await;
    s.env.wait_journal("F-S1", names::REMINDER_SENT, 1).await;
    let lines = manifest_lines(&s.letters);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (folder, line) = &lines[0];
    let name = "releve-de-compte-C-ACME-2026-03-17.pdf";
    let enclosures = line["enclosures"].as_array().unwrap();
    assert_eq!(enclosures.len(), 1, "{line}");
    assert_eq!(
        enclosures[0]["file"].as_str().map(|f| f.ends_with(name)),
        Some(true),
        "{line}"
    );
    // The letter stays the letter: the statement is a document of its own.
    let letter = std::fs::read(folder.join(line["file"].as_str().unwrap())).unwrap();
    let letter_text = pdf_extract::extract_text_from_mem(&letter).unwrap();
    assert!(letter_text.contains("Mise en demeure"), "{letter_text}");
    assert!(!letter_text.contains("Relevé de compte"), "{letter_text}");
    let statement = std::fs::read(folder.join(enclosures[0]["file"].as_str().unwrap())).unwrap();
    assert_lists_acmes_debts(&pdf_extract::extract_text_from_mem(&statement).unwrap());

    s.env.stop().await;
    let _ = std::fs::remove_dir_all(&s.scratch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_page_offers_the_statement_as_a_pdf_download() {
    let s = start("email").await;
    acme_ledger(&s.env).await;
    let ten_in_paris = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 3, 17, 9, 0, 0).unwrap();
    s.env.set_time(ten_in_paris).await;
    let console = s.env.start_console(None).await.unwrap();
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{console}/customers/C-ACME"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"<a href="/customers/C-ACME/statement.pdf">Statement (PDF)</a>"#),
        "{page}"
    );
    let response = http
        .get(format!("{console}/customers/C-ACME/statement.pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.contains("releve-de-compte-C-ACME-2026-03-17.pdf"),
        "{disposition}"
    );
    let pdf = response.bytes().await.unwrap();
    assert_lists_acmes_debts(&pdf_extract::extract_text_from_mem(&pdf).unwrap());

    let unknown = http
        .get(format!("{console}/customers/C-NOBODY/statement.pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    s.env.stop().await;
    let _ = std::fs::remove_dir_all(&s.scratch);
}
