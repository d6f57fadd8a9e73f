//! The `relance` command: runs one service or all of them in one process, applies migrations,
//! and plays the demo. The services themselves live in their own crates.

pub mod approvals;
pub mod creditors;
pub mod dead_letters;
pub mod demo;
pub mod drive;
pub mod health;
pub mod import;
pub mod invoice_commands;
pub mod journal;
pub mod output;
pub mod portal;
pub mod statement;
pub mod tasks;

use anyhow::Context;
use relance_config::Config;
use relance_messaging::Readiness;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The services `relance run` knows (and the console, `relance run console`, which `run all`
/// adds when `RELANCE_CONSOLE_ADDR` is set, and the customer page, `relance run portal`, when
/// `RELANCE_PORTAL_ADDR` is set, and the replies reader, `relance run replies`, when
/// `RELANCE_IMAP_URL` is set).
pub const SERVICES: [&str; 6] = [
    relance_scheduler::SERVICE,
    relance_renderer::SERVICE,
    relance_sender::SERVICE,
    relance_sender::SMS_SERVICE,
    relance_sender::LETTER_SERVICE,
    relance_payments::SERVICE,
];

/// Runs one service until shutdown; `readiness` follows its broker session.
pub async fn run_service(
    name: &str,
    config: Config,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match name {
        relance_scheduler::SERVICE => {
            relance_scheduler::run_with_readiness(config, readiness, shutdown).await
        }
        relance_renderer::SERVICE => relance_renderer::run_with_readiness(config, readiness, shutdown).await,
        relance_sender::SERVICE => relance_sender::run_with_readiness(config, readiness, shutdown).await,
        relance_payments::SERVICE => relance_payments::run_with_readiness(config, readiness, shutdown).await,
        relance_sender::SMS_SERVICE => {
            relance_sender::run_sms_with_readiness(config, readiness, shutdown).await
        }
        relance_sender::LETTER_SERVICE => {
            relance_sender::run_letter_with_readiness(config, readiness, shutdown).await
        }
        relance_console::SERVICE => relance_console::run(config, shutdown).await,
        relance_portal::SERVICE => relance_portal::run(config, shutdown).await,
        relance_replies::SERVICE => relance_replies::run(config, shutdown).await,
        other => anyhow::bail!(
            "unknown service {other:?} (expected one of {}, {}, {}, {} or all)",
            SERVICES.join(", "),
            relance_console::SERVICE,
            relance_portal::SERVICE,
            relance_replies::SERVICE
        ),
    }
}

/// Runs several services in this process, sharing one config (and so one clock), and serves
/// their health at `RELANCE_HEALTH_ADDR` when set. The first to fail stops the others.
pub async fn run_services(names: &[&str], config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    for name in names {
        if !SERVICES.contains(name)
            && *name != relance_console::SERVICE
            && *name != relance_portal::SERVICE
            && *name != relance_replies::SERVICE
        {
            anyhow::bail!(
                "unknown service {name:?} (expected one of {}, {}, {}, {} or all)",
                SERVICES.join(", "),
                relance_console::SERVICE,
                relance_portal::SERVICE,
                relance_replies::SERVICE
            );
        }
    }
    // The console and the customer page hold no broker session: they are not part of the
    // broker readiness.
    let readiness: Vec<(String, Readiness)> = names
        .iter()
        .filter(|name| {
            **name != relance_console::SERVICE
                && **name != relance_portal::SERVICE
                && **name != relance_replies::SERVICE
        })
        .map(|name| (name.to_string(), Readiness::default()))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    let warnings: health::Warnings = {
        let config = config.clone();
        Arc::new(move || {
            let today = config.clock.now().date_naive();
            health::SettingsCheck {
                warnings: config.settings.channels.interest_warnings(today),
                legal_rates_current: config.settings.channels.legal_rates.covers(today),
            }
        })
    };
    for warning in warnings().warnings {
        tracing::warn!(%warning, "check the settings");
    }
    if let Some(addr) = config.settings.health_addr {
        let (_, server) = health::serve(
            addr,
            &config.settings.database_url,
            readiness.clone(),
            warnings.clone(),
            config.settings.loop_stall,
            shutdown.clone(),
        )
        .await?;
        tasks.spawn(async move { server.await.context("the health endpoint panicked")? });
    }
    if relance_telemetry::metrics::exported_over_otlp() {
        tasks.spawn(health::refresh_gauges_for_otlp(
            readiness.clone(),
            warnings.clone(),
            config.settings.loop_stall,
            OTLP_GAUGES_INTERVAL,
            shutdown.clone(),
        ));
    }
    for (index, (name, ready)) in readiness.into_iter().enumerate() {
        let (mut config, shutdown) = (config.clone(), shutdown.clone());
        // One outbox relay for the process, the first service's: every relay is woken by
        // every commit, and the others' would find the outbox drained (measured: 853 empty
        // claims for 500 reminders with one relay per service of `run all`).
        if index > 0 {
            config.settings.outbox_relay = false;
        }
        tasks.spawn(async move {
            run_service(&name, config, ready, shutdown)
                .await
                .with_context(|| format!("service {name}"))
        });
    }
    if names.contains(&relance_console::SERVICE) {
        let (config, shutdown) = (config.clone(), shutdown.clone());
        tasks.spawn(async move {
            relance_console::run(config, shutdown)
                .await
                .context("the console")
        });
    }
    if names.contains(&relance_portal::SERVICE) {
        let (config, shutdown) = (config.clone(), shutdown.clone());
        tasks.spawn(async move {
            relance_portal::run(config, shutdown)
                .await
                .context("the customer page")
        });
    }
    if names.contains(&relance_replies::SERVICE) {
        let (config, shutdown) = (config.clone(), shutdown.clone());
        tasks.spawn(async move {
            relance_replies::run(config, shutdown)
                .await
                .context("the replies reader")
        });
    }
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.context("a service task panicked").and_then(|r| r);
        if let Err(e) = outcome {
            shutdown.cancel();
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result
}

/// How often the gauges a scrape would set are refreshed when metrics go over OTLP (its
/// exporter pushes every `OTEL_METRIC_EXPORT_INTERVAL`, 60 s by default).
const OTLP_GAUGES_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// As [`run_services`], owning its list (for spawning).
pub async fn run_services_owned(
    names: Vec<&'static str>,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_services(&names, config, shutdown).await
}

/// A token cancelled by SIGTERM or Ctrl-C: services stop taking work and finish in-flight.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        tracing::info!("shutdown requested: finishing in-flight work");
        trigger.cancel();
    });
    token
}

