//! The collections console in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`, through the `fantoccini` client) against the
//! real services and console on a fresh database and broker namespace. A person's path:
//! filter the tracking table by status, open a customer and read its timeline, record a
//! call outcome through the task form and see it journaled, replay a dead letter and see it
//! marked replayed. Each step leaves a screenshot in `target/tmp/console-screenshots/` (the
//! test prints where); with `RELANCE_SCREENSHOTS_DIR=docs/images` the README's two (the
//! tracking table, a customer's timeline) are written there instead.
//!
//! Chromium and chromedriver come from PATH (or `RELANCE_TEST_CHROMIUM` /
//! `RELANCE_TEST_CHROMEDRIVER`); scripts/test.sh installs them. When they are missing the
//! test tries `apt-get install chromium chromium-driver` (as root); it skips, saying so, only
//! if that fails too and `CI` is not set (in CI it fails).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{TimeZone, Utc};
use fantoccini::{Client, ClientBuilder, Locator};
use relance::drive::wait_for;
use relance_contracts::names;
use relance_tests::{date, free_port, invoice_issued, payment_received, TestEnv};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

const POLICY: &str = r#"send_time = "09:00"

[fallback]
call = ["email"]
"#;

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
    let mut policy = POLICY.to_string();
    for segment in ["low", "medium", "high"] {
        policy.push_str(&STEPS.replace("SEGMENT", segment));
    }
    policy
}

/// The customer whose timeline the test reads: two invoices, one at its call step.
const LEFEVRE: &str = "C-LEFEVRE";
const CALLED: &str = "F-2026-0103";

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
    for (k, v) in customer.as_object().unwrap() {
        invoice["invoice"]["customer"][k] = v.clone();
    }
    env.publish(names::INVOICE_ISSUED, &invoice).await;
    env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
}

/// A small ledger in several statuses on Friday 13 March 2026, 10:00 UTC.
async fn load_ledger(env: &TestEnv) {
    let lefevre = json!({ "id": LEFEVRE, "name": "Transports Lefèvre SAS", "contact_name": "Paul Lefèvre",
                          "phone": "+33612345678", "risk": "high" });
    issue(
        env,
        "F-2026-0101",
        "1250.00",
        (3, 2),
        (3, 25),
        json!({ "id": "C-MARTIN", "name": "Boulangerie Martin SARL", "risk": "low" }),
    )
    .await;
    issue(
        env,
        "F-2026-0102",
        "2480.00",
        (3, 2),
        (3, 14),
        json!({ "id": "C-ALPES", "name": "Garage des Alpes" }),
    )
    .await;
    issue(env, CALLED, "3900.00", (3, 2), (3, 9), lefevre.clone()).await;
    issue(
        env,
        "F-2026-0104",
        "4120.00",
        (2, 20),
        (3, 1),
        json!({ "id": "C-DUBOIS", "name": "Cabinet Dubois & Associés" }),
    )
    .await;
    issue(
        env,
        "F-2026-0105",
        "860.00",
        (3, 2),
        (3, 9),
        json!({ "id": "C-ROUSSEAU", "name": "Imprimerie Rousseau" }),
    )
    .await;
    issue(
        env,
        "F-2026-0106",
        "1730.00",
        (3, 2),
        (3, 9),
        json!({ "id": "C-PETIT", "name": "Menuiserie Petit" }),
    )
    .await;
    issue(env, "F-2026-0107", "640.00", (3, 5), (3, 20), lefevre).await;
    env.run_until(date(2026, 3, 9)).await;
    env.publish(
        names::DISPUTE_OPENED,
        &json!({ "version": 1, "event_id": "evt-dispute-1", "occurred_at": "2026-03-09T20:00:00Z",
                 "dispute": { "invoice_number": "F-2026-0106", "reason": "two doors damaged" } }),
    )
    .await;
    env.wait_journal("F-2026-0106", names::INVOICE_PAUSED, 1).await;
    env.run_until(date(2026, 3, 11)).await;
    env.move_clock(Utc.with_ymd_and_hms(2026, 3, 12, 10, 0, 0).unwrap())
        .await;
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("P-1", "F-2026-0105", "860.00", date(2026, 3, 12)),
    )
    .await;
    env.wait_journal("F-2026-0105", names::INVOICE_SETTLED, 1).await;
    env.run_until(date(2026, 3, 12)).await;
    env.set_time(Utc.with_ymd_and_hms(2026, 3, 13, 10, 0, 0).unwrap())
        .await;
    env.wait_journal(CALLED, names::CALL_TASK_OPENED, 1).await;
}

