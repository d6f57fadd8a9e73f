//! Call tasks: the template's `title` and `script` blocks, in the customer's language, for a
//! person of the accounts team who calls the customer. Stored like any rendered message (the
//! phone number as recipient), but handed to no sender: `render_job` opens a task instead.

use crate::{common_context, Common, Rendering};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use minijinja::{context, Environment};
use relance_config::Config;
use relance_storage::deliveries::Contact;
use relance_storage::invoices::InvoiceRecord;
use relance_storage::steps::{RenderedMessage, StepRecord};
use serde_json::json;

pub fn render(
    env: &Environment<'static>,
    config: &Config,
    step: &StepRecord,
    invoice: &InvoiceRecord,
    contact: &Contact,
    now: DateTime<Utc>,
) -> anyhow::Result<Rendering> {
    let Some(phone) = contact.phone.clone() else {
        return Ok(Rendering::Skip("the customer has no phone number".to_string()));
    };
    let Common {
        language, context, ..
    } = common_context(config, step, invoice, now)?;
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
            channel: step.channel.clone(),
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
