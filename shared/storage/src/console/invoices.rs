//! The tracking table: one row per invoice with its collections status (derived by the
//! overview's one rule), its last action and next step, filtered and sorted, read by keyset
//! (never OFFSET). The status is derived from the plan, so a status filter applies after
//! reading: invoices are read in index order, in batches, until the page is full.

use crate::overview::{derive, plans, InvoiceFacts};
use crate::rows::{parse, parse_tz};
use anyhow::{anyhow, Context};
use chrono::{DateTime, Days, NaiveDate, Utc};
use relance_domain::collections::{collection_status, CollectionStatus, InvoiceState};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{PgPool, Postgres, QueryBuilder};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The order of the table. Each is a keyset over an index: (due_on, number) or
/// (amount, number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Earliest due date first.
    #[default]
    DueDate,
    /// Largest amount first.
    Amount,
    /// Most days overdue first (the earliest due date first, which is the same order).
    DaysOverdue,
}

impl std::str::FromStr for Sort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "due_date" => Ok(Sort::DueDate),
            "amount" => Ok(Sort::Amount),
            "days_overdue" => Ok(Sort::DaysOverdue),
            other => Err(format!(
                "unknown sort {other:?} (expected due_date, amount or days_overdue)"
            )),
        }
    }
}

/// Which invoices the table shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<CollectionStatus>,
    /// The customer's risk segment: `low`, `medium`, `high`.
    pub segment: Option<String>,
    /// The customer's id.
    pub customer: Option<String>,
    /// Days overdue at least / at most (0: due today or not yet due).
    pub overdue_min: Option<i64>,
    pub overdue_max: Option<i64>,
}

/// Where a page starts: just after this sort key and invoice number (opaque to the user:
/// [`Cursor::encode`] / [`Cursor::decode`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Cursor {
    Due(NaiveDate, String),
    Amount(Decimal, String),
}

impl Cursor {
    pub fn encode(&self) -> String {
        match self {
            Cursor::Due(d, n) => format!("d~{d}~{n}"),
            Cursor::Amount(a, n) => format!("a~{a}~{n}"),
        }
    }

