//! Reading the reply settings of a policy file (`[replies]` and each step's
//! `request_receipt`) into [`ReplyRules`]. No I/O.
//!
//! `[replies] pause_on_reply = true`: a customer's reply to a message (matched by the
//! replies reader, `relance run replies`) holds the invoice's sequence (a pause of kind
//! `reply`) until someone handles it. A step's `request_receipt = true`: its email asks for a
//! read notification (`Disposition-Notification-To`) and carries the customer page's "I have
//! received this invoice" button.

use super::{step_path, toml_refusal, DunningPolicy, PolicyError};
use crate::customer::{Risk, RiskKey};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::str::FromStr;
use toml::Spanned;

/// The reply settings of a policy file, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplyRules {
    /// A reply pauses the sequence until it is handled (`[replies] pause_on_reply`).
    pub pause_on_reply: bool,
    /// Steps that request an acknowledgement of receipt, by segment and name.
    pub receipt_steps: Vec<(RiskKey, String)>,
}

impl DunningPolicy {
    /// Whether the step of the customer's segment (`risk`) named `step_name` asks for an
    /// acknowledgement of receipt.
    pub fn requests_receipt(&self, risk: Risk, step_name: &str) -> bool {
        self.replies
            .receipt_steps
            .iter()
            .any(|(segment, name)| *segment == RiskKey::from(risk) && name == step_name)
    }
}

#[derive(Deserialize)]
struct FileView {
    #[serde(default)]
    replies: Option<Spanned<RawReplies>>,
    #[serde(default)]
    segments: BTreeMap<String, SegmentView>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplies {
    #[serde(default)]
    pause_on_reply: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
struct SegmentView {
    #[serde(default)]
    steps: Vec<StepView>,
}

#[derive(Deserialize)]
struct StepView {
    #[serde(default)]
    name: String,
    #[serde(default)]
    request_receipt: Option<Spanned<toml::Value>>,
}

/// Reads and validates the reply settings of a policy file whose other parts `policy.rs`
/// has already validated; errors name the file, the line and the field like its own.
pub(crate) fn parse(source: &str, file: &str) -> Result<ReplyRules, PolicyError> {
    let err = |span: std::ops::Range<usize>, field: &str, message: String| PolicyError {
        file: file.to_string(),
        line: super::line_of(source, span.start),
        field: field.to_string(),
        message,
    };
    let boolean = |value: &Spanned<toml::Value>, field: &str| match value.get_ref() {
        toml::Value::Boolean(b) => Ok(*b),
        other => Err(err(
            value.span(),
            field,
            format!("must be true or false, not {other}"),
        )),
    };
    let view: FileView = toml::from_str(source).map_err(|e| toml_refusal(source, file, &e))?;
    let mut rules = ReplyRules::default();
    if let Some(raw) = &view.replies {
        if let Some(pause) = &raw.get_ref().pause_on_reply {
            rules.pause_on_reply = boolean(pause, "replies.pause_on_reply")?;
        }
    }
    for (segment, steps) in &view.segments {
        let Ok(risk) = Risk::from_str(segment) else {
            continue;
        };
        for (index, step) in steps.steps.iter().enumerate() {
            let Some(request) = &step.request_receipt else {
                continue;
            };
            let field = format!("{}.request_receipt", step_path(segment, index));
            if boolean(request, &field)? {
                rules.receipt_steps.push((RiskKey::from(risk), step.name.clone()));
            }
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn steps(option: &str) -> String {
        let step = |segment: &str, extra: &str| {
            format!(
                "[[segments.{segment}.steps]]\nname = \"reminder_1\"\noffset_days = 5\nchannel = \"email\"\ntemplate = \"reminder\"\ntone = \"courteous\"\n{extra}\n"
            )
        };
        format!(
            "{}{}{}",
            step("low", ""),
            step("medium", option),
            step("high", "")
        )
    }

    #[test]
    fn without_settings_nothing_pauses_and_no_receipt_is_asked() {
        let p = DunningPolicy::parse(&format!("send_time = \"09:00\"\n{}", steps("")), "t.toml").unwrap();
        assert!(!p.replies.pause_on_reply);
        assert!(!p.requests_receipt(Risk::Medium, "reminder_1"));
    }

    #[test]
    fn pause_on_reply_and_a_step_asking_for_receipt() {
        let source = format!(
            "send_time = \"09:00\"\n[replies]\npause_on_reply = true\n{}",
            steps("request_receipt = true")
        );
        let p = DunningPolicy::parse(&source, "t.toml").unwrap();
        assert!(p.replies.pause_on_reply);
        assert!(p.requests_receipt(Risk::Medium, "reminder_1"));
        assert!(!p.requests_receipt(Risk::Low, "reminder_1"));
    }

    #[test]
    fn a_wrong_value_is_refused_with_its_line() {
        let source = format!("send_time = \"09:00\"\n{}", steps("request_receipt = \"yes\""));
        let e = DunningPolicy::parse(&source, "t.toml").unwrap_err();
        assert_eq!(e.field, "segments.medium.steps[0].request_receipt");
        assert_eq!(e.line, 15);
        let e = DunningPolicy::parse("send_time = \"09:00\"\n[replies]\npause_on_reply = 1\n", "t.toml")
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("t.toml:"), "{e}");
    }
}
