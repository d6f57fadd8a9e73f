//! The canonical serialisations the journal's hashes are computed over, written out in
//! docs/journal.md so that an auditor can recompute every hash without relance. Pure: no
//! I/O. Changing any byte produced here breaks every existing chain: add a new format
//! version instead.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// `prev_hash` of the first entry of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
pub const ENTRY_FORMAT: &str = "relance-journal-entry-v1";
pub const LINK_FORMAT: &str = "relance-journal-link-v1";
pub const DOCUMENT_FORMAT: &str = "relance-document-v1";

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// JSON with object keys sorted (by UTF-8 bytes), no whitespace, strings escaped as
/// serde_json does (`"`, `\` and control characters only). For the ASCII keys, strings and
/// integers relance writes, this is RFC 8785 (JCS).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// PostgreSQL keeps microseconds: times are cut to them before they are stored or hashed.
pub fn to_stored_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// `2026-03-11T08:00:00.000000Z`: UTC, always six decimals.
pub fn timestamp(at: DateTime<Utc>) -> String {
    to_stored_precision(at)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// What an entry says, independently of its place in the chain.
#[derive(Debug, Clone, Copy)]
pub struct EntryContent<'a> {
    pub at: DateTime<Utc>,
    pub invoice_number: Option<&'a str>,
    pub step_id: Option<Uuid>,
    pub action: &'a str,
    pub detail: &'a Value,
    pub document_sha256: Option<&'a str>,
}

impl EntryContent<'_> {
    pub fn canonical(&self) -> String {
        canonical_json(&serde_json::json!({
            "format": ENTRY_FORMAT,
            "at": timestamp(self.at),
            "invoice_number": self.invoice_number,
            "step_id": self.step_id.map(|id| id.to_string()),
            "action": self.action,
            "detail": self.detail,
            "document_sha256": self.document_sha256,
        }))
    }

    pub fn sha256(&self) -> String {
        sha256_hex(self.canonical().as_bytes())
    }
}

/// The link of an entry to its predecessor. Computed at commit by the database trigger
/// `journal_link_pending` (migration ...0006) with the same formula; verification recomputes
/// it here.
pub fn link_hash(id: i64, seq: i64, prev_hash: &str, content_sha256: &str) -> String {
    sha256_hex(format!("{LINK_FORMAT}\n{id}\n{seq}\n{prev_hash}\n{content_sha256}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_level_and_nothing_is_padded() {
        let v = json!({"b": 1, "a": {"z": [true, null, "é\n\"q\""], "y": -2.5}, "A": "x"});
        assert_eq!(
            canonical_json(&v),
            r#"{"A":"x","a":{"y":-2.5,"z":[true,null,"é\n\"q\""]},"b":1}"#
        );
    }

    #[test]
    fn an_entry_hash_is_stable_and_documented() {
        let at = Utc
            .with_ymd_and_hms(2026, 3, 11, 8, 0, 0)
            .single()
            .unwrap_or_default()
            + chrono::Duration::nanoseconds(123_456_789);
        let detail = json!({"step": "pre_due", "channel": "email"});
        let content = EntryContent {
            at,
            invoice_number: Some("F-1"),
            step_id: None,
            action: "reminder.queued",
            detail: &detail,
            document_sha256: None,
        };
        assert_eq!(
            content.canonical(),
            r#"{"action":"reminder.queued","at":"2026-03-11T08:00:00.123456Z","detail":{"channel":"email","step":"pre_due"},"document_sha256":null,"format":"relance-journal-entry-v1","invoice_number":"F-1","step_id":null}"#
        );
        // The worked example of docs/journal.md, recomputed there with sha256sum.
        assert_eq!(
            content.sha256(),
            "055c7112293d4fedfef0049e3a7437807035803440537f86473213c8042c1925"
        );
        assert_eq!(
            link_hash(1, 1, GENESIS_HASH, &content.sha256()),
            "24180b17eaa8f154a09e5524b2250cdc3f942c67de66565b8a8a95b657191871"
        );
    }
}
