//! Reading the fallback settings of a policy file (`fallback`, `fallback_templates`, per
//! step or for the whole policy) into the [`FallbackRules`] of `crate::fallback`, and a
//! policy's fallback order and templates for a step.

use super::{step_path, toml_refusal, DunningPolicy, PolicyError, TemplateUse};
use crate::customer::{Channel, Risk, RiskKey};
use crate::fallback::{builtin_fallback_template, FallbackRules, StepFallback};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::str::FromStr;
use toml::Spanned;

fn lookup(pairs: &[(Channel, String)], channel: Channel) -> Option<&str> {
    pairs.iter().find(|(c, _)| *c == channel).map(|(_, t)| t.as_str())
}

fn line_for(lines: &[(Channel, usize)], channel: Channel) -> usize {
    lines.iter().find(|(c, _)| *c == channel).map_or(1, |(_, l)| *l)
}

impl DunningPolicy {
    /// The fallback order of a step on `channel`, each channel with the template the step
    /// uses there: the step's own `fallback`, else the policy's `[fallback]` for the channel.
    /// A step the policy does not list (a thank-you) falls back by the policy's order.
    pub fn fallback_order(&self, risk: Risk, step_name: &str, channel: Channel) -> Vec<(Channel, String)> {
        let own = self.own_fallback(risk, step_name, channel);
        let order = match own.and_then(|s| s.order.as_ref()) {
            Some(order) => order.clone(),
            None => self
                .fallbacks
                .orders
                .iter()
                .find(|(c, _)| *c == channel)
                .map(|(_, order)| order.clone())
                .unwrap_or_default(),
        };
        order
            .into_iter()
            .map(|target| {
                let template = own
                    .and_then(|s| lookup(&s.templates, target))
                    .or_else(|| lookup(&self.fallbacks.templates, target))
                    .unwrap_or(builtin_fallback_template(target));
                (target, template.to_string())
            })
            .collect()
    }

    /// A step's own fallback settings, if it has any.
    fn own_fallback(&self, risk: Risk, step_name: &str, channel: Channel) -> Option<&StepFallback> {
        self.fallbacks.steps.iter().find(|s| {
            s.segment == RiskKey::from(risk)
                && s.name == step_name
                && self
                    .steps_for(risk)
                    .iter()
                    .any(|p| p.name == step_name && p.channel == channel)
        })
    }

    /// Every template a fallback may render, with the line and field that call for it (the
    /// step's own `fallback_templates`, the policy's, else the order that falls back to a
    /// built-in template), so that a renderer can check at start that it has them all.
    pub fn fallback_templates_needed(&self) -> Vec<TemplateUse> {
        let mut needed = Vec::new();
        for (key, steps) in &self.segments {
            let Some(risk) = Risk::ALL.iter().copied().find(|r| RiskKey::from(*r) == *key) else {
                continue;
            };
            for step in steps {
                let own = self.own_fallback(risk, &step.name, step.channel);
                for (target, template) in self.fallback_order(risk, &step.name, step.channel) {
                    let (line, field, why) = match own {
                        Some(own) if lookup(&own.templates, target).is_some() => (
                            line_for(&own.template_lines, target),
                            format!("{}.fallback_templates.{}", own.path, target.as_str()),
                            None,
                        ),
                        _ if lookup(&self.fallbacks.templates, target).is_some() => (
                            line_for(&self.fallbacks.template_lines, target),
                            format!("fallback_templates.{}", target.as_str()),
                            None,
                        ),
                        _ => {
                            let (line, field) = match own.filter(|o| o.order.is_some()) {
                                Some(own) => (own.order_line, format!("{}.fallback", own.path)),
                                None => (
                                    line_for(&self.fallbacks.order_lines, step.channel),
                                    format!("fallback.{}", step.channel.as_str()),
                                ),
                            };
                            let why = format!(
                                "the built-in template of a fallback to {}, for step {:?} of {}",
                                target.as_str(),
                                step.name,
                                step.path
                            );
                            (line, field, Some(why))
                        }
                    };
                    needed.push(TemplateUse {
                        template,
                        channel: target,
                        line,
                        field,
                        why,
                    });
                }
            }
        }
        needed
    }
}

// The file as far as fallbacks are concerned: the rest is checked by `policy.rs`, which
// refuses unknown keys, so every key here is known and at its place.

type ChannelMap<V> = Spanned<BTreeMap<Spanned<String>, V>>;

#[derive(Deserialize)]
struct FileView {
    #[serde(default)]
    fallback: Option<ChannelMap<Spanned<Vec<Spanned<String>>>>>,
    #[serde(default)]
    fallback_templates: Option<ChannelMap<Spanned<String>>>,
    #[serde(default)]
    segments: BTreeMap<String, SegmentView>,
}

#[derive(Deserialize)]
struct SegmentView {
    #[serde(default)]
    steps: Vec<Spanned<StepView>>,
}

#[derive(Deserialize)]
struct StepView {
    name: String,
    channel: String,
    #[serde(default)]
    fallback: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    fallback_templates: Option<ChannelMap<Spanned<String>>>,
}

