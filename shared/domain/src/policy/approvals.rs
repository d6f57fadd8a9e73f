//! Reading the approval settings of a policy file (`[approvals]` and each step's `approval`)
//! into [`ApprovalRules`], and the pure rule that says whether a due step waits for a person
//! to approve it ([`DunningPolicy::needs_approval`]). No I/O: the scheduler asks, with what it
//! knows of the customer.
//!
//! A policy without `[approvals]` asks for no approval (files written before approvals keep
//! their behaviour). With `[approvals]`, the steps whose template is in `manual_templates`
//! (by default the formal notice, `["formal_notice"]`) wait for approval; a step's own
//! `approval = "manual"` or `"auto"` overrides that. A customer set to `manual` waits on every
//! reminder step, whatever the policy says. `[approvals] hand_off = "manual" | "auto"` says
//! whether an invoice due for hand-off waits for approval (manual by default with
//! `[approvals]`; a manual customer's hand-off always waits).

use super::{step_path, toml_refusal, DunningPolicy, PolicyError};
use crate::customer::{Risk, RiskKey};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use toml::Spanned;

/// Whether a step (or a customer's steps) waits for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Waits for a person to approve it.
    Manual,
    /// Goes out on its own.
    Auto,
}

impl ApprovalMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::Manual => "manual",
            ApprovalMode::Auto => "auto",
        }
    }
}

impl fmt::Display for ApprovalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApprovalMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "manual" => Ok(ApprovalMode::Manual),
            "auto" => Ok(ApprovalMode::Auto),
            other => Err(format!("unknown approval {other:?} (expected manual or auto)")),
        }
    }
}

/// The templates that wait for approval when `[approvals]` names none: the formal notice.
pub const DEFAULT_MANUAL_TEMPLATES: [&str; 1] = ["formal_notice"];
/// How long an approval waits when `[approvals]` says nothing.
pub const DEFAULT_EXPIRES_AFTER_DAYS: u32 = 7;
/// The longest wait a policy may set.
pub const MAX_EXPIRES_AFTER_DAYS: i64 = 90;

/// The approval settings of a policy file, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRules {
    /// Steps rendered from these templates wait for approval (empty without `[approvals]`).
    pub manual_templates: Vec<String>,
    /// Days a request waits for a decision before it expires (the step is then skipped).
    pub expires_after_days: u32,
    /// Steps with their own `approval`, by segment and name.
    pub steps: Vec<(RiskKey, String, ApprovalMode)>,
    /// Whether an invoice due for hand-off waits for approval (`[approvals] hand_off`; manual
    /// by default with `[approvals]`, auto without it).
    pub hand_off: ApprovalMode,
}

impl Default for ApprovalRules {
    fn default() -> Self {
        ApprovalRules {
            manual_templates: Vec::new(),
            expires_after_days: DEFAULT_EXPIRES_AFTER_DAYS,
            steps: Vec::new(),
            hand_off: ApprovalMode::Auto,
        }
    }
}

impl ApprovalRules {
    /// Whether an invoice due for hand-off waits for approval: the policy's `hand_off`, or
    /// always for a customer set to manual.
    pub fn hand_off_needs_approval(&self, customer: Option<ApprovalMode>) -> bool {
        customer == Some(ApprovalMode::Manual) || self.hand_off == ApprovalMode::Manual
    }
}

impl DunningPolicy {
    /// Whether a reminder step of the customer's segment (`risk`), named `step_name` and
    /// rendered from `template`, waits for approval when it falls due. `customer`: the
    /// customer's own setting, if any (`manual` holds every step; `auto` leaves it to the
    /// policy).
    pub fn needs_approval(
        &self,
        risk: Risk,
        step_name: &str,
        template: &str,
        customer: Option<ApprovalMode>,
    ) -> bool {
        if customer == Some(ApprovalMode::Manual) {
            return true;
        }
        let own = self
            .approvals
            .steps
            .iter()
            .find(|(segment, name, _)| *segment == RiskKey::from(risk) && name == step_name)
            .map(|(_, _, mode)| *mode);
        match own {
            Some(mode) => mode == ApprovalMode::Manual,
            None => self.approvals.manual_templates.iter().any(|t| t == template),
        }
    }
}

#[derive(Deserialize)]
struct FileView {
    #[serde(default)]
    approvals: Option<Spanned<RawApprovals>>,
    #[serde(default)]
    segments: BTreeMap<String, SegmentView>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    #[serde(default)]
    manual_templates: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    expires_after_days: Option<Spanned<i64>>,
    #[serde(default)]
    hand_off: Option<Spanned<String>>,
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
    approval: Option<Spanned<String>>,
}

