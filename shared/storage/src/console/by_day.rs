//! The whole ledger aggregated once into small tables keyed by day, from which the console
//! answers a past day's aging, the sales per month of its DSO and the steps' effectiveness
//! over any whole-day period in memory, exactly as [`super::figures::aging`],
//! [`super::figures::monthly_sales`] and [`super::figures::effectiveness`] would (those stay
//! the reference, and what the scheduler's gauges call). It reads; it must not decide
//! anything those queries do not: every inclusion rule is theirs, restated per group.
//!
//! Aging: an invoice counts on day D (end of day) when it was issued by D, not closed or
//! handed off by D, and its amount less the payments received and credit notes issued by D
//! is above zero. Payments and credit notes are positive (the schema checks it), so what is
//! left only falls: an invoice counts on every day from its issue to the day before it
//! stopped counting (`exit_on`: the first day what was left reached zero, or the day it was
//! closed or handed off), and on none after. Invoices are grouped by (currency, segment,
//! due date, issue date, exit date) with the sum of their amounts, and each group's payments
//! and credit notes before its exit are summed per day.
//!
//! Effectiveness: the reminders sent are grouped by the day (UTC) they went out, step,
//! channel and segment, with how many of those invoices were settled within 3, 7 and 14 days
//! of each send (decided per send, as the reference does), so a period of whole days sums
//! its days.

use super::figures::{AgingRow, StepEffect, AGING_BUCKETS};
use anyhow::Context;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use std::collections::BTreeMap;

/// Invoices that count on the same days and fall in the same bucket on each.
#[derive(Debug, Clone)]
struct AgingGroup {
    currency: String,
    segment: String,
    due_on: NaiveDate,
    issued_on: NaiveDate,
    /// The first day the group no longer counts; `None`: still counts.
    exit_on: Option<NaiveDate>,
    invoices: i64,
    amount: Decimal,
    /// Payments and credit notes per day, before `exit_on`, in day order.
    settled: Vec<(NaiveDate, Decimal)>,
}

impl AgingGroup {
    fn counts_on(&self, day: NaiveDate) -> bool {
        self.issued_on <= day && self.exit_on.is_none_or(|exit| day < exit)
    }

    fn outstanding_on(&self, day: NaiveDate) -> Decimal {
        let settled: Decimal = self
            .settled
            .iter()
            .take_while(|(on, _)| *on <= day)
            .map(|(_, amount)| *amount)
            .sum();
        self.amount - settled
    }
}

/// The bucket of an invoice due on `due_on`, on `day` (as `figures::aging`'s SQL decides).
fn bucket(day: NaiveDate, due_on: NaiveDate) -> usize {
    match (day - due_on).num_days() {
        ..=0 => 0,
        1..=15 => 1,
        16..=30 => 2,
        31..=60 => 3,
        61..=90 => 4,
        _ => 5,
    }
}

/// The ledger's aging and sales by day.
#[derive(Debug, Clone, Default)]
pub struct AgingByDay {
    groups: Vec<AgingGroup>,
    /// Invoices issued per currency and day (their amounts).
    sales: BTreeMap<(String, NaiveDate), Decimal>,
}

/// The groups and their payments per day, in one statement (one snapshot of the ledger).
/// A row with no `day` is a group (its invoices and amount); one with a day, the sum paid or
/// credited that day on the group's invoices.
const AGING_BY_DAY_SQL: &str = "
WITH settled AS (
    SELECT invoice_id, day, sum(amount) AS amount
    FROM (SELECT invoice_id, received_on AS day, amount FROM payments
          UNION ALL
          SELECT invoice_id, issued_on, amount FROM credit_notes) e
    GROUP BY 1, 2),
zero AS (
    SELECT invoice_id, min(day) AS zero_on
    FROM (SELECT s.invoice_id, s.day,
                 i.amount - sum(s.amount) OVER (PARTITION BY s.invoice_id ORDER BY s.day) AS left_after
          FROM settled s JOIN invoices i ON i.id = s.invoice_id) c
    WHERE left_after <= 0
    GROUP BY 1),
inv AS (
    SELECT i.id, trim(i.currency) AS currency, c.risk AS segment, i.due_on, i.issued_on, i.amount,
           least(z.zero_on,
                 CASE WHEN i.status IN ('closed', 'handed_off') THEN i.status_changed_at::date END) AS exit_on
    FROM invoices i
    JOIN customers c ON c.id = i.customer_id
    LEFT JOIN zero z ON z.invoice_id = i.id),
