//! The rates French law sets each half-year, as a dated table: the ECB main refinancing rate
//! in force on the half-year's first day (the reference of Code de commerce L441-10) and the
//! two legal interest rates of Code monétaire et financier L313-2 (one for creditors who are
//! individuals acting outside their trade, one for "tous les autres cas"). The floor of
//! L441-10 (three times the legal rate) is derived from the second. Shipped with the binary
//! from 2015 (the first half-year with two legal rates) and replaceable by a file.

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use std::fmt;

/// A calendar half-year: H1 from 1 January, H2 from 1 July.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HalfYear {
    pub year: i32,
    /// 1 or 2.
    pub half: u8,
}

impl HalfYear {
    pub fn of(day: NaiveDate) -> Self {
        Self {
            year: day.year(),
            half: if day.month() <= 6 { 1 } else { 2 },
        }
    }

    pub fn first_day(self) -> NaiveDate {
        let month = if self.half == 1 { 1 } else { 7 };
        NaiveDate::from_ymd_opt(self.year, month, 1).unwrap_or(NaiveDate::MIN)
    }

    pub fn next(self) -> Self {
        if self.half == 1 {
            Self {
                year: self.year,
                half: 2,
            }
        } else {
            Self {
                year: self.year + 1,
                half: 1,
            }
        }
    }

    /// `2026-H1`.
    pub fn parse(text: &str) -> Option<Self> {
        let (year, half) = text.split_once("-H")?;
        let year: i32 = year.parse().ok()?;
        let half: u8 = half.parse().ok()?;
        ((1..=2).contains(&half) && (1900..=9999).contains(&year)).then_some(Self { year, half })
    }
}

impl fmt::Display for HalfYear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-H{}", self.year, self.half)
    }
}

/// The rates of one half-year, in percent a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HalfYearRates {
    pub half_year: HalfYear,
    /// ECB main refinancing operations rate in force on the half-year's first day.
    pub ecb_reference: Decimal,
    /// Legal interest rate for creditors who are individuals not acting for their trade.
    pub legal_individuals: Decimal,
    /// Legal interest rate in all other cases: a company's claims, against a business or a
    /// consumer alike.
    pub legal_other: Decimal,
}

impl HalfYearRates {
    /// The lowest rate of late-payment penalties between businesses: three times the legal
    /// interest rate (L441-10).
    pub fn floor(&self) -> Decimal {
        self.legal_other * Decimal::from(3)
    }
}

/// The rates of the half-year a day falls in, and whether the table has that half-year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatesOn {
    pub rates: HalfYearRates,
    /// False when the table lacks the day's half-year: the nearest half-year it has was used
    /// instead, and the figure is an estimate until the table is brought up to date.
    pub known: bool,
}

/// Consecutive half-years, ascending, with no gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalRates {
    rows: Vec<HalfYearRates>,
}

/// (year, half, ECB reference, legal rate individuals, legal rate other cases), in hundredths
/// of a percent. Sources: the ECB's key rates, the arrêtés fixing the legal interest rate
/// (Journal officiel, each half-year; 2026-H1: arrêté of 15 December 2025).
const BUILT_IN: [(i32, u8, i64, i64, i64); 23] = [
    (2015, 1, 5, 406, 93),
    (2015, 2, 5, 429, 99),
    (2016, 1, 5, 454, 101),
    (2016, 2, 0, 435, 93),
    (2017, 1, 0, 416, 90),
    (2017, 2, 0, 394, 90),
    (2018, 1, 0, 373, 89),
    (2018, 2, 0, 360, 88),
    (2019, 1, 0, 340, 86),
    (2019, 2, 0, 326, 87),
    (2020, 1, 0, 315, 87),
    (2020, 2, 0, 311, 84),
    (2021, 1, 0, 314, 79),
    (2021, 2, 0, 312, 76),
    (2022, 1, 0, 313, 76),
    (2022, 2, 0, 315, 77),
    (2023, 1, 250, 447, 206),
    (2023, 2, 400, 682, 422),
    (2024, 1, 450, 801, 507),
    (2024, 2, 425, 816, 492),
    (2025, 1, 315, 721, 371),
    (2025, 2, 215, 665, 276),
    (2026, 1, 215, 667, 262),
];

