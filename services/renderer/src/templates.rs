//! The message templates: French and English. For email one `.txt` (subject and text body
//! blocks, not escaped) and one `.html` (auto-escaped, sandboxed by minijinja) per template;
//! for SMS one `.sms` (`body`, optional `short`); for letters one `.letter` (`subject`,
//! `body`); for call tasks one `.call` (`title`, `script`). The parts several templates share
//! (the layout, the payment details, the signature, the other invoices, the claim) are
//! separate files they include. Built into the binary; `RELANCE_TEMPLATE_DIR` points at a
//! folder of the same layout to override them: a shared part the folder lacks is taken
//! from the built-in ones.

use anyhow::{anyhow, Context};
use minijinja::Environment;
use relance_config::Config;
use relance_domain::{Channel, DunningPolicy, Language, PolicyError};
use std::collections::BTreeMap;
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
    "fr/payment_details.txt",
    "fr/payment_details.html",
    "fr/payment_details.letter",
    "fr/signature.txt",
    "fr/signature.html",
    "fr/signature.letter",
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
    "en/payment_details.txt",
    "en/payment_details.html",
    "en/payment_details.letter",
    "en/signature.txt",
    "en/signature.html",
    "en/signature.letter",
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
    "fr/plan_pre_due.txt",
    "fr/plan_pre_due.html",
    "en/plan_pre_due.txt",
    "en/plan_pre_due.html",
    "fr/plan_reminder.txt",
    "fr/plan_reminder.html",
    "en/plan_reminder.txt",
    "en/plan_reminder.html",
    "fr/plan_schedule.txt",
    "fr/plan_schedule.html",
    "en/plan_schedule.txt",
    "en/plan_schedule.html",
);

/// The files templates include or extend, not named by a policy: with `RELANCE_TEMPLATE_DIR`
/// set, one the folder does not have is taken from the built-in templates, so a folder can
/// override one of them (every email's payment details at once) or hold templates written
/// before a part was shared.
const SHARED_PARTS: &[&str] = &[
    "layout.html",
    "payment_details.txt",
    "payment_details.html",
    "payment_details.letter",
    "signature.txt",
    "signature.html",
    "signature.letter",
    "other_invoices.txt",
    "other_invoices.html",
    "claim.txt",
    "claim.html",
    "rate_basis.txt",
    // A payment plan's notes: not named by a policy, taken from the built-in ones when the
    // folder has none.
    "plan_pre_due.txt",
    "plan_pre_due.html",
    "plan_reminder.txt",
    "plan_reminder.html",
    "plan_schedule.txt",
    "plan_schedule.html",
];

/// The built-in source of `name` (`fr/payment_details.html`) when it is a shared part.
fn builtin_shared_part(name: &str) -> Option<&'static str> {
    let (_, file) = name.split_once('/')?;
    if !SHARED_PARTS.contains(&file) {
        return None;
    }
    BUILTIN
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, source)| *source)
}

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
/// folder of `RELANCE_TEMPLATE_DIR`, which replaces them (but for the shared parts it lacks).
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
    let env = base_environment(override_dir)?;
    check_policy(&env, override_dir, policy)?;
    Ok(env)
}

/// The deployment's templates: the built-in ones, or `override_dir`'s (with the built-in
/// shared parts it lacks).
fn base_environment(override_dir: Option<&Path>) -> anyhow::Result<Environment<'static>> {
    let mut env = strict_environment();
    match override_dir {
        Some(dir) => {
            let from_dir = minijinja::path_loader(dir);
            env.set_loader(move |name| match from_dir(name)? {
                Some(source) => Ok(Some(source)),
                None => Ok(builtin_shared_part(name).map(str::to_owned)),
            });
        }
        None => {
            for (name, source) in BUILTIN {
                env.add_template(name, source)
                    .with_context(|| format!("template {name}"))?;
            }
        }
    }
    Ok(env)
}

fn strict_environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Undefined variables are errors: a typo in a template must not send a blank amount.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

/// A creditor's templates: the files of `folder`, else the deployment's (`override_dir`'s,
/// with the built-in shared parts it lacks; or the built-in ones).
fn creditor_environment(folder: &Path, override_dir: Option<&Path>) -> Environment<'static> {
    let mut env = strict_environment();
    let own = minijinja::path_loader(folder);
    let deployment = override_dir.map(minijinja::path_loader);
    env.set_loader(move |name| {
        if let Some(source) = own(name)? {
            return Ok(Some(source));
        }
        match &deployment {
            Some(from_dir) => match from_dir(name)? {
                Some(source) => Ok(Some(source)),
                None => Ok(builtin_shared_part(name).map(str::to_owned)),
            },
            None => Ok(BUILTIN
                .iter()
                .find(|(builtin, _)| *builtin == name)
                .map(|(_, source)| (*source).to_owned())),
        }
    });
    env
}

