//! The console's whole-ledger figures, aging with DSO and the steps' effectiveness: each
//! aggregates the whole ledger (about a second at 1,000,000 invoices), too long for a page.
//! A past day's aging (with its sales per month) and the effectiveness over any period of
//! whole days are summed in memory from the ledger aggregated by day
//! (`relance_storage::console::by_day`, exact: tested equal to the SQL), which the
//! background refresher (`crate::totals::refresh`) reads again each pass; today's aging,
//! which reads today's balances, is kept here, computed by the storage's one implementation
//! (`relance_storage::console::figures`, which the scheduler's collections gauges call too)
//! and recomputed each pass. Before the first aggregation, any figure is computed that way
//! once, by the first request (concurrent ones wait for that computation), and kept. A page
//! shows figures at most one interval old, with the time they were computed. At most
//! [`KEPT`] sets of parameters are kept, forgetting the least recently asked. This module
//! only keeps and sums figures: it decides no inclusion rule.

use crate::Shared;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use relance_storage::console::by_day::FiguresByDay;
use relance_storage::console::cents;
use relance_storage::console::figures::{self, AgingRow, StepEffect};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Sets of parameters kept (and recomputed each pass) at most.
const KEPT: usize = 16;

/// What a figure is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// The aging on `as_of` and the sales per month of the longest DSO countback
    /// ([`figures::DSO_MAX_MONTHS`]), so the DSO over any number of months is summed from it;
    /// `current` when `as_of` is today or later (from today's balances, rather than from the
    /// payments by then).
    Aging { as_of: NaiveDate, current: bool },
    /// The steps sent from midnight `from` to midnight `to` (UTC).
    Effectiveness { from: NaiveDate, to: NaiveDate },
}

impl Key {
    pub fn aging(as_of: NaiveDate, today: NaiveDate) -> Self {
        Key::Aging {
            as_of,
            current: as_of >= today,
        }
    }

    /// The figures every page shows unless told otherwise, at `today`.
    fn defaults(today: NaiveDate) -> [Key; 2] {
        let (from, to) = figures::effectiveness_window(today);
        [Key::aging(today, today), Key::Effectiveness { from, to }]
    }

