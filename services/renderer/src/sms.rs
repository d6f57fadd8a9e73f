//! Text messages: the template's `body` block, or its `short` block when the body does not
//! fit in two segments (tried as written, then in GSM-7 form), sent to the customer's
//! mobile number. A customer without a mobile number has the step skipped, with the reason.

use crate::{common_context, Common, Rendering, Target};
use anyhow::anyhow;
use minijinja::Environment;
use relance_config::Config;
use relance_domain::sms::{fit_sms, MAX_SMS_SEGMENTS};
use relance_domain::validation::sms_capable;
use relance_storage::steps::{RenderedMessage, StepRecord};
use serde_json::json;

/// The idempotency key of a step's delivery, the same at every attempt: gateways and postal
/// services recognise a repeated request by it.
pub fn delivery_key(step: &StepRecord) -> String {
    format!("relance-{}-{}", step.name, step.id)
}

pub fn render(env: &Environment<'static>, config: &Config, target: &Target<'_>) -> anyhow::Result<Rendering> {
    let Target {
        step, contact, now, ..
    } = *target;
    let Some(phone) = contact.phone.clone() else {
        return Ok(Rendering::Skip("the customer has no phone number".to_string()));
    };
    if let Err(reason) = sms_capable(&phone) {
        return Ok(Rendering::Skip(reason));
    }
    let Common {
        language, context, ..
    } = common_context(config, target)?;
    let name = format!("{}/{}.sms", language.as_str(), step.template);
    let template = env.get_template(&name)?;
    let mut captured = template.render_captured(&context)?;
    // `short` is optional: the version used when the body does not fit.
    let (body, short) = captured.with_state_mut(|state| {
        let short = match state.render_block("short") {
            Err(e) if e.kind() == minijinja::ErrorKind::UnknownBlock => Ok(None),
            other => other.map(Some),
        };
        (state.render_block("body"), short)
    });
    let body = body.map_err(|e| anyhow!("{name}: {e}"))?;
    let short = short.map_err(|e| anyhow!("{name}: {e}"))?;
    let candidates: Vec<&str> = std::iter::once(body.as_str()).chain(short.as_deref()).collect();
    let (text, size) = match fit_sms(&candidates, MAX_SMS_SEGMENTS) {
        Ok(fitted) => fitted,
        Err(reason) => return Ok(Rendering::Refuse(reason)),
    };
    Ok(Rendering::Ready {
        message: Box::new(RenderedMessage {
            step_id: step.id,
            channel: step.channel,
            message_id: delivery_key(step),
            recipients: vec![phone],
            cc: Vec::new(),
            subject: String::new(),
            body_text: text,
            body_html: None,
            attach_invoice: false,
            rendered_at: now,
        }),
        document: None,
        facts: json!({ "encoding": size.encoding.as_str(), "segments": size.segments, "units": size.units }),
    })
}
