//! A three-node RabbitMQ cluster of the test's own (private nodes, so that the machine's
//! broker is not touched), `AMQP_URL` naming its three nodes, the queues quorum queues: the
//! node every service is connected to goes away while reminders wait in the sender's queue;
//! the services reconnect to the next node, every reminder goes out once, and a payment
//! published afterwards is applied.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{TimeZone, Utc};
use relance_contracts::names;
use relance_tests::private_rabbitmq::PrivateRabbitMq;
use relance_tests::{date, invoice_issued, payment_received, wait_for, TestEnv, DEADLINE};
use std::collections::BTreeMap;

/// Services running from the start (the sender is held back), as their connections are named.
const SERVICES_RUNNING: [&str; 3] = ["scheduler", "renderer", "payments"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_the_services_use_goes_and_nothing_is_lost_nor_sent_twice() {
    let mut cluster = PrivateRabbitMq::start_cluster(3).expect("a private three-node RabbitMQ cluster");
    let amqp_url = cluster
        .iter()
        .map(PrivateRabbitMq::url)
        .collect::<Vec<_>>()
        .join(",");
    // The sender held back: the reminders wait in its queue when the node goes.
    let mut env = TestEnv::try_start_holding(
        1,
        &[relance_sender::SERVICE],
        &[("AMQP_URL", &amqp_url), ("RELANCE_QUEUE_TYPE", "quorum")],
    )
    .await
    .expect("starting the test environment");
    let numbers: Vec<String> = (1..=10).map(|i| format!("F-Q{i:02}")).collect();
    for number in &numbers {
        let invoice = invoice_issued(number, "900.00", date(2026, 3, 2), date(2026, 3, 16));
        env.publish(names::INVOICE_ISSUED, &invoice).await;
    }
    for number in &numbers {
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    // The courteous notes before the due date fall due, are rendered and wait for the sender.
    env.move_clock(Utc.with_ymd_and_hms(2026, 3, 11, 12, 0, 0).single().unwrap())
        .await;
    for number in &numbers {
        env.wait_journal(number, "reminder.rendered", 1).await;
    }

    // ... and their jobs are in the sender's queue: published, confirmed by the cluster.
    wait_for("the outbox to be published", DEADLINE, || async {
        let unpublished: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&env.db)
            .await?;
        Ok(unpublished == 0)
    })
    .await
    .unwrap();

    // Every service connected to the first node AMQP_URL names; it goes away.
    let on_first = tokio::task::block_in_place(|| cluster[0].connections()).unwrap();
    let on_second = tokio::task::block_in_place(|| cluster[1].connections()).unwrap();
    for service in SERVICES_RUNNING {
        let name = format!("\"relance-{service}\"");
        assert!(
            on_first.contains(&name),
            "{service} not on the first node: {on_first}"
        );
        assert!(
            !on_second.contains(&name),
            "{service} on the second node: {on_second}"
        );
    }
    // Stopped gracefully, or killed when that takes too long on a busy machine: gone either way.
    let _ = tokio::task::block_in_place(|| cluster[0].stop());

    // The sender, started now, reaches the second node, where the quorum queue kept the
    // reminders: each goes out once.
    env.start_held(1, &[relance_sender::SERVICE]);
    env.mail.wait_for_emails(numbers.len()).await;
    for number in &numbers {
        env.wait_journal(number, names::REMINDER_SENT, 1).await;
    }
    env.idle().await;
    let mut per_recipient: BTreeMap<String, usize> = BTreeMap::new();
    for email in env.mail.emails().await {
        for to in email.recipients() {
            *per_recipient.entry(to.to_string()).or_default() += 1;
        }
    }
    let expected: BTreeMap<String, usize> = numbers
        .iter()
        .map(|n| (format!("compta+{}@acme.test", n.to_lowercase()), 1))
        .collect();
    assert_eq!(per_recipient, expected);

    // The payments listener reconnected too: a payment published now (through the nodes
    // left) is applied and thanked for.
    let connection = relance_messaging::connect(&amqp_url, "tests-after")
        .await
        .unwrap();
    let publisher = relance_messaging::Publisher::open(&connection).await.unwrap();
    relance_messaging::publish_inbound(
        &publisher,
        &env.names,
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-Q01", "F-Q01", "900.00", date(2026, 3, 11)),
    )
    .await
    .unwrap();
    env.wait_journal("F-Q01", names::PAYMENT_RECORDED, 1).await;
    env.wait_journal("F-Q01", names::THANKS_SENT, 1).await;
    // Each on the second node, the next AMQP_URL names.
    let on_second = tokio::task::block_in_place(|| cluster[1].connections()).unwrap();
    for service in SERVICES_RUNNING.iter().chain([&relance_sender::SERVICE]) {
        assert!(
            on_second.contains(&format!("\"relance-{service}\"")),
            "{service}: {on_second}"
        );
    }
    publisher.close().await;
    let _ = connection.close(200, "done".into()).await;
    env.stop().await;
}
