//! A local HTTP server playing an SMS gateway for the tests: it records each request and
//! answers 200 with a message id, or the status configured for a destination number.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The SMS gateway: records each request, answers 200 with a message id, or the status
/// configured for a destination number. While [`Gateway::hold`] is on, it records each
/// request and then keeps the sender waiting for its answer until [`Gateway::release`].
#[derive(Clone)]
pub struct Gateway {
    pub received: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    pub failing: Arc<Mutex<BTreeMap<String, u16>>>,
    answering: Arc<tokio::sync::watch::Sender<bool>>,
    /// Requests received and not yet answered, and the most there ever were at once.
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

/// Counts a request in flight until it is answered (or its connection dropped).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            received: Arc::default(),
            failing: Arc::default(),
            answering: Arc::new(tokio::sync::watch::Sender::new(true)),
            in_flight: Arc::default(),
            most_in_flight: Arc::default(),
        }
    }
}

async fn gateway_answer(
    State(g): State<Gateway>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let to = body["to"].as_str().unwrap_or_default().to_string();
    let now = g.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_flight = InFlight(g.in_flight.clone());
    g.most_in_flight.fetch_max(now, Ordering::SeqCst);
    let n = {
        let mut received = g.received.lock().unwrap();
        received.push((headers, body));
        received.len()
    };
    let mut answering = g.answering.subscribe();
    let _ = answering.wait_for(|answering| *answering).await;
    match g.failing.lock().unwrap().get(&to) {
        Some(&status) => (
            StatusCode::from_u16(status).unwrap(),
            Json(json!({ "error": format!("simulated {status}") })),
        ),
        None => (StatusCode::OK, Json(json!({ "message_id": format!("gw-{n}") }))),
    }
}

impl Gateway {
    pub async fn start() -> (Self, String) {
        let gateway = Gateway::default();
        let app = Router::new()
            .route("/api/sms", post(gateway_answer))
            .with_state(gateway.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/sms", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (gateway, url)
    }

    pub fn requests_to(&self, number: &str) -> Vec<(HeaderMap, Value)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, body)| body["to"] == json!(number))
            .cloned()
            .collect()
    }

    /// From now on, requests wait for [`Gateway::release`] before they are answered.
    pub fn hold(&self) {
        self.answering.send_replace(false);
    }

    /// Answers the requests held, and the next ones at once.
    pub fn release(&self) {
        self.answering.send_replace(true);
    }

    /// The most requests the gateway ever had at once, unanswered.
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}
