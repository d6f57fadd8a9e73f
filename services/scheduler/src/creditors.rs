//! Creditors as data: `creditor.updated` is validated (IBAN, SIREN/SIRET checksums, the id)
//! and stored, once per `event_id`; one older than the details stored changes nothing. An
//! invalid creditor is dead-lettered with the reason. The invoices of a creditor read it when
//! their next message is rendered (`relance_storage::creditors::for_invoice`).

use anyhow::Context;
use relance_config::Config;
use relance_contracts::{CreditorUpdatedV1, CreditorV1};
use relance_domain::creditor::{validate_creditor, Creditor};
use relance_messaging::{HandlerError, Incoming};
use relance_storage::{creditors, mark_processed};
use sqlx::PgPool;

const INBOX: &str = "scheduler.creditor_updated";

/// The creditor a `creditor.updated` gives, unchecked: fields left out are empty.
pub fn creditor_of(c: &CreditorV1) -> Creditor {
    let text = |v: &Option<String>| v.as_deref().unwrap_or_default().trim().to_string();
    Creditor {
        id: c.id.clone(),
        name: c.name.trim().to_string(),
        address: c.address.replace("\\n", "\n").trim().to_string(),
        iban: c.iban.clone(),
        bic: text(&c.bic),
        email: text(&c.email),
        phone: text(&c.phone),
        signature: text(&c.signature_fr),
        signature_en: text(&c.signature_en),
        signatory: text(&c.signatory),
        signatory_title_fr: text(&c.signatory_title_fr),
        signatory_title_en: text(&c.signatory_title_en),
        legal_form: text(&c.legal_form),
        share_capital: text(&c.share_capital),
        siren: text(&c.siren),
        siret: text(&c.siret),
        rcs_city: text(&c.rcs_city),
        vat_number: text(&c.vat_number),
        letterhead: c
            .letterhead
            .iter()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        reply_to: text(&c.reply_to),
        mail_from: text(&c.mail_from),
        sms_sender: text(&c.sms_sender),
        policy: text(&c.policy),
        templates: text(&c.templates),
    }
}

/// Why a creditor naming a policy or a template folder this deployment does not have is
/// refused (`None`: it names none, or known ones).
pub fn unknown_policy_or_templates(config: &Config, creditor: &Creditor) -> Option<String> {
    let policy = creditor.policy.as_str();
    if !policy.is_empty() && !config.has_policy(policy) {
        let known: Vec<&str> = config.policies.keys().map(String::as_str).collect();
        return Some(format!(
            "creditor.policy {policy:?} is not a policy of this deployment (RELANCE_POLICY_DIR: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    let templates = creditor.templates.as_str();
    if !templates.is_empty() {
        let found = config
            .settings
            .creditor_template_dir
            .as_ref()
            .is_some_and(|root| root.join(templates).is_dir());
        if !found {
            return Some(format!(
                "creditor.templates {templates:?} is not a template folder of this deployment (RELANCE_CREDITOR_TEMPLATE_DIR: {})",
                config
                    .settings
                    .creditor_template_dir
                    .as_ref()
                    .map_or("unset".to_string(), |d| d.display().to_string())
            ));
        }
    }
    None
}

/// Handles `creditor.updated`: validates and stores the creditor. Applied once per
/// `event_id`; an invalid one is refused (dead-lettered with the field and the reason).
#[tracing::instrument(skip_all, fields(message_id = ?message.message_id), err)]
pub async fn take_in_creditor(db: &PgPool, config: &Config, message: Incoming) -> Result<(), HandlerError> {
    let event: CreditorUpdatedV1 = message.json()?;
    let now = config.clock.now();
    let creditor = validate_creditor(creditor_of(&event.creditor))
        .map_err(|r| HandlerError::Permanent(format!("creditor {:?} refused: {r}", event.creditor.id)))?;
    if let Some(refusal) = unknown_policy_or_templates(config, &creditor) {
        return Err(HandlerError::Permanent(format!(
            "creditor {:?} refused: {refusal}",
            creditor.id
        )));
    }
    let mut tx = db.begin().await.context("starting the creditor transaction")?;
    if !mark_processed(&mut tx, INBOX, &event.event_id, now).await? {
        tracing::info!("duplicate creditor.updated ignored");
        return Ok(());
    }
    if creditors::save(&mut tx, &creditor, event.occurred_at, now).await? {
        tracing::info!(creditor = %creditor.id, "creditor saved");
    } else {
        tracing::info!(creditor = %creditor.id, "creditor.updated older than the details already stored; ignored");
    }
    tx.commit().await.context("committing the creditor")?;
    Ok(())
}
