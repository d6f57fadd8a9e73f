//! The `relance` command: runs one service or all four in one process, applies migrations,
//! and plays the demo. The services themselves live in their own crates.

pub mod demo;
pub mod drive;

use anyhow::Context;
use relance_config::Config;
use tokio_util::sync::CancellationToken;

/// The services `relance run` knows.
pub const SERVICES: [&str; 4] = [
    relance_scheduler::SERVICE,
    relance_renderer::SERVICE,
    relance_sender::SERVICE,
    relance_payments::SERVICE,
];

/// Runs one service until shutdown.
pub async fn run_service(name: &str, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    match name {
        relance_scheduler::SERVICE => relance_scheduler::run(config, shutdown).await,
        relance_renderer::SERVICE => relance_renderer::run(config, shutdown).await,
        relance_sender::SERVICE => relance_sender::run(config, shutdown).await,
        relance_payments::SERVICE => relance_payments::run(config, shutdown).await,
        other => anyhow::bail!(
            "unknown service {other:?} (expected one of {} or all)",
            SERVICES.join(", ")
        ),
    }
}

/// Runs several services in this process, sharing one config (and so one clock). The
/// first to fail stops the others.
pub async fn run_services(names: &[&str], config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for name in names {
        let (name, config, shutdown) = (name.to_string(), config.clone(), shutdown.clone());
        tasks.spawn(async move {
            run_service(&name, config, shutdown)
                .await
                .with_context(|| format!("service {name}"))
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
