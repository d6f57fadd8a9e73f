//! The dunning policy: which steps, on which channel, how firm, how many days from the due
//! date, per risk segment. Data, not code: a TOML file validated at start, whose errors name
//! the file, the line and the field.

use crate::customer::{Channel, Risk};
use chrono::NaiveTime;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use toml::Spanned;

/// The policy that ships with relance (see `docs/policy.md`).
pub const DEFAULT_POLICY_TOML: &str = include_str!("../policies/default.toml");
pub const DEFAULT_POLICY_FILE: &str = "<built-in default policy>";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tone {
    Courteous,
    Firm,
    Formal,
}

impl FromStr for Tone {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "courteous" => Ok(Tone::Courteous),
            "firm" => Ok(Tone::Firm),
            "formal" => Ok(Tone::Formal),
            other => Err(format!(
                "unknown tone {other:?} (expected courteous, firm or formal)"
            )),
        }
    }
}

impl Tone {
    pub fn as_str(self) -> &'static str {
        match self {
            Tone::Courteous => "courteous",
            Tone::Firm => "firm",
            Tone::Formal => "formal",
        }
    }
}

/// What a step is for: chasing the debt, or thanking once it is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Reminder,
    Thanks,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Reminder => "reminder",
            StepKind::Thanks => "thanks",
        }
    }
}

/// One step of a sequence, as validated from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTemplate {
    pub name: String,
    /// Days from the due date; negative before it.
    pub offset_days: i64,
    pub channel: Channel,
    pub template: String,
    pub tone: Tone,
    /// Where the step stands in its file, to point at it in later errors.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DunningPolicy {
    /// The customer's local time at which steps of a day go out.
    pub send_time: NaiveTime,
    pub thanks_template: String,
    pub segments: BTreeMap<RiskKey, Vec<StepTemplate>>,
}

/// `Risk` as a map key with a stable order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RiskKey(u8);

impl From<Risk> for RiskKey {
    fn from(r: Risk) -> Self {
        RiskKey(match r {
            Risk::Low => 0,
            Risk::Medium => 1,
            Risk::High => 2,
        })
    }
}

