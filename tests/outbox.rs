//! The outbox and the inbox over time: published messages and the records of applied ones
//! are removed after their retention window, without forgetting a message that may still be
//! delivered again; and the events of one invoice carry a sequence that orders them, however
//! many relays publish them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, Utc};
use relance_contracts::names;
use relance_tests::{date, invoice_issued, start_time, wait_for, TestEnv, DEADLINE};
use serde_json::Value;

async fn inbox_has(env: &TestEnv, event_id: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM processed_messages WHERE message_id = $1)")
        .bind(event_id)
        .fetch_one(&env.db)
        .await
        .unwrap()
}

/// Outbox rows published before `before` (all of them for `None`).
async fn published_before(env: &TestEnv, before: Option<DateTime<Utc>>) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL AND published_at < $1")
        .bind(before.unwrap_or(DateTime::<Utc>::MAX_UTC))
        .fetch_one(&env.db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_outbox_rows_and_inbox_records_are_removed_and_a_recent_redelivery_is_still_a_duplicate() {
    let env = TestEnv::try_start(1, &[("RELANCE_RETENTION_INTERVAL_MS", "20")])
        .await
        .unwrap();
    let t0 = start_time();
    // Due in the summer: nothing falls due in the five weeks the test covers.
    let old = invoice_issued("RET-OLD", "100.00", date(2026, 3, 1), date(2026, 7, 31));
    let recent = invoice_issued("RET-RECENT", "200.00", date(2026, 3, 1), date(2026, 7, 31));
    let new = invoice_issued("RET-NEW", "300.00", date(2026, 3, 1), date(2026, 7, 31));

    env.publish(names::INVOICE_ISSUED, &old).await;
    env.wait_journal("RET-OLD", names::INVOICE_REGISTERED, 1).await;
    env.set_time(t0 + Duration::days(10)).await;
    env.publish(names::INVOICE_ISSUED, &recent).await;
    env.wait_journal("RET-RECENT", names::INVOICE_REGISTERED, 1).await;
    env.idle().await;
    assert!(inbox_has(&env, "evt-invoice-RET-OLD").await);
    assert!(published_before(&env, None).await > 0, "the relay published");

    // 35 days on: RET-OLD was applied 35 days ago (past the 30-day inbox window), RET-RECENT
    // 25 days ago; every outbox row so far was published more than a day ago.
    let now = t0 + Duration::days(35);
    env.set_time(now).await;
    env.publish(names::INVOICE_ISSUED, &new).await;
    env.wait_journal("RET-NEW", names::INVOICE_REGISTERED, 1).await;
    env.idle().await;
    wait_for("the scheduler to remove expired rows", DEADLINE, || async {
        Ok(!inbox_has(&env, "evt-invoice-RET-OLD").await
            && published_before(&env, Some(now - Duration::days(1))).await == 0)
    })
    .await
    .unwrap();
    // What is within its window stays, and a pass finds nothing more to remove.
    let again =
        relance_storage::retention::purge(&env.db, now - Duration::days(1), now - Duration::days(30), 10)
            .await
            .unwrap();
    assert_eq!((again.outbox, again.inbox), (0, 0), "{again:?}");
    assert!(
        inbox_has(&env, "evt-invoice-RET-RECENT").await,
        "a 25-day-old inbox record is kept"
    );
    assert!(inbox_has(&env, "evt-invoice-RET-NEW").await);
    assert!(
        published_before(&env, None).await > 0,
        "today's published rows are kept"
    );
    let unpublished = relance_storage::outbox::pending_count(&env.db).await.unwrap();
    assert_eq!(unpublished, 0);

    // RET-RECENT delivered again within the window: the inbox knows it (noted, nothing
    // announced). RET-OLD delivered again after it: only the ledger knows it (a duplicate
    // invoice, announced); either way nothing changes.
    env.publish(names::INVOICE_ISSUED, &recent).await;
    env.publish(names::INVOICE_ISSUED, &old).await;
    env.wait_journal("RET-RECENT", names::INVOICE_DUPLICATE, 1).await;
    env.wait_journal("RET-OLD", names::INVOICE_DUPLICATE, 1).await;
    env.idle().await;
    let recent_dup = env.journal_details("RET-RECENT", names::INVOICE_DUPLICATE).await;
    assert_eq!(
        recent_dup,
        vec![serde_json::json!({ "event_id": "evt-invoice-RET-RECENT" })],
        "recognised by the inbox as the same message"
    );
    let old_dup = env.journal_details("RET-OLD", names::INVOICE_DUPLICATE).await;
    assert_eq!(old_dup.len(), 1, "{old_dup:?}");
    assert_eq!(old_dup[0]["conflict"], Value::Bool(false), "{old_dup:?}");
    let invoices: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(invoices, 3);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_of_one_invoice_are_numbered_in_the_order_they_happened_whichever_relay_publishes_them() {
    // Two copies of every service (one relay for the process) and four more relays of the
    // test's own: five relays, one leading at a time, any of them taking over.
    let env = TestEnv::try_start(2, &[]).await.unwrap();
    let relays_stop = tokio_util::sync::CancellationToken::new();
    let mut relays = Vec::new();
    for _ in 0..4 {
        relays.push(start_relay(&env, &relays_stop).await);
    }
    let number = "SEQ-1";
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued(number, "100.00", date(2026, 3, 1), date(2026, 7, 31)),
    )
    .await;
    env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    // Forty partial payments, applied by either payments copy: each leaves a lower balance.
    const PAYMENTS: usize = 40;
    for i in 0..PAYMENTS {
        env.publish(
            names::PAYMENT_RECEIVED,
            &relance_tests::payment_received(&format!("SEQ-P{i:02}"), number, "1.00", date(2026, 3, 2)),
        )
        .await;
    }
    env.wait_journal(number, names::PAYMENT_RECORDED, PAYMENTS as i64)
        .await;
    env.idle().await;

    let events = std::sync::Mutex::new(Vec::new());
    wait_for("every event of SEQ-1 on the test queue", DEADLINE, || async {
        let more = env.events().await;
        let mut events = events.lock().unwrap();
        events.extend(more.into_iter().filter(|e| e.invoice_number == number));
        Ok(events
            .iter()
            .filter(|e| e.event_type == names::PAYMENT_RECORDED)
            .count()
            == PAYMENTS)
    })
    .await
    .unwrap();
    let mut events = events.into_inner().unwrap();
    let arrived: Vec<Option<u64>> = events.iter().map(|e| e.sequence).collect();
    // Every event is numbered, from 1 and without gap or repeat.
    events.sort_by_key(|e| e.sequence);
    let numbered: Vec<Option<u64>> = events.iter().map(|e| e.sequence).collect();
    let expected: Vec<Option<u64>> = (1..=events.len() as u64).map(Some).collect();
    assert_eq!(numbered, expected, "as they arrived: {arrived:?}");
    // In that order, the invoice is registered first and each payment leaves a lower balance.
    assert_eq!(events[0].event_type, names::INVOICE_REGISTERED);
    let balances: Vec<f64> = events
        .iter()
        .filter(|e| e.event_type == names::PAYMENT_RECORDED)
        .map(|e| e.detail["balance"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(balances.len(), PAYMENTS);
    assert!(
        balances.windows(2).all(|w| w[1] < w[0]),
        "balances in sequence order: {balances:?}"
    );
    // The same order as the journal's, the proof's chain.
    let journaled: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM journal WHERE invoice_number = $1 AND action IN ('invoice.registered', 'payment.recorded') ORDER BY seq",
    )
    .bind(number)
    .fetch_all(&env.db)
    .await
    .unwrap();
    let announced: Vec<String> = events
        .iter()
        .filter(|e| e.event_type == names::INVOICE_REGISTERED || e.event_type == names::PAYMENT_RECORDED)
        .map(|e| e.event_type.clone())
        .collect();
    assert_eq!(announced, journaled);
    relays_stop.cancel();
    for relay in relays {
        relay.await.unwrap().unwrap();
    }
    env.stop().await;
}

/// How long after its `invoice.issued` is published an invoice's `invoice.registered` is read
/// from the events (the relay must have published it).
async fn registration_latency(env: &TestEnv, number: &str) -> std::time::Duration {
    let started = std::time::Instant::now();
    registered(env, number).await;
    started.elapsed()
}

/// The relay is woken by the commit that adds a message (LISTEN/NOTIFY): with a poll interval
/// of two minutes, each invoice's `invoice.registered` is out within a couple of seconds of
/// the `invoice.issued` that caused it, three times in a row (not only at the relay's first
/// pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_is_woken_by_a_commit_well_before_its_poll_interval() {
    let env = TestEnv::try_start(1, &[("RELANCE_OUTBOX_INTERVAL_MS", "120000")])
        .await
        .unwrap();
    for n in 0..3 {
        let number = format!("WAKE-{n}");
        let latency = registration_latency(&env, &number).await;
        assert!(
            latency < std::time::Duration::from_secs(3),
            "{number} registered after {latency:?} (poll interval 120 s)"
        );
    }
    env.stop().await;
}

/// A commit whose notification never reaches the relay (its listening connection lost at
/// that moment) is found by the relay's poll, `RELANCE_OUTBOX_INTERVAL_MS` later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_notification_is_missed_is_published_at_the_next_poll() {
    let env = TestEnv::try_start(1, &[("RELANCE_OUTBOX_INTERVAL_MS", "500")])
        .await
        .unwrap();
    // No commit notifies the relay any more (this test's database only).
    sqlx::query("ALTER TABLE outbox DISABLE TRIGGER outbox_notify")
        .execute(&env.db)
        .await
        .unwrap();
    for n in 0..2 {
        let number = format!("POLL-{n}");
        let latency = registration_latency(&env, &number).await;
        assert!(
            latency < std::time::Duration::from_secs(5),
            "{number} registered after {latency:?} (poll interval 500 ms)"
        );
    }
    env.stop().await;
}

