//! Readiness that sees a stuck loop: with every loop beating, `/health/ready` answers 200;
//! when the scheduler's pass hangs (here, behind a lock a test transaction holds on the
//! invoices table, as a long migration or a stuck session would), it answers 503 and names
//! the loop, `relance_loop_stalled` says so, and the other loops are not blamed; once the
//! lock goes, readiness comes back.
//!
//! Its own test binary: the metrics recorder is one per process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use relance_tests::{wait_for, TestEnv, DEADLINE};
use serde_json::Value;
use std::sync::{Arc, Mutex};

async fn ready(http: &reqwest::Client, addr: &str) -> (u16, Value) {
    match http.get(format!("http://{addr}/health/ready")).send().await {
        Ok(answer) => {
            let status = answer.status().as_u16();
            (status, answer.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Waits until `/health/ready` answers `status`; returns its body.
async fn wait_ready(http: &reqwest::Client, addr: &str, status: u16) -> Value {
    let body = Arc::new(Mutex::new(Value::Null));
    let outcome = wait_for(&format!("/health/ready to answer {status}"), DEADLINE, || {
        let (http, addr, body) = (http.clone(), addr.to_string(), body.clone());
        async move {
            let (got, json) = ready(&http, &addr).await;
            *body.lock().unwrap() = json;
            Ok(got == status)
        }
    })
    .await;
    let body = body.lock().unwrap().clone();
    assert!(outcome.is_ok(), "{outcome:?}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_a_loop_that_stopped_completing() {
    let addr = format!("127.0.0.1:{}", relance_tests::free_port());
    let env = TestEnv::try_start(
        1,
        &[("RELANCE_HEALTH_ADDR", &addr), ("RELANCE_LOOP_STALL_MS", "3000")],
    )
    .await
    .expect("starting the test environment");
    let http = reqwest::Client::new();
    let body = wait_ready(&http, &addr, 200).await;
    assert_eq!(body["stalled"], serde_json::json!([]), "{body}");
    for (service, name) in [
        ("scheduler", "scheduler pass"),
        ("scheduler", "outbox relay"),
        ("renderer", "consumer renderer.jobs"),
        ("payments", "consumer payments.payments"),
    ] {
        assert!(
            body["loops"][service][name].is_number(),
            "{service}: {name} in {body}"
        );
    }
    // One outbox relay for the process, the first service's.
    for service in ["renderer", "sender", "payments"] {
        assert!(
            body["loops"][service]["outbox relay"].is_null(),
            "{service} runs a relay of its own: {body}"
        );
    }

    // Freeze the scheduler's pass: it waits on the invoices table.
    let mut lock = env.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE invoices IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let body = wait_ready(&http, &addr, 503).await;
    assert_eq!(
        body["stalled"],
        serde_json::json!(["scheduler: scheduler pass"]),
        "{body}"
    );
    assert_eq!(body["database"], true, "{body}");
    assert!(
        body["loops"]["scheduler"]["scheduler pass"].as_f64().unwrap() >= 3.0,
        "{body}"
    );
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"relance_loop_stalled{service="scheduler",loop="scheduler pass"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"relance_loop_stalled{service="scheduler",loop="outbox relay"} 0"#),
        "{metrics}"
    );

    // The lock goes: the pass completes again, and readiness comes back.
    lock.rollback().await.unwrap();
    let body = wait_ready(&http, &addr, 200).await;
    assert_eq!(body["stalled"], serde_json::json!([]), "{body}");
    env.stop().await;
}

/// The line `relance run scheduler` logs to a pipe when the database does not answer, with
/// `RELANCE_LOG_FORMAT` set to `format` (or unset); also checks that no line before it has
/// a colour code.
async fn unavailable_database_line(format: Option<&str>) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut command = tokio::process::Command::new(relance_tests::relance_binary());
    command
        .args(["run", "scheduler"])
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/relance_nowhere")
        .env("RELANCE_EXAMPLE_CREDITOR", "allow")
        .env("RUST_LOG", "info")
        .env_remove("RELANCE_LOG_FORMAT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(format) = format {
        command.env("RELANCE_LOG_FORMAT", format);
    }
    let mut child = command.spawn().expect("starting relance");
    let stderr = child.stderr.take().expect("its stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.expect("reading stderr") {
            assert!(
                !line.contains('\u{1b}'),
                "no colour codes off a terminal: {line:?}"
            );
            if line.contains("database unavailable at start; retrying") {
                return line;
            }
        }
        panic!("relance stopped before saying the database is unavailable")
    })
    .await
    .expect("the warning in time");
    child.kill().await.expect("stopping relance");
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_pipe_are_json_lines_by_default_and_text_without_colour_on_request() {
    let line = unavailable_database_line(None).await;
    let json: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(json["level"], "WARN", "{line}");
    assert_eq!(
        json["fields"]["message"], "database unavailable at start; retrying",
        "{line}"
    );
    assert!(!line.contains('\u{1b}'), "{line:?}");

    let line = unavailable_database_line(Some("text")).await;
    assert!(line.contains("WARN"), "{line}");
    assert!(
        !line.contains('\u{1b}'),
        "no colour codes off a terminal: {line:?}"
    );
    assert!(serde_json::from_str::<Value>(&line).is_err(), "{line}");
}
