//! Send windows: the days and hours, in the customer's own time zone, at which a message may
//! go out, and the next instant one opens. Owns the wall-clock reasoning; holidays come from
//! `calendar`, and local times become instants only through [`local_instant`], here.

use crate::calendar::{is_business_day, HolidayCalendar};
use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;

/// The instant a local wall-clock time happens in `tz`. On a daylight-saving gap the time
/// does not exist: the first instant after the gap is used. On an overlap, the first one.
pub fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let local = NaiveDateTime::new(date, time);
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => {
            // Gaps are at most a few hours: walk forward by quarter hours until time exists.
            let mut probe = local;
            for _ in 0..16 {
                probe += chrono::Duration::minutes(15);
                if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) = tz.from_local_datetime(&probe)
                {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

/// How many local days [`next_opening`] looks ahead: more than a year, so any valid window
/// opens within it whatever the holidays.
pub const MAX_SEARCH_DAYS: u64 = 400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWindow {
    /// Local weekdays on which the window opens.
    pub weekdays: Vec<Weekday>,
    /// Local opening time, included.
    pub opens: NaiveTime,
    /// Local closing time, excluded.
    pub closes: NaiveTime,
    /// Also skip weekends and the calendar's public holidays.
    pub business_days_only: bool,
}

/// The last instant of a day: a window that "closes at 24:00" closes here (excluded, so a
/// window open until midnight contains every time up to 23:59:59.999999999 but that one).
pub const END_OF_DAY: NaiveTime = match NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999) {
    Some(t) => t,
    None => NaiveTime::MIN,
};

fn hour(h: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, 0, 0).unwrap_or(NaiveTime::MIN)
}

impl SendWindow {
    /// Reminders: Tuesday to Thursday mornings, when they are most often read and acted on
    /// (Monday's inbox is full, Friday's is left for next week).
    pub fn reminders() -> Self {
        Self {
            weekdays: vec![Weekday::Tue, Weekday::Wed, Weekday::Thu],
            opens: hour(9),
            closes: hour(12),
            business_days_only: true,
        }
    }

    /// Any working morning, Monday to Friday: for messages that should not wait (thanks,
    /// confirmations).
    pub fn any_working_morning() -> Self {
        Self {
            weekdays: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            opens: hour(9),
            closes: hour(12),
            business_days_only: true,
        }
    }

    /// Every hour of every day, holidays included: a policy step that names no window, in a
    /// policy that sets no `default_window`, goes out as planned (the behaviour before windows).
    pub fn any_time() -> Self {
        Self {
            weekdays: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
                Weekday::Sat,
                Weekday::Sun,
            ],
            opens: NaiveTime::MIN,
            closes: END_OF_DAY,
            business_days_only: false,
        }
    }

    /// Business hours of working days, Monday to Friday, 09:00 to 18:00.
    pub fn working_days() -> Self {
        Self {
            closes: hour(18),
            ..Self::any_working_morning()
        }
    }

    /// Refuses a window that could never open.
    pub fn validate(&self) -> Result<(), String> {
        if self.opens >= self.closes {
            return Err(format!(
                "send window opens at {} but closes at {}: it must open before it closes \
                 (windows across midnight are not supported)",
                self.opens, self.closes
            ));
        }
        if self.weekdays.is_empty() {
            return Err("send window has no weekday: list at least one".to_string());
        }
        if self.business_days_only
            && self
                .weekdays
                .iter()
                .all(|d| matches!(d, Weekday::Sat | Weekday::Sun))
        {
            return Err(
                "send window is for business days only but lists only Saturday and Sunday".to_string(),
            );
        }
        Ok(())
    }

    /// Whether the window opens at all on this local date.
    pub fn allows_day(&self, calendar: &dyn HolidayCalendar, date: NaiveDate) -> bool {
        self.weekdays.contains(&date.weekday())
            && (!self.business_days_only || is_business_day(calendar, date))
    }

    /// Whether `at` lies inside the window, judged on the customer's wall clock.
    pub fn contains(&self, calendar: &dyn HolidayCalendar, tz: Tz, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&tz).naive_local();
        let time = local.time();
        self.allows_day(calendar, local.date()) && self.opens <= time && time < self.closes
    }
}

/// The instants at which `opens` happens on `date`: one usually, the first just after the
/// gap when it is skipped, both when clocks go back over it.
fn openings_on(tz: Tz, date: NaiveDate, opens: NaiveTime) -> [Option<DateTime<Utc>>; 2] {
    match tz.from_local_datetime(&date.and_time(opens)) {
        LocalResult::Ambiguous(first, second) => {
            [Some(first.with_timezone(&Utc)), Some(second.with_timezone(&Utc))]
        }
        _ => [Some(local_instant(tz, date, opens)), None],
    }
}