/// A program on PATH (or named by `variable`).
fn program(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn browser_programs() -> Option<(PathBuf, PathBuf)> {
    Some((
        program("RELANCE_TEST_CHROMIUM", &["chromium", "chromium-browser"])?,
        program("RELANCE_TEST_CHROMEDRIVER", &["chromedriver"])?,
    ))
}

/// Chromium and chromedriver, installed with apt-get when missing and possible.
fn find_or_install_browser() -> Option<(PathBuf, PathBuf)> {
    if let Some(found) = browser_programs() {
        return Some(found);
    }
    eprintln!("chromium or chromedriver missing: trying apt-get install chromium chromium-driver");
    let installed = std::process::Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "chromium",
            "chromium-driver",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        eprintln!("apt-get could not install them");
    }
    browser_programs()
}

/// chromedriver on a free port and a headless Chromium session through it.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
}

async fn open_browser(chromium: &Path, chromedriver: &Path, log: &Path) -> Browser {
    let port = free_port();
    let log_file = std::fs::File::create(log).unwrap();
    let driver = tokio::process::Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .expect("starting chromedriver");
    let status = format!("http://127.0.0.1:{port}/status");
    wait_for("chromedriver to answer", DEADLINE, || async {
        Ok(reqwest::get(&status).await.is_ok_and(|r| r.status().is_success()))
    })
    .await
    .unwrap();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,800", "--force-device-scale-factor=1", "--hide-scrollbars",
                     "--lang=en-GB"],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("opening a headless Chromium session through chromedriver");
    // A viewport of 1280x800 whatever the window's own decorations take.
    client.set_window_size(1280, 800).await.unwrap();
    let inner = client
        .execute("return [window.innerWidth, window.innerHeight]", vec![])
        .await
        .unwrap();
    let (w, h) = (
        inner[0].as_u64().unwrap() as u32,
        inner[1].as_u64().unwrap() as u32,
    );
    client
        .set_window_size(1280 + (1280 - w.min(1280)), 800 + (800 - h.min(800)))
        .await
        .unwrap();
    Browser {
        client,
        _driver: driver,
    }
}

/// Where the screenshots go: the test's output folder, or the README's for its two.
struct Screenshots {
    dir: PathBuf,
    readme: Option<PathBuf>,
}

impl Screenshots {
    fn new() -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        // A relative folder is the repository's (tests run in tests/).
        let readme = std::env::var_os("RELANCE_SCREENSHOTS_DIR")
            .map(|dir| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir));
        if let Some(readme) = &readme {
            std::fs::create_dir_all(readme).unwrap();
        }
        println!("screenshots in {}", dir.display());
        Self { dir, readme }
    }

    async fn take(&self, client: &Client, name: &str, for_readme: bool) {
        let png = client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = match (&self.readme, for_readme) {
            (Some(readme), true) => readme,
            _ => &self.dir,
        };
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot {}", path.display());
    }
}

async fn texts(client: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in client.find_all(Locator::Css(css)).await.unwrap() {
        out.push(element.text().await.unwrap().trim().to_string());
    }
    out
}