/// Reads and validates the approval settings of a policy file whose other parts `policy.rs`
/// has already validated; errors name the file, the line and the field like its own.
pub(crate) fn parse(source: &str, file: &str) -> Result<ApprovalRules, PolicyError> {
    let err = |span: std::ops::Range<usize>, field: &str, message: String| PolicyError {
        file: file.to_string(),
        line: super::line_of(source, span.start),
        field: field.to_string(),
        message,
    };
    let view: FileView = toml::from_str(source).map_err(|e| toml_refusal(source, file, &e))?;
    let mut rules = ApprovalRules::default();
    if let Some(raw) = &view.approvals {
        let raw = raw.get_ref();
        rules.manual_templates = match &raw.manual_templates {
            None => DEFAULT_MANUAL_TEMPLATES.iter().map(|t| t.to_string()).collect(),
            Some(list) => list
                .iter()
                .map(|t| {
                    if super::valid_identifier(t.get_ref()) {
                        Ok(t.get_ref().clone())
                    } else {
                        Err(err(
                            t.span(),
                            "approvals.manual_templates",
                            "must be lowercase letters, digits and _".to_string(),
                        ))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        if let Some(days) = &raw.expires_after_days {
            let value = *days.get_ref();
            if !(1..=MAX_EXPIRES_AFTER_DAYS).contains(&value) {
                return Err(err(
                    days.span(),
                    "approvals.expires_after_days",
                    format!("{value} is out of range (1 to {MAX_EXPIRES_AFTER_DAYS} days)"),
                ));
            }
            rules.expires_after_days = u32::try_from(value).unwrap_or(DEFAULT_EXPIRES_AFTER_DAYS);
        }
        rules.hand_off = match &raw.hand_off {
            None => ApprovalMode::Manual,
            Some(mode) => ApprovalMode::from_str(mode.get_ref())
                .map_err(|m| err(mode.span(), "approvals.hand_off", m))?,
        };
    }
    for (segment, steps) in &view.segments {
        let Ok(risk) = Risk::from_str(segment) else {
            continue;
        };
        for (index, step) in steps.steps.iter().enumerate() {
            let Some(approval) = &step.approval else {
                continue;
            };
            let mode = ApprovalMode::from_str(approval.get_ref()).map_err(|m| {
                err(
                    approval.span(),
                    &format!("{}.approval", step_path(segment, index)),
                    m,
                )
            })?;
            rules.steps.push((RiskKey::from(risk), step.name.clone(), mode));
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const STEPS: &str = r#"
send_time = "09:00"
[[segments.low.steps]]
name = "reminder_1"
offset_days = 5
channel = "email"
template = "reminder"
tone = "courteous"
[[segments.medium.steps]]
name = "reminder_1"
offset_days = 5
channel = "email"
template = "reminder"
tone = "courteous"
approval = "manual"
[[segments.medium.steps]]
name = "formal_notice"
offset_days = 30
channel = "email"
template = "formal_notice"
tone = "formal"
[[segments.high.steps]]
name = "formal_notice"
offset_days = 30
channel = "email"
template = "formal_notice"
tone = "formal"
approval = "auto"
"#;

    fn policy(extra: &str) -> Result<DunningPolicy, PolicyError> {
        DunningPolicy::parse(&format!("{extra}\n{STEPS}"), "test.toml")
    }

    #[test]
    fn without_approvals_only_steps_that_ask_wait() {
        let p = policy("").unwrap();
        assert!(!p.needs_approval(Risk::Medium, "formal_notice", "formal_notice", None));
        assert!(p.needs_approval(Risk::Medium, "reminder_1", "reminder", None));
        assert!(!p.needs_approval(Risk::Low, "reminder_1", "reminder", None));
        assert_eq!(p.approvals.expires_after_days, DEFAULT_EXPIRES_AFTER_DAYS);
    }

    #[test]
    fn an_approvals_table_holds_the_formal_notice_by_default_unless_the_step_opts_out() {
        // `[approvals]` goes before the segments: a TOML table ends at the next header.
        let p = DunningPolicy::parse(
            &format!(
                "send_time = \"09:00\"\n[approvals]\nexpires_after_days = 5\n{}",
                &STEPS[20..]
            ),
            "test.toml",
        )
        .unwrap();
        assert!(p.needs_approval(Risk::Medium, "formal_notice", "formal_notice", None));
        assert!(!p.needs_approval(Risk::High, "formal_notice", "formal_notice", None));
        assert_eq!(p.approvals.expires_after_days, 5);
        assert!(
            p.approvals.hand_off_needs_approval(None),
            "the hand-off waits by default"
        );
        let auto = DunningPolicy::parse(
            &format!(
                "send_time = \"09:00\"\n[approvals]\nhand_off = \"auto\"\n{}",
                &STEPS[20..]
            ),
            "test.toml",
        )
        .unwrap();
        assert!(!auto.approvals.hand_off_needs_approval(None));
        assert!(auto.approvals.hand_off_needs_approval(Some(ApprovalMode::Manual)));
        assert!(
            !policy("").unwrap().approvals.hand_off_needs_approval(None),
            "no [approvals]: auto"
        );
    }

    #[test]
    fn a_manual_customer_waits_on_every_step() {
        let p = policy("").unwrap();
        assert!(p.needs_approval(Risk::Low, "reminder_1", "reminder", Some(ApprovalMode::Manual)));
        assert!(!p.needs_approval(Risk::Low, "reminder_1", "reminder", Some(ApprovalMode::Auto)));
    }

    #[test]
    fn a_bad_approval_is_refused_with_its_field() {
        let bad = STEPS.replace("approval = \"manual\"", "approval = \"sometimes\"");
        let e = DunningPolicy::parse(&bad, "test.toml").unwrap_err();
        assert_eq!(e.field, "segments.medium.steps[0].approval");
        let e = DunningPolicy::parse(
            &format!(
                "send_time = \"09:00\"\n[approvals]\nexpires_after_days = 0\n{}",
                &STEPS[20..]
            ),
            "test.toml",
        )
        .unwrap_err();
        assert_eq!(e.field, "approvals.expires_after_days");
    }
}