/// The earliest instant at or after `not_before` inside `window` on the customer's wall
/// clock: `not_before` itself when it is inside, else the opening time of the next allowed
/// local day (today's, if it is still ahead). Worked out in local dates and times and only
/// then converted, so a daylight-saving change neither shifts the opening nor sends twice.
/// An invalid window (see [`SendWindow::validate`]) may never open: `not_before` is then
/// returned, sending now rather than never.
pub fn next_opening(
    window: &SendWindow,
    calendar: &dyn HolidayCalendar,
    tz: Tz,
    not_before: DateTime<Utc>,
) -> DateTime<Utc> {
    if window.contains(calendar, tz, not_before) {
        return not_before;
    }
    let today = not_before.with_timezone(&tz).date_naive();
    for offset in 0..=MAX_SEARCH_DAYS {
        let Some(date) = today.checked_add_days(Days::new(offset)) else {
            break;
        };
        if !window.allows_day(calendar, date) {
            continue;
        }
        // Re-checked after conversion: a gap can push the opening past the closing time.
        let found = openings_on(tz, date, window.opens)
            .into_iter()
            .flatten()
            .find(|at| *at >= not_before && window.contains(calendar, tz, *at));
        if let Some(at) = found {
            return at;
        }
    }
    not_before
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{FrenchCalendar, WeekendsOnly};
    use chrono_tz::{America, Asia, Europe};
    use proptest::prelude::*;

    const FR: FrenchCalendar = FrenchCalendar {
        alsace_moselle: false,
    };

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn reminders_paris(at: &str) -> String {
        next_opening(&SendWindow::reminders(), &FR, Europe::Paris, utc(at)).to_rfc3339()
    }

    #[test]
    fn the_built_in_windows_are_valid() {
        assert_eq!(SendWindow::reminders().validate(), Ok(()));
        assert_eq!(SendWindow::any_working_morning().validate(), Ok(()));
    }

    #[test]
    fn a_window_that_cannot_open_is_refused() {
        let mut w = SendWindow::reminders();
        w.closes = w.opens;
        assert!(w.validate().unwrap_err().contains("must open before it closes"));
        let mut w = SendWindow::reminders();
        w.weekdays.clear();
        assert!(w.validate().unwrap_err().contains("no weekday"));
        let mut w = SendWindow::reminders();
        w.weekdays = vec![Weekday::Sat];
        assert!(w.validate().unwrap_err().contains("business days only"));
        w.business_days_only = false;
        assert_eq!(w.validate(), Ok(()));
    }

    #[test]
    fn friday_evening_waits_for_tuesday_morning() {
        // Friday 9 January 2026, 19:00 in Paris (UTC+1) → Tuesday 13 January, 09:00.
        assert_eq!(
            reminders_paris("2026-01-09T18:00:00Z"),
            "2026-01-13T08:00:00+00:00"
        );
    }

    #[test]
    fn a_holiday_tuesday_is_skipped() {
        // Tuesday 14 July 2026 is Bastille Day: Friday 10 July → Wednesday 15 July, 09:00 CEST.
        assert_eq!(
            reminders_paris("2026-07-10T18:00:00Z"),
            "2026-07-15T07:00:00+00:00"
        );
        // Without holidays the Tuesday is fine.
        let plain = next_opening(
            &SendWindow::reminders(),
            &WeekendsOnly,
            Europe::Paris,
            utc("2026-07-10T18:00:00Z"),
        );
        assert_eq!(plain.to_rfc3339(), "2026-07-14T07:00:00+00:00");
    }

    #[test]
    fn inside_the_window_nothing_changes() {
        // Wednesday 14 January 2026, 10:17:42 in Paris.
        assert_eq!(
            reminders_paris("2026-01-14T09:17:42Z"),
            "2026-01-14T09:17:42+00:00"
        );
        // The opening minute itself is inside; the closing one is not.
        assert_eq!(
            reminders_paris("2026-01-14T08:00:00Z"),
            "2026-01-14T08:00:00+00:00"
        );
        assert_eq!(
            reminders_paris("2026-01-14T11:00:00Z"),
            "2026-01-15T08:00:00+00:00"
        );
    }

    #[test]
    fn early_on_an_allowed_day_opens_the_same_morning() {
        // Wednesday 14 January 2026, 07:30 in Paris.
        assert_eq!(
            reminders_paris("2026-01-14T06:30:00Z"),
            "2026-01-14T08:00:00+00:00"
        );
    }

    #[test]
    fn the_local_day_decides_not_the_utc_day() {
        // Monday 12 January 2026 23:30 UTC is already Tuesday 08:30 in Tokyo.
        let at = next_opening(
            &SendWindow::reminders(),
            &WeekendsOnly,
            Asia::Tokyo,
            utc("2026-01-12T23:30:00Z"),
        );
        assert_eq!(at.to_rfc3339(), "2026-01-13T00:00:00+00:00");
    }

    #[test]
    fn openings_stay_at_nine_local_across_the_spring_change() {
        // Clocks go forward on Sunday 29 March 2026. Thursday 26 March opens at 08:00Z (UTC+1).
        assert_eq!(
            reminders_paris("2026-03-26T06:00:00Z"),
            "2026-03-26T08:00:00+00:00"
        );
        // After the Thursday window, the next is Tuesday 31 March at 07:00Z (UTC+2).
        assert_eq!(
            reminders_paris("2026-03-26T13:00:00Z"),
            "2026-03-31T07:00:00+00:00"
        );
        // From the middle of the gap itself (02:30 local does not exist).
        let monday = next_opening(
            &SendWindow::any_working_morning(),
            &FR,
            Europe::Paris,
            utc("2026-03-29T01:00:00Z"),
        );
        assert_eq!(monday.to_rfc3339(), "2026-03-30T07:00:00+00:00");
    }

    #[test]
    fn openings_stay_at_nine_local_across_the_autumn_change() {
        // Clocks go back on Sunday 25 October 2026. Thursday 22 October opens at 07:00Z (UTC+2).
        assert_eq!(
            reminders_paris("2026-10-22T05:00:00Z"),
            "2026-10-22T07:00:00+00:00"
        );
        // Then Tuesday 27 October at 08:00Z (UTC+1).
        assert_eq!(
            reminders_paris("2026-10-22T12:00:00Z"),
            "2026-10-27T08:00:00+00:00"
        );
        // During the repeated hour (02:30 happens twice) it is still Monday 09:00 local next.
        for at in ["2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"] {
            let monday = next_opening(&SendWindow::any_working_morning(), &FR, Europe::Paris, utc(at));
            assert_eq!(monday.to_rfc3339(), "2026-10-26T08:00:00+00:00");
        }
    }

    #[test]
    fn an_opening_time_repeated_by_the_autumn_change_is_caught_the_second_time() {
        // A night window opening at 02:45 on Sunday 25 October 2026, which happens twice in
        // Paris (00:45Z and 01:45Z). From 01:30Z (the second 02:30) the second 02:45 is next.
        let window = SendWindow {
            weekdays: vec![Weekday::Sun],
            opens: NaiveTime::from_hms_opt(2, 45, 0).unwrap(),
            closes: NaiveTime::from_hms_opt(4, 0, 0).unwrap(),
            business_days_only: false,
        };
        let at = next_opening(&window, &FR, Europe::Paris, utc("2026-10-25T01:30:00Z"));
        assert_eq!(at.to_rfc3339(), "2026-10-25T01:45:00+00:00");
    }

    #[test]
    fn an_opening_time_skipped_by_the_spring_change_moves_after_the_gap() {
        // 02:30 does not exist in Paris on 29 March 2026: the window opens at 03:00 local.
        let window = SendWindow {
            weekdays: vec![Weekday::Sun],
            opens: NaiveTime::from_hms_opt(2, 30, 0).unwrap(),
            closes: NaiveTime::from_hms_opt(4, 0, 0).unwrap(),
            business_days_only: false,
        };
        let at = next_opening(&window, &FR, Europe::Paris, utc("2026-03-28T12:00:00Z"));
        assert_eq!(at.to_rfc3339(), "2026-03-29T01:00:00+00:00");
    }

    fn zones() -> impl Strategy<Value = Tz> {
        prop::sample::select(vec![Europe::Paris, America::New_York, Asia::Tokyo])
    }

    fn windows() -> impl Strategy<Value = SendWindow> {
        prop::sample::select(vec![SendWindow::reminders(), SendWindow::any_working_morning()])
    }

    fn instants_2025_to_2028() -> impl Strategy<Value = DateTime<Utc>> {
        let from = utc("2025-01-01T00:00:00Z").timestamp();
        let to = utc("2029-01-01T00:00:00Z").timestamp();
        (from..to).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    proptest! {
        #[test]
        fn the_next_opening_is_inside_the_window_and_stable(
            not_before in instants_2025_to_2028(),
            tz in zones(),
            window in windows(),
            alsace_moselle in any::<bool>(),
        ) {
            let cal = FrenchCalendar { alsace_moselle };
            let at = next_opening(&window, &cal, tz, not_before);
            let local = at.with_timezone(&tz);
            prop_assert!(at >= not_before);
            prop_assert!(window.opens <= local.time() && local.time() < window.closes, "{local}");
            prop_assert!(window.weekdays.contains(&local.weekday()), "{local}");
            prop_assert!(!cal.is_holiday(local.date_naive()), "{local}");
            prop_assert_eq!(next_opening(&window, &cal, tz, at), at);
            // Either unchanged, or exactly an opening time: never later than needed.
            prop_assert!(at == not_before || local.time() == window.opens, "{local}");
            // A window opens within a week and a half, whatever the holidays (Easter, Christmas).
            prop_assert!(at - not_before <= chrono::Duration::days(11));
        }
    }
}
