//! Storage: every SQL query of relance, and the one migrator. Services call these functions
//! inside their own transactions; nothing here publishes to the broker or sends mail (the
//! outbox table is how a change asks for a message).

pub mod adjustments;
pub mod approvals;
pub mod calls;
pub mod clock;
pub mod console;
pub mod creditors;
pub mod customers;
pub mod dead_letters;
pub mod deliveries;
pub mod gauges;
pub mod group_commit;
pub mod groups;
pub mod handoff;
pub mod invoices;
pub mod journal;
pub mod locks;
pub mod outbox;
pub mod overview;
pub mod pauses;
pub mod payment_plans;
mod plan_at;
pub mod replies;
pub mod retention;
mod rows;
pub mod statements;
pub mod steps;

use anyhow::Context;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use std::str::FromStr;
use std::time::Duration;

pub use sqlx::{PgConnection, Transaction};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

pub type Tx<'a> = Transaction<'a, Postgres>;

/// How relance connects to `database_url`: as the URL says, with JIT compilation off.
///
/// Every statement relance runs reads a few rows by an index, but on a large ledger the
/// planner's cost estimates cross `jit_above_cost` and PostgreSQL then compiles the plan
/// before running it: measured at 1M invoices, the hand-off sweep's noting of ended
/// sequences ran in 0.3 ms and was compiled for 20-25 ms first, on every scheduler pass
/// (bench/README.md, `relance-bench pass`). An operator who wants JIT for reports runs them
/// on a connection of their own.
pub fn connect_options(database_url: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(database_url).context("DATABASE_URL is not a PostgreSQL URL")?;
    Ok(options.options([("jit", "off")]))
}

/// A read-only transaction whose statements all see one snapshot (repeatable read): for
/// reads that must agree with each other while the services write on (the gauges' figures,
/// a journal chain and its head). `conn` must not be in a transaction already.
pub async fn read_snapshot(conn: &mut PgConnection) -> anyhow::Result<sqlx::Transaction<'_, sqlx::Postgres>> {
    let mut tx = sqlx::Connection::begin(conn)
        .await
        .context("starting a read-only snapshot")?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .context("making the reads one snapshot")?;
    Ok(tx)
}

/// A pool for a tool or a test. Fails with the database named (never with its password).
pub async fn connect(database_url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    connect_with_timeout(database_url, max_connections, Duration::from_secs(10)).await
}

/// A pool whose callers give up on a connection after `acquire_timeout`: how long a
/// service's handler waits for the database before its message waits the outage out.
pub async fn connect_with_timeout(
    database_url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> anyhow::Result<PgPool> {
    let options = connect_options(database_url)?;
    let database = options.get_database().unwrap_or("postgres").to_string();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to PostgreSQL database {database:?}"))
}

/// Longest wait between two attempts to reach the database at start.
const START_RETRY_CAP: Duration = Duration::from_secs(30);

/// The wait before the `attempt`-th retry at start: 250 ms doubling, capped at 30 s (as the
/// broker's reconnection does).
fn start_retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(2u64.saturating_pow(attempt.min(7)))).min(START_RETRY_CAP)
}

