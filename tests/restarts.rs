//! PostgreSQL restarts under running services, on a private server (so nothing else on the
//! machine is disturbed): the services report not-ready while it is down, lose nothing that
//! arrived meanwhile, and keep "nothing after payment" across the outage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use relance_contracts::names;
use relance_tests::private_postgres::PrivatePostgres;
use relance_tests::{date, free_port, invoice_issued, payment_received, wait_for, TestEnv, DEADLINE};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

/// How long the database stays down: longer than the whole retry budget of a message
/// (4 attempts of up to 500 ms for a connection, with retries 100 ms to 400 ms apart, about
/// 3 s), so that only waiting the outage out without spending retries keeps the payments
/// that arrive meanwhile.
const OUTAGE: StdDuration = StdDuration::from_secs(6);

async fn readiness(http: &reqwest::Client, port: u16) -> Option<(u16, Value)> {
    let response = http
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .timeout(StdDuration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// Polls the readiness probe until it answers `want`; returns its body.
async fn wait_ready(http: &reqwest::Client, port: u16, want: bool) -> Value {
    wait_for(
        &format!("/health/ready to say ready={want}"),
        DEADLINE,
        || async {
            Ok(readiness(http, port)
                .await
                .is_some_and(|(status, body)| (status == 200) == want && body["ready"] == Value::Bool(want)))
        },
    )
    .await
    .unwrap();
    readiness(http, port)
        .await
        .map(|(_, body)| body)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_loses_nothing_and_readiness_tells_it() {
    let pg = PrivatePostgres::start().expect("a private PostgreSQL server");
    let health_port = free_port();
    let health_addr = format!("127.0.0.1:{health_port}");
    let env = TestEnv::try_start_on(
        &pg.url(),
        1,
        &[
            ("RELANCE_HEALTH_ADDR", &health_addr),
            ("RELANCE_DB_ACQUIRE_TIMEOUT_MS", "500"),
        ],
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    wait_for("/health/live to answer 200", DEADLINE, || async {
        let live = http.get(format!("http://{health_addr}/health/live")).send().await;
        Ok(live.is_ok_and(|r| r.status().as_u16() == 200))
    })
    .await
    .unwrap();
    let ready = wait_ready(&http, health_port, true).await;
    assert_eq!(ready["database"], Value::Bool(true), "{ready}");

    // Thirty invoices due on 10 March: their courteous note is due on 5 March, 09:00 Paris.
    let numbers: Vec<String> = (0..30).map(|i| format!("PG-{i:02}")).collect();
    for number in &numbers {
        env.publish(
            names::INVOICE_ISSUED,
            &invoice_issued(number, "450.00", date(2026, 3, 1), date(2026, 3, 10)),
        )
        .await;
    }
    wait_for("30 invoices registered", DEADLINE, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices")
            .fetch_one(&env.db)
            .await?;
        Ok(n == 30)
    })
    .await
    .unwrap();

    // The database goes down. While it is down, ten payments arrive and the note falls due.
    pg.stop().unwrap();
    let down = wait_ready(&http, health_port, false).await;
    assert_eq!(down["database"], Value::Bool(false), "{down}");
    let paid = &numbers[..10];
    for number in paid {
        env.publish(
            names::PAYMENT_RECEIVED,
            &payment_received(&format!("P-{number}"), number, "450.00", date(2026, 3, 5)),
        )
        .await;
    }
    let send_time: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 3, 5, 8, 0, 0).single().unwrap();
    env.clock.set(send_time);
    tokio::time::sleep(OUTAGE).await; // the fault's duration, not a synchronisation
    pg.start_again().unwrap();
    let up = wait_ready(&http, health_port, true).await;
    assert_eq!(up["database"], Value::Bool(true), "{up}");

    wait_for("the ten payments recorded", DEADLINE, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
            .fetch_one(&env.db)
            .await?;
        Ok(n == 10)
    })
    .await
    .unwrap();
    env.set_time(send_time + Duration::hours(1)).await;
    // Twenty notes and ten thank-yous (a paid invoice may have had its note just before).
    let emails = env.mail.wait_for_emails(30).await;
    env.idle().await;

    let mut per_invoice: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for email in &emails {
        let number = numbers
            .iter()
            .find(|n| email.to.iter().any(|to| to.contains(&n.to_lowercase())))
            .unwrap_or_else(|| panic!("an email to nobody expected: {:?}", email.to));
        per_invoice
            .entry(number.clone())
            .or_default()
            .push(email.subject.clone());
    }
    for number in &numbers[10..] {
        let got = per_invoice.get(number).map(Vec::len).unwrap_or(0);
        assert_eq!(got, 1, "{number} must get exactly its note: {per_invoice:?}");
    }
    // No reminder reached the server after its invoice's payment was recorded.
    let recorded: BTreeMap<String, DateTime<Utc>> = sqlx::query_as::<_, (String, DateTime<Utc>)>(
        "SELECT i.number, p.recorded_wall_at FROM payments p JOIN invoices i ON i.id = p.invoice_id",
    )
    .fetch_all(&env.db)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let steps: BTreeMap<String, (String, String)> = sqlx::query_as::<_, (String, String, String)>(
        "SELECT trim(both '<>' from r.message_id), i.number, s.kind FROM rendered_messages r
         JOIN reminder_steps s ON s.id = r.step_id JOIN invoices i ON i.id = s.invoice_id",
    )
    .fetch_all(&env.db)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, number, kind)| (id, (number, kind)))
    .collect();
    let mut thanks = 0;
    for email in &emails {
        let (number, kind) = &steps[email.message_id.trim_matches(|c| c == '<' || c == '>')];
        if kind == "thanks" {
            thanks += 1;
            continue;
        }
        if let (Some(paid_at), Some(received)) = (recorded.get(number), email.received_at) {
            assert!(
                received <= *paid_at,
                "a reminder for {number} reached the server at {received}, after its payment at {paid_at}"
            );
        }
    }
    assert_eq!(thanks, 10, "one thank-you per paid invoice");
    let unfinished: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reminder_steps WHERE due_at <= $1 AND status IN ('pending', 'queued', 'rendered', 'sending')",
    )
    .bind(send_time + Duration::hours(1))
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(unfinished, 0, "every due step ends in a final state");
    assert!(env.dead_letters().await.is_empty(), "nothing was dead-lettered");
    env.stop().await;
}