/// Checks that every template `policy` names exists in `env` in every language and parses.
fn check_policy(
    env: &Environment<'static>,
    override_dir: Option<&Path>,
    policy: &DunningPolicy,
) -> anyhow::Result<()> {
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
    Ok(())
}

/// Every template environment of the deployment: its own (built-in or
/// `RELANCE_TEMPLATE_DIR`) and one per creditor folder of `RELANCE_CREDITOR_TEMPLATE_DIR`.
pub struct Templates {
    base: Environment<'static>,
    creditors: BTreeMap<String, Environment<'static>>,
}

impl Templates {
    /// The deployment's templates and its creditors' folders, checked at start: every
    /// template of every policy (the default and `RELANCE_POLICY_DIR`'s) exists in each, and
    /// every file of a creditor's folder parses. A problem stops the renderer here, naming
    /// the file.
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        let override_dir = config.settings.template_dir.as_deref();
        let base = base_environment(override_dir)?;
        for (_, policy) in config.every_policy() {
            check_policy(&base, override_dir, policy)?;
        }
        let mut creditors = BTreeMap::new();
        if let Some(root) = &config.settings.creditor_template_dir {
            let entries = std::fs::read_dir(root)
                .with_context(|| format!("reading RELANCE_CREDITOR_TEMPLATE_DIR {}", root.display()))?;
            for entry in entries {
                let folder = entry
                    .with_context(|| format!("reading RELANCE_CREDITOR_TEMPLATE_DIR {}", root.display()))?
                    .path();
                let Some(name) = folder.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                    continue;
                };
                if !folder.is_dir() || !relance_config::is_policy_name(&name) {
                    continue;
                }
                let env = creditor_environment(&folder, override_dir);
                check_folder(&env, &folder)?;
                for (_, policy) in config.every_policy() {
                    check_policy(&env, override_dir, policy)
                        .with_context(|| format!("creditor templates {}", folder.display()))?;
                }
                creditors.insert(name, env);
            }
        }
        Ok(Self { base, creditors })
    }

    /// The deployment's templates alone (tests).
    pub fn only(base: Environment<'static>) -> Self {
        Self {
            base,
            creditors: BTreeMap::new(),
        }
    }

    /// The templates of an invoice whose creditor names the folder `folder` (`None`: the
    /// deployment's). A folder that was not there when the renderer started is logged, and
    /// the deployment's templates are used.
    pub fn for_folder(&self, folder: Option<&str>) -> &Environment<'static> {
        let Some(name) = folder else {
            return &self.base;
        };
        match self.creditors.get(name) {
            Some(env) => env,
            None => {
                tracing::error!(
                    templates = name,
                    "a creditor names a template folder the renderer did not load at start; the deployment's templates apply"
                );
                &self.base
            }
        }
    }

    /// The creditor folders loaded, by name.
    pub fn folders(&self) -> impl Iterator<Item = &str> {
        self.creditors.keys().map(String::as_str)
    }
}

