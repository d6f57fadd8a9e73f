//! The console's figures: amounts outstanding by aging bucket (today, or as of a past date
//! from the payments and credit notes recorded by then), DSO by the countback method, and
//! the effectiveness of each policy step. Read-only; the same queries can feed the
//! collections dashboard.

use anyhow::Context;
use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgExecutor;
use std::collections::BTreeMap;

/// The months of sales the DSO's countback looks back over unless told otherwise (the
/// console's default and the `relance_dso_days` gauge's).
pub const DSO_MONTHS: u32 = 12;

/// The days of sends the steps' effectiveness looks at unless told otherwise, up to the end
/// of today (the console's default and the `relance_step_paid_within_days_ratio` gauge's).
pub const EFFECTIVENESS_DAYS: u64 = 90;

/// The default window of [`effectiveness`] at `today`: from midnight [`EFFECTIVENESS_DAYS`]
/// before tomorrow to midnight tomorrow (UTC).
pub fn effectiveness_window(today: NaiveDate) -> (NaiveDate, NaiveDate) {
    let to = today.succ_opt().unwrap_or(today);
    let from = to.checked_sub_days(Days::new(EFFECTIVENESS_DAYS)).unwrap_or(to);
    (from, to)
}

/// The aging buckets, by whole days past the due date at the chosen day.
pub const AGING_BUCKETS: [&str; 6] = ["not_due", "1_15", "16_30", "31_60", "61_90", "over_90"];

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgingRow {
    pub currency: String,
    pub segment: String,
    pub bucket: String,
    pub invoices: i64,
    pub outstanding: Decimal,
}

const BUCKET_SQL: &str = "CASE WHEN $1::date - i.due_on <= 0 THEN 'not_due'
        WHEN $1::date - i.due_on <= 15 THEN '1_15'
        WHEN $1::date - i.due_on <= 30 THEN '16_30'
        WHEN $1::date - i.due_on <= 60 THEN '31_60'
        WHEN $1::date - i.due_on <= 90 THEN '61_90'
        ELSE 'over_90' END";

/// What was outstanding on `as_of` (end of that day), per currency, segment and bucket.
/// Today's figures come from the open invoices' balances; a past day's from each invoice
/// issued by then, less the payments received and credit notes issued by then, leaving out
/// the invoices closed or handed off by then.
pub async fn aging(
    db: impl PgExecutor<'_>,
    as_of: NaiveDate,
    today: NaiveDate,
) -> anyhow::Result<Vec<AgingRow>> {
    let sql = if as_of >= today {
        format!(
            "SELECT trim(i.currency) AS currency, c.risk AS segment, {BUCKET_SQL} AS bucket,
                    count(*) AS invoices, sum(i.balance) AS outstanding
             FROM invoices i JOIN customers c ON c.id = i.customer_id
             WHERE i.status = 'open' AND i.balance > 0
             GROUP BY 1, 2, 3"
        )
    } else {
        format!(
            "SELECT trim(i.currency) AS currency, c.risk AS segment, {BUCKET_SQL} AS bucket,
                    count(*) AS invoices, sum(i.outstanding) AS outstanding
             FROM (SELECT i.id, i.customer_id, i.currency, i.due_on,
                          i.amount - coalesce(p.paid, 0) - coalesce(n.credited, 0) AS outstanding
                   FROM invoices i
                   LEFT JOIN (SELECT invoice_id, sum(amount) AS paid FROM payments
                              WHERE received_on <= $1 GROUP BY 1) p ON p.invoice_id = i.id
                   LEFT JOIN (SELECT invoice_id, sum(amount) AS credited FROM credit_notes
                              WHERE issued_on <= $1 GROUP BY 1) n ON n.invoice_id = i.id
                   WHERE i.issued_on <= $1
                     AND NOT (i.status IN ('closed', 'handed_off')
                              AND coalesce(i.status_changed_at::date <= $1, false))) i
             JOIN customers c ON c.id = i.customer_id
             WHERE i.outstanding > 0
             GROUP BY 1, 2, 3"
        )
    };
    let rows: Vec<(String, String, String, i64, Decimal)> = sqlx::query_as(&sql)
        .bind(as_of)
        .fetch_all(db)
        .await
        .context("reading the aging")?;
    let mut out: Vec<AgingRow> = rows
        .into_iter()
        .map(|(currency, segment, bucket, invoices, outstanding)| AgingRow {
            currency,
            segment,
            bucket,
            invoices,
            outstanding,
        })
        .collect();
    let rank = |b: &str| {
        AGING_BUCKETS
            .iter()
            .position(|x| *x == b)
            .unwrap_or(AGING_BUCKETS.len())
    };
    out.sort_by(|a, b| {
        (&a.currency, &a.segment, rank(&a.bucket)).cmp(&(&b.currency, &b.segment, rank(&b.bucket)))
    });
    Ok(out)
}