/// One relay drains the outbox at a time: while the draining lock is held elsewhere, a relay
/// publishes nothing (it leaves the work to the holder, which was woken by the same commit);
/// once the holder is done, the waiting message goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_leaves_the_outbox_to_the_relay_draining_it() {
    let env = TestEnv::try_start(1, &[]).await.unwrap();
    let number = "DRAIN-1";
    // Another relay drains: this transaction holds the lock it would hold.
    let mut holder = env.db.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(relance_storage::locks::OUTBOX_DRAINING)
        .execute(&mut *holder)
        .await
        .unwrap();
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued(number, "100.00", date(2026, 3, 1), date(2026, 7, 31)),
    )
    .await;
    env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    let unpublished = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND correlation_id = $1",
        )
        .bind(number)
        .fetch_one(&env.db)
        .await
        .unwrap()
    };
    assert!(
        unpublished().await > 0,
        "the registration's event is in the outbox"
    );
    let published =
        relance_messaging::relay::relay_once(&env.db, &env.publisher, &env.names, &env.shared_clock)
            .await
            .unwrap();
    assert_eq!(
        published, 0,
        "a relay published while another held the draining lock"
    );
    assert!(unpublished().await > 0, "nothing was marked published");

    // The holder is done: the services' relay publishes the event.
    holder.rollback().await.unwrap();
    env.events_until(&format!("{number} registered"), |events| {
        events
            .iter()
            .any(|e| e.event_type == names::INVOICE_REGISTERED && e.invoice_number == number)
    })
    .await;
    assert_eq!(unpublished().await, 0);
    env.stop().await;
}