    /// Whether the key still means what it did when asked: a "current" aging is today's.
    fn holds(&self, today: NaiveDate) -> bool {
        match *self {
            Key::Aging { as_of, current, .. } => current == (as_of >= today),
            Key::Effectiveness { .. } => true,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Figure {
    Aging {
        rows: Vec<AgingRow>,
        /// Per currency and month, over [`figures::DSO_MAX_MONTHS`] months.
        sales: Vec<(String, NaiveDate, Decimal)>,
    },
    Effectiveness(Vec<StepEffect>),
}

/// A figure and the time it was computed at (the clock's).
#[derive(Debug)]
pub(crate) struct Computed {
    pub figure: Figure,
    pub at: DateTime<Utc>,
    /// `ledger_by_day` (summed from it) or `query` (computed by the storage's query).
    pub source: &'static str,
}

struct Slot {
    cell: Arc<OnceCell<Arc<Computed>>>,
    /// When it was last asked, as a count of requests (for forgetting the oldest).
    asked: u64,
}

#[derive(Default)]
pub(crate) struct Figures {
    slots: Mutex<(u64, HashMap<Key, Slot>)>,
    /// The ledger aggregated by day, once the refresher has read it.
    by_day: Mutex<Option<Arc<FiguresByDay>>>,
}

impl Figures {
    fn by_day(&self) -> Option<Arc<FiguresByDay>> {
        self.by_day
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_by_day(&self, by_day: FiguresByDay) {
        *self
            .by_day
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(by_day));
    }

    /// The slot of `key`, created when absent (forgetting the least recently asked beyond
    /// [`KEPT`]).
    fn slot(&self, key: Key) -> Arc<OnceCell<Arc<Computed>>> {
        let mut guard = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (clock, slots) = &mut *guard;
        *clock += 1;
        let asked = *clock;
        let cell = {
            let slot = slots.entry(key).or_insert_with(|| Slot {
                cell: Arc::new(OnceCell::new()),
                asked,
            });
            slot.asked = asked;
            slot.cell.clone()
        };
        while slots.len() > KEPT {
            let oldest = slots.iter().min_by_key(|(_, s)| s.asked).map(|(k, _)| *k);
            match oldest {
                Some(k) => slots.remove(&k),
                None => break,
            };
        }
        cell
    }

    fn keys(&self) -> Vec<Key> {
        let guard = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.1.keys().copied().collect()
    }

    fn set(&self, key: Key, computed: Computed) {
        let mut guard = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (clock, slots) = &mut *guard;
        let cell = Arc::new(OnceCell::new_with(Some(Arc::new(computed))));
        match slots.get_mut(&key) {
            Some(slot) => slot.cell = cell,
            None => {
                slots.insert(key, Slot { cell, asked: *clock });
            }
        }
    }

    fn forget(&self, key: &Key) {
        let mut guard = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.1.remove(key);
    }
}

/// Computes one figure now, by the storage's queries.
async fn compute(console: &Shared, key: Key) -> anyhow::Result<Computed> {
    let at = console.config.clock.now();
    let today = at.date_naive();
    let figure = match key {
        Key::Aging { as_of, .. } => {
            let mut rows = figures::aging(&console.db, as_of, today).await?;
            for row in &mut rows {
                row.outstanding = cents(row.outstanding);
            }
            let sales = figures::monthly_sales(&console.db, as_of, figures::DSO_MAX_MONTHS).await?;
            Figure::Aging { rows, sales }
        }
        Key::Effectiveness { from, to } => {
            let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN));
            Figure::Effectiveness(figures::effectiveness(&console.db, midnight(from), midnight(to)).await?)
        }
    };
    Ok(Computed {
        figure,
        at,
        source: "query",
    })
}

/// Whether the ledger by day answers `key`: all but today's aging.
fn answered_by_day(key: Key) -> bool {
    !matches!(key, Key::Aging { current: true, .. })
}

/// The figure of `key` summed from the ledger by day, when it is one of those it answers.
fn summed(by_day: &FiguresByDay, key: Key) -> Option<Computed> {
    let figure = match key {
        Key::Aging { current: true, .. } => return None,
        Key::Aging {
            as_of,
            current: false,
        } => {
            let mut rows = by_day.aging.aging(as_of);
            for row in &mut rows {
                row.outstanding = cents(row.outstanding);
            }
            let sales = by_day.aging.monthly_sales(as_of, figures::DSO_MAX_MONTHS);
            Figure::Aging { rows, sales }
        }
        Key::Effectiveness { from, to } => Figure::Effectiveness(by_day.effectiveness.between(from, to)),
    };
    Some(Computed {
        figure,
        at: by_day.at,
        source: "ledger_by_day",
    })
}

/// The figure of `key`: summed from the ledger by day, or kept, or computed now (once,
/// whoever asks meanwhile).
pub(crate) async fn get(console: &Shared, key: Key) -> anyhow::Result<Arc<Computed>> {
    if let Some(computed) = console.figures.by_day().and_then(|by_day| summed(&by_day, key)) {
        return Ok(Arc::new(computed));
    }
    let cell = console.figures.slot(key);
    let computed = cell
        .get_or_try_init(|| async { compute(console, key).await.map(Arc::new) })
        .await?;
    Ok(computed.clone())
}

/// Reads the ledger by day again, then recomputes the default figures and every one kept
/// that it does not answer (one pass of the refresher). A failure is logged and the previous
/// figure kept.
pub(crate) async fn refresh(console: &Shared) {
    let at = console.config.clock.now();
    let today = at.date_naive();
    let started = std::time::Instant::now();
    match FiguresByDay::compute(&console.db, at).await {
        Ok(by_day) => {
            console.figures.set_by_day(by_day);
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "the ledger by day was read again"
            );
        }
        Err(e) => tracing::error!(
            error = format!("{e:#}"),
            "reading the ledger by day failed; the previous one is kept"
        ),
    }
    let by_day = console.figures.by_day();
    let mut keys = console.figures.keys();
    for key in Key::defaults(today) {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for key in keys {
        let answered = by_day.is_some() && answered_by_day(key);
        if answered || !key.holds(today) {
            console.figures.forget(&key);
            continue;
        }
        match compute(console, key).await {
            Ok(computed) => console.figures.set(key, computed),
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                ?key,
                "refreshing a console figure failed; the previous one is kept"
            ),
        }
    }
}
