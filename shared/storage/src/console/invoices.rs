//! The tracking table: one row per invoice with its collections status (derived by the
//! overview's one rule), its last action and next step, filtered and sorted, read by keyset
//! (never OFFSET). The status is derived from the plan, so no index can serve a status
//! filter: the console chooses such a page's invoices from its snapshot of every invoice's
//! derived status ([`TotalsSnapshot`], [`page_over_snapshot`]) and reads only those rows;
//! [`page`] reads by index, applying a status filter after reading (invoices are read in
//! index order, in batches, until the page is full), for a customer's few invoices.

use crate::overview::{derive, plans, InvoiceFacts};
use crate::plan_at::{self, PlanAtColumns};
use crate::rows::{parse, parse_tz};
use anyhow::{anyhow, Context};
use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use futures_util::TryStreamExt;
use relance_domain::collections::{collection_status_at, CollectionStatus, InvoiceState};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{PgPool, Postgres, QueryBuilder};
use std::collections::{BTreeMap, HashMap};
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

/// One batch of at most `limit` rows after `cursor`, in `sort` order, with the SQL filters
/// applied.
async fn read_rows(
    db: &PgPool,
    filter: &Filter,
    sort: Sort,
    cursor: Option<&Cursor>,
    now: DateTime<Utc>,
    limit: i64,
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
        let rows = read_rows(db, filter, sort, cursor.as_ref(), now, batch).await?;
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

/// One invoice as the snapshot keeps it: enough to choose the invoices of a page whose
/// filter no index serves (a derived status, a segment), in either order, without the
/// ledger. About 60 bytes an invoice: some 60 MB at 1,000,000 invoices.
#[derive(Debug, Clone)]
struct Listed {
    due_on: NaiveDate,
    amount: Decimal,
    number: Box<str>,
    status: CollectionStatus,
    /// Index in [`TotalsSnapshot::segments`].
    segment: u8,
}

/// The totals per status of a set of invoices at one time, grouped finely enough that any
/// status, segment or overdue-range filter is a sum over the groups, without the ledger
/// (the console keeps the whole ledger's, refreshed in the background). A customer filter
/// is not in the groups: [`TotalsSnapshot::covers`] says so, and the console counts it live.
///
/// It also keeps each invoice's derived status, segment, due date and amount, in both
/// orders of the table, so a page filtered on what no index can serve (a collections status
/// derived from the plan, a customer's segment, an overdue range sorted by amount) is
/// chosen in memory and only its rows read: [`page_over_snapshot`].
#[derive(Debug, Clone)]
pub struct TotalsSnapshot {
    /// The time the statuses were derived at.
    pub as_of: DateTime<Utc>,
    customer: Option<String>,
    groups: BTreeMap<TotalsKey, (u64, Decimal)>,
    /// Every invoice, by (due date, number).
    listed: Vec<Listed>,
    /// Positions in `listed` by (amount, number), largest first.
    by_amount: Vec<u32>,
    segments: Vec<String>,
}

/// An invoice as the snapshot reads it, with what its status depends on in its plan.
#[derive(sqlx::FromRow)]
struct LedgerRow {
    number: String,
    status: String,
    paused: bool,
    segment: String,
    timezone: String,
    currency: String,
    due_on: NaiveDate,
    amount: Decimal,
    balance: Decimal,
    #[sqlx(flatten)]
    plan: PlanAtColumns,
}

impl TotalsSnapshot {
    /// Derives the status of every invoice the filter selects (the status and overdue-range
    /// filters aside: they are applied by [`TotalsSnapshot::sum`] and
    /// [`page_over_snapshot`]), by the overview's one rule ([`collection_status_at`], on what
    /// each invoice's plan says computed in SQL: [`crate::plan_at`]). One query, its rows
    /// read as they come: a few seconds of the database at 1,000,000 invoices, where reading
    /// the plans in batches took 80-96 s.
    pub async fn compute(db: &PgPool, now: DateTime<Utc>, filter: &Filter) -> anyhow::Result<Self> {
        let mut snapshot = Self {
            as_of: now,
            customer: filter.customer.clone(),
            groups: BTreeMap::new(),
            listed: Vec::new(),
            by_amount: Vec::new(),
            segments: Vec::new(),
        };
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("");
        plan_at::push_cte(&mut q, now, |q| {
            if let Some(customer) = &filter.customer {
                q.push(" AND i.customer_id = ").push_bind(customer.clone());
            }
        });
        // A customer's few invoices probe their pauses one by one; the whole ledger's are
        // joined to the open pauses hashed once.
        let (paused, pauses_join) = if filter.customer.is_some() {
            (
                "EXISTS (SELECT 1 FROM invoice_pauses p WHERE p.invoice_id = i.id AND p.ended_at IS NULL)",
                "",
            )
        } else {
            (
                "p.invoice_id IS NOT NULL",
                " LEFT JOIN (SELECT DISTINCT invoice_id FROM invoice_pauses WHERE ended_at IS NULL) p
                   ON p.invoice_id = i.id",
            )
        };
        q.push(format!(
            "SELECT i.number, i.status, {paused} AS paused, c.risk AS segment, c.timezone,
                    trim(i.currency) AS currency, i.due_on, i.amount, i.balance, {columns}
             FROM invoices i JOIN customers c ON c.id = i.customer_id
             LEFT JOIN plan_at f ON f.invoice_id = i.id{pauses_join}
             WHERE true",
            columns = plan_at::COLUMNS
        ));
        // Only the conditions that apply, so each can use its index (see `read_rows`).
        if let Some(segment) = &filter.segment {
            q.push(" AND c.risk = ").push_bind(segment.clone());
        }
        if let Some(customer) = &filter.customer {
            q.push(" AND i.customer_id = ").push_bind(customer.clone());
        }
        let mut zones: HashMap<String, Tz> = HashMap::new();
        let mut rows = q.build_query_as::<LedgerRow>().fetch(db);
        while let Some(row) = rows
            .try_next()
            .await
            .context("reading the ledger for the totals snapshot")?
        {
            let named = || format!("invoice {}", row.number);
            let state: InvoiceState = parse("invoices", named(), "status", &row.status)?;
            let tz = match zones.get(&row.timezone) {
                Some(tz) => *tz,
                None => {
                    let tz = parse_tz("customers", format!("of {}", named()), &row.timezone)?;
                    zones.insert(row.timezone.clone(), tz);
                    tz
                }
            };
            let status = collection_status_at(state, row.paused, row.due_on, tz, row.plan.into(), now);
            snapshot.list(&row, status)?;
        }
        drop(rows);
        snapshot.order();
        Ok(snapshot)
    }

    fn list(&mut self, row: &LedgerRow, status: CollectionStatus) -> anyhow::Result<()> {
        let segment = match self.segments.iter().position(|s| *s == row.segment) {
            Some(i) => i,
            None => {
                self.segments.push(row.segment.clone());
                self.segments.len() - 1
            }
        };
        let segment = u8::try_from(segment)
            .with_context(|| format!("more than 255 customer segments (at {:?})", row.segment))?;
        self.listed.push(Listed {
            due_on: row.due_on,
            amount: row.amount,
            number: row.number.as_str().into(),
            status,
            segment,
        });
        let key = TotalsKey {
            status,
            segment: row.segment.clone(),
            currency: row.currency.clone(),
            due_on: row.due_on,
        };
        self.add(key, 1, row.balance);
        Ok(())
    }

    /// Sorts the invoices in the table's two orders.
    fn order(&mut self) {
        self.listed
            .sort_unstable_by(|a, b| (a.due_on, &a.number).cmp(&(b.due_on, &b.number)));
        let listed = &self.listed;
        let mut by_amount: Vec<u32> = (0..listed.len()).filter_map(|i| u32::try_from(i).ok()).collect();
        by_amount.sort_unstable_by(|&a, &b| {
            let (a, b) = (&listed[a as usize], &listed[b as usize]);
            (b.amount, &b.number).cmp(&(a.amount, &a.number))
        });
        self.by_amount = by_amount;
    }

    /// Whether a page of this filter and order is chosen from the snapshot rather than read
    /// by an index: a status or segment filter (derived from the plan, or held by the
    /// customer: no index of the invoices serves them), or an overdue range in amount order.
    /// A customer filter never is: its invoices are few and have their index.
    pub fn serves_page(filter: &Filter, sort: Sort) -> bool {
        let overdue = filter.overdue_min.is_some() || filter.overdue_max.is_some();
        filter.customer.is_none()
            && (filter.status.is_some() || filter.segment.is_some() || (overdue && sort == Sort::Amount))
    }

    /// The invoice at `position` in `sort` order.
    fn at(&self, sort: Sort, position: usize) -> Option<&Listed> {
        match sort {
            Sort::DueDate | Sort::DaysOverdue => self.listed.get(position),
            Sort::Amount => self
                .by_amount
                .get(position)
                .and_then(|&i| self.listed.get(i as usize)),
        }
    }

    /// The position in `sort` order just after `cursor`.
    fn start(&self, sort: Sort, cursor: Option<&Cursor>) -> anyhow::Result<usize> {
        Ok(match (sort, cursor) {
            (_, None) => 0,
            (Sort::DueDate | Sort::DaysOverdue, Some(Cursor::Due(due_on, number))) => self
                .listed
                .partition_point(|e| (e.due_on, &*e.number) <= (*due_on, number.as_str())),
            (Sort::Amount, Some(Cursor::Amount(amount, number))) => self.by_amount.partition_point(|&i| {
                let e = &self.listed[i as usize];
                (e.amount, &*e.number) >= (*amount, number.as_str())
            }),
            _ => anyhow::bail!("the page cursor does not fit the sort order: start from the first page"),
        })
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

/// One page of the tracking table at `now`, its invoices chosen from `snapshot` (see
/// [`TotalsSnapshot::serves_page`]): the snapshot's invoices that match the filter, in
/// order after `after`, are read from the ledger a few more than a page at a time, their
/// status derived again now, and kept while they still match. So every row shown is
/// exact as of now; an invoice that has come into the filter since the snapshot (its
/// `as_of`) shows from the next one.
pub async fn page_over_snapshot(
    db: &PgPool,
    now: DateTime<Utc>,
    snapshot: &TotalsSnapshot,
    filter: &Filter,
    sort: Sort,
    after: Option<&Cursor>,
    limit: usize,
) -> anyhow::Result<InvoicePage> {
    let (due_from, due_to) = due_range(filter, now);
    let segment = filter
        .segment
        .as_ref()
        .map(|s| snapshot.segments.iter().position(|x| x == s));
    let wanted = |e: &Listed| {
        filter.status.is_none_or(|s| s == e.status)
            && segment.is_none_or(|s| s.is_some_and(|s| usize::from(e.segment) == s))
            && due_from.is_none_or(|from| e.due_on >= from)
            && due_to.is_none_or(|to| e.due_on <= to)
    };
    let still = |t: &TrackedInvoice| {
        filter.status.is_none_or(|s| s.as_str() == t.status)
            && filter.segment.as_ref().is_none_or(|s| *s == t.segment)
    };
    let mut position = snapshot.start(sort, after)?;
    // One more than the page, to know whether another follows.
    let mut out: Vec<(Cursor, TrackedInvoice)> = Vec::new();
    while out.len() <= limit {
        let need = limit + 1 - out.len();
        let mut chosen: Vec<&Listed> = Vec::new();
        while chosen.len() < need + need / 4 + 4 {
            let Some(e) = snapshot.at(sort, position) else {
                break;
            };
            position += 1;
            if wanted(e) {
                chosen.push(e);
            }
        }
        if chosen.is_empty() {
            break;
        }
        let numbers: Vec<&str> = chosen.iter().map(|e| &*e.number).collect();
        let rows: Vec<Row> = sqlx::query_as(&format!("{SELECT_ROW} WHERE i.number = ANY($1)"))
            .bind(&numbers)
            .fetch_all(db)
            .await
            .context("reading the tracking table's rows")?;
        let mut tracked: std::collections::HashMap<String, TrackedInvoice> = track(db, rows, now)
            .await?
            .into_iter()
            .map(|t| (t.number.clone(), t))
            .collect();
        for e in chosen {
            let Some(t) = tracked.remove(&*e.number).filter(|t| still(t)) else {
                continue;
            };
            let cursor = match sort {
                Sort::DueDate | Sort::DaysOverdue => Cursor::Due(e.due_on, e.number.to_string()),
                Sort::Amount => Cursor::Amount(e.amount, e.number.to_string()),
            };
            out.push((cursor, t));
            if out.len() > limit {
                break;
            }
        }
    }
    let next = if out.len() > limit {
        out.truncate(limit);
        out.last().map(|(cursor, _)| cursor.encode())
    } else {
        None
    };
    Ok(InvoicePage {
        invoices: out.into_iter().map(|(_, t)| t).collect(),
        next,
    })
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
            listed: Vec::new(),
            by_amount: Vec::new(),
            segments: Vec::new(),
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

    #[test]
    fn a_snapshot_lists_every_invoice_in_both_orders_from_a_cursor() {
        let as_of = Utc.with_ymd_and_hms(2026, 3, 13, 10, 0, 0).unwrap();
        let mut snapshot = TotalsSnapshot {
            as_of,
            customer: None,
            groups: BTreeMap::new(),
            listed: Vec::new(),
            by_amount: Vec::new(),
            segments: Vec::new(),
        };
        let invoices = [
            ("F-3", 9, "300", CollectionStatus::ToRemind, "high"),
            ("F-1", 20, "100", CollectionStatus::NotDue, "medium"),
            ("F-2", 9, "300", CollectionStatus::Paused, "medium"),
            ("F-4", 1, "50", CollectionStatus::Settled, "low"),
        ];
        for (number, day, amount, status, segment) in invoices {
            let row = LedgerRow {
                number: number.into(),
                status: "open".into(),
                paused: false,
                segment: segment.into(),
                timezone: "Europe/Paris".into(),
                currency: "EUR".into(),
                due_on: NaiveDate::from_ymd_opt(2026, 3, day).unwrap(),
                amount: amount.parse().unwrap(),
                balance: amount.parse().unwrap(),
                plan: PlanAtColumns {
                    formal_due: false,
                    warning_pending: false,
                    amicable_pending: false,
                },
            };
            snapshot.list(&row, status).unwrap();
        }
        snapshot.order();
        let numbers = |sort: Sort, cursor: Option<Cursor>| -> Vec<String> {
            (snapshot.start(sort, cursor.as_ref()).unwrap()..)
                .map_while(|p| snapshot.at(sort, p))
                .map(|e| e.number.to_string())
                .collect()
        };
        assert_eq!(numbers(Sort::DueDate, None), ["F-4", "F-2", "F-3", "F-1"]);
        let due = NaiveDate::from_ymd_opt(2026, 3, 9).unwrap();
        assert_eq!(
            numbers(Sort::DaysOverdue, Some(Cursor::Due(due, "F-2".into()))),
            ["F-3", "F-1"]
        );
        assert_eq!(numbers(Sort::Amount, None), ["F-3", "F-2", "F-1", "F-4"]);
        let amount = "300".parse().unwrap();
        assert_eq!(
            numbers(Sort::Amount, Some(Cursor::Amount(amount, "F-3".into()))),
            ["F-2", "F-1", "F-4"]
        );
        assert!(snapshot
            .start(Sort::Amount, Some(&Cursor::Due(due, "F-2".into())))
            .is_err());
        assert_eq!(snapshot.sum(&Filter::default())["to_remind"].count, 1);
        // Which pages it chooses: the filters no index serves, never one customer's.
        let status = Filter {
            status: Some(CollectionStatus::ToRemind),
            ..Filter::default()
        };
        assert!(TotalsSnapshot::serves_page(&status, Sort::DueDate));
        let overdue = Filter {
            overdue_min: Some(1),
            ..Filter::default()
        };
        assert!(!TotalsSnapshot::serves_page(&overdue, Sort::DueDate));
        assert!(TotalsSnapshot::serves_page(&overdue, Sort::Amount));
        let customer = Filter {
            customer: Some("C-1".into()),
            ..status
        };
        assert!(!TotalsSnapshot::serves_page(&customer, Sort::DueDate));
        assert!(!TotalsSnapshot::serves_page(&Filter::default(), Sort::Amount));
    }
}
