//! Late-payment interest and the fixed recovery indemnity under French law (Code de commerce
//! L441-10 and D441-5). Owns the computation from dates, rates and payments; it reads no
//! rates from anywhere (the caller passes them) and formats nothing.

use crate::customer::CustomerKind;
use chrono::{Datelike, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};

/// Rates that changed on given dates: the rate in percent in force from each date on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateTable {
    entries: Vec<(NaiveDate, Decimal)>,
}

impl RateTable {
    /// Refuses an empty table or dates not strictly ascending (a typo in a configured table
    /// would otherwise silently pick the wrong rate).
    pub fn new(entries: Vec<(NaiveDate, Decimal)>) -> Result<Self, String> {
        if entries.is_empty() {
            return Err("rate table is empty: give at least one (effective date, rate)".to_string());
        }
        if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 >= pair[1].0) {
            return Err(format!(
                "rate table dates must be strictly ascending: {} is followed by {}",
                pair[0].0, pair[1].0
            ));
        }
        Ok(Self { entries })
    }

    /// The rate in force on `date`: the last one effective on or before it; `None` before
    /// the table starts.
    pub fn rate_on(&self, date: NaiveDate) -> Option<Decimal> {
        let in_force = self.entries.partition_point(|(from, _)| *from <= date);
        in_force
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map(|(_, rate)| *rate)
    }

    pub fn entries(&self) -> &[(NaiveDate, Decimal)] {
        &self.entries
    }

    /// Reads a table from text: one `YYYY-MM-DD rate` line per change (the rate in percent,
    /// a decimal such as `2.15`), in ascending date order; blank lines and `#` comments are
    /// ignored. Errors name the file and the line (`rates.txt:4: ...`).
    pub fn parse(source: &str, file: &str) -> Result<Self, String> {
        let mut entries: Vec<(NaiveDate, Decimal)> = Vec::new();
        for (i, raw) in source.lines().enumerate() {
            let at = |message: String| format!("{file}:{}: {message}", i + 1);
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(date), Some(rate), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(at(format!(
                    "{line:?}: expected a date and a rate, as \"2025-06-11 2.15\""
                )));
            };
            let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| at(format!("{date:?} is not a date as YYYY-MM-DD")))?;
            let rate: Decimal = rate
                .parse()
                .map_err(|_| at(format!("{rate:?} is not a rate in percent such as 2.15")))?;
            if rate.is_sign_negative() || rate > Decimal::ONE_HUNDRED {
                return Err(at(format!("{rate} is not a rate between 0 and 100 percent")));
            }
            if let Some((previous, _)) = entries.last() {
                if *previous >= date {
                    return Err(at(format!(
                        "{date} comes after {previous}: dates must be strictly ascending"
                    )));
                }
            }
            entries.push((date, rate));
        }
        Self::new(entries).map_err(|e| format!("{file}: {e}"))
    }
}

/// The ECB main refinancing operations rate, in percent, from the dates it took effect.
/// Only the built-in default: configuration can replace it with a newer table.
pub fn ecb_main_refinancing_rates() -> RateTable {
    const CHANGES: [(i32, u32, u32, i64); 9] = [
        (2023, 9, 20, 450),
        (2024, 6, 19, 425),
        (2024, 9, 18, 365),
        (2024, 10, 23, 340),
        (2024, 12, 18, 315),
        (2025, 2, 5, 290),
        (2025, 3, 12, 265),
        (2025, 4, 23, 240),
        (2025, 6, 11, 215),
    ];
    // Literal dates, valid and ascending (a test checks both through `RateTable::new`).
    let entries = CHANGES
        .iter()
        .filter_map(|&(y, m, d, hundredths)| {
            NaiveDate::from_ymd_opt(y, m, d).map(|date| (date, Decimal::new(hundredths, 2)))
        })
        .collect();
    RateTable { entries }
}

/// Where the business rate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateBasis {
    /// No rate in the terms of sale: the ECB rate plus `margin_points` (10 by law).
    Statutory { ecb: RateTable, margin_points: Decimal },
    /// The rate stated in the terms of sale.
    Contractual { rate_percent: Decimal },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterestTerms {
    pub basis: RateBasis,
    /// The lowest annual rate a business may be charged: three times the legal interest
    /// rate (L441-10), which changes every half-year; the caller supplies it.
    pub floor_percent: Decimal,
    /// The annual rate charged to consumers (the legal interest rate for individuals).
    pub consumer_rate_percent: Decimal,
}

