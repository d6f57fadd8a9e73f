//! SMS and letters end to end: an invoice chased by email, then SMS through an HTTP gateway
//! (a local server plays it, error answers included), then a registered formal notice whose
//! PDF lands in the postal outbox folder. A policy file of the test's own names the steps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use relance_contracts::names;
use relance_tests::sms_gateway::Gateway;
use relance_tests::{date, invoice_issued, manifest_lines, payment_received, squeeze, TestEnv};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// A tiny PDF standing in for the invoice document.
const INVOICE_PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

/// Email two days after the due date, SMS four days after, a registered formal notice
/// eight days after: due Monday 9 March 2026 gives Wednesday 11, Friday 13 and Tuesday 17.
fn policy() -> String {
    let steps = r#"
[[segments.SEGMENT.steps]]
name = "reminder_1"
offset_days = 2
channel = "email"
template = "reminder"
tone = "courteous"

[[segments.SEGMENT.steps]]
name = "sms_1"
offset_days = 4
channel = "sms"
template = "sms_reminder"
tone = "firm"

[[segments.SEGMENT.steps]]
name = "formal_notice"
offset_days = 8
channel = "registered_letter"
template = "formal_notice"
tone = "formal"
"#;
    let mut policy = "send_time = \"09:00\"\n".to_string();
    for segment in ["low", "medium", "high"] {
        policy.push_str(&steps.replace("SEGMENT", segment));
    }
    policy
}

struct Setup {
    env: TestEnv,
    gateway: Gateway,
    letters: PathBuf,
    scratch: PathBuf,
}

async fn start() -> Setup {
    start_with(&[]).await
}

