//! The console's write side end to end: the real services and the console in-process, on a
//! fresh database and broker namespace; the accounts team acts on invoices through the
//! invoice page's forms (with their CSRF token) and the JSON API, and checks what a person
//! would: the redirect's notice, the invoice's status, balance and journal, the reminders.
//!
//! The harness's email-only policy (medium risk, Paris): for an invoice due Monday 16 March
//! 2026, the pre-due note on Wednesday 11 March and the first reminder on Tuesday 24 March
//! (reminders: Tuesday to Thursday mornings). The clock starts on Monday 2 March, 06:00 UTC.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{TimeZone, Utc};
use relance_contracts::names;
use relance_domain::collections::CollectionStatus;
use relance_tests::{date, invoice_issued, open_form_page, TestEnv};
use serde_json::{json, Value};

async fn register(env: &TestEnv, number: &str, amount: &str) {
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued(number, amount, date(2026, 3, 2), date(2026, 3, 16)),
    )
    .await;
    env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
}

/// A browser: no redirects followed, so the test sees each answer.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Opens the invoice page as a browser does: its CSRF cookie and the forms' token.
async fn open_page(client: &reqwest::Client, base: &str, number: &str) -> (String, String, String) {
    let page = open_form_page(client, &format!("{base}/invoices/{number}")).await;
    assert_eq!(page.status, 200);
    assert!(!page.cookie.is_empty(), "the page sets the CSRF cookie");
    assert!(!page.token.is_empty(), "a form with its CSRF token");
    (page.cookie, page.token, page.html)
}