/// A service's pool, opened at start. A database that cannot be reached right now (not yet
/// up, restarting, out of connections: see [`is_unavailable`]) is waited out: each failed
/// attempt is logged and retried with exponential backoff until it answers or `shutdown`
/// fires (then `None`). Anything else (a bad URL, a refused password, a missing database) is
/// a mistake to fix, and fails the start at once.
pub async fn connect_at_start(
    service: &str,
    database_url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<PgPool>> {
    let mut attempt: u32 = 0;
    loop {
        let error = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            connected = connect_with_timeout(database_url, max_connections, acquire_timeout) => match connected {
                Ok(pool) => {
                    if attempt > 0 {
                        tracing::info!(service, attempts = attempt + 1, "connected to the database");
                    }
                    return Ok(Some(pool));
                }
                Err(e) if is_unavailable(&e) => e,
                Err(e) => return Err(e),
            },
        };
        let delay = start_retry_delay(attempt);
        attempt = attempt.saturating_add(1);
        tracing::warn!(
            service,
            attempt,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = format!("{error:#}"),
            "database unavailable at start; retrying"
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Creates the database if it does not exist, then applies pending migrations. Run by
/// `relance migrate`, separately from the workers (which need no DDL rights).
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    if !Postgres::database_exists(database_url)
        .await
        .context("checking the database exists")?
    {
        Postgres::create_database(database_url)
            .await
            .context("creating the database")?;
    }
    let pool = connect(database_url, 2).await?;
    MIGRATOR.run(&pool).await.context("applying migrations")?;
    journal::link_legacy_entries(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Drops the database (the demo starts from a clean ledger; tests clean up after themselves).
pub async fn drop_database(database_url: &str) -> anyhow::Result<()> {
    if Postgres::database_exists(database_url)
        .await
        .context("checking the database exists")?
    {
        Postgres::force_drop_database(database_url)
            .await
            .context("dropping the database")?;
    }
    Ok(())
}

/// Marks an inbound message as applied by `consumer`, in the caller's transaction. Returns
/// false when it was already applied: the caller then does nothing and acks.
pub async fn mark_processed(
    tx: &mut PgConnection,
    consumer: &str,
    message_id: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO processed_messages (consumer, message_id, processed_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(message_id)
    .bind(at)
    .execute(tx)
    .await
    .context("recording the processed message")?;
    Ok(inserted.rows_affected() == 1)
}

/// Whether `error` says the database cannot be reached right now (restarting, unreachable,
/// out of connections) rather than anything about the work itself. Consumers wait such an
/// outage out instead of spending a message's retries on it.
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    if is_pool_busy(error) {
        return false;
    }
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed,
            ) => true,
            Some(sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_)) => true,
            // 08: connection exception; 57P: the server is shutting down or starting;
            // 53300: too many connections.
            Some(sqlx::Error::Database(e)) => e
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P") || code == "53300"),
            _ => false,
        })
}

/// A handler could not get a connection within `RELANCE_DB_ACQUIRE_TIMEOUT_MS` although every
/// connection of its pool was open: the database answers, the pool is smaller than the work
/// in flight. Not an outage (see [`is_unavailable`]); the message is tried again soon.
#[derive(Debug, Clone, Copy)]
pub struct PoolBusy {
    pub size: u32,
}

impl std::fmt::Display for PoolBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "all {} database connections of the pool were busy (RELANCE_DB_POOL_SIZE is smaller than the work in flight)",
            self.size
        )
    }
}

/// Whether `error` is a [`PoolBusy`], as marked by [`mark_pool_busy`].
pub fn is_pool_busy(error: &anyhow::Error) -> bool {
    error.downcast_ref::<PoolBusy>().is_some()
}

/// Marks a pool timeout as [`PoolBusy`] when the pool had all its connections open (so the
/// database was reachable and they were all in use). sqlx reports both a busy pool and a
/// database that cannot be reached as `PoolTimedOut`; only the pool tells them apart.
pub fn mark_pool_busy(error: anyhow::Error, pool: &PgPool) -> anyhow::Error {
    let timed_out = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::PoolTimedOut)
        )
    });
    let size = pool.options().get_max_connections();
    if timed_out && !pool.is_closed() && pool.size() >= size {
        error.context(PoolBusy { size })
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_at_start_back_off_up_to_a_cap() {
        assert_eq!(start_retry_delay(0), Duration::from_millis(250));
        assert_eq!(start_retry_delay(1), Duration::from_millis(500));
        assert_eq!(start_retry_delay(6), Duration::from_secs(16));
        assert_eq!(start_retry_delay(7), START_RETRY_CAP);
        assert_eq!(start_retry_delay(u32::MAX), START_RETRY_CAP);
    }

    #[test]
    fn an_unreachable_database_is_told_from_a_bad_query() {
        let outage = anyhow::Error::new(sqlx::Error::PoolTimedOut).context("recording the payment");
        assert!(is_unavailable(&outage));
        let io = anyhow::Error::new(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(is_unavailable(&io));
        let bad_row = anyhow::Error::new(sqlx::Error::RowNotFound).context("finding the invoice");
        assert!(!is_unavailable(&bad_row));
        assert!(!is_unavailable(&anyhow::anyhow!("invoice not yet known")));
    }
}