counted AS (
    SELECT * FROM inv WHERE exit_on IS NULL OR exit_on > issued_on)
SELECT currency, segment, due_on, issued_on, exit_on, NULL::date AS day,
       count(*) AS invoices, sum(amount) AS amount
FROM counted GROUP BY 1, 2, 3, 4, 5
UNION ALL
SELECT i.currency, i.segment, i.due_on, i.issued_on, i.exit_on, s.day, 0, sum(s.amount)
FROM counted i JOIN settled s ON s.invoice_id = i.id
WHERE i.exit_on IS NULL OR s.day < i.exit_on
GROUP BY 1, 2, 3, 4, 5, 6";

type GroupKey = (String, String, NaiveDate, NaiveDate, Option<NaiveDate>);
/// A row of [`AGING_BY_DAY_SQL`]: the group's key, the day, its invoices and amount.
type AgingByDayRow = (
    String,
    String,
    NaiveDate,
    NaiveDate,
    Option<NaiveDate>,
    Option<NaiveDate>,
    i64,
    Decimal,
);

impl AgingByDay {
    /// Aggregates the whole ledger (a few seconds at a million invoices: call it off the
    /// request path).
    pub async fn compute(db: &PgPool) -> anyhow::Result<Self> {
        let rows: Vec<AgingByDayRow> = sqlx::query_as(AGING_BY_DAY_SQL)
            .fetch_all(db)
            .await
            .context("aggregating the ledger's aging by day")?;
        let mut groups: BTreeMap<GroupKey, AgingGroup> = BTreeMap::new();
        for (currency, segment, due_on, issued_on, exit_on, day, invoices, amount) in rows {
            let key = (currency.clone(), segment.clone(), due_on, issued_on, exit_on);
            let group = groups.entry(key).or_insert_with(|| AgingGroup {
                currency,
                segment,
                due_on,
                issued_on,
                exit_on,
                invoices: 0,
                amount: Decimal::ZERO,
                settled: Vec::new(),
            });
            match day {
                None => {
                    group.invoices += invoices;
                    group.amount += amount;
                }
                Some(day) => group.settled.push((day, amount)),
            }
        }
        let mut groups: Vec<AgingGroup> = groups.into_values().collect();
        for group in &mut groups {
            group.settled.sort_by_key(|(day, _)| *day);
        }
        let sales: Vec<(String, NaiveDate, Decimal)> =
            sqlx::query_as("SELECT trim(currency), issued_on, sum(amount) FROM invoices GROUP BY 1, 2")
                .fetch_all(db)
                .await
                .context("reading the sales per day")?;
        let sales = sales
            .into_iter()
            .map(|(currency, day, amount)| ((currency, day), amount))
            .collect();
        Ok(Self { groups, sales })
    }

    /// What was outstanding at the end of `day`, per currency, segment and bucket, as
    /// [`super::figures::aging`] reads it for a past day (same rows, same order).
    pub fn aging(&self, day: NaiveDate) -> Vec<AgingRow> {
        let mut sums: BTreeMap<(&str, &str, usize), (i64, Decimal)> = BTreeMap::new();
        for group in self.groups.iter().filter(|g| g.counts_on(day)) {
            let sum = sums
                .entry((&group.currency, &group.segment, bucket(day, group.due_on)))
                .or_default();
            sum.0 += group.invoices;
            sum.1 += group.outstanding_on(day);
        }
        sums.into_iter()
            .map(
                |((currency, segment, bucket), (invoices, outstanding))| AgingRow {
                    currency: currency.to_string(),
                    segment: segment.to_string(),
                    bucket: AGING_BUCKETS[bucket].to_string(),
                    invoices,
                    outstanding,
                },
            )
            .collect()
    }

    /// The sales per currency and month, as [`super::figures::monthly_sales`] reads them.
    pub fn monthly_sales(&self, as_of: NaiveDate, months: u32) -> Vec<(String, NaiveDate, Decimal)> {
        let Some(oldest) = super::figures::oldest_countback_day(as_of, months) else {
            return Vec::new();
        };
        let mut per_month: BTreeMap<(&str, NaiveDate), Decimal> = BTreeMap::new();
        for ((currency, day), amount) in &self.sales {
            if *day < oldest || *day > as_of {
                continue;
            }
            if let Some(month) = day.with_day(1) {
                *per_month.entry((currency, month)).or_default() += *amount;
            }
        }
        per_month
            .into_iter()
            .map(|((currency, month), amount)| (currency.to_string(), month, amount))
            .collect()
    }
}