impl InterestTerms {
    /// The statutory terms: the built-in ECB table plus 10 points.
    pub fn statutory(floor_percent: Decimal, consumer_rate_percent: Decimal) -> Self {
        Self {
            basis: RateBasis::Statutory {
                ecb: ecb_main_refinancing_rates(),
                margin_points: Decimal::TEN,
            },
            floor_percent,
            consumer_rate_percent,
        }
    }
}

/// Why a period carries its rate, to explain the claim to the debtor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSource {
    /// ECB rate of the half-year's reference date plus the margin.
    Statutory,
    Contractual,
    /// The floor, higher than the rate the terms give (or the ECB table does not reach back
    /// to the reference date: the floor never claims more than the law allows).
    Floor,
    Consumer,
}

/// Consecutive days with the same unpaid balance and the same rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterestPeriod {
    /// First day, included.
    pub from: NaiveDate,
    /// Last day, included.
    pub to: NaiveDate,
    pub days: u32,
    pub balance: Decimal,
    pub annual_rate_percent: Decimal,
    pub source: RateSource,
    /// Unrounded: only the total is rounded.
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterestBreakdown {
    /// Periods with a balance owed; days with nothing owed accrue nothing and are left out.
    pub periods: Vec<InterestPeriod>,
    pub unrounded_total: Decimal,
    /// Rounded half-even to the cent.
    pub total: Decimal,
}

/// Days in the year of the day count: each day earns 1/365 of the annual rate, leap years
/// included (actual/365 fixed). The law sets no day count; this is the usual practice.
pub const DAYS_PER_YEAR: i64 = 365;

/// Half-even to the cent, as banks and the law expect; applied to totals only.
pub fn round_to_cents(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
}

/// L441-10: the ECB rate in force on 1 January applies to the whole first half-year, the
/// one in force on 1 July to the second, whatever the ECB decides in between.
fn half_year_reference(day: NaiveDate) -> NaiveDate {
    let month = if day.month() <= 6 { 1 } else { 7 };
    NaiveDate::from_ymd_opt(day.year(), month, 1).unwrap_or(day)
}

fn annual_rate(terms: &InterestTerms, kind: CustomerKind, day: NaiveDate) -> (Decimal, RateSource) {
    // The floor of L441-10 protects suppliers between businesses; consumers owe the legal
    // rate for individuals, which the caller passes as is.
    if kind == CustomerKind::Consumer {
        return (terms.consumer_rate_percent, RateSource::Consumer);
    }
    let from_terms = match &terms.basis {
        RateBasis::Statutory { ecb, margin_points } => ecb
            .rate_on(half_year_reference(day))
            .map(|rate| (rate.saturating_add(*margin_points), RateSource::Statutory)),
        RateBasis::Contractual { rate_percent } => Some((*rate_percent, RateSource::Contractual)),
    };
    match from_terms {
        Some((rate, source)) if rate >= terms.floor_percent => (rate, source),
        _ => (terms.floor_percent, RateSource::Floor),
    }
}

/// balance × rate (percent) × days, the numerator of a period's interest; dividing by 100 ×
/// 365 once, on the sum, keeps the total exact until the final rounding. Saturates instead of
/// overflowing: only amounts near 10^28 could, and those are no invoices.
fn numerator(balance: Decimal, rate_percent: Decimal, days: u32) -> Decimal {
    balance
        .saturating_mul(rate_percent)
        .saturating_mul(Decimal::from(days))
}

fn per_year_divisor() -> Decimal {
    Decimal::from(100 * DAYS_PER_YEAR)
}

