//! `relance approvals`: the steps waiting for the accounts team's approval (a formal notice,
//! or any reminder of a customer set to manual), with a preview of what each will say;
//! approves or rejects one by publishing the same `approval.granted` / `approval.rejected`
//! message another system would, built and checked by `relance_sequence::actions`.

use crate::invoice_commands::publish_and_wait;
use crate::output::{self, Format};
use anyhow::anyhow;
use chrono::NaiveDate;
use clap::Subcommand;
use relance_config::Settings;
use relance_domain::{Clock, SystemClock};
use relance_sequence::actions::{approval_instruction, ApprovalVerdict};
use relance_storage::approvals::PendingApproval;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Approve a step: publishes `approval.granted`; the step goes out at its window's next
    /// opening.
    Approve {
        /// The step's id, as `relance approvals` lists it.
        step_id: Uuid,
        /// Who approves (journaled).
        #[arg(long = "by")]
        by: String,
        /// Why (optional, journaled).
        #[arg(long)]
        reason: Option<String>,
        /// Wait up to this many seconds for the payments service to apply it, and show what it did.
        #[arg(long)]
        wait: Option<u64>,
    },
    /// Show what approving a step will send: the exact rendering held (subject, text, HTML, a
    /// letter's PDF hash) and the figures it states; for a hand-off, the amount claimed.
    Show {
        /// The id `relance approvals` lists.
        step_id: Uuid,
    },
    /// Reject a step: publishes `approval.rejected`; the step is skipped with the reason.
    Reject {
        step_id: Uuid,
        #[arg(long = "by")]
        by: String,
        /// Why it must not go out (required, journaled).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        wait: Option<u64>,
    },
}

/// `relance approvals`: the steps waiting for approval, the oldest request first.
pub async fn list_approvals(settings: Settings, format: Format) -> anyhow::Result<()> {
    let db = relance_storage::connect(settings.reads_database_url(), 1).await?;
    let waiting = relance_storage::approvals::pending(&db).await?;
    db.close().await;
    if format != Format::Table {
        let rows: Vec<ApprovalRow> = waiting.iter().map(ApprovalRow::of).collect();
        return output::write_rows(format, &rows);
    }
    println!(
        "{:<36}  {:<14} {:<24} {:<14} {:<17} {:>14}  {:<17}",
        "step", "invoice", "customer", "step name", "channel", "total", "expires (UTC)"
    );
    for a in &waiting {
        let customer: String = a.customer_name.chars().take(24).collect();
        let p = Preview(&a.preview);
        println!(
            "{:<36}  {:<14} {:<24} {:<14} {:<17} {:>14}  {:<17}",
            a.step_id,
            a.invoice_number,
            customer,
            a.step,
            a.channel,
            format!("{} {}", p.text("total"), p.text("currency")),
            a.expires_at.format("%Y-%m-%d %H:%M"),
        );
        println!(
            "    template {} ({}) to {}: balance {} + interest {} + indemnity {} {}",
            a.template,
            p.text("tone"),
            p.text("recipient"),
            p.text("balance"),
            p.text("interest"),
            p.text("indemnity"),
            p.text("indemnity_currency"),
        );
    }
    println!("{} step(s) waiting for approval", waiting.len());
    Ok(())
}

/// `relance approvals show ID`: the held rendering, as approval will send it.
async fn show_approval(settings: &Settings, step_id: Uuid) -> anyhow::Result<()> {
    let db = relance_storage::connect(&settings.database_url, 1).await?;
    let found = {
        let mut conn = db.acquire().await?;
        relance_storage::approvals::find_pending(&mut conn, step_id).await?
    };
    db.close().await;
    let a = found
        .ok_or_else(|| anyhow!("nothing waits for approval with id {step_id}: see `relance approvals`"))?;
    let p = Preview(&a.preview);
    println!("invoice:   {} ({})", a.invoice_number, a.customer_name);
    println!("expires:   {} UTC", a.expires_at.format("%Y-%m-%d %H:%M"));
    if a.subject == "hand_off" {
        println!("approving hands the invoice off to collection, claiming:");
        let due = Preview(a.preview.get("amount_due").unwrap_or(&serde_json::Value::Null));
        for field in ["principal", "interest", "indemnity", "total"] {
            println!("  {field:<10} {} {}", due.text(field), due.text("currency"));
        }
        return Ok(());
    }
    println!(
        "step:      {} ({}, template {}, {})",
        a.step,
        a.channel,
        a.template,
        p.text("tone")
    );
    println!(
        "figures:   balance {} + interest {} + indemnity {} = {} {} (as of {})",
        p.text("balance"),
        p.text("interest"),
        p.text("indemnity"),
        p.text("total"),
        p.text("currency"),
        p.text("as_of"),
    );
    let Some(message) = a.preview.get("message").filter(|m| !m.is_null()) else {
        println!("(held before it was rendered: approval renders it)");
        return Ok(());
    };
    let m = Preview(message);
    let recipients: Vec<String> = message
        .get("recipients")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    println!("to:        {}", recipients.join(", "));
    println!("subject:   {}", m.text("subject"));
    if let Some(sha) = message.get("pdf_sha256").and_then(|v| v.as_str()) {
        println!("letter:    PDF sha256 {sha}");
    }
    println!("----- text -----");
    println!("{}", m.text("text"));
    if let Some(html) = message.get("html").and_then(|v| v.as_str()) {
        println!("----- html -----");
        println!("{html}");
    }
    Ok(())
}

