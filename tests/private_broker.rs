//! The private RabbitMQ node that suites restart (tests/private_rabbitmq.rs): restarting and
//! stopping it closes its own connections and leaves the shared broker, and anyone connected
//! to it, alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use relance_tests::private_rabbitmq::PrivateRabbitMq;
use relance_tests::{amqp_url, wait_for, DEADLINE};

async fn can_open_a_channel(connection: &lapin::Connection) -> bool {
    match connection.create_channel().await {
        Ok(channel) => {
            let _ = channel.close(200, "checked".into()).await;
            true
        }
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_node_restarts_and_stops_without_touching_the_shared_broker() {
    let shared = relance_messaging::connect(&amqp_url(), "private-broker-test")
        .await
        .expect("the shared test broker");
    let mut node = PrivateRabbitMq::start().expect("a private RabbitMQ node");
    assert_ne!(node.url(), amqp_url());
    let private = relance_messaging::connect(&node.url(), "private-broker-test")
        .await
        .expect("connecting to the private node");
    assert!(can_open_a_channel(&private).await);

    node.stop_app().unwrap();
    wait_for("the private node to close its connections", DEADLINE, || async {
        Ok(!can_open_a_channel(&private).await)
    })
    .await
    .unwrap();
    assert!(
        relance_messaging::connect(&node.url(), "private-broker-test")
            .await
            .is_err(),
        "a stopped broker application accepts no connection"
    );
    assert!(
        can_open_a_channel(&shared).await,
        "the shared broker's connection survived the private node's restart"
    );

    node.start_app().unwrap();
    let again = relance_messaging::connect(&node.url(), "private-broker-test")
        .await
        .expect("the private node accepts connections again");
    assert!(can_open_a_channel(&again).await);

    // Stopped by its own process: its port closes, the shared broker goes on.
    let port = node.port;
    node.stop().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the private node's port is closed once it is stopped"
    );
    assert!(can_open_a_channel(&shared).await);
    drop(node);
    let _ = shared.close(200, "done".into()).await;
}
