//! Calling a provider's HTTP API: one JSON POST with credentials and an idempotency key,
//! its answer classified. 2xx is accepted; 5xx, 408, 429, timeouts and connection failures
//! are transient (retried through the delay queues); any other answer is permanent, with
//! the provider's words as the reason.

use crate::courier::DeliveryError;
use anyhow::{anyhow, Context};
use base64::Engine;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use reqwest_middleware::{ClientWithMiddleware, Middleware, Next};
use reqwest_tracing::TracingMiddleware;
use std::time::Duration;

/// reqwest over HTTP/1.1 and rustls with the Mozilla roots and the aws-lc-rs provider (the
/// one lettre already brings), given explicitly: nothing process-wide is installed or
/// required. No proxy from the environment, no redirect followed (a 3xx is a refusal, as the
/// provider's answer). Each call is a span (`TracingMiddleware`) whose trace context goes
/// out as `traceparent` ([`TraceContext`]).
#[derive(Clone)]
pub struct HttpClient {
    inner: ClientWithMiddleware,
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
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .http1_only()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("the HTTP client")?;
        let inner = reqwest_middleware::ClientBuilder::new(client)
            .with(TracingMiddleware::default())
            .with(TraceContext)
            .build();
        Ok(Self { inner, timeout })
    }
}

/// Puts the W3C trace context of the current span on the request (`traceparent`,
/// `tracestate`): placed after `TracingMiddleware`, that span is the outgoing call's own.
/// The project's propagator, as for messages on the broker (no global propagator is set).
struct TraceContext;

#[async_trait::async_trait]
impl Middleware for TraceContext {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        for (key, value) in relance_telemetry::current_trace_headers() {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
                request.headers_mut().insert(name, value);
            }
        }
        next.run(request, extensions).await
    }
}

/// An API endpoint and how to authenticate to it.
#[derive(Clone)]
pub struct Endpoint {
    /// Shown in reasons: "the SMS gateway", "the postal service".
    pub name: &'static str,
    /// The URL without credentials.
    pub url: Url,
    authorization: Option<String>,
}

impl Endpoint {
    /// A bearer `token` authenticates; without one, `user:password@` in the URL (percent-
    /// encoded, as a URL has them) is sent as basic authentication, decoded.
    pub fn new(name: &'static str, url: &str, token: Option<String>) -> anyhow::Result<Self> {
        let mut url = Url::parse(url).map_err(|e| {
            // The message never repeats the URL: it may hold a password.
            anyhow!("{name} URL is not valid: {e}")
        })?;
        let credentials = credentials(&url).with_context(|| format!("{name} URL"))?;
        // Cannot fail for an http(s) URL with a host, which is checked just below.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(anyhow!("{name} URL {:?} is not an http(s) URL", url.as_str()));
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

/// `https://acme%40corp:p%3Ass@host/path` -> `acme@corp:p:ss`: the URL's user and password,
/// percent-decoded, for basic authentication; `None` without a user.
fn credentials(url: &Url) -> anyhow::Result<Option<String>> {
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .map(|decoded| decoded.into_owned())
            .context("the credentials are not UTF-8 once percent-decoded")
    };
    if url.username().is_empty() && url.password().is_none() {
        return Ok(None);
    }
    let user = decode(url.username())?;
    Ok(Some(match url.password() {
        Some(password) => format!("{user}:{}", decode(password)?),
        // As before: the user alone.
        None => user,
    }))
}

fn excerpt(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// A provider's JSON API (an SMS gateway, a postal service): the client and the endpoint.
pub struct JsonApi {
    client: HttpClient,
    endpoint: Endpoint,
}

impl JsonApi {
    /// `name` is shown in reasons ("the SMS gateway"); see [`Endpoint::new`] for `token`.
    pub fn new(
        name: &'static str,
        url: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: HttpClient::new(timeout)?,
            endpoint: Endpoint::new(name, url, token)?,
        })
    }

    /// [`post_json`] to this API.
    pub async fn post(
        &self,
        idempotency_key: &str,
        body: &serde_json::Value,
    ) -> Result<(StatusCode, serde_json::Value), DeliveryError> {
        post_json(&self.client, &self.endpoint, idempotency_key, body).await
    }
}

