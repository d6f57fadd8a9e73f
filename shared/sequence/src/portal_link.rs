//! The customer page's links (`relance run portal`, docs/portal.md): per invoice, `base64url(payload).base64url(HMAC-SHA256)` where
//! the payload is `v1|<invoice number>|<made at, ms>|<expires at, ms>`, signed under
//! `RELANCE_PORTAL_SECRET`. Nobody without the key can make or alter one; it expires; a
//! revocation (`portal_revocations`) refuses every link of the invoice made until then.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a valid link says.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub invoice_number: String,
    pub made_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Why a link is refused (the page says no more than "not valid" or "no longer valid").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a link this key made (tampered, truncated, another key).
    Invalid,
    /// Genuine, but expired or revoked.
    Gone,
}

fn mac(secret: &str) -> anyhow::Result<Hmac<Sha256>> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .map_err(|e| anyhow::anyhow!("the portal secret cannot key an HMAC: {e}"))
}

/// A link for `invoice_number` made at `now`, valid `days` days.
pub fn sign(secret: &str, invoice_number: &str, now: DateTime<Utc>, days: u32) -> anyhow::Result<String> {
    let expires = now + Duration::days(i64::from(days));
    let payload = format!(
        "v1|{invoice_number}|{}|{}",
        now.timestamp_millis(),
        expires.timestamp_millis()
    );
    let mut mac = mac(secret)?;
    mac.update(payload.as_bytes());
    let tag = mac.finalize().into_bytes();
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(tag)
    ))
}

/// Checks the signature and the expiry (not the revocations: see [`revoked`]).
pub fn verify(secret: &str, token: &str, now: DateTime<Utc>) -> Result<Claims, Refusal> {
    let (payload, tag) = token.split_once('.').ok_or(Refusal::Invalid)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Refusal::Invalid)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| Refusal::Invalid)?;
    let mut mac = mac(secret).map_err(|_| Refusal::Invalid)?;
    mac.update(&payload);
    mac.verify_slice(&tag).map_err(|_| Refusal::Invalid)?;
    let payload = String::from_utf8(payload).map_err(|_| Refusal::Invalid)?;
    let mut parts = payload.split('|');
    let (Some("v1"), Some(number), Some(made), Some(expires), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Refusal::Invalid);
    };
    let at = |ms: &str| {
        ms.parse::<i64>()
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .ok_or(Refusal::Invalid)
    };
    let claims = Claims {
        invoice_number: number.to_string(),
        made_at: at(made)?,
        expires_at: at(expires)?,
    };
    if now >= claims.expires_at {
        return Err(Refusal::Gone);
    }
    Ok(claims)
}

/// The payment link a message carries when the customer page is published
/// (`RELANCE_PORTAL_URL` and `RELANCE_PORTAL_SECRET` set): the invoice's page, made at `now`
/// (the page shows the invoice's own payment link). `None` otherwise.
pub fn message_link(
    settings: &relance_config::Settings,
    invoice_number: &str,
    now: DateTime<Utc>,
) -> Option<String> {
    let base = settings.portal_url.as_deref()?;
    let secret = settings.portal_secret.as_deref()?;
    let token = sign(secret, invoice_number, now, settings.portal_token_days).ok()?;
    Some(format!("{base}/p/{token}"))
}

/// Whether a revocation made at `revoked_at` covers a link made at `made_at`.
pub fn revoked(made_at: DateTime<Utc>, revoked_at: Option<DateTime<Utc>>) -> bool {
    revoked_at.is_some_and(|r| made_at <= r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        "2026-06-01T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_link_opens_until_it_expires() {
        let token = sign("key", "F-1", t0(), 60).unwrap();
        let claims = verify("key", &token, t0() + Duration::days(59)).unwrap();
        assert_eq!(claims.invoice_number, "F-1");
        assert_eq!(
            verify("key", &token, t0() + Duration::days(60)),
            Err(Refusal::Gone)
        );
    }

    #[test]
    fn a_tampered_link_or_another_key_is_invalid() {
        let token = sign("key", "F-1", t0(), 60).unwrap();
        assert_eq!(verify("other", &token, t0()), Err(Refusal::Invalid));
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(format!("v1|F-2|{}|{}", t0().timestamp_millis(), i64::MAX / 2))
        );
        assert_eq!(verify("key", &forged, t0()), Err(Refusal::Invalid));
        assert_eq!(verify("key", "garbage", t0()), Err(Refusal::Invalid));
        let mut flipped = token.clone();
        flipped.pop();
        flipped.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(verify("key", &flipped, t0()), Err(Refusal::Invalid));
    }

    #[test]
    fn a_revocation_covers_the_links_made_until_then() {
        assert!(revoked(t0(), Some(t0())));
        assert!(!revoked(t0() + Duration::seconds(1), Some(t0())));
        assert!(!revoked(t0(), None));
    }
}