/// Every template file of a creditor's folder (`fr/…`, `en/…`) parses.
fn check_folder(env: &Environment<'static>, folder: &Path) -> anyhow::Result<()> {
    for language in Language::ALL {
        let dir = folder.join(language.as_str());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {}", dir.display()))?
                .path();
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !path.is_file() || file.starts_with('.') {
                continue;
            }
            let name = format!("{}/{file}", language.as_str());
            env.get_template(&name)
                .map_err(|e| anyhow!("creditor template {} does not parse: {e}", path.display()))?;
        }
    }
    Ok(())
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

    /// A `RELANCE_TEMPLATE_DIR` overriding the payment details changes them in every kind of
    /// email that asks for payment, in both formats and both languages; the shared parts the
    /// folder does not have (the layout, the signature) come from the built-in templates.
    #[test]
    fn overriding_the_payment_details_in_relance_template_dir_changes_every_kind_of_email() {
        use crate::test_fixtures::{invoice, step};
        use relance_config::{Config, Settings};
        use relance_domain::SimulatedClock;

        let dir = std::env::temp_dir().join(format!("relance-shared-parts-{}", std::process::id()));
        for (name, source) in BUILTIN {
            if builtin_shared_part(name).is_none() {
                let path = dir.join(name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, source).unwrap();
            }
        }
        for language in ["fr", "en"] {
            std::fs::write(
                dir.join(language).join("payment_details.txt"),
                "{# Ours. #}\n\n  Pay {{ creditor.iban }} by our own terms (text).\n",
            )
            .unwrap();
            std::fs::write(
                dir.join(language).join("payment_details.html"),
                "<p>Pay <em>{{ creditor.iban }}</em> by our own terms (HTML).</p>\n",
            )
            .unwrap();
        }
        let policy = DunningPolicy::default_policy().unwrap();
        // The folder stays until the end: includes are loaded when a template renders.
        let env = environment(Some(&dir), &policy).unwrap();
        let now = chrono::Utc::now();
        let settings = Settings::from_vars(Vec::<(String, String)>::new()).unwrap();
        let config =
            Config::with_clock(settings, std::sync::Arc::new(SimulatedClock::starting_at(now))).unwrap();
        let creditor = &config.settings.creditor;
        for template in [
            "pre_due",
            "reminder",
            "firm_reminder",
            "final_reminder",
            "formal_notice",
        ] {
            for language in ["fr", "en"] {
                let step = step(template, "reminder", "email", template, "firm");
                let m = crate::render(&env, &config, &step, &invoice("business", language), now).unwrap();
                let text = &m.body_text;
                assert!(
                    text.contains(&format!(":\n\n  Pay {} by our own terms (text).", creditor.iban)),
                    "{template} {language}: {text}"
                );
                assert!(
                    !text.contains("Beneficiary") && !text.contains("Bénéficiaire"),
                    "{template} {language}: {text}"
                );
                // The built-in signature, which the folder does not have.
                assert!(
                    text.contains(&format!("{}\n{}", creditor.name, creditor.email)),
                    "{template} {language}: {text}"
                );
                let html = m.body_html.unwrap_or_default();
                assert!(
                    html.contains(&format!(
                        "<p>Pay <em>{}</em> by our own terms (HTML).</p>",
                        creditor.iban
                    )),
                    "{template} {language}: {html}"
                );
                assert!(
                    !html.contains("border-left:3px solid #999999"),
                    "{template} {language}: {html}"
                );
                // The built-in layout, which the folder does not have.
                assert!(
                    html.starts_with("<!DOCTYPE html>"),
                    "{template} {language}: {html}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_creditors_folder_overrides_the_files_it_has_and_leaves_the_others() {
        use crate::test_fixtures::{invoice, step};
        use relance_config::{Config, Settings};
        use relance_domain::SimulatedClock;

        let root = std::env::temp_dir().join(format!("relance-creditor-templates-{}", std::process::id()));
        std::fs::create_dir_all(root.join("durand/fr")).unwrap();
        std::fs::write(
            root.join("durand/fr/signature.txt"),
            "\n\nL'atelier Durand, à votre écoute.",
        )
        .unwrap();
        // Not a folder: ignored.
        std::fs::write(root.join("notes.txt"), "").unwrap();
        let now = chrono::Utc::now();
        let settings = Settings::from_vars(vec![(
            "RELANCE_CREDITOR_TEMPLATE_DIR".to_string(),
            root.display().to_string(),
        )])
        .unwrap();
        let config =
            Config::with_clock(settings, std::sync::Arc::new(SimulatedClock::starting_at(now))).unwrap();
        let templates = Templates::load(&config).unwrap();
        assert_eq!(templates.folders().collect::<Vec<_>>(), ["durand"]);
        let reminder = step("reminder", "reminder", "email", "reminder", "firm");
        let render = |folder: Option<&str>, language: &str| {
            crate::render(
                templates.for_folder(folder),
                &config,
                &reminder,
                &invoice("business", language),
                now,
            )
            .unwrap()
            .body_text
        };
        let own = render(Some("durand"), "fr");
        assert!(
            own.contains("Cordialement,\n\nL'atelier Durand, à votre écoute."),
            "{own}"
        );
        assert!(own.contains("Sauf erreur de notre part"), "{own}");
        for (folder, language) in [(None, "fr"), (Some("durand"), "en"), (Some("unknown"), "fr")] {
            let text = render(folder, language);
            assert!(
                !text.contains("L'atelier Durand"),
                "{folder:?} {language}: {text}"
            );
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