/// The one-line answer kept as proof: the status, then `<label> <id>` when the provider
/// gave an id.
pub fn answer_line(status: StatusCode, label: &str, id: Option<&str>) -> String {
    format!(
        "{status} {}",
        id.map(|id| format!("{label} {id}")).unwrap_or_default()
    )
    .trim()
    .to_string()
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
    let mut request = client
        .inner
        .post(endpoint.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", idempotency_key)
        .body(body.to_string());
    if let Some(authorization) = &endpoint.authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    let request = request
        .build()
        .map_err(|e| DeliveryError::Permanent(format!("{name}: the request could not be built: {e}")))?;
    let exchange = async {
        let response = client.inner.execute(request).await.map_err(|e| {
            DeliveryError::Transient(format!("{name} could not be reached ({}): {e}", endpoint.url))
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| DeliveryError::Transient(format!("{name}: reading the answer failed: {e}")))?;
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
        let endpoint = Endpoint::new("x", "https://acme:pa55@sms.example/v1?x=a@b", None).unwrap();
        assert_eq!(endpoint.url.as_str(), "https://sms.example/v1?x=a@b");
        assert_eq!(
            endpoint.authorization.as_deref(),
            Some(
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("acme:pa55")
                )
                .as_str()
            )
        );
        let plain = Endpoint::new("x", "http://h/p", None).unwrap();
        assert_eq!((plain.url.as_str(), plain.authorization), ("http://h/p", None));
        assert!(Endpoint::new("x", "ftp://h/p", None).is_err());
    }

    /// A user and password are percent-encoded in a URL (`@`, `:`, `/`, `%` cannot appear
    /// as such): basic authentication sends them decoded, and the URL keeps neither.
    #[test]
    fn credentials_in_the_url_are_percent_decoded() {
        let endpoint = Endpoint::new(
            "the SMS gateway",
            "https://acme%40corp.example:p%40ss%3Aw%2Fd%25%20x@sms.example/v1",
            None,
        )
        .unwrap();
        assert_eq!(endpoint.url.as_str(), "https://sms.example/v1");
        assert_eq!(
            endpoint.authorization.as_deref(),
            Some(
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("acme@corp.example:p@ss:w/d% x")
                )
                .as_str()
            )
        );
        // A user without a password.
        let endpoint = Endpoint::new("x", "https://api%2Dkey@h/p", None).unwrap();
        assert_eq!(
            endpoint.authorization.as_deref(),
            Some(
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("api-key")
                )
                .as_str()
            )
        );
        // A bearer token wins over the URL's credentials, which are still dropped.
        let endpoint = Endpoint::new("x", "https://u:p@h/p", Some("t0k".into())).unwrap();
        assert_eq!(endpoint.authorization.as_deref(), Some("Bearer t0k"));
        assert_eq!(endpoint.url.as_str(), "https://h/p");
        // Not UTF-8 once decoded: refused, without repeating the password.
        let refused = Endpoint::new("x", "https://u:%FF%FE@h/p", None).err().unwrap();
        assert!(!format!("{refused:#}").contains("%FF"), "{refused:#}");
    }

    /// Each call is a span of its own, child of the caller's, and carries its W3C trace
    /// context as `traceparent`: the provider's logs join the reminder's trace.
    #[tokio::test]
    async fn each_call_is_a_span_whose_trace_context_goes_out_as_traceparent() {
        use axum::http::HeaderMap;
        use std::sync::{Arc, Mutex};
        use tracing::Instrument;

        let _telemetry = relance_telemetry::init("relance-sender-test", None).unwrap();
        let received: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
        let record = received.clone();
        let app = axum::Router::new().route(
            "/v1/messages",
            axum::routing::post(move |headers: HeaderMap| async move {
                record.lock().unwrap().push(headers);
                "{}"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = HttpClient::new(Duration::from_secs(5)).unwrap();
        let endpoint =
            Endpoint::new("the SMS gateway", &format!("http://{address}/v1/messages"), None).unwrap();

        let delivery = tracing::info_span!("delivery");
        let caller = delivery.in_scope(relance_telemetry::current_trace_headers);
        post_json(&client, &endpoint, "relance-sms_1-0001", &json!({}))
            .instrument(delivery)
            .await
            .unwrap();
        let headers = received.lock().unwrap().pop().unwrap();
        let sent = headers["traceparent"].to_str().unwrap().to_string();
        let caller = caller["traceparent"].clone();
        // 00-<trace id: 32 hex>-<span id: 16 hex>-<flags>
        let parts = |traceparent: &str| -> (String, String) {
            let fields: Vec<&str> = traceparent.split('-').collect();
            assert_eq!(fields.len(), 4, "{traceparent}");
            (fields[1].to_string(), fields[2].to_string())
        };
        let (sent_trace, sent_span) = parts(&sent);
        let (caller_trace, caller_span) = parts(&caller);
        assert_eq!(sent_trace, caller_trace, "the caller's trace: {sent} / {caller}");
        assert_ne!(sent_span, caller_span, "the call's own span: {sent} / {caller}");
        assert_ne!(sent_trace, "0".repeat(32));
    }
}
