//! Who may use the console: anyone on the machine when it listens on a loopback address;
//! otherwise only a request carrying `RELANCE_CONSOLE_TOKEN` (as a bearer token or as the
//! basic-auth password). And the CSRF protection of its forms: an HMAC, under a key drawn
//! at start, of a nonce kept in a SameSite=Strict cookie. It owns no page.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;

/// The cookie holding the browser's CSRF nonce.
pub const CSRF_COOKIE: &str = "relance_csrf";

/// Refuses to listen beyond this machine without a token.
pub fn check_bind(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() && token.is_none_or(str::is_empty) {
        anyhow::bail!(
            "RELANCE_CONSOLE_ADDR={addr} is reachable from other machines: set RELANCE_CONSOLE_TOKEN \
             (or RELANCE_CONSOLE_TOKEN_FILE) to require a token, or listen on 127.0.0.1"
        );
    }
    Ok(())
}

/// The token a request presents: `Authorization: Bearer <token>` or basic auth's password.
fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text.split_once(':').map(|(_, password)| password.to_string());
    }
    None
}

/// Compares digests, so the time taken says nothing about the token.
fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// The middleware: with a token configured, every request must present it.
pub async fn require_token(State(token): State<Option<Arc<str>>>, request: Request, next: Next) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    match presented(request.headers()) {
        Some(given) if same_secret(&given, &token) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"relance console\", charset=\"UTF-8\"")],
            "this console requires its token (RELANCE_CONSOLE_TOKEN) as a bearer token or basic-auth password\n",
        )
            .into_response(),
    }
}

/// The CSRF key of this process.
#[derive(Clone)]
pub struct Csrf {
    key: [u8; 32],
}

impl Csrf {
    pub fn new() -> Self {
        Self { key: rand::random() }
    }

    /// The MAC of a nonce (an HMAC key may have any length: `None` never happens).
    fn mac(&self, nonce: &str) -> Option<Hmac<Sha256>> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).ok()?;
        mac.update(nonce.as_bytes());
        Some(mac)
    }

    /// The form token for a browser's nonce.
    pub fn token(&self, nonce: &str) -> String {
        self.mac(nonce)
            .map(|mac| hex::encode(mac.finalize().into_bytes()))
            .unwrap_or_default()
    }

    /// Whether a form's token matches the nonce of the cookie it came with.
    pub fn verify(&self, nonce: &str, token: &str) -> bool {
        match (hex::decode(token.trim()), self.mac(nonce)) {
            (Ok(bytes), Some(mac)) => !bytes.is_empty() && mac.verify_slice(&bytes).is_ok(),
            _ => false,
        }
    }

    /// Refuses (403) a form whose token is missing or does not match the nonce cookie of the
    /// request (another site's form, or a page served before a restart): the refusal asks to
    /// reload `page` (e.g. "the task page").
    pub(crate) fn check_form(
        &self,
        headers: &HeaderMap,
        token: Option<&str>,
        page: &str,
    ) -> Result<(), crate::Failure> {
        if nonce_of(headers)
            .zip(token)
            .is_some_and(|(nonce, token)| self.verify(&nonce, token))
        {
            return Ok(());
        }
        Err(crate::Failure(
            StatusCode::FORBIDDEN,
            format!("the form's CSRF token is missing or does not match: reload {page} and try again"),
        ))
    }
}

impl Default for Csrf {
    fn default() -> Self {
        Self::new()
    }
}

/// The nonce of the request's CSRF cookie, if it has one.
pub fn nonce_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == CSRF_COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A fresh nonce and the cookie that carries it.
pub fn new_nonce() -> (String, String) {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let cookie = format!("{CSRF_COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Strict");
    (nonce, cookie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_console_reachable_from_outside_needs_a_token() {
        let outside: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(check_bind(outside, None).is_err());
        assert!(check_bind(outside, Some("")).is_err());
        assert!(check_bind(outside, Some("s3cret")).is_ok());
        assert!(check_bind(local, None).is_ok());
    }

    #[test]
    fn the_token_comes_as_bearer_or_basic_password() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(presented(&h).as_deref(), Some("abc"));
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:abc");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {basic}")).unwrap(),
        );
        assert_eq!(presented(&h).as_deref(), Some("abc"));
    }

    #[test]
    fn a_form_token_fits_only_its_own_nonce_and_process() {
        let csrf = Csrf::new();
        let token = csrf.token("aaaa");
        assert!(csrf.verify("aaaa", &token));
        assert!(!csrf.verify("bbbb", &token));
        assert!(!Csrf::new().verify("aaaa", &token));
    }
}
