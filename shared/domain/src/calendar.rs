//! Business days and public holidays, computed from rules (never a per-year list), behind a
//! trait so each country's calendar plugs in. Owns date arithmetic only: no time zones (see
//! `window`), no I/O.

use chrono::{Datelike, Days, NaiveDate, Weekday};

/// How far the searches below look before giving up. Only a broken calendar (a whole year
/// of holidays) can exhaust it; a bound keeps such a calendar from hanging a worker.
pub const MAX_SEARCH_DAYS: u32 = 400;

/// A country's (or region's) public holidays. Weekends are not holidays: they are handled
/// by [`is_business_day`] for every calendar alike.
pub trait HolidayCalendar: Send + Sync + std::fmt::Debug {
    fn is_holiday(&self, date: NaiveDate) -> bool;
    /// The code [`calendar_for`] knows this calendar by.
    fn name(&self) -> &str;
}

/// Easter Sunday of `year` in the Gregorian calendar (the anonymous algorithm, also known as
/// Meeus/Jones/Butcher). Years outside chrono's range saturate to its first or last date.
pub fn easter_sunday(year: i32) -> NaiveDate {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let n = h + l - 7 * m + 114;
    // n / 31 is 3 or 4 and n % 31 + 1 is 1..=31: both fit a u32.
    let month = n.div_euclid(31).unsigned_abs();
    let day = n.rem_euclid(31).unsigned_abs() + 1;
    NaiveDate::from_ymd_opt(year, month, day).unwrap_or(if year < 0 {
        NaiveDate::MIN
    } else {
        NaiveDate::MAX
    })
}

fn shift(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    }
}

/// French public holidays (Code du travail L3133-1), with the two extra days of Alsace and
/// Moselle (L3134-13: Good Friday and St Stephen's day) when `alsace_moselle` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrenchCalendar {
    pub alsace_moselle: bool,
}

impl FrenchCalendar {
    /// Fixed-date holidays as (month, day).
    const FIXED: [(u32, u32); 7] = [(1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11)];
    /// Holidays at a fixed distance from Easter Sunday: Easter Monday, Ascension, Whit Monday.
    const FROM_EASTER: [i64; 3] = [1, 39, 50];
}

impl HolidayCalendar for FrenchCalendar {
    fn is_holiday(&self, date: NaiveDate) -> bool {
        let month_day = (date.month(), date.day());
        if Self::FIXED.contains(&month_day) || month_day == (12, 25) {
            return true;
        }
        if self.alsace_moselle && month_day == (12, 26) {
            return true;
        }
        let easter = easter_sunday(date.year());
        let offset = date.signed_duration_since(easter).num_days();
        Self::FROM_EASTER.contains(&offset) || (self.alsace_moselle && offset == -2)
    }

    fn name(&self) -> &str {
        if self.alsace_moselle {
            "FR-ALSACE-MOSELLE"
        } else {
            "FR"
        }
    }
}

/// No public holidays: the fallback for countries without a calendar of their own yet, so
/// reminders still avoid weekends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WeekendsOnly;

impl HolidayCalendar for WeekendsOnly {
    fn is_holiday(&self, _date: NaiveDate) -> bool {
        false
    }

    fn name(&self) -> &str {
        "NONE"
    }
}

/// The calendar a configuration code names (case-insensitive), or `None` for an unknown
/// code so configuration can reject it rather than silently ignore holidays.
pub fn calendar_for(code: &str) -> Option<Box<dyn HolidayCalendar>> {
    let code = code.trim();
    if code.eq_ignore_ascii_case("FR") {
        Some(Box::new(FrenchCalendar {
            alsace_moselle: false,
        }))
    } else if code.eq_ignore_ascii_case("FR-ALSACE-MOSELLE") {
        Some(Box::new(FrenchCalendar { alsace_moselle: true }))
    } else if code.eq_ignore_ascii_case("NONE") {
        Some(Box::new(WeekendsOnly))
    } else {
        None
    }
}

/// Subdivisions of France (ISO 3166-2, with or without the `FR-` prefix) that keep the local
/// law of Alsace-Moselle: Moselle (57), Bas-Rhin (67), Haut-Rhin (68), and the European
/// Collectivity of Alsace (6AE) that replaced the last two in 2021.
const ALSACE_MOSELLE: [&str; 4] = ["57", "67", "68", "6AE"];

