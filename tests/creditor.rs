//! The creditor's identity at start: a service will not send reminders that ask customers to
//! pay the example account, nor into an IBAN whose checksum is wrong. Both are refused before
//! any connection is made, with the variables to set; as is an `AMQP_URL` naming a node that
//! is not an AMQP URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use relance_tests::relance_binary;

/// `relance run scheduler` with only `vars` set, until it exits or shows it got past its
/// checks (its `starting` line: it then waits for a database that is not there, and is
/// stopped). Whether it exited in failure, and what it wrote to standard error.
async fn run_scheduler(vars: &[(&str, &str)]) -> (bool, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(relance_binary())
        .args(["run", "scheduler"])
        .env_clear()
        // Nothing listens there: a service that got past its checks waits for it.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/relance_nowhere")
        .env("RELANCE_LOG_FORMAT", "text")
        .env("RUST_LOG", "info")
        .envs(vars.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running relance");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            stderr.push_str(&line);
            stderr.push('\n');
            if line.contains("starting") {
                return false;
            }
        }
        true
    })
    .await
    .expect("relance neither failed nor started within 60 s");
    let failed = read && !child.wait().await.expect("waiting for relance").success();
    let _ = child.kill().await;
    (failed, stderr)
}

#[tokio::test]
async fn a_service_refuses_to_start_as_the_example_creditor() {
    let (failed, stderr) = run_scheduler(&[]).await;
    assert!(failed, "started with the example creditor: {stderr}");
    for variable in [
        "RELANCE_CREDITOR_NAME",
        "RELANCE_CREDITOR_IBAN",
        "RELANCE_CREDITOR_SIREN",
    ] {
        assert!(
            stderr.contains(variable),
            "the refusal does not name {variable}: {stderr}"
        );
    }
    assert!(stderr.contains("RELANCE_EXAMPLE_CREDITOR=allow"), "{stderr}");

    // Only what is still the example's is named.
    let (failed, stderr) = run_scheduler(&[
        ("RELANCE_CREDITOR_NAME", "Menuiserie Durand SARL"),
        ("RELANCE_CREDITOR_IBAN", "DE89 3704 0044 0532 0130 00"),
    ])
    .await;
    assert!(failed);
    assert!(stderr.contains("RELANCE_CREDITOR_SIREN"), "{stderr}");
    assert!(!stderr.contains("RELANCE_CREDITOR_NAME,"), "{stderr}");
    assert!(!stderr.contains("(RELANCE_CREDITOR_IBAN"), "{stderr}");
}

#[tokio::test]
async fn a_creditor_of_its_own_gets_past_the_check() {
    // Its own identity: the service starts (and waits for its database).
    let (failed, stderr) = run_scheduler(&[
        ("RELANCE_CREDITOR_NAME", "Menuiserie Durand SARL"),
        ("RELANCE_CREDITOR_IBAN", "DE89 3704 0044 0532 0130 00"),
        ("RELANCE_CREDITOR_SIREN", "732 829 320"),
    ])
    .await;
    assert!(!failed, "refused a creditor of its own: {stderr}");
    assert!(stderr.contains("starting"), "{stderr}");

    // The example identity, allowed for a demo: the same.
    let (failed, stderr) = run_scheduler(&[("RELANCE_EXAMPLE_CREDITOR", "allow")]).await;
    assert!(!failed && stderr.contains("starting"), "{stderr}");
}

#[tokio::test]
async fn an_iban_with_a_wrong_checksum_is_refused_at_start() {
    // The example IBAN with two digits swapped.
    let (failed, stderr) = run_scheduler(&[
        ("RELANCE_EXAMPLE_CREDITOR", "allow"),
        ("RELANCE_CREDITOR_IBAN", "FR76 3000 6000 0112 3456 7890 198"),
    ])
    .await;
    assert!(failed, "{stderr}");
    assert!(
        stderr.contains("RELANCE_CREDITOR_IBAN=\"FR76 3000 6000 0112 3456 7890 198\" is not a valid IBAN"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_cluster_node_that_is_not_an_amqp_url_is_refused_at_start() {
    let (failed, stderr) = run_scheduler(&[
        ("RELANCE_EXAMPLE_CREDITOR", "allow"),
        (
            "AMQP_URL",
            "amqp://relance:pw-7@rabbit-1:5672/%2f,amqp://relance:pw-7@rabbit-2:5672/%2f,amqps//rabbit-3",
        ),
    ])
    .await;
    assert!(failed, "{stderr}");
    assert!(stderr.contains("AMQP_URL: node 3 of 3"), "{stderr}");
    assert!(!stderr.contains("pw-7"), "{stderr}");
}
