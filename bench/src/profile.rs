//! Where the database spent its time in a delivery run (or the intake), statement by
//! statement, per reminder sent (or invoice taken in):
//! PostgreSQL's own `pg_stat_statements`, cleared when the run starts and read when it ends.
//! It needs the server to load the module (`shared_preload_libraries = 'pg_stat_statements'`);
//! without it a run simply has no profile (and says why). The statistics are the server's
//! (every database's); the rows read are the bench database's, so another database's work
//! does not show. The bench's own queries start with [`OWN`]: their time is kept apart.

use anyhow::Context;
use serde::Serialize;
use sqlx::PgPool;

/// How the bench's own queries (its polls, its counts) start, to tell them from relance's.
pub const OWN: &str = "/* relance-bench */";

/// Statements kept in a run's profile, the costliest first.
const KEPT: i64 = 40;

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// What the figures are per: "reminder" (a delivery run) or "invoice" (the intake).
    pub per: String,
    /// `pg_stat_statements.track`: with `all`, the statements run inside functions (the
    /// journal's links, the outbox's sequence) are listed too, their time also counted in
    /// their caller's; `top` lists what clients sent.
    pub track: String,
    /// Statement time per reminder (or invoice), top-level statements only (it includes waiting for a
    /// core: on a saturated machine it exceeds the database's CPU time).
    pub top_level_ms_each: f64,
    /// Top-level statements per reminder (or invoice): those clients sent, each a round trip
    /// to the server, and the trigger functions run at commit (`journal_link_pending`,
    /// `outbox_sequence_pending`), which `pg_stat_statements` counts as top-level too.
    pub top_level_calls_each: f64,
    /// The bench's own queries' time (its polls), left out of the above and of `statements`.
    pub bench_ms_each: f64,
    pub statements: Vec<StatementCost>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatementCost {
    /// The normalised statement, whitespace collapsed, cut at 160 characters.
    pub statement: String,
    /// Sent by a client (false: run inside a function).
    pub top_level: bool,
    pub calls_each: f64,
    pub ms_each: f64,
    /// Shared buffers read from outside PostgreSQL's cache (the OS cache or the disk).
    pub blocks_read_each: f64,
    pub blocks_dirtied_each: f64,
}

/// Clears the server's statement statistics for a run about to start, creating the extension
/// in the bench's database; `Err` (the reason) when the server does not load the module.
pub async fn start(db: &PgPool) -> anyhow::Result<()> {
    let loaded: bool =
        sqlx::query_scalar("SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'")
            .fetch_one(db)
            .await
            .context("reading shared_preload_libraries")?;
    anyhow::ensure!(
        loaded,
        "the server does not load pg_stat_statements (shared_preload_libraries)"
    );
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(db)
        .await
        .context("creating the pg_stat_statements extension")?;
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(db)
        .await
        .context("clearing pg_stat_statements")?;
    Ok(())
}

/// The run's profile: its database's statements since [`start`], per each of `count` `what`
/// (reminders sent, invoices taken in). `None` (and why, printed) when it cannot be read:
/// the run's other figures stand without it.
pub async fn read(db: &PgPool, count: i64, what: &str) -> Option<Profile> {
    match read_statements(db, count, what).await {
        Ok(profile) => Some(profile),
        Err(e) => {
            println!("  no statement profile: {e:#}");
            None
        }
    }
}

async fn read_statements(db: &PgPool, count: i64, what: &str) -> anyhow::Result<Profile> {
    let per = |x: f64| x / count.max(1) as f64;
    let track: String = sqlx::query_scalar("SELECT current_setting('pg_stat_statements.track')")
        .fetch_one(db)
        .await
        .context("reading pg_stat_statements.track")?;
    let own = format!("{OWN}%");
    let (top_level_ms, top_level_calls, bench_ms): (f64, f64, f64) = sqlx::query_as(
        "SELECT COALESCE(sum(total_exec_time) FILTER (WHERE query NOT LIKE $1), 0)::float8,
                COALESCE(sum(calls) FILTER (WHERE query NOT LIKE $1), 0)::float8,
                COALESCE(sum(total_exec_time) FILTER (WHERE query LIKE $1), 0)::float8
         FROM pg_stat_statements
         WHERE toplevel AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(&own)
    .fetch_one(db)
    .await
    .context("reading pg_stat_statements")?;
    let rows: Vec<(String, bool, i64, f64, i64, i64)> = sqlx::query_as(
        "SELECT query, toplevel, calls, total_exec_time, shared_blks_read, shared_blks_dirtied
         FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query NOT LIKE $2
         ORDER BY total_exec_time DESC LIMIT $1",
    )
    .bind(KEPT)
    .bind(&own)
    .fetch_all(db)
    .await
    .context("reading pg_stat_statements")?;
    Ok(Profile {
        per: what.to_string(),
        track,
        top_level_ms_each: per(top_level_ms),
        top_level_calls_each: per(top_level_calls),
        bench_ms_each: per(bench_ms),
        statements: rows
            .into_iter()
            .map(|(query, top_level, calls, ms, read, dirtied)| StatementCost {
                statement: one_line(&query, 160),
                top_level,
                calls_each: per(calls as f64),
                ms_each: per(ms),
                blocks_read_each: per(read as f64),
                blocks_dirtied_each: per(dirtied as f64),
            })
            .collect(),
    })
}

/// `text` on one line, runs of whitespace made one space, cut at `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

impl Profile {
    /// The first `n` statements, one line each, for the run's printout.
    pub fn lines(&self, n: usize) -> Vec<String> {
        self.statements
            .iter()
            .take(n)
            .map(|s| {
                format!(
                    "{:>6.3} ms {:>5.2} calls{} {}",
                    s.ms_each,
                    s.calls_each,
                    if s.top_level { "  " } else { " *" },
                    s.statement
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_shown_on_one_line_and_cut() {
        assert_eq!(one_line("SELECT a,\n       b\tFROM t", 160), "SELECT a, b FROM t");
        assert_eq!(one_line("SELECT é FROM t", 8), "SELECT é…");
    }
}
