//! `relance creditor list|show|set`: the creditors of the deployment. `list` and `show` read
//! the database (the default creditor, from the environment, first); `set` publishes the same
//! `creditor.updated` another system would (the scheduler applies it), checked first by the
//! same validation, with the fields not given kept from the stored creditor.

use crate::drive::{publish_inbound, wait_for};
use crate::output::{self, Format};
use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use relance_config::{Creditor, Settings, DEFAULT_CREDITOR_ID};
use relance_contracts::names::{self, Names};
use relance_contracts::{CreditorUpdatedV1, CreditorV1, VERSION_1};
use relance_domain::creditor::validate_creditor;
use relance_domain::{Clock, SystemClock};
use relance_messaging::{declare_topology, Publisher, TopologyOptions};
use relance_storage::creditors::{self, StoredCreditor};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum CreditorCommand {
    /// List the creditors: the default one (RELANCE_CREDITOR_*) and those given as data.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show one creditor's whole identity.
    Show { id: String },
    /// Create a creditor or change some of its fields: publishes `creditor.updated` with the
    /// stored identity and the fields given here. Not for `default`, which the
    /// RELANCE_CREDITOR_* variables set.
    Set {
        id: String,
        #[command(flatten)]
        fields: Box<CreditorFields>,
        /// Wait up to this many seconds for the scheduler to apply it.
        #[arg(long)]
        wait: Option<u64>,
    },
}

/// The fields `relance creditor set` can give; those left out keep their stored value.
#[derive(Debug, Args)]
pub struct CreditorFields {
    /// Legal name.
    #[arg(long)]
    name: Option<String>,
    /// Postal address; `\n` separates lines.
    #[arg(long)]
    address: Option<String>,
    #[arg(long)]
    iban: Option<String>,
    #[arg(long)]
    bic: Option<String>,
    #[arg(long)]
    legal_form: Option<String>,
    #[arg(long)]
    share_capital: Option<String>,
    #[arg(long)]
    siren: Option<String>,
    #[arg(long)]
    siret: Option<String>,
    #[arg(long)]
    rcs_city: Option<String>,
    #[arg(long)]
    vat_number: Option<String>,
    /// Contact email shown in messages.
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    phone: Option<String>,
    /// A further letterhead line (repeatable; replaces the stored ones).
    #[arg(long = "letterhead")]
    letterhead: Vec<String>,
    #[arg(long)]
    signature_fr: Option<String>,
    #[arg(long)]
    signature_en: Option<String>,
    #[arg(long)]
    signatory: Option<String>,
    #[arg(long)]
    signatory_title_fr: Option<String>,
    #[arg(long)]
    signatory_title_en: Option<String>,
    /// `From` of its emails.
    #[arg(long)]
    mail_from: Option<String>,
    /// `Reply-To` of its emails.
    #[arg(long)]
    reply_to: Option<String>,
    /// Sender name or number of its text messages.
    #[arg(long)]
    sms_sender: Option<String>,
    /// The named policy its invoices follow (a `<name>.toml` of `RELANCE_POLICY_DIR`); an
    /// empty value goes back to the default policy.
    #[arg(long)]
    policy: Option<String>,
    /// Its own template folder (a `<name>/` of `RELANCE_CREDITOR_TEMPLATE_DIR`); an empty
    /// value goes back to the deployment's templates.
    #[arg(long)]
    templates: Option<String>,
}

pub async fn run(settings: Settings, command: CreditorCommand) -> anyhow::Result<()> {
    match command {
        CreditorCommand::List { format } => list(&settings, format).await,
        CreditorCommand::Show { id } => show(&settings, &id).await,
        CreditorCommand::Set { id, fields, wait } => {
            set(&settings, &id, *fields, wait.map(Duration::from_secs)).await
        }
    }
}

#[derive(Serialize)]
struct CreditorLine {
    id: String,
    name: String,
    iban: String,
    mail_from: String,
    /// Its named policy and template folder; empty: the deployment's.
    policy: String,
    templates: String,
    revision: Option<i32>,
    updated_at: Option<String>,
}

