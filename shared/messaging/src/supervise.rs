//! Keeps a service connected: connect, declare the topology, run the service's session
//! (its consumers and loops); when the broker goes away, reconnect with exponential backoff
//! until shutdown. Readiness is `false` while disconnected.

use crate::topology::{declare_topology, TopologyOptions};
use anyhow::Context;
use lapin::Connection;
use relance_contracts::names::Names;
use relance_telemetry::liveness::Heartbeats;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Whether the service currently has a working broker session, and the heartbeats of its
/// loops (scheduler pass, outbox relay, consumers), for the health server.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    broker: Arc<AtomicBool>,
    loops: Heartbeats,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.broker.load(Ordering::Relaxed)
    }
    fn set(&self, ready: bool) {
        self.broker.store(ready, Ordering::Relaxed)
    }
    /// The service's loops and when each last completed.
    pub fn loops(&self) -> &Heartbeats {
        &self.loops
    }
}

pub async fn supervise<S, F>(
    service: &str,
    amqp_url: &str,
    names: &Names,
    topology: &TopologyOptions,
    readiness: Readiness,
    shutdown: CancellationToken,
    session: S,
) -> anyhow::Result<()>
where
    S: Fn(Arc<Connection>, CancellationToken) -> F,
    F: Future<Output = anyhow::Result<()>>,
{
    let mut failures: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let connected = async {
            let connection = Arc::new(crate::connect(amqp_url, service).await?);
            let channel = connection.create_channel().await.context("opening a channel")?;
            declare_topology(&channel, names, topology).await?;
            let _ = channel.close(200, "topology declared".into()).await;
            anyhow::Ok(connection)
        }
        .await;
        let outcome = match connected {
            Ok(connection) => {
                failures = 0;
                readiness.set(true);
                tracing::info!(service, "connected to the broker");
                let outcome = session(connection.clone(), shutdown.clone()).await;
                readiness.set(false);
                let _ = connection.close(200, "closing".into()).await;
                outcome
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) if shutdown.is_cancelled() => return Ok(()),
            Ok(()) => tracing::warn!(service, "session ended; reconnecting"),
            Err(e) => tracing::error!(service, error = format!("{e:#}"), "session failed; reconnecting"),
        }
        failures = failures.saturating_add(1);
        let delay = Duration::from_millis(250u64.saturating_mul(2u64.saturating_pow(failures.min(7))))
            .min(Duration::from_secs(30));
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
