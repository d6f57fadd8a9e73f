//! The console's whole-ledger figures, aging with DSO and the steps' effectiveness, kept in
//! memory per set of parameters: each aggregates the whole ledger (about a second at
//! 1,000,000 invoices), too long for a page. They are computed by the storage's one
//! implementation (`relance_storage::console::figures`, which the scheduler's collections
//! gauges call too); this module only keeps them. Parameters not asked before (a past day,
//! another period) are computed once, by the first request (concurrent ones wait for that
//! computation); the background refresher (`crate::totals::refresh`) recomputes the
//! default ones and every set kept, each pass, so a page shows figures at most one interval
//! old, with the time they were computed. It keeps at most [`KEPT`] sets, forgetting the
//! least recently asked.

use crate::Shared;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
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
}

struct Slot {
    cell: Arc<OnceCell<Arc<Computed>>>,
    /// When it was last asked, as a count of requests (for forgetting the oldest).
    asked: u64,
}

#[derive(Default)]
pub(crate) struct Figures {
    slots: Mutex<(u64, HashMap<Key, Slot>)>,
}

impl Figures {
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
    Ok(Computed { figure, at })
}

/// The figure of `key`: kept, or computed now (once, whoever asks meanwhile).
pub(crate) async fn get(console: &Shared, key: Key) -> anyhow::Result<Arc<Computed>> {
    let cell = console.figures.slot(key);
    let computed = cell
        .get_or_try_init(|| async { compute(console, key).await.map(Arc::new) })
        .await?;
    Ok(computed.clone())
}

/// Recomputes the default figures and every one kept (one pass of the refresher). A failed
/// figure is logged and the previous one kept.
pub(crate) async fn refresh(console: &Shared) {
    let today = console.config.clock.now().date_naive();
    let mut keys = console.figures.keys();
    for key in Key::defaults(today) {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for key in keys {
        if !key.holds(today) {
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