async fn wait_url(client: &Client, what: &str, part: &str) {
    wait_for(what, DEADLINE, || async {
        Ok(client.current_url().await?.as_str().contains(part))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_filters_reads_a_timeline_records_a_call_and_replays_a_dead_letter_in_chromium() {
    let Some((chromium, chromedriver)) = find_or_install_browser() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "Chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "SKIPPED: the browser test needs Chromium and chromedriver (apt-get install chromium \
             chromium-driver, or set RELANCE_TEST_CHROMIUM and RELANCE_TEST_CHROMEDRIVER)"
        );
        return;
    };
    let scratch = std::env::temp_dir().join(format!("relance-browser-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    let policy_file = scratch.join("policy.toml");
    std::fs::write(&policy_file, policy()).unwrap();
    let env = TestEnv::try_start(1, &[("RELANCE_POLICY_FILE", policy_file.to_str().unwrap())])
        .await
        .expect("starting the test environment");
    load_ledger(&env).await;
    // A message no service can read: dead-lettered by the payments listener.
    env.publish_raw(
        &env.names.inbound_exchange(),
        names::PAYMENT_RECEIVED,
        b"{\"version\": 1, \"payment\": \"not an object\"",
    )
    .await;
    let base = env.start_console(None).await.unwrap();
    let shots = Screenshots::new();
    let browser = open_browser(&chromium, &chromedriver, &shots.dir.join("chromedriver.log")).await;
    let c = &browser.client;

    // The tracking table: every invoice, in its status.
    c.goto(&format!("{base}/")).await.unwrap();
    let numbers = texts(c, "#invoices tr td:nth-child(2)").await;
    assert_eq!(numbers.len(), 7, "{numbers:?}");
    let statuses = texts(c, "#invoices tr td:nth-child(7)").await;
    for status in [
        "to_warn",
        "not_due",
        "to_remind",
        "to_formalise",
        "settled",
        "paused",
    ] {
        assert!(statuses.iter().any(|s| s == status), "{status} in {statuses:?}");
    }
    shots.take(c, "console-tracking-table", true).await;

    // Filtered by status through the form: only the invoice to remind.
    c.find(Locator::Css("form.filters select[name=status]"))
        .await
        .unwrap()
        .select_by_value("to_remind")
        .await
        .unwrap();
    c.find(Locator::Css("form.filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_url(c, "the filtered table", "status=to_remind").await;
    assert_eq!(texts(c, "#invoices tr td:nth-child(2)").await, [CALLED]);
    assert_eq!(texts(c, "#invoices tr td:nth-child(7)").await, ["to_remind"]);
    shots.take(c, "tracking-table-to-remind", false).await;

    // Its customer: both invoices and the merged timeline.
    c.find(Locator::Css("#invoices tr td:nth-child(1) a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_url(c, "the customer page", &format!("/customers/{LEFEVRE}")).await;
    assert_eq!(texts(c, "h1").await, ["Transports Lefèvre SAS"]);
    let invoices = texts(c, "#invoices tr td:nth-child(1)").await;
    assert_eq!(invoices, [CALLED, "F-2026-0107"]);
    let actions = texts(c, "#timeline tr.entry td:nth-child(3)").await;
    for action in [
        names::INVOICE_REGISTERED,
        names::REMINDER_SENT,
        names::CALL_TASK_OPENED,
    ] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }

    // The call, recorded through the task form: applied, and in the invoice's journal.
    c.goto(&format!("{base}/tasks")).await.unwrap();
    let task = c.find(Locator::Css("section.task")).await.unwrap();
    assert!(task.text().await.unwrap().contains(CALLED));
    task.find(Locator::Css("select[name=outcome]"))
        .await
        .unwrap()
        .select_by_value("reached")
        .await
        .unwrap();
    // A date field's typing depends on the browser's locale: set its value as a picker does.
    c.execute(
        "document.querySelector('section.task input[name=promised_on]').value = '2026-03-20'",
        vec![],
    )
    .await
    .unwrap();
    task.find(Locator::Css("input[name=note]"))
        .await
        .unwrap()
        .send_keys("Paul Lefèvre: transfer on the 20th")
        .await
        .unwrap();
    task.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_url(c, "the invoice after the outcome", "applied=").await;
    let journaled = texts(c, "#timeline tr.entry td:nth-child(3)").await;
    assert!(
        journaled.iter().any(|a| a == names::CALL_OUTCOME_RECORDED),
        "{journaled:?}"
    );
    let outcome = env.journal_details(CALLED, names::CALL_OUTCOME_RECORDED).await;
    assert_eq!(outcome.len(), 1, "{outcome:?}");
    assert_eq!(outcome[0]["outcome"], "reached", "{outcome:?}");
    shots.take(c, "call-outcome-recorded", false).await;

    // The customer's timeline now has the call's outcome and the promise's pause: the
    // README's second screenshot, scrolled to the timeline.
    c.goto(&format!("{base}/customers/{LEFEVRE}")).await.unwrap();
    let actions = texts(c, "#timeline tr.entry td:nth-child(3)").await;
    assert!(
        actions.iter().any(|a| a == names::CALL_OUTCOME_RECORDED),
        "{actions:?}"
    );
    c.execute(
        "document.querySelector('h2:nth-of-type(2)').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    shots.take(c, "console-customer-timeline", true).await;

    // The dead letter: listed with its reason, replayed once, marked replayed.
    c.goto(&format!("{base}/dead-letters")).await.unwrap();
    let rows = c
        .find_all(Locator::Css("#dead-letters tr.dead-letter"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one pending dead letter");
    let row = &rows[0];
    let row_text = row.text().await.unwrap();
    assert!(row_text.contains(&env.names.payments_queue()), "{row_text}");
    assert!(row_text.contains(names::PAYMENT_RECEIVED), "{row_text}");
    let id: i64 = row.attr("id").await.unwrap().unwrap()["dead-letter-".len()..]
        .parse()
        .unwrap();
    shots.take(c, "dead-letters-pending", false).await;
    row.find(Locator::Css("button.replay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_url(c, "the replayed dead letter", "done=replayed").await;
    assert_eq!(texts(c, "#status").await, ["replayed"]);
    assert!(texts(c, "#done").await[0].starts_with("replayed"));
    let status: String = sqlx::query_scalar("SELECT status FROM dead_letters WHERE id = $1")
        .bind(id)
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(status, "replayed");
    shots.take(c, "dead-letter-replayed", false).await;
    c.goto(&format!("{base}/dead-letters?status=replayed"))
        .await
        .unwrap();
    let replayed = texts(c, "#dead-letters tr.dead-letter td:nth-child(1)").await;
    assert_eq!(replayed, [id.to_string()]);

    browser.client.close().await.unwrap();
    env.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);
}