impl LegalRates {
    /// Refuses an empty table, or half-years out of order or with a gap.
    pub fn new(rows: Vec<HalfYearRates>) -> Result<Self, String> {
        if rows.is_empty() {
            return Err("the legal rate table is empty".to_string());
        }
        if let Some(pair) = rows
            .windows(2)
            .find(|pair| pair[0].half_year.next() != pair[1].half_year)
        {
            return Err(format!(
                "{} is followed by {}: half-years must follow each other with no gap",
                pair[0].half_year, pair[1].half_year
            ));
        }
        Ok(Self { rows })
    }

    /// The table shipped with this version of relance.
    pub fn built_in() -> Self {
        let rows = BUILT_IN
            .iter()
            .map(|&(year, half, ecb, individuals, other)| HalfYearRates {
                half_year: HalfYear { year, half },
                ecb_reference: Decimal::new(ecb, 2),
                legal_individuals: Decimal::new(individuals, 2),
                legal_other: Decimal::new(other, 2),
            })
            .collect();
        // Literal rows in order (a test checks it through `new`).
        Self { rows }
    }

    pub fn rows(&self) -> &[HalfYearRates] {
        &self.rows
    }

    pub fn last(&self) -> HalfYear {
        self.rows
            .last()
            .map_or(HalfYear { year: 0, half: 1 }, |r| r.half_year)
    }

    /// Whether the table has the half-year of `day`.
    pub fn covers(&self, day: NaiveDate) -> bool {
        self.on(day).known
    }

    /// The rates for `day`: its half-year's, or the nearest half-year's with `known: false`.
    pub fn on(&self, day: NaiveDate) -> RatesOn {
        let wanted = HalfYear::of(day);
        let at = self.rows.partition_point(|r| r.half_year <= wanted);
        let (index, known) = match at.checked_sub(1) {
            Some(i) => (i, self.rows.get(i).is_some_and(|r| r.half_year == wanted)),
            None => (0, false),
        };
        let rates = self.rows.get(index).copied().unwrap_or(HalfYearRates {
            half_year: wanted,
            ecb_reference: Decimal::ZERO,
            legal_individuals: Decimal::ZERO,
            legal_other: Decimal::ZERO,
        });
        RatesOn { rates, known }
    }

    /// Replaces the ECB column with the rate `ecb_rate_on` gives on each half-year's first
    /// day; half-years for which it gives none keep theirs. See
    /// `LegalRates::with_ecb_changes` in `interest`, which owns the ECB table.
    pub(crate) fn with_ecb_rates(mut self, ecb_rate_on: impl Fn(NaiveDate) -> Option<Decimal>) -> Self {
        for row in &mut self.rows {
            if let Some(rate) = ecb_rate_on(row.half_year.first_day()) {
                row.ecb_reference = rate;
            }
        }
        self
    }