/// Simple late-payment interest on `principal` due on `due_on`, from the day after it
/// through `as_of` included. Each day earns on the balance unpaid at its end (a payment
/// received on day D counts from D on; payments on or before the due date reduce the
/// starting balance; those after `as_of` are ignored), at the annual rate of that day:
/// for a business the statutory rate of its half-year or the contractual rate, never below
/// the floor; for a consumer `consumer_rate_percent`. Interest accrued stays owed once the
/// principal is paid: payment stops accrual, it does not erase it. Summed at full
/// precision and rounded half-even to the cent only at the end.
pub fn late_interest(
    terms: &InterestTerms,
    kind: CustomerKind,
    principal: Decimal,
    due_on: NaiveDate,
    payments: &[(NaiveDate, Decimal)],
    as_of: NaiveDate,
) -> InterestBreakdown {
    let mut payments = payments.to_vec();
    payments.sort_by_key(|(date, _)| *date);
    let mut pending = payments.iter().peekable();

    let mut balance = principal;
    let mut periods: Vec<InterestPeriod> = Vec::new();
    let mut total_numerator = Decimal::ZERO;

    let days = due_on.iter_days().skip(1).take_while(|day| *day <= as_of);
    for day in days {
        while let Some((_, amount)) = pending.next_if(|(paid_on, _)| *paid_on <= day) {
            balance = balance.saturating_sub(*amount);
        }
        let owed = balance.max(Decimal::ZERO);
        if owed.is_zero() {
            continue;
        }
        let (rate, source) = annual_rate(terms, kind, day);
        total_numerator = total_numerator.saturating_add(numerator(owed, rate, 1));
        match periods.last_mut() {
            Some(p)
                if p.balance == owed
                    && p.annual_rate_percent == rate
                    && p.source == source
                    && p.to.succ_opt() == Some(day) =>
            {
                p.to = day;
                p.days += 1;
            }
            _ => periods.push(InterestPeriod {
                from: day,
                to: day,
                days: 1,
                balance: owed,
                annual_rate_percent: rate,
                source,
                amount: Decimal::ZERO,
            }),
        }
    }

    for p in &mut periods {
        p.amount = numerator(p.balance, p.annual_rate_percent, p.days) / per_year_divisor();
    }
    let unrounded_total = total_numerator / per_year_divisor();
    InterestBreakdown {
        periods,
        unrounded_total,
        total: round_to_cents(unrounded_total),
    }
}

