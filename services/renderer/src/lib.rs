//! The renderer: turns a `reminder.due` job into the exact message its channel will deliver
//! (subject, text and HTML for email; a short text for SMS; a PDF for letters; a call
//! script for a call task), with amounts, dates and payment details in the customer's
//! language, stores it as proof, and hands it to the channel's sender (or opens the call
//! task). A step whose channel cannot reach the customer falls back to the next channel of
//! its policy order. It sends nothing itself.

pub mod call;
pub mod decision;
pub mod letter;
pub mod sms;
pub mod templates;
#[cfg(test)]
mod test_fixtures;

use chrono::{DateTime, Days, NaiveDate, Utc};
use decision::{Handoff, Route, Settlement, Stored};
use minijinja::Environment;
use relance_config::Config;
use relance_contracts::names::{self, Names};
use relance_contracts::{CallTaskOpenedV1, ReminderDueV1, ReminderFallbackV1, ReminderSkippedV1, VERSION_1};
use relance_domain::calls::task_expiry;
use relance_domain::claim::{Claim, INDEMNITY_CURRENCY};
use relance_domain::interest::RateSource;
use relance_domain::locale::format_date;
use relance_domain::{Channel, CustomerKind, Language, Money, StepKind, Tone};
use relance_messaging::{HandlerError, Incoming, Readiness};
use relance_sequence::outgoing::{self, StepOutcome};
use relance_storage::deliveries::{self, ClaimHistory, Contact};
use relance_storage::group_commit::GroupCommit;
use relance_storage::invoices::{self, InvoiceRecord};
use relance_storage::steps::{self, RenderedMessage, StepRecord, StepStatus};
use relance_storage::{calls, creditors, groups, journal, outbox, payment_plans};
use rust_decimal::Decimal;
use serde_json::json;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use relance_documents::{claim_of, debt_of, pdf, statement};

pub const SERVICE: &str = "renderer";

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_readiness(config, Readiness::default(), shutdown).await
}

pub async fn run_with_readiness(
    config: Config,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let env = Arc::new(templates::Templates::load(&config)?);
    // A database not yet up (or full) at start is waited out, as the broker is.
    let Some(db) = relance_messaging::worker::connect_database(SERVICE, &config, &shutdown).await? else {
        return Ok(());
    };
    // Renderings that end together commit together (RELANCE_COMMIT_BATCH).
    let s = &config.settings;
    let commits = GroupCommit::start(&db, SERVICE, s.commit_lanes, s.commit_batch);
    let handler_config = config.clone();
    relance_messaging::run_queue_worker(
        SERVICE,
        &config,
        &db,
        Names::renderer_queue,
        readiness,
        shutdown,
        move |message| {
            let (commits, config, env) = (commits.clone(), handler_config.clone(), env.clone());
            async move { render_job(&commits, &config, &env, message).await }
        },
    )
    .await
}

/// Handles `reminder.due`: loads the step, its invoice and how the customer can be reached,
/// lets [`decision`] say where it goes and what its rendering settles, and applies that. A
/// job whose step has moved on (already rendered, or cancelled by a payment) is
/// acknowledged without effect.
///
/// The reads and what the rendering settles run in one savepoint of a group commit (no
/// network call in it: rendering is local work); the job is acknowledged once it committed.
#[tracing::instrument(skip_all, fields(message_id = ?message.message_id, step), err)]
pub async fn render_job(
    commits: &GroupCommit,
    config: &Config,
    templates: &Arc<templates::Templates>,
    message: Incoming,
) -> Result<(), HandlerError> {
    let job: ReminderDueV1 = message.json()?;
    tracing::Span::current().record("step", tracing::field::display(job.step_id));
    // Shared by the piece's runs (a failed batch runs it again alone).
    let inputs = Arc::new((config.clone(), templates.clone(), job));
    commits
        .run(move |conn| {
            let inputs = inputs.clone();
            Box::pin(async move {
                let (config, templates, job) = &*inputs;
                render_in(conn, config, templates, job).await
            })
        })
        .await
}