/// Sessions holding the outbox relays' leader lock (a bigint key: high and low halves).
async fn relay_leaders(env: &TestEnv) -> i64 {
    let key = relance_storage::locks::OUTBOX_LEADER;
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND classid::bigint = ($1 >> 32) AND objid::bigint = ($1 & 4294967295) AND objsubid = 1",
    )
    .bind(key)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

/// A relay of the test's own on the environment's database and broker, until `stop`.
async fn start_relay(
    env: &TestEnv,
    stop: &tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let publisher = relance_messaging::Publisher::open(&env.connection).await.unwrap();
    tokio::spawn(relance_messaging::run_outbox_relay(
        env.db.clone(),
        publisher,
        env.names.clone(),
        env.shared_clock.clone(),
        relance_messaging::RelayTiming {
            interval: std::time::Duration::from_millis(50),
            coalesce: std::time::Duration::ZERO,
        },
        stop.clone(),
    ))
}

/// Publishes an invoice and waits for its `invoice.registered` on the events exchange.
async fn registered(env: &TestEnv, number: &str) {
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued(number, "100.00", date(2026, 3, 1), date(2026, 7, 31)),
    )
    .await;
    env.events_until(&format!("{number} registered"), |events| {
        events
            .iter()
            .any(|e| e.event_type == names::INVOICE_REGISTERED && e.invoice_number == number)
    })
    .await;
}

/// One relay leads (listens and drains), the others stand by: when the leader stops, one of
/// them takes over and the outbox keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_leads_and_another_takes_over_when_it_stops() {
    // The services relay nothing: the test's own relays do.
    let env = TestEnv::try_start(1, &[("RELANCE_OUTBOX_RELAY", "off")])
        .await
        .unwrap();
    let (first_stop, second_stop) = (
        tokio_util::sync::CancellationToken::new(),
        tokio_util::sync::CancellationToken::new(),
    );
    let first = start_relay(&env, &first_stop).await;
    registered(&env, "LEAD-1").await;
    assert_eq!(relay_leaders(&env).await, 1);
    let second = start_relay(&env, &second_stop).await;
    registered(&env, "LEAD-2").await;
    assert_eq!(relay_leaders(&env).await, 1, "two relays, one leader");

    // The leader stops (its session, and the lock, end): the other takes over.
    first_stop.cancel();
    first.await.unwrap().unwrap();
    registered(&env, "LEAD-3").await;
    wait_for("the second relay leading", DEADLINE, || async {
        Ok(relay_leaders(&env).await == 1)
    })
    .await
    .unwrap();
    second_stop.cancel();
    second.await.unwrap().unwrap();
    env.stop().await;
}
