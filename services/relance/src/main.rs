//! `relance`: see `relance --help`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use relance_config::{Config, Settings, SettingsArgs};

#[derive(Parser)]
#[command(
    name = "relance",
    version,
    about = "Gets B2B invoices paid on time by running dunning automatically"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Every setting: a flag, its environment variable and its default (`relance --help`).
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run one service (scheduler, renderer, sender, sender-sms, sender-letter, payments,
    /// console, portal, replies), several, or `all` (with the console when RELANCE_CONSOLE_ADDR
    /// is set, the customer page when RELANCE_PORTAL_ADDR is set, the replies reader when
    /// RELANCE_IMAP_URL is set).
    #[command(
        after_help = "Settings come from environment variables, or flags given before `run`: `relance --help` lists them with their defaults."
    )]
    Run {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Create the database if needed and apply migrations.
    Migrate,
    /// Give the namespace's queues the type RELANCE_QUEUE_TYPE asks for (classic to quorum),
    /// moving their messages. Stop every relance service first (docs/scaling.md).
    MigrateQueues,
    /// Pause, resume or end an invoice's sequence: publishes the same inbound message as
    /// another system would (promise, dispute, resolve, credit, write-off, lifecycle, plan).
    Invoice {
        #[command(subcommand)]
        command: relance::invoice_commands::InvoiceCommand,
        /// Wait up to this many seconds for the payments service to apply it, and show what it did.
        #[arg(long, global = true)]
        wait: Option<u64>,
    },
    /// List invoices with their collections status, balance and next step.
    Invoices {
        /// Only this status: to_warn, not_due, to_remind, to_formalise, paused, settled, closed, handed_off.
        #[arg(long)]
        status: Option<relance_domain::collections::CollectionStatus>,
        /// At most this many lines; the last line says how to see the next ones.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
        /// Start after this invoice (as the previous page's last line says).
        #[arg(long)]
        after: Option<String>,
        #[arg(long, value_enum, default_value_t = relance::output::Format::Table)]
        format: relance::output::Format,
    },
    /// List the open call tasks and the customers' replies to handle (with --all, every task
    /// and its outcome), or record the outcome of a call (`relance tasks outcome F-2026-0042
    /// reached --promised-on 2026-07-15`) or that a reply was handled (`relance tasks handled
    /// REPLY_ID`).
    Tasks {
        #[command(subcommand)]
        command: Option<relance::tasks::TasksCommand>,
        /// Every task, with its outcome, not only the open ones.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = relance::output::Format::Table)]
        format: relance::output::Format,
    },
    /// List the steps waiting for approval, with a preview of what each will say, or approve
    /// or reject one (`relance approvals approve STEP_ID --by NAME`).
    Approvals {
        #[command(subcommand)]
        command: Option<relance::approvals::ApprovalsCommand>,
        #[arg(long, value_enum, default_value_t = relance::output::Format::Table)]
        format: relance::output::Format,
    },
    /// Dead-lettered messages: list them, show one, replay them to where they were
    /// published, or discard them (their record stays).
    DeadLetters {
        #[command(subcommand)]
        command: relance::dead_letters::DeadLettersCommand,
    },
    /// Load a ledger export (CSV): publishes each valid row as `invoice.issued` or
    /// `payment.received`, reports each bad row with its line number (docs/import.md).
    Import {
        #[command(subcommand)]
        command: relance::import::ImportCommand,
    },
    /// Play a small ledger through every service on a simulated clock and print the timeline.
    Demo {
        /// How many simulated days to run.
        #[arg(long, default_value_t = 40)]
        days: u32,
    },
    /// Write a customer's statement of account as PDF: its open invoices, payments and
    /// credit notes, balance, late interest to date and recovery indemnities.
    Statement {
        /// The customer's id (as in `invoice.issued`).
        customer: String,
        /// The PDF file to write.
        #[arg(long)]
        out: std::path::PathBuf,
        /// The statement's date (YYYY-MM-DD); by default today in the customer's time zone.
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// List payments and credit notes from this date on (YYYY-MM-DD); by default all of
        /// those on the open invoices.
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
    },
    /// The customer page's links: print an invoice's link, or revoke every link of an
    /// invoice given out so far (docs/portal.md).
    Portal {
        #[command(subcommand)]
        command: relance::portal::PortalCommand,
    },
    /// The creditors of the deployment (several companies dunned by one relance): list them,
    /// show one, or create or change one (publishes `creditor.updated`).
    Creditor {
        #[command(subcommand)]
        command: relance::creditors::CreditorCommand,
    },
    /// Verify the tamper-evident journal, or export one invoice's proof file.
    Journal {
        #[command(subcommand)]
        command: relance::journal::JournalCommand,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::from_vars(cli.settings.into_vars())?;
    let service_name = match &cli.command {
        Command::Run { services } => format!("relance-{}", services.join("-")),
        Command::Migrate | Command::MigrateQueues => "relance-migrate".to_string(),
        Command::Demo { .. } => "relance-demo".to_string(),
        Command::Invoice { .. }
        | Command::Invoices { .. }
        | Command::Tasks { .. }
        | Command::Approvals { .. }
        | Command::DeadLetters { .. }
        | Command::Import { .. }
        | Command::Statement { .. }
        | Command::Portal { .. }
        | Command::Creditor { .. } => "relance-cli".to_string(),
        Command::Journal { .. } => "relance-journal".to_string(),
    };
    let _telemetry = relance_telemetry::init_with_log_format(
        &service_name,
        settings.otlp_endpoint.as_deref(),
        settings.log_json,
    )?;
    if matches!(cli.command, Command::Run { .. }) && settings.metrics_exporter.otlp() {
        // Before the health server's own (Prometheus-only) install, which then keeps this one.
        relance_telemetry::metrics::install_with(
            relance_telemetry::metrics::Exporters {
                prometheus: settings.metrics_exporter.prometheus(),
                otlp: true,
            },
            &service_name,
        );
    }
    match cli.command {
        Command::Run { services } => {
            settings.check_creditor_for_service()?;
            relance_messaging::check_broker_nodes(&settings.amqp_url)?;
            let names: Vec<&str> = if services.iter().any(|s| s == "all") {
                let mut all = relance::SERVICES.to_vec();
                if settings.console_addr_set {
                    all.push(relance_console::SERVICE);
                }
                if settings.portal_addr_set {
                    all.push(relance_portal::SERVICE);
                }
                if settings.imap_url.is_some() {
                    all.push(relance_replies::SERVICE);
                }
                all
            } else {
                services.iter().map(String::as_str).collect()
            };
            let shutdown = relance::shutdown_on_signals();
            let config = match (settings.shared_clock, settings.simulated_clock_start) {
                (true, Some(start)) => {
                    let Some(db) = relance_storage::connect_at_start(
                        "clock",
                        &settings.database_url,
                        1,
                        settings.db_acquire_timeout,
                        &shutdown,
                    )
                    .await?
                    else {
                        return Ok(());
                    };
                    let clock = relance_storage::clock::follow_shared_time(
                        db,
                        start,
                        std::time::Duration::from_millis(20),
                    )
                    .await?;
                    Config::with_clock(settings, std::sync::Arc::new(clock))?
                }
                _ => Config::from_settings(settings)?,
            };
            tracing::info!(services = ?names, settings = ?config.settings, "starting");
            relance::run_services(&names, config, shutdown).await
        }
        Command::Migrate => relance_storage::migrate(&settings.database_url)
            .await
            .context("relance migrate"),
        Command::MigrateQueues => relance::migrate_queues(&settings).await,
        Command::Demo { days } => relance::demo::run(settings, days).await,
        Command::Invoice { command, wait } => {
            let wait = wait.map(std::time::Duration::from_secs);
            relance::invoice_commands::run_invoice_command(settings, command, wait).await
        }
        Command::Invoices {
            status,
            limit,
            after,
            format,
        } => {
            let page = relance_storage::overview::Page {
                only: status,
                after: after.as_deref(),
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            };
            relance::invoice_commands::list_invoices(settings, &page, format).await
        }
        Command::Journal { command } => {
            if !relance::journal::run(settings.reads_database_url(), command).await? {
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Tasks {
            command: None,
            all,
            format,
        } => relance::tasks::list_tasks(settings, all, format).await,
        Command::DeadLetters { command } => relance::dead_letters::run(settings, command).await,
        Command::Import { command } => relance::import::run(settings, command).await,
        Command::Portal { command } => relance::portal::run(settings, command).await,
        Command::Creditor { command } => relance::creditors::run(settings, command).await,
        Command::Statement {
            customer,
            out,
            as_of,
            since,
        } => relance::statement::write_statement(settings, &customer, &out, as_of, since).await,
        Command::Tasks {
            command: Some(command),
            ..
        } => relance::tasks::run_tasks_command(settings, command).await,
        Command::Approvals {
            command: None,
            format,
        } => relance::approvals::list_approvals(settings, format).await,
        Command::Approvals {
            command: Some(command),
            ..
        } => relance::approvals::run_approvals_command(settings, command).await,
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_settings_flags_clash_with_no_command_flag() {
        Cli::command().debug_assert();
    }
}