/// [`render_job`]'s work, on the connection of its savepoint: an `Err` undoes its writes.
async fn render_in(
    conn: &mut sqlx::PgConnection,
    config: &Config,
    templates: &templates::Templates,
    job: &ReminderDueV1,
) -> Result<(), HandlerError> {
    let Some(step) = steps::find(&mut *conn, job.step_id).await? else {
        return Err(HandlerError::Permanent(format!("unknown step {}", job.step_id)));
    };
    if !decision::awaits_rendering(&step) {
        tracing::info!(status = %step.status, "step is no longer queued; job ignored");
        let detail = json!({ "stage": "render", "status": step.status });
        let now = config.clock.now();
        journal::append(
            &mut *conn,
            now,
            &step.invoice_number,
            Some(step.id),
            "job.ignored",
            detail,
        )
        .await?;
        return Ok(());
    }
    let Some(invoice) = invoices::find_by_id(&mut *conn, step.invoice_id).await? else {
        return Err(HandlerError::Permanent(format!(
            "step {} has no invoice",
            step.id
        )));
    };
    // The invoice's creditor: every document of this rendering speaks for it.
    let creditor = creditors::for_invoice(&mut *conn, &config.settings.creditor, invoice.id).await?;
    // Its policy and templates too, when it names its own.
    let config = &config.for_creditor(creditor);
    let env = templates.for_folder(invoice.templates.as_deref());
    let contact = deliveries::contact_of(&mut *conn, &invoice.customer_id).await?;
    let route = decision::route(&config.policy, &step, invoice.risk, &contact);
    let lists_group = route.lists_group();
    let (planned, step, fallback) = match route {
        Route::Render {
            planned,
            step,
            fallback,
        } => (planned, step, fallback),
        Route::Unreachable { reason } => {
            let now = config.clock.now();
            let skipped = ReminderSkippedV1 { reason };
            return settle_unrenderable(conn, &step, StepStatus::Skipped, &skipped, now).await;
        }
    };
    let inputs = load_inputs(&mut *conn, &step, &invoice, lists_group).await?;
    let now = config.clock.now();
    let target = Target {
        step: &step,
        invoice: &invoice,
        contact: &contact,
        history: &inputs.history,
        now,
    };
    let rendering = render_step(env, config, &target, &inputs.others, &inputs.extra)
        .map_err(|e| HandlerError::Permanent(format!("rendering step {} failed: {e:#}", step.id)))?;
    let tx = conn;
    if let Some(reason) = &fallback {
        if !apply_fallback(&mut *tx, planned, &step, reason, &inputs.members, now).await? {
            return Ok(()); // Cancelled or taken meanwhile.
        }
    }
    let listed = if lists_group {
        inputs.members.as_slice()
    } else {
        &[]
    };
    let mut settlement = decision::settle(&step, rendering);
    if let Settlement::Store(stored) = &mut settlement {
        if decision::attaches_statement(&config.policy, &step, invoice.risk) {
            stored.attach(statement_of(&mut *tx, config, &invoice, now).await?);
        }
    }
    apply_settlement(tx, config, &step, &invoice, listed, settlement, now).await
}

/// What rendering a routed step reads besides the step and its invoice.
struct RenderInputs {
    /// The steps grouped into this message (their invoices are `others` when it lists them).
    members: Vec<StepRecord>,
    others: Vec<InvoiceRecord>,
    history: ClaimHistory,
    /// A recap's promised date and call date; empty otherwise.
    extra: minijinja::Value,
}

/// Reads the group (its invoices only if the message lists them), the claim history and a
/// recap's facts.
async fn load_inputs(
    conn: &mut sqlx::PgConnection,
    step: &StepRecord,
    invoice: &InvoiceRecord,
    lists_group: bool,
) -> Result<RenderInputs, HandlerError> {
    // A message that falls back to another channel goes alone: its members are released.
    let members = groups::members(&mut *conn, step.id).await?;
    let mut others = Vec::new();
    if lists_group {
        for member in &members {
            if let Some(other) = invoices::find_by_id(&mut *conn, member.invoice_id).await? {
                others.push(other);
            }
        }
    }
    // Every channel states the same claim, from the same payments and notice.
    let history = deliveries::claim_history(&mut *conn, invoice.id, Some(step.id)).await?;
    let extra = match step.kind {
        StepKind::Recap => recap_context(conn, step, invoice).await?,
        StepKind::Plan => plan_context(conn, step, invoice).await?,
        _ => minijinja::context! {},
    };
    Ok(RenderInputs {
        members,
        others,
        history,
        extra,
    })
}

/// The statement of account of the invoice's customer on the customer's date of `now`.
async fn statement_of(
    conn: &mut sqlx::PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    now: DateTime<Utc>,
) -> Result<statement::StatementDocument, HandlerError> {
    let Some(mut source) = relance_storage::statements::load(conn, &invoice.customer_id).await? else {
        return Err(HandlerError::Permanent(format!(
            "invoice {} has no customer for its statement",
            invoice.number
        )));
    };
    // The invoice's creditor's invoices only (`config` is already that creditor's).
    creditors::statement_creditor(
        conn,
        &config.settings.creditor,
        &mut source,
        Some(&invoice.number),
    )
    .await?;
    let today = now.with_timezone(&source.customer.timezone).date_naive();
    statement::figures(config, &source, today, None)
        .and_then(|figures| statement::document(config, &figures))
        .map_err(|e| HandlerError::Permanent(format!("the statement of account failed: {e:#}")))
}

/// Moves the step to the channel it falls back to, announces it and releases its group.
/// Returns whether the step was still queued.
async fn apply_fallback(
    tx: &mut sqlx::PgConnection,
    planned: Channel,
    step: &StepRecord,
    reason: &str,
    members: &[StepRecord],
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    if !steps::fall_back(&mut *tx, step.id, step.channel, &step.template, now).await? {
        return Ok(false);
    }
    let detail = ReminderFallbackV1 {
        from: planned.to_string(),
        to: step.channel.to_string(),
        template: step.template.to_string(),
        reason: reason.to_string(),
    };
    outgoing::announce_step_detail(&mut *tx, now, step, &detail).await?;
    release_members(tx, members, step, now).await?;
    Ok(true)
}