/// The fixed indemnity for recovery costs (D441-5): 40 EUR per late invoice for a business,
/// owed in full from the first day late, so partial payments do not reduce it. Nothing for
/// a consumer: recovery costs may not be charged to consumers.
pub fn recovery_indemnity(kind: CustomerKind) -> Decimal {
    match kind {
        CustomerKind::Business => Decimal::from(40),
        CustomerKind::Consumer => Decimal::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// Illustrative floor and consumer rate, not the official figures of any half-year.
    fn statutory() -> InterestTerms {
        InterestTerms::statutory(dec("8.28"), dec("6.65"))
    }

    fn contractual(rate: &str, floor: &str) -> InterestTerms {
        InterestTerms {
            basis: RateBasis::Contractual {
                rate_percent: dec(rate),
            },
            floor_percent: dec(floor),
            consumer_rate_percent: dec("6.65"),
        }
    }

    #[test]
    fn the_default_ecb_table_is_valid_and_complete() {
        let table = ecb_main_refinancing_rates();
        assert_eq!(table.entries().len(), 9);
        assert_eq!(RateTable::new(table.entries().to_vec()), Ok(table.clone()));
        assert_eq!(table.rate_on(date(2023, 9, 19)), None);
        assert_eq!(table.rate_on(date(2023, 9, 20)), Some(dec("4.50")));
        assert_eq!(table.rate_on(date(2024, 7, 1)), Some(dec("4.25")));
        assert_eq!(table.rate_on(date(2025, 1, 1)), Some(dec("3.15")));
        assert_eq!(table.rate_on(date(2025, 6, 10)), Some(dec("2.40")));
        assert_eq!(table.rate_on(date(2025, 7, 1)), Some(dec("2.15")));
        assert_eq!(table.rate_on(date(2026, 1, 1)), Some(dec("2.15")));
    }

    #[test]
    fn a_rate_table_must_be_ascending_and_not_empty() {
        assert!(RateTable::new(vec![]).unwrap_err().contains("empty"));
        let unordered = vec![(date(2025, 2, 5), dec("2.90")), (date(2024, 12, 18), dec("3.15"))];
        assert!(RateTable::new(unordered)
            .unwrap_err()
            .contains("2025-02-05 is followed by 2024-12-18"));
        let repeated = vec![(date(2025, 2, 5), dec("2.90")), (date(2025, 2, 5), dec("2.65"))];
        assert!(RateTable::new(repeated).is_err());
    }

    #[test]
    fn a_unpaid_invoice_accrues_at_ecb_plus_ten() {
        // (a) 10 000.00 due 31 Jan 2026, unpaid, as of 2 Mar 2026: 1 Feb..2 Mar = 28 + 2 = 30
        // days. H1 2026 uses the ECB rate in force on 1 Jan 2026 (2.15) + 10 = 12.15 %.
        // 10 000 × 12.15 % × 30 / 365 = 3 645 000 / 36 500 = 99.8630136… → 99.86.
        let b = late_interest(
            &statutory(),
            CustomerKind::Business,
            dec("10000.00"),
            date(2026, 1, 31),
            &[],
            date(2026, 3, 2),
        );
        assert_eq!(b.total, dec("99.86"));
        assert_eq!(b.unrounded_total.round_dp(10), dec("99.8630136986"));
        assert_eq!(
            b.periods,
            vec![InterestPeriod {
                from: date(2026, 2, 1),
                to: date(2026, 3, 2),
                days: 30,
                balance: dec("10000.00"),
                annual_rate_percent: dec("12.15"),
                source: RateSource::Statutory,
                amount: b.unrounded_total,
            }]
        );
    }

    #[test]
    fn a_partial_payment_lowers_the_balance_from_its_day() {
        // (b) Same invoice, 4 000.00 received on 15 Feb 2026.
        // 1..14 Feb: 14 days on 10 000; 15 Feb..2 Mar: 14 + 2 = 16 days on 6 000.
        // (10 000 × 14 + 6 000 × 16) × 12.15 / 36 500 = 236 000 × 12.15 / 36 500
        // = 2 867 400 / 36 500 = 78.5589041… → 78.56.
        let b = late_interest(
            &statutory(),
            CustomerKind::Business,
            dec("10000.00"),
            date(2026, 1, 31),
            &[(date(2026, 2, 15), dec("4000.00"))],
            date(2026, 3, 2),
        );
        assert_eq!(b.total, dec("78.56"));
        let shape: Vec<_> = b
            .periods
            .iter()
            .map(|p| (p.from, p.to, p.days, p.balance))
            .collect();
        assert_eq!(
            shape,
            vec![
                (date(2026, 2, 1), date(2026, 2, 14), 14, dec("10000.00")),
                (date(2026, 2, 15), date(2026, 3, 2), 16, dec("6000.00")),
            ]
        );
    }

    #[test]
    fn each_half_year_has_its_own_rate() {
        // (c) 10 000.00 due 20 Jun 2025, as of 10 Jul 2025.
        // 21..30 Jun: 10 days at 3.15 (ECB on 1 Jan 2025) + 10 = 13.15 %;
        // 1..10 Jul: 10 days at 2.15 (ECB on 1 Jul 2025) + 10 = 12.15 %.
        // 10 000 × 10 × (13.15 + 12.15) / 36 500 = 2 530 000 / 36 500 = 69.3150684… → 69.32.
        let b = late_interest(
            &statutory(),
            CustomerKind::Business,
            dec("10000.00"),
            date(2025, 6, 20),
            &[],
            date(2025, 7, 10),
        );
        assert_eq!(b.total, dec("69.32"));
        let rates: Vec<_> = b
            .periods
            .iter()
            .map(|p| (p.days, p.annual_rate_percent))
            .collect();
        assert_eq!(rates, vec![(10, dec("13.15")), (10, dec("12.15"))]);
    }

    #[test]
    fn ecb_changes_within_a_half_year_do_not_apply_until_the_next() {
        // 10 000.00 due 30 Sep 2024, as of 31 Oct 2024: the ECB cut to 3.40 on 23 Oct, but
        // H2 2024 keeps the rate in force on 1 Jul 2024 (4.25): 14.25 % for all 31 days.
        // 10 000 × 14.25 × 31 / 36 500 = 4 417 500 / 36 500 = 121.0273972… → 121.03.
        let b = late_interest(
            &statutory(),
            CustomerKind::Business,
            dec("10000.00"),
            date(2024, 9, 30),
            &[],
            date(2024, 10, 31),
        );
        assert_eq!(b.total, dec("121.03"));
        assert_eq!(b.periods.len(), 1);
    }

    #[test]
    fn a_rate_below_the_floor_is_raised_to_it() {
        // (d) Contractual 5 % against a floor of 8.28 %, 30 days on 10 000.00:
        // 10 000 × 8.28 × 30 / 36 500 = 2 484 000 / 36 500 = 68.0547945… → 68.05.
        let b = late_interest(
            &contractual("5", "8.28"),
            CustomerKind::Business,
            dec("10000.00"),
            date(2026, 1, 31),
            &[],
            date(2026, 3, 2),
        );
        assert_eq!(b.total, dec("68.05"));
        assert_eq!(b.periods[0].annual_rate_percent, dec("8.28"));
        assert_eq!(b.periods[0].source, RateSource::Floor);
        // Above the floor the contract rules: 10 000 × 15 × 30 / 36 500 = 123.2876… → 123.29.
        let above = late_interest(
            &contractual("15", "8.28"),
            CustomerKind::Business,
            dec("10000.00"),
            date(2026, 1, 31),
            &[],
            date(2026, 3, 2),
        );
        assert_eq!(above.total, dec("123.29"));
        assert_eq!(above.periods[0].source, RateSource::Contractual);
        // The statutory rate too: a 13 % floor beats 12.15 %. 3 900 000 / 36 500 = 106.849… → 106.85.
        let mut high_floor = statutory();
        high_floor.floor_percent = dec("13");
        let b = late_interest(
            &high_floor,
            CustomerKind::Business,
            dec("10000.00"),
            date(2026, 1, 31),
            &[],
            date(2026, 3, 2),
        );
        assert_eq!(b.total, dec("106.85"));
    }

    #[test]
    fn without_an_ecb_rate_the_floor_applies() {
        // The default table starts in September 2023: H1 2023 has no reference rate.
        // 10 000 × 8.28 × 10 / 36 500 = 828 000 / 36 500 = 22.684… → 22.68.
        let b = late_interest(
            &statutory(),
            CustomerKind::Business,
            dec("10000.00"),
            date(2023, 3, 1),
            &[],
            date(2023, 3, 11),
        );
        assert_eq!(b.total, dec("22.68"));
        assert_eq!(b.periods[0].source, RateSource::Floor);
    }

    #[test]
    fn a_consumer_owes_the_consumer_rate_and_no_indemnity() {
        // (e) 30 days on 10 000.00 at 6.65 %, whatever the floor and the ECB:
        // 10 000 × 6.65 × 30 / 36 500 = 1 995 000 / 36 500 = 54.6575342… → 54.66.
        let b = late_interest(
            &statutory(),
            CustomerKind::Consumer,
            dec("10000.00"),
            date(2026, 1, 31),
            &[],
            date(2026, 3, 2),
        );
        assert_eq!(b.total, dec("54.66"));
        assert_eq!(b.periods[0].source, RateSource::Consumer);
        assert_eq!(recovery_indemnity(CustomerKind::Consumer), Decimal::ZERO);
        assert_eq!(recovery_indemnity(CustomerKind::Business), dec("40"));
    }

    #[test]
    fn paying_the_principal_stops_accrual_but_keeps_what_accrued() {
        // (f) 10 000.00 paid in full on 11 Feb 2026: 1..10 Feb = 10 days on 10 000 at 12.15 %.
        // 10 000 × 12.15 × 10 / 36 500 = 1 215 000 / 36 500 = 33.2876712… → 33.29.
        let paid = [(date(2026, 2, 11), dec("10000.00"))];
        for as_of in [date(2026, 2, 11), date(2026, 3, 2), date(2026, 12, 31)] {
            let b = late_interest(
                &statutory(),
                CustomerKind::Business,
                dec("10000.00"),
                date(2026, 1, 31),
                &paid,
                as_of,
            );
            assert_eq!(b.total, dec("33.29"), "{as_of}");
            assert_eq!(b.periods.len(), 1);
            assert_eq!(b.periods[0].to, date(2026, 2, 10));
        }
    }

    #[test]
    fn the_total_is_rounded_half_even_only_at_the_end() {
        // (g) Contractual 10 %, no floor, one day late: balance × 10 / 36 500 = balance / 3 650.
        // 456.25 / 3 650 = 0.125 exactly → 0.12 (half to even, not up);
        // 492.75 / 3 650 = 0.135 exactly → 0.14.
        for (balance, unrounded, rounded) in [("456.25", "0.125", "0.12"), ("492.75", "0.135", "0.14")] {
            let b = late_interest(
                &contractual("10", "0"),
                CustomerKind::Business,
                dec(balance),
                date(2026, 1, 31),
                &[],
                date(2026, 2, 1),
            );
            assert_eq!(b.unrounded_total, dec(unrounded));
            assert_eq!(b.total, dec(rounded));
        }
        assert_eq!(round_to_cents(dec("2.345")), dec("2.34"));
        assert_eq!(round_to_cents(dec("2.355")), dec("2.36"));
        assert_eq!(round_to_cents(dec("2.3451")), dec("2.35"));
        // Three days at 0.0043 each: rounding each day (0.00) would lose the 0.0129 → 0.01.
        let small = late_interest(
            &contractual("10", "0"),
            CustomerKind::Business,
            dec("15.695"),
            date(2026, 1, 31),
            &[],
            date(2026, 2, 3),
        );
        assert_eq!(small.total, dec("0.01"));
    }

    #[test]
    fn nothing_accrues_on_or_before_the_due_date_or_when_paid_early() {
        for as_of in [date(2026, 1, 1), date(2026, 1, 31)] {
            let b = late_interest(
                &statutory(),
                CustomerKind::Business,
                dec("10000.00"),
                date(2026, 1, 31),
                &[],
                as_of,
            );
            assert_eq!(b.total, Decimal::ZERO);
            assert!(b.periods.is_empty());
        }
        // Overpaid before the due date: nothing owed, and no negative interest.
        let b = late_interest(
            &statutory(),
            CustomerKind::Business,
            dec("10000.00"),
            date(2026, 1, 31),
            &[(date(2026, 1, 20), dec("12000.00"))],
            date(2026, 3, 2),
        );
        assert_eq!(b.total, Decimal::ZERO);
    }

    proptest! {
        #[test]
        fn interest_grows_with_time_and_shrinks_with_payments(
            cents in 1i64..100_000_000,
            late_days in 0u64..1500,
            more_days in 0u64..400,
            paid_after in 0u64..1500,
            paid_cents in 0i64..100_000_000,
        ) {
            let principal = Decimal::new(cents, 2);
            let due_on = date(2024, 1, 15);
            let as_of = due_on + chrono::Days::new(late_days);
            let later = as_of + chrono::Days::new(more_days);
            let payment = [(due_on + chrono::Days::new(paid_after), Decimal::new(paid_cents, 2))];
            let terms = statutory();
            let now = late_interest(&terms, CustomerKind::Business, principal, due_on, &[], as_of);
            let after = late_interest(&terms, CustomerKind::Business, principal, due_on, &[], later);
            let with_payment = late_interest(&terms, CustomerKind::Business, principal, due_on, &payment, as_of);
            prop_assert!(now.total <= after.total);
            prop_assert!(with_payment.total <= now.total);
            prop_assert!(now.total >= Decimal::ZERO);
            let days: u32 = now.periods.iter().map(|p| p.days).sum();
            prop_assert_eq!(u64::from(days), late_days);
            let summed: Decimal = now.periods.iter().map(|p| p.amount).sum();
            prop_assert!((summed - now.unrounded_total).abs() < dec("0.000000001"));
        }
    }

    #[test]
    fn a_rate_file_is_read_and_its_mistakes_name_their_line() {
        let table = RateTable::parse(
            "# ECB main refinancing rate\n2025-04-23 2.40\n\n2025-06-11 2.15 # June cut\n",
            "rates.txt",
        )
        .unwrap();
        assert_eq!(table.rate_on(date(2025, 7, 1)), Some(dec("2.15")));
        assert_eq!(table.rate_on(date(2025, 5, 1)), Some(dec("2.40")));
        let error = |source: &str| RateTable::parse(source, "rates.txt").unwrap_err();
        assert_eq!(
            error("2025-06-11 2.15\n2025-13-01 2.00\n"),
            "rates.txt:2: \"2025-13-01\" is not a date as YYYY-MM-DD"
        );
        assert!(error("2025-06-11 two\n").starts_with("rates.txt:1: \"two\" is not a rate"));
        assert!(error("2025-06-11\n").starts_with("rates.txt:1: \"2025-06-11\": expected a date and a rate"));
        assert!(error("2025-06-11 2.15\n2025-04-23 2.40\n")
            .starts_with("rates.txt:2: 2025-04-23 comes after 2025-06-11"));
        assert!(error("2025-06-11 -1\n").contains("between 0 and 100"));
        assert!(error("# nothing\n").contains("empty"));
    }
}
