//! The tracking table's totals per status, kept as a snapshot in memory and refreshed every
//! `RELANCE_CONSOLE_TOTALS_INTERVAL_MS`: deriving the status of every open invoice takes
//! seconds on a large ledger, too long for each first page. The snapshot is computed by the
//! storage's one derivation (`TotalsSnapshot::compute`); a page only sums it. It must not
//! answer a customer filter (not in its groups): that is counted live, being small.
//! The same snapshot chooses the invoices of a page filtered on what no index serves (a
//! derived status, a segment: see [`page`]), and the same refresher, after each snapshot,
//! recomputes the whole-ledger figures the console keeps (`crate::figures`).
//! Until the first snapshot (seconds on a ledger of a million) nothing waits for
//! it: a first page comes without totals ("computing"), and a page filtered on a status or
//! a segment is read in index order until it is full, as without a snapshot. Consoles on one
//! database compute their snapshots one at a time ([`SNAPSHOT_TURN_LOCK`]), so several
//! restarted together do not all read the whole ledger at once.

use crate::Shared;
use anyhow::Context;
use chrono::{DateTime, Utc};
use relance_storage::console::invoices::{
    self, Cursor, Filter, InvoicePage, Sort, StatusTotal, TotalsSnapshot,
};
use sqlx::Connection;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The latest snapshot of the whole ledger, absent until the first is computed.
pub(crate) struct Latest(watch::Sender<Option<Arc<TotalsSnapshot>>>);

impl Default for Latest {
    fn default() -> Self {
        Self(watch::Sender::new(None))
    }
}

impl Latest {
    /// The latest snapshot, once there is one. A request before the first does without it
    /// rather than derive the whole ledger itself (several would, at start, each for seconds).
    fn get(&self) -> Option<Arc<TotalsSnapshot>> {
        self.0.borrow().clone()
    }

    fn set(&self, snapshot: TotalsSnapshot) {
        self.0.send_replace(Some(Arc::new(snapshot)));
    }
}

/// The PostgreSQL advisory lock (session level) a console holds while it computes its
/// snapshot: consoles on one database take turns. (It shared the retention purge's key
/// before 2026-12-06: a purge and a snapshot waited on each other.)
pub const SNAPSHOT_TURN_LOCK: i64 = relance_storage::locks::CONSOLE_SNAPSHOT_TURN;

/// The connection on which a console takes its turn: its own (not the pool's, which the
/// computation uses), kept from one pass to the next; when it is dropped (a failed pass,
/// the refresher stopped mid-way) the session ends and the lock with it.
struct Turn(Option<sqlx::PgConnection>);

impl Turn {
    async fn connection(&mut self, console: &Shared) -> anyhow::Result<&mut sqlx::PgConnection> {
        if self.0.is_none() {
            // On the server the snapshot reads (a replica, when one is set): the turns spread
            // the load there.
            let options = relance_storage::connect_options(console.config.settings.reads_database_url())?;
            let mut connection = sqlx::PgConnection::connect_with(&options)
                .await
                .context("connecting to wait for the console's turn to compute its totals snapshot")?;
            sqlx::query(&format!("SET ROLE {}", crate::READ_ROLE))
                .execute(&mut connection)
                .await
                .context("taking the read-only role on the totals snapshot's turn connection")?;
            self.0 = Some(connection);
        }
        self.0.as_mut().context("the turn connection is absent")
    }