async fn start_with(extra: &[(&str, &str)]) -> Setup {
    let scratch = std::env::temp_dir().join(format!("relance-channels-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    let policy_file = scratch.join("policy.toml");
    std::fs::write(&policy_file, policy()).unwrap();
    let letters = scratch.join("letters");
    let (gateway, url) = Gateway::start().await;
    let sms_dir = scratch.join("sms");
    let mut vars = vec![
        ("RELANCE_POLICY_FILE", policy_file.to_str().unwrap()),
        ("RELANCE_SMS_GATEWAY_URL", url.as_str()),
        ("RELANCE_SMS_GATEWAY_TOKEN", "gw-token"),
        ("RELANCE_SMS_SENDER", "Exemple"),
        ("RELANCE_LETTER_DIR", letters.to_str().unwrap()),
        ("RELANCE_SMS_DIR", sms_dir.to_str().unwrap()),
    ];
    vars.extend_from_slice(extra);
    let env = TestEnv::try_start(1, &vars)
        .await
        .expect("starting the test environment");
    Setup {
        env,
        gateway,
        letters,
        scratch,
    }
}

impl Setup {
    async fn stop(self) {
        self.env.stop().await;
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// An invoice due Monday 9 March 2026, with a mobile number in French national format and
/// a postal address.
fn invoice(number: &str, phone: Option<&str>) -> Value {
    let mut invoice = invoice_issued(number, "1500.00", date(2026, 3, 2), date(2026, 3, 9));
    let customer = &mut invoice["invoice"]["customer"];
    if let Some(phone) = phone {
        customer["phone"] = json!(phone);
    }
    customer["postal_address"] = json!("12 rue des Forges\n69002 Lyon");
    invoice["invoice"]["payment_link"] = json!(format!("https://pay.exemple.test/{number}"));
    invoice
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_gets_an_email_an_sms_and_a_registered_formal_notice() {
    let s = start().await;
    let mut issued = invoice("F-500", Some("06 12 34 56 78"));
    issued["invoice"]["pdf_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(INVOICE_PDF));
    s.env.publish(names::INVOICE_ISSUED, &issued).await;
    s.env.wait_journal("F-500", names::INVOICE_REGISTERED, 1).await;
    let phone: Option<String> = sqlx::query_scalar("SELECT phone FROM customers WHERE id = 'C-F-500'")
        .fetch_one(&s.env.db)
        .await
        .unwrap();
    assert_eq!(phone.as_deref(), Some("+33612345678"), "stored in E.164");

    s.env.run_until(date(2026, 3, 11)).await;
    let emails = s.env.mail.wait_for_emails(1).await;
    assert!(emails[0].subject.contains("F-500"), "{}", emails[0].subject);
    assert_eq!(s.gateway.count(), 0, "no SMS before its day");

    s.env.run_until(date(2026, 3, 13)).await;
    let requests = s.gateway.requests_to("+33612345678");
    assert_eq!(requests.len(), 1, "one SMS, to the number in E.164");
    let (headers, body) = &requests[0];
    assert_eq!(headers["authorization"], "Bearer gw-token");
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("F-500"), "{text}");
    assert!(text.contains("https://pay.exemple.test/F-500"), "{text}");
    assert!(
        text.contains("1 500,00 €"),
        "amount with plain spaces, GSM-7: {text}"
    );
    assert_eq!(body["from"], json!("Exemple"));
    assert_eq!(
        headers["idempotency-key"].to_str().unwrap(),
        body["reference"].as_str().unwrap()
    );
    assert!(manifest_lines(&s.letters).is_empty(), "no letter before its day");

    s.env.run_until(date(2026, 3, 17)).await;
    let lines = manifest_lines(&s.letters);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (folder, line) = &lines[0];
    assert_eq!(folder.file_name().unwrap(), "2026-03-17");
    assert_eq!(line["invoice"], json!("F-500"));
    assert_eq!(line["step"], json!("formal_notice"));
    assert_eq!(line["registered"], json!(true));
    assert_eq!(line["recipient"], json!("ACME Industrie SA"));
    assert_eq!(line["address"], json!(["12 rue des Forges", "69002 Lyon"]));
    let pdf = std::fs::read(folder.join(line["file"].as_str().unwrap())).unwrap();
    let sha256 = hex::encode(Sha256::digest(&pdf));
    assert_eq!(
        line["sha256"],
        json!(sha256),
        "the manifest's SHA-256 is the file's"
    );
    let enclosure = &line["enclosures"][0];
    assert_eq!(
        std::fs::read(folder.join(enclosure["file"].as_str().unwrap())).unwrap(),
        INVOICE_PDF,
        "the invoice goes in the same envelope"
    );

    let text = pdf_extract::extract_text_from_mem(&pdf).unwrap();
    let squeezed = squeeze(&text);
    assert!(text.contains("Mise en demeure"), "{text}");
    assert!(text.contains("F-500"), "{text}");
    assert!(
        text.contains("ACME Industrie SA") && text.contains("69002 Lyon"),
        "{text}"
    );
    assert!(
        text.contains("Lettre recommandée avec accusé de réception"),
        "{text}"
    );
    assert!(text.contains("Paris, le 17/03/2026"), "{text}");
    assert!(squeezed.contains("1500,00€"), "amount: {text}");
    assert!(
        text.contains("8 jours à compter de la réception"),
        "deadline: {text}"
    );
    // 8 days late on 1 500.00 at 12.15 % (ECB 2.15 + 10): 1 500 × 12.15 × 8 / 36 500 = 3.99.
    assert!(squeezed.contains("3,99€"), "late interest: {text}");
    assert!(squeezed.contains("40,00€"), "recovery indemnity: {text}");
    assert!(squeezed.contains("1543,99€"), "total claimed: {text}");
    assert!(text.contains("injonction de payer"), "what follows: {text}");

    let (stored_sha, reference, proof): (String, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT r.document_sha256, s.delivery_reference, s.delivery_proof
         FROM rendered_messages r JOIN reminder_steps s ON s.id = r.step_id WHERE s.name = 'formal_notice'",
    )
    .fetch_one(&s.env.db)
    .await
    .unwrap();
    assert_eq!(stored_sha, sha256, "the PDF's fingerprint is kept as proof");
    assert!(reference.is_some_and(|r| r.contains("manifest.jsonl")));
    assert!(proof.is_some());
    let sms_reference: Option<String> =
        sqlx::query_scalar("SELECT delivery_reference FROM reminder_steps WHERE name = 'sms_1'")
            .fetch_one(&s.env.db)
            .await
            .unwrap();
    assert_eq!(sms_reference.as_deref(), Some("gw-1"), "the gateway's message id");

    assert_eq!(
        s.env.steps("F-500").await,
        steps(&[
            ("reminder_1", "sent"),
            ("sms_1", "sent"),
            ("formal_notice", "sent")
        ])
    );
    let sent: Vec<(Option<String>, Option<String>)> = s
        .env
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == names::REMINDER_SENT)
        .map(|e| (e.step, e.channel))
        .collect();
    for expected in [
        ("reminder_1", "email"),
        ("sms_1", "sms"),
        ("formal_notice", "registered_letter"),
    ] {
        assert!(
            sent.contains(&(Some(expected.0.to_string()), Some(expected.1.to_string()))),
            "missing {expected:?} in {sent:?}"
        );
    }
    assert_eq!(s.gateway.count(), 1, "nothing sent twice");
    assert_eq!(s.env.mail.emails().await.len(), 1);
    // The journal's proof of the letter covers the PDF posted, and the whole journal verifies.
    let letter_document: String = sqlx::query_scalar(
        "SELECT j.document_sha256 FROM journal j JOIN reminder_steps s ON s.id = j.step_id
         WHERE s.name = 'formal_notice' AND j.action = 'reminder.sent'",
    )
    .fetch_one(&s.env.db)
    .await
    .unwrap();
    let step_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM reminder_steps WHERE name = 'formal_notice'")
            .fetch_one(&s.env.db)
            .await
            .unwrap();
    let mut conn = s.env.db.acquire().await.unwrap();
    let document = relance_storage::journal::document::for_step(&mut conn, step_id)
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    assert_eq!(document.sha256(), letter_document);
    assert_eq!(document.rendered_pdf_sha256.as_deref(), Some(sha256.as_str()));
    let report = relance_storage::journal::verify::verify_all(&s.env.db)
        .await
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_error_is_retried_then_reported_failed_without_blocking_other_messages() {
    let s = start().await;
    s.gateway.failing.lock().unwrap().extend([
        ("+33611111111".to_string(), 500),
        ("+33633333333".to_string(), 400),
    ]);
    for (number, phone) in [
        ("F-610", "06 11 11 11 11"),
        ("F-620", "06 22 22 22 22"),
        ("F-630", "06 33 33 33 33"),
    ] {
        s.env
            .publish(names::INVOICE_ISSUED, &invoice(number, Some(phone)))
            .await;
        s.env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    s.env.run_until(date(2026, 3, 13)).await;

    // 500: the first attempt and three retries (RELANCE_MAX_RETRIES=3), the same message.
    let failing = s.gateway.requests_to("+33611111111");
    assert_eq!(failing.len(), 4, "{failing:?}");
    assert!(failing.iter().all(|(_, body)| body == &failing[0].1));
    // 400: refused for good at once.
    assert_eq!(s.gateway.requests_to("+33633333333").len(), 1);
    // The other invoice went through meanwhile.
    assert_eq!(s.gateway.requests_to("+33622222222").len(), 1);

    let status = |invoice: &'static str| {
        let db = s.env.db.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT s.status, s.status_reason FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
                 WHERE i.number = $1 AND s.name = 'sms_1'",
            )
            .bind(invoice)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    let (state, reason) = status("F-610").await;
    assert_eq!(state, "failed");
    assert!(
        reason.as_deref().unwrap_or_default().contains("500"),
        "{reason:?}"
    );
    let (state, reason) = status("F-630").await;
    assert_eq!(state, "failed");
    assert!(
        reason.as_deref().unwrap_or_default().contains("400"),
        "{reason:?}"
    );
    assert_eq!(status("F-620").await.0, "sent");
    assert_eq!(
        s.env.journal_count("F-610", "reminder.delivery_deferred").await,
        3
    );

    let failed: Vec<(String, Value)> = s
        .env
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == names::REMINDER_FAILED)
        .map(|e| (e.invoice_number, e.detail))
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    let f610 = failed.iter().find(|(n, _)| n == "F-610").unwrap();
    assert_eq!(f610.1["attempts"], json!(4));
    assert!(f610.1["reason"].as_str().unwrap().contains("simulated 500"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_before_the_sms_step_means_no_sms_and_no_letter() {
    let s = start().await;
    s.env
        .publish(names::INVOICE_ISSUED, &invoice("F-700", Some("06 12 34 56 78")))
        .await;
    s.env.run_until(date(2026, 3, 11)).await;
    s.env.mail.wait_for_emails(1).await;
    pay_in_full(&s.env, "PAY-700", "F-700", date(2026, 3, 12)).await;
    s.env.run_until(date(2026, 3, 20)).await;
    assert_eq!(s.gateway.count(), 0, "no SMS after payment");
    assert!(manifest_lines(&s.letters).is_empty(), "no letter after payment");
    assert_eq!(
        s.env.steps("F-700").await,
        steps(&[
            ("reminder_1", "sent"),
            ("sms_1", "cancelled"),
            ("formal_notice", "cancelled"),
            ("thanks", "sent")
        ])
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_phone_is_dropped_at_intake_and_like_a_missing_one_skips_the_sms() {
    let s = start().await;
    s.env
        .publish(names::INVOICE_ISSUED, &invoice("F-800", Some("06 12")))
        .await;
    // The journal entry commits before the relay publishes its event: wait for the event.
    let events = s.env.events_until_count(names::INVOICE_REGISTERED, 1).await;
    let registered: Vec<&Value> = events
        .iter()
        .filter(|e| e.event_type == names::INVOICE_REGISTERED)
        .map(|e| &e.detail)
        .collect();
    assert_eq!(
        registered[0]["warnings"][0]["field"],
        json!("invoice.customer.phone")
    );
    assert!(events.iter().all(|e| e.event_type != names::INVOICE_REJECTED));

    let mut no_address = invoice("F-810", None);
    no_address["invoice"]["customer"]["postal_address"] = json!(null);
    s.env.publish(names::INVOICE_ISSUED, &no_address).await;
    s.env.wait_journal("F-810", names::INVOICE_REGISTERED, 1).await;
    s.env.run_until(date(2026, 3, 17)).await;
    assert_eq!(s.gateway.count(), 0);
    let skipped: Vec<(String, Option<String>, String)> = s
        .env
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == names::REMINDER_SKIPPED)
        .map(|e| {
            (
                e.invoice_number,
                e.step,
                e.detail["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for number in ["F-800", "F-810"] {
        assert!(
            skipped.contains(&(
                number.into(),
                Some("sms_1".into()),
                "the customer has no phone number".into()
            )),
            "{number}: {skipped:?}"
        );
    }
    assert!(
        skipped.contains(&(
            "F-810".into(),
            Some("formal_notice".into()),
            "the customer has no postal address".into()
        )),
        "{skipped:?}"
    );
    assert!(s.env.dead_letters().await.is_empty());
    s.stop().await;
}

/// (step, status) pairs, as [`TestEnv::steps`] lists them.
fn steps(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Publishes the payment of the whole invoice (1 500.00) and waits until it is settled.
async fn pay_in_full(env: &TestEnv, payment: &str, invoice: &str, on: chrono::NaiveDate) {
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received(payment, invoice, "1500.00", on),
    )
    .await;
    env.wait_journal(invoice, names::INVOICE_SETTLED, 1).await;
}

/// The journal ids of an invoice's entries with this action.
async fn journal_ids(env: &TestEnv, invoice: &str, action: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM journal WHERE invoice_number = $1 AND action = $2 ORDER BY id")
        .bind(invoice)
        .bind(action)
        .fetch_all(&env.db)
        .await
        .unwrap()
}

/// Friday 13 March 2026, 09:00 in Paris: the SMS step of an invoice due Monday 9 March.
fn sms_day() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-03-13T08:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_while_an_sms_waits_for_its_retry_cancels_it() {
    // The gateway answers 503 at first; the retry waits RELANCE_RETRY_BASE_MS (±25 %), long
    // enough for the payment to be recorded in between.
    let s = start_with(&[("RELANCE_RETRY_BASE_MS", "10000")]).await;
    s.gateway
        .failing
        .lock()
        .unwrap()
        .insert("+33612345678".to_string(), 503);
    s.env
        .publish(names::INVOICE_ISSUED, &invoice("F-900", Some("06 12 34 56 78")))
        .await;
    s.env.wait_journal("F-900", names::INVOICE_REGISTERED, 1).await;
    s.env.run_until(date(2026, 3, 12)).await;
    s.env.move_clock(sms_day()).await;
    s.env.wait_journal("F-900", "reminder.delivery_deferred", 1).await;
    assert_eq!(s.gateway.count(), 1, "the first attempt, refused");
    // Visibly waiting, with the time of its next attempt...
    let (status, next_attempt_at): (String, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
        "SELECT s.status, s.next_attempt_at FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
         WHERE i.number = 'F-900' AND s.name = 'sms_1'",
    )
    .fetch_one(&s.env.db)
    .await
    .unwrap();
    assert_eq!(status, "deferred");
    assert!(next_attempt_at.is_some(), "the next attempt's time is kept");
    // ...and the lease sweep leaves it to its retry, however short the lease: its backoff is
    // not cut short.
    let sweep_settings = relance_config::Settings::from_vars(vec![
        ("DATABASE_URL".to_string(), s.env.database_url.clone()),
        ("RELANCE_LEASE_MS".to_string(), "1".to_string()),
    ])
    .unwrap();
    let sweep = relance_config::Config::with_clock(sweep_settings, s.env.shared_clock.clone()).unwrap();
    assert_eq!(
        relance_scheduler::recover_expired_leases(&s.env.db, &sweep)
            .await
            .unwrap(),
        0,
        "a deferred step is not handed out again before its retry is due"
    );
    s.gateway.failing.lock().unwrap().clear();

    // The SMS is on its way (deferred, waiting for its retry) when the payment arrives.
    pay_in_full(&s.env, "PAY-900", "F-900", date(2026, 3, 13)).await;
    // The retry comes, finds the step cancelled, and sends nothing.
    s.env.wait_journal("F-900", "job.ignored", 1).await;
    s.env.wait_journal("F-900", names::THANKS_SENT, 1).await;
    assert_eq!(s.gateway.count(), 1, "no SMS after the payment");
    assert_eq!(
        journal_ids(&s.env, "F-900", names::REMINDER_SENT).await.len(),
        1,
        "only the email"
    );
    assert_eq!(
        s.env.steps("F-900").await,
        steps(&[
            ("reminder_1", "sent"),
            ("sms_1", "cancelled"),
            ("formal_notice", "cancelled"),
            ("thanks", "sent")
        ])
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_arriving_while_the_gateway_takes_the_sms_is_recorded_beside_it() {
    let s = start().await;
    s.env
        .publish(names::INVOICE_ISSUED, &invoice("F-910", Some("06 12 34 56 78")))
        .await;
    s.env.wait_journal("F-910", names::INVOICE_REGISTERED, 1).await;
    s.env.run_until(date(2026, 3, 12)).await;
    // The gateway has the SMS and has not answered yet.
    s.gateway.hold();
    s.env.move_clock(sms_day()).await;
    relance_tests::wait_for(
        "the SMS to reach the gateway",
        relance_tests::DEADLINE,
        || async { Ok(s.gateway.count() == 1) },
    )
    .await
    .unwrap();
    s.env
        .publish(
            names::PAYMENT_RECEIVED,
            &payment_received("PAY-910", "F-910", "1500.00", date(2026, 3, 13)),
        )
        .await;
    // No lock is held across the gateway's request: the payment is recorded at once, and
    // marks the SMS step that is going out instead of cancelling it...
    s.env.wait_journal("F-910", names::INVOICE_SETTLED, 1).await;
    assert_eq!(s.env.journal_count("F-910", names::PAYMENT_RECORDED).await, 1);
    // ...and once the gateway answers, the SMS (which did go out) is journaled sent, with the
    // payment's time beside it: never as cancelled.
    s.gateway.release();
    s.env.wait_journal("F-910", names::THANKS_SENT, 1).await;
    s.env.wait_journal("F-910", names::REMINDER_SENT, 2).await;
    let sms_sent: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT detail FROM journal WHERE invoice_number = 'F-910' AND action = 'reminder.sent'
           AND detail ? 'gateway_message_id'",
    )
    .fetch_all(&s.env.db)
    .await
    .unwrap();
    assert_eq!(sms_sent.len(), 1, "{sms_sent:?}");
    assert_eq!(
        sms_sent[0]["stop_requested"]["reason"], "invoice settled",
        "{sms_sent:?}"
    );
    assert!(sms_sent[0]["stop_requested"]["at"].is_string(), "{sms_sent:?}");
    assert_eq!(s.gateway.count(), 1, "the SMS once");
    assert_eq!(
        s.env.steps("F-910").await,
        steps(&[
            ("reminder_1", "sent"),
            ("sms_1", "sent"),
            ("formal_notice", "cancelled"),
            ("thanks", "sent")
        ])
    );
    s.stop().await;
}

/// `RELANCE_PROVIDER_MAX_REQUESTS=2`, four SMS due at once and a gateway slow to answer: the
/// sender never has more than two requests at the gateway, the others wait their turn; a
/// payment recorded for an invoice whose SMS is still waiting stops it (the wait comes
/// before the last check), and every other SMS goes out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_keeps_to_its_requests_at_the_gateway_and_a_payment_stops_one_waiting_its_turn() {
    let s = start_with(&[("RELANCE_PROVIDER_MAX_REQUESTS", "2")]).await;
    let invoices = [
        ("F-941", "+33641111111"),
        ("F-942", "+33642222222"),
        ("F-943", "+33643333333"),
        ("F-944", "+33644444444"),
    ];
    for (number, phone) in invoices {
        s.env
            .publish(names::INVOICE_ISSUED, &invoice(number, Some(phone)))
            .await;
        s.env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    s.env.run_until(date(2026, 3, 12)).await;
    s.gateway.hold();
    s.env.move_clock(sms_day()).await;
    // All four SMS taken by the sender (`sending`): two at the gateway, two waiting their
    // turn, before their last check.
    relance_tests::wait_for(
        "the four SMS to be going out, two of them at the gateway",
        relance_tests::DEADLINE,
        || async {
            let mut sending = 0;
            for (number, _) in invoices {
                if s.env
                    .steps(number)
                    .await
                    .contains(&("sms_1".to_string(), "sending".to_string()))
                {
                    sending += 1;
                }
            }
            Ok(sending == 4 && s.gateway.count() >= 2)
        },
    )
    .await
    .unwrap();
    // An invoice whose SMS is not at the gateway: it waits its turn.
    let (waiting, waiting_phone) = invoices
        .into_iter()
        .find(|(_, phone)| s.gateway.requests_to(phone).is_empty())
        .expect("two of the four SMS are not at the gateway");
    pay_in_full(&s.env, "PAY-940", waiting, date(2026, 3, 13)).await;
    s.gateway.release();

    for (number, _) in invoices.iter().filter(|(number, _)| *number != waiting) {
        s.env.wait_journal(number, names::REMINDER_SENT, 2).await;
    }
    s.env.wait_journal(waiting, names::THANKS_SENT, 1).await;
    // Its sender, given a turn, finds the invoice paid at the last check and cancels it.
    relance_tests::wait_for(
        "the paid invoice's SMS to be cancelled",
        relance_tests::DEADLINE,
        || async {
            Ok(s.env
                .steps(waiting)
                .await
                .contains(&("sms_1".to_string(), "cancelled".to_string())))
        },
    )
    .await
    .unwrap();
    assert!(
        s.gateway.requests_to(waiting_phone).is_empty(),
        "no SMS for {waiting}, paid while its SMS waited"
    );
    assert_eq!(s.gateway.count(), 3, "the three others, once each");
    assert_eq!(
        s.gateway.most_in_flight(),
        2,
        "never more than RELANCE_PROVIDER_MAX_REQUESTS at the gateway"
    );
    s.stop().await;
}

/// Copies the built-in templates to `dir`, for a test to change one of them.
fn copy_templates(dir: &std::path::Path) {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/renderer/templates");
    for language in ["fr", "en"] {
        std::fs::create_dir_all(dir.join(language)).unwrap();
        for file in std::fs::read_dir(source.join(language)).unwrap().flatten() {
            std::fs::copy(file.path(), dir.join(language).join(file.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_that_cannot_fit_in_two_segments_is_reported_failed_and_nothing_is_sent() {
    // A French SMS template whose text and short version are both over two segments (460
    // characters once rendered; two GSM-7 segments hold 306).
    let templates = std::env::temp_dir().join(format!("relance-templates-{}", uuid::Uuid::new_v4().simple()));
    copy_templates(&templates);
    let long = "Facture {{ invoice_number }} impayée. ".repeat(20);
    std::fs::write(
        templates.join("fr/sms_reminder.sms"),
        format!("{{% block body %}}{long}{{% endblock %}}\n{{% block short %}}{long}{{% endblock %}}\n"),
    )
    .unwrap();
    let s = start_with(&[("RELANCE_TEMPLATE_DIR", templates.to_str().unwrap())]).await;
    s.env
        .publish(names::INVOICE_ISSUED, &invoice("F-950", Some("06 12 34 56 78")))
        .await;
    s.env.wait_journal("F-950", names::INVOICE_REGISTERED, 1).await;
    s.env.run_until(date(2026, 3, 13)).await;
    s.env.wait_journal("F-950", names::REMINDER_FAILED, 1).await;

    let (status, reason): (String, Option<String>) = sqlx::query_as(
        "SELECT s.status, s.status_reason FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
         WHERE i.number = 'F-950' AND s.name = 'sms_1'",
    )
    .fetch_one(&s.env.db)
    .await
    .unwrap();
    assert_eq!(status, "failed");
    let reason = reason.unwrap_or_default();
    assert!(
        reason.contains("segments") && reason.contains("more than the 2 allowed"),
        "{reason}"
    );
    assert_eq!(s.gateway.count(), 0, "nothing sent to the gateway");
    // The sequence goes on: the email before it went out, the formal notice is still ahead.
    assert_eq!(
        s.env.steps("F-950").await,
        steps(&[
            ("reminder_1", "sent"),
            ("sms_1", "failed"),
            ("formal_notice", "pending")
        ])
    );
    s.stop().await;
    let _ = std::fs::remove_dir_all(&templates);
}
