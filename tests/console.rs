//! The collections console end to end: the real services and the console in-process, on a
//! fresh database and broker namespace, a ledger with an invoice in every collections status;
//! checked through the JSON API and the pages as a user (or a script) would read them.
//!
//! The policy: a note 3 days before the due date, an email 2 days after, a call task 4 days
//! after, a firm email 6 days after, the formal notice (by email) 8 days after. The console is read on Friday 13 March
//! 2026, 10:00 UTC.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use chrono::{TimeZone, Utc};
use relance::drive::wait_for;
use relance_contracts::names;
use relance_tests::{
    date, invoice_issued, open_form_page, payment_received, relance_binary, FormPage, TestEnv,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const STEPS: &str = r#"
[[segments.SEGMENT.steps]]
name = "pre_due"
offset_days = -3
channel = "email"
template = "pre_due"
tone = "courteous"

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
name = "reminder_2"
offset_days = 6
channel = "email"
template = "firm_reminder"
tone = "firm"

[[segments.SEGMENT.steps]]
name = "formal_notice"
offset_days = 8
channel = "email"
template = "formal_notice"
tone = "formal"
"#;

fn policy() -> String {
    let mut policy = "send_time = \"09:00\"\n\n[fallback]\ncall = [\"email\"]\n".to_string();
    for segment in ["low", "medium", "high"] {
        policy.push_str(&STEPS.replace("SEGMENT", segment));
    }
    policy
}

const XSS_NAME: &str = "<script>alert(1)</script> SARL";

struct Setup {
    env: TestEnv,
    scratch: std::path::PathBuf,
}

async fn start() -> Setup {
    let scratch = std::env::temp_dir().join(format!("relance-console-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    let policy_file = scratch.join("policy.toml");
    std::fs::write(&policy_file, policy()).unwrap();
    let env = TestEnv::try_start(1, &[("RELANCE_POLICY_FILE", policy_file.to_str().unwrap())])
        .await
        .expect("starting the test environment");
    Setup { env, scratch }
}

impl Setup {
    /// Stops the services (their RabbitMQ exchanges go with them) and removes the scratch
    /// folder.
    async fn finish(self) {
        self.env.stop().await;
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

async fn issue(
    env: &TestEnv,
    number: &str,
    amount: &str,
    issued: (u32, u32),
    due: (u32, u32),
    customer: Value,
) {
    let mut invoice = invoice_issued(
        number,
        amount,
        date(2026, issued.0, issued.1),
        date(2026, due.0, due.1),
    );
    if let Some(fields) = customer.as_object() {
        for (k, v) in fields {
            invoice["invoice"]["customer"][k] = v.clone();
        }
    }
    env.publish(names::INVOICE_ISSUED, &invoice).await;
    env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
}

/// The ledger: one invoice per collections status on 13 March 10:00 UTC.
async fn load_ledger(env: &TestEnv) {
    issue(
        env,
        "F-WARN",
        "100.00",
        (3, 2),
        (3, 25),
        json!({ "name": XSS_NAME, "risk": "low" }),
    )
    .await;
    issue(env, "F-NOTDUE", "200.00", (3, 2), (3, 14), json!({})).await;
    issue(
        env,
        "F-CALL",
        "300.00",
        (3, 2),
        (3, 9),
        json!({ "phone": "+33612345678", "risk": "high" }),
    )
    .await;
    issue(env, "F-FORMAL", "400.00", (2, 20), (3, 1), json!({})).await;
    issue(env, "F-PAID", "500.00", (3, 2), (3, 9), json!({})).await;
    issue(env, "F-CLOSED", "600.00", (3, 2), (3, 9), json!({})).await;
    issue(env, "F-PAUSE", "700.00", (3, 2), (3, 9), json!({})).await;
    issue(env, "F-OLD", "800.00", (1, 5), (1, 20), json!({})).await;
    env.run_until(date(2026, 3, 9)).await;
    env.publish(
        names::DISPUTE_OPENED,
        &json!({ "version": 1, "event_id": "evt-dispute-1", "occurred_at": "2026-03-09T20:00:00Z",
                 "dispute": { "invoice_number": "F-PAUSE", "reason": "two pallets damaged" } }),
    )
    .await;
    env.wait_journal("F-PAUSE", names::INVOICE_PAUSED, 1).await;
    env.publish(
        names::INVOICE_WRITTEN_OFF,
        &json!({ "version": 1, "event_id": "evt-wo-1", "occurred_at": "2026-03-09T20:00:00Z",
                 "write_off": { "invoice_number": "F-CLOSED", "reason": "customer in liquidation" } }),
    )
    .await;
    env.wait_journal("F-CLOSED", names::INVOICE_CLOSED, 1).await;
    env.run_until(date(2026, 3, 11)).await;
    // Paid the day after its first reminder.
    env.move_clock(Utc.with_ymd_and_hms(2026, 3, 12, 10, 0, 0).unwrap())
        .await;
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("P-1", "F-PAID", "500.00", date(2026, 3, 12)),
    )
    .await;
    env.wait_journal("F-PAID", names::INVOICE_SETTLED, 1).await;
    env.run_until(date(2026, 3, 12)).await;
    env.set_time(Utc.with_ymd_and_hms(2026, 3, 13, 10, 0, 0).unwrap())
        .await;
    env.wait_journal("F-CALL", names::CALL_TASK_OPENED, 1).await;
}

async fn get_json(url: &str) -> Value {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

async fn get_text(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.text().await.unwrap()
}

fn numbers(page: &Value) -> Vec<String> {
    page["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_str().unwrap().to_string())
        .collect()
}

fn row<'a>(page: &'a Value, number: &str) -> &'a Value {
    page["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["number"] == number)
        .unwrap_or_else(|| panic!("{number} in {page}"))
}

/// Every page of a listing, following `next`.
async fn all_pages(base: &str, query: &str) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    let mut url = format!("{base}/api/invoices?{query}");
    loop {
        let page = get_json(&url).await;
        pages += 1;
        assert_eq!(
            page["totals"].is_null(),
            pages > 1,
            "totals on the first page only: {page}"
        );
        out.extend(numbers(&page));
        match page["next"].as_str() {
            Some(next) => {
                url = reqwest::Url::parse_with_params(
                    &format!("{base}/api/invoices?{query}"),
                    &[("after", next)],
                )
                .unwrap()
                .to_string()
            }
            None => return (out, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_tracks_every_status_with_filters_pages_totals_aging_and_timelines() {
    let setup = start().await;
    let env = &setup.env;
    load_ledger(env).await;
    let base = env.start_console(None).await.unwrap();

    // The tracking table: one row per invoice, its status by the overview's rule.
    let all = get_json(&format!("{base}/api/invoices")).await;
    let statuses: BTreeMap<String, String> = all["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["number"].as_str().unwrap().into(),
                i["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = [
        ("F-WARN", "to_warn"),
        ("F-NOTDUE", "not_due"),
        ("F-CALL", "to_remind"),
        ("F-FORMAL", "to_formalise"),
        ("F-PAID", "settled"),
        ("F-CLOSED", "closed"),
        ("F-PAUSE", "paused"),
        ("F-OLD", "handed_off"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(statuses, expected);
    for (number, status) in &expected {
        assert_eq!(
            env.collections_status(number).await.as_str(),
            status,
            "the console and `relance invoices` agree on {number}"
        );
    }
    for status in [
        "to_warn",
        "not_due",
        "to_remind",
        "to_formalise",
        "paused",
        "settled",
        "closed",
        "handed_off",
    ] {
        assert_eq!(all["totals"][status]["count"], 1, "{status}: {}", all["totals"]);
    }
    assert_eq!(all["totals"]["to_remind"]["balance"]["EUR"], "300.00");
    assert_eq!(all["totals"]["settled"]["balance"]["EUR"], "0.00");
    // Live or from the snapshot, the ledger has not changed since the clock's time.
    assert_eq!(all["totals_as_of"], "2026-03-13T10:00:00Z");

    let call = row(&all, "F-CALL");
    assert_eq!(call["customer_id"], "C-F-CALL");
    assert_eq!(call["amount"], "300.00");
    assert_eq!(call["balance"], "300.00");
    assert_eq!(call["currency"], "EUR");
    assert_eq!(call["due_on"], "2026-03-09");
    assert_eq!(call["days_overdue"], 4);
    assert_eq!(call["segment"], "high");
    assert_eq!(call["last_action"], names::CALL_TASK_OPENED);
    assert_eq!(call["next_step"], "reminder_2");
    assert_eq!(call["next_step_channel"], "email");
    assert_eq!(row(&all, "F-WARN")["days_overdue"], 0);
    assert_eq!(row(&all, "F-WARN")["next_step"], "pre_due");

    // Filters.
    let only = |q: &str| {
        let url = format!("{base}/api/invoices?{q}");
        async move { numbers(&get_json(&url).await) }
    };
    assert_eq!(only("status=to_remind").await, ["F-CALL"]);
    assert_eq!(only("status=handed_off").await, ["F-OLD"]);
    assert_eq!(only("segment=high").await, ["F-CALL"]);
    assert_eq!(only("customer=C-F-PAID").await, ["F-PAID"]);
    let overdue: BTreeSet<String> = only("overdue_min=1&overdue_max=10").await.into_iter().collect();
    let want: BTreeSet<String> = ["F-CALL", "F-PAID", "F-CLOSED", "F-PAUSE"]
        .map(String::from)
        .into();
    assert_eq!(overdue, want, "due between 3 and 12 March");
    let filtered = get_json(&format!("{base}/api/invoices?segment=medium")).await;
    assert_eq!(
        filtered["totals"]["to_remind"]["count"], 0,
        "totals follow the filter"
    );
    assert_eq!(filtered["totals"]["paused"]["count"], 1);
    let bad = reqwest::get(format!("{base}/api/invoices?status=late"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Keyset pages: every invoice once, in order, whatever the page size and sort.
    let by_due: Vec<String> = numbers(&all);
    let (paged, pages) = all_pages(&base, "limit=3").await;
    assert_eq!((paged, pages), (by_due.clone(), 3));
    let (by_amount, _) = all_pages(&base, "limit=3&sort=amount").await;
    assert_eq!(
        by_amount,
        ["F-OLD", "F-PAUSE", "F-CLOSED", "F-PAID", "F-FORMAL", "F-CALL", "F-NOTDUE", "F-WARN"]
    );
    let (open_paged, _) = all_pages(&base, "limit=1&status=to_formalise").await;
    assert_eq!(open_paged, ["F-FORMAL"]);

    // Aging today: what open invoices owe, by bucket.
    let aging = get_json(&format!("{base}/api/aging")).await;
    let buckets = |aging: &Value| -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, rust_decimal::Decimal> = BTreeMap::new();
        for r in aging["rows"].as_array().unwrap() {
            assert_eq!(r["currency"], "EUR");
            *out.entry(r["bucket"].as_str().unwrap().into()).or_default() += r["outstanding"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap();
        }
        out.into_iter().map(|(k, v)| (k, v.to_string())).collect()
    };
    let today: BTreeMap<String, String> = [("not_due", "300.00"), ("1_15", "1400.00")]
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .into();
    assert_eq!(buckets(&aging), today, "{aging}");
    // On 5 March: F-PAID and F-CLOSED were still owed, F-OLD not yet handed off (44 days late).
    let past = get_json(&format!("{base}/api/aging?as_of=2026-03-05")).await;
    let then: BTreeMap<String, String> = [("not_due", "2400.00"), ("1_15", "400.00"), ("31_60", "800.00")]
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .into();
    assert_eq!(buckets(&past), then, "{past}");
    let dso = &aging["dso"][0];
    assert_eq!(dso["currency"], "EUR");
    assert_eq!(dso["receivables"], "1700.00");
    assert!(dso["dso_days"].is_string(), "{dso}");
    let aging_page = get_text(&format!("{base}/aging")).await;
    assert!(aging_page.contains("countback"), "the method is explained");

    // Effectiveness: F-FORMAL's and F-PAID's first reminders went out; F-PAID was settled
    // the next day.
    let effect = get_json(&format!("{base}/api/effectiveness?from=2026-03-01&to=2026-03-14")).await;
    let reminder_1 = effect["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["step"] == "reminder_1" && r["segment"] == "medium")
        .unwrap_or_else(|| panic!("{effect}"));
    assert_eq!(reminder_1["channel"], "email");
    assert_eq!(reminder_1["sent"], 2, "{effect}");
    assert_eq!(reminder_1["paid_within_3_days"], 1);
    assert_eq!(reminder_1["paid_within_14_days"], 1);
    assert!(get_text(&format!("{base}/effectiveness"))
        .await
        .contains("reminder_1"));

    // An invoice's timeline: the sends with their subject and stored message, the chain
    // verified.
    let invoice = get_json(&format!("{base}/api/invoices/F-CALL")).await;
    assert_eq!(invoice["status"], "to_remind");
    assert_eq!(invoice["chain"]["intact"], true, "{}", invoice["chain"]);
    let timeline = invoice["timeline"].as_array().unwrap();
    let actions: Vec<&str> = timeline.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in [
        names::INVOICE_REGISTERED,
        names::REMINDER_SENT,
        names::CALL_TASK_OPENED,
    ] {
        assert!(actions.contains(&action), "{actions:?}");
    }
    let sent = timeline
        .iter()
        .find(|e| e["action"] == names::REMINDER_SENT)
        .unwrap();
    let subject = sent["subject"].as_str().unwrap();
    assert!(subject.contains("F-CALL"), "{subject}");
    assert_eq!(sent["has_proof"], true);
    let proof = get_text(&format!("{base}/messages/{}", sent["step_id"].as_str().unwrap())).await;
    assert!(proof.contains(subject), "{proof}");
    let page = get_text(&format!("{base}/invoices/F-CALL")).await;
    assert!(page.contains("verified"), "{page}");
    assert!(page.contains(&format!("/messages/{}", sent["step_id"].as_str().unwrap())));

    // A customer's page: contact, balance, invoices, the merged timeline; names escaped.
    let customer = get_json(&format!("{base}/api/customers/C-F-WARN")).await;
    assert_eq!(customer["customer"]["name"], XSS_NAME);
    assert_eq!(customer["balance"]["EUR"], "100.00");
    assert_eq!(numbers(&customer), ["F-WARN"]);
    assert_eq!(customer["chains"]["F-WARN"]["intact"], true, "{customer}");
    for html in [
        get_text(&format!("{base}/customers/C-F-WARN")).await,
        get_text(&format!("{base}/?segment=low")).await,
    ] {
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
    }
    let formal = get_json(&format!("{base}/api/customers/C-F-FORMAL")).await;
    let actions: Vec<&str> = formal["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&names::REMINDER_FALLBACK),
        "the call fell back to email: {actions:?}"
    );
    assert!(actions.contains(&names::CALL_TASK_OPENED) || actions.contains(&names::REMINDER_SENT));

    // The task form: refused without its CSRF token, then it publishes call.outcome and the
    // invoice's journal shows it.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let FormPage {
        cookie, token, html, ..
    } = open_form_page(&client, &format!("{base}/tasks")).await;
    assert!(cookie.starts_with("relance_csrf="), "{cookie}");
    assert!(html.contains("F-CALL"), "{html}");
    assert!(!token.is_empty(), "{html}");
    let task = get_json(&format!("{base}/api/tasks")).await;
    assert_eq!(task["tasks"][0]["invoice_number"], "F-CALL");
    let step_id = task["tasks"][0]["step_id"].as_str().unwrap().to_string();
    let form = |csrf: &str| {
        format!(
            "csrf={csrf}&invoice_number=F-CALL&step_id={step_id}&outcome=reached&promised_on=2026-03-20&reason=&note=J.+Martin"
        )
    };
    let post = |body: String, cookie: Option<String>| {
        let mut request = client
            .post(format!("{base}/tasks/outcome"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    let forged = post(form(&token), None).await.unwrap();
    assert_eq!(forged.status(), 403, "no cookie: another site's form");
    let forged = post(form(&"0".repeat(64)), Some(cookie.clone())).await.unwrap();
    assert_eq!(forged.status(), 403, "a wrong token");
    assert_eq!(env.journal_count("F-CALL", names::CALL_OUTCOME_RECORDED).await, 0);
    let recorded = post(form(&token), Some(cookie.clone())).await.unwrap();
    assert_eq!(recorded.status(), 303);
    let location = recorded.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/invoices/F-CALL?applied="), "{location}");
    let after = get_json(&format!("{base}/api/invoices/F-CALL")).await;
    assert_eq!(after["status"], "paused");
    let outcome = after["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == names::CALL_OUTCOME_RECORDED)
        .unwrap_or_else(|| panic!("{after}"));
    assert_eq!(outcome["detail"]["outcome"], "reached", "{outcome}");
    assert!(get_text(&format!("{base}{location}"))
        .await
        .contains(names::CALL_OUTCOME_RECORDED));

    setup.finish().await;
}

/// Totals as the console serves them at `url`.
async fn totals_at(url: &str) -> Value {
    let page = get_json(url).await;
    json!({ "as_of": page["totals_as_of"], "source": page["totals_source"], "totals": page["totals"] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_totals_come_from_a_snapshot_refreshed_in_the_background() {
    let setup = start().await;
    let env = &setup.env;
    issue(env, "F-SOON", "100.00", (3, 2), (3, 25), json!({})).await;
    issue(env, "F-LATE", "300.00", (3, 2), (3, 9), json!({ "risk": "high" })).await;
    env.run_until(date(2026, 3, 12)).await;
    env.set_time(Utc.with_ymd_and_hms(2026, 3, 13, 10, 0, 0).unwrap())
        .await;
    // One console that keeps its first snapshot for an hour, one that refreshes it often.
    let slow = env
        .start_console_with(|s| s.console_totals_interval = Duration::from_secs(3600))
        .await
        .unwrap();
    let fast = env
        .start_console_with(|s| s.console_totals_interval = Duration::from_millis(100))
        .await
        .unwrap();
    for base in [&slow, &fast] {
        let url = format!("{base}/api/invoices");
        wait_for("the first totals snapshot", Duration::from_secs(20), || async {
            Ok(totals_at(&url).await["source"] == "snapshot")
        })
        .await
        .unwrap();
        let first = totals_at(&url).await;
        assert_eq!(first["as_of"], "2026-03-13T10:00:00Z");
        assert_eq!(first["totals"]["to_warn"]["count"], 1, "{first}");
        assert_eq!(first["totals"]["to_remind"]["count"], 1, "{first}");
    }

    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("P-1", "F-LATE", "300.00", date(2026, 3, 13)),
    )
    .await;
    env.wait_journal("F-LATE", names::INVOICE_SETTLED, 1).await;
    // A customer's totals are counted live, at once.
    let customer = totals_at(&format!("{slow}/api/invoices?customer=C-F-LATE")).await;
    assert_eq!(customer["source"], "live");
    assert_eq!(customer["totals"]["settled"]["count"], 1, "{customer}");
    // The whole ledger's come from the snapshot: the slow console's still shows it due.
    let stale = totals_at(&format!("{slow}/api/invoices")).await;
    assert_eq!(stale["source"], "snapshot");
    assert_eq!(stale["as_of"], "2026-03-13T10:00:00Z");
    assert_eq!(stale["totals"]["to_remind"]["count"], 1, "{stale}");
    assert_eq!(stale["totals"]["settled"]["count"], 0, "{stale}");

    // Five minutes later the fast console's next snapshot has it settled, under any filter.
    env.move_clock(Utc.with_ymd_and_hms(2026, 3, 13, 10, 5, 0).unwrap())
        .await;
    let url = format!("{fast}/api/invoices?segment=high&overdue_min=1&overdue_max=30");
    wait_for(
        "a snapshot after the payment",
        Duration::from_secs(20),
        || async { Ok(totals_at(&url).await["as_of"] == "2026-03-13T10:05:00Z") },
    )
    .await
    .unwrap();
    let after = totals_at(&url).await;
    assert_eq!(after["source"], "snapshot");
    assert_eq!(after["totals"]["settled"]["count"], 1, "{after}");
    assert_eq!(after["totals"]["settled"]["balance"]["EUR"], "0.00", "{after}");
    assert_eq!(after["totals"]["to_remind"]["count"], 0, "{after}");
    assert_eq!(
        after["totals"]["to_warn"]["count"], 0,
        "segment and overdue range apply: {after}"
    );
    let page = get_text(&format!("{fast}/")).await;
    assert!(page.contains("totals as of 2026-03-13 10:05"), "{page}");
    setup.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_console_just_started_serves_its_pages_before_its_first_snapshot() {
    let setup = start().await;
    let env = &setup.env;
    issue(env, "F-SOON", "100.00", (3, 2), (3, 25), json!({})).await;
    issue(env, "F-LATE", "300.00", (3, 2), (3, 9), json!({ "risk": "high" })).await;
    env.run_until(date(2026, 3, 12)).await;
    env.set_time(Utc.with_ymd_and_hms(2026, 3, 13, 10, 0, 0).unwrap())
        .await;
    // Another console is computing its snapshot (it holds the turn): this one's waits.
    let mut other = env.db.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(relance_console::SNAPSHOT_TURN_LOCK)
        .execute(&mut *other)
        .await
        .unwrap();
    let base = env
        .start_console_unready(|s| s.console_totals_interval = Duration::from_secs(3600))
        .await
        .unwrap();

    // The first page comes at once, without totals.
    let first = get_json(&format!("{base}/api/invoices")).await;
    assert_eq!(numbers(&first), ["F-LATE", "F-SOON"]);
    assert!(first["totals"].is_null(), "{first}");
    assert!(first["totals_as_of"].is_null(), "{first}");
    assert_eq!(first["totals_computing"], true, "{first}");
    let html = get_text(&format!("{base}/")).await;
    assert!(html.contains("totals: computing"), "{html}");
    assert!(html.contains("F-LATE"), "{html}");
    // Pages filtered on a status or a segment are read in order, without the snapshot.
    let only = |q: &str| {
        let url = format!("{base}/api/invoices?{q}");
        async move { numbers(&get_json(&url).await) }
    };
    assert_eq!(only("status=to_remind").await, ["F-LATE"]);
    assert_eq!(only("status=to_warn").await, ["F-SOON"]);
    assert_eq!(only("status=settled").await, Vec::<String>::new());
    assert_eq!(only("segment=high").await, ["F-LATE"]);
    assert_eq!(only("segment=medium&sort=amount").await, ["F-SOON"]);
    // A customer's totals are counted live, snapshot or not.
    let customer = get_json(&format!("{base}/api/invoices?customer=C-F-LATE")).await;
    assert_eq!(customer["totals_source"], "live", "{customer}");

    // Its turn comes: the totals follow.
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(relance_console::SNAPSHOT_TURN_LOCK)
        .execute(&mut *other)
        .await
        .unwrap();
    drop(other);
    let url = format!("{base}/api/invoices");
    wait_for("the first totals snapshot", Duration::from_secs(20), || async {
        Ok(!get_json(&url).await["totals_as_of"].is_null())
    })
    .await
    .unwrap();
    let after = get_json(&url).await;
    assert_eq!(after["totals_source"], "snapshot", "{after}");
    assert_eq!(after["totals_computing"], false, "{after}");
    assert_eq!(after["totals"]["to_remind"]["count"], 1, "{after}");
    assert_eq!(after["totals"]["to_warn"]["count"], 1, "{after}");

    // Then the ledger by day is read: a past day's aging is summed from it, as exact.
    let aging_url = format!("{base}/api/aging?as_of=2026-03-10");
    wait_for("the ledger by day", Duration::from_secs(20), || async {
        Ok(get_json(&aging_url).await["source"] == "ledger_by_day")
    })
    .await
    .unwrap();
    let aging = get_json(&aging_url).await;
    let rows: Vec<(&str, &str, i64, &str)> = aging["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["segment"].as_str().unwrap(),
                r["bucket"].as_str().unwrap(),
                r["invoices"].as_i64().unwrap(),
                r["outstanding"].as_str().unwrap(),
            )
        })
        .collect();
    // On 10 March F-LATE (high) was a day past due, F-SOON not due yet.
    assert_eq!(
        rows,
        [("high", "1_15", 1, "300.00"), ("medium", "not_due", 1, "100.00")],
        "{aging}"
    );
    setup.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_console_beyond_localhost_requires_its_token() {
    // Without a token, `relance run console` on a public address refuses to start.
    let out = tokio::process::Command::new(relance_binary())
        .args(["run", "console"])
        .env_clear()
        .env("RELANCE_CONSOLE_ADDR", "0.0.0.0:0")
        .env("RELANCE_EXAMPLE_CREDITOR", "allow")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("running relance");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RELANCE_CONSOLE_TOKEN"), "{stderr}");

    // With one, every request must carry it, as a bearer token or a basic-auth password.
    let env = TestEnv::start(1).await;
    let base = env.start_console(Some("s3cret")).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("{base}/api/invoices");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let wrong = client.get(&url).bearer_auth("guess").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let bearer = client.get(&url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(bearer.status(), 200);
    let basic = base64::engine::general_purpose::STANDARD.encode("accounts:s3cret");
    let page = client
        .get(format!("{base}/"))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    env.stop().await;
}
