//! Channel fallbacks: when a step's channel cannot reach the customer (no phone number, not
//! a mobile, no postal address, an email address that bounced), the step goes out on the
//! next usable channel of its fallback order instead. The orders, and the template a step
//! takes on each fallback channel, come from the policy file (`fallback` and
//! `fallback_templates`, per step or for the whole policy). This module validates them and
//! chooses a step's channel; it does no I/O (the renderer says what is known of the
//! customer, in a [`Reach`], and records the choice).

use crate::customer::{Channel, Risk};
use crate::policy::{step_path, toml_refusal, DunningPolicy, PolicyError, RiskKey, TemplateUse};
use crate::validation::sms_capable;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::str::FromStr;
use toml::Spanned;

/// The template a step takes on a fallback channel when the policy names none: a firm
/// email, the SMS and letter reminders, the formal notice, the call script.
pub fn builtin_fallback_template(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "firm_reminder",
        Channel::Sms => "sms_reminder",
        Channel::Letter => "letter_reminder",
        Channel::RegisteredLetter => "formal_notice",
        Channel::Call => "call_script",
    }
}

/// The fallback settings of a policy file, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FallbackRules {
    /// `[fallback]`: the order for every step of a channel that has none of its own.
    pub orders: Vec<(Channel, Vec<Channel>)>,
    /// `[fallback_templates]`: the template used on a fallback channel.
    pub templates: Vec<(Channel, String)>,
    /// The lines of `orders` and `templates`, by channel, to point at them in later errors.
    pub order_lines: Vec<(Channel, usize)>,
    pub template_lines: Vec<(Channel, usize)>,
    /// Steps with their own `fallback` or `fallback_templates`.
    pub steps: Vec<StepFallback>,
}

/// A step's own fallback settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFallback {
    pub segment: RiskKey,
    pub name: String,
    /// `fallback = [...]`; `Some(vec![])` turns fallbacks off for the step.
    pub order: Option<Vec<Channel>>,
    pub templates: Vec<(Channel, String)>,
    pub line: usize,
    /// The step's field path (`segments.medium.steps[2]`), the line of its `fallback` and
    /// those of its `fallback_templates`, to point at them in later errors.
    pub path: String,
    pub order_line: usize,
    pub template_lines: Vec<(Channel, usize)>,
}

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

/// What is known of where a customer can be reached, beside the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// E.164, as normalised at intake.
    pub phone: Option<String>,
    pub has_postal_address: bool,
    /// Why the customer's email address is known not to work (a permanent SMTP refusal).
    pub email_bounce: Option<String>,
}

impl Reach {
    /// Why `channel` cannot reach the customer; `None` when it can.
    pub fn unusable(&self, channel: Channel) -> Option<String> {
        match channel {
            Channel::Email => self
                .email_bounce
                .as_ref()
                .map(|why| format!("the customer's email address bounced ({why})")),
            Channel::Sms => match &self.phone {
                None => Some("the customer has no phone number".to_string()),
                Some(phone) => sms_capable(phone).err(),
            },
            Channel::Call => self
                .phone
                .is_none()
                .then(|| "the customer has no phone number".to_string()),
            Channel::Letter | Channel::RegisteredLetter => {
                (!self.has_postal_address).then(|| "the customer has no postal address".to_string())
            }
        }
    }
}

/// The channel a step goes out on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelChoice {
    /// Its own channel reaches the customer.
    Own,
    /// It falls back to `to`, rendered from `template`; `reason` says why the channels
    /// before it could not be used.
    Fallback {
        to: Channel,
        template: String,
        reason: String,
    },
    /// No channel of its order reaches the customer: the step is skipped, for `reason`.
    Unreachable { reason: String },
}

/// Chooses the channel of a step planned on `channel`, along its fallback `order`.
pub fn choose_channel(channel: Channel, order: &[(Channel, String)], reach: &Reach) -> ChannelChoice {
    let Some(first) = reach.unusable(channel) else {
        return ChannelChoice::Own;
    };
    let mut reasons = vec![first];
    for (target, template) in order {
        match reach.unusable(*target) {
            None => {
                return ChannelChoice::Fallback {
                    to: *target,
                    template: template.clone(),
                    reason: reasons.join("; "),
                }
            }
            Some(why) => reasons.push(format!("{}: {why}", target.as_str())),
        }
    }
    ChannelChoice::Unreachable {
        reason: reasons.join("; "),
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

    fn reach(phone: Option<&str>, address: bool, bounce: Option<&str>) -> Reach {
        Reach {
            phone: phone.map(str::to_string),
            has_postal_address: address,
            email_bounce: bounce.map(str::to_string),
        }
    }

    fn order(channels: &[Channel]) -> Vec<(Channel, String)> {
        channels
            .iter()
            .map(|c| (*c, builtin_fallback_template(*c).to_string()))
            .collect()
    }

    #[test]
    fn a_reachable_channel_is_kept() {
        let r = reach(Some("+33612345678"), true, None);
        for channel in Channel::ALL {
            assert_eq!(
                choose_channel(*channel, &order(&[Channel::Email]), &r),
                ChannelChoice::Own,
                "{channel}"
            );
        }
    }

    #[test]
    fn no_phone_falls_back_to_email_with_the_reason() {
        let r = reach(None, false, None);
        for channel in [Channel::Sms, Channel::Call] {
            assert_eq!(
                choose_channel(channel, &order(&[Channel::Email]), &r),
                ChannelChoice::Fallback {
                    to: Channel::Email,
                    template: "firm_reminder".into(),
                    reason: "the customer has no phone number".into()
                }
            );
        }
    }

    #[test]
    fn a_landline_can_be_called_but_not_texted() {
        let r = reach(Some("+33123456789"), false, None);
        assert_eq!(
            choose_channel(Channel::Call, &order(&[Channel::Email]), &r),
            ChannelChoice::Own
        );
        let ChannelChoice::Fallback { to, reason, .. } =
            choose_channel(Channel::Sms, &order(&[Channel::Call, Channel::Email]), &r)
        else {
            panic!("expected a fallback")
        };
        assert_eq!(to, Channel::Call);
        assert!(reason.contains("not a mobile number"), "{reason}");
    }

    #[test]
    fn the_order_is_followed_past_unusable_channels() {
        let r = reach(None, false, None);
        let choice = choose_channel(
            Channel::RegisteredLetter,
            &order(&[Channel::Letter, Channel::Sms, Channel::Email]),
            &r,
        );
        assert_eq!(
            choice,
            ChannelChoice::Fallback {
                to: Channel::Email,
                template: "firm_reminder".into(),
                reason: "the customer has no postal address; letter: the customer has no postal address; sms: the customer has no phone number".into()
            }
        );
    }

    #[test]
    fn a_bounced_email_falls_back_and_nothing_left_is_unreachable() {
        let r = reach(None, true, Some("550 5.1.1 mailbox unknown"));
        let choice = choose_channel(Channel::Email, &order(&[Channel::Letter]), &r);
        assert!(
            matches!(&choice, ChannelChoice::Fallback { to: Channel::Letter, reason, .. } if reason.contains("bounced (550 5.1.1")),
            "{choice:?}"
        );
        let r = reach(None, false, Some("550 no such user"));
        let choice = choose_channel(Channel::Email, &order(&[Channel::Letter]), &r);
        assert!(
            matches!(&choice, ChannelChoice::Unreachable { reason } if reason.contains("letter: the customer has no postal address")),
            "{choice:?}"
        );
        assert!(matches!(
            choose_channel(Channel::Sms, &[], &reach(None, true, None)),
            ChannelChoice::Unreachable { .. }
        ));
    }

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
