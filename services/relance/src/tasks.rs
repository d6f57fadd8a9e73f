//! `relance tasks`: the call tasks of the accounts team. Lists the open tasks (with their
//! script's first line), and records a call's outcome by publishing the same `call.outcome`
//! message another system would, checked first by the same validation.

use crate::invoice_commands::publish_and_wait;
use crate::output::{self, Format};
use anyhow::{anyhow, bail};
use chrono::NaiveDate;
use clap::Subcommand;
use relance_config::Settings;
use relance_contracts::names;
use relance_domain::{Clock, SystemClock};
use relance_sequence::call_outcome::{call_outcome_message, RecordedCall};
use relance_storage::steps::StepStatus;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Record what came of a call: publishes `call.outcome`, applied by the payments service.
    Outcome {
        /// The call step's id (as `relance tasks` lists it), or the invoice number for the
        /// invoice's open task.
        target: String,
        #[command(subcommand)]
        outcome: OutcomeArg,
        /// Who called, who answered, what was said (journaled).
        #[arg(long, global = true)]
        note: Option<String>,
        /// Wait up to this many seconds for the payments service to apply it, and show what it did.
        #[arg(long, global = true)]
        wait: Option<u64>,
    },
    /// Mark a customer's reply handled (as `relance tasks` lists it): publishes
    /// `reply.handled`; the pause the reply opened ends, and the sequence resumes if nothing
    /// else holds it.
    Handled {
        /// The reply's id.
        reply: Uuid,
        /// What was done about it (journaled).
        #[arg(long)]
        note: Option<String>,
        /// Wait up to this many seconds for the payments service to apply it.
        #[arg(long)]
        wait: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutcomeArg {
    /// The customer was reached. With --promised-on, they promised to pay by that date: the
    /// sequence pauses like for a promise to pay, and a recap email confirms the date.
    Reached {
        /// The date the customer promised to pay by (YYYY-MM-DD).
        #[arg(long)]
        promised_on: Option<NaiveDate>,
    },
    /// The customer contests the invoice: a dispute is opened and the sequence pauses.
    Disputed {
        #[arg(long)]
        reason: String,
    },
    /// Nobody answered: the task is closed and the sequence goes on.
    #[command(name = "no_answer", alias = "no-answer")]
    NoAnswer,
}

/// `relance tasks [--all]`: one block per task, the open ones by default.
pub async fn list_tasks(settings: Settings, all: bool, format: Format) -> anyhow::Result<()> {
    let db = relance_storage::connect(settings.reads_database_url(), 1).await?;
    let tasks = relance_storage::calls::list(&db, all).await?;
    match format {
        Format::Table => {}
        Format::Csv => {
            db.close().await;
            let rows: Vec<TaskRow> = tasks.iter().map(TaskRow::of).collect();
            return output::write_rows(format, &rows);
        }
        Format::Json => {
            // The call tasks (`"kind": "call"`), then the replies to handle (`"kind": "reply"`),
            // as the table lists them.
            let replies = relance_storage::replies::list(&db, all).await?;
            db.close().await;
            let mut rows = Vec::with_capacity(tasks.len() + replies.len());
            for t in &tasks {
                rows.push(tagged("call", &TaskRow::of(t))?);
            }
            for r in &replies {
                rows.push(tagged("reply", &ReplyRow::of(r))?);
            }
            return output::write_rows(format, &rows);
        }
    }
    println!(
        "{:<36}  {:<14} {:<24} {:<16} {:<10} {:>14}  {:<17} status",
        "step", "invoice", "customer", "phone", "due on", "balance", "open until (UTC)"
    );
    for t in &tasks {
        let customer: String = t.customer_name.chars().take(24).collect();
        let status = match (&t.outcome, t.status) {
            (Some(outcome), _) => match (t.promised_on, &t.reason) {
                (Some(day), _) => format!("{outcome}, promised on {day}"),
                (None, Some(reason)) => format!("{outcome}: {reason}"),
                _ => outcome.clone(),
            },
            (None, StepStatus::AwaitingOutcome) => "open".to_string(),
            (None, other) => other.to_string(),
        };
        println!(
            "{:<36}  {:<14} {:<24} {:<16} {:<10} {:>14}  {:<17} {status}",
            t.step_id,
            t.invoice_number,
            customer,
            t.phone,
            t.due_on,
            format!("{} {}", t.balance.round_dp(2), t.currency),
            t.expires_at.format("%Y-%m-%d %H:%M"),
        );
        if let Some(title) = &t.title {
            let excerpt: String = title.chars().take(150).collect();
            println!("    {excerpt}");
        }
    }
    let open = tasks
        .iter()
        .filter(|t| t.status == StepStatus::AwaitingOutcome)
        .count();
    println!("{} task(s), {open} open", tasks.len());
    list_replies(&db, all).await?;
    // The customers' requests for a payment plan, waiting for the team's answer: agree a plan
    // (`relance invoice plan`) or decline (`relance invoice resume`).
    let requests = relance_storage::pauses::plan_requests(&db).await?;
    if !requests.is_empty() {
        println!();
        println!("payment plan requests (agree: relance invoice plan; decline: relance invoice resume)");
        for r in &requests {
            println!(
                "{:<14} {:<24} since {}  {}",
                r.invoice_number,
                r.customer_name.chars().take(24).collect::<String>(),
                r.started_at.format("%Y-%m-%d %H:%M"),
                r.reason
            );
        }
    }
    db.close().await;
    Ok(())
}

/// The customers' replies to handle (with `all`, every one), after the call tasks.
async fn list_replies(db: &sqlx::PgPool, all: bool) -> anyhow::Result<()> {
    let replies = relance_storage::replies::list(db, all).await?;
    if replies.is_empty() {
        return Ok(());
    }
    println!();
    println!(
        "{:<36}  {:<14} {:<24} {:<28} {:<17} status",
        "reply", "invoice", "customer", "from", "received (UTC)"
    );
    for r in &replies {
        let customer: String = r.customer_name.chars().take(24).collect();
        let from: String = r.from_address.chars().take(28).collect();
        let status = match (&r.handled_at, &r.handled_note, r.pauses) {
            (Some(at), Some(note), _) => format!("handled {}: {note}", at.format("%Y-%m-%d")),
            (Some(at), None, _) => format!("handled {}", at.format("%Y-%m-%d")),
            (None, _, true) => "to handle (sequence paused)".to_string(),
            (None, _, false) => "to handle".to_string(),
        };
        println!(
            "{:<36}  {:<14} {:<24} {:<28} {:<17} {status}",
            r.id,
            r.invoice_number,
            customer,
            from,
            r.received_at.format("%Y-%m-%d %H:%M"),
        );
        let subject: String = r.subject.chars().take(100).collect();
        println!(
            "    {subject}: {}",
            r.excerpt.chars().take(150).collect::<String>()
        );
    }
    let open = replies.iter().filter(|r| r.handled_at.is_none()).count();
    println!("{} reply(ies), {open} to handle", replies.len());
    Ok(())
}

/// `relance tasks handled REPLY_ID`: publishes `reply.handled`.
async fn reply_handled(
    settings: Settings,
    reply: Uuid,
    note: Option<String>,
    wait: Option<u64>,
) -> anyhow::Result<()> {
    let db = relance_storage::connect(&settings.database_url, 1).await?;
    let found = relance_storage::replies::find_reply(&db, reply).await?;
    db.close().await;
    let found = found.ok_or_else(|| anyhow!("no reply {reply}: see `relance tasks --all`"))?;
    if let Some(at) = found.handled_at {
        bail!(
            "reply {reply} was handled on {}: nothing to do",
            at.format("%Y-%m-%d %H:%M UTC")
        );
    }
    let invoice_number = found.invoice_number;
    let event_id = format!("cli-{}", Uuid::new_v4().simple());
    let message = relance_sequence::reply_handled::reply_handled_message(
        &invoice_number,
        reply,
        note.as_deref(),
        event_id.clone(),
        SystemClock.now(),
    )
    .map_err(|r| anyhow!("refused before publishing: {} {}", r.field, r.reason))?;
    let body = serde_json::to_value(&message)?;
    publish_and_wait(
        &settings,
        names::REPLY_HANDLED,
        &body,
        &invoice_number,
        &event_id,
        wait.map(Duration::from_secs),
    )
    .await
}

/// `relance tasks outcome ...`: checks and publishes `call.outcome`.
pub async fn run_tasks_command(settings: Settings, command: TasksCommand) -> anyhow::Result<()> {
    let (target, outcome, note, wait) = match command {
        TasksCommand::Outcome {
            target,
            outcome,
            note,
            wait,
        } => (target, outcome, note, wait),
        TasksCommand::Handled { reply, note, wait } => {
            return reply_handled(settings, reply, note, wait).await
        }
    };
    // A step id names its invoice in the database; anything else is an invoice number.
    let (invoice_number, step_id) = match Uuid::parse_str(target.trim()) {
        Ok(step_id) => {
            let db = relance_storage::connect(&settings.database_url, 1).await?;
            let number = relance_storage::calls::invoice_of_step(&db, step_id).await?;
            db.close().await;
            let number = number.ok_or_else(|| anyhow!("no step {step_id}: see `relance tasks --all`"))?;
            (number, Some(step_id.to_string()))
        }
        Err(_) => (target.trim().to_string(), None),
    };
    let (outcome, promised_on, reason) = match outcome {
        OutcomeArg::Reached { promised_on } => ("reached", promised_on, None),
        OutcomeArg::Disputed { reason } => ("disputed", None, Some(reason)),
        OutcomeArg::NoAnswer => ("no_answer", None, None),
    };
    let event_id = format!("cli-{}", Uuid::new_v4().simple());
    let call = RecordedCall {
        invoice_number: invoice_number.clone(),
        step_id,
        outcome: outcome.to_string(),
        promised_on,
        reason,
        note,
    };
    let message = call_outcome_message(call, event_id.clone(), SystemClock.now())
        .map_err(|r| anyhow!("refused before publishing: {r}"))?;
    let body = serde_json::to_value(&message)?;
    let wait = wait.map(Duration::from_secs);
    publish_and_wait(
        &settings,
        names::CALL_OUTCOME,
        &body,
        &invoice_number,
        &event_id,
        wait,
    )
    .await
}

/// `row` as a JSON object with `"kind": kind` first.
fn tagged(kind: &str, row: &impl serde::Serialize) -> anyhow::Result<serde_json::Value> {
    let mut object = serde_json::Map::new();
    object.insert("kind".to_string(), serde_json::Value::from(kind));
    match serde_json::to_value(row)? {
        serde_json::Value::Object(fields) => object.extend(fields),
        other => return Err(anyhow!("a task row is not an object: {other}")),
    }
    Ok(serde_json::Value::Object(object))
}

/// One customer's reply as `relance tasks --format json` writes it (`"kind": "reply"`).
#[derive(serde::Serialize)]
struct ReplyRow<'a> {
    reply_id: Uuid,
    invoice: &'a str,
    customer: &'a str,
    from: &'a str,
    subject: &'a str,
    excerpt: &'a str,
    received_at: String,
    /// `to_handle` or `handled`.
    status: &'static str,
    /// Whether the reply paused the sequence (until it is handled).
    pauses: bool,
    handled_at: Option<String>,
    note: Option<&'a str>,
}