/// A policy file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file, self.line, self.field, self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    send_time: Spanned<String>,
    #[serde(default)]
    thanks_template: Option<Spanned<String>>,
    segments: Spanned<BTreeMap<Spanned<String>, RawSegment>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Spanned<String>,
    offset_days: Spanned<i64>,
    channel: Spanned<String>,
    template: Spanned<String>,
    tone: Spanned<String>,
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl DunningPolicy {
    pub fn default_policy() -> Result<Self, PolicyError> {
        Self::parse(DEFAULT_POLICY_TOML, DEFAULT_POLICY_FILE)
    }

    /// Parses and validates a policy; `file` only names the source in errors.
    pub fn parse(source: &str, file: &str) -> Result<Self, PolicyError> {
        let err = |span: std::ops::Range<usize>, field: &str, message: String| PolicyError {
            file: file.to_string(),
            line: line_of(source, span.start),
            field: field.to_string(),
            message,
        };
        let raw: RawPolicy = toml::from_str(source)
            .map_err(|e| err(e.span().unwrap_or(0..0), "syntax", e.message().to_string()))?;

        let send_time = NaiveTime::parse_from_str(raw.send_time.get_ref(), "%H:%M").map_err(|_| {
            err(
                raw.send_time.span(),
                "send_time",
                format!("{:?} is not a time of day as HH:MM", raw.send_time.get_ref()),
            )
        })?;
        let thanks_template = match &raw.thanks_template {
            Some(t) if !valid_identifier(t.get_ref()) => {
                return Err(err(
                    t.span(),
                    "thanks_template",
                    "must be lowercase letters, digits and _".into(),
                ))
            }
            Some(t) => t.get_ref().clone(),
            None => "thanks".to_string(),
        };

        let mut segments = BTreeMap::new();
        for (segment_name, segment) in raw.segments.get_ref() {
            let risk = Risk::from_str(segment_name.get_ref())
                .map_err(|m| err(segment_name.span(), "segments", m))?;
            let field = |f: &str| format!("segments.{}.steps.{f}", segment_name.get_ref());
            if segment.steps.is_empty() {
                return Err(err(
                    segment_name.span(),
                    &format!("segments.{}.steps", segment_name.get_ref()),
                    "a segment needs at least one step".into(),
                ));
            }
            let mut steps: Vec<StepTemplate> = Vec::new();
            for raw_step in &segment.steps {
                let s = raw_step.get_ref();
                let name = s.name.get_ref();
                if !valid_identifier(name) {
                    return Err(err(
                        s.name.span(),
                        &field("name"),
                        format!("{name:?} must be lowercase letters, digits and _"),
                    ));
                }
                if name == "thanks" {
                    return Err(err(
                        s.name.span(),
                        &field("name"),
                        "\"thanks\" is reserved for the thank-you message".into(),
                    ));
                }
                if steps.iter().any(|p| &p.name == name) {
                    return Err(err(
                        s.name.span(),
                        &field("name"),
                        format!("step {name:?} appears twice in this segment"),
                    ));
                }
                let offset_days = *s.offset_days.get_ref();
                if !(-60..=365).contains(&offset_days) {
                    return Err(err(
                        s.offset_days.span(),
                        &field("offset_days"),
                        format!("{offset_days} is out of range (-60 to 365 days)"),
                    ));
                }
                if let Some(previous) = steps.last() {
                    if offset_days <= previous.offset_days {
                        return Err(err(s.offset_days.span(), &field("offset_days"), format!(
                            "{offset_days} must come after the previous step's {} (steps are listed in order, one day at most one step)",
                            previous.offset_days
                        )));
                    }
                }
                let channel = Channel::from_str(s.channel.get_ref())
                    .map_err(|m| err(s.channel.span(), &field("channel"), m))?;
                if !valid_identifier(s.template.get_ref()) {
                    return Err(err(
                        s.template.span(),
                        &field("template"),
                        "must be lowercase letters, digits and _".into(),
                    ));
                }
                let tone =
                    Tone::from_str(s.tone.get_ref()).map_err(|m| err(s.tone.span(), &field("tone"), m))?;
                steps.push(StepTemplate {
                    name: name.clone(),
                    offset_days,
                    channel,
                    template: s.template.get_ref().clone(),
                    tone,
                    line: line_of(source, raw_step.span().start),
                });
            }
            segments.insert(RiskKey::from(risk), steps);
        }
        for risk in Risk::ALL {
            if !segments.contains_key(&RiskKey::from(*risk)) {
                return Err(err(
                    raw.segments.span(),
                    "segments",
                    format!("segment {risk:?} is missing (low, medium and high are all required)")
                        .to_lowercase(),
                ));
            }
        }
        Ok(Self {
            send_time,
            thanks_template,
            segments,
        })
    }

    pub fn steps_for(&self, risk: Risk) -> &[StepTemplate] {
        self.segments
            .get(&RiskKey::from(risk))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Every template name the policy refers to, so a renderer can check it has them all.
    pub fn templates(&self) -> Vec<(&str, usize)> {
        let mut all: Vec<(&str, usize)> = self
            .segments
            .values()
            .flatten()
            .map(|s| (s.template.as_str(), s.line))
            .collect();
        all.push((self.thanks_template.as_str(), 1));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_valid_and_follows_practice() {
        let policy = DunningPolicy::default_policy();
        assert!(policy.is_ok(), "{policy:?}");
        let Ok(policy) = policy else { return };
        let medium: Vec<(&str, i64)> = policy
            .steps_for(Risk::Medium)
            .iter()
            .map(|s| (s.name.as_str(), s.offset_days))
            .collect();
        assert_eq!(
            medium,
            vec![("pre_due", -5), ("reminder_1", 5), ("reminder_2", 12)]
        );
        assert_eq!(
            policy.send_time,
            NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default()
        );
    }

    fn error_of(source: &str) -> PolicyError {
        match DunningPolicy::parse(source, "policy.toml") {
            Err(e) => e,
            Ok(p) => PolicyError {
                file: String::new(),
                line: 0,
                field: String::new(),
                message: format!("unexpectedly valid: {p:?}"),
            },
        }
    }

    const VALID_TAIL: &str = r#"
[[segments.low.steps]]
name = "a"
offset_days = 5
channel = "email"
template = "reminder"
tone = "courteous"
[[segments.high.steps]]
name = "a"
offset_days = 5
channel = "email"
template = "reminder"
tone = "courteous"
"#;

    #[test]
    fn a_bad_channel_is_refused_with_its_line_and_field() {
        let source = format!(
            "send_time = \"09:00\"\n[[segments.medium.steps]]\nname = \"a\"\noffset_days = 5\nchannel = \"pigeon\"\ntemplate = \"x\"\ntone = \"firm\"\n{VALID_TAIL}"
        );
        let e = error_of(&source);
        assert_eq!(
            (e.line, e.field.as_str()),
            (5, "segments.medium.steps.channel"),
            "{e}"
        );
        assert!(e.to_string().starts_with("policy.toml:5: "), "{e}");
        assert!(e.message.contains("pigeon"), "{e}");
    }

    #[test]
    fn steps_out_of_order_are_refused() {
        let source = format!(
            "send_time = \"09:00\"\n[[segments.medium.steps]]\nname = \"a\"\noffset_days = 5\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n[[segments.medium.steps]]\nname = \"b\"\noffset_days = 5\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n{VALID_TAIL}"
        );
        let e = error_of(&source);
        assert_eq!(
            (e.line, e.field.as_str()),
            (10, "segments.medium.steps.offset_days"),
            "{e}"
        );
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let e = error_of("send_time = \"09:00\"\nsegments = [\n");
        assert_eq!((e.line, e.field.as_str()), (2, "syntax"), "{e}");
    }

    #[test]
    fn a_missing_segment_is_refused() {
        let e = error_of("send_time = \"09:00\"\n[[segments.low.steps]]\nname = \"a\"\noffset_days = 5\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n");
        assert!(e.message.contains("medium"), "{e}");
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let e = error_of(&format!("send_time = \"09:00\"\nsend_day = 3\n{VALID_TAIL}"));
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("send_day"), "{e}");
    }
}