/// Applies what the rendering settles, in the render transaction: the message stored and
/// handed on (with the grouped invoices it `listed`), or the step skipped or failed.
async fn apply_settlement(
    tx: &mut sqlx::PgConnection,
    config: &Config,
    step: &StepRecord,
    invoice: &InvoiceRecord,
    listed: &[StepRecord],
    settlement: Settlement,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let Stored {
        message: rendered,
        document,
        next_status,
        journal_detail,
        handoff,
        statement,
    } = match settlement {
        Settlement::Store(stored) => *stored,
        Settlement::Skip(skipped) => {
            return settle_unrenderable(tx, step, StepStatus::Skipped, &skipped, now).await;
        }
        Settlement::Fail(failed) => {
            return settle_unrenderable(tx, step, StepStatus::Failed, &failed, now).await;
        }
    };
    // A step held for approval keeps its rendering, awaiting approval: what approval sends.
    let held = relance_sequence::approvals::holder(&mut *tx, config, invoice, step).await?;
    let (to, why) = match held {
        Some(_) => (StepStatus::AwaitingApproval, Some("waiting for approval")),
        None => (next_status, None),
    };
    if !steps::transition(&mut *tx, step.id, &[StepStatus::Queued], to, why, now).await? {
        return Ok(()); // Cancelled or taken meanwhile (a fallback, which keeps it queued, not).
    }
    steps::save_rendered(&mut *tx, &rendered).await?;
    if !listed.is_empty() {
        // Which invoices the message lists: the sender checks them again before delivering.
        let listed: Vec<Uuid> = listed.iter().map(|m| m.id).collect();
        groups::record_listed(&mut *tx, step.id, &listed).await?;
    }
    if let Some(document) = &document {
        deliveries::save_document(&mut *tx, step.id, &document.pdf, &document.sha256).await?;
    }
    if let Some(statement) = &statement {
        relance_storage::statements::save_attached(
            &mut *tx,
            step.id,
            &statement.name,
            &statement.pdf,
            &statement.sha256,
        )
        .await?;
    }
    let invoice_number = &step.invoice_number;
    // Handed straight on to the sender: the entry and the sender's job in one statement.
    let handed_on = match (&held, &handoff) {
        (None, Some(Handoff { routing_key, job })) => {
            Some(outgoing::job(routing_key, job.job_id, invoice_number, job)?)
        }
        _ => None,
    };
    journal::append_with_message(
        &mut *tx,
        now,
        invoice_number,
        Some(step.id),
        "reminder.rendered",
        journal_detail,
        handed_on.as_ref(),
    )
    .await?;
    if let Some(by) = held {
        let message = json!({
            "message_id": rendered.message_id,
            "recipients": rendered.recipients,
            "cc": rendered.cc,
            "subject": rendered.subject,
            "text": rendered.body_text,
            "html": rendered.body_html,
            "attach_invoice": rendered.attach_invoice,
            "pdf_sha256": document.as_ref().map(|d| &d.sha256),
            "statement_sha256": statement.as_ref().map(|d| &d.sha256),
        });
        relance_sequence::approvals::request(&mut *tx, config, invoice, step, by, message, now).await?;
        return Ok(());
    }
    if handoff.is_none() {
        // A phone step: no sender, a call task for the team.
        open_call_task(&mut *tx, config, step, invoice, &rendered, now).await?;
    }
    Ok(())
}

/// What a recap email says beside the invoice: the promised date and the day of the call.
async fn recap_context(
    conn: &mut sqlx::PgConnection,
    step: &StepRecord,
    invoice: &InvoiceRecord,
) -> Result<minijinja::Value, HandlerError> {
    let Some((Some(promised_on), Some(recorded_at))) = calls::recap_facts(conn, step.id).await? else {
        return Err(HandlerError::Permanent(format!(
            "recap step {} confirms no call with a promised date",
            step.id
        )));
    };
    let language = invoice.language;
    let tz = invoice.timezone;
    Ok(minijinja::context! {
        promised_on => format_date(promised_on, language),
        call_date => format_date(recorded_at.with_timezone(&tz).date_naive(), language),
    })
}

/// What a payment plan's note states: every instalment (its date, amount, what is paid),
/// the one the note is about, what is paid in all and what is next.
async fn plan_context(
    conn: &mut sqlx::PgConnection,
    step: &StepRecord,
    invoice: &InvoiceRecord,
) -> Result<minijinja::Value, HandlerError> {
    let Some((plan_id, position)) = payment_plans::note_of(conn, step.id).await? else {
        return Err(HandlerError::Permanent(format!(
            "plan note {} names no plan",
            step.id
        )));
    };
    let Some(plan) = payment_plans::load(conn, plan_id).await? else {
        return Err(HandlerError::Permanent(format!(
            "plan note {} names an unknown plan",
            step.id
        )));
    };
    plan_template_context(&plan, position, invoice.language)
        .map_err(|e| HandlerError::Permanent(format!("plan note {}: {e:#}", step.id)))
}

