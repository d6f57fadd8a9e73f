//! Liveness and readiness over HTTP, for an orchestrator's probes (`RELANCE_HEALTH_ADDR`).
//!
//! - `GET /health/live`: 200 while the process runs.
//! - `GET /health/ready`: 200 when every service of the process holds a broker session, the
//!   database answers and every loop of the services (scheduler pass, outbox relay, each
//!   consumer) completed within `RELANCE_LOOP_STALL_MS`; 503 otherwise, e.g. while RabbitMQ
//!   or PostgreSQL restarts, while the services wait at start for a database that is not yet
//!   up, or while a loop is stuck. The body says which part is missing (`stalled` names the
//!   loop), and lists `warnings`: settings to fix that do not stop the process (a half-year
//!   missing from the legal rate table).
//! - `GET /metrics`: Prometheus exposition of every metric of the process (see
//!   `docs/operations.md` and `relance_telemetry::metrics`).

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use relance_messaging::Readiness;
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long the database may take to answer a readiness probe.
const DATABASE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What an operator should fix though the process runs: shown by `/health/ready` without
/// making it fail, and as metrics.
#[derive(Debug, Clone, Default)]
pub struct SettingsCheck {
    pub warnings: Vec<String>,
    /// Whether the legal rate table has the current half-year (else interest is estimated).
    pub legal_rates_current: bool,
}

/// Checks the settings at the time of the call (the clock moves on).
pub type Warnings = Arc<dyn Fn() -> SettingsCheck + Send + Sync>;

#[derive(Clone)]
struct Probes {
    services: Arc<Vec<(String, Readiness)>>,
    db: PgPool,
    warnings: Warnings,
    loop_stall: Duration,
}

#[derive(Debug, Serialize)]
pub struct ReadinessReport {
    pub ready: bool,
    pub database: bool,
    /// Per service of the process: whether it holds a broker session.
    pub broker: BTreeMap<String, bool>,
    /// Per service, each loop and the seconds since it last completed.
    pub loops: BTreeMap<String, BTreeMap<String, f64>>,
    /// The loops not completed within `RELANCE_LOOP_STALL_MS`, as `service: loop`.
    pub stalled: Vec<String>,
    /// Settings to fix, e.g. a half-year missing from the legal rate table.
    pub warnings: Vec<String>,
}

impl Probes {
    async fn report(&self) -> ReadinessReport {
        let database = tokio::time::timeout(
            DATABASE_PROBE_TIMEOUT,
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&self.db),
        )
        .await
        .map(|answer| answer.is_ok())
        .unwrap_or(false);
        let broker: BTreeMap<String, bool> = self
            .services
            .iter()
            .map(|(name, readiness)| (name.clone(), readiness.is_ready()))
            .collect();
        let (loops, stalled) = self.loops();
        ReadinessReport {
            ready: database && broker.values().all(|ready| *ready) && stalled.is_empty(),
            database,
            broker,
            loops,
            stalled,
            warnings: (self.warnings)().warnings,
        }
    }

    /// Each service's loops with their age, and those stalled; also set as gauges.
    fn loops(&self) -> (BTreeMap<String, BTreeMap<String, f64>>, Vec<String>) {
        loops(&self.services, self.loop_stall)
    }

    /// The Prometheus exposition of the process's metrics, with what the health server
    /// knows (settings warnings, loop heartbeats) set now.
    fn metrics(&self) -> String {
        set_gauges(&self.services, &self.warnings, self.loop_stall);
        relance_telemetry::metrics::render()
    }
}

/// Each service's loops with their age, and those stalled; also set as gauges.
fn loops(
    services: &[(String, Readiness)],
    loop_stall: Duration,
) -> (BTreeMap<String, BTreeMap<String, f64>>, Vec<String>) {
    let mut loops = BTreeMap::new();
    let mut stalled = Vec::new();
    for (service, readiness) in services {
        let mut ages = BTreeMap::new();
        for (name, age) in readiness.loops().ages() {
            let late = age > loop_stall;
            relance_telemetry::metrics::set_loop(service, &name, age, late);
            if late {
                stalled.push(format!("{service}: {name}"));
            }
            ages.insert(name, (age.as_secs_f64() * 10.0).round() / 10.0);
        }
        loops.insert(service.clone(), ages);
    }
    (loops, stalled)
}

/// Sets the gauges only the health server knows (settings warnings, loop heartbeats).
fn set_gauges(services: &[(String, Readiness)], warnings: &Warnings, loop_stall: Duration) {
    let check = warnings();
    relance_telemetry::metrics::set_gauge(
        "relance_legal_rates_current_half_year_missing",
        "1 when the legal rate table lacks the current half-year: late interest is then an estimate at the last known rates (fix: RELANCE_LEGAL_RATES_FILE)",
        if check.legal_rates_current { 0.0 } else { 1.0 },
    );
    relance_telemetry::metrics::set_gauge(
        "relance_settings_warnings",
        "settings an operator should fix (listed by /health/ready)",
        check.warnings.len() as f64,
    );
    loops(services, loop_stall);
}

/// When metrics go over OTLP, nobody scrapes: sets what a scrape would (the gauges above,
/// the process's CPU and memory) every `interval` until `shutdown`, for the OTLP exporter's
/// next push.
pub async fn refresh_gauges_for_otlp(
    services: Vec<(String, Readiness)>,
    warnings: Warnings,
    loop_stall: Duration,
    interval: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        set_gauges(&services, &warnings, loop_stall);
        relance_telemetry::metrics::collect_process();
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Installs the metrics recorder and binds `addr` now (so that a taken port fails the start), then serves the probes until
/// `shutdown`. Returns the bound address (port 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    database_url: &str,
    services: Vec<(String, Readiness)>,
    warnings: Warnings,
    loop_stall: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    relance_telemetry::metrics::install();
    // Its own connection, opened on demand: the probe must not queue behind the workers'.
    let db = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(DATABASE_PROBE_TIMEOUT)
        .connect_lazy(database_url)
        .context("health probe: parsing DATABASE_URL")?;
    let probes = Probes {
        services: Arc::new(services),
        db,
        warnings,
        loop_stall,
    };
    let app = Router::new()
        .route("/health/live", get(|| async { "live\n" }))
        .route("/health/ready", get(ready))
        .route(
            "/metrics",
            get(|State(probes): State<Probes>| async move { probes.metrics() }),
        )
        .with_state(probes);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the health endpoint to {addr}"))?;
    let bound = listener.local_addr().context("health endpoint address")?;
    tracing::info!(%bound, "serving /health/live, /health/ready and /metrics");
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("health endpoint")
    });
    Ok((bound, task))
}

async fn ready(State(probes): State<Probes>) -> (StatusCode, Json<ReadinessReport>) {
    let report = probes.report().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}