/// Posts one form of the invoice page.
async fn post_form(
    client: &reqwest::Client,
    base: &str,
    number: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "+")))
        .collect();
    let mut request = client
        .post(format!("{base}/invoices/{number}/actions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

/// Posts an action to the JSON API: (status, answer).
async fn post_api(base: &str, number: &str, action: Value) -> (u16, String) {
    let answer = reqwest::Client::new()
        .post(format!("{base}/api/invoices/{number}/actions"))
        .header("content-type", "application/json")
        .body(action.to_string())
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

async fn invoice_json(base: &str, number: &str) -> Value {
    let text = reqwest::get(format!("{base}/api/invoices/{number}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The redirect after an applied action: to the invoice page, whose notice lists what the
/// journal got.
async fn follow(client: &reqwest::Client, base: &str, answer: reqwest::Response) -> String {
    assert_eq!(answer.status(), 303, "{:?}", answer.text().await);
    let location = answer.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("outcome=applied"), "{location}");
    client
        .get(format!("{base}{location}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invoice_page_promises_credits_writes_off_and_refuses_forged_or_invalid_forms() {
    let env = TestEnv::start(1).await;
    for number in ["F-PROM", "F-CRED", "F-WOFF"] {
        register(&env, number, "250.00").await;
    }
    let base = env.start_console(None).await.unwrap();
    let client = browser();
    let (cookie, token, html) = open_page(&client, &base, "F-PROM").await;
    for form in [
        "promise",
        "dispute",
        "resolve",
        "credit",
        "write_off",
        "pause",
        "resume",
    ] {
        assert!(
            html.contains(&format!("name=\"action\" value=\"{form}\"")),
            "{form}: {html}"
        );
    }
    let promise = [
        ("csrf", token.as_str()),
        ("action", "promise"),
        ("date", "2026-03-20"),
        ("note", "Jeanne Martin by phone"),
    ];

    // Another site's form (no cookie) and a forged token: refused, nothing published.
    let forged = post_form(&client, &base, "F-PROM", None, &promise).await;
    assert_eq!(forged.status(), 403);
    let mut wrong = promise;
    let zeros = "0".repeat(64);
    wrong[0] = ("csrf", zeros.as_str());
    let forged = post_form(&client, &base, "F-PROM", Some(&cookie), &wrong).await;
    assert_eq!(forged.status(), 403);
    let missing = post_form(&client, &base, "F-PROM", Some(&cookie), &promise[1..]).await;
    assert_eq!(missing.status(), 403);

    // The promise: applied, the notice shows the pause; the steps are held.
    let page = follow(
        &client,
        &base,
        post_form(&client, &base, "F-PROM", Some(&cookie), &promise).await,
    )
    .await;
    assert!(page.contains("applied"), "{page}");
    assert!(page.contains(names::INVOICE_PAUSED), "{page}");
    let paused = env.journal_details("F-PROM", names::INVOICE_PAUSED).await;
    assert_eq!(paused.len(), 1, "the forged forms published nothing: {paused:?}");
    assert_eq!(paused[0]["kind"], "promise");
    assert_eq!(paused[0]["promised_on"], "2026-03-20");
    assert_eq!(invoice_json(&base, "F-PROM").await["status"], "paused");
    env.run_until(date(2026, 3, 12)).await;
    assert!(
        env.steps("F-PROM")
            .await
            .iter()
            .all(|(_, status)| status == "pending"),
        "held: {:?}",
        env.steps("F-PROM").await
    );

    // An invalid amount: the page again with the reason, 422, nothing published.
    let bad = post_form(
        &client,
        &base,
        "F-CRED",
        Some(&cookie),
        &[("csrf", &token), ("action", "credit"), ("amount", "-20")],
    )
    .await;
    assert_eq!(bad.status(), 422);
    let text = bad.text().await.unwrap();
    assert!(
        text.contains("refused before publishing: credit_note.amount"),
        "{text}"
    );
    let (status, text) = post_api(&base, "F-CRED", json!({ "action": "credit", "amount": "abc" })).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("credit_note.amount"), "{text}");
    let (status, _) = post_api(&base, "F-NONE", json!({ "action": "write_off", "reason": "x" })).await;
    assert_eq!(status, 404);
    assert_eq!(env.journal_count("F-CRED", names::CREDIT_NOTE_RECORDED).await, 0);

    // A credit note lowers the balance (the invoice's currency by default).
    let page = follow(
        &client,
        &base,
        post_form(
            &client,
            &base,
            "F-CRED",
            Some(&cookie),
            &[
                ("csrf", &token),
                ("action", "credit"),
                ("amount", "100.00"),
                ("reason", "two damaged pallets"),
            ],
        )
        .await,
    )
    .await;
    assert!(page.contains(names::CREDIT_NOTE_RECORDED), "{page}");
    let credited = invoice_json(&base, "F-CRED").await;
    assert_eq!(credited["invoice"]["balance"], "150.00", "{credited}");
    assert_eq!(credited["invoice"]["status"], "open");

    // A write-off closes the invoice: no more forms on its page.
    let page = follow(
        &client,
        &base,
        post_form(
            &client,
            &base,
            "F-WOFF",
            Some(&cookie),
            &[
                ("csrf", &token),
                ("action", "write_off"),
                ("reason", "customer in liquidation"),
            ],
        )
        .await,
    )
    .await;
    assert!(page.contains(names::INVOICE_CLOSED), "{page}");
    let closed = invoice_json(&base, "F-WOFF").await;
    assert_eq!(closed["invoice"]["status"], "closed", "{closed}");
    assert_eq!(env.collections_status("F-WOFF").await, CollectionStatus::Closed);
    assert!(
        !page.contains("name=\"action\""),
        "a closed invoice has no actions"
    );
    let (status, text) = post_api(&base, "F-WOFF", json!({ "action": "pause", "reason": "x" })).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("the invoice is closed"), "{text}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_by_hand_holds_the_reminders_until_it_is_released_through_the_api() {
    let env = TestEnv::start(1).await;
    register(&env, "F-HOLD", "480.00").await;
    let base = env.start_console(None).await.unwrap();
    let client = browser();
    let (cookie, token, _) = open_page(&client, &base, "F-HOLD").await;
    let page = follow(
        &client,
        &base,
        post_form(
            &client,
            &base,
            "F-HOLD",
            Some(&cookie),
            &[
                ("csrf", &token),
                ("action", "pause"),
                ("reason", "waiting for the purchase order"),
            ],
        )
        .await,
    )
    .await;
    assert!(page.contains(names::INVOICE_PAUSED), "{page}");
    let paused = env.journal_details("F-HOLD", names::INVOICE_PAUSED).await;
    assert_eq!(paused[0]["kind"], "manual");
    assert_eq!(paused[0]["reason"], "waiting for the purchase order");

    // Past the first reminder's day (Tuesday 24 March): nothing went out.
    env.run_until(date(2026, 3, 25)).await;
    assert_eq!(env.journal_count("F-HOLD", names::REMINDER_SENT).await, 0);
    assert_eq!(invoice_json(&base, "F-HOLD").await["status"], "paused");

    // Released through the API: the answer lists what the journal got.
    let (status, text) = post_api(
        &base,
        "F-HOLD",
        json!({ "action": "resume", "note": "order received" }),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["applied"], true);
    assert_eq!(answer["routing_key"], names::RESUME_REQUESTED);
    let resumed = answer["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == names::INVOICE_RESUMED)
        .unwrap_or_else(|| panic!("{answer}"))
        .clone();
    assert_eq!(resumed["detail"]["pauses"], json!(["manual"]));
    assert_eq!(resumed["detail"]["next_step"], "reminder_1", "{resumed}");

    // The reminder goes out later, at the next opening of its window.
    let resumed_at = Utc.with_ymd_and_hms(2026, 3, 25, 23, 0, 0).unwrap();
    env.run_until(date(2026, 4, 2)).await;
    let sent = env.journal_details("F-HOLD", names::REMINDER_SENT).await;
    assert!(!sent.is_empty(), "the reminder went out after the resume");
    let at: chrono::DateTime<Utc> = sqlx::query_scalar(
        "SELECT at FROM journal WHERE invoice_number = 'F-HOLD' AND action = $1 ORDER BY id LIMIT 1",
    )
    .bind(names::REMINDER_SENT)
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert!(at > resumed_at, "sent at {at}");

    // Nothing left to release: the invoice's state says so at once (422), nothing published.
    let (status, text) = post_api(&base, "F-HOLD", json!({ "action": "resume" })).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("resume: it is not paused by hand"), "{text}");

    // A promise for a day already past: only the listener knows the customer's today, and it
    // refuses it; the answer says it is published but not applied (202), rather than failing.
    let (status, text) = post_api(
        &base,
        "F-HOLD",
        json!({ "action": "promise", "date": "2026-03-01" }),
    )
    .await;
    assert_eq!(status, 202, "{text}");
    assert!(text.contains("published, not applied yet"), "{text}");
    assert_eq!(env.journal_count("F-HOLD", names::INVOICE_PAUSED).await, 1);
    env.stop().await;
}
