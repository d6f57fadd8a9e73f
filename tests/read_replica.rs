//! `RELANCE_READ_DATABASE_URL` on a real streaming replica (a private primary and its hot
//! standby, so nothing else on the machine is touched): the console's pages, the collections
//! gauges, `relance invoices` and `relance journal verify` show what the replica has, while every write (the
//! pipeline's, a console action's) still goes to the primary. Replay on the replica is paused
//! to make the two differ, as a replica that lags would.
//!
//! Its own test binary: the metrics recorder is one per process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::Duration;
use relance_contracts::names;
use relance_tests::private_postgres::PrivatePostgres;
use relance_tests::{date, free_port, invoice_issued, scrape_metrics, wait_for, TestEnv, DEADLINE};
use serde_json::{json, Value};

/// The sum of the samples of the metric `name` in a Prometheus exposition.
fn metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.split(['{', ' ']).next() == Some(name))
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(_, value)| value.parse::<f64>().unwrap())
        .sum()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// The invoice numbers the console's tracking table lists.
async fn console_numbers(http: &reqwest::Client, base: &str) -> Vec<String> {
    let page = get_json(http, &format!("{base}/api/invoices")).await;
    let mut numbers: Vec<String> = page["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_str().unwrap().to_string())
        .collect();
    numbers.sort();
    numbers
}

/// The invoice numbers `relance invoices --format json` lists, with these variables set.
async fn cli_numbers(env: &TestEnv, vars: &[(&str, &str)]) -> Vec<String> {
    let out = env.cli_output_with(&["invoices", "--format", "json"], vars).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut numbers: Vec<String> = rows
        .iter()
        .map(|r| r["number"].as_str().unwrap().to_string())
        .collect();
    numbers.sort();
    numbers
}

/// How many journal entries `relance journal verify --format json` checked (and that it
/// found them intact).
async fn journal_entries(env: &TestEnv, vars: &[(&str, &str)]) -> u64 {
    let out = env
        .cli_output_with(&["journal", "verify", "--format", "json"], vars)
        .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["intact"], true, "{report}");
    report["entries"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_the_gauges_and_the_reports_read_the_replica_and_every_write_goes_to_the_primary() {
    let primary = PrivatePostgres::start().expect("a private PostgreSQL server");
    let replica = primary.start_replica().expect("a streaming replica of it");
    let addr = format!("127.0.0.1:{}", free_port());
    let env = TestEnv::try_start_with_reads_on(
        &primary.url(),
        &replica.url(),
        1,
        &[
            ("RELANCE_HEALTH_ADDR", &addr),
            ("RELANCE_METRICS_INTERVAL_MS", "100"),
            // Nothing published: the outbox's backlog grows with each event, on the primary
            // first, so that the gauge shows whose it counts.
            ("RELANCE_OUTBOX_RELAY", "off"),
        ],
    )
    .await
    .expect("starting the test environment");
    let database = env.database_url.rsplit('/').next().unwrap().to_string();
    let read_url = format!("{}/{database}", replica.url());
    let on_replica = [("RELANCE_READ_DATABASE_URL", read_url.as_str())];
    let replica_db = relance_storage::connect(&read_url, 1).await.unwrap();
    let http = reqwest::Client::new();
    let base = env.start_console(None).await.unwrap();

    // F-R1 is registered on the primary and reaches the replica: everyone sees it.
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-R1", "1200.00", date(2026, 3, 2), date(2026, 4, 15)),
    )
    .await;
    env.wait_journal("F-R1", names::INVOICE_REGISTERED, 1).await;
    wait_for("the console and the gauges to show F-R1", DEADLINE, || async {
        Ok(console_numbers(&http, &base).await == ["F-R1"]
            && metric(&scrape_metrics(&http, &addr).await, "relance_invoices") == 1.0)
    })
    .await
    .unwrap();

    // The replica stops replaying: from now on it lags the primary.
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&replica_db)
        .await
        .unwrap();
    wait_for("the replica's replay to pause", DEADLINE, || async {
        let state: String = sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()")
            .fetch_one(&replica_db)
            .await?;
        Ok(state == "paused")
    })
    .await
    .unwrap();
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-R2", "800.00", date(2026, 3, 2), date(2026, 4, 15)),
    )
    .await;
    env.wait_journal("F-R2", names::INVOICE_REGISTERED, 1).await;

    // An hour later (nothing falls due), the gauges are computed again: on the replica, they
    // still count one invoice.
    let later = relance_domain::Clock::now(&env.clock) + Duration::hours(1);
    env.move_clock(later).await;
    // The replica has not replayed F-R2's changes: the gauges say it lags (the time since the
    // last transaction it replayed, F-R1's registration or later).
    wait_for(
        "the gauges computed after F-R2, with the replica lagging",
        DEADLINE,
        || async {
            let metrics = scrape_metrics(&http, &addr).await;
            Ok(
                metric(&metrics, "relance_collections_gauges_refreshed_timestamp_seconds")
                    >= later.timestamp() as f64
                    && metric(&metrics, "relance_read_database_lag_seconds") > 0.0,
            )
        },
    )
    .await
    .unwrap();
    let metrics = scrape_metrics(&http, &addr).await;
    assert_eq!(metric(&metrics, "relance_invoices"), 1.0, "{metrics}");
    // The outbox's backlog is the primary's (F-R2's events included), not the replica's.
    let backlog = |db: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&db)
            .await
            .unwrap() as f64
    };
    let (on_primary, on_the_replica) = (backlog(env.db.clone()).await, backlog(replica_db.clone()).await);
    assert!(
        on_primary > on_the_replica,
        "{on_primary} unpublished on the primary, {on_the_replica} on the replica"
    );
    wait_for(
        "the outbox backlog gauge to count the primary's",
        DEADLINE,
        || async {
            Ok(metric(
                &scrape_metrics(&http, &addr).await,
                "relance_outbox_backlog_messages",
            ) == on_primary)
        },
    )
    .await
    .unwrap();
    // The gauges' leader holds its lock on the primary, not on the replica.
    let lock_holders = |db: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
             AND classid::bigint = (($1 >> 32) & 4294967295) AND objid::bigint = ($1 & 4294967295)",
        )
        .bind(relance_storage::locks::GAUGES)
        .fetch_one(&db)
        .await
        .unwrap()
    };
    assert_eq!(
        lock_holders(env.db.clone()).await,
        1,
        "the gauges lock on the primary"
    );
    assert_eq!(
        lock_holders(replica_db.clone()).await,
        0,
        "the gauges lock on the replica"
    );
    // The console and `relance invoices` on the replica do not know F-R2; on the primary
    // the command does.
    assert_eq!(console_numbers(&http, &base).await, ["F-R1"]);
    let page = http
        .get(format!("{base}/api/invoices/F-R2"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 404);
    assert_eq!(cli_numbers(&env, &on_replica).await, ["F-R1"]);
    assert_eq!(cli_numbers(&env, &[]).await, ["F-R1", "F-R2"]);
    // `relance journal verify` checks the replica's journal: intact, without F-R2's entries.
    let (on_replica_entries, on_primary_entries) = (
        journal_entries(&env, &on_replica).await,
        journal_entries(&env, &[]).await,
    );
    assert!(
        0 < on_replica_entries && on_replica_entries < on_primary_entries,
        "{on_replica_entries} entries verified on the replica, {on_primary_entries} on the primary"
    );

    // A console action on F-R2, which its pages do not show yet, is checked against the
    // primary, published, applied by the payments listener and waited for on the primary.
    let answer = http
        .post(format!("{base}/api/invoices/F-R2/actions"))
        .json(&json!({ "action": "pause", "reason": "the customer asked for a copy" }))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["applied"], true, "{answer}");
    assert!(
        answer["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == names::INVOICE_PAUSED),
        "{answer}"
    );

    // Replay resumes: the replica catches up, and everything shows F-R2, paused.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&replica_db)
        .await
        .unwrap();
    wait_for("the console and the gauges to show F-R2", DEADLINE, || async {
        let metrics = scrape_metrics(&http, &addr).await;
        Ok(console_numbers(&http, &base).await == ["F-R1", "F-R2"]
            && metric(&metrics, "relance_invoices") == 2.0
            && metric(&metrics, "relance_read_database_lag_seconds") < 1.0)
    })
    .await
    .unwrap();
    assert_eq!(cli_numbers(&env, &on_replica).await, ["F-R1", "F-R2"]);

    let invoice = get_json(&http, &format!("{base}/api/invoices/F-R2")).await;
    assert_eq!(invoice["status"], "paused", "{invoice}");

    replica_db.close().await;
    env.stop().await;
}