/// The invoices issued in one period of the countback, and how many of its days it counts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CountbackPeriod {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub sales: Decimal,
    /// Days of this period counted into the DSO (all of them, or the share the remaining
    /// receivables cover).
    pub days_counted: Decimal,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Dso {
    pub currency: String,
    pub as_of: NaiveDate,
    pub receivables: Decimal,
    /// Days of sales the receivables amount to; `None` when the months looked at do not
    /// cover them (the DSO is then over `days_counted`).
    pub dso_days: Option<Decimal>,
    pub days_counted: Decimal,
    pub periods: Vec<CountbackPeriod>,
}

/// The countback: the receivables at the end are matched against the sales of the latest
/// period, then the one before, and so on; each period whose sales they exceed counts in
/// full, the last one in proportion. `periods` come newest first as (from, to, sales).
pub fn countback(
    receivables: Decimal,
    periods: &[(NaiveDate, NaiveDate, Decimal)],
) -> (Option<Decimal>, Vec<CountbackPeriod>) {
    let mut left = receivables;
    let mut total = Decimal::ZERO;
    let mut out = Vec::new();
    for &(from, to, sales) in periods {
        if left <= Decimal::ZERO {
            break;
        }
        let days = Decimal::from((to - from).num_days() + 1);
        let counted = if sales > left { days * left / sales } else { days };
        left -= sales.min(left);
        total += counted;
        out.push(CountbackPeriod {
            from,
            to,
            sales,
            days_counted: counted.round_dp(1),
        });
    }
    let dso = (left <= Decimal::ZERO).then(|| total.round_dp(1));
    (dso, out)
}

/// The periods of the countback ending on `as_of`: the month so far, then `months - 1` whole
/// months before it, newest first.
fn periods_back(as_of: NaiveDate, months: u32) -> Vec<(NaiveDate, NaiveDate)> {
    let mut out = Vec::new();
    let mut to = as_of;
    for _ in 0..months {
        let Some(from) = to.with_day(1) else { break };
        out.push((from, to));
        match from.checked_sub_days(Days::new(1)) {
            Some(previous) => to = previous,
            None => break,
        }
    }
    out
}

/// The first day of the countback of `months` months ending on `as_of` (the sales read).
pub fn oldest_countback_day(as_of: NaiveDate, months: u32) -> Option<NaiveDate> {
    periods_back(as_of, months).last().map(|&(oldest, _)| oldest)
}

/// The most months a DSO's countback may look back over.
pub const DSO_MAX_MONTHS: u32 = 60;

/// Sales (invoices issued) per currency and month (its first day), over the
/// `months` months of the countback ending on `as_of` (see [`periods_back`]).
pub async fn monthly_sales(
    db: impl PgExecutor<'_>,
    as_of: NaiveDate,
    months: u32,
) -> anyhow::Result<Vec<(String, NaiveDate, Decimal)>> {
    let Some(oldest) = oldest_countback_day(as_of, months) else {
        return Ok(Vec::new());
    };
    // Sales per currency and month, through the (issued_on) index.
    sqlx::query_as(
        "SELECT trim(currency), date_trunc('month', issued_on)::date, sum(amount) FROM invoices
         WHERE issued_on BETWEEN $1 AND $2 GROUP BY 1, 2",
    )
    .bind(oldest)
    .bind(as_of)
    .fetch_all(db)
    .await
    .context("reading the sales per month")
}

/// DSO per currency on `as_of`, by countback over at most `months` months of sales; `aging`
/// is that day's aging (its receivables).
pub async fn dso(
    db: impl PgExecutor<'_>,
    as_of: NaiveDate,
    aging: &[AgingRow],
    months: u32,
) -> anyhow::Result<Vec<Dso>> {
    let sales = monthly_sales(db, as_of, months).await?;
    Ok(dso_of_sales(as_of, aging, &sales, months))
}

