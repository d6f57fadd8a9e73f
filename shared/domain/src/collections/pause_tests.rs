//! Ending pauses and re-dating the held-back steps: on the customer's wall clock, in each
//! step's send window, on the customer's calendar, one step a local day; and properties over
//! random plans and pauses: re-dated steps are ordered, never in a closed window, never two
//! a day, never before the pause ended.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::calendar::{FrenchCalendar, WeekendsOnly};
use crate::customer::{CustomerKind, Risk};
use crate::money::Money;
use crate::plan::{plan_invoice, PlanInput};
use crate::test_support::{random_policy, random_steps, zones};
use chrono::{Duration, TimeZone};
use chrono_tz::America;
use chrono_tz::Europe::Paris;
use proptest::prelude::*;
use rust_decimal::Decimal;

const FR: FrenchCalendar = FrenchCalendar {
    alsace_moselle: false,
};

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).single().unwrap()
}

fn nine() -> NaiveTime {
    NaiveTime::from_hms_opt(9, 0, 0).unwrap()
}

fn step_in(n: u128, position: i32, due_at: DateTime<Utc>, window: SendWindow) -> PausedStep {
    PausedStep {
        id: Uuid::from_u128(n),
        position,
        due_at,
        window,
    }
}

/// A step that may go out at any time (a policy written before windows).
fn step(n: u128, position: i32, due_at: DateTime<Utc>) -> PausedStep {
    step_in(n, position, due_at, SendWindow::any_time())
}

fn reminder(n: u128, position: i32, due_at: DateTime<Utc>) -> PausedStep {
    step_in(n, position, due_at, SendWindow::reminders())
}

fn resuming(due_on: NaiveDate, resume_at: DateTime<Utc>, calendar: &dyn HolidayCalendar) -> Resumption<'_> {
    Resumption {
        due_on,
        resume_at,
        tz: Paris,
        calendar,
        send_time: nine(),
    }
}

fn moved(n: u128, to: DateTime<Utc>) -> Redate {
    Redate::Move {
        id: Uuid::from_u128(n),
        to,
    }
}

/// Each move as the customer's local day and time, e.g. "Tue 17 09:00".
fn local_moves(plan: &[Redate]) -> Vec<String> {
    plan.iter()
        .map(|r| match r {
            Redate::Move { to, .. } => to.with_timezone(&Paris).format("%a %d %H:%M").to_string(),
            Redate::Skip { .. } => "skip".to_string(),
        })
        .collect()
}

#[test]
fn a_promise_holds_through_the_grace_days_in_local_time() {
    let end = promise_pause_end(date(2026, 3, 25), date(2026, 3, 20), 3, Paris);
    // 29 March 00:00 in Paris is still winter time (UTC+1).
    assert_eq!(
        end.map(|e| e.to_rfc3339()),
        Ok("2026-03-28T23:00:00+00:00".into())
    );
    let today = promise_pause_end(date(2026, 3, 20), date(2026, 3, 20), 0, Paris);
    assert_eq!(
        today.map(|e| e.to_rfc3339()),
        Ok("2026-03-20T23:00:00+00:00".into())
    );
}

#[test]
fn a_past_or_far_promise_is_refused() {
    let past = promise_pause_end(date(2026, 3, 19), date(2026, 3, 20), 3, Paris);
    assert!(past.is_err_and(|r| r.field == "promise.promised_on" && r.reason.contains("past")));
    let far = promise_pause_end(date(2027, 6, 1), date(2026, 3, 20), 3, Paris);
    assert!(far.is_err_and(|r| r.reason.contains("payment plan")));
}

#[test]
fn the_resume_slot_is_the_next_send_time() {
    // 07:00 UTC is 08:00 in Paris: today at 09:00.
    assert_eq!(
        resume_slot(utc(2026, 3, 10, 7), Paris, nine()),
        utc(2026, 3, 10, 8)
    );
    // 10:00 UTC is 11:00 in Paris: tomorrow at 09:00.
    assert_eq!(
        resume_slot(utc(2026, 3, 10, 10), Paris, nine()),
        utc(2026, 3, 11, 8)
    );
}

