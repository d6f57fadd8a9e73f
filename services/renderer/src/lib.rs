//! The renderer: turns a `reminder.due` job into the exact message its channel will deliver
//! (subject, text and HTML for email), with amounts, dates and payment details in the
//! customer's language, stores it as proof, and hands it to the channel's sender. It sends
//! nothing itself.

pub mod templates;

use anyhow::Context;
use chrono::{DateTime, Days, Utc};
use chrono_tz::Tz;
use minijinja::Environment;
use relance_config::Config;
use relance_contracts::names::{self, Names};
use relance_contracts::{ReminderDueV1, ReminderRenderedV1, VERSION_1};
use relance_domain::locale::format_date;
use relance_domain::{Language, Money};
use relance_messaging::{outgoing, HandlerError, Incoming, Readiness};
use relance_storage::invoices::{self, InvoiceRecord};
use relance_storage::steps::{self, RenderedMessage, StepRecord, StepStatus};
use relance_storage::{journal, outbox};
use serde_json::json;
use sqlx::PgPool;
use std::str::FromStr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SERVICE: &str = "renderer";

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_readiness(config, Readiness::default(), shutdown).await
}

pub async fn run_with_readiness(
    config: Config,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let template_dir = std::env::var_os("RELANCE_TEMPLATE_DIR").map(std::path::PathBuf::from);
    let env = Arc::new(templates::environment(template_dir.as_deref(), &config.policy)?);
    let s = &config.settings;
    let db =
        relance_storage::connect_with_timeout(&s.database_url, s.db_pool_size, s.db_acquire_timeout).await?;
    let (handler_db, handler_config) = (db.clone(), config.clone());
    relance_messaging::run_queue_worker(
        SERVICE,
        &config,
        &db,
        Names::renderer_queue,
        readiness,
        shutdown,
        move |message| {
            let (db, config, env) = (handler_db.clone(), handler_config.clone(), env.clone());
            async move { render_job(&db, &config, &env, message).await }
        },
    )
    .await
}

/// Handles `reminder.due`. A job whose step has moved on (already rendered, or cancelled by
/// a payment) is acknowledged without effect.
#[tracing::instrument(skip_all, fields(message_id = ?message.message_id, step), err)]
pub async fn render_job(
    db: &PgPool,
    config: &Config,
    env: &Environment<'static>,
    message: Incoming,
) -> Result<(), HandlerError> {
    let job: ReminderDueV1 = message.json()?;
    tracing::Span::current().record("step", tracing::field::display(job.step_id));
    let mut conn = db.acquire().await.context("acquiring a connection")?;
    let Some(step) = steps::find(&mut conn, job.step_id).await? else {
        return Err(HandlerError::Permanent(format!("unknown step {}", job.step_id)));
    };
    if step.status != StepStatus::Queued.as_str() {
        tracing::info!(status = %step.status, "step is no longer queued; job ignored");
        journal::append(
            &mut conn,
            config.clock.now(),
            &step.invoice_number,
            Some(step.id),
            "job.ignored",
            json!({ "stage": "render", "status": step.status }),
        )
        .await?;
        return Ok(());
    }
    let Some(invoice) = invoices::find_by_id(&mut conn, step.invoice_id).await? else {
        return Err(HandlerError::Permanent(format!(
            "step {} has no invoice",
            step.id
        )));
    };
    drop(conn);
    let now = config.clock.now();
    let rendered = render(env, config, &step, &invoice, now)
        .map_err(|e| HandlerError::Permanent(format!("rendering step {} failed: {e:#}", step.id)))?;
    let mut tx = db.begin().await.context("starting the render transaction")?;
    if !steps::transition(
        &mut tx,
        step.id,
        &[StepStatus::Queued],
        StepStatus::Rendered,
        None,
        now,
    )
    .await?
    {
        return Ok(()); // Cancelled or taken meanwhile.
    }
    steps::save_rendered(&mut tx, &rendered).await?;
    let next = ReminderRenderedV1 {
        version: VERSION_1,
        job_id: Uuid::new_v4(),
        step_id: step.id,
        invoice_number: step.invoice_number.clone(),
        step: step.name.clone(),
        channel: step.channel.clone(),
    };
    let routing_key = names::reminder_rendered(&step.channel);
    outbox::enqueue(
        &mut tx,
        &outgoing::job(&routing_key, next.job_id, &step.invoice_number, &next)?,
        now,
    )
    .await?;
    journal::append(
        &mut tx,
        now,
        &step.invoice_number,
        Some(step.id),
        "reminder.rendered",
        json!({
            "step": step.name,
            "message_id": rendered.message_id,
            "subject": rendered.subject,
            "recipients": rendered.recipients,
        }),
    )
    .await?;
    tx.commit().await.context("committing the rendered message")?;
    Ok(())
}

