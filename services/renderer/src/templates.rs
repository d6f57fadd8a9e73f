//! The message templates: French and English. For email one `.txt` (subject and text body
//! blocks, not escaped) and one `.html` (auto-escaped, sandboxed by minijinja) per template;
//! for SMS one `.sms` (`body`, optional `short`); for letters one `.letter` (`subject`,
//! `body`); for call tasks one `.call` (`title`, `script`). Built into the binary; `RELANCE_TEMPLATE_DIR` points at a folder of the same
//! layout to override them.

use anyhow::{anyhow, Context};
use minijinja::Environment;
use relance_domain::{Channel, DunningPolicy, Language, PolicyError};
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

/// Where the templates are looked for, as a refusal names it: the built-in ones, or the
/// folder of `RELANCE_TEMPLATE_DIR`, which replaces them.
fn searched(override_dir: Option<&Path>) -> String {
    match override_dir {
        Some(dir) => format!("in RELANCE_TEMPLATE_DIR ({})", dir.display()),
        None => "among the built-in templates (RELANCE_TEMPLATE_DIR is not set)".to_string(),
    }
}

/// Builds the template environment and checks that every template the policy names exists
/// in every language, so a missing one stops the renderer at start, not at send time, with
/// the policy's file, line and field, the files missing and the folder searched.
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
    for needed in policy.template_uses() {
        let refusal = |problem: String| {
            let why = needed
                .why
                .as_ref()
                .map(|why| format!(" ({why})"))
                .unwrap_or_default();
            let e = PolicyError {
                file: policy.file.clone(),
                line: needed.line,
                field: needed.field.clone(),
                message: format!("template {:?}{why} {problem}", needed.template),
            };
            anyhow!("invalid policy: {e}")
        };
        let mut missing = Vec::new();
        for language in Language::ALL {
            for ext in extensions(needed.channel) {
                let name = format!("{}/{}.{ext}", language.as_str(), needed.template);
                match env.get_template(&name) {
                    Ok(_) => {}
                    Err(e) if e.kind() == minijinja::ErrorKind::TemplateNotFound => missing.push(name),
                    Err(e) => {
                        return Err(refusal(format!(
                            "is not usable: {name} {}: {e}",
                            searched(override_dir)
                        )))
                    }
                }
            }
        }
        if !missing.is_empty() {
            return Err(refusal(format!(
                "is missing: no {} {}",
                missing.join(", "),
                searched(override_dir)
            )));
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    //! A policy naming a template the renderer does not have is refused at start, with the
    //! policy's file, line and field, the files missing and where they were looked for.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// Every segment: one email step on `template`; then `tail` (TOML text).
    fn policy(template: &str, head: &str, tail: &str) -> DunningPolicy {
        let mut source = format!("send_time = \"09:00\"\n{head}\n");
        for segment in ["low", "medium", "high"] {
            source.push_str(&format!(
                "[[segments.{segment}.steps]]\nname = \"a\"\noffset_days = 5\nchannel = \"email\"\ntemplate = \"{template}\"\ntone = \"firm\"\n"
            ));
        }
        source.push_str(tail);
        DunningPolicy::parse(&source, "policies/acme.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn refusal(dir: Option<&Path>, policy: &DunningPolicy) -> String {
        match environment(dir, policy) {
            Ok(_) => panic!("accepted: {policy:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_missing_step_template_names_the_policy_line_the_field_and_the_built_in_templates() {
        assert_eq!(
            refusal(None, &policy("relance_douce", "", "")),
            "invalid policy: policies/acme.toml:7: segments.low.steps[0].template: template \"relance_douce\" \
             is missing: no fr/relance_douce.txt, fr/relance_douce.html, en/relance_douce.txt, \
             en/relance_douce.html among the built-in templates (RELANCE_TEMPLATE_DIR is not set)"
        );
    }

    #[test]
    fn a_missing_fallback_template_names_the_line_that_names_it() {
        let policy = policy(
            "reminder",
            "[fallback]\nsms = [\"email\"]\n[fallback_templates]\nemail = \"relance_sms_mail\"\n",
            "[[segments.medium.steps]]\nname = \"b\"\noffset_days = 9\nchannel = \"sms\"\ntemplate = \"sms_reminder\"\ntone = \"firm\"\n",
        );
        assert_eq!(
            refusal(None, &policy),
            "invalid policy: policies/acme.toml:5: fallback_templates.email: template \"relance_sms_mail\" \
             is missing: no fr/relance_sms_mail.txt, fr/relance_sms_mail.html, en/relance_sms_mail.txt, \
             en/relance_sms_mail.html among the built-in templates (RELANCE_TEMPLATE_DIR is not set)"
        );
    }

    #[test]
    fn a_template_missing_from_relance_template_dir_names_that_folder() {
        let dir = std::env::temp_dir().join(format!("relance-templates-{}", std::process::id()));
        for language in ["fr", "en"] {
            std::fs::create_dir_all(dir.join(language)).unwrap();
            for file in ["reminder.txt", "reminder.html", "layout.html"] {
                std::fs::write(
                    dir.join(language).join(file),
                    "{% block subject %}x{% endblock %}",
                )
                .unwrap();
            }
        }
        let message = refusal(Some(&dir), &policy("reminder", "", ""));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            message,
            format!(
                "invalid policy: policies/acme.toml:1: thanks_template: template \"thanks\" (the thank-you, \
                 thanks_template's default) is missing: no fr/thanks.txt, fr/thanks.html, en/thanks.txt, \
                 en/thanks.html in RELANCE_TEMPLATE_DIR ({})",
                dir.display()
            )
        );
    }
}