    /// Reads a table: one line per half-year, `2026-H1 2.15 6.67 2.62` (the half-year, the
    /// ECB reference rate, the legal rate for individuals, the legal rate in other cases, in
    /// percent), consecutive and ascending; blank lines and `#` comments are ignored. Errors
    /// name the file and the line (`rates.txt:4: ...`).
    pub fn parse(source: &str, file: &str) -> Result<Self, String> {
        let mut rows: Vec<HalfYearRates> = Vec::new();
        for (i, raw) in source.lines().enumerate() {
            let at = |message: String| format!("{file}:{}: {message}", i + 1);
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [half_year, ecb, individuals, other] = fields[..] else {
                return Err(at(format!(
                    "{line:?}: expected a half-year and three rates, as \"2026-H1 2.15 6.67 2.62\" \
                     (ECB reference, legal rate for individuals, legal rate in other cases)"
                )));
            };
            let half_year = HalfYear::parse(half_year)
                .ok_or_else(|| at(format!("{half_year:?} is not a half-year such as 2026-H1")))?;
            let rate = |name: &str, text: &str| -> Result<Decimal, String> {
                let rate: Decimal = text
                    .parse()
                    .ok()
                    .filter(|r: &Decimal| !r.is_sign_negative() && *r <= Decimal::ONE_HUNDRED)
                    .ok_or_else(|| {
                        at(format!(
                            "{name} {text:?} is not a rate in percent between 0 and 100, such as 2.15"
                        ))
                    })?;
                Ok(rate)
            };
            let row = HalfYearRates {
                half_year,
                ecb_reference: rate("the ECB reference rate", ecb)?,
                legal_individuals: rate("the legal rate for individuals", individuals)?,
                legal_other: rate("the legal rate in other cases", other)?,
            };
            if let Some(previous) = rows.last() {
                if previous.half_year.next() != half_year {
                    return Err(at(format!(
                        "{half_year} follows {}: half-years must be consecutive and ascending",
                        previous.half_year
                    )));
                }
            }
            rows.push(row);
        }
        Self::new(rows).map_err(|e| format!("{file}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn the_built_in_table_is_consecutive() {
        let table = LegalRates::built_in();
        assert_eq!(LegalRates::new(table.rows().to_vec()), Ok(table.clone()));
        assert_eq!(table.rows()[0].half_year, HalfYear { year: 2015, half: 1 });
    }

    #[test]
    fn a_day_takes_its_half_years_rates_and_a_missing_half_year_is_flagged() {
        let table = LegalRates::built_in();
        let h2_2023 = table.on(date(2023, 9, 30));
        assert!(h2_2023.known);
        assert_eq!(h2_2023.rates.legal_other, dec("4.22"));
        assert_eq!(h2_2023.rates.floor(), dec("12.66"));
        assert_eq!(table.on(date(2024, 6, 30)).rates.legal_individuals, dec("8.01"));
        assert_eq!(table.on(date(2024, 7, 1)).rates.legal_individuals, dec("8.16"));
        // After the table ends: the last half-year's figures, flagged as not known.
        let later = table.on(date(2031, 1, 1));
        assert!(!later.known);
        assert_eq!(later.rates.half_year, table.last());
        assert!(!table.covers(date(2014, 12, 31)));
    }

    #[test]
    fn a_rate_file_replaces_the_table_and_its_mistakes_name_their_line() {
        let table = LegalRates::parse(
            "# half-year ECB individuals other\n2026-H1 2.15 6.67 2.62\n\n2026-H2 2.00 6.50 2.50 # est.\n",
            "legal.txt",
        )
        .unwrap();
        assert!(table.covers(date(2026, 12, 3)));
        assert_eq!(table.on(date(2026, 12, 3)).rates.floor(), dec("7.50"));
        let error = |source: &str| LegalRates::parse(source, "legal.txt").unwrap_err();
        assert_eq!(
            error("2026-H3 2.15 6.67 2.62\n"),
            "legal.txt:1: \"2026-H3\" is not a half-year such as 2026-H1"
        );
        assert!(error("2026-H1 2.15 6,67 2.62\n")
            .starts_with("legal.txt:1: the legal rate for individuals \"6,67\" is not a rate"));
        assert!(error("2026-H1 2.15 6.67\n")
            .starts_with("legal.txt:1: \"2026-H1 2.15 6.67\": expected a half-year and three rates"));
        assert_eq!(
            error("2025-H1 3.15 7.21 3.71\n2026-H1 2.15 6.67 2.62\n"),
            "legal.txt:2: 2026-H1 follows 2025-H1: half-years must be consecutive and ascending"
        );
        assert!(error("# nothing\n").contains("empty"));
    }
}
