//! The collections console (`relance run console`): server-rendered pages and a JSON API
//! over the same read-only queries (`relance_storage::console`): the tracking table, a
//! customer's and an invoice's timeline, aging and DSO, step effectiveness, call tasks,
//! dead letters. It reads PostgreSQL as the `relance_console` role (SELECT only); its actions
//! (a call outcome; on an invoice, a promise, a dispute, its resolution, a credit note, a
//! write-off, a pause or resume by hand) are published as the inbound messages `relance tasks
//! outcome` and `relance invoice ...` publish, and applied by the payments listener. The
//! dead-letters page drains, replays and discards with the same functions as `relance
//! dead-letters`, through a second small pool kept for that alone (`Console::dead_letter_db`).
//! Its pages read `RELANCE_READ_DATABASE_URL` when it is set (a streaming replica: what they
//! show may lag the primary a moment), `DATABASE_URL` otherwise.
//! It owns no business rule.

pub mod access;
mod actions;
mod approvals;
mod dead_letters;
mod figures;
mod pages;
mod statement;
mod totals;
mod views;

use access::Csrf;
use anyhow::Context;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use relance_config::Config;
use relance_contracts::names::Names;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "console";

/// The read-only role the console takes on each connection.
pub const READ_ROLE: &str = "relance_console";

/// Connections of the dead-letters pool: an operator's rare actions, one at a time.
const DEAD_LETTER_POOL: u32 = 2;

/// Connections of the pool on the primary beside a read database: actions' checks and waits.
const PRIMARY_POOL: u32 = 2;

/// What every handler shares.
pub(crate) struct Console {
    /// What the pages read: `RELANCE_READ_DATABASE_URL` (a replica) when set.
    pub db: PgPool,
    /// The same read-only role on `DATABASE_URL`, for what must see the primary's latest
    /// state: what an action checks before publishing and waits for after. The same pool as
    /// `db` without a read database.
    pub primary: PgPool,
    /// The service's own database user (no `SET ROLE`), on `DATABASE_URL`, used ONLY by the
    /// dead-letters pages and actions (`crate::dead_letters`): draining the dead-letter queue
    /// into `dead_letters`, a replay's or a discard's status change and journal entry, and
    /// the pages listing them (which must show what was just drained). Dead letters are the
    /// record of the broker's own messages, not the ledger: the ledger still changes only
    /// through the queue contract, and every other page reads through the read-only `db`.
    pub dead_letter_db: PgPool,
    pub config: Config,
    pub names: Names,
    pub templates: minijinja::Environment<'static>,
    pub csrf: Csrf,
    /// The whole ledger's totals, refreshed by [`totals::refresh`].
    pub totals: totals::Latest,
    /// The whole-ledger figures kept per parameters, refreshed with the totals.
    pub figures: figures::Figures,
}

pub(crate) type Shared = Arc<Console>;

pub use totals::SNAPSHOT_TURN_LOCK;

/// How often an action's wait looks for its effect.
const APPLY_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Waits up to `wait` for the payments listener to apply the `routing_key` message `event_id`
/// published by an action (its inbox has it), reading the primary (`Console::primary`): a
/// replica's lag must not turn an applied action into one reported as only published.
pub(crate) async fn wait_applied(
    console: &Console,
    routing_key: &str,
    event_id: &str,
    wait: std::time::Duration,
) -> anyhow::Result<bool> {
    let inbox = format!("payments.{routing_key}");
    let deadline = std::time::Instant::now() + wait;
    loop {
        if relance_storage::console::timeline::applied(&console.primary, &inbox, event_id).await? {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(APPLY_POLL).await;
    }
}

/// An error as a page or API answer: a status and a message for the user.
#[derive(Debug)]
pub(crate) struct Failure(pub StatusCode, pub String);

impl Failure {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, message.into())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = format!("{e:#}"), "console request failed");
        Self(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (see the console's log)".into(),
        )
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

/// Connects as the read-only role: every session takes it and is read-only besides.
pub async fn connect_read_only(database_url: &str, pool_size: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(pool_size.max(1))
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query(&format!("SET ROLE {READ_ROLE}"))
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("SET default_transaction_read_only = on")
                    .execute(&mut *conn)
                    .await
                    .map(|_| ())
            })
        })
        .connect_with(relance_storage::connect_options(database_url)?)
        .await
        .with_context(|| {
            format!(
                "connecting the console to the database as the read-only role {READ_ROLE} \
                 (created by `relance migrate`; the database user must be allowed to SET ROLE {READ_ROLE})"
            )
        })
}

/// Binds `RELANCE_CONSOLE_ADDR` (refusing a non-loopback address without a token) and serves
/// until shutdown.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let addr = config.settings.console_addr;
    access::check_bind(addr, config.settings.console_token.as_deref())?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the console to RELANCE_CONSOLE_ADDR={addr}"))?;
    let (bound, server) = serve(listener, config, shutdown).await?;
    tracing::info!(%bound, "the console listens");
    server.await
}

/// Serves the console on `listener` (tests pass one on a free port); returns the address
/// and the server's future.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, impl std::future::Future<Output = anyhow::Result<()>>)> {
    let bound = listener.local_addr().context("reading the console's address")?;
    access::check_bind(bound, config.settings.console_token.as_deref())?;
    // Pages read what may lag a moment (a replica, when one is set); the dead letters' own
    // records are written, on the primary.
    let db = connect_read_only(config.settings.reads_database_url(), config.settings.db_pool_size).await?;
    let primary = match config.settings.read_database_url {
        Some(_) => connect_read_only(&config.settings.database_url, PRIMARY_POOL).await?,
        None => db.clone(),
    };
    let dead_letter_db = relance_storage::connect(&config.settings.database_url, DEAD_LETTER_POOL)
        .await
        .context("connecting the console's dead-letters pool (the service's own database user)")?;
    let token: Option<Arc<str>> = config
        .settings
        .console_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(Arc::from);
    let console = Arc::new(Console {
        db,
        primary,
        dead_letter_db,
        names: Names::new(&config.settings.namespace),
        config,
        templates: views::templates()?,
        csrf: Csrf::new(),
        totals: totals::Latest::default(),
        figures: figures::Figures::default(),
    });
    // The refresher stops with the server, whichever stops first.
    let stop = shutdown.child_token();
    let refresher = tokio::spawn(totals::refresh(console.clone(), stop.clone()));
    let app =
        pages::router(console).layer(axum::middleware::from_fn_with_state(token, access::require_token));
    let server = async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("the console server stopped");
        stop.cancel();
        if let Err(e) = refresher.await {
            tracing::error!(error = %e, "the totals refresher ended abnormally");
        }
        served
    };
    Ok((bound, server))
}