impl<'a> ReplyRow<'a> {
    fn of(r: &'a relance_storage::replies::ReplyTask) -> Self {
        Self {
            reply_id: r.id,
            invoice: &r.invoice_number,
            customer: &r.customer_name,
            from: &r.from_address,
            subject: &r.subject,
            excerpt: &r.excerpt,
            received_at: r.received_at.to_rfc3339(),
            status: if r.handled_at.is_some() {
                "handled"
            } else {
                "to_handle"
            },
            pauses: r.pauses,
            handled_at: r.handled_at.map(|at| at.to_rfc3339()),
            note: r.handled_note.as_deref(),
        }
    }
}

/// One task as `relance tasks --format json|csv` writes it (with `"kind": "call"` in JSON).
#[derive(serde::Serialize)]
struct TaskRow<'a> {
    step_id: Uuid,
    step: &'a str,
    status: String,
    invoice: &'a str,
    customer: &'a str,
    contact: &'a str,
    phone: &'a str,
    due_on: NaiveDate,
    /// Decimal string, rounded to the cent.
    balance: String,
    currency: &'a str,
    opened_at: String,
    expires_at: String,
    title: Option<&'a str>,
    outcome: Option<&'a str>,
    promised_on: Option<NaiveDate>,
    reason: Option<&'a str>,
    note: Option<&'a str>,
    recorded_at: Option<String>,
}

impl<'a> TaskRow<'a> {
    fn of(t: &'a relance_storage::calls::CallTask) -> Self {
        Self {
            step_id: t.step_id,
            step: &t.step,
            status: t.status.to_string(),
            invoice: &t.invoice_number,
            customer: &t.customer_name,
            contact: &t.contact_name,
            phone: &t.phone,
            due_on: t.due_on,
            balance: t.balance.round_dp(2).to_string(),
            currency: &t.currency,
            opened_at: t.opened_at.to_rfc3339(),
            expires_at: t.expires_at.to_rfc3339(),
            title: t.title.as_deref(),
            outcome: t.outcome.as_deref(),
            promised_on: t.promised_on,
            reason: t.reason.as_deref(),
            note: t.note.as_deref(),
            recorded_at: t.recorded_at.map(|t| t.to_rfc3339()),
        }
    }
}