async fn list(settings: &Settings, format: Format) -> anyhow::Result<()> {
    let db = relance_storage::connect(&settings.database_url, 1).await?;
    let mut conn = db.acquire().await.context("acquiring a connection")?;
    let stored = creditors::list(&mut conn, &settings.creditor).await?;
    drop(conn);
    db.close().await;
    let line = |c: &Creditor, s: Option<&StoredCreditor>| CreditorLine {
        id: c.id.clone(),
        name: c.name.clone(),
        iban: c.iban.clone(),
        mail_from: c.mail_from.clone(),
        policy: c.policy.clone(),
        templates: c.templates.clone(),
        revision: s.map(|s| s.revision),
        updated_at: s.map(|s| s.updated_at.format("%Y-%m-%d %H:%M").to_string()),
    };
    let mut lines = vec![line(&settings.creditor, None)];
    lines.extend(stored.iter().map(|s| line(&s.creditor, Some(s))));
    if format != Format::Table {
        return output::write_rows(format, &lines);
    }
    println!("{:<16} {:<32} {:<34} {:<4} UPDATED", "ID", "NAME", "IBAN", "REV");
    for l in &lines {
        println!(
            "{:<16} {:<32} {:<34} {:<4} {}",
            l.id,
            l.name,
            l.iban,
            l.revision.map_or("env".to_string(), |r| r.to_string()),
            l.updated_at.as_deref().unwrap_or("(RELANCE_CREDITOR_*)")
        );
    }
    Ok(())
}

async fn show(settings: &Settings, id: &str) -> anyhow::Result<()> {
    let creditor = if id == DEFAULT_CREDITOR_ID {
        settings.creditor.clone()
    } else {
        let db = relance_storage::connect(&settings.database_url, 1).await?;
        let mut conn = db.acquire().await.context("acquiring a connection")?;
        let found = creditors::find(&mut conn, &settings.creditor, id).await?;
        drop(conn);
        db.close().await;
        let stored = found.ok_or_else(|| anyhow!("no creditor {id:?} (relance creditor list)"))?;
        println!(
            "revision {}, updated {}",
            stored.revision,
            stored.updated_at.format("%Y-%m-%d %H:%M")
        );
        stored.creditor
    };
    let c = &creditor;
    for (label, value) in [
        ("id", c.id.as_str()),
        ("name", &c.name),
        ("legal form", &c.legal_form),
        ("share capital", &c.share_capital),
        ("SIREN", &c.siren),
        ("SIRET", &c.siret),
        ("RCS city", &c.rcs_city),
        ("VAT number", &c.vat_number),
        ("IBAN", &c.iban),
        ("BIC", &c.bic),
        ("email", &c.email),
        ("phone", &c.phone),
        ("From", &c.mail_from),
        ("Reply-To", &c.reply_to),
        ("SMS sender", &c.sms_sender),
        (
            "policy",
            if c.policy.is_empty() {
                "(default)"
            } else {
                &c.policy
            },
        ),
        (
            "templates",
            if c.templates.is_empty() {
                "(default)"
            } else {
                &c.templates
            },
        ),
        ("signature (fr)", &c.signature_in("fr")),
        ("signature (en)", &c.signature_in("en")),
    ] {
        println!("{label:<15} {value}");
    }
    println!("{:<15} {}", "address", c.address.replace('\n', " / "));
    for line in &c.letterhead {
        println!("{:<15} {line}", "letterhead");
    }
    println!("{:<15} {}", "legal mentions", c.legal_mentions_in("fr"));
    Ok(())
}