/// What a plan's note templates see (`plan`, `instalment`, `next_instalment`), for the note
/// about instalment `position`, in `language`.
pub fn plan_template_context(
    plan: &payment_plans::PlanRecord,
    position: i32,
    language: relance_domain::Language,
) -> anyhow::Result<minijinja::Value> {
    let currency = Money::parse_currency(plan.currency.trim()).map_err(anyhow::Error::msg)?;
    let money = |amount: Decimal| Money::new(amount, currency).format(language);
    let view = |i: &payment_plans::InstalmentRecord| {
        minijinja::context! {
            position => i.position,
            due_on => format_date(i.due_on, language),
            amount => money(i.amount),
            paid => money(i.paid),
            left => money(i.amount - i.paid),
            is_paid => i.is_paid(),
            partly_paid => !i.is_paid() && !i.paid.is_zero(),
        }
    };
    let instalments: Vec<minijinja::Value> = plan.instalments.iter().map(view).collect();
    let this = plan.instalments.iter().find(|i| i.position == position).map(view);
    let next = plan
        .instalments
        .iter()
        .find(|i| !i.is_paid() && i.position != position)
        .map(view);
    let total: Decimal = plan.instalments.iter().map(|i| i.amount).sum();
    let paid: Decimal = plan.instalments.iter().map(|i| i.paid).sum();
    let invoice_numbers: Vec<&str> = plan.invoices.iter().map(|(_, n)| n.as_str()).collect();
    Ok(minijinja::context! {
        plan => minijinja::context! {
            id => plan.plan_ref,
            instalments => instalments,
            count => plan.instalments.len(),
            total => money(total),
            paid => money(paid),
            left => money(total - paid),
            invoice_numbers => invoice_numbers,
            grace_days => plan.grace_days,
        },
        instalment => this,
        next_instalment => next,
    })
}

/// Opens the task of a rendered call step, open until its outcome is recorded or it expires.
async fn open_call_task(
    tx: &mut sqlx::PgConnection,
    config: &Config,
    step: &StepRecord,
    invoice: &InvoiceRecord,
    rendered: &RenderedMessage,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let tz = invoice.timezone;
    let expires_at = task_expiry(now, config.settings.call_task_days, tz);
    let phone = rendered.recipients.first().cloned().unwrap_or_default();
    calls::open(tx, step.id, invoice.id, &phone, now, expires_at).await?;
    outgoing::announce_step_detail(
        tx,
        now,
        step,
        &CallTaskOpenedV1 {
            phone,
            title: rendered.subject.clone(),
            expires_at,
        },
    )
    .await
}

/// The members grouped into a message that falls back to another channel go out on their
/// own instead (each choosing its channel): out of the group, and back to the renderer.
async fn release_members(
    tx: &mut sqlx::PgConnection,
    members: &[StepRecord],
    lead: &StepRecord,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for member in members {
        if !groups::release(tx, member.id, now).await? {
            continue;
        }
        journal::append(
            tx,
            now,
            &member.invoice_number,
            Some(member.id),
            "reminder.ungrouped",
            json!({ "reason": format!("the message it joined falls back to {}", lead.channel), "lead": lead.id }),
        )
        .await?;
        let job = ReminderDueV1 {
            version: VERSION_1,
            job_id: Uuid::new_v4(),
            step_id: member.id,
            invoice_number: member.invoice_number.clone(),
            step: member.name.clone(),
            channel: member.channel.to_string(),
        };
        outbox::enqueue(
            tx,
            &outgoing::job(names::REMINDER_DUE, job.job_id, &member.invoice_number, &job)?,
            now,
        )
        .await?;
    }
    Ok(())
}

/// A step that cannot go out on its channel: skipped (nothing to send it to) or failed
/// (its text cannot be made to fit), with the reason announced.
async fn settle_unrenderable<D: StepOutcome>(
    tx: &mut sqlx::PgConnection,
    step: &StepRecord,
    to: StepStatus,
    outcome: &D,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    outgoing::transition_and_announce(tx, now, step, &[StepStatus::Queued], to, outcome).await?;
    Ok(())
}

/// What rendering a step gave.
#[derive(Debug)]
pub enum Rendering {
    /// The message to deliver (or the call script); for letters, its PDF. `facts` go into
    /// the journal.
    Ready {
        message: Box<RenderedMessage>,
        document: Option<Document>,
        facts: serde_json::Value,
    },
    /// Nothing to send it to on this channel (no phone number, no postal address): skipped.
    Skip(String),
    /// It cannot be made deliverable (a text message over its segments): failed.
    Refuse(String),
}

/// A rendered document (a letter) and its SHA-256, hex.
#[derive(Debug, Clone)]
pub struct Document {
    pub pdf: Vec<u8>,
    pub sha256: String,
    pub pages: usize,
}

/// What one step is rendered from: the step (on the channel it goes out on), its invoice,
/// how the customer can be reached, the claim's history, and the time of rendering.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub step: &'a StepRecord,
    pub invoice: &'a InvoiceRecord,
    pub contact: &'a Contact,
    pub history: &'a ClaimHistory,
    pub now: DateTime<Utc>,
}

/// Renders one step on its channel; `others` are the invoices grouped into an email,
/// `extra` adds to the email templates' context (a recap's promised date).
pub fn render_step(
    env: &Environment<'static>,
    config: &Config,
    target: &Target<'_>,
    others: &[InvoiceRecord],
    extra: &minijinja::Value,
) -> anyhow::Result<Rendering> {
    match target.step.channel {
        Channel::Email => Ok(Rendering::Ready {
            message: Box::new(render_email_with(env, config, target, others, extra)?),
            document: None,
            facts: json!({}),
        }),
        Channel::Call => call::render(env, config, target),
        Channel::Sms => sms::render(env, config, target),
        Channel::Letter | Channel::RegisteredLetter => letter::render(env, config, target),
    }
}

/// What every template can use: the invoice, the customer, the creditor, in the customer's
/// language and time zone, and the claim of a late invoice.
pub struct Common {
    pub language: Language,
    pub today: NaiveDate,
    pub context: minijinja::Value,
    pub money: Box<dyn Fn(Decimal) -> String>,
    /// What is owed on top of the balance today (`None` until the due date has passed): the
    /// one computation every channel states.
    pub claim: Option<Claim>,
    /// `claim` as the templates see it, formatted (`None` when it adds nothing).
    pub claim_context: Option<minijinja::Value>,
}

