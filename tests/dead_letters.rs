//! Dead letters as an operator meets them, through the `relance` binary: a refused message
//! is listed with its queue and reason, shown in full, replayed once to where it was first
//! published (and, refused again, dead-lettered as a new record), replayed once even by two
//! operators at the same moment, and discarded while keeping its record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use relance_contracts::names;
use relance_tests::{date, open_form_page, payment_received, wait_for, CliRun, FormPage, TestEnv, DEADLINE};
use serde_json::Value;

async fn relance(env: &TestEnv, args: &[&str]) -> CliRun {
    env.cli(args).await
}

/// `relance dead-letters list --status any --format json`, parsed.
async fn listed(env: &TestEnv) -> Vec<Value> {
    let cli = relance(
        env,
        &["dead-letters", "list", "--status", "any", "--format", "json"],
    )
    .await;
    assert!(cli.ok, "list failed: {}", cli.stderr);
    serde_json::from_str::<Vec<Value>>(&cli.stdout).expect("list --format json is a JSON array")
}

/// Polls the list until `pick` finds a record.
async fn wait_listed(env: &TestEnv, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        if let Some(found) = listed(env).await.into_iter().find(|l| pick(l)) {
            return found;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A queue of the test's own on the inbound exchange: counts what reaches `payment.received`.
async fn watch_payments(env: &TestEnv) -> String {
    let queue = format!("{}.test-watch-payments", env.names.namespace);
    let channel = env.connection.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-expires"), AMQPValue::LongLongInt(600_000));
    channel
        .queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            env.names.inbound_exchange().as_str().into(),
            names::PAYMENT_RECEIVED.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    queue
}

/// Takes every message off `queue`: (message id, `x-relance-replay-of` header).
async fn take_all(env: &TestEnv, queue: &str) -> Vec<(String, Option<String>)> {
    let channel = env.connection.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let p = &m.delivery.properties;
        let replay_of = p.headers().as_ref().and_then(|h| {
            h.inner().get(names::HEADER_REPLAY_OF).and_then(|v| match v {
                AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
                _ => None,
            })
        });
        let id = p
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        out.push((id, replay_of));
    }
    out
}

async fn journal_count(env: &TestEnv, action: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM journal WHERE invoice_number IS NULL AND action = $1")
        .bind(action)
        .fetch_one(&env.db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_replayed_once_to_its_origin_and_discarded_with_a_record() {
    let env = TestEnv::start(1).await;
    let watch = watch_payments(&env).await;
    // A payment no rule can accept: the payments listener dead-letters it at once.
    let mut bad = payment_received("P-BAD", "F-NONE", "-5.00", date(2026, 3, 2));
    bad["event_id"] = "evt-bad-payment".into();
    env.publish(names::PAYMENT_RECEIVED, &bad).await;

    let first = wait_listed(&env, "the refused payment", |l| {
        l["message_id"] == "evt-bad-payment"
    })
    .await;
    assert_eq!(first["status"], "pending");
    assert_eq!(first["queue"], env.names.payments_queue());
    assert_eq!(first["exchange"], env.names.inbound_exchange());
    assert_eq!(first["routing_key"], names::PAYMENT_RECEIVED);
    assert!(
        first["reason"].as_str().unwrap().contains("payment.amount"),
        "{first}"
    );
    let id = first["id"].as_i64().unwrap().to_string();

    // Pending ones are what `list` shows by default, with the reason in the table.
    let table = relance(&env, &["dead-letters", "list"]).await;
    assert!(table.ok, "{}", table.stderr);
    assert!(
        table.stdout.contains(&env.names.payments_queue()),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("payment.amount"), "{}", table.stdout);
    let shown = relance(&env, &["dead-letters", "show", &id, "--format", "json"]).await;
    assert!(shown.ok, "{}", shown.stderr);
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();
    let body: Value = serde_json::from_str(shown["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["payment"]["id"], "P-BAD");

    // Replayed: once to the original exchange and key, with its original id.
    assert_eq!(take_all(&env, &watch).await.len(), 1, "the original publish");
    let replay = relance(&env, &["dead-letters", "replay", &id]).await;
    assert!(replay.ok, "{}", replay.stderr);
    assert_eq!(
        take_all(&env, &watch).await,
        vec![("evt-bad-payment".to_string(), Some(id.clone()))]
    );
    // Refused again by the listener: a new record, naming the one it replays.
    let again = wait_listed(&env, "the replay dead-lettered again", |l| {
        l["replay_of"].as_i64() == first["id"].as_i64()
    })
    .await;
    assert_eq!(again["status"], "pending");
    let records = listed(&env).await;
    let original = records.iter().find(|l| l["id"] == first["id"]).unwrap();
    assert_eq!(original["status"], "replayed");
    // A second replay of the same record publishes nothing.
    let twice = relance(&env, &["dead-letters", "replay", &id]).await;
    assert!(!twice.ok);
    assert!(twice.stderr.contains("replayed"), "{}", twice.stderr);
    assert!(take_all(&env, &watch).await.is_empty());

    // Two operators replay the new record at the same moment: it is published once. Each
    // command returns only after the broker confirmed what it published.
    let again_id = again["id"].as_i64().unwrap().to_string();
    let args = ["dead-letters", "replay", again_id.as_str()];
    let (a, b) = tokio::join!(relance(&env, &args), relance(&env, &args));
    assert!(a.ok ^ b.ok, "exactly one replays: {} / {}", a.stderr, b.stderr);
    assert_eq!(
        take_all(&env, &watch).await,
        vec![("evt-bad-payment".to_string(), Some(again_id.clone()))]
    );
    let third = wait_listed(&env, "the second replay dead-lettered", |l| {
        l["replay_of"].as_i64() == again["id"].as_i64()
    })
    .await;
    assert_eq!(journal_count(&env, "dead_letter.replayed").await, 2);

    // Discarded: gone from the pending list, kept as a record, journaled.
    let third_id = third["id"].as_i64().unwrap().to_string();
    let discard = relance(&env, &["dead-letters", "discard", &third_id]).await;
    assert!(discard.ok, "{}", discard.stderr);
    let pending = relance(&env, &["dead-letters", "list", "--format", "json"]).await;
    let pending: Vec<Value> = serde_json::from_str(&pending.stdout).unwrap();
    assert!(pending.iter().all(|l| l["id"] != third["id"]), "{pending:?}");
    let kept = listed(&env).await;
    let kept = kept.iter().find(|l| l["id"] == third["id"]).unwrap();
    assert_eq!(kept["status"], "discarded");
    assert!(kept["discarded_at"].is_string());
    assert_eq!(journal_count(&env, "dead_letter.discarded").await, 1);
    // A discarded one is not replayed.
    let late = relance(&env, &["dead-letters", "replay", &third_id]).await;
    assert!(!late.ok && late.stderr.contains("discarded"), "{}", late.stderr);

    // The journal entries about no invoice keep the journal verifiable.
    let verify = relance(&env, &["journal", "verify", "--format", "json"]).await;
    assert!(verify.ok, "{}", verify.stderr);
    let verify: Value = serde_json::from_str(&verify.stdout).unwrap();
    assert_eq!(verify["intact"], true, "{verify}");

    let channel = env.connection.create_channel().await.unwrap();
    let _ = channel
        .queue_delete(watch.as_str().into(), QueueDeleteOptions::default())
        .await;
    env.stop().await;
}

/// A message whose routing key no queue takes is dead-lettered by the inbound exchange
/// itself: listed as unroutable, with the exchange it was published to; `replay --all
/// --reason` replays every pending one matching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_messages_are_listed_and_replayed_all_at_once_by_reason() {
    let env = TestEnv::start(1).await;
    let body = br#"{"version":1,"event_id":"evt-unknown"}"#;
    env.publish_raw(&env.names.inbound_exchange(), "invoice.unheard_of", body)
        .await;
    env.publish_raw(&env.names.inbound_exchange(), "invoice.unheard_of", body)
        .await;
    wait_for("two unroutable dead letters", DEADLINE, || async {
        Ok(listed(&env).await.len() >= 2)
    })
    .await
    .unwrap();
    let letters = listed(&env).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    for l in &letters {
        assert!(l["queue"].is_null(), "{l}");
        assert_eq!(l["exchange"], env.names.inbound_exchange());
        assert_eq!(l["routing_key"], "invoice.unheard_of");
        assert!(l["reason"].as_str().unwrap().starts_with("unroutable"), "{l}");
    }
    let all = relance(
        &env,
        &["dead-letters", "replay", "--all", "--reason", "UNROUTABLE*"],
    )
    .await;
    assert!(all.ok, "{}", all.stderr);
    assert!(all.stdout.contains("2 dead letter(s) replayed"), "{}", all.stdout);
    // Still unroutable: each comes back as a new record naming the one it replays.
    wait_for("the replays dead-lettered again", DEADLINE, || async {
        Ok(listed(&env)
            .await
            .iter()
            .filter(|l| l["replay_of"].is_i64())
            .count()
            == 2)
    })
    .await
    .unwrap();
    let csv = relance(
        &env,
        &["dead-letters", "list", "--status", "any", "--format", "csv"],
    )
    .await;
    assert!(
        csv.stdout
            .starts_with("id,dead_lettered_at,status,queue,exchange,routing_key"),
        "{}",
        csv.stdout
    );
    assert_eq!(csv.stdout.lines().count(), 5, "{}", csv.stdout);
    env.stop().await;
}

/// The console's dead-letters page and API: the same records as the command (the console
/// drains the queue before listing), the message in full, Replay and Discard through the
/// same functions (once; the form needs its CSRF token, the API the console's token when it
/// has one and refuses another site's page), seen by `relance dead-letters list` afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_shows_replays_and_discards_dead_letters_like_the_command() {
    let env = TestEnv::start(1).await;
    let watch = watch_payments(&env).await;
    for event in ["evt-bad-1", "evt-bad-2"] {
        let mut bad = payment_received("P-BAD", "F-NONE", "-5.00", date(2026, 3, 2));
        bad["event_id"] = event.into();
        env.publish(names::PAYMENT_RECEIVED, &bad).await;
    }
    let base = env.start_console(None).await.unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let api = |path: String| {
        let client = client.clone();
        async move {
            let response = client.get(&path).send().await.unwrap();
            assert_eq!(response.status(), 200, "GET {path}");
            response.json::<Value>().await.unwrap()
        }
    };
    // Nothing drains the queue but the console (and the command): it lists both.
    let url = format!("{base}/api/dead-letters");
    wait_for("both refused payments in the console", DEADLINE, || async {
        Ok(api(url.clone()).await["dead_letters"].as_array().unwrap().len() == 2)
    })
    .await
    .unwrap();
    let listed_now = api(url.clone()).await;
    let letters = listed_now["dead_letters"].as_array().unwrap();
    assert!(listed_now["drain_error"].is_null(), "{listed_now}");
    let by_message = |m: &str| letters.iter().find(|l| l["message_id"] == m).unwrap().clone();
    let (first, second) = (by_message("evt-bad-1"), by_message("evt-bad-2"));
    assert_eq!(first["status"], "pending");
    assert_eq!(first["queue"], env.names.payments_queue());
    assert_eq!(first["routing_key"], names::PAYMENT_RECEIVED);
    assert!(
        first["reason"].as_str().unwrap().contains("payment.amount"),
        "{first}"
    );
    let (id1, id2) = (first["id"].as_i64().unwrap(), second["id"].as_i64().unwrap());

    // The message in full: the body pretty-printed, its headers.
    let shown = api(format!("{base}/api/dead-letters/{id1}")).await;
    assert_eq!(shown["body_encoding"], "json");
    let body: Value = serde_json::from_str(shown["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["payment"]["id"], "P-BAD");
    assert!(
        shown["body"].as_str().unwrap().contains("\n  "),
        "pretty: {shown}"
    );
    assert!(
        shown["headers"][names::HEADER_DEAD_LETTER_REASON].is_string(),
        "{shown}"
    );
    let page = client
        .get(format!("{base}/dead-letters/{id1}"))
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(
        html.contains("payment.amount") && html.contains("&quot;P-BAD&quot;"),
        "{html}"
    );
    let missing = client
        .get(format!("{base}/api/dead-letters/999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Replay through the API: once, to its origin; a second time is refused (409).
    let cross = client
        .post(format!("{base}/api/dead-letters/{id1}/replay"))
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403, "another site's page may not replay");
    assert_eq!(take_all(&env, &watch).await.len(), 2, "the original publishes");
    // A console that requires a token (beyond localhost) takes it as for the rest of the API.
    let guarded = env.start_console(Some("s3cret")).await.unwrap();
    let anonymous = client
        .post(format!("{guarded}/api/dead-letters/{id1}/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let replayed = client
        .post(format!("{guarded}/api/dead-letters/{id1}/replay"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 200);
    let replayed: Value = replayed.json().await.unwrap();
    assert_eq!(replayed["status"], "replayed");
    assert_eq!(
        take_all(&env, &watch).await,
        vec![("evt-bad-1".to_string(), Some(id1.to_string()))]
    );
    let twice = client
        .post(format!("{base}/api/dead-letters/{id1}/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 409);
    assert!(take_all(&env, &watch).await.is_empty());
    assert_eq!(journal_count(&env, "dead_letter.replayed").await, 1);

    // Discard from the page: refused without the form's token, then done and kept.
    let FormPage {
        cookie, token, html, ..
    } = open_form_page(&client, &format!("{base}/dead-letters")).await;
    assert!(!cookie.is_empty() && !token.is_empty(), "{html}");
    assert!(html.contains(&format!("dead-letter-{id2}")), "{html}");
    assert!(
        !html.contains(&format!("id=\"dead-letter-{id1}\"")),
        "replayed: not pending"
    );
    let discard = |csrf: String| {
        client
            .post(format!("{base}/dead-letters/{id2}/discard"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie.clone())
            .body(format!("csrf={csrf}"))
            .send()
    };
    assert_eq!(discard("0".repeat(64)).await.unwrap().status(), 403);
    let done = discard(token).await.unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(
        done.headers()["location"],
        format!("/dead-letters/{id2}?done=discarded").as_str()
    );
    let after = api(format!("{base}/api/dead-letters/{id2}")).await;
    assert_eq!(after["status"], "discarded");
    assert_eq!(journal_count(&env, "dead_letter.discarded").await, 1);

    // The command sees what the console did (one table, one implementation); the replay,
    // refused again, came back as a new record naming the one it replays.
    let again = wait_listed(&env, "the replay dead-lettered again", |l| {
        l["replay_of"].as_i64() == Some(id1)
    })
    .await;
    let records = listed(&env).await;
    let status_of = |id: i64| records.iter().find(|l| l["id"] == id).unwrap()["status"].clone();
    assert_eq!(status_of(id1), "replayed");
    assert_eq!(status_of(id2), "discarded");
    assert_eq!(again["status"], "pending");
    let all = api(format!("{base}/api/dead-letters?status=all")).await;
    assert_eq!(all["dead_letters"].as_array().unwrap().len(), 3, "{all}");
    let replayed_only = api(format!("{base}/api/dead-letters?status=replayed")).await;
    assert_eq!(replayed_only["dead_letters"][0]["id"], id1);

    let channel = env.connection.create_channel().await.unwrap();
    let _ = channel
        .queue_delete(watch.as_str().into(), QueueDeleteOptions::default())
        .await;
    env.stop().await;
}