/// The message `relance creditor set` publishes: the stored identity (if any) with `fields`.
pub fn creditor_message(
    id: &str,
    stored: Option<&Creditor>,
    fields: CreditorFields,
    event_id: String,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<CreditorUpdatedV1> {
    let base = stored.cloned().unwrap_or_default();
    let pick = |given: Option<String>, stored: &str| {
        Some(given.unwrap_or_else(|| stored.to_string())).filter(|v| !v.trim().is_empty())
    };
    let message = CreditorUpdatedV1 {
        version: VERSION_1,
        event_id,
        occurred_at: now,
        creditor: CreditorV1 {
            id: id.to_string(),
            name: fields.name.unwrap_or(base.name),
            address: fields.address.unwrap_or(base.address),
            iban: fields.iban.unwrap_or(base.iban),
            bic: pick(fields.bic, &base.bic),
            legal_form: pick(fields.legal_form, &base.legal_form),
            share_capital: pick(fields.share_capital, &base.share_capital),
            siren: pick(fields.siren, &base.siren),
            siret: pick(fields.siret, &base.siret),
            rcs_city: pick(fields.rcs_city, &base.rcs_city),
            vat_number: pick(fields.vat_number, &base.vat_number),
            email: pick(fields.email, &base.email),
            phone: pick(fields.phone, &base.phone),
            letterhead: if fields.letterhead.is_empty() {
                base.letterhead
            } else {
                fields.letterhead
            },
            signature_fr: pick(fields.signature_fr, &base.signature),
            signature_en: pick(fields.signature_en, &base.signature_en),
            signatory: pick(fields.signatory, &base.signatory),
            signatory_title_fr: pick(fields.signatory_title_fr, &base.signatory_title_fr),
            signatory_title_en: pick(fields.signatory_title_en, &base.signatory_title_en),
            mail_from: pick(fields.mail_from, &base.mail_from),
            reply_to: pick(fields.reply_to, &base.reply_to),
            sms_sender: pick(fields.sms_sender, &base.sms_sender),
            policy: pick(fields.policy, &base.policy),
            templates: pick(fields.templates, &base.templates),
        },
    };
    // The scheduler's own check: refused here rather than dead-lettered there.
    validate_creditor(relance_scheduler::creditors::creditor_of(&message.creditor))
        .map_err(|r| anyhow!("refused before publishing: {r}"))?;
    Ok(message)
}

/// The policy and template folder the creditor names, checked against this shell's
/// `RELANCE_POLICY_DIR` and `RELANCE_CREDITOR_TEMPLATE_DIR` when they are set (the scheduler
/// checks them against its own in any case): a name they lack is refused before publishing.
fn check_names_here(settings: &Settings, creditor: &CreditorV1) -> anyhow::Result<()> {
    if let (Some(policy), Some(dir)) = (creditor.policy.as_deref(), &settings.policy_dir) {
        if !dir.join(format!("{}.toml", policy.trim())).is_file() {
            return Err(anyhow!(
                "refused before publishing: creditor.policy {policy:?} is not a policy of this deployment (no {}.toml in RELANCE_POLICY_DIR {})",
                policy.trim(),
                dir.display()
            ));
        }
    }
    if let (Some(folder), Some(root)) = (creditor.templates.as_deref(), &settings.creditor_template_dir) {
        if !root.join(folder.trim()).is_dir() {
            return Err(anyhow!(
                "refused before publishing: creditor.templates {folder:?} is not a template folder of this deployment (none in RELANCE_CREDITOR_TEMPLATE_DIR {})",
                root.display()
            ));
        }
    }
    Ok(())
}

async fn set(
    settings: &Settings,
    id: &str,
    fields: CreditorFields,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    let db = relance_storage::connect(&settings.database_url, 1).await?;
    let mut conn = db.acquire().await.context("acquiring a connection")?;
    // Stored without the default's addresses and signatures filled in: the message keeps
    // leaving out what the creditor never had.
    let stored = creditors::find(&mut conn, &Creditor::default(), id).await?;
    drop(conn);
    let event_id = format!("cli-{}", uuid::Uuid::new_v4().simple());
    let message = creditor_message(
        id,
        stored.as_ref().map(|s| &s.creditor),
        fields,
        event_id.clone(),
        SystemClock.now(),
    )?;
    check_names_here(settings, &message.creditor)?;
    let names = Names::new(&settings.namespace);
    let connection = relance_messaging::connect(&settings.amqp_url, "cli").await?;
    let channel = connection.create_channel().await.context("opening a channel")?;
    // The exchange and queues may not exist yet if no service ever ran.
    declare_topology(&channel, &names, &TopologyOptions::from_settings(settings)).await?;
    let _ = channel.close(200, "declared".into()).await;
    let publisher = Publisher::open(&connection).await?;
    let body = serde_json::to_value(&message).context("encoding the message")?;
    publish_inbound(&publisher, &names, names::CREDITOR_UPDATED, &body).await?;
    publisher.close().await;
    let _ = connection.close(200, "done".into()).await;
    println!(
        "published creditor.updated for {id} on {} (event_id {event_id})",
        names.inbound_exchange()
    );
    if let Some(wait) = wait {
        let applied = wait_for("the scheduler to apply it", wait, || async {
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM processed_messages WHERE consumer = 'scheduler.creditor_updated' AND message_id = $1)",
            )
            .bind(&event_id)
            .fetch_one(&db)
            .await
            .context("looking up the message in the inbox")
        })
        .await;
        if applied.is_err() {
            db.close().await;
            return Err(anyhow!(
                "not applied after {wait:?}: the scheduler may be stopped, or the message was refused (see the reason on {})",
                names.dead_letter_queue()
            ));
        }
        println!("{id}: applied");
    }
    db.close().await;
    Ok(())
}