/// The reminders sent on one day (UTC) by one step on one channel to one segment.
#[derive(Debug, Clone)]
struct SentOnDay {
    day: NaiveDate,
    step: String,
    channel: String,
    segment: String,
    /// The lowest position of the step among them (the reference orders by it).
    position: i32,
    sent: i64,
    paid_within: [i64; 3],
}

/// The steps sent, by day.
#[derive(Debug, Clone, Default)]
pub struct EffectivenessByDay {
    /// In day order.
    days: Vec<SentOnDay>,
}

impl EffectivenessByDay {
    /// Aggregates every reminder sent (a few seconds on a large ledger: off the request path).
    pub async fn compute(db: &PgPool) -> anyhow::Result<Self> {
        type Row = (NaiveDate, String, String, String, i32, i64, i64, i64, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT (s.emitted_at AT TIME ZONE 'UTC')::date, s.name, coalesce(r.channel, s.channel), c.risk,
                    min(s.position), count(*),
                    count(*) FILTER (WHERE i.settled_at <= s.emitted_at + interval '3 days'),
                    count(*) FILTER (WHERE i.settled_at <= s.emitted_at + interval '7 days'),
                    count(*) FILTER (WHERE i.settled_at <= s.emitted_at + interval '14 days')
             FROM reminder_steps s
             JOIN invoices i ON i.id = s.invoice_id
             JOIN customers c ON c.id = i.customer_id
             LEFT JOIN rendered_messages r ON r.step_id = s.id
             WHERE s.kind = 'reminder' AND s.status = 'sent' AND s.emitted_at IS NOT NULL
             GROUP BY 1, 2, 3, 4 ORDER BY 1",
        )
        .fetch_all(db)
        .await
        .context("aggregating the steps sent by day")?;
        let days = rows
            .into_iter()
            .map(
                |(day, step, channel, segment, position, sent, p3, p7, p14)| SentOnDay {
                    day,
                    step,
                    channel,
                    segment,
                    position,
                    sent,
                    paid_within: [p3, p7, p14],
                },
            )
            .collect();
        Ok(Self { days })
    }

    /// The steps sent from midnight `from` to midnight `to` (UTC), as
    /// [`super::figures::effectiveness`] reads them over that period (same rows, same order).
    pub fn between(&self, from: NaiveDate, to: NaiveDate) -> Vec<StepEffect> {
        type Sums = (i32, i64, [i64; 3]);
        let start = self.days.partition_point(|d| d.day < from);
        let mut sums: BTreeMap<(&str, &str, &str), Sums> = BTreeMap::new();
        for d in self.days[start..].iter().take_while(|d| d.day < to) {
            let sum = sums
                .entry((&d.step, &d.channel, &d.segment))
                .or_insert((d.position, 0, [0; 3]));
            sum.0 = sum.0.min(d.position);
            sum.1 += d.sent;
            for (total, paid) in sum.2.iter_mut().zip(d.paid_within) {
                *total += paid;
            }
        }
        let mut out: Vec<(i32, StepEffect)> = sums
            .into_iter()
            .map(|((step, channel, segment), (position, sent, paid))| {
                (
                    position,
                    StepEffect {
                        step: step.to_string(),
                        channel: channel.to_string(),
                        segment: segment.to_string(),
                        sent,
                        paid_within_3_days: paid[0],
                        paid_within_7_days: paid[1],
                        paid_within_14_days: paid[2],
                    },
                )
            })
            .collect();
        // By lowest position, then step, channel and segment (byte order: the databases
        // here are created in the C.UTF-8 collation, so the reference orders the same way).
        out.sort_by(|(pa, a), (pb, b)| {
            (pa, &a.step, &a.channel, &a.segment).cmp(&(pb, &b.step, &b.channel, &b.segment))
        });
        out.into_iter().map(|(_, effect)| effect).collect()
    }
}

/// Both tables, and when they were read.
#[derive(Debug, Clone)]
pub struct FiguresByDay {
    pub aging: AgingByDay,
    pub effectiveness: EffectivenessByDay,
    pub at: DateTime<Utc>,
}

impl FiguresByDay {
    pub async fn compute(db: &PgPool, at: DateTime<Utc>) -> anyhow::Result<Self> {
        Ok(Self {
            aging: AgingByDay::compute(db).await?,
            effectiveness: EffectivenessByDay::compute(db).await?,
            at,
        })
    }
}