/// `relance approvals approve|reject|show ...`: checks and publishes the decision.
pub async fn run_approvals_command(settings: Settings, command: ApprovalsCommand) -> anyhow::Result<()> {
    let (step_id, verdict, by, reason, wait) = match command {
        ApprovalsCommand::Show { step_id } => return show_approval(&settings, step_id).await,
        ApprovalsCommand::Approve {
            step_id,
            by,
            reason,
            wait,
        } => (step_id, ApprovalVerdict::Grant, by, reason, wait),
        ApprovalsCommand::Reject {
            step_id,
            by,
            reason,
            wait,
        } => (step_id, ApprovalVerdict::Reject, by, Some(reason), wait),
    };
    let db = relance_storage::connect(&settings.database_url, 1).await?;
    let mut number = relance_storage::calls::invoice_of_step(&db, step_id).await?;
    if number.is_none() {
        // A hand-off's approval is named by its request's id.
        number = relance_storage::approvals::invoice_of_request(&db, step_id).await?;
    }
    db.close().await;
    let number = number.ok_or_else(|| anyhow!("no step {step_id}: see `relance approvals`"))?;
    let event_id = format!("cli-{}", Uuid::new_v4().simple());
    let instruction = approval_instruction(
        &number,
        &step_id.to_string(),
        verdict,
        &by,
        reason,
        event_id.clone(),
        SystemClock.now(),
    )
    .map_err(|r| anyhow!("refused before publishing: {r}"))?
    .with_source(relance_sequence::actions::SOURCE_CLI);
    publish_and_wait(
        &settings,
        instruction.routing_key,
        &instruction.body,
        &number,
        &event_id,
        wait.map(Duration::from_secs),
    )
    .await
}

/// A preview's field as text (`-` when absent).
struct Preview<'a>(&'a serde_json::Value);

impl Preview<'_> {
    fn text(&self, field: &str) -> String {
        match self.0.get(field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => "-".to_string(),
            Some(other) => other.to_string(),
        }
    }
}

/// One step waiting for approval as `relance approvals --format json|csv` writes it.
#[derive(serde::Serialize)]
struct ApprovalRow<'a> {
    step_id: Uuid,
    step: &'a str,
    invoice: &'a str,
    customer: &'a str,
    template: &'a str,
    channel: &'a str,
    due_on: NaiveDate,
    requested_at: String,
    expires_at: String,
    recipient: String,
    currency: String,
    balance: String,
    interest: String,
    indemnity: String,
    indemnity_currency: String,
    total: String,
}

impl<'a> ApprovalRow<'a> {
    fn of(a: &'a PendingApproval) -> Self {
        let p = Preview(&a.preview);
        Self {
            step_id: a.step_id,
            step: &a.step,
            invoice: &a.invoice_number,
            customer: &a.customer_name,
            template: &a.template,
            channel: &a.channel,
            due_on: a.due_on,
            requested_at: a.requested_at.to_rfc3339(),
            expires_at: a.expires_at.to_rfc3339(),
            recipient: p.text("recipient"),
            currency: p.text("currency"),
            balance: p.text("balance"),
            interest: p.text("interest"),
            indemnity: p.text("indemnity"),
            indemnity_currency: p.text("indemnity_currency"),
            total: p.text("total"),
        }
    }
}
