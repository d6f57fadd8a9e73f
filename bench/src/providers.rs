//! Fakes of the SMS gateway and of the print-and-post API: a local HTTP server at the
//! world's edge, fast enough not to be the limit. Each `POST /sms` or `POST /letters`
//! (relance's HTTP courier: JSON body, `Idempotency-Key` header) is answered 200 with an id
//! at once and counted, with the distinct idempotency keys seen, so that a run shows every
//! text message and letter handed over once (a retried request carries the same key).

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// Requests and distinct idempotency keys, by provider (`sms`, `letters`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Seen {
    pub requests: u64,
    pub distinct_keys: u64,
}

#[derive(Default)]
struct Log {
    requests: BTreeMap<String, u64>,
    keys: BTreeMap<String, BTreeSet<String>>,
}

pub struct Providers {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    task: JoinHandle<()>,
}

async fn accept(
    State(log): State<Arc<Mutex<Log>>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Json<serde_json::Value>) {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Ok(mut log) = log.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::Value::Null));
    };
    let n = {
        let count = log.requests.entry(provider.clone()).or_default();
        *count += 1;
        *count
    };
    log.keys.entry(provider.clone()).or_default().insert(key);
    (
        StatusCode::OK,
        Json(serde_json::json!({ "id": format!("bench-{provider}-{n}") })),
    )
}

impl Providers {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the providers' fake")?;
        let addr = listener.local_addr().context("the providers' fake's address")?;
        let log = Arc::new(Mutex::new(Log::default()));
        let app = Router::new()
            .route("/{provider}", post(accept))
            .with_state(log.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, log, task })
    }

    /// `RELANCE_SMS_GATEWAY_URL` for relance's SMS sender.
    pub fn sms_url(&self) -> String {
        format!("http://{}/sms", self.addr)
    }

    /// `RELANCE_POSTAL_API_URL` for relance's letter sender.
    pub fn letters_url(&self) -> String {
        format!("http://{}/letters", self.addr)
    }

    /// What `provider` (`sms`, `letters`) has received so far.
    pub fn seen(&self, provider: &str) -> Seen {
        let Ok(log) = self.log.lock() else {
            return Seen::default();
        };
        Seen {
            requests: log.requests.get(provider).copied().unwrap_or(0),
            distinct_keys: log.keys.get(provider).map_or(0, |k| k.len() as u64),
        }
    }
}

impl Drop for Providers {
    fn drop(&mut self) {
        self.task.abort();
    }
}