    pub fn decode(s: &str) -> anyhow::Result<Self> {
        let mut parts = s.splitn(3, '~');
        let (kind, key, number) = (parts.next(), parts.next(), parts.next());
        let bad = || anyhow!("the page cursor {s:?} is not valid");
        match (kind, key, number) {
            (Some("d"), Some(key), Some(n)) => Ok(Cursor::Due(key.parse().map_err(|_| bad())?, n.into())),
            (Some("a"), Some(key), Some(n)) => Ok(Cursor::Amount(key.parse().map_err(|_| bad())?, n.into())),
            _ => Err(bad()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackedInvoice {
    pub number: String,
    pub customer_id: String,
    pub customer_name: String,
    pub segment: String,
    pub amount: Decimal,
    pub balance: Decimal,
    pub currency: String,
    pub issued_on: NaiveDate,
    pub due_on: NaiveDate,
    /// Whole days past the due date in the customer's calendar; 0 when not yet overdue.
    pub days_overdue: i64,
    pub status: String,
    pub last_action: Option<String>,
    pub last_action_at: Option<DateTime<Utc>>,
    pub next_step: Option<String>,
    pub next_step_at: Option<DateTime<Utc>>,
    pub next_step_channel: Option<String>,
}

/// Count and balance of the invoices of one status, per currency.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StatusTotal {
    pub count: u64,
    pub balance: BTreeMap<String, Decimal>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InvoicePage {
    pub invoices: Vec<TrackedInvoice>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    number: String,
    customer_id: String,
    customer_name: String,
    segment: String,
    amount: Decimal,
    balance: Decimal,
    currency: String,
    issued_on: NaiveDate,
    due_on: NaiveDate,
    status: String,
    timezone: String,
    paused: bool,
}

const SELECT_ROW: &str =
    "SELECT i.id, i.number, c.id AS customer_id, c.name AS customer_name, c.risk AS segment,
        i.amount, i.balance, trim(i.currency) AS currency, i.issued_on, i.due_on, i.status, c.timezone,
        EXISTS (SELECT 1 FROM invoice_pauses p WHERE p.invoice_id = i.id AND p.ended_at IS NULL) AS paused
    FROM invoices i JOIN customers c ON c.id = i.customer_id";

/// Rows read per query while a status filter skips invoices.
const BATCH: i64 = 500;

/// The due-date range an overdue range means at `now` (UTC calendar; the row's own days
/// overdue are counted in the customer's).
fn due_range(filter: &Filter, now: DateTime<Utc>) -> (Option<NaiveDate>, Option<NaiveDate>) {
    let today = now.date_naive();
    let back = |days: i64| {
        u64::try_from(days)
            .ok()
            .and_then(|d| today.checked_sub_days(Days::new(d)))
            .or_else(|| today.checked_add_days(Days::new(days.unsigned_abs())))
    };
    // At least N days overdue: due on or before today - N; at most M: due on or after today - M.
    (
        filter.overdue_max.and_then(back),
        filter.overdue_min.and_then(back),
    )
}

/// One batch of rows after `cursor`, in `sort` order, with the SQL filters applied.
/// With `open_unpaused`, only the open invoices without an active pause: the ones whose
/// status depends on their plan.
async fn read_rows(
    db: &PgPool,
    filter: &Filter,
    sort: Sort,
    cursor: Option<&Cursor>,
    now: DateTime<Utc>,
    (limit, open_unpaused): (i64, bool),
) -> anyhow::Result<Vec<Row>> {
    // Only the conditions that apply are written: a generic `$1 IS NULL OR ...` would keep
    // the planner from reading the keyset off the index, and each page would rescan the
    // ones before it.
    const ACTIVE_PAUSE: &str =
        "EXISTS (SELECT 1 FROM invoice_pauses p WHERE p.invoice_id = i.id AND p.ended_at IS NULL)";
    let (due_from, due_to) = due_range(filter, now);
    let narrowing = narrowing(filter.status, now);
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(SELECT_ROW);
    q.push(" WHERE true");
    if let Some(segment) = &filter.segment {
        q.push(" AND c.risk = ").push_bind(segment.clone());
    }
    if let Some(customer) = &filter.customer {
        q.push(" AND i.customer_id = ").push_bind(customer.clone());
    }
    for from in [due_from, narrowing.due_from].into_iter().flatten() {
        q.push(" AND i.due_on >= ").push_bind(from);
    }
    for to in [due_to, narrowing.due_to].into_iter().flatten() {
        q.push(" AND i.due_on <= ").push_bind(to);
    }
    if let Some(statuses) = stored_statuses(filter.status) {
        q.push(" AND i.status = ANY(").push_bind(statuses).push(")");
    }
    if open_unpaused {
        q.push(format!(" AND i.status = 'open' AND NOT {ACTIVE_PAUSE}"));
    }
    match narrowing.paused {
        Some(true) => q.push(format!(" AND {ACTIVE_PAUSE}")),
        Some(false) => q.push(format!(" AND NOT {ACTIVE_PAUSE}")),
        None => &mut q,
    };
    match (sort, cursor) {
        (_, None) => &mut q,
        (Sort::DueDate | Sort::DaysOverdue, Some(Cursor::Due(due_on, number))) => q
            .push(" AND (i.due_on, i.number) > (")
            .push_bind(*due_on)
            .push(", ")
            .push_bind(number.clone())
            .push(")"),
        (Sort::Amount, Some(Cursor::Amount(amount, number))) => q
            .push(" AND (i.amount, i.number) < (")
            .push_bind(*amount)
            .push(", ")
            .push_bind(number.clone())
            .push(")"),
        _ => anyhow::bail!("the page cursor does not fit the sort order: start from the first page"),
    };
    q.push(match sort {
        Sort::DueDate | Sort::DaysOverdue => " ORDER BY i.due_on, i.number",
        Sort::Amount => " ORDER BY i.amount DESC, i.number DESC",
    });
    q.push(" LIMIT ").push_bind(limit);
    q.build_query_as()
        .fetch_all(db)
        .await
        .context("reading the tracking table")
}

/// The stored invoice statuses a collections status can come from, so the index scan skips
/// the others (the status itself is still derived by the domain's rule).
fn stored_statuses(status: Option<CollectionStatus>) -> Option<Vec<String>> {
    let stored: &[&str] = match status? {
        CollectionStatus::Settled => &["settled"],
        CollectionStatus::Closed => &["closed"],
        CollectionStatus::HandedOff => &["handed_off"],
        _ => &["open"],
    };
    Some(stored.iter().map(|s| s.to_string()).collect())
}

/// What the SQL may assume of the invoices a status filter wants, so the scan skips the rest:
/// the domain's rule is still what decides (these are supersets). Paused means an active
/// pause; the others, none. Not due (`to_warn`, `not_due`) means due on or after today in the
/// customer's time zone, overdue the opposite: a day's margin covers every time zone.
struct Narrowing {
    paused: Option<bool>,
    due_from: Option<NaiveDate>,
    due_to: Option<NaiveDate>,
}

fn narrowing(status: Option<CollectionStatus>, now: DateTime<Utc>) -> Narrowing {
    let today = now.date_naive();
    let (yesterday, tomorrow) = (today.pred_opt(), today.succ_opt());
    let (paused, due_from, due_to) = match status {
        None | Some(CollectionStatus::Settled | CollectionStatus::Closed | CollectionStatus::HandedOff) => {
            (None, None, None)
        }
        Some(CollectionStatus::Paused) => (Some(true), None, None),
        Some(CollectionStatus::ToWarn | CollectionStatus::NotDue) => (Some(false), yesterday, None),
        Some(CollectionStatus::ToRemind | CollectionStatus::ToFormalise) => (Some(false), None, tomorrow),
    };
    Narrowing {
        paused,
        due_from,
        due_to,
    }
}

fn cursor_of(sort: Sort, row: &TrackedInvoice) -> Cursor {
    match sort {
        Sort::DueDate | Sort::DaysOverdue => Cursor::Due(row.due_on, row.number.clone()),
        Sort::Amount => Cursor::Amount(row.amount, row.number.clone()),
    }
}

/// Rows with their derived status, next step and last action.
async fn track(db: &PgPool, rows: Vec<Row>, now: DateTime<Utc>) -> anyhow::Result<Vec<TrackedInvoice>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut plans = plans(db, &ids).await?;
    let numbers: Vec<&str> = rows.iter().map(|r| r.number.as_str()).collect();
    // The latest journal entry of each invoice, through the (invoice_number, id) index.
    let last: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT n.number, j.action, j.at FROM unnest($1::text[]) AS n(number)
         CROSS JOIN LATERAL (SELECT action, at FROM journal WHERE invoice_number = n.number
                             ORDER BY id DESC LIMIT 1) j",
    )
    .bind(&numbers)
    .fetch_all(db)
    .await
    .context("reading the last actions")?;
    let mut last: std::collections::HashMap<String, (String, DateTime<Utc>)> =
        last.into_iter().map(|(n, a, at)| (n, (a, at))).collect();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let facts = InvoiceFacts {
            number: &row.number,
            status: &row.status,
            timezone: &row.timezone,
            due_on: row.due_on,
            paused: row.paused,
        };
        let (status, next) = derive(facts, plans.remove(&row.id).unwrap_or_default(), now)?;
        let tz = parse_tz("customers", format!("{:?}", row.customer_id), &row.timezone)?;
        let today = now.with_timezone(&tz).date_naive();
        let (last_action, last_action_at) = match last.remove(&row.number) {
            Some((a, at)) => (Some(a), Some(at)),
            None => (None, None),
        };
        out.push(TrackedInvoice {
            days_overdue: (today - row.due_on).num_days().max(0),
            status: status.as_str().to_string(),
            next_step: next.as_ref().map(|s| s.name.clone()),
            next_step_at: next.as_ref().map(|s| s.due_at),
            next_step_channel: next.map(|s| s.channel),
            last_action,
            last_action_at,
            number: row.number,
            customer_id: row.customer_id,
            customer_name: row.customer_name,
            segment: row.segment,
            amount: super::cents(row.amount),
            balance: super::cents(row.balance),
            currency: row.currency,
            issued_on: row.issued_on,
            due_on: row.due_on,
        });
    }
    Ok(out)
}

/// One page of the tracking table at `now`: at most `limit` invoices after `after`.
pub async fn page(
    db: &PgPool,
    now: DateTime<Utc>,
    filter: &Filter,
    sort: Sort,
    after: Option<&Cursor>,
    limit: usize,
) -> anyhow::Result<InvoicePage> {
    let mut cursor = after.cloned();
    let mut out: Vec<TrackedInvoice> = Vec::new();
    // Without a status filter every row read is shown: read one more than the page to know
    // whether another follows.
    let batch = match filter.status {
        None => i64::try_from(limit).unwrap_or(BATCH).saturating_add(1),
        Some(_) => BATCH,
    };
    loop {
        let rows = read_rows(db, filter, sort, cursor.as_ref(), now, (batch, false)).await?;
        let full = i64::try_from(rows.len()).unwrap_or(0) == batch;
        let tracked = track(db, rows, now).await?;
        let Some(last) = tracked.last().map(|r| cursor_of(sort, r)) else {
            return Ok(InvoicePage {
                invoices: out,
                next: None,
            });
        };
        for row in tracked {
            if filter.status.is_some_and(|s| s.as_str() != row.status) {
                continue;
            }
            if out.len() == limit {
                let next = out.last().map(|r| cursor_of(sort, r).encode());
                return Ok(InvoicePage { invoices: out, next });
            }
            out.push(row);
        }
        if !full {
            return Ok(InvoicePage {
                invoices: out,
                next: None,
            });
        }
        cursor = Some(last);
    }
}

/// One invoice's row of the table at `now`.
pub async fn one(db: &PgPool, now: DateTime<Utc>, number: &str) -> anyhow::Result<Option<TrackedInvoice>> {
    let rows: Vec<Row> = sqlx::query_as(&format!("{SELECT_ROW} WHERE i.number = $1"))
        .bind(number)
        .fetch_all(db)
        .await
        .context("reading the invoice's row")?;
    Ok(track(db, rows, now).await?.into_iter().next())
}

/// Count and balance per status of every invoice the filter selects (the status filter
/// aside), derived now from the ledger: [`TotalsSnapshot::compute`] for this filter, summed.
pub async fn totals(
    db: &PgPool,
    now: DateTime<Utc>,
    filter: &Filter,
) -> anyhow::Result<BTreeMap<String, StatusTotal>> {
    Ok(TotalsSnapshot::compute(db, now, filter).await?.sum(filter))
}

/// What the totals are summed from: one group per (status, segment, currency, due date).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TotalsKey {
    status: CollectionStatus,
    segment: String,
    currency: String,
    due_on: NaiveDate,
}