    /// Computes the whole ledger's snapshot holding [`SNAPSHOT_TURN_LOCK`]. On any error the
    /// connection is dropped (and the lock with it), to be opened again next pass.
    async fn compute(
        &mut self,
        console: &Shared,
        at: DateTime<Utc>,
        filter: &Filter,
    ) -> anyhow::Result<TotalsSnapshot> {
        let taken = async {
            let turn = self.connection(console).await?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(SNAPSHOT_TURN_LOCK)
                .execute(&mut *turn)
                .await
                .context("waiting for the console's turn to compute its totals snapshot")?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = taken {
            self.0 = None;
            return Err(e);
        }
        let computed = TotalsSnapshot::compute(&console.db, at, filter).await;
        let released = match self.0.as_mut() {
            Some(turn) => sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(SNAPSHOT_TURN_LOCK)
                .execute(&mut *turn)
                .await
                .map(|_| ()),
            None => Ok(()),
        };
        if let Err(e) = released {
            tracing::warn!(error = %e, "releasing the totals snapshot's turn failed; its connection is closed (the lock goes with it)");
            self.0 = None;
        }
        computed
    }
}

/// A zero interval would recompute without pause.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// A refresh waits at least this many times as long as it took (as the collections gauges
/// do): on a ledger of ten million invoices, where a snapshot takes a minute or more, the
/// console refreshes less often rather than keep a core of the database busy.
const SPACING: u32 = 5;

/// How long to wait after a refresh that took `took`.
fn next_wait(interval: Duration, took: Duration) -> Duration {
    interval.max(took * SPACING)
}

/// Recomputes the whole ledger's snapshot and the kept figures at once, then every interval
/// (or five times as long as the refresh took, when that is longer), until `stop`. A failed
/// pass is logged and the previous snapshot kept.
pub(crate) async fn refresh(console: Shared, stop: CancellationToken) {
    let interval = console.config.settings.console_totals_interval.max(MIN_INTERVAL);
    let whole_ledger = Filter::default();
    let mut turn = Turn(None);
    loop {
        let at = console.config.clock.now();
        let refresh_started = std::time::Instant::now();
        tokio::select! {
            computed = turn.compute(&console, at, &whole_ledger) => match computed {
                Ok(snapshot) => {
                    console.totals.set(snapshot);
                    tracing::debug!(elapsed_ms = refresh_started.elapsed().as_millis() as u64, "totals snapshot refreshed");
                }
                Err(e) => tracing::error!(error = format!("{e:#}"), "refreshing the totals snapshot failed; the previous one is kept"),
            },
            () = stop.cancelled() => return,
        }
        let figures_started = std::time::Instant::now();
        tokio::select! {
            () = crate::figures::refresh(&console) => {
                tracing::debug!(elapsed_ms = figures_started.elapsed().as_millis() as u64, "console figures refreshed");
            }
            () = stop.cancelled() => return,
        }
        let wait = next_wait(interval, refresh_started.elapsed());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// The totals of a filter, the time they were derived at and where they come from.
pub(crate) struct Totals {
    pub per_status: BTreeMap<String, StatusTotal>,
    pub as_of: DateTime<Utc>,
    /// `snapshot` or `live`.
    pub source: &'static str,
}

/// The totals for `filter`: summed from the snapshot, or counted live for a customer filter;
/// `None` before the first snapshot (other than for a customer: they are still computing).
pub(crate) async fn for_filter(
    console: &Shared,
    now: DateTime<Utc>,
    filter: &Filter,
) -> anyhow::Result<Option<Totals>> {
    if filter.customer.is_none() {
        let Some(snapshot) = console.totals.get() else {
            return Ok(None);
        };
        if snapshot.covers(filter) {
            return Ok(Some(Totals {
                per_status: snapshot.sum(filter),
                as_of: snapshot.as_of,
                source: "snapshot",
            }));
        }
    }
    let live = TotalsSnapshot::compute(&console.db, now, filter).await?;
    Ok(Some(Totals {
        per_status: live.sum(filter),
        as_of: live.as_of,
        source: "live",
    }))
}

/// One page of the tracking table: read by its index, or, for a filter no index serves
/// ([`TotalsSnapshot::serves_page`]), chosen from the latest snapshot and each row read and
/// derived again now (so a row shown is exact; one that entered the filter since the
/// snapshot shows after the next). Before the first snapshot such a page is read in index
/// order until it is full ([`invoices::page`]: bounded by the page, not by the ledger, when
/// the filter is common).
pub(crate) async fn page(
    console: &Shared,
    now: DateTime<Utc>,
    filter: &Filter,
    sort: Sort,
    after: Option<&Cursor>,
    limit: usize,
) -> anyhow::Result<InvoicePage> {
    if TotalsSnapshot::serves_page(filter, sort) {
        if let Some(snapshot) = console.totals.get() {
            return invoices::page_over_snapshot(&console.db, now, &snapshot, filter, sort, after, limit)
                .await;
        }
    }
    invoices::page(&console.db, now, filter, sort, after, limit).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_longer_than_a_fifth_of_the_interval_spaces_the_next() {
        let minute = Duration::from_secs(60);
        assert_eq!(next_wait(minute, Duration::from_secs(8)), minute);
        assert_eq!(next_wait(minute, Duration::from_secs(12)), minute);
        assert_eq!(
            next_wait(minute, Duration::from_secs(80)),
            Duration::from_secs(400)
        );
    }
}