struct At<'a> {
    source: &'a str,
    file: &'a str,
}

impl At<'_> {
    fn err(&self, span: std::ops::Range<usize>, field: &str, message: impl Into<String>) -> PolicyError {
        PolicyError {
            file: self.file.to_string(),
            line: self.line(span.start),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn line(&self, offset: usize) -> usize {
        self.source[..offset.min(self.source.len())].matches('\n').count() + 1
    }

    fn channel(&self, name: &Spanned<String>, field: &str) -> Result<Channel, PolicyError> {
        Channel::from_str(name.get_ref()).map_err(|m| self.err(name.span(), field, m))
    }

    /// An order for steps on `from`: known channels, not `from` itself, none twice.
    fn order(
        &self,
        from: Channel,
        raw: &Spanned<Vec<Spanned<String>>>,
        field: &str,
    ) -> Result<Vec<Channel>, PolicyError> {
        let mut order = Vec::new();
        for name in raw.get_ref() {
            let channel = self.channel(name, field)?;
            if channel == from {
                return Err(self.err(
                    name.span(),
                    field,
                    format!("a {} step cannot fall back to {0} itself", from.as_str()),
                ));
            }
            if order.contains(&channel) {
                return Err(self.err(
                    name.span(),
                    field,
                    format!("{} appears twice in the fallback order", channel.as_str()),
                ));
            }
            order.push(channel);
        }
        Ok(order)
    }

    fn templates(
        &self,
        raw: &ChannelMap<Spanned<String>>,
        field: &str,
        lines: &mut Vec<(Channel, usize)>,
    ) -> Result<Vec<(Channel, String)>, PolicyError> {
        let mut out = Vec::new();
        for (channel, template) in raw.get_ref() {
            let channel = self.channel(channel, field)?;
            let name = template.get_ref();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(self.err(
                    template.span(),
                    &format!("{field}.{}", channel.as_str()),
                    "must be lowercase letters, digits and _",
                ));
            }
            out.push((channel, name.clone()));
            lines.push((channel, self.line(template.span().start)));
        }
        Ok(out)
    }
}