/// The holiday calendar of a customer's country (ISO 3166-1 alpha-2) and optional region.
/// France has its own, with Alsace-Moselle's extra days; a country without a calendar yet
/// gets weekends only, so reminders still avoid Saturdays and Sundays.
pub fn calendar_for_customer(country: &str, region: Option<&str>) -> Box<dyn HolidayCalendar> {
    if !country.trim().eq_ignore_ascii_case("FR") {
        return Box::new(WeekendsOnly);
    }
    let region = region.map(|r| {
        let r = r.trim().to_ascii_uppercase();
        r.strip_prefix("FR-").map(str::to_string).unwrap_or(r)
    });
    Box::new(FrenchCalendar {
        alsace_moselle: region.is_some_and(|r| ALSACE_MOSELLE.contains(&r.as_str())),
    })
}

/// Monday to Friday and not a public holiday.
pub fn is_business_day(cal: &dyn HolidayCalendar, d: NaiveDate) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !cal.is_holiday(d)
}

/// `d` itself if it is a business day, else the first business day after it. Gives up after
/// [`MAX_SEARCH_DAYS`] (a broken calendar) or at the end of time, returning the last date seen.
pub fn next_business_day_on_or_after(cal: &dyn HolidayCalendar, d: NaiveDate) -> NaiveDate {
    let mut day = d;
    for _ in 0..MAX_SEARCH_DAYS {
        if is_business_day(cal, day) {
            return day;
        }
        match shift(day, 1) {
            Some(next) => day = next,
            None => return day,
        }
    }
    day
}