/// The totals per status of a set of invoices at one time, grouped finely enough that any
/// status, segment or overdue-range filter is a sum over the groups, without the ledger
/// (the console keeps the whole ledger's, refreshed in the background). A customer filter
/// is not in the groups: [`TotalsSnapshot::covers`] says so, and the console counts it live.
#[derive(Debug, Clone)]
pub struct TotalsSnapshot {
    /// The time the statuses were derived at.
    pub as_of: DateTime<Utc>,
    customer: Option<String>,
    groups: BTreeMap<TotalsKey, (u64, Decimal)>,
}

impl TotalsSnapshot {
    /// Derives the status of every invoice the filter selects (the status and overdue-range
    /// filters aside: they are applied by [`TotalsSnapshot::sum`]). The invoices settled,
    /// closed, handed off or paused are counted by the database (the domain's rule gives
    /// their status without their plan); only the open, unpaused ones are read, in batches,
    /// and their status derived from their plan.
    pub async fn compute(db: &PgPool, now: DateTime<Utc>, filter: &Filter) -> anyhow::Result<Self> {
        let scope = Filter {
            segment: filter.segment.clone(),
            customer: filter.customer.clone(),
            ..Filter::default()
        };
        let mut snapshot = Self {
            as_of: now,
            customer: scope.customer.clone(),
            groups: BTreeMap::new(),
        };
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT i.status, EXISTS (SELECT 1 FROM invoice_pauses p WHERE p.invoice_id = i.id AND p.ended_at IS NULL) AS paused,
                    c.risk, trim(i.currency), i.due_on, count(*), sum(i.balance)
             FROM invoices i JOIN customers c ON c.id = i.customer_id
             WHERE (i.status <> 'open' OR EXISTS
                    (SELECT 1 FROM invoice_pauses p WHERE p.invoice_id = i.id AND p.ended_at IS NULL))",
        );
        // Only the conditions that apply, so each can use its index (see `read_rows`).
        if let Some(segment) = &scope.segment {
            q.push(" AND c.risk = ").push_bind(segment.clone());
        }
        if let Some(customer) = &scope.customer {
            q.push(" AND i.customer_id = ").push_bind(customer.clone());
        }
        q.push(" GROUP BY 1, 2, 3, 4, 5");
        let settled_or_paused: Vec<(String, bool, String, String, NaiveDate, i64, Decimal)> = q
            .build_query_as()
            .fetch_all(db)
            .await
            .context("counting the invoices settled, closed, handed off or paused")?;
        for (state, paused, segment, currency, due_on, count, balance) in settled_or_paused {
            let state: InvoiceState = parse("invoices", "(totals)", "status", &state)?;
            // No plan needed for these: the rule decides on the state and the pause first.
            let status = collection_status(state, paused, now.date_naive(), chrono_tz::UTC, &[], now);
            let key = TotalsKey {
                status,
                segment,
                currency,
                due_on,
            };
            snapshot.add(key, u64::try_from(count).unwrap_or(0), balance);
        }
        let mut cursor: Option<Cursor> = None;
        loop {
            let rows = read_rows(db, &scope, Sort::DueDate, cursor.as_ref(), now, (BATCH * 4, true)).await?;
            let full = i64::try_from(rows.len()).unwrap_or(0) == BATCH * 4;
            let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
            let mut plans = plans(db, &ids).await?;
            for row in &rows {
                let facts = InvoiceFacts {
                    number: &row.number,
                    status: &row.status,
                    timezone: &row.timezone,
                    due_on: row.due_on,
                    paused: row.paused,
                };
                let (status, _) = derive(facts, plans.remove(&row.id).unwrap_or_default(), now)?;
                let key = TotalsKey {
                    status,
                    segment: row.segment.clone(),
                    currency: row.currency.clone(),
                    due_on: row.due_on,
                };
                snapshot.add(key, 1, row.balance);
            }
            match rows.last() {
                Some(last) if full => cursor = Some(Cursor::Due(last.due_on, last.number.clone())),
                _ => break,
            }
        }
        Ok(snapshot)
    }

    fn add(&mut self, key: TotalsKey, count: u64, balance: Decimal) {
        let group = self.groups.entry(key).or_default();
        group.0 += count;
        group.1 += balance;
    }

    /// Whether [`TotalsSnapshot::sum`] can answer this filter: its customer is the one the
    /// snapshot was computed for (none: the whole ledger, which serves no customer filter).
    pub fn covers(&self, filter: &Filter) -> bool {
        filter.customer == self.customer
    }

    /// Count and balance per status (every status present, zero when none) of the groups
    /// the filter selects, the status filter aside; days overdue are counted at `as_of`,
    /// as the live query would have.
    pub fn sum(&self, filter: &Filter) -> BTreeMap<String, StatusTotal> {
        let mut totals: BTreeMap<String, StatusTotal> = CollectionStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), StatusTotal::default()))
            .collect();
        let (due_from, due_to) = due_range(filter, self.as_of);
        let selected = self.groups.iter().filter(|(key, _)| {
            filter.segment.as_ref().is_none_or(|s| *s == key.segment)
                && due_from.is_none_or(|from| key.due_on >= from)
                && due_to.is_none_or(|to| key.due_on <= to)
        });
        for (key, (count, balance)) in selected {
            let total = totals.entry(key.status.as_str().to_string()).or_default();
            total.count += count;
            *total.balance.entry(key.currency.clone()).or_default() += *balance;
        }
        for total in totals.values_mut() {
            for amount in total.balance.values_mut() {
                *amount = super::cents(*amount);
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = Cursor::Amount("1200.50".parse().unwrap(), "F~1".into());
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        let c = Cursor::Due(NaiveDate::from_ymd_opt(2026, 3, 9).unwrap(), "F-1".into());
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("x~1~F").is_err());
        assert!(Cursor::decode("d~notadate~F").is_err());
    }

    #[test]
    fn a_snapshot_sums_the_groups_a_segment_and_overdue_range_select() {
        let as_of = Utc.with_ymd_and_hms(2026, 3, 13, 10, 0, 0).unwrap();
        let due = |d: u32| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
        let mut snapshot = TotalsSnapshot {
            as_of,
            customer: None,
            groups: BTreeMap::new(),
        };
        let key = |status, segment: &str, d| TotalsKey {
            status,
            segment: segment.into(),
            currency: "EUR".into(),
            due_on: due(d),
        };
        snapshot.add(
            key(CollectionStatus::ToRemind, "high", 9),
            2,
            "300.004".parse().unwrap(),
        );
        snapshot.add(
            key(CollectionStatus::ToRemind, "medium", 9),
            1,
            "50".parse().unwrap(),
        );
        snapshot.add(
            key(CollectionStatus::ToWarn, "high", 25),
            1,
            "100".parse().unwrap(),
        );
        let all = snapshot.sum(&Filter::default());
        assert_eq!(all["to_remind"].count, 3);
        assert_eq!(
            all["to_remind"].balance["EUR"],
            "350.00".parse::<Decimal>().unwrap()
        );
        assert_eq!(all["settled"].count, 0, "every status is present");
        let high_overdue = Filter {
            segment: Some("high".into()),
            overdue_min: Some(1),
            ..Filter::default()
        };
        let some = snapshot.sum(&high_overdue);
        assert_eq!((some["to_remind"].count, some["to_warn"].count), (2, 0));
        assert!(snapshot.covers(&Filter::default()));
        assert!(!snapshot.covers(&Filter {
            customer: Some("C-1".into()),
            ..Filter::default()
        }));
    }
}
