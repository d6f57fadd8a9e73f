//! Every JSON example of `docs/messages.md` is a message of the contract: it reads as its
//! type without losing a field, and its schema (the one committed under `docs/schema/`)
//! accepts it. An example that matches no message type fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use relance_contracts::events::EventDetail;
use relance_contracts::schema::{
    event_schema, message_schema, visit_contract, ContractVisitor, Exchange, Message,
};
use relance_contracts::EventV1;
use serde_json::Value;

/// A ```json block of the doc, with the line it starts on.
struct Example {
    line: usize,
    body: Value,
}

fn doc_examples() -> Vec<Example> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/messages.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let mut examples = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (index, line) in doc.lines().enumerate() {
        match &mut open {
            None if line.trim_start().starts_with("```json") => open = Some((index + 2, String::new())),
            None => {}
            Some((start, text)) if line.trim_start().starts_with("```") => {
                let body = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("docs/messages.md:{start}: the example is not JSON: {e}"));
                examples.push(Example { line: *start, body });
                open = None;
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    assert!(open.is_none(), "docs/messages.md: a ```json block is not closed");
    examples
}

/// Whether `read` (the example read as its type and written again) keeps every field of
/// `written` (the example) with its value; `read` may add fields only at their defaults
/// (`null`, `false`, `[]`). Timestamps compare as instants (`+02:00` reads back as `Z`).
fn keeps(written: &Value, read: &Value, at: &str) -> Result<(), String> {
    match (written, read) {
        (Value::Object(w), Value::Object(r)) => {
            for (key, value) in w {
                let Some(back) = r.get(key) else {
                    return Err(format!("{at}.{key} is lost"));
                };
                keeps(value, back, &format!("{at}.{key}"))?;
            }
            for (key, value) in r {
                let default = matches!(value, Value::Null | Value::Bool(false))
                    || value.as_array().is_some_and(Vec::is_empty);
                if !w.contains_key(key) && !default {
                    return Err(format!("{at}.{key} appears as {value}"));
                }
            }
            Ok(())
        }
        (Value::Array(w), Value::Array(r)) if w.len() == r.len() => w
            .iter()
            .zip(r)
            .enumerate()
            .try_for_each(|(i, (w, r))| keeps(w, r, &format!("{at}[{i}]"))),
        (Value::String(w), Value::String(r)) if w != r => {
            let instant = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
            match (instant(w), instant(r)) {
                (Some(w), Some(r)) if w == r => Ok(()),
                _ => Err(format!("{at} reads back as {r:?}, not {w:?}")),
            }
        }
        (w, r) if w == r => Ok(()),
        (w, r) => Err(format!("{at} reads back as {r}, not {w}")),
    }
}

/// `body` read as `T`, written again, keeps every field.
fn round_trip<T: Message>(body: &Value) -> Result<(), String> {
    let read: T = serde_json::from_value(body.clone()).map_err(|e| format!("does not read: {e}"))?;
    let back = serde_json::to_value(&read).map_err(|e| format!("does not write: {e}"))?;
    keeps(body, &back, "$")
}

fn validate(schema: &Value, body: &Value) -> Result<(), String> {
    let validator = jsonschema::validator_for(schema).map_err(|e| format!("bad schema: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("the schema refuses it: {}", errors.join("; ")))
    }
}

/// Tries one example against every message type of the contract.
struct Matcher<'a> {
    body: &'a Value,
    /// The message types it is (`inbound/invoice.issued`...).
    matches: Vec<String>,
    /// Why the event type it names refused it.
    refusals: Vec<String>,
}

impl ContractVisitor for Matcher<'_> {
    fn message<M: Message>(&mut self, exchange: Exchange, routing_key: &'static str) {
        if self.body.get("event_type").is_some() {
            return;
        }
        let fits =
            round_trip::<M>(self.body).and_then(|()| validate(&message_schema::<M>(routing_key), self.body));
        if fits.is_ok() {
            self.matches.push(format!("{}/{routing_key}", exchange.folder()));
        }
    }

    fn event<D: EventDetail + Message>(&mut self) {
        if self.body.get("event_type").and_then(Value::as_str) != Some(D::EVENT_TYPE) {
            return;
        }
        let detail = self.body.get("detail").cloned().unwrap_or(Value::Null);
        let fits = round_trip::<EventV1>(self.body)
            .and_then(|()| round_trip::<D>(&detail).map_err(|e| format!("detail: {e}")))
            .and_then(|()| validate(&event_schema::<D>(), self.body));
        match fits {
            Ok(()) => self.matches.push(format!("events/{}", D::EVENT_TYPE)),
            Err(why) => self.refusals.push(format!("as {}: {why}", D::EVENT_TYPE)),
        }
    }
}

#[test]
fn every_example_of_the_doc_is_a_message_of_the_contract() {
    let examples = doc_examples();
    assert!(examples.len() >= 20, "only {} examples found", examples.len());
    let mut problems = Vec::new();
    for example in &examples {
        let mut matcher = Matcher {
            body: &example.body,
            matches: Vec::new(),
            refusals: Vec::new(),
        };
        visit_contract(&mut matcher);
        if matcher.matches.is_empty() {
            let why = if matcher.refusals.is_empty() {
                match example.body.get("event_type") {
                    Some(t) => format!("no detail type for event_type {t}"),
                    None => "it matches no message type".to_string(),
                }
            } else {
                matcher.refusals.join("; ")
            };
            problems.push(format!("docs/messages.md:{}: {why}", example.line));
        }
    }
    assert!(
        problems.is_empty(),
        "examples that are not the contract:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn an_example_with_a_lost_field_is_caught() {
    let mut body: Value = serde_json::json!({
        "version": 1,
        "event_id": "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
        "event_type": "invoice.settled",
        "occurred_at": "2026-07-06T08:15:02.118Z",
        "invoice_number": "F-2026-0042",
        "detail": { "amount_paid": "1500.00", "currency": "EUR" }
    });
    assert!(round_trip::<relance_contracts::InvoiceSettledV1>(&body["detail"]).is_ok());
    body["detail"]["amount_payed"] = "1".into();
    let lost = round_trip::<relance_contracts::InvoiceSettledV1>(&body["detail"]).unwrap_err();
    assert_eq!(lost, "$.amount_payed is lost");
}
