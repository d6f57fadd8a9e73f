//! Channel fallbacks: when a step's channel cannot reach the customer (no phone number, not
//! a mobile, no postal address, an email address that bounced), the step goes out on the
//! next usable channel of its fallback order instead. The orders, and the template a step
//! takes on each fallback channel, come from the policy file (`fallback` and
//! `fallback_templates`, per step or for the whole policy; `policy::fallbacks` reads and
//! validates them into the [`FallbackRules`] held here). This module chooses a step's
//! channel; it does no I/O (the renderer says what is known of the customer, in a [`Reach`],
//! and records the choice).

use crate::customer::{Channel, RiskKey};
use crate::validation::sms_capable;

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
}
