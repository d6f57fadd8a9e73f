//! Queue types against the real broker (RabbitMQ at 127.0.0.1:5672, or
//! `RELANCE_TEST_AMQP_URL`), each test in a namespace of its own: work queues are quorum
//! queues by default and classic ones on demand, a quorum queue dead-letters a message its
//! consumers keep dying on, and `migrate-queues` turns a classic deployment into a quorum one
//! without losing a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use relance_contracts::names::{self, Names};
use relance_messaging::topology::work_queue_arguments;
use relance_messaging::{
    declare_topology, delete_topology, migrate_queues, queue_plan, Publisher, QueueMigration, QueueType,
    TopologyOptions,
};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

async fn connect() -> Connection {
    let url = std::env::var("RELANCE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("RabbitMQ must run at 127.0.0.1:5672")
}

fn options(queue_type: QueueType) -> TopologyOptions {
    TopologyOptions {
        queue_expires: Some(Duration::from_secs(600)),
        queue_type,
        ..TopologyOptions::default()
    }
}

fn fresh_names() -> Names {
    Names::new(format!("relance-qtest-{}", uuid::Uuid::new_v4().simple()))
}

/// Declares `queue` with `arguments` on a channel of its own: the broker refuses (and closes
/// the channel) when the queue exists with other arguments, its type among them.
async fn redeclare(connection: &Connection, queue: &str, arguments: FieldTable) -> Result<(), String> {
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await;
    match declared {
        Ok(_) => {
            let _ = channel.close(200, "declared".into()).await;
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn args(pairs: &[(&str, &str)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in pairs {
        table.insert(ShortString::from(*k), AMQPValue::LongString(LongString::from(*v)));
    }
    table
}

async fn message_count(connection: &Connection, queue: &str) -> u32 {
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = channel.close(200, "counted".into()).await;
    declared.message_count()
}

async fn publish(publisher: &Publisher, exchange: &str, routing_key: &str, body: &str) {
    let props = BasicProperties::default()
        .with_message_id(ShortString::from(uuid::Uuid::new_v4().to_string()))
        .with_delivery_mode(2);
    publisher
        .publish(exchange, routing_key, body.as_bytes(), props, true)
        .await
        .unwrap();
}

#[tokio::test]
async fn work_queues_are_quorum_queues_by_default_and_classic_ones_on_demand() {
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();

    let quorum = fresh_names();
    declare_topology(&channel, &quorum, &options(QueueType::Quorum))
        .await
        .unwrap();
    assert_eq!(TopologyOptions::default().queue_type, QueueType::Quorum);
    let expires = || {
        let mut a = FieldTable::default();
        a.insert("x-expires".into(), AMQPValue::LongLongInt(600_000));
        a
    };
    let plan = queue_plan(&quorum, &options(QueueType::Quorum));
    for queue in [
        quorum.payments_queue(),
        quorum.sender_queue("email"),
        Names::retry_tier_queue(&quorum.payments_queue(), "1s"),
        quorum.dead_letter_queue(),
    ] {
        // The arguments relance declares it with, but classic.
        let mut classic = plan.iter().find(|p| p.name == queue).unwrap().arguments.clone();
        classic.insert("x-queue-type".into(), AMQPValue::LongString("classic".into()));
        let refused = redeclare(&connection, &queue, classic).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("PRECONDITION_FAILED") && e.contains("x-queue-type")),
            "{queue} is not a quorum queue: {refused:?}"
        );
    }
    // Declared again as relance declares it: the same queue, accepted.
    let ours = work_queue_arguments(&quorum, &options(QueueType::Quorum));
    redeclare(&connection, &quorum.payments_queue(), ours)
        .await
        .unwrap();
    declare_topology(&channel, &quorum, &options(QueueType::Quorum))
        .await
        .unwrap();

    let classic = fresh_names();
    declare_topology(&channel, &classic, &options(QueueType::Classic))
        .await
        .unwrap();
    let mut quorum_args = expires();
    quorum_args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let refused = redeclare(&connection, &classic.payments_queue(), quorum_args).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("PRECONDITION_FAILED")),
        "{refused:?}"
    );
    redeclare(&connection, &classic.payments_queue(), expires())
        .await
        .unwrap();

    // A service set to the other type says how to get out of it.
    let channel = connection.create_channel().await.unwrap();
    let mismatch = declare_topology(&channel, &classic, &options(QueueType::Quorum))
        .await
        .unwrap_err();
    assert!(
        format!("{mismatch:#}").contains("relance migrate-queues"),
        "{mismatch:#}"
    );

    let channel = connection.create_channel().await.unwrap();
    delete_topology(&channel, &quorum).await.unwrap();
    delete_topology(&channel, &classic).await.unwrap();
}

/// A consumer that dies holding a message (its channel closes before the ack) gets it again;
/// after `x-delivery-limit` deliveries the broker dead-letters it, saying why and from where.
#[tokio::test]
async fn a_message_its_consumers_keep_dying_on_is_dead_lettered_after_the_delivery_limit() {
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();
    let names = fresh_names();
    let topology = TopologyOptions {
        delivery_limit: 2,
        ..options(QueueType::Quorum)
    };
    declare_topology(&channel, &names, &topology).await.unwrap();
    let publisher = Publisher::open(&connection).await.unwrap();
    let queue = names.payments_queue();
    publish(
        &publisher,
        &names.inbound_exchange(),
        names::PAYMENT_RECEIVED,
        "poison",
    )
    .await;

    let mut deliveries = 0;
    let start = Instant::now();
    while message_count(&connection, &names.dead_letter_queue()).await == 0 {
        assert!(
            start.elapsed() < DEADLINE,
            "not dead-lettered after {deliveries} deliveries"
        );
        let dying = connection.create_channel().await.unwrap();
        if let Some(got) = dying
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            assert_eq!(got.delivery.data, b"poison");
            deliveries += 1;
        }
        // Closed without an ack: what a consumer's death does to the messages it held.
        let _ = dying.close(200, "died".into()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(deliveries, 3, "the first delivery and two more (the limit is 2)");
    assert_eq!(message_count(&connection, &queue).await, 0);

    let reader = connection.create_channel().await.unwrap();
    let dead = reader
        .basic_get(
            names.dead_letter_queue().as_str().into(),
            BasicGetOptions::default(),
        )
        .await
        .unwrap()
        .expect("the dead letter");
    let headers = dead.delivery.properties.headers().clone().unwrap_or_default();
    let text = |key: &str| match headers.inner().get(key) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("{key}: {other:?}"),
    };
    assert_eq!(text("x-first-death-reason"), "delivery_limit");
    assert_eq!(text("x-first-death-queue"), queue);
    assert_eq!(dead.delivery.data, b"poison");
    dead.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
    delete_topology(&reader, &names).await.unwrap();
}

#[tokio::test]
async fn migrate_queues_turns_a_classic_deployment_into_quorum_queues_keeping_every_message() {
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();
    let names = fresh_names();
    declare_topology(&channel, &names, &options(QueueType::Classic))
        .await
        .unwrap();
    let publisher = Publisher::open(&connection).await.unwrap();
    let payments = names.payments_queue();
    for body in ["p1", "p2", "p3"] {
        publish(
            &publisher,
            &names.inbound_exchange(),
            names::PAYMENT_RECEIVED,
            body,
        )
        .await;
    }
    // A retry waiting an hour in its tier, and one an older relance left in the former
    // per-message TTL queue.
    let hour_tier = Names::retry_tier_queue(&payments, "1h");
    publish(&publisher, "", &hour_tier, "waiting").await;
    publish(&publisher, "", &Names::retry_queue(&payments), "legacy").await;

    let report = migrate_queues(&connection, &names, &options(QueueType::Quorum))
        .await
        .unwrap();
    let fate = |queue: &str| report.iter().find(|(q, _)| q == queue).map(|(_, f)| f.clone());
    assert_eq!(fate(&payments), Some(QueueMigration::Replaced { moved: 3 }));
    assert_eq!(fate(&hour_tier), Some(QueueMigration::Replaced { moved: 1 }));
    assert_eq!(
        fate(&Names::retry_queue(&payments)),
        Some(QueueMigration::Drained { moved: 1 })
    );
    // Quorum now: a classic declaration is refused; the topology declares as services do.
    let refused = redeclare(&connection, &payments, args(&[])).await;
    assert!(refused.is_err_and(|e| e.contains("PRECONDITION_FAILED")));
    declare_topology(&channel, &names, &options(QueueType::Quorum))
        .await
        .unwrap();
    assert_eq!(message_count(&connection, &hour_tier).await, 1);

    // Every payment is there, with the routing key it was published with.
    let reader = connection.create_channel().await.unwrap();
    let mut bodies = Vec::new();
    while let Some(got) = reader
        .basic_get(payments.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        let headers = got.delivery.properties.headers().clone().unwrap_or_default();
        let key = match headers.inner().get(names::HEADER_ROUTING_KEY) {
            Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            other => panic!("no routing key header: {other:?}"),
        };
        if got.delivery.data != b"legacy" {
            assert_eq!(key, names::PAYMENT_RECEIVED);
        }
        bodies.push(String::from_utf8_lossy(&got.delivery.data).into_owned());
        got.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    bodies.sort();
    assert_eq!(bodies, ["legacy", "p1", "p2", "p3"]);
    // Still bound: a payment published now reaches the new queue.
    publish(
        &publisher,
        &names.inbound_exchange(),
        names::PAYMENT_RECEIVED,
        "p4",
    )
    .await;
    assert_eq!(message_count(&connection, &payments).await, 1);

    // Run again: nothing to do.
    let again = migrate_queues(&connection, &names, &options(QueueType::Quorum))
        .await
        .unwrap();
    assert!(
        again.iter().all(|(_, f)| *f == QueueMigration::Unchanged),
        "{again:?}"
    );
    delete_topology(&reader, &names).await.unwrap();
}
