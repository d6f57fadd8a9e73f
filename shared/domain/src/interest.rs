//! Late-payment interest and the fixed recovery indemnity under French law (Code de commerce
//! L441-10 and D441-5). Owns the computation from dates, rates and payments; it reads no
//! rates from anywhere (the caller passes them) and formats nothing.

use crate::customer::CustomerKind;
use crate::legal_rates::{LegalRates, RatesOn};
use chrono::NaiveDate;
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

/// The ECB main refinancing operations rate, in percent, from the dates it took effect
/// (since June 2014). Only the built-in default: `RELANCE_ECB_RATES_FILE` can replace it.
pub fn ecb_main_refinancing_rates() -> RateTable {
    const CHANGES: [(i32, u32, u32, i64); 21] = [
        (2014, 6, 11, 15),
        (2014, 9, 10, 5),
        (2016, 3, 16, 0),
        (2022, 7, 27, 50),
        (2022, 9, 14, 125),
        (2022, 11, 2, 200),
        (2022, 12, 21, 250),
        (2023, 2, 8, 300),
        (2023, 3, 22, 350),
        (2023, 5, 10, 375),
        (2023, 6, 21, 400),
        (2023, 8, 2, 425),
        (2023, 9, 20, 450),
        (2024, 6, 12, 425),
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
    /// No rate in the terms of sale: the ECB reference rate of the half-year plus
    /// `margin_points` (10 by law).
    Statutory { margin_points: Decimal },
    /// The rate stated in the terms of sale (the creditor's, or the one agreed with this
    /// customer).
    Contractual { rate_percent: Decimal },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterestTerms {
    pub basis: RateBasis,
    /// The dated rates of each half-year: ECB reference, legal interest rates, the floor.
    pub rates: LegalRates,
    /// Deprecated single values (`RELANCE_INTEREST_FLOOR_PERCENT`,
    /// `RELANCE_INTEREST_CONSUMER_PERCENT`): when set, they replace every half-year's floor,
    /// or legal rate for consumers' debts.
    pub floor_override: Option<Decimal>,
    pub consumer_override: Option<Decimal>,
}

impl InterestTerms {
    /// The statutory terms: ECB reference + 10 points, on the built-in table.
    pub fn statutory() -> Self {
        Self {
            basis: RateBasis::Statutory {
                margin_points: Decimal::TEN,
            },
            rates: LegalRates::built_in(),
            floor_override: None,
            consumer_override: None,
        }
    }

    /// The rate of the terms of sale, on the built-in table (for the floor).
    pub fn contractual(rate_percent: Decimal) -> Self {
        Self {
            basis: RateBasis::Contractual { rate_percent },
            ..Self::statutory()
        }
    }

    /// These terms with the rate agreed with one customer, when there is one.
    pub fn for_customer(&self, contract_rate_percent: Option<Decimal>) -> Self {
        match contract_rate_percent {
            Some(rate_percent) => Self {
                basis: RateBasis::Contractual { rate_percent },
                ..self.clone()
            },
            None => self.clone(),
        }
    }
}

/// Why a period carries its rate, to explain the claim to the debtor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSource {
    /// ECB rate of the half-year's reference date plus the margin.
    Statutory,
    Contractual,
    /// The floor, higher than the rate the terms of sale give (it bounds contractual rates).
    Floor,
    /// The legal interest rate (a consumer's debt, from the formal notice on).
    Legal,
}

impl RateSource {
    /// The name messages and `invoice.handed_off` give it (`interest_rate_basis`).
    pub fn as_str(self) -> &'static str {
        match self {
            RateSource::Statutory => "statutory",
            RateSource::Contractual => "contract",
            RateSource::Floor => "floor",
            RateSource::Legal => "legal",
        }
    }
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
    /// False when the rate table lacks this half-year and the nearest one's rates were used.
    pub rates_known: bool,
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

/// The annual rate of `day` and why, and whether the table had its half-year. L441-10: the
/// ECB rate in force on 1 January applies to the whole first half-year, the one in force on
/// 1 July to the second, whatever the ECB decides in between.
fn annual_rate(terms: &InterestTerms, kind: CustomerKind, day: NaiveDate) -> (Decimal, RateSource, bool) {
    let RatesOn { rates, known } = terms.rates.on(day);
    // A consumer's debt bears the legal interest rate (Code civil 1231-6): the rate for "all
    // other cases", since the creditor is a company. The floor of L441-10 protects suppliers
    // between businesses only.
    if kind == CustomerKind::Consumer {
        let rate = terms.consumer_override.unwrap_or(rates.legal_other);
        return (rate, RateSource::Legal, known);
    }
    match &terms.basis {
        // Without a rate in the terms of sale, the law's rate applies as it is: the floor
        // bounds what a contract may set, not the statutory rate.
        RateBasis::Statutory { margin_points } => (
            rates.ecb_reference.saturating_add(*margin_points),
            RateSource::Statutory,
            known,
        ),
        RateBasis::Contractual { rate_percent } => {
            let floor = terms.floor_override.unwrap_or_else(|| rates.floor());
            if *rate_percent >= floor {
                (*rate_percent, RateSource::Contractual, known)
            } else {
                (floor, RateSource::Floor, known)
            }
        }
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

/// Simple late-payment interest on `principal` from the day after `accrues_after` (the due
/// date, or for a consumer the formal notice) through `as_of` included. Each day earns on
/// the balance unpaid at its end (a payment received on day D counts from D on; payments on
/// or before `accrues_after` reduce the starting balance; those after `as_of` are ignored),
/// at the annual rate of that day's half-year: for a business the statutory rate, or the
/// contractual rate never below the floor; for a consumer the legal interest rate. Interest accrued stays owed once the
/// principal is paid: payment stops accrual, it does not erase it. Summed at full
/// precision and rounded half-even to the cent only at the end.
pub fn late_interest(
    terms: &InterestTerms,
    kind: CustomerKind,
    principal: Decimal,
    accrues_after: NaiveDate,
    payments: &[(NaiveDate, Decimal)],
    as_of: NaiveDate,
) -> InterestBreakdown {
    let mut payments = payments.to_vec();
    payments.sort_by_key(|(date, _)| *date);
    let mut pending = payments.iter().peekable();

    let mut balance = principal;
    let mut periods: Vec<InterestPeriod> = Vec::new();
    let mut total_numerator = Decimal::ZERO;

    let days = accrues_after.iter_days().skip(1).take_while(|day| *day <= as_of);
    for day in days {
        while let Some((_, amount)) = pending.next_if(|(paid_on, _)| *paid_on <= day) {
            balance = balance.saturating_sub(*amount);
        }
        let owed = balance.max(Decimal::ZERO);
        if owed.is_zero() {
            continue;
        }
        let (rate, source, rates_known) = annual_rate(terms, kind, day);
        total_numerator = total_numerator.saturating_add(numerator(owed, rate, 1));
        match periods.last_mut() {
            Some(p)
                if p.balance == owed
                    && p.annual_rate_percent == rate
                    && p.source == source
                    && p.rates_known == rates_known
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
                rates_known,
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

impl LegalRates {
    /// Replaces the ECB column with the rate `ecb` gives on each half-year's first day (the
    /// `RELANCE_ECB_RATES_FILE` of earlier versions); half-years before `ecb` starts keep theirs.
    pub fn with_ecb_changes(self, ecb: &RateTable) -> Self {
        self.with_ecb_rates(|day| ecb.rate_on(day))
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

    #[test]
    fn the_legal_rates_ecb_column_agrees_with_the_ecb_decisions() {
        // The ECB column is the rate in force on each half-year's first day.
        let ecb = ecb_main_refinancing_rates();
        for row in LegalRates::built_in().rows() {
            assert_eq!(
                Some(row.ecb_reference),
                ecb.rate_on(row.half_year.first_day()),
                "{}",
                row.half_year
            );
        }
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// The statutory terms on the built-in table of official rates.
    fn statutory() -> InterestTerms {
        InterestTerms::statutory()
    }

    /// A contractual rate against a given floor (in place of the half-year's).
    fn contractual(rate: &str, floor: &str) -> InterestTerms {
        InterestTerms {
            floor_override: Some(dec(floor)),
            ..InterestTerms::contractual(dec(rate))
        }
    }

    #[test]
    fn the_default_ecb_table_is_valid_and_complete() {
        let table = ecb_main_refinancing_rates();
        assert_eq!(table.entries().len(), 21);
        assert_eq!(RateTable::new(table.entries().to_vec()), Ok(table.clone()));
        assert_eq!(table.rate_on(date(2014, 6, 10)), None);
        assert_eq!(table.rate_on(date(2023, 9, 19)), Some(dec("4.25")));
        assert_eq!(table.rate_on(date(2023, 9, 20)), Some(dec("4.50")));
        // The June 2024 cut took effect on 12 June.
        assert_eq!(table.rate_on(date(2024, 6, 11)), Some(dec("4.50")));
        assert_eq!(table.rate_on(date(2024, 6, 12)), Some(dec("4.25")));
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
                rates_known: true,
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
        // The floor bounds a contract's rate only (L441-10: "sauf disposition contraire qui ne
        // peut toutefois fixer un taux inférieur à trois fois le taux d'intérêt légal"): the
        // statutory rate applies as it is, 12.15 % under a 13 % floor (99.86, as above).
        let mut high_floor = statutory();
        high_floor.floor_override = Some(dec("13"));
        let b = late_interest(
            &high_floor,
            CustomerKind::Business,
            dec("10000.00"),
            date(2026, 1, 31),
            &[],
            date(2026, 3, 2),
        );
        assert_eq!(b.total, dec("99.86"));
        assert_eq!(b.periods[0].source, RateSource::Statutory);
        // On the official table the floor is three times the half-year's legal rate: 2026-H1,
        // 3 × 2.62 = 7.86 %. 10 000 × 7.86 × 30 / 36 500 = 64.6027… → 64.60.
        let official = late_interest(
            &InterestTerms::contractual(dec("5")),
            CustomerKind::Business,
            dec("10000.00"),
            date(2026, 1, 31),
            &[],
            date(2026, 3, 2),
        );
        assert_eq!(official.total, dec("64.60"));
        assert_eq!(official.periods[0].annual_rate_percent, dec("7.86"));
        assert_eq!(official.periods[0].source, RateSource::Floor);
    }

    #[test]
    fn a_debt_from_2023_is_charged_at_each_half_years_official_rate() {
        // 1 000.00 due 31 March 2023, unpaid, as of 11 March 2026. ECB reference + 10 points:
        // 2023-H1 12.50 (91 days from 1 April), 2023-H2 14.00 (184), 2024-H1 14.50 (182),
        // 2024-H2 14.25 (184), 2025-H1 13.15 (181), 2025-H2 12.15 (184), 2026-H1 12.15 (70).
        let days_and_rates = [
            (91, "12.50"),
            (184, "14.00"),
            (182, "14.50"),
            (184, "14.25"),
            (181, "13.15"),
            (184, "12.15"),
            (70, "12.15"),
        ];
        let numerator: Decimal = days_and_rates
            .iter()
            .map(|(days, rate)| dec("1000.00") * dec(rate) * Decimal::from(*days))
            .sum();
        let expected = round_to_cents(numerator / Decimal::from(36_500));
        let b = late_interest(
            &statutory(),
            CustomerKind::Business,
            dec("1000.00"),
            date(2023, 3, 31),
            &[],
            date(2026, 3, 11),
        );
        assert_eq!(b.total, expected);
        // The figure an outside audit computed from the official rates.
        assert_eq!(b.total, dec("395.64"));
        assert!(b
            .periods
            .iter()
            .all(|p| p.source == RateSource::Statutory && p.rates_known));
    }

    #[test]
    fn a_half_year_missing_from_the_table_is_charged_at_the_last_known_and_flagged() {
        let b = late_interest(
            &statutory(),
            CustomerKind::Business,
            dec("1000.00"),
            date(2026, 6, 20),
            &[],
            date(2026, 7, 10),
        );
        let flags: Vec<_> = b.periods.iter().map(|p| (p.days, p.rates_known)).collect();
        assert_eq!(flags, vec![(10, true), (10, false)]);
    }

    #[test]
    fn a_consumers_debt_bears_the_legal_rate_for_other_cases() {
        // The creditor is a company: 2026-H1's legal rate "in all other cases", 2.62 %.
        // 10 000 × 2.62 × 30 / 36 500 = 786 000 / 36 500 = 21.5342… → 21.53.
        let b = late_interest(
            &statutory(),
            CustomerKind::Consumer,
            dec("10000.00"),
            date(2026, 1, 31),
            &[],
            date(2026, 3, 2),
        );
        assert_eq!(b.total, dec("21.53"));
        assert_eq!(b.periods[0].source, RateSource::Legal);
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