#[test]
fn the_sequence_resumes_at_the_step_it_had_reached_and_keeps_its_rhythm() {
    // Due 16 March; reminder_1 (21 March) and reminder_2 (28 March) fell inside a pause
    // that ended on 2 April at 00:00 local. Their windows are open at any time.
    let pending = [step(1, 1, utc(2026, 3, 21, 8)), step(2, 2, utc(2026, 3, 28, 8))];
    let plan = redate_after_pause(&pending, &resuming(date(2026, 3, 16), utc(2026, 4, 1, 22), &FR));
    // 2 April 09:00 in Paris is summer time (UTC+2).
    assert_eq!(
        plan,
        vec![moved(1, utc(2026, 4, 2, 7)), moved(2, utc(2026, 4, 9, 7))]
    );
}

#[test]
fn nothing_moves_when_the_pause_ended_before_the_next_step() {
    let pending = [reminder(1, 1, utc(2026, 3, 24, 8))];
    assert!(redate_after_pause(&pending, &resuming(date(2026, 3, 16), utc(2026, 3, 19, 12), &FR)).is_empty());
}

#[test]
fn a_resume_on_a_weekend_waits_for_the_next_opening_of_each_steps_window() {
    // Due Monday 2 March 2026; reminders on Tuesday 10, Tuesday 17 and Wednesday 25 March,
    // in the Tuesday-Thursday morning window. A promise holds the sequence until Saturday 14
    // March 00:00: four days later. Saturday 14 → Tuesday 17, Saturday 21 → Tuesday 24, and
    // Sunday 29 (the spring change) → Tuesday 31 at 09:00 summer time.
    let pending = [
        reminder(1, 1, utc(2026, 3, 10, 8)),
        reminder(2, 2, utc(2026, 3, 17, 8)),
        reminder(3, 3, utc(2026, 3, 25, 8)),
    ];
    let plan = redate_after_pause(&pending, &resuming(date(2026, 3, 2), utc(2026, 3, 13, 23), &FR));
    assert_eq!(
        plan,
        vec![
            moved(1, utc(2026, 3, 17, 8)),
            moved(2, utc(2026, 3, 24, 8)),
            moved(3, utc(2026, 3, 31, 7)),
        ]
    );
    // The same steps without windows keep the weekend days.
    let anytime: Vec<PausedStep> = pending
        .iter()
        .map(|s| PausedStep {
            window: SendWindow::any_time(),
            ..s.clone()
        })
        .collect();
    let plan = redate_after_pause(&anytime, &resuming(date(2026, 3, 2), utc(2026, 3, 13, 23), &FR));
    assert_eq!(
        local_moves(&plan),
        vec!["Sat 14 09:00", "Sat 21 09:00", "Sun 29 09:00"]
    );
}

#[test]
fn two_steps_pushed_onto_one_day_go_out_on_consecutive_openings() {
    // Due Monday 2 March 2026; reminders on Wednesday 11 and Thursday 12 March. The pause
    // ends on Friday 13 March: both land after the weekend, on Tuesday 17. The second waits
    // for the next opening of its window, Wednesday 18.
    let pending = [
        reminder(1, 1, utc(2026, 3, 11, 8)),
        reminder(2, 2, utc(2026, 3, 12, 8)),
    ];
    let plan = redate_after_pause(&pending, &resuming(date(2026, 3, 2), utc(2026, 3, 12, 23), &FR));
    assert_eq!(local_moves(&plan), vec!["Tue 17 09:00", "Wed 18 09:00"]);
}

