//! Calling a provider's HTTP API: one JSON POST with credentials and an idempotency key,
//! its answer classified. 2xx is accepted; 5xx, 408, 429, timeouts and connection failures
//! are transient (retried through the delay queues); any other answer is permanent, with
//! the provider's words as the reason.

use crate::courier::DeliveryError;
use anyhow::{anyhow, Context};
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::StatusCode;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// HTTP/1.1 over rustls with the Mozilla roots and the aws-lc-rs provider (the one lettre
/// already brings), given explicitly: nothing process-wide is installed or required.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            inner: Client::builder(TokioExecutor::new()).build(https),
            timeout,
        })
    }
}

/// An API endpoint and how to authenticate to it.
#[derive(Clone)]
pub struct Endpoint {
    /// Shown in reasons: "the SMS gateway", "the postal service".
    pub name: &'static str,
    /// The URL without credentials.
    pub url: hyper::Uri,
    authorization: Option<String>,
}

impl Endpoint {
    /// A bearer `token` authenticates; without one, `user:password@` in the URL is sent as
    /// basic authentication.
    pub fn new(name: &'static str, url: &str, token: Option<String>) -> anyhow::Result<Self> {
        let (plain, credentials) = split_credentials(url);
        let url: hyper::Uri = plain
            .parse()
            .with_context(|| format!("{name} URL is not valid"))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(anyhow!("{name} URL {plain:?} is not an http(s) URL"));
        }
        let authorization = match (token, credentials) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some(credentials)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            )),
            (None, None) => None,
        };
        Ok(Self {
            name,
            url,
            authorization,
        })
    }
}

/// `https://user:pass@host/path` -> (`https://host/path`, `user:pass`).
fn split_credentials(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_string(), None);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => (
            format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
            Some(rest[..at].to_string()),
        ),
        None => (url.to_string(), None),
    }
}

fn excerpt(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// Whether an HTTP answer is worth retrying.
pub fn is_transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// POSTs `body` as JSON with the idempotency key; returns the status and the answer as JSON
/// (`null` when it is not JSON) for a 2xx, or the classified failure.
pub async fn post_json(
    client: &HttpClient,
    endpoint: &Endpoint,
    idempotency_key: &str,
    body: &serde_json::Value,
) -> Result<(StatusCode, serde_json::Value), DeliveryError> {
    let name = endpoint.name;
    let mut request = hyper::Request::post(endpoint.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", idempotency_key);
    if let Some(authorization) = &endpoint.authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| DeliveryError::Permanent(format!("{name}: the request could not be built: {e}")))?;
    let exchange = async {
        let response = client.inner.request(request).await.map_err(|e| {
            DeliveryError::Transient(format!("{name} could not be reached ({}): {e}", endpoint.url))
        })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| DeliveryError::Transient(format!("{name}: reading the answer failed: {e}")))?
            .to_bytes();
        Ok((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(client.timeout, exchange)
        .await
        .map_err(|_| {
            DeliveryError::Transient(format!(
                "{name} did not answer within {} ms",
                client.timeout.as_millis()
            ))
        })??;
    let text = String::from_utf8_lossy(&bytes);
    if status.is_success() {
        return Ok((
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        ));
    }
    let reason = format!("{name} answered {status}: {}", excerpt(&text));
    Err(if is_transient(status) {
        DeliveryError::Transient(reason)
    } else {
        DeliveryError::Permanent(reason)
    })
}

/// The first text (or number) found under one of `keys`, at the top of the answer or in
/// its first `messages`/`data` entry, as the common APIs put it.
pub fn answer_field(answer: &serde_json::Value, keys: &[&str]) -> Option<String> {
    let candidates = [
        Some(answer),
        answer.get("messages").and_then(|m| m.get(0)),
        answer.get("data"),
    ];
    candidates.into_iter().flatten().find_map(|object| {
        keys.iter().find_map(|key| match object.get(*key) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_classified_and_their_ids_found() {
        assert!(is_transient(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(is_transient(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_transient(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_transient(StatusCode::BAD_REQUEST));
        assert!(!is_transient(StatusCode::UNAUTHORIZED));
        let keys = ["message_id", "id"];
        assert_eq!(answer_field(&json!({"id": "abc"}), &keys), Some("abc".into()));
        assert_eq!(
            answer_field(&json!({"messages": [{"message_id": 42}]}), &keys),
            Some("42".into())
        );
        assert_eq!(
            answer_field(&json!({"data": {"id": "x1"}}), &keys),
            Some("x1".into())
        );
        assert_eq!(answer_field(&json!({"id": " "}), &keys), None);
        assert_eq!(answer_field(&serde_json::Value::Null, &keys), None);
        assert_eq!(excerpt(&"a ".repeat(400)).chars().count(), 301);
        assert_eq!(
            split_credentials("https://acme:pa55@sms.example/v1?x=a@b"),
            (
                "https://sms.example/v1?x=a@b".to_string(),
                Some("acme:pa55".to_string())
            )
        );
        assert_eq!(split_credentials("http://h/p"), ("http://h/p".to_string(), None));
        assert!(Endpoint::new("x", "ftp://h/p", None).is_err());
    }
}