/// How many times the process's log says it retried the database at start.
fn start_retries(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("database unavailable at start; retrying")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_started_before_postgresql_wait_for_it_not_ready_then_work() {
    let pg = PrivatePostgres::start().expect("a private PostgreSQL server");
    // The test's database, exchanges and queues exist; no service runs in this process.
    let env = TestEnv::try_start_on(&pg.url(), 0, &[]).await.unwrap();
    pg.stop().unwrap();

    // Every service, as one `relance run all` process, started while the server is down.
    let health_port = free_port();
    let dir = std::env::temp_dir().join(format!("relance-start-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("relance.log");
    let start = relance_tests::start_time().to_rfc3339();
    let process = tokio::process::Command::new(relance_tests::relance_binary())
        .args(["run", "all"])
        .env("DATABASE_URL", &env.database_url)
        .env("AMQP_URL", relance_tests::amqp_url())
        .env("RELANCE_NAMESPACE", &env.names.namespace)
        .env("RELANCE_QUEUE_TYPE", relance_tests::TEST_QUEUE_TYPE)
        .env("RELANCE_QUEUE_EXPIRES_MS", "600000")
        .env("RELANCE_EXAMPLE_CREDITOR", "allow")
        .env("RELANCE_HEALTH_ADDR", format!("127.0.0.1:{health_port}"))
        .env("RELANCE_DB_ACQUIRE_TIMEOUT_MS", "500")
        .env("RELANCE_CLOCK", "simulated")
        .env("RELANCE_CLOCK_START", &start)
        .env("RELANCE_POLICY_FILE", relance_tests::POLICY_EMAIL_ONLY)
        .env("SMTP_URL", format!("smtp://127.0.0.1:{}", env.mail.smtp_port))
        .env("RELANCE_MAIL_DIR", dir.join("mail"))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("starting relance run all");

    // It retries (twice for each of its six services), stays up, and says it is not ready.
    let process = std::sync::Mutex::new(process);
    wait_for(
        "the services to retry the database at start",
        DEADLINE,
        || async { Ok(start_retries(&log) >= 12 || process.lock().unwrap().try_wait()?.is_some()) },
    )
    .await
    .unwrap();
    let mut process = process.into_inner().unwrap();
    assert!(
        process.try_wait().unwrap().is_none(),
        "relance exited while the database was down: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let http = reqwest::Client::new();
    let down = wait_ready(&http, health_port, false).await;
    assert_eq!(down["database"], Value::Bool(false), "{down}");
    assert!(process.try_wait().unwrap().is_none(), "relance is still running");

    // The server comes up: the services connect, become ready and take in an invoice.
    pg.start_again().unwrap();
    let up = wait_ready(&http, health_port, true).await;
    assert_eq!(up["database"], Value::Bool(true), "{up}");
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("LATE-PG-1", "300.00", date(2026, 3, 1), date(2026, 3, 31)),
    )
    .await;
    let seen = std::sync::Mutex::new(Vec::new());
    wait_for("invoice.registered for LATE-PG-1", DEADLINE, || async {
        let events = env.events().await;
        let mut seen = seen.lock().unwrap();
        seen.extend(events);
        Ok(seen
            .iter()
            .any(|e| e.event_type == names::INVOICE_REGISTERED && e.invoice_number == "LATE-PG-1"))
    })
    .await
    .unwrap();

    process.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    env.stop().await;
}
