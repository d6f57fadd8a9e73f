//! `relance invoice ...` and `relance invoices`: the accounts team's commands. The first
//! publishes the same inbound message another system would (one code path: the payments
//! listener applies it), after checking it with the same validation; the second lists
//! invoices with their collections status.

use crate::drive::{publish_inbound, wait_for};
use crate::output::{self, Format};
use anyhow::{anyhow, Context};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use relance_config::Settings;
use relance_contracts::names::{self, Names};
use relance_contracts::{InstalmentV1, PaymentPlanAgreedV1, PaymentPlanV1, VERSION_1};
use relance_domain::{Clock, SystemClock};
use relance_messaging::{declare_topology, Publisher, TopologyOptions};
use relance_payments::plans;
use relance_sequence::actions::{self, Instruction, InvoiceAction};
use sqlx::PgPool;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum InvoiceCommand {
    /// Record a promise to pay: the sequence pauses until the date plus the grace days
    /// (RELANCE_PROMISE_GRACE_DAYS), then resumes if the invoice is still unpaid.
    Promise {
        number: String,
        /// The date the customer promised to pay by (YYYY-MM-DD).
        #[arg(long)]
        date: NaiveDate,
        #[arg(long)]
        note: Option<String>,
    },
    /// Record a dispute: the sequence pauses until it is resolved.
    Dispute {
        number: String,
        #[arg(long)]
        reason: String,
    },
    /// Resolve the open dispute: the sequence resumes; with a credit note, the note is applied
    /// first (a credit note for the whole balance closes the invoice).
    Resolve {
        number: String,
        #[arg(long)]
        note: Option<String>,
        /// Id of the credit note that settles the dispute.
        #[arg(long, requires = "credit_amount")]
        credit_note: Option<String>,
        #[arg(long, requires = "credit_note")]
        credit_amount: Option<String>,
        #[arg(long, default_value = "EUR")]
        currency: String,
    },
    /// Record a credit note: lowers the balance; one for the whole invoice closes it.
    Credit {
        number: String,
        #[arg(long)]
        amount: String,
        /// The credit note's number in your invoicing system (default: generated).
        #[arg(long)]
        id: Option<String>,
        #[arg(long, default_value = "EUR")]
        currency: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Write the invoice off: it is closed and its reminders cancelled.
    WriteOff {
        number: String,
        #[arg(long)]
        reason: String,
    },
    /// Pause the reminders by hand until `relance invoice resume` (a pause of kind `manual`).
    Pause {
        number: String,
        /// Why (journaled).
        #[arg(long)]
        reason: String,
    },
    /// Release the pause by hand: the sequence resumes unless a promise, a dispute or a
    /// suspension still holds it.
    Resume {
        number: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Record a payment plan (échéancier) for the invoice (and others of the same customer
    /// with --invoice): its own sequence is held and the plan's notes go out instead, a note
    /// before each instalment and reminders after a missed one; an instalment unpaid beyond
    /// the policy's grace (`[payment_plans] grace_days`) breaks it.
    Plan {
        number: String,
        /// One instalment, `YYYY-MM-DD:AMOUNT` (e.g. `2026-07-15:500.00`); at least two, in
        /// date order, summing to the balance of the invoices.
        #[arg(long = "instalment", required = true)]
        instalments: Vec<String>,
        /// Another invoice of the same customer the plan covers (repeatable).
        #[arg(long = "invoice")]
        invoices: Vec<String>,
        /// The plan's id in your systems (default: generated).
        #[arg(long)]
        id: Option<String>,
        /// The customer's id (default: the invoice's customer, read from the database).
        #[arg(long)]
        customer: Option<String>,
        #[arg(long, default_value = "EUR")]
        currency: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Record an e-invoicing lifecycle status, by name (`disputed`) or code (`207`).
    Lifecycle {
        number: String,
        status: String,
        #[arg(long)]
        reason: Option<String>,
        /// For `cashed`: the amount cashed (default: the whole balance).
        #[arg(long)]
        amount: Option<String>,
        #[arg(long, default_value = "EUR")]
        currency: String,
    },
}

impl InvoiceCommand {
    /// The invoice and the action, as `relance_sequence::actions` builds and checks them
    /// (the console's invoice page goes through the same).
    /// `None` for a payment plan, built by [`plan_instruction`].
    fn action(self) -> Option<(String, InvoiceAction)> {
        Some(match self {
            InvoiceCommand::Plan { .. } => return None,
            InvoiceCommand::Promise { number, date, note } => (
                number,
                InvoiceAction::Promise {
                    date: Some(date),
                    note,
                },
            ),
            InvoiceCommand::Dispute { number, reason } => (number, InvoiceAction::Dispute { reason }),
            InvoiceCommand::Resolve {
                number,
                note,
                credit_note,
                credit_amount,
                currency,
            } => (
                number,
                InvoiceAction::Resolve {
                    note,
                    credit_note,
                    credit_amount,
                    currency: Some(currency),
                },
            ),
            InvoiceCommand::Credit {
                number,
                amount,
                id,
                currency,
                reason,
            } => (
                number,
                InvoiceAction::Credit {
                    amount,
                    id,
                    currency: Some(currency),
                    reason,
                },
            ),
            InvoiceCommand::WriteOff { number, reason } => (number, InvoiceAction::WriteOff { reason }),
            InvoiceCommand::Lifecycle {
                number,
                status,
                reason,
                amount,
                currency,
            } => (
                number,
                InvoiceAction::Lifecycle {
                    status,
                    reason,
                    amount,
                    currency: Some(currency),
                },
            ),
            InvoiceCommand::Pause { number, reason } => (number, InvoiceAction::Pause { reason }),
            InvoiceCommand::Resume { number, note } => (number, InvoiceAction::Resume { note }),
        })
    }
}

/// Checks and publishes the command's message on `<ns>.inbound` (with confirms). With
/// `wait`, waits until the payments listener has applied it and prints the journal lines it
/// wrote; a message refused by the listener is dead-lettered with the reason.
pub async fn run_invoice_command(
    settings: Settings,
    command: InvoiceCommand,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    let event_id = format!("cli-{}", uuid::Uuid::new_v4().simple());
    let now = SystemClock.now();
    let instruction = match command {
        InvoiceCommand::Plan {
            ref number,
            ref customer,
            ..
        } => {
            let customer = match customer {
                Some(c) => c.clone(),
                None => customer_of(&settings, number).await?,
            };
            plan_instruction(command, customer, event_id.clone(), now)?
        }
        command => {
            let Some((number, action)) = command.action() else {
                return Err(anyhow!("a payment plan is built by plan_instruction"));
            };
            actions::instruction(&number, action, event_id.clone(), now)
                .map_err(|r| anyhow!("refused before publishing: {r}"))?
                .with_source(actions::SOURCE_CLI)
        }
    };
    publish_and_wait(
        &settings,
        instruction.routing_key,
        &instruction.body,
        &instruction.invoice_number,
        &event_id,
        wait,
    )
    .await
}

/// One `--instalment YYYY-MM-DD:AMOUNT`.
fn parse_instalment(text: &str) -> anyhow::Result<InstalmentV1> {
    let (date, amount) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("--instalment {text:?}: expected YYYY-MM-DD:AMOUNT"))?;
    let due_on = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
        .map_err(|_| anyhow!("--instalment {text:?}: {date:?} is not a date as YYYY-MM-DD"))?;
    Ok(InstalmentV1 {
        due_on: Some(due_on),
        amount: amount.trim().to_string(),
    })
}

/// The `payment_plan.agreed` of `relance invoice plan`, checked as the listener checks it
/// (its own fields); `customer` is the invoice's customer.
fn plan_instruction(
    command: InvoiceCommand,
    customer: String,
    event_id: String,
    now: DateTime<Utc>,
) -> anyhow::Result<Instruction> {
    let InvoiceCommand::Plan {
        number,
        instalments,
        invoices,
        id,
        currency,
        note,
        ..
    } = command
    else {
        return Err(anyhow!("not a payment plan"));
    };
    let instalments = instalments
        .iter()
        .map(|i| parse_instalment(i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let short: String = event_id.chars().skip(4).take(12).collect();
    let m = PaymentPlanAgreedV1 {
        version: VERSION_1,
        event_id: event_id.clone(),
        occurred_at: now,
        plan: PaymentPlanV1 {
            id: id.unwrap_or_else(|| format!("PLAN-{short}")),
            customer_id: customer,
            invoice_numbers: std::iter::once(number.clone()).chain(invoices).collect(),
            instalments,
            currency,
            note,
            source: Some(relance_sequence::actions::SOURCE_CLI.to_string()),
        },
    };
    // The dates against the customer's day, the invoices and their balance: the listener
    // checks them, in the invoices' transaction.
    plans::payment_plan(&m).map_err(|r| anyhow!("refused before publishing: {r}"))?;
    Ok(Instruction {
        routing_key: names::PAYMENT_PLAN_AGREED,
        body: serde_json::to_value(&m).context("writing the message")?,
        invoice_number: number,
        event_id,
    })
}

/// The customer of an invoice, from the database.
async fn customer_of(settings: &Settings, number: &str) -> anyhow::Result<String> {
    let db = relance_storage::connect(&settings.database_url, 1).await?;
    let customer: Option<String> = sqlx::query_scalar("SELECT customer_id FROM invoices WHERE number = $1")
        .bind(number)
        .fetch_optional(&db)
        .await
        .context("reading the invoice's customer")?;
    db.close().await;
    customer.ok_or_else(|| anyhow!("invoice {number} is not known: give --customer, or register it first"))
}

/// Publishes an inbound message for the payments listener (with confirms) and, with `wait`,
/// waits until it is applied and prints the journal lines it wrote about `invoice`.
pub(crate) async fn publish_and_wait(
    settings: &Settings,
    routing_key: &str,
    body: &serde_json::Value,
    invoice: &str,
    event_id: &str,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    let names = Names::new(&settings.namespace);
    // With --wait, what the journal holds before, to show only what the message did.
    let before = match wait {
        Some(_) => {
            let db = relance_storage::connect(&settings.database_url, 1).await?;
            Some((last_journal_id(&db, invoice).await?, db))
        }
        None => None,
    };
    let connection = relance_messaging::connect(&settings.amqp_url, "cli").await?;
    let channel = connection.create_channel().await.context("opening a channel")?;
    // The exchange and queues may not exist yet if no service ever ran.
    declare_topology(&channel, &names, &TopologyOptions::from_settings(settings)).await?;
    let _ = channel.close(200, "declared".into()).await;
    let publisher = Publisher::open(&connection).await?;
    publish_inbound(&publisher, &names, routing_key, body).await?;
    publisher.close().await;
    println!(
        "published {routing_key} for {invoice} on {} (event_id {event_id})",
        names.inbound_exchange()
    );
    let _ = connection.close(200, "done".into()).await;
    let (Some(wait), Some((last_id, db))) = (wait, before) else {
        return Ok(());
    };
    let inbox = format!("payments.{routing_key}");
    let applied = wait_for("the payments listener to apply it", wait, || {
        applied(&db, &inbox, event_id)
    })
    .await;
    if applied.is_err() {
        return Err(anyhow!(
            "not applied after {wait:?}: the payments service may be stopped, or the message was refused \
             (see the reason on {})",
            names.dead_letter_queue()
        ));
    }
    for (at, action, detail) in journal_since(&db, invoice, last_id).await? {
        println!("{}  {action:<20} {detail}", at.format("%Y-%m-%d %H:%M"));
    }
    Ok(())
}

async fn applied(db: &PgPool, inbox: &str, event_id: &str) -> anyhow::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM processed_messages WHERE consumer = $1 AND message_id = $2)",
    )
    .bind(inbox)
    .bind(event_id)
    .fetch_one(db)
    .await
    .context("looking up the message in the inbox")
}

async fn last_journal_id(db: &PgPool, invoice: &str) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM journal WHERE invoice_number = $1")
        .bind(invoice)
        .fetch_one(db)
        .await
        .context("reading the journal")
}

/// The invoice's journal after entry `after`.
async fn journal_since(
    db: &PgPool,
    invoice: &str,
    after: i64,
) -> anyhow::Result<Vec<(DateTime<Utc>, String, serde_json::Value)>> {
    sqlx::query_as("SELECT at, action, detail FROM journal WHERE invoice_number = $1 AND id > $2 ORDER BY id")
        .bind(invoice)
        .bind(after)
        .fetch_all(db)
        .await
        .context("reading the journal")
}

/// `relance invoices`: one line per invoice, with its collections status.
pub async fn list_invoices(
    settings: Settings,
    page: &relance_storage::overview::Page<'_>,
    format: Format,
) -> anyhow::Result<()> {
    let db = relance_storage::connect(settings.reads_database_url(), 2).await?;
    let now = match (settings.shared_clock, settings.simulated_clock_start) {
        (true, Some(start)) => {
            // The services' shared time, on the primary (a replica's may lag, and reading it
            // creates the row when there is none).
            let clock_db = match settings.read_database_url {
                Some(_) => relance_storage::connect(&settings.database_url, 1).await?,
                None => db.clone(),
            };
            let clock =
                relance_storage::clock::follow_shared_time(clock_db, start, Duration::from_secs(3600))
                    .await?;
            clock.now()
        }
        (_, Some(start)) => start,
        _ => SystemClock.now(),
    };
    let listed = relance_storage::overview::list_page(&db, now, page).await?;
    let invoices = listed.invoices;
    if format != Format::Table {
        let rows: Vec<InvoiceRow> = invoices.iter().map(InvoiceRow::of).collect();
        output::write_rows(format, &rows)?;
        if let Some(last) = &listed.more_after {
            // On stderr, so the output stays one JSON document or one CSV table.
            eprintln!("more follow: add --after {last}");
        }
        db.close().await;
        return Ok(());
    }
    println!(
        "{:<14} {:<24} {:<13} {:>14} {:<10}  {:<14} {:<17} pause",
        "invoice", "customer", "status", "balance", "due on", "next step", "next at (UTC)"
    );
    for i in &invoices {
        let customer: String = i.customer_name.chars().take(24).collect();
        let pause = match (i.pauses.is_empty(), i.paused_until) {
            (true, _) => String::new(),
            (false, Some(until)) => {
                format!("{} until {}", i.pauses.join("+"), until.format("%Y-%m-%d %H:%M"))
            }
            (false, None) => i.pauses.join("+"),
        };
        println!(
            "{:<14} {:<24} {:<13} {:>14} {:<10}  {:<14} {:<17} {pause}",
            i.number,
            customer,
            i.status.as_str(),
            format!("{} {}", i.balance.round_dp(2), i.currency),
            i.due_on,
            i.next_step.as_deref().unwrap_or("-"),
            i.next_at
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "-".into()),
        );
    }
    println!("{} invoice(s)", invoices.len());
    if let Some(last) = &listed.more_after {
        let status = page
            .only
            .map(|s| format!(" --status {}", s.as_str()))
            .unwrap_or_default();
        println!(
            "more follow: relance invoices{status} --limit {} --after {last}",
            page.limit
        );
    }
    db.close().await;
    Ok(())
}

/// One invoice as `relance invoices --format json|csv` writes it.
#[derive(serde::Serialize)]
struct InvoiceRow<'a> {
    number: &'a str,
    customer: &'a str,
    status: &'static str,
    /// Decimal string, rounded to the cent.
    balance: String,
    currency: &'a str,
    due_on: chrono::NaiveDate,
    next_step: Option<&'a str>,
    next_at: Option<String>,
    /// The pauses holding it, joined by `+` (`promise+dispute`).
    pauses: String,
    paused_until: Option<String>,
}

impl<'a> InvoiceRow<'a> {
    fn of(i: &'a relance_storage::overview::InvoiceOverview) -> Self {
        Self {
            number: &i.number,
            customer: &i.customer_name,
            status: i.status.as_str(),
            balance: i.balance.round_dp(2).to_string(),
            currency: &i.currency,
            due_on: i.due_on,
            next_step: i.next_step.as_deref(),
            next_at: i.next_at.map(|t| t.to_rfc3339()),
            pauses: i.pauses.join("+"),
            paused_until: i.paused_until.map(|t| t.to_rfc3339()),
        }
    }
}