#[test]
fn the_customers_calendar_decides_the_holidays() {
    // Tuesday 14 July 2026 is Bastille Day: a reminder re-dated from Monday 13 July goes out
    // on Wednesday 15 in France, on Tuesday 14 for a customer without a calendar.
    let pending = [reminder(1, 1, utc(2026, 7, 7, 7))];
    let french = redate_after_pause(&pending, &resuming(date(2026, 6, 30), utc(2026, 7, 12, 22), &FR));
    assert_eq!(french, vec![moved(1, utc(2026, 7, 15, 7))]);
    let elsewhere = redate_after_pause(
        &pending,
        &resuming(date(2026, 6, 30), utc(2026, 7, 12, 22), &WeekendsOnly),
    );
    assert_eq!(elsewhere, vec![moved(1, utc(2026, 7, 14, 7))]);
    // Good Friday (3 April 2026) is a public holiday in Alsace-Moselle only; Easter Monday
    // everywhere in France. Any working morning: Friday in Paris, Tuesday in Strasbourg.
    let mornings = [step_in(
        1,
        1,
        utc(2026, 3, 31, 7),
        SendWindow::any_working_morning(),
    )];
    let resume = utc(2026, 4, 2, 22);
    let paris = redate_after_pause(&mornings, &resuming(date(2026, 3, 20), resume, &FR));
    assert_eq!(local_moves(&paris), vec!["Fri 03 09:00"]);
    let alsace = FrenchCalendar { alsace_moselle: true };
    let strasbourg = redate_after_pause(&mornings, &resuming(date(2026, 3, 20), resume, &alsace));
    assert_eq!(local_moves(&strasbourg), vec!["Tue 07 09:00"]);
}

#[test]
fn steps_are_re_dated_on_the_customers_wall_clock() {
    // A customer in New York: the pause ends on Saturday 14 March 2026 at 00:00 local
    // (04:00Z, daylight time since 8 March); the reminder goes out on Tuesday 17 at 09:00
    // local, 13:00Z.
    let pending = [reminder(1, 1, utc(2026, 3, 10, 13))];
    let resumption = Resumption {
        tz: America::New_York,
        ..resuming(date(2026, 3, 2), utc(2026, 3, 14, 4), &FR)
    };
    assert_eq!(
        redate_after_pause(&pending, &resumption),
        vec![moved(1, utc(2026, 3, 17, 13))]
    );
}

#[test]
fn a_pre_due_note_overtaken_by_the_due_date_is_skipped() {
    // Pre-due note on 11 March, due 16 March, paused until 18 March.
    let pending = [step(0, 0, utc(2026, 3, 11, 8)), step(1, 1, utc(2026, 3, 21, 8))];
    let plan = redate_after_pause(&pending, &resuming(date(2026, 3, 16), utc(2026, 3, 17, 23), &FR));
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert!(matches!(plan[0], Redate::Skip { id, .. } if id == Uuid::from_u128(0)));
    // A pause that ends before the due date keeps the note, at the next send time.
    let plan = redate_after_pause(&pending, &resuming(date(2026, 3, 16), utc(2026, 3, 12, 12), &FR));
    assert_eq!(plan[0], moved(0, utc(2026, 3, 13, 8)));
}