pub fn common_context(config: &Config, target: &Target<'_>) -> anyhow::Result<Common> {
    let Target {
        step,
        invoice,
        history,
        now,
        ..
    } = *target;
    let language = invoice.language;
    let currency = Money::parse_currency(invoice.currency.trim()).map_err(anyhow::Error::msg)?;
    let tz = invoice.timezone;
    let today = now.with_timezone(&tz).date_naive();
    let money = move |amount| Money::new(amount, currency).format(language);
    // Credit notes lower what is owed; they are not payments.
    let owed = invoice.amount - invoice.credited;
    let paid = owed - invoice.balance;
    let days_overdue = (today - invoice.due_on).num_days().max(0);
    let days_until_due = (invoice.due_on - today).num_days().max(0);
    let pay_by = pay_by(config, step, today);
    let claim = claim_of(config, invoice, history, currency, today);
    let claim_context = claim
        .as_ref()
        .filter(|c| c.adds_anything())
        .map(|c| claim_context(config, c, currency, language));
    let attach_invoice = invoice.has_pdf && step.kind == StepKind::Reminder;
    let context = minijinja::context! {
        contact_name => invoice.contact_name,
        customer_name => invoice.customer_name,
        invoice_number => invoice.number,
        amount => money(owed),
        balance => money(invoice.balance),
        paid => money(paid),
        partially_paid => !paid.is_zero() && !invoice.balance.is_zero(),
        issued_on => format_date(invoice.issued_on, language),
        due_on => format_date(invoice.due_on, language),
        days_overdue => days_overdue,
        days_until_due => days_until_due,
        pay_by => format_date(pay_by, language),
        // The customer page when it is published (docs/portal.md), else the invoice's own link.
        payment_link => relance_sequence::portal_link::message_link(&config.settings, &invoice.number, now)
            .or_else(|| invoice.payment_link.clone()),
        // The step asks for an acknowledgement of receipt (`request_receipt`) and the customer
        // page is published: its one-click "I have received this invoice" button.
        receipt_link => (step.kind == StepKind::Reminder
            && config.policy.requests_receipt(invoice.risk, &step.name))
        .then(|| relance_sequence::portal_link::message_link(&config.settings, &invoice.number, now))
        .flatten()
        .map(|link| format!("{link}#receipt")),
        invoice_attached => attach_invoice,
        is_business => invoice.kind == CustomerKind::Business,
        tone => step.tone,
        // What the customer actually received before this message (the wording follows it).
        reminders_sent => history.reminders_sent,
        creditor => creditor_context(config, language),
    };
    Ok(Common {
        language,
        today,
        context,
        money: Box::new(money),
        claim,
        claim_context,
    })
}

/// The day to pay by: a formal notice gives its own deadline (RELANCE_FORMAL_NOTICE_DAYS),
/// on every channel; other messages the usual one.
fn pay_by(config: &Config, step: &StepRecord, today: NaiveDate) -> NaiveDate {
    let pay_within = if step.tone == Tone::Formal {
        config.settings.channels.formal_notice_days
    } else {
        config.settings.pay_within_days
    };
    today
        .checked_add_days(Days::new(u64::from(pay_within)))
        .unwrap_or(today)
}

/// `claim` as the templates see it: interest, rate, indemnity (in euros, with its
/// equivalent in the invoice's currency when the policy gives a rate) and total.
fn claim_context(
    config: &Config,
    c: &Claim,
    currency: relance_domain::money::Currency,
    language: Language,
) -> minijinja::Value {
    let money = |amount| Money::new(amount, currency).format(language);
    let euros = |amount| Money::new(amount, INDEMNITY_CURRENCY).format(language);
    // The indemnity's equivalent in the invoice's currency, when the policy gives a rate.
    let equivalent = config
        .policy
        .indemnity_equivalents
        .get(currency.code())
        .filter(|_| currency != INDEMNITY_CURRENCY);
    minijinja::context! {
        late_interest => money(c.late_interest),
        has_interest => !c.late_interest.is_zero(),
        interest_from => c.interest_from.map(|d| format_date(d, language)),
        rate => c.rate_percent.map(|r| letter::percent(r, language)),
        basis => c.rate_source.map(RateSource::as_str),
        rates_estimated => !c.rates_known,
        recovery_indemnity => euros(c.recovery_indemnity),
        has_indemnity => !c.recovery_indemnity.is_zero(),
        indemnity_in_total => c.indemnity_in_total,
        indemnity_equivalent => equivalent.filter(|_| !c.recovery_indemnity.is_zero()).map(|rate| {
            indemnity_equivalent_context(money(c.recovery_indemnity * rate.per_euro), rate, currency, language)
        }),
        total => money(c.total),
    }
}

/// `creditor` as the templates see it, its signature and legal mentions in `language`.
fn creditor_context(config: &Config, language: Language) -> minijinja::Value {
    let creditor = &config.settings.creditor;
    minijinja::context! {
        name => creditor.name, address => creditor.address, iban => creditor.iban, bic => creditor.bic,
        email => creditor.email, phone => creditor.phone,
        signature => creditor.signature_in(language.as_str()),
        legal_mentions => creditor.legal_mentions_in(language.as_str()),
    }
}

