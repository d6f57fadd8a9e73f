//! The figures behind the collections gauges of `/metrics`: the outbox backlog, open call
//! tasks, paused invoices, invoices per collections status, the amounts outstanding by
//! age, the DSO and the share of each step's sends paid within 7 days (these two by the
//! console's own queries, [`crate::console::figures`]). Read-only; one process computes them
//! at a time (see [`try_lead`]).

use crate::console::figures as console_figures;
use crate::plan_at::{self, PlanAtColumns};
use crate::rows::{parse, parse_tz};
use anyhow::Context;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use relance_domain::collections::{collection_status_at, CollectionStatus, InvoiceState, PlanAt};
use rust_decimal::Decimal;
use sqlx::{Connection, PgConnection, QueryBuilder};
use std::collections::BTreeMap;

/// The session advisory lock the process computing the gauges holds.
const GAUGES_LOCK: i64 = crate::locks::GAUGES;

/// Aging buckets of an amount outstanding, by whole days past its due date.
pub const AGING_BUCKETS: [&str; 5] = ["not_due", "1_30_days", "31_60_days", "61_90_days", "over_90_days"];

fn aging_bucket(days_past_due: i64) -> &'static str {
    match days_past_due {
        ..=0 => AGING_BUCKETS[0],
        1..=30 => AGING_BUCKETS[1],
        31..=60 => AGING_BUCKETS[2],
        61..=90 => AGING_BUCKETS[3],
        _ => AGING_BUCKETS[4],
    }
}

/// What the gauges show at one time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub outbox_backlog: i64,
    /// When the oldest unpublished outbox row was written.
    pub outbox_oldest: Option<DateTime<Utc>>,
    pub call_tasks_open: i64,
    /// Customers' replies not yet marked handled.
    pub replies_to_handle: i64,
    pub invoices_paused: i64,
    /// Invoices per collections status, every status present.
    pub invoices: BTreeMap<&'static str, u64>,
    /// Balance of invoices still owed (not settled, closed or handed off), per currency and
    /// aging bucket.
    pub outstanding: BTreeMap<(String, &'static str), Decimal>,
    /// DSO by countback per currency owed today, over the console's default months of sales.
    pub dso: BTreeMap<String, Dso>,
    /// Per (step, channel) of the policy, over the console's default window of sends: the
    /// reminders sent and how many of their invoices were settled within 7 days after.
    pub steps_paid_within_7_days: BTreeMap<(String, String), StepSends>,
}

/// One currency's DSO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dso {
    /// Days of sales the receivables amount to, or the days counted (a floor) when the
    /// months looked at do not cover them.
    pub days: Decimal,
    /// Whether `days` is a floor.
    pub at_least: bool,
}

/// One step's sends over the window, all segments together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepSends {
    pub sent: i64,
    pub paid_within_7_days: i64,
}

/// Opens a connection of its own and takes the gauges lock on it: `Some(connection)` while
/// this process leads (the lock lasts as long as the connection), `None` when another holds
/// it.
///
/// The connection runs its queries without parallel workers: the gauges are background
/// figures, and over a large ledger (seconds of aggregates at a million invoices) a leader
/// with two workers took every core of a small database server, so that payments and
/// deliveries waited behind them. On one backend they take at most one core.
pub async fn try_lead(database_url: &str) -> anyhow::Result<Option<PgConnection>> {
    let mut conn = connect_for_figures(database_url).await?;
    let led: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(GAUGES_LOCK)
        .fetch_one(&mut conn)
        .await
        .context("taking the gauges lock")?;
    Ok(led.then_some(conn))
}

/// A connection for the figures, without parallel workers (see [`try_lead`]): the leading
/// connection itself, or one to a replica (`RELANCE_READ_DATABASE_URL`) while the lock stays
/// on the primary's.
pub async fn connect_for_figures(database_url: &str) -> anyhow::Result<PgConnection> {
    let options = crate::connect_options(database_url)?.options([("max_parallel_workers_per_gather", "0")]);
    PgConnection::connect_with(&options)
        .await
        .context("connecting to compute the gauges")
}

/// Whether the leading connection still holds the gauges lock, when the figures are read on
/// another connection: asked before and after each computation there, so that a leader that
/// lost its connection meanwhile (and another took the lock) publishes nothing.
pub async fn still_leads(conn: &mut PgConnection) -> bool {
    // A bigint advisory key shows in pg_locks as its high half (classid) and low half
    // (objid), both unsigned.
    let held = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                        AND granted AND objsubid = 1
                        AND classid::bigint = (($1 >> 32) & 4294967295) AND objid::bigint = ($1 & 4294967295))",
    )
    .bind(GAUGES_LOCK)
    .fetch_one(conn)
    .await;
    match held {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, "checking the gauges lock failed: this copy stops leading");
            false
        }
    }
}