#[test]
fn a_pre_due_note_its_window_would_push_onto_the_due_date_is_skipped() {
    // Due Monday 16 March; the note (any working morning) was for Wednesday 11. The pause
    // ends on Saturday 14, before the due date, but the note's window next opens on Monday
    // 16, the due date itself: it is skipped. The reminder of Tuesday 17 keeps its time.
    let pending = [
        step_in(0, 0, utc(2026, 3, 11, 8), SendWindow::any_working_morning()),
        reminder(1, 1, utc(2026, 3, 17, 8)),
    ];
    let plan = redate_after_pause(&pending, &resuming(date(2026, 3, 16), utc(2026, 3, 13, 23), &FR));
    assert_eq!(local_moves(&plan), vec!["skip"]);
    assert!(matches!(plan[0], Redate::Skip { id, .. } if id == Uuid::from_u128(0)));
    // In a window open at any time, the note goes out on the Saturday, and the reminder
    // moves by the same three days (Friday 20, then Tuesday 24 in its window).
    let anytime = [
        step(0, 0, utc(2026, 3, 11, 8)),
        reminder(1, 1, utc(2026, 3, 17, 8)),
    ];
    let plan = redate_after_pause(&anytime, &resuming(date(2026, 3, 16), utc(2026, 3, 13, 23), &FR));
    assert_eq!(local_moves(&plan), vec!["Sat 14 09:00", "Tue 24 09:00"]);
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn re_dated_steps_are_ordered_one_a_day_in_their_windows_and_after_the_pause(
        steps in random_steps(),
        send_hour in 6u32..20,
        due_offset in 0u64..(4 * 365),
        tz in zones(),
        alsace in prop::option::of(any::<bool>()),
        pause_starts_hours in -600i64..1500,
        pause_hours in 1i64..2000,
    ) {
        let policy = random_policy(&steps, send_hour);
        let calendar: Box<dyn HolidayCalendar> = match alsace {
            Some(alsace_moselle) => Box::new(FrenchCalendar { alsace_moselle }),
            None => Box::new(WeekendsOnly),
        };
        let due_on = date(2025, 1, 1) + Days::new(due_offset);
        let input = PlanInput {
            risk: Risk::Medium,
            kind: CustomerKind::Business,
            amount: Money::new(Decimal::new(500, 0), iso_currency::Currency::EUR),
            due_on,
            tz,
            calendar: calendar.as_ref(),
        };
        let plan = plan_invoice(&policy, &input);
        // The steps due before the pause started went out; the others were held back.
        let paused_at = local_instant(tz, due_on, NaiveTime::MIN) + Duration::hours(pause_starts_hours);
        let resume_at = paused_at + Duration::hours(pause_hours);
        let held: Vec<PausedStep> = plan
            .steps
            .iter()
            .filter(|s| s.due_at > paused_at)
            .map(|s| PausedStep {
                id: Uuid::from_u128(u128::try_from(s.position).unwrap()),
                position: s.position,
                due_at: s.due_at,
                window: policy.step_window(Risk::Medium, &s.name),
            })
            .collect();
        let resumption = Resumption { due_on, resume_at, tz, calendar: calendar.as_ref(), send_time: policy.send_time };
        let redates = redate_after_pause(&held, &resumption);
        let local_day = |t: DateTime<Utc>| t.with_timezone(&tz).date_naive();
        let mut after: Vec<(i32, DateTime<Utc>, &SendWindow, bool)> = Vec::new();
        for s in &held {
            match redates.iter().find(|r| matches!(r, Redate::Move { id, .. } | Redate::Skip { id, .. } if *id == s.id)) {
                Some(Redate::Skip { .. }) => {
                    // Only a note for before the due date is ever skipped.
                    prop_assert!(local_day(s.due_at) < due_on);
                }
                Some(Redate::Move { to, .. }) => {
                    prop_assert!(*to > s.due_at, "moved back from {} to {}", s.due_at, to);
                    after.push((s.position, *to, &s.window, true));
                }
                None => after.push((s.position, s.due_at, &s.window, false)),
            }
        }
        let mut previous: Option<(i32, DateTime<Utc>)> = None;
        for (position, at, window, _) in &after {
            let local = at.with_timezone(&tz);
            prop_assert!(window.contains(calendar.as_ref(), tz, *at), "{} outside its window", local);
            prop_assert!(*at >= resume_at, "{} before the pause ended at {}", local, resume_at);
            if let Some((p, t)) = previous {
                prop_assert!(p < *position);
                prop_assert!(local_day(t) < local_day(*at), "two steps on {}", local);
            }
            previous = Some((*position, *at));
        }
        // A note for before the due date never goes out on or after it once re-dated.
        for (position, at, _, was_moved) in &after {
            let planned = held.iter().find(|s| s.position == *position).map(|s| s.due_at);
            if *was_moved && planned.is_some_and(|p| local_day(p) < due_on) {
                prop_assert!(local_day(*at) < due_on);
            }
        }
        // The first step to go out after the pause takes the first opening of its window from
        // the next send time: never later than needed.
        if let Some((_, at, window, true)) = after.first() {
            let slot = resume_slot(resume_at, tz, policy.send_time);
            prop_assert_eq!(*at, crate::window::next_opening(window, calendar.as_ref(), tz, slot));
        }
    }
}