/// `claim.indemnity_equivalent`: the amount, and the rate and its date, as the message
/// states them.
fn indemnity_equivalent_context(
    amount: String,
    rate: &relance_domain::policy::ExchangeRate,
    currency: relance_domain::money::Currency,
    language: Language,
) -> minijinja::Value {
    let per_euro = match language {
        Language::Fr => rate.per_euro.normalize().to_string().replace('.', ","),
        Language::En => rate.per_euro.normalize().to_string(),
    };
    minijinja::context! {
        amount => amount,
        rate => format!("1 € = {per_euro} {}", currency.code()),
        on => format_date(rate.on, language),
    }
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

/// Renders one email step for its invoice at `now`.
pub fn render(
    env: &Environment<'static>,
    config: &Config,
    step: &StepRecord,
    invoice: &InvoiceRecord,
    now: DateTime<Utc>,
) -> anyhow::Result<RenderedMessage> {
    render_email(env, config, step, invoice, &[], &ClaimHistory::default(), now)
}

/// [`render`], with `extra` added to the template's context.
pub fn render_with(
    env: &Environment<'static>,
    config: &Config,
    step: &StepRecord,
    invoice: &InvoiceRecord,
    extra: &minijinja::Value,
    now: DateTime<Utc>,
) -> anyhow::Result<RenderedMessage> {
    let (contact, history) = (Contact::default(), ClaimHistory::default());
    let target = Target {
        step,
        invoice,
        contact: &contact,
        history: &history,
        now,
    };
    render_email_with(env, config, &target, &[], extra)
}

/// As [`render_email`], for an invoice without payments or reminders sent.
pub fn render_grouped(
    env: &Environment<'static>,
    config: &Config,
    step: &StepRecord,
    invoice: &InvoiceRecord,
    others: &[InvoiceRecord],
    now: DateTime<Utc>,
) -> anyhow::Result<RenderedMessage> {
    render_email(env, config, step, invoice, others, &ClaimHistory::default(), now)
}

/// Renders one email step for its invoice and the customer's `others` overdue invoices
/// grouped into it (`other_invoices` and `total_balance` in the templates). From the firm
/// tone on, a late invoice's `claim` (interest to date, indemnity, total) is stated too.
pub fn render_email(
    env: &Environment<'static>,
    config: &Config,
    step: &StepRecord,
    invoice: &InvoiceRecord,
    others: &[InvoiceRecord],
    history: &ClaimHistory,
    now: DateTime<Utc>,
) -> anyhow::Result<RenderedMessage> {
    let contact = Contact::default();
    let target = Target {
        step,
        invoice,
        contact: &contact,
        history,
        now,
    };
    render_email_with(env, config, &target, others, &minijinja::context! {})
}

/// [`render_email`] of a [`Target`], with `extra` added to the template's context.
pub fn render_email_with(
    env: &Environment<'static>,
    config: &Config,
    target: &Target<'_>,
    others: &[InvoiceRecord],
    extra: &minijinja::Value,
) -> anyhow::Result<RenderedMessage> {
    let Target {
        step, invoice, now, ..
    } = *target;
    let Common {
        language,
        context,
        money,
        claim_context,
        ..
    } = common_context(config, target)?;
    // From the firm tone on, a late invoice's email states what it costs to date.
    let claim = claim_context.filter(|_| step.kind == StepKind::Reminder && step.tone != Tone::Courteous);
    let other_invoices: Vec<minijinja::Value> = others
        .iter()
        .map(|o| {
            minijinja::context! {
                number => o.number,
                issued_on => format_date(o.issued_on, language),
                due_on => format_date(o.due_on, language),
                balance => money(o.balance),
            }
        })
        .collect();
    // Grouping keeps to one currency: the total adds up.
    let total = others.iter().fold(invoice.balance, |sum, o| sum + o.balance);
    let context = minijinja::context! { ..extra.clone(), ..context };
    let context = minijinja::context! {
        other_invoices => other_invoices,
        total_balance => money(total),
        claim => claim,
        ..context
    };
    let creditor = &config.settings.creditor;
    let attach_invoice = invoice.has_pdf && step.kind == StepKind::Reminder;
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
        channel: step.channel,
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

#[cfg(test)]
mod tests {
    use super::*;
    use relance_config::Settings;
    use relance_domain::claim::claim_on;
    use relance_domain::{CustomerKind, DunningPolicy, SimulatedClock};
    use std::str::FromStr;

    fn invoice(language: &str, kind: CustomerKind) -> InvoiceRecord {
        InvoiceRecord {
            id: Uuid::from_u128(1),
            number: "F-1".into(),
            amount: rust_decimal::Decimal::new(150000, 2),
            currency: "EUR".into(),
            balance: rust_decimal::Decimal::new(150000, 2),
            credited: rust_decimal::Decimal::ZERO,
            issued_on: chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            due_on: chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(),
            payment_link: None,
            has_pdf: true,
            status: "open".parse().unwrap(),
            customer_id: "C-1".into(),
            customer_name: "ACME".into(),
            contact_name: "Jeanne Martin".into(),
            email: "ap@acme.test".into(),
            cc: vec![],
            language: language.parse().unwrap(),
            timezone: "Europe/Paris".parse().unwrap(),
            risk: "medium".parse().unwrap(),
            kind,
            country: "FR".into(),
            region: None,
            late_interest_percent: None,
            policy: None,
            templates: None,
        }
    }

    /// The default policy and its templates, on 5 May 2026 at 07:00 UTC.
    fn setup() -> (DunningPolicy, Environment<'static>, Config, DateTime<Utc>) {
        let policy = DunningPolicy::default_policy().unwrap();
        let env = templates::environment(None, &policy).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-05-05T07:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Arc::new(SimulatedClock::starting_at(now));
        let config = Config::with_clock(Settings::from_vars(Vec::new()).unwrap(), clock).unwrap();
        (policy, env, config, now)
    }

    /// An email step of invoice F-1 rendering `template` in `tone`.
    fn email_step(template: &str, tone: &str, position: i32, now: DateTime<Utc>) -> StepRecord {
        StepRecord {
            id: Uuid::from_u128(2),
            invoice_id: Uuid::from_u128(1),
            invoice_number: "F-1".into(),
            name: template.into(),
            kind: "reminder".parse().unwrap(),
            position,
            channel: "email".parse().unwrap(),
            template: template.into(),
            tone: tone.parse().unwrap(),
            due_at: now,
            status: "queued".parse().unwrap(),
            emitted_on: None,
        }
    }

    /// From the firm tone on, a late invoice's email states the interest to date and, for a
    /// business, the 40 EUR indemnity, with the total; a courteous one does not.
    #[test]
    fn firm_reminders_state_interest_and_indemnity_to_date() {
        let (_, env, config, now) = setup();
        let step = |template: &str, tone: &str| email_step(template, tone, 2, now);
        let today = chrono::NaiveDate::from_ymd_opt(2026, 5, 5).unwrap();
        for (language, kind) in [
            ("fr", CustomerKind::Business),
            ("en", CustomerKind::Business),
            ("fr", CustomerKind::Consumer),
        ] {
            let invoice = invoice(language, kind);
            let currency = Money::parse_currency("EUR").unwrap();
            let expected = claim_on(
                &config.settings.channels.interest_terms(),
                kind,
                &debt_of(&invoice, currency),
                &[],
                None,
                today,
            )
            .unwrap();
            // A consumer owes nothing on top before the formal notice.
            assert_eq!(
                expected.late_interest > Decimal::ZERO,
                kind == CustomerKind::Business
            );
            let lang = Language::from_str(language).unwrap();
            let shown = |amount| Money::new(amount, currency).format(lang);
            let m = render_email(
                &env,
                &config,
                &step("firm_reminder", "firm"),
                &invoice,
                &[],
                &ClaimHistory::default(),
                now,
            )
            .unwrap();
            for text in [&m.body_text, m.body_html.as_ref().unwrap()] {
                if kind == CustomerKind::Business {
                    assert!(text.contains(&shown(expected.late_interest)), "{text}");
                } else {
                    assert!(
                        !text.contains("À ce jour") && !text.contains("intérêts"),
                        "{text}"
                    );
                }
                assert!(text.contains(&shown(expected.total)), "{text}");
                assert_eq!(
                    text.contains(&shown(Decimal::new(40, 0))),
                    kind == CustomerKind::Business,
                    "{text}"
                );
            }
            let courteous = render_email(
                &env,
                &config,
                &step("reminder", "courteous"),
                &invoice,
                &[],
                &ClaimHistory::default(),
                now,
            )
            .unwrap();
            assert!(
                expected.late_interest.is_zero()
                    || !courteous.body_text.contains(&shown(expected.late_interest)),
                "{}",
                courteous.body_text
            );
        }
    }

    /// Every email template of the default policy (its steps', its fallbacks', the call
    /// thank-you) renders in both languages, for business and consumer
    /// customers, with a one-line subject; the formal notice says what it is. (SMS, letters
    /// and call scripts have their own tests in sms.rs, letter.rs and call.rs.)
    #[test]
    fn every_policy_template_renders_in_both_languages() {
        let (policy, env, config, now) = setup();
        let mut emails: Vec<String> = policy
            .template_uses()
            .into_iter()
            .filter(|u| u.channel == relance_domain::Channel::Email)
            .map(|u| u.template)
            .collect();
        emails.sort();
        emails.dedup();
        // The recap needs the call's outcome: call.rs tests it.
        emails.retain(|t| t != relance_domain::calls::CALL_RECAP_TEMPLATE);
        for expected in [
            "pre_due",
            "reminder",
            "firm_reminder",
            "final_reminder",
            "formal_notice",
            "thanks",
        ] {
            assert!(emails.iter().any(|t| t == expected), "{expected} in {emails:?}");
        }
        for template in emails.iter().map(String::as_str) {
            for language in ["fr", "en"] {
                for kind in [CustomerKind::Business, CustomerKind::Consumer] {
                    let step = email_step(template, "formal", 0, now);
                    let m = render(&env, &config, &step, &invoice(language, kind), now).unwrap();
                    assert!(!m.subject.is_empty() && !m.subject.contains('\n'), "{template}");
                    assert!(m.subject.contains("F-1"), "{template}: {}", m.subject);
                    if template != "thanks" {
                        assert!(m.body_text.contains("FR76"), "{template} {language}");
                    }
                    assert!(
                        !m.body_text.contains("\n\n\n"),
                        "{template} {language}: {}",
                        m.body_text
                    );
                    if template == "formal_notice" {
                        let expected = if language == "fr" {
                            "mise en demeure"
                        } else {
                            "formal notice"
                        };
                        assert!(m.body_text.to_lowercase().contains(expected), "{}", m.body_text);
                        let interest = if language == "fr" {
                            "taux légal"
                        } else {
                            "statutory rate"
                        };
                        assert_eq!(m.body_text.contains(interest), kind == CustomerKind::Consumer);
                    }
                }
            }
        }
    }

    /// A grouped message lists the customer's other overdue invoices and the total, in both
    /// languages and both formats; a lone one says nothing of them.
    #[test]
    fn a_grouped_reminder_lists_the_other_invoices_and_the_total() {
        let (_, env, config, now) = setup();
        for template in ["reminder", "firm_reminder", "final_reminder", "formal_notice"] {
            for (language, listed, total) in [
                ("fr", "facture F-2 du 01/03/2026", "2\u{202f}000,00\u{a0}€"),
                ("en", "invoice F-2 dated 1 March 2026", "€2,000.00"),
            ] {
                let step = email_step(template, "firm", 1, now);
                let mut other = invoice(language, CustomerKind::Business);
                other.number = "F-2".into();
                other.balance = rust_decimal::Decimal::new(50000, 2);
                let lead = invoice(language, CustomerKind::Business);
                let grouped =
                    render_grouped(&env, &config, &step, &lead, std::slice::from_ref(&other), now).unwrap();
                assert!(
                    grouped.body_text.contains(listed),
                    "{template} {language}: {}",
                    grouped.body_text
                );
                assert!(
                    grouped.body_text.contains(total),
                    "{template} {language}: {}",
                    grouped.body_text
                );
                assert!(!grouped.body_text.contains("\n\n\n"), "{}", grouped.body_text);
                let html = grouped.body_html.unwrap_or_default();
                assert!(
                    html.contains("<strong>F-2</strong>") && html.contains(total),
                    "{html}"
                );
                let alone = render(&env, &config, &step, &lead, now).unwrap();
                assert!(!alone.body_text.contains("F-2"), "{}", alone.body_text);
            }
        }
    }
}

#[cfg(test)]
mod plan_note_tests {
    #![allow(clippy::unwrap_used)]
    use crate::test_fixtures;
    use chrono::{NaiveDate, TimeZone, Utc};
    use relance_config::{Config, Settings};
    use relance_domain::{DunningPolicy, SimulatedClock};
    use relance_storage::payment_plans::{InstalmentRecord, PlanRecord};
    use rust_decimal::Decimal;
    use std::sync::Arc;

    fn instalment(position: i32, day: u32, amount: i64, paid: i64) -> InstalmentRecord {
        let due_on = NaiveDate::from_ymd_opt(2026, 4, day).unwrap();
        InstalmentRecord {
            position,
            due_on,
            amount: Decimal::new(amount * 100, 2),
            paid: Decimal::new(paid * 100, 2),
            paid_at: None,
            breaks_at: Utc.from_utc_datetime(&due_on.and_hms_opt(0, 0, 0).unwrap()),
        }
    }

    /// F-9's plan: 400 on 1 April (paid), 600 on 20 April (100 paid).
    fn plan() -> PlanRecord {
        PlanRecord {
            id: uuid::Uuid::nil(),
            plan_ref: "PLAN-9".into(),
            customer_id: "C-9".into(),
            currency: "EUR".into(),
            status: relance_domain::collections::payment_plan::PlanStatus::Active,
            note: None,
            grace_days: 10,
            event_id: "evt-plan-9".into(),
            invoices: vec![(uuid::Uuid::nil(), "F-9".into())],
            instalments: vec![instalment(1, 1, 400, 400), instalment(2, 20, 600, 100)],
        }
    }

    /// The reminder after a missed instalment, in English: its own date and what is left of
    /// it, the whole plan with what is paid, the grace and what a break means.
    #[test]
    fn a_plan_reminder_states_the_instalment_missed_and_the_whole_plan() {
        let settings = Settings::from_vars(Vec::<(String, String)>::new()).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 4, 23, 7, 0, 0).unwrap();
        let config = Config::with_clock(settings, Arc::new(SimulatedClock::starting_at(now))).unwrap();
        let env = crate::templates::environment(None, &DunningPolicy::default_policy().unwrap()).unwrap();
        let step = test_fixtures::step("plan_2_reminder_1", "plan", "email", "plan_reminder", "courteous");
        let invoice = test_fixtures::invoice("business", "en");
        let extra = crate::plan_template_context(&plan(), 2, invoice.language).unwrap();
        let m = crate::render_with(&env, &config, &step, &invoice, &extra, now).unwrap();
        assert_eq!(
            m.subject,
            "Payment plan PLAN-9: instalment 2 of 20 April 2026 unpaid"
        );
        for line in [
            "remains unpaid: €500.00.",
            "Payment plan PLAN-9 (2 instalments, €1,000.00):",
            "1. 1 April 2026: €400.00 (paid)",
            "2. 20 April 2026: €600.00 (€100.00 paid, €500.00 left)",
            "Paid so far: €500.00. Left to pay: €500.00.",
            "unpaid 10 days after its due date ends the payment plan",
        ] {
            assert!(m.body_text.contains(line), "{line:?} not in {}", m.body_text);
        }
        let html = m.body_html.unwrap_or_default();
        assert!(html.contains("€100.00 paid, €500.00 left"), "{html}");
    }
}