/// The primary's current write position, to tell whether the read database has replayed
/// everything up to it ([`replay_lag_seconds`]).
pub async fn primary_wal_position(conn: &mut PgConnection) -> anyhow::Result<String> {
    // Flushed: what a replica can have received (the insert position may be ahead of it).
    sqlx::query_scalar("SELECT pg_current_wal_flush_lsn()::text")
        .fetch_one(conn)
        .await
        .context("reading the primary's write position")
}

/// The outbox's backlog and its oldest unpublished row: read on the primary even when the
/// other figures come from a replica, since they tell whether the relays publish now.
pub async fn outbox_figures(conn: &mut PgConnection) -> anyhow::Result<(i64, Option<DateTime<Utc>>)> {
    sqlx::query_as("SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL")
        .fetch_one(conn)
        .await
        .context("counting the outbox backlog")
}

/// How far the read database's replay is behind the primary, in seconds: 0 when it has
/// replayed everything up to `primary_position` (the primary's write position read just
/// before, see [`primary_wal_position`]; or it is no replica), else the time since the last
/// transaction it replayed (NaN when it has replayed none since it started). A replica cut
/// off from its primary so shows a lag that grows, not 0.
pub async fn replay_lag_seconds(conn: &mut PgConnection, primary_position: &str) -> anyhow::Result<f64> {
    sqlx::query_scalar(
        "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0
                     WHEN pg_last_wal_replay_lsn() >= $1::pg_lsn THEN 0
                     ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 'NaN')
                END::float8",
    )
    .bind(primary_position)
    .fetch_one(conn)
    .await
    .context("reading the read database's replay lag")
}

/// The figures at `now`, all read on `conn`: the leading connection (so that a lost
/// connection, and with it the lock, shows as an error), or one to the read database. It
/// never runs parallel workers.
pub async fn figures(conn: &mut PgConnection, now: DateTime<Utc>) -> anyhow::Result<Figures> {
    let (outbox_backlog, outbox_oldest) = outbox_figures(&mut *conn).await?;
    Ok(Figures {
        outbox_backlog,
        outbox_oldest,
        ..ledger_figures(conn, now).await?
    })
}

/// The figures at `now` but the outbox's (left at zero): what a read database gives.
pub async fn ledger_figures(conn: &mut PgConnection, now: DateTime<Utc>) -> anyhow::Result<Figures> {
    let (outbox_backlog, outbox_oldest) = (0, None);
    let call_tasks_open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reminder_steps WHERE status = 'awaiting_outcome'")
            .fetch_one(&mut *conn)
            .await
            .context("counting open call tasks")?;
    let replies_to_handle: i64 =
        sqlx::query_scalar("SELECT count(*) FROM mail_replies WHERE handled_at IS NULL")
            .fetch_one(&mut *conn)
            .await
            .context("counting the replies to handle")?;
    let invoices_paused: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT invoice_id) FROM invoice_pauses WHERE ended_at IS NULL")
            .fetch_one(&mut *conn)
            .await
            .context("counting paused invoices")?;
    let mut figures = Figures {
        outbox_backlog,
        outbox_oldest,
        call_tasks_open,
        replies_to_handle,
        invoices_paused,
        invoices: CollectionStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect(),
        outstanding: BTreeMap::new(),
        dso: BTreeMap::new(),
        steps_paid_within_7_days: BTreeMap::new(),
    };
    let today = now.date_naive();
    (figures.dso, figures.steps_paid_within_7_days) = dso_and_steps(conn, today).await?;
    ledger_by_status(conn, now, &mut figures).await?;
    Ok(figures)
}

/// An aggregate of open invoices that share everything their collections status depends on.
#[derive(sqlx::FromRow)]
struct OpenGroup {
    due_on: NaiveDate,
    timezone: String,
    currency: String,
    paused: bool,
    #[sqlx(flatten)]
    plan: PlanAtColumns,
    invoices: i64,
    owed: Decimal,
}

