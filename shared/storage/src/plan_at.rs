//! What an open invoice's collections status depends on in its plan ([`PlanAt`]), computed
//! in SQL for many invoices at once, by the definitions of [`PlanAt::of`]: the collections
//! gauges group a whole ledger by it, the console's totals snapshot lists every invoice with
//! it. One aggregate over the steps (hashed per invoice) instead of reading each plan into
//! memory: at 1,000,000 invoices the plans read in batches took 80-96 s of the database, the
//! aggregate a few seconds (`relance-bench console`).

use crate::steps::StepStatus;
use chrono::{DateTime, Utc};
use relance_domain::collections::PlanAt;
use relance_domain::Tone;
use sqlx::{Postgres, QueryBuilder};

/// Pushes `WITH plan_at AS (...)`: per open invoice that `scope` selects (a condition on the
/// invoices `i`, or nothing for all), `formal_due`, `amicable_pending` and `first_unsent`
/// (the earliest step not gone out yet). `scope` pushes a condition starting with ` AND`.
/// The outer query joins it as `LEFT JOIN plan_at f ON f.invoice_id = i.id` (an invoice
/// without reminder steps has no row) and selects [`COLUMNS`].
pub(crate) fn push_cte(
    q: &mut QueryBuilder<'_, Postgres>,
    now: DateTime<Utc>,
    scope: impl FnOnce(&mut QueryBuilder<'_, Postgres>),
) {
    let unsent: Vec<&str> = StepStatus::ALL
        .iter()
        .filter(|s| s.is_unsent())
        .map(|s| s.as_str())
        .collect();
    q.push("WITH plan_at AS (SELECT s.invoice_id, bool_or(s.tone = ")
        .push_bind(Tone::Formal.as_str())
        .push(" AND s.due_at <= ")
        .push_bind(now)
        .push(") AS formal_due, bool_or(s.status = ANY(")
        .push_bind(unsent.clone())
        .push(") AND s.tone <> ")
        .push_bind(Tone::Formal.as_str())
        .push(") AS amicable_pending, min(s.due_at) FILTER (WHERE s.status = ANY(")
        .push_bind(unsent)
        .push(
            ")) AS first_unsent
             FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id AND i.status = 'open'
             WHERE s.kind = 'reminder'",
        );
    scope(q);
    q.push(" GROUP BY s.invoice_id) ");
}

/// The columns of [`PlanAtColumns`], for an outer query over invoices `i` joined to their
/// customer `c` and to `plan_at f`: the note before the due date is pending when the first
/// step not gone out falls on a local day before the due date.
pub(crate) const COLUMNS: &str = "coalesce(f.formal_due, false) AS formal_due,
     coalesce((f.first_unsent AT TIME ZONE c.timezone)::date < i.due_on, false) AS warning_pending,
     coalesce(f.amicable_pending, false) AS amicable_pending";

/// [`COLUMNS`] as read.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct PlanAtColumns {
    pub formal_due: bool,
    pub warning_pending: bool,
    pub amicable_pending: bool,
}

impl From<PlanAtColumns> for PlanAt {
    fn from(c: PlanAtColumns) -> Self {
        PlanAt {
            formal_due: c.formal_due,
            warning_pending: c.warning_pending,
            amicable_pending: c.amicable_pending,
        }
    }
}