/// The domain part of the sender address, for deterministic Message-IDs.
fn mail_domain(mail_from: &str) -> &str {
    mail_from
        .rsplit('@')
        .next()
        .map(|d| d.trim_end_matches('>').trim())
        .filter(|d| !d.is_empty())
        .unwrap_or("relance.invalid")
}

/// Renders one step for its invoice at `now`.
pub fn render(
    env: &Environment<'static>,
    config: &Config,
    step: &StepRecord,
    invoice: &InvoiceRecord,
    now: DateTime<Utc>,
) -> anyhow::Result<RenderedMessage> {
    let language = Language::from_str(&invoice.language).map_err(anyhow::Error::msg)?;
    let currency = Money::parse_currency(invoice.currency.trim()).map_err(anyhow::Error::msg)?;
    let tz = Tz::from_str(&invoice.timezone).unwrap_or(chrono_tz::Europe::Paris);
    let today = now.with_timezone(&tz).date_naive();
    let money = |amount| Money::new(amount, currency).format(language);
    let paid = invoice.amount - invoice.balance;
    let days_overdue = (today - invoice.due_on).num_days().max(0);
    let days_until_due = (invoice.due_on - today).num_days().max(0);
    let pay_by = today
        .checked_add_days(Days::new(u64::from(config.settings.pay_within_days)))
        .unwrap_or(today);
    let creditor = &config.settings.creditor;
    let attach_invoice = invoice.has_pdf && step.kind == "reminder";
    let context = minijinja::context! {
        contact_name => invoice.contact_name,
        customer_name => invoice.customer_name,
        invoice_number => invoice.number,
        amount => money(invoice.amount),
        balance => money(invoice.balance),
        paid => money(paid),
        partially_paid => !paid.is_zero() && !invoice.balance.is_zero(),
        issued_on => format_date(invoice.issued_on, language),
        due_on => format_date(invoice.due_on, language),
        days_overdue => days_overdue,
        days_until_due => days_until_due,
        pay_by => format_date(pay_by, language),
        payment_link => invoice.payment_link,
        invoice_attached => attach_invoice,
        is_business => invoice.kind == "business",
        tone => step.tone,
        creditor => minijinja::context! {
            name => creditor.name, address => creditor.address, iban => creditor.iban, bic => creditor.bic,
            email => creditor.email, phone => creditor.phone, signature => creditor.signature,
        },
    };
    let base = format!("{}/{}", language.as_str(), step.template);
    let text = env.get_template(&format!("{base}.txt"))?;
    let mut captured = text.render_captured(&context)?;
    let (subject, body_text) =
        captured.with_state_mut(|state| -> Result<(String, String), minijinja::Error> {
            Ok((state.render_block("subject")?, state.render_block("body")?))
        })?;
    // A subject is one line: no header injection through customer-supplied text.
    let subject: String = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let body_html = env.get_template(&format!("{base}.html"))?.render(&context)?;
    Ok(RenderedMessage {
        step_id: step.id,
        channel: step.channel.clone(),
        message_id: format!("<{}.{}@{}>", step.name, step.id, mail_domain(&creditor.mail_from)),
        recipients: vec![invoice.email.clone()],
        cc: invoice.cc.clone(),
        subject,
        body_text,
        body_html: Some(body_html),
        attach_invoice,
        rendered_at: now,
    })
}