/// Invoices per collections status and the amounts owed by age, in two aggregate queries
/// over the ledger (one transaction, so both see the same ledger). The open invoices are
/// grouped by what their status depends on ([`PlanAt`]: computed per invoice from its
/// reminder steps, by the definitions of [`PlanAt::of`]: [`plan_at`]), and the domain's rule
/// ([`collection_status_at`]) decides each group: the same status the overview shows, without
/// reading each plan into memory. About 5 s of database at 1M invoices
/// (`relance-bench pass`); the scheduler spaces its computations accordingly.
async fn ledger_by_status(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let mut tx = crate::read_snapshot(conn)
        .await
        .context("reading the ledger for the gauges")?;
    // The per-invoice aggregate of the steps hashes a row per open invoice.
    sqlx::query("SET LOCAL work_mem = '64MB'")
        .execute(&mut *tx)
        .await
        .context("sizing the gauges' aggregate")?;
    let closed: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM invoices WHERE status <> 'open' GROUP BY status")
            .fetch_all(&mut *tx)
            .await
            .context("counting the invoices no longer open")?;
    for (state, count) in closed {
        let state: InvoiceState = parse("invoices", "counted by status", "status", &state)?;
        let status = collection_status_at(
            state,
            false,
            NaiveDate::MIN,
            chrono_tz::UTC,
            PlanAt::default(),
            now,
        );
        *figures.invoices.entry(status.as_str()).or_default() += u64::try_from(count).unwrap_or(0);
    }
    let mut q = QueryBuilder::new("");
    plan_at::push_cte(&mut q, now, |_| {});
    q.push(format!(
        ", paused AS (SELECT DISTINCT invoice_id FROM invoice_pauses WHERE ended_at IS NULL)
         SELECT i.due_on, c.timezone, trim(i.currency) AS currency, p.invoice_id IS NOT NULL AS paused,
                {columns},
                count(*) AS invoices,
                coalesce(sum(i.balance) FILTER (WHERE i.balance > 0), 0) AS owed
         FROM invoices i
         JOIN customers c ON c.id = i.customer_id
         LEFT JOIN plan_at f ON f.invoice_id = i.id
         LEFT JOIN paused p ON p.invoice_id = i.id
         WHERE i.status = 'open'
         GROUP BY 1, 2, 3, 4, 5, 6, 7",
        columns = plan_at::COLUMNS
    ));
    let groups: Vec<OpenGroup> = q
        .build_query_as()
        .fetch_all(&mut *tx)
        .await
        .context("reading the open invoices by what their collections status depends on")?;
    tx.commit().await.context("ending the gauges' reads")?;
    let today = now.date_naive();
    for group in groups {
        let tz = parse_tz("customers", "of open invoices", &group.timezone)?;
        let status = collection_status_at(
            InvoiceState::Open,
            group.paused,
            group.due_on,
            tz,
            group.plan.into(),
            now,
        );
        *figures.invoices.entry(status.as_str()).or_default() += u64::try_from(group.invoices).unwrap_or(0);
        if group.owed > Decimal::ZERO {
            let bucket = aging_bucket((today - group.due_on).num_days());
            *figures.outstanding.entry((group.currency, bucket)).or_default() += group.owed;
        }
    }
    Ok(())
}

/// The DSO and the steps' sends as the console shows them by default today.
async fn dso_and_steps(
    conn: &mut PgConnection,
    today: chrono::NaiveDate,
) -> anyhow::Result<(BTreeMap<String, Dso>, BTreeMap<(String, String), StepSends>)> {
    let aging = console_figures::aging(&mut *conn, today, today).await?;
    let dso = console_figures::dso(&mut *conn, today, &aging, console_figures::DSO_MONTHS)
        .await?
        .into_iter()
        .map(|d| {
            let figure = Dso {
                days: d.dso_days.unwrap_or(d.days_counted),
                at_least: d.dso_days.is_none(),
            };
            (d.currency, figure)
        })
        .collect();
    let (from, to) = console_figures::effectiveness_window(today);
    let midnight = |d: chrono::NaiveDate| Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN));
    let effects = console_figures::effectiveness(&mut *conn, midnight(from), midnight(to)).await?;
    Ok((dso, sends_per_step(&effects)))
}

/// The console's rows (per step, channel and segment) summed over the segments: a label per
/// segment would multiply the series for little.
fn sends_per_step(effects: &[console_figures::StepEffect]) -> BTreeMap<(String, String), StepSends> {
    effects.iter().fold(BTreeMap::new(), |mut acc, e| {
        let sends: &mut StepSends = acc.entry((e.step.clone(), e.channel.clone())).or_default();
        sends.sent += e.sent;
        sends.paid_within_7_days += e.paid_within_7_days;
        acc
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_age_by_whole_days_past_due() {
        assert_eq!(aging_bucket(-3), "not_due");
        assert_eq!(aging_bucket(0), "not_due");
        assert_eq!(aging_bucket(1), "1_30_days");
        assert_eq!(aging_bucket(30), "1_30_days");
        assert_eq!(aging_bucket(31), "31_60_days");
        assert_eq!(aging_bucket(90), "61_90_days");
        assert_eq!(aging_bucket(91), "over_90_days");
    }

    #[test]
    fn a_steps_sends_add_up_over_the_segments() {
        let effect = |segment: &str, sent, paid| console_figures::StepEffect {
            step: "J+5".into(),
            channel: "email".into(),
            segment: segment.into(),
            sent,
            paid_within_3_days: 0,
            paid_within_7_days: paid,
            paid_within_14_days: paid,
        };
        let sends = sends_per_step(&[effect("low", 4, 3), effect("high", 6, 1)]);
        assert_eq!(
            sends.get(&("J+5".to_string(), "email".to_string())),
            Some(&StepSends {
                sent: 10,
                paid_within_7_days: 4
            })
        );
        assert_eq!(sends.len(), 1);
    }
}
