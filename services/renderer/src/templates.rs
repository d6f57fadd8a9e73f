//! The message templates: French and English. For email one `.txt` (subject and text body
//! blocks, not escaped) and one `.html` (auto-escaped, sandboxed by minijinja) per template;
//! for SMS one `.sms` (`body`, optional `short`); for letters one `.letter` (`subject`,
//! `body`); for call tasks one `.call` (`title`, `script`). Built into the binary; `RELANCE_TEMPLATE_DIR` points at a folder of the same
//! layout to override them.

use anyhow::{anyhow, Context};
use minijinja::Environment;
use relance_domain::calls::CALL_RECAP_TEMPLATE;
use relance_domain::{Channel, DunningPolicy, Language};
use std::path::Path;

macro_rules! builtin {
    ($($path:literal),+ $(,)?) => {
        &[$(($path, include_str!(concat!("../templates/", $path)))),+]
    };
}

const BUILTIN: &[(&str, &str)] = builtin!(
    "fr/layout.html",
    "fr/pre_due.txt",
    "fr/pre_due.html",
    "fr/reminder.txt",
    "fr/reminder.html",
    "fr/firm_reminder.txt",
    "fr/firm_reminder.html",
    "fr/final_reminder.txt",
    "fr/final_reminder.html",
    "fr/formal_notice.txt",
    "fr/formal_notice.html",
    "fr/other_invoices.txt",
    "fr/other_invoices.html",
    "fr/claim.txt",
    "fr/claim.html",
    "fr/rate_basis.txt",
    "fr/thanks.txt",
    "fr/thanks.html",
    "en/layout.html",
    "en/pre_due.txt",
    "en/pre_due.html",
    "en/reminder.txt",
    "en/reminder.html",
    "en/firm_reminder.txt",
    "en/firm_reminder.html",
    "en/final_reminder.txt",
    "en/final_reminder.html",
    "en/formal_notice.txt",
    "en/formal_notice.html",
    "en/other_invoices.txt",
    "en/other_invoices.html",
    "en/claim.txt",
    "en/claim.html",
    "en/rate_basis.txt",
    "en/thanks.txt",
    "en/thanks.html",
    "fr/sms_reminder.sms",
    "en/sms_reminder.sms",
    "fr/letter_reminder.letter",
    "en/letter_reminder.letter",
    "fr/formal_notice.letter",
    "en/formal_notice.letter",
    "fr/call_script.call",
    "en/call_script.call",
    "fr/call_recap.txt",
    "fr/call_recap.html",
    "en/call_recap.txt",
    "en/call_recap.html",
);

/// The template files a step on `channel` needs, by extension.
pub fn extensions(channel: Channel) -> &'static [&'static str] {
    match channel {
        Channel::Email => &["txt", "html"],
        Channel::Sms => &["sms"],
        Channel::Letter | Channel::RegisteredLetter => &["letter"],
        Channel::Call => &["call"],
    }
}

/// Every (template, policy line, channel) the policy may render: its steps' templates, those
/// of their fallback channels, the call recap when it has calls, and the thank-you.
pub fn needed_templates(policy: &DunningPolicy) -> Vec<(String, usize, Channel)> {
    let mut needed: Vec<(String, usize, Channel)> = policy
        .segments
        .values()
        .flatten()
        .map(|s| (s.template.clone(), s.line, s.channel))
        .collect();
    // What a step falling back to another channel renders there.
    needed.extend(policy.fallback_templates_needed());
    // A call that obtains a promise is confirmed by email.
    if let Some((_, line, _)) = needed.iter().find(|(_, _, c)| *c == Channel::Call) {
        needed.push((CALL_RECAP_TEMPLATE.to_string(), *line, Channel::Email));
    }
    // The thank-you goes by email.
    needed.push((policy.thanks_template.clone(), 1, Channel::Email));
    needed
}

/// Builds the template environment and checks that every template the policy names exists
/// in every language, so a missing one stops the renderer at start, not at send time.
pub fn environment(
    override_dir: Option<&Path>,
    policy: &DunningPolicy,
) -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    // Undefined variables are errors: a typo in a template must not send a blank amount.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    match override_dir {
        Some(dir) => env.set_loader(minijinja::path_loader(dir)),
        None => {
            for (name, source) in BUILTIN {
                env.add_template(name, source)
                    .with_context(|| format!("template {name}"))?;
            }
        }
    }
    for (template, line, channel) in needed_templates(policy) {
        for language in Language::ALL {
            for ext in extensions(channel) {
                let name = format!("{}/{template}.{ext}", language.as_str());
                env.get_template(&name)
                    .map_err(|e| anyhow!("policy line {line}: template {name:?} is not usable: {e}"))?;
            }
        }
    }
    Ok(env)
}