/// [`dso`] from the sales per month ([`monthly_sales`] over `months` months or more: the
/// older ones are not counted).
pub fn dso_of_sales(
    as_of: NaiveDate,
    aging: &[AgingRow],
    sales: &[(String, NaiveDate, Decimal)],
    months: u32,
) -> Vec<Dso> {
    let receivables: BTreeMap<String, Decimal> = aging.iter().fold(BTreeMap::new(), |mut acc, row| {
        *acc.entry(row.currency.clone()).or_default() += row.outstanding;
        acc
    });
    let periods = periods_back(as_of, months);
    if periods.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (currency, owed) in receivables {
        let series: Vec<(NaiveDate, NaiveDate, Decimal)> = periods
            .iter()
            .map(|&(from, to)| {
                let s = sales
                    .iter()
                    .filter(|(c, month, _)| *c == currency && *month == from)
                    .map(|(_, _, amount)| *amount)
                    .sum();
                (from, to, super::cents(s))
            })
            .collect();
        let owed = super::cents(owed);
        let (dso_days, periods) = countback(owed, &series);
        out.push(Dso {
            currency,
            as_of,
            receivables: owed,
            dso_days,
            days_counted: periods.iter().map(|p| p.days_counted).sum(),
            periods,
        });
    }
    out
}

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct StepEffect {
    pub step: String,
    pub channel: String,
    pub segment: String,
    pub sent: i64,
    pub paid_within_3_days: i64,
    pub paid_within_7_days: i64,
    pub paid_within_14_days: i64,
}

/// For each policy step, channel (the one it went out on, after any fallback) and segment:
/// how many went out between `from` and `to`, and how many of those invoices were settled
/// within 3, 7 and 14 days after.
pub async fn effectiveness(
    db: impl PgExecutor<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<StepEffect>> {
    sqlx::query_as(
        "SELECT s.name AS step, coalesce(r.channel, s.channel) AS channel, c.risk AS segment,
                count(*) AS sent,
                count(*) FILTER (WHERE i.settled_at <= s.emitted_at + interval '3 days') AS paid_within_3_days,
                count(*) FILTER (WHERE i.settled_at <= s.emitted_at + interval '7 days') AS paid_within_7_days,
                count(*) FILTER (WHERE i.settled_at <= s.emitted_at + interval '14 days') AS paid_within_14_days
         FROM reminder_steps s
         JOIN invoices i ON i.id = s.invoice_id
         JOIN customers c ON c.id = i.customer_id
         LEFT JOIN rendered_messages r ON r.step_id = s.id
         WHERE s.kind = 'reminder' AND s.status = 'sent' AND s.emitted_at >= $1 AND s.emitted_at < $2
         GROUP BY 1, 2, 3 ORDER BY min(s.position), 1, 2, 3",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await
    .context("reading the steps' effectiveness")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, day).unwrap()
    }

    #[test]
    fn countback_counts_whole_months_then_the_share_of_the_last() {
        // 15 days of March sold 1000, February 2800 over 28 days: receivables of 2400 are
        // March's 1000 (15 days) and half of February (14 days).
        let periods = [
            (d(3, 1), d(3, 15), Decimal::from(1000)),
            (d(2, 1), d(2, 28), Decimal::from(2800)),
        ];
        let (dso, used) = countback(Decimal::from(2400), &periods);
        assert_eq!(dso, Some(Decimal::from(29)));
        assert_eq!(used.len(), 2);
        // More owed than all the sales looked at: no figure, only a floor.
        let (dso, _) = countback(Decimal::from(9999), &periods);
        assert_eq!(dso, None);
    }

    #[test]
    fn periods_go_back_month_by_month() {
        assert_eq!(
            periods_back(d(3, 15), 3),
            vec![(d(3, 1), d(3, 15)), (d(2, 1), d(2, 28)), (d(1, 1), d(1, 31))]
        );
    }

    #[test]
    fn a_dso_over_fewer_months_counts_only_those_of_the_sales_read() {
        let aging = [AgingRow {
            currency: "EUR".into(),
            segment: "medium".into(),
            bucket: "not_due".into(),
            invoices: 1,
            outstanding: Decimal::from(2400),
        }];
        let sales = [
            ("EUR".to_string(), d(3, 1), Decimal::from(1000)),
            ("EUR".to_string(), d(2, 1), Decimal::from(2800)),
        ];
        let two = dso_of_sales(d(3, 15), &aging, &sales, 2);
        assert_eq!(two[0].dso_days, Some(Decimal::from(29)));
        // One month only: March's sales do not cover the receivables.
        let one = dso_of_sales(d(3, 15), &aging, &sales, 1);
        assert_eq!((one[0].dso_days, one[0].periods.len()), (None, 1));
    }
}