/// `relance migrate-queues`: gives the namespace's queues the type `RELANCE_QUEUE_TYPE` asks
/// for, and prints what became of each.
pub async fn migrate_queues(settings: &relance_config::Settings) -> anyhow::Result<()> {
    let names = relance_contracts::names::Names::new(&settings.namespace);
    let options = relance_messaging::TopologyOptions::from_settings(settings);
    let connection = relance_messaging::connect(&settings.amqp_url, "migrate-queues").await?;
    let report = relance_messaging::migrate_queues(&connection, &names, &options)
        .await
        .context("relance migrate-queues")?;
    let mut replaced = 0;
    for (queue, fate) in &report {
        use relance_messaging::QueueMigration as M;
        let line = match fate {
            M::Created => "created".to_string(),
            M::Unchanged => continue,
            M::Replaced { moved } => {
                replaced += 1;
                format!(
                    "now a {} queue, {moved} messages moved",
                    options.queue_type.as_str()
                )
            }
            M::Drained { moved } => {
                format!("former delay queue: {moved} messages back to its work queue, deleted")
            }
        };
        println!("{queue}: {line}");
    }
    println!(
        "{} queues of namespace {} are {} queues ({replaced} replaced).",
        report
            .iter()
            .filter(|(_, f)| !matches!(f, relance_messaging::QueueMigration::Drained { .. }))
            .count(),
        settings.namespace,
        options.queue_type.as_str()
    );
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}
