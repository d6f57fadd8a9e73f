//! The customer page in a real browser: headless Chromium over WebDriver (Debian's
//! `chromium` and `chromium-driver`, through `fantoccini`) against the real services and the
//! portal, with `RELANCE_PORTAL_URL` set. The customer's path: the pre-due note arrives in
//! MailDev, its link opens the invoice's page, the customer promises a date through the form,
//! and the sequence is paused (journaled as from the customer page).
//!
//! Chromium and chromedriver come from PATH (or `RELANCE_TEST_CHROMIUM` /
//! `RELANCE_TEST_CHROMEDRIVER`); when missing, the test skips, saying so, unless `CI` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fantoccini::{Client, ClientBuilder, Locator};
use relance::drive::wait_for;
use relance_contracts::names;
use relance_tests::{date, free_port, invoice_issued, TestEnv};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn program(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

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
                     "--window-size=1280,800", "--lang=en-GB"],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("opening a headless Chromium session through chromedriver");
    Browser {
        client,
        _driver: driver,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_opens_the_link_of_an_email_and_promises_a_date_in_chromium() {
    let programs = program("RELANCE_TEST_CHROMIUM", &["chromium", "chromium-browser"])
        .zip(program("RELANCE_TEST_CHROMEDRIVER", &["chromedriver"]));
    let Some((chromium, chromedriver)) = programs else {
        assert!(
            std::env::var_os("CI").is_none(),
            "Chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
        );
        eprintln!("SKIPPED: the browser test needs Chromium and chromedriver");
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    let env = TestEnv::try_start(
        1,
        &[
            ("RELANCE_PORTAL_URL", &public),
            ("RELANCE_PORTAL_SECRET", "portal-browser-secret"),
        ],
    )
    .await
    .unwrap();
    env.start_portal_on(listener, |_| {}).await.unwrap();
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-WEB", "780.00", date(2026, 3, 2), date(2026, 3, 16)),
    )
    .await;
    env.wait_journal("F-WEB", names::INVOICE_REGISTERED, 1).await;
    // The pre-due note, on Wednesday 11 March, with the page's link.
    env.run_until(date(2026, 3, 11)).await;
    let emails = env.mail.wait_for_emails(1).await;
    let url = emails[0]
        .text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{public}/p/")))
        .unwrap_or_else(|| panic!("the page's link in {}", emails[0].text))
        .to_string();

    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("portal-chromedriver.log");
    let browser = open_browser(&chromium, &chromedriver, &log).await;
    let c = &browser.client;
    c.goto(&url).await.unwrap();
    let rows = c
        .find(Locator::Css("#invoices"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(rows.contains("F-WEB") && rows.contains("780.00"), "{rows}");

    // The promise: a date typed into the form (set as the date input's value), sent.
    c.execute(
        "document.querySelector('#promise input[name=date]').value = '2026-03-20'",
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Css("#promise button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the page after the promise", DEADLINE, || async {
        Ok(c.current_url().await?.as_str().contains("outcome=applied"))
    })
    .await
    .unwrap();
    let notice = c
        .find(Locator::Css("#notice"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        notice.contains("promise") || notice.contains("promesse"),
        "{notice}"
    );
    let rows = c
        .find(Locator::Css("#invoices"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(rows.contains("paused") || rows.contains("suspendues"), "{rows}");

    // The sequence is paused, journaled as from the customer page.
    let paused = env.journal_details("F-WEB", names::INVOICE_PAUSED).await;
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0]["promised_on"], "2026-03-20");
    assert!(paused[0].to_string().contains("customer page"), "{paused:?}");
    browser.client.close().await.unwrap();
    env.stop().await;
}