/// Reads and validates the fallback settings of a policy file whose other parts `policy.rs`
/// has already validated; errors name the file, the line and the field like its own.
pub(crate) fn parse(source: &str, file: &str) -> Result<FallbackRules, PolicyError> {
    let at = At { source, file };
    let view: FileView = toml::from_str(source).map_err(|e| toml_refusal(source, file, &e))?;
    let mut rules = FallbackRules::default();
    if let Some(orders) = &view.fallback {
        for (from, order) in orders.get_ref() {
            let channel = at.channel(from, "fallback")?;
            let field = format!("fallback.{}", channel.as_str());
            rules.orders.push((channel, at.order(channel, order, &field)?));
            rules.order_lines.push((channel, at.line(order.span().start)));
        }
    }
    if let Some(templates) = &view.fallback_templates {
        rules.templates = at.templates(templates, "fallback_templates", &mut rules.template_lines)?;
    }
    for (segment, steps) in &view.segments {
        let Ok(risk) = Risk::from_str(segment) else {
            continue;
        };
        for (index, raw) in steps.steps.iter().enumerate() {
            let step = raw.get_ref();
            let Ok(channel) = Channel::from_str(&step.channel) else {
                continue;
            };
            let path = step_path(segment, index);
            let field = |f: &str| format!("{path}.{f}");
            let order = match &step.fallback {
                Some(order) => Some(at.order(channel, order, &field("fallback"))?),
                None => None,
            };
            let mut template_lines = Vec::new();
            let templates = match &step.fallback_templates {
                Some(t) => at.templates(t, &field("fallback_templates"), &mut template_lines)?,
                None => Vec::new(),
            };
            let order_line = step
                .fallback
                .as_ref()
                .map_or(at.line(raw.span().start), |o| at.line(o.span().start));
            if order.is_none() && templates.is_empty() {
                continue;
            }
            rules.steps.push(StepFallback {
                segment: RiskKey::from(risk),
                name: step.name.clone(),
                order,
                templates,
                line: at.line(raw.span().start),
                path,
                order_line,
                template_lines,
            });
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEGMENTS: &str = r#"
[[segments.SEGMENT.steps]]
name = "reminder_1"
offset_days = 5
channel = "email"
template = "reminder"
tone = "courteous"

[[segments.SEGMENT.steps]]
name = "call_1"
offset_days = 12
channel = "call"
template = "call_script"
tone = "firm"
STEP_EXTRA
[[segments.SEGMENT.steps]]
name = "sms_1"
offset_days = 17
channel = "sms"
template = "sms_reminder"
tone = "firm"
"#;

    fn policy_source(head: &str, medium_call_extra: &str) -> String {
        let mut source = format!("send_time = \"09:00\"\n{head}\n");
        for segment in ["low", "medium", "high"] {
            let extra = if segment == "medium" {
                medium_call_extra
            } else {
                ""
            };
            source.push_str(&SEGMENTS.replace("SEGMENT", segment).replace("STEP_EXTRA", extra));
        }
        source
    }

    fn parsed(head: &str, extra: &str) -> Result<DunningPolicy, PolicyError> {
        DunningPolicy::parse(&policy_source(head, extra), "policy.toml")
    }

    fn error(head: &str, extra: &str) -> PolicyError {
        match parsed(head, extra) {
            Err(e) => e,
            Ok(_) => PolicyError {
                file: String::new(),
                line: 0,
                field: String::new(),
                message: "unexpectedly valid".into(),
            },
        }
    }

    #[test]
    fn a_policy_without_fallbacks_has_none() {
        let policy = parsed("", "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy.fallbacks, FallbackRules::default());
        assert!(policy
            .fallback_order(Risk::Medium, "call_1", Channel::Call)
            .is_empty());
    }

    #[test]
    fn policy_orders_apply_to_every_step_of_a_channel_and_a_step_may_override_them() {
        let head = "[fallback]\nsms = [\"call\", \"email\"]\ncall = [\"email\"]\n[fallback_templates]\nemail = \"reminder\"\n";
        let extra = "fallback = [\"sms\", \"email\"]\nfallback_templates = { email = \"firm_reminder\" }\n";
        let policy = parsed(head, extra).unwrap_or_else(|e| panic!("{e}"));
        let names = |order: Vec<(Channel, String)>| -> Vec<String> {
            order
                .into_iter()
                .map(|(c, t)| format!("{}:{t}", c.as_str()))
                .collect()
        };
        assert_eq!(
            names(policy.fallback_order(Risk::Medium, "call_1", Channel::Call)),
            vec!["sms:sms_reminder", "email:firm_reminder"],
            "the step's own order and template"
        );
        assert_eq!(
            names(policy.fallback_order(Risk::Low, "call_1", Channel::Call)),
            vec!["email:reminder"],
            "the policy's order, with the policy's template"
        );
        assert_eq!(
            names(policy.fallback_order(Risk::High, "sms_1", Channel::Sms)),
            vec!["call:call_script", "email:reminder"]
        );
        assert!(
            policy
                .fallback_order(Risk::Medium, "reminder_1", Channel::Email)
                .is_empty(),
            "email has no order here"
        );
        let needed = policy.fallback_templates_needed();
        assert!(needed
            .iter()
            .any(|u| u.template == "call_script" && u.channel == Channel::Call));
    }

    #[test]
    fn an_empty_step_order_turns_fallbacks_off_for_that_step() {
        let policy =
            parsed("[fallback]\ncall = [\"email\"]\n", "fallback = []\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(policy
            .fallback_order(Risk::Medium, "call_1", Channel::Call)
            .is_empty());
        assert_eq!(policy.fallback_order(Risk::Low, "call_1", Channel::Call).len(), 1);
    }

    #[test]
    fn bad_fallbacks_are_refused_with_their_line_and_field() {
        // Line 3: the [fallback] table's `sms` entry.
        let e = error("[fallback]\nsms = [\"pigeon\"]\n", "");
        assert_eq!((e.line, e.field.as_str()), (3, "fallback.sms"), "{e}");
        assert!(e.message.contains("pigeon"), "{e}");

        let e = error("[fallback]\nsms = [\"email\", \"sms\"]\n", "");
        assert_eq!((e.line, e.field.as_str()), (3, "fallback.sms"), "{e}");
        assert!(e.message.contains("itself"), "{e}");

        let e = error("[fallback]\nfax = [\"email\"]\n", "");
        assert_eq!((e.line, e.field.as_str()), (3, "fallback"), "{e}");

        let e = error("[fallback_templates]\nemail = \"Firm Reminder\"\n", "");
        assert_eq!((e.line, e.field.as_str()), (3, "fallback_templates.email"), "{e}");

        // The medium segment's call step: its `fallback` line.
        let source = policy_source("", "fallback = [\"email\", \"email\"]\n");
        let line = source
            .lines()
            .position(|l| l.starts_with("fallback = "))
            .map(|i| i + 1)
            .unwrap_or(0);
        let e = error("", "fallback = [\"email\", \"email\"]\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (line, "segments.medium.steps[1].fallback"),
            "{e}"
        );
        assert!(e.to_string().starts_with(&format!("policy.toml:{line}: ")), "{e}");

        // A value of the wrong type names its field too.
        let e = error("[fallback]\nsms = \"email\"\n", "");
        assert_eq!(
            e.to_string(),
            "policy.toml:3: fallback.sms: expected an array, found the string \"email\""
        );
        let e = error("", "fallback_templates = { email = 3 }\n");
        assert_eq!(
            e.to_string(),
            format!("policy.toml:{}: segments.medium.steps[1].fallback_templates.email: expected a string, found the integer 3", line)
        );

        let e = error("", "fallbacks = [\"email\"]\n");
        assert!(e.message.contains("fallbacks"), "unknown keys stay refused: {e}");
    }
}
