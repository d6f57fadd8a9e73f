//! Call tasks: the template's `title` and `script` blocks, in the customer's language, for a
//! person of the accounts team who calls the customer. Stored like any rendered message (the
//! phone number as recipient), but handed to no sender: `render_job` opens a task instead.

use crate::{common_context, Common, Rendering, Target};
use anyhow::anyhow;
use minijinja::{context, Environment};
use relance_config::Config;
use relance_storage::steps::RenderedMessage;
use serde_json::json;

pub fn render(env: &Environment<'static>, config: &Config, target: &Target<'_>) -> anyhow::Result<Rendering> {
    let Target {
        step, contact, now, ..
    } = *target;
    let Some(phone) = contact.phone.clone() else {
        return Ok(Rendering::Skip("the customer has no phone number".to_string()));
    };
    let Common {
        language, context, ..
    } = common_context(config, target)?;
    let context = context! { phone => phone, ..context };
    let name = format!("{}/{}.call", language.as_str(), step.template);
    let mut captured = env.get_template(&name)?.render_captured(&context)?;
    let (title, script) = captured
        .with_state_mut(|state| -> Result<(String, String), minijinja::Error> {
            Ok((state.render_block("title")?, state.render_block("script")?))
        })
        .map_err(|e| anyhow!("{name}: {e}"))?;
    // One line; the narrow spaces of amounts stay.
    let title = title
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Rendering::Ready {
        message: Box::new(RenderedMessage {
            step_id: step.id,
            channel: step.channel,
            message_id: crate::sms::delivery_key(step),
            recipients: vec![phone],
            cc: Vec::new(),
            subject: title,
            body_text: script,
            body_html: None,
            attach_invoice: false,
            rendered_at: now,
        }),
        document: None,
        facts: json!({ "task": true }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures;

    fn step(template: &str, kind: &str, channel: &str) -> StepRecord {
        test_fixtures::step("call_1", kind, channel, template, "firm")
    }

    fn invoice(language: &str) -> InvoiceRecord {
        test_fixtures::invoice("business", language)
    }

    use chrono::{DateTime, TimeZone, Utc};
    use relance_config::Settings;
    use relance_domain::{DunningPolicy, SimulatedClock};
    use relance_storage::deliveries::{ClaimHistory, Contact};
    use relance_storage::invoices::InvoiceRecord;
    use relance_storage::steps::StepRecord;
    use std::sync::Arc;

    /// The step to render, without payments or reminders sent before.
    fn target<'a>(
        step: &'a StepRecord,
        invoice: &'a InvoiceRecord,
        contact: &'a Contact,
        now: DateTime<Utc>,
    ) -> Target<'a> {
        const NO_HISTORY: &ClaimHistory = &ClaimHistory {
            payments: Vec::new(),
            formal_notice: None,
            reminders_sent: 0,
        };
        Target {
            step,
            invoice,
            contact,
            history: NO_HISTORY,
            now,
        }
    }

    /// On 21 March 2026, 12 days after the due date, 1 000.00 of 1 500.00 left.
    fn setup() -> (Environment<'static>, Config, DateTime<Utc>) {
        let settings = Settings::from_vars(Vec::<(String, String)>::new()).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 3, 21, 8, 0, 0).unwrap();
        let config = Config::with_clock(settings, Arc::new(SimulatedClock::starting_at(now))).unwrap();
        let env = crate::templates::environment(None, &DunningPolicy::default_policy().unwrap()).unwrap();
        (env, config, now)
    }

    #[test]
    fn the_call_script_says_who_to_call_about_what_in_the_customers_language() {
        let (env, config, now) = setup();
        let contact = Contact {
            phone: Some("+33612345678".into()),
            ..Contact::default()
        };
        for (language, expected) in [
            (
                "fr",
                [
                    "Appeler ACME Industrie SA (Jeanne Martin) au +33612345678 : facture F-9",
                    "en retard de 12 jours",
                    "Facture F-9 du 07/02/2026, échue le 09/03/2026",
                ],
            ),
            (
                "en",
                [
                    "Call ACME Industrie SA (Jeanne Martin) on +33612345678: invoice F-9",
                    "12 days overdue",
                    "Invoice F-9 dated 7 February 2026, due on 9 March 2026",
                ],
            ),
        ] {
            let (step, invoice) = (step("call_script", "reminder", "call"), invoice(language));
            let Rendering::Ready { message, .. } =
                render(&env, &config, &target(&step, &invoice, &contact, now)).unwrap()
            else {
                panic!("a call script")
            };
            assert!(message.subject.starts_with(expected[0]), "{}", message.subject);
            assert!(!message.subject.contains('\n'));
            assert!(message.subject.contains(expected[1]), "{}", message.subject);
            assert!(message.body_text.contains(expected[2]), "{}", message.body_text);
            assert!(
                message.body_text.contains("relance tasks outcome F-9"),
                "{}",
                message.body_text
            );
            assert_eq!(message.recipients, vec!["+33612345678".to_string()]);
        }
        let (step, invoice) = (step("call_script", "reminder", "call"), invoice("fr"));
        let without_phone =
            render(&env, &config, &target(&step, &invoice, &Contact::default(), now)).unwrap();
        assert!(matches!(without_phone, Rendering::Skip(reason) if reason.contains("no phone")));
    }

    #[test]
    fn the_recap_confirms_the_promised_date() {
        let (env, config, now) = setup();
        let extra = minijinja::context! { promised_on => "27/03/2026", call_date => "21/03/2026" };
        let m = crate::render_with(
            &env,
            &config,
            &step("call_recap", "recap", "email"),
            &invoice("fr"),
            &extra,
            now,
        )
        .unwrap();
        assert_eq!(
            m.subject,
            "Facture F-9 : suite à notre appel, règlement prévu le 27/03/2026"
        );
        assert!(
            m.body_text
                .contains("Suite à notre entretien téléphonique du 21/03/2026, vous nous avez confirmé le règlement de la facture F-9 du 07/02/2026 le 27/03/2026"),
            "{}",
            m.body_text
        );
        // Auto-escaped HTML writes `/` as `&#x2f;`.
        let html = m.body_html.unwrap_or_default().replace("&#x2f;", "/");
        assert!(html.contains("<strong>27/03/2026</strong>"), "{html}");
    }
}
