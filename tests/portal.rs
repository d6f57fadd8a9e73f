//! The customer page end to end: the real services and the portal in-process, on a fresh
//! database and broker namespace. A customer opens the link of one of its invoices, sees its
//! own open invoices and no one else's, downloads its statement, promises to pay (the
//! sequence pauses, journaled as from the customer page) and reports a dispute; tampered,
//! expired and revoked links are refused; a link asking too often gets 429.
//!
//! The clock starts on Monday 2 March 2026, 06:00 UTC; the invoices fall due on 16 March.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::Duration;
use relance_contracts::names;
use relance_domain::Clock;
use relance_portal::token;
use relance_tests::{date, invoice_issued, open_form_page, TestEnv};

const SECRET: &str = "portal-test-secret";

/// Registers `number` for the customer `customer` (ids as `invoice.issued` gives them).
async fn register(env: &TestEnv, number: &str, customer: &str, amount: &str) {
    let mut issued = invoice_issued(number, amount, date(2026, 3, 2), date(2026, 3, 16));
    issued["invoice"]["customer"]["id"] = customer.into();
    issued["invoice"]["customer"]["name"] = format!("Client {customer}").into();
    env.publish(names::INVOICE_ISSUED, &issued).await;
    env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The link of `number` made now.
fn link(env: &TestEnv, number: &str) -> String {
    token::sign(SECRET, number, env.clock.now(), 60).unwrap()
}

/// Opens the page: (status, CSRF cookie, form token, HTML).
async fn open(client: &reqwest::Client, base: &str, token: &str) -> (u16, String, String, String) {
    let page = open_form_page(client, &format!("{base}/p/{token}")).await;
    (page.status, page.cookie, page.token, page.html)
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    form: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "+")))
        .collect();
    client
        .post(format!("{base}/p/{token}/{form}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(body.join("&"))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_sees_its_own_invoices_promises_and_disputes_and_bad_links_are_refused() {
    let env = TestEnv::start(1).await;
    register(&env, "F-P1", "C-ONE", "1200.00").await;
    register(&env, "F-P2", "C-ONE", "300.00").await;
    register(&env, "F-OTHER", "C-TWO", "999.00").await;
    let base = env
        .start_portal_with(|s| {
            s.portal_secret = Some(SECRET.into());
            s.portal_rate_per_minute = 1000;
        })
        .await
        .unwrap();
    let client = browser();

    // The page: the customer's two invoices, how to pay; nothing of the other customer.
    let t1 = link(&env, "F-P1");
    let (status, cookie, csrf, html) = open(&client, &base, &t1).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("F-P1") && html.contains("F-P2"), "{html}");
    assert!(html.contains("1200.00") && html.contains("2026-03-16"), "{html}");
    assert!(
        !html.contains("F-OTHER") && !html.contains("C-TWO") && !html.contains("999.00"),
        "{html}"
    );
    assert!(html.contains("IBAN"), "{html}");
    assert!(!cookie.is_empty() && !csrf.is_empty());
    // Nothing loaded from elsewhere.
    assert!(
        !html.contains("<script") && !html.contains("src=\"http"),
        "{html}"
    );

    // The statement of account, as PDF.
    let pdf = client
        .get(format!("{base}/p/{t1}/statement.pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF"));

    // Bad links: tampered, signed with another key, expired; the page says nothing more.
    let mut tampered = t1.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        tampered,
        token::sign("another key", "F-P1", env.clock.now(), 60).unwrap(),
    ] {
        let (status, _, _, html) = open(&client, &base, &bad).await;
        assert_eq!(status, 404);
        assert!(!html.contains("F-P1") && !html.contains("Client"), "{html}");
    }
    let expired = token::sign(SECRET, "F-P1", env.clock.now() - Duration::days(61), 60).unwrap();
    let (status, _, _, html) = open(&client, &base, &expired).await;
    assert_eq!(status, 410);
    assert!(!html.contains("F-P1"), "{html}");

    // A promise too far ahead is refused on the page; without the CSRF token, forbidden.
    let refused = post(
        &client,
        &base,
        &t1,
        "promise",
        &cookie,
        &[("csrf", &csrf), ("invoice", "F-P1"), ("date", "2026-06-30")],
    )
    .await;
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("2026-04-01"));
    let forged = post(
        &client,
        &base,
        &t1,
        "promise",
        &cookie,
        &[("invoice", "F-P1"), ("date", "2026-03-20")],
    )
    .await;
    assert_eq!(forged.status(), 403);
    // Another customer's invoice through this link: refused.
    let foreign = post(
        &client,
        &base,
        &t1,
        "promise",
        &cookie,
        &[("csrf", &csrf), ("invoice", "F-OTHER"), ("date", "2026-03-20")],
    )
    .await;
    assert_eq!(foreign.status(), 422);
    assert_eq!(env.journal_count("F-OTHER", names::INVOICE_PAUSED).await, 0);

    // The promise: applied, the sequence paused, journaled as from the customer page.
    let promised = post(
        &client,
        &base,
        &t1,
        "promise",
        &cookie,
        &[("csrf", &csrf), ("invoice", "F-P1"), ("date", "2026-03-20")],
    )
    .await;
    assert_eq!(promised.status(), 303, "{:?}", promised.text().await);
    let location = promised.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("outcome=applied"), "{location}");
    let paused = env.journal_details("F-P1", names::INVOICE_PAUSED).await;
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0]["kind"], "promise");
    assert_eq!(paused[0]["promised_on"], "2026-03-20");
    assert!(paused[0].to_string().contains("customer page"), "{paused:?}");
    assert_eq!(
        paused[0]["source"], "customer_page",
        "the entry's source, not only its text"
    );
    let page = client
        .get(format!("{base}{location}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("promise is recorded") || page.contains("promesse est enregistrée"),
        "{page}"
    );

    // A dispute on the other invoice of the customer.
    let disputed = post(
        &client,
        &base,
        &t1,
        "dispute",
        &cookie,
        &[
            ("csrf", &csrf),
            ("invoice", "F-P2"),
            ("reason", "goods never delivered"),
        ],
    )
    .await;
    assert_eq!(disputed.status(), 303);
    env.wait_journal("F-P2", names::INVOICE_PAUSED, 1).await;
    let paused = env.journal_details("F-P2", names::INVOICE_PAUSED).await;
    assert_eq!(paused[0]["kind"], "dispute");
    assert!(
        paused[0]
            .to_string()
            .contains("customer page: goods never delivered"),
        "{paused:?}"
    );

    // Revoked: every link made until now is refused; a new one works.
    relance_portal::revoke(&env.db, "F-P1", env.clock.now())
        .await
        .unwrap();
    let (status, _, _, _) = open(&client, &base, &t1).await;
    assert_eq!(status, 410);
    env.move_clock(env.clock.now() + Duration::seconds(1)).await;
    let (status, _, _, _) = open(&client, &base, &link(&env, "F-P1")).await;
    assert_eq!(status, 200);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_asking_too_often_gets_429() {
    let env = TestEnv::start(1).await;
    register(&env, "F-R1", "C-R", "100.00").await;
    let base = env
        .start_portal_with(|s| {
            s.portal_secret = Some(SECRET.into());
            s.portal_rate_per_minute = 5;
        })
        .await
        .unwrap();
    let client = browser();
    let t = link(&env, "F-R1");
    for _ in 0..5 {
        let (status, _, _, _) = open(&client, &base, &t).await;
        assert_eq!(status, 200);
    }
    let (status, _, _, html) = open(&client, &base, &t).await;
    assert_eq!(status, 429);
    assert!(!html.contains("F-R1"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_page_published_a_message_links_to_it_and_the_link_opens_the_invoice() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    let env = TestEnv::try_start(
        1,
        &[("RELANCE_PORTAL_URL", &public), ("RELANCE_PORTAL_SECRET", SECRET)],
    )
    .await
    .unwrap();
    let base = env.start_portal_on(listener, |_| {}).await.unwrap();
    assert_eq!(base, public);
    register(&env, "F-MAIL", "C-MAIL", "450.00").await;
    // The pre-due note, on Wednesday 11 March.
    env.run_until(date(2026, 3, 11)).await;
    let emails = env.mail.wait_for_emails(1).await;
    let text = &emails[0].text;
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{public}/p/")))
        .unwrap_or_else(|| panic!("the portal's link in the message: {text}"))
        .to_string();
    let page = browser().get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("F-MAIL") && html.contains("450.00"), "{html}");
    env.stop().await;
}

async fn active_pauses(env: &TestEnv, number: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT p.kind FROM invoice_pauses p JOIN invoices i ON i.id = p.invoice_id
         WHERE i.number = $1 AND p.ended_at IS NULL ORDER BY p.kind",
    )
    .bind(number)
    .fetch_all(&env.db)
    .await
    .unwrap()
}

/// The customer asks for a payment plan on the page (three months, with a note): the
/// request goes through the payments listener as `payment_plan.requested` (source
/// `customer_page`), journaled, the sequence paused (kind `plan_request`), listed by
/// `relance tasks`. The team agrees a plan for one invoice (the plan holds it, the request's
/// pause ends) and declines the other's request (`relance invoice resume`: the sequence
/// resumes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_asks_for_a_payment_plan_and_the_team_agrees_or_declines() {
    let env = TestEnv::start(1).await;
    register(&env, "F-P7", "C-SEVEN", "1200.00").await;
    register(&env, "F-P8", "C-SEVEN", "300.00").await;
    let base = env
        .start_portal_with(|s| {
            s.portal_secret = Some(SECRET.into());
            s.portal_rate_per_minute = 1000;
        })
        .await
        .unwrap();
    let client = browser();
    let t7 = link(&env, "F-P7");
    let (status, cookie, csrf, html) = open(&client, &base, &t7).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("/plan\"") && html.contains("name=\"months\""),
        "the plan form: {html}"
    );
    for number in ["F-P7", "F-P8"] {
        let answer = post(
            &client,
            &base,
            &t7,
            "plan",
            &cookie,
            &[
                ("csrf", &csrf),
                ("invoice", number),
                ("months", "3"),
                ("note", "tight quarter"),
            ],
        )
        .await;
        assert_eq!(answer.status(), 303);
        let location = answer.headers()["location"].to_str().unwrap().to_string();
        assert!(location.contains("done=plan&outcome=applied"), "{location}");
    }
    let requested = env.journal_details("F-P7", names::PAYMENT_PLAN_REQUESTED).await;
    assert_eq!(requested.len(), 1, "{requested:?}");
    assert_eq!(requested[0]["source"], "customer_page");
    assert_eq!(requested[0]["months"], 3);
    assert_eq!(requested[0]["note"], "tight quarter");
    assert_eq!(active_pauses(&env, "F-P7").await, ["plan_request"]);
    let paused = env.journal_details("F-P7", names::INVOICE_PAUSED).await;
    assert_eq!(paused[0]["kind"], "plan_request");
    assert_eq!(paused[0]["source"], "customer_page");
    assert!(
        paused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("3 monthly instalments"),
        "{paused:?}"
    );
    // A second request while one waits is refused: nothing more is journaled.
    let again = post(
        &client,
        &base,
        &t7,
        "plan",
        &cookie,
        &[("csrf", &csrf), ("invoice", "F-P7"), ("months", "4")],
    )
    .await;
    assert_eq!(again.status(), 303);
    let tasks = env.cli(&["tasks"]).await;
    assert!(tasks.ok, "{}", tasks.stderr);
    assert!(tasks.stdout.contains("payment plan requests"), "{}", tasks.stdout);
    assert!(
        tasks.stdout.contains("F-P7") && tasks.stdout.contains("F-P8"),
        "{}",
        tasks.stdout
    );

    // Agreed for F-P7: the plan holds it; declined for F-P8: the sequence resumes.
    let agree = env
        .cli(&[
            "invoice",
            "plan",
            "F-P7",
            "--instalment",
            "2026-04-15:600.00",
            "--instalment",
            "2026-05-15:600.00",
            "--wait",
            "30",
        ])
        .await;
    assert!(agree.ok, "{}", agree.stderr);
    assert_eq!(active_pauses(&env, "F-P7").await, ["plan"]);
    let decline = env
        .cli(&[
            "invoice",
            "resume",
            "F-P8",
            "--note",
            "plan declined: pay by the due date",
            "--wait",
            "30",
        ])
        .await;
    assert!(decline.ok, "{}", decline.stderr);
    assert!(active_pauses(&env, "F-P8").await.is_empty());
    assert_eq!(env.journal_count("F-P8", names::INVOICE_RESUMED).await, 1);
    let tasks = env.cli(&["tasks"]).await;
    assert!(
        !tasks.stdout.contains("payment plan requests"),
        "{}",
        tasks.stdout
    );
    env.stop().await;
}