/// The `n`-th business day strictly after `d` (Friday + 1 is Monday, Saturday + 1 too).
/// `n = 0` rolls `d` forward to a business day, as [`next_business_day_on_or_after`].
pub fn add_business_days(cal: &dyn HolidayCalendar, d: NaiveDate, n: u32) -> NaiveDate {
    if n == 0 {
        return next_business_day_on_or_after(cal, d);
    }
    // Counting from `d` itself, not from a rolled date: Saturday + 1 is Monday, not Tuesday.
    let mut day = d;
    for _ in 0..n {
        let Some(next) = shift(day, 1) else {
            return day;
        };
        day = next_business_day_on_or_after(cal, next);
        if !is_business_day(cal, day) {
            // The search gave up (a broken calendar): stop rather than walk on.
            return day;
        }
    }
    day
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    const FR: FrenchCalendar = FrenchCalendar {
        alsace_moselle: false,
    };
    const ALSACE: FrenchCalendar = FrenchCalendar { alsace_moselle: true };

    /// (month, day).
    type MonthDay = (u32, u32);

    /// (year, Easter Sunday, Easter Monday, Ascension, Whit Monday), worked out by hand from
    /// the published Easter dates: Ascension = Easter + 39 days, Whit Monday = Easter + 50.
    const MOVABLE: [(i32, MonthDay, MonthDay, MonthDay, MonthDay); 5] = [
        (2024, (3, 31), (4, 1), (5, 9), (5, 20)),
        (2025, (4, 20), (4, 21), (5, 29), (6, 9)),
        (2026, (4, 5), (4, 6), (5, 14), (5, 25)),
        (2027, (3, 28), (3, 29), (5, 6), (5, 17)),
        (2028, (4, 16), (4, 17), (5, 25), (6, 5)),
    ];

    #[test]
    fn easter_sunday_matches_the_published_dates() {
        for (year, (m, d), ..) in MOVABLE {
            assert_eq!(easter_sunday(year), date(year, m, d), "{year}");
        }
        // Extremes of the Gregorian range of Easter: 22 March (1818) and 25 April (1943).
        assert_eq!(easter_sunday(1818), date(1818, 3, 22));
        assert_eq!(easter_sunday(1943), date(1943, 4, 25));
    }

    #[test]
    fn french_movable_holidays_2024_to_2028() {
        for (year, _, monday, ascension, whit) in MOVABLE {
            for (m, d) in [monday, ascension, whit] {
                assert!(FR.is_holiday(date(year, m, d)), "{year}-{m:02}-{d:02}");
            }
            assert_eq!(date(year, ascension.0, ascension.1).weekday(), Weekday::Thu);
            assert_eq!(date(year, whit.0, whit.1).weekday(), Weekday::Mon);
        }
    }

    #[test]
    fn french_holidays_2024_to_2028_are_exactly_eleven_a_year() {
        for (year, _, monday, ascension, whit) in MOVABLE {
            let mut expected: Vec<NaiveDate> = [
                (1, 1),
                monday,
                (5, 1),
                (5, 8),
                ascension,
                whit,
                (7, 14),
                (8, 15),
                (11, 1),
                (11, 11),
                (12, 25),
            ]
            .iter()
            .map(|&(m, d)| date(year, m, d))
            .collect();
            expected.sort();
            let found: Vec<NaiveDate> = date(year, 1, 1)
                .iter_days()
                .take_while(|d| d.year() == year)
                .filter(|d| FR.is_holiday(*d))
                .collect();
            assert_eq!(found, expected, "{year}");
        }
    }

    #[test]
    fn alsace_moselle_adds_good_friday_and_st_stephen() {
        for (year, (m, d), ..) in MOVABLE {
            let good_friday = date(year, m, d) - Days::new(2);
            assert!(ALSACE.is_holiday(good_friday), "{good_friday}");
            assert!(!FR.is_holiday(good_friday), "{good_friday}");
            assert!(ALSACE.is_holiday(date(year, 12, 26)));
            assert!(!FR.is_holiday(date(year, 12, 26)));
            // Everything French is also a holiday in Alsace-Moselle.
            assert!(ALSACE.is_holiday(date(year, 7, 14)));
        }
        assert!(ALSACE.is_holiday(date(2026, 4, 3)));
    }

    #[test]
    fn codes_name_their_calendars() {
        for code in ["FR", "FR-ALSACE-MOSELLE", "NONE"] {
            let cal = calendar_for(code).unwrap();
            assert_eq!(cal.name(), code);
        }
        assert_eq!(
            calendar_for("fr").map(|c| c.name().to_string()),
            Some("FR".into())
        );
        assert!(calendar_for("DE").is_none());
        assert!(calendar_for("").is_none());
        let none = calendar_for("NONE").unwrap();
        assert!(!none.is_holiday(date(2026, 12, 25)));
    }

    #[test]
    fn business_days_skip_weekends_and_holidays() {
        // Friday 1 May 2026 is Labour Day: Thursday 30 April + 1 is Monday 4 May.
        assert!(!is_business_day(&FR, date(2026, 5, 1)));
        assert!(!is_business_day(&FR, date(2026, 5, 2)));
        assert_eq!(add_business_days(&FR, date(2026, 4, 30), 1), date(2026, 5, 4));
        // 4, 5, 6, 7 May; Friday 8 May (Victory day) is skipped; then Monday 11 May.
        assert_eq!(add_business_days(&FR, date(2026, 4, 30), 5), date(2026, 5, 11));
        // Without holidays only the weekend is skipped.
        assert_eq!(
            add_business_days(&WeekendsOnly, date(2026, 4, 30), 1),
            date(2026, 5, 1)
        );
        // Counting starts from the given day, even a weekend one.
        assert_eq!(add_business_days(&FR, date(2026, 5, 2), 1), date(2026, 5, 4));
        assert_eq!(add_business_days(&FR, date(2026, 5, 2), 0), date(2026, 5, 4));
        assert_eq!(add_business_days(&FR, date(2026, 5, 4), 0), date(2026, 5, 4));
    }

    #[test]
    fn next_business_day_rolls_over_holidays_and_weekends() {
        assert_eq!(
            next_business_day_on_or_after(&FR, date(2026, 5, 1)),
            date(2026, 5, 4)
        );
        assert_eq!(
            next_business_day_on_or_after(&FR, date(2026, 5, 6)),
            date(2026, 5, 6)
        );
        // Good Friday 3 April 2026, then Easter weekend and Easter Monday in Alsace-Moselle.
        assert_eq!(
            next_business_day_on_or_after(&FR, date(2026, 4, 3)),
            date(2026, 4, 3)
        );
        assert_eq!(
            next_business_day_on_or_after(&ALSACE, date(2026, 4, 3)),
            date(2026, 4, 7)
        );
        // Christmas 2026 is a Friday; in Alsace-Moselle the 26th is a Saturday anyway.
        assert_eq!(
            next_business_day_on_or_after(&ALSACE, date(2026, 12, 25)),
            date(2026, 12, 28)
        );
    }

    #[test]
    fn a_customer_gets_the_calendar_of_their_country_and_region() {
        let name =
            |country: &str, region: Option<&str>| calendar_for_customer(country, region).name().to_string();
        assert_eq!(name("FR", None), "FR");
        assert_eq!(name("fr", Some("75")), "FR");
        for region in ["57", "67", "68", "FR-57", "fr-67", "FR-68", "FR-6AE"] {
            assert_eq!(name("FR", Some(region)), "FR-ALSACE-MOSELLE", "{region}");
        }
        assert_eq!(name("BE", None), "NONE");
        assert_eq!(name("DE", Some("67")), "NONE");
    }

    /// Holidays of several years, as published (service-public.fr), weekday by weekday: a
    /// table independent of the rules above, so a wrong rule cannot agree with itself.
    #[test]
    fn published_french_holidays_2025_to_2027() {
        let published = [
            // 2025
            ("2025-01-01", Weekday::Wed),
            ("2025-04-21", Weekday::Mon),
            ("2025-05-01", Weekday::Thu),
            ("2025-05-08", Weekday::Thu),
            ("2025-05-29", Weekday::Thu),
            ("2025-06-09", Weekday::Mon),
            ("2025-07-14", Weekday::Mon),
            ("2025-08-15", Weekday::Fri),
            ("2025-11-01", Weekday::Sat),
            ("2025-11-11", Weekday::Tue),
            ("2025-12-25", Weekday::Thu),
            // 2026
            ("2026-01-01", Weekday::Thu),
            ("2026-04-06", Weekday::Mon),
            ("2026-05-01", Weekday::Fri),
            ("2026-05-08", Weekday::Fri),
            ("2026-05-14", Weekday::Thu),
            ("2026-05-25", Weekday::Mon),
            ("2026-07-14", Weekday::Tue),
            ("2026-08-15", Weekday::Sat),
            ("2026-11-01", Weekday::Sun),
            ("2026-11-11", Weekday::Wed),
            ("2026-12-25", Weekday::Fri),
            // 2027
            ("2027-01-01", Weekday::Fri),
            ("2027-03-29", Weekday::Mon),
            ("2027-05-01", Weekday::Sat),
            ("2027-05-06", Weekday::Thu),
            ("2027-05-08", Weekday::Sat),
            ("2027-05-17", Weekday::Mon),
            ("2027-07-14", Weekday::Wed),
            ("2027-08-15", Weekday::Sun),
            ("2027-11-01", Weekday::Mon),
            ("2027-11-11", Weekday::Thu),
            ("2027-12-25", Weekday::Sat),
        ];
        for (day, weekday) in published {
            let d = NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
            assert_eq!(d.weekday(), weekday, "{day}");
            assert!(FR.is_holiday(d), "{day}");
            assert!(!is_business_day(&FR, d), "{day}");
        }
        for year in [2025, 2026, 2027] {
            let count = date(year, 1, 1)
                .iter_days()
                .take_while(|d| d.year() == year)
                .filter(|d| FR.is_holiday(*d))
                .count();
            assert_eq!(count, 11, "{year}");
        }
        // Not holidays: Whit Monday's eve, Good Friday outside Alsace-Moselle, Boxing Day.
        for day in ["2026-05-24", "2026-04-03", "2026-12-26", "2026-05-15"] {
            let d = NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
            assert!(!FR.is_holiday(d), "{day}");
        }
    }

    #[derive(Debug)]
    struct EveryDayOff;
    impl HolidayCalendar for EveryDayOff {
        fn is_holiday(&self, _date: NaiveDate) -> bool {
            true
        }
        fn name(&self) -> &str {
            "BROKEN"
        }
    }

    #[test]
    fn a_broken_calendar_does_not_hang() {
        let start = date(2026, 1, 1);
        let end = add_business_days(&EveryDayOff, start, 3);
        assert!(end > start);
        assert!(end <= start + Days::new(u64::from(MAX_SEARCH_DAYS) + 1));
    }

    proptest! {
        #[test]
        fn easter_is_a_sunday_between_22_march_and_25_april(year in 1583i32..5000) {
            let easter = easter_sunday(year);
            prop_assert_eq!(easter.weekday(), Weekday::Sun);
            prop_assert!(easter >= date(year, 3, 22) && easter <= date(year, 4, 25));
        }

        #[test]
        fn adding_business_days_lands_on_a_business_day_after_the_start(
            offset in 0u64..3000,
            n in 1u32..40,
        ) {
            let start = date(2024, 1, 1) + Days::new(offset);
            let end = add_business_days(&ALSACE, start, n);
            prop_assert!(is_business_day(&ALSACE, end));
            prop_assert!(end > start);
            let counted = start
                .iter_days()
                .skip(1)
                .take_while(|d| *d <= end)
                .filter(|d| is_business_day(&ALSACE, *d))
                .count();
            prop_assert_eq!(counted, n as usize);
        }
    }
}
