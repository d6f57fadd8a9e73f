//! Properties of the planner over random policies, invoices, time zones and calendars, and a
//! model of the scheduler's decisions over a plan: ordered, one step a local day, never in a
//! closed window, never after settlement, re-planning idempotent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::calendar::{FrenchCalendar, WeekendsOnly};
use crate::test_support::{policy_with, random_policy, random_steps, set_segment, zones};
use crate::window::SendWindow;
use chrono::Duration;
use chrono_tz::Europe;
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

fn eur(amount: i64) -> Money {
    Money::new(Decimal::new(amount, 0), iso_currency::Currency::EUR)
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn default_policy() -> DunningPolicy {
    DunningPolicy::default_policy().unwrap()
}

/// Every step an email, and segments of different lengths (high has no `reminder_3`): the
/// re-planning tests need segments that differ.
fn email_only_policy() -> DunningPolicy {
    DunningPolicy::parse(
        include_str!("testdata/policy_email_only.toml"),
        "policy_email_only.toml",
    )
    .unwrap()
}

const FR: FrenchCalendar = FrenchCalendar {
    alsace_moselle: false,
};

fn input(due_on: NaiveDate, tz: Tz, calendar: &dyn HolidayCalendar) -> PlanInput<'_> {
    PlanInput {
        risk: Risk::Medium,
        kind: CustomerKind::Business,
        amount: eur(500),
        due_on,
        tz,
        calendar,
    }
}

#[test]
fn a_window_that_pushes_a_step_onto_the_next_ones_day_pushes_that_one_further() {
    // Due Friday 3 July 2026. J+1 (Saturday) and J+4 (Tuesday) both land on Tuesday 7 July in
    // the Tuesday-Thursday window: the second goes to Wednesday 8 July.
    let policy = policy_with(&[(1, "reminders"), (4, "reminders"), (5, "reminders")]);
    let plan = plan_invoice(&policy, &input(date(2026, 7, 3), Europe::Paris, &FR));
    let days: Vec<String> = plan
        .steps
        .iter()
        .map(|s| {
            s.due_at
                .with_timezone(&Europe::Paris)
                .format("%a %d %H:%M")
                .to_string()
        })
        .collect();
    assert_eq!(days, vec!["Tue 07 09:00", "Wed 08 09:00", "Thu 09 09:00"]);
}

#[test]
fn a_holiday_moves_a_step_to_the_next_opening_of_its_window() {
    // Due Friday 10 July 2026, medium: J+5 is Wednesday 15 July (fine); J-5 is Sunday 5 July,
    // then Monday 6 July for the working-mornings window.
    let plan = plan_invoice(&default_policy(), &input(date(2026, 7, 10), Europe::Paris, &FR));
    let local = |i: usize| plan.steps[i].due_at.with_timezone(&Europe::Paris).naive_local();
    assert_eq!(local(0).to_string(), "2026-07-06 09:00:00");
    assert_eq!(local(1).to_string(), "2026-07-15 09:00:00");
    // Due Thursday 9 July: J+5 is Tuesday 14 July, Bastille Day: Wednesday 15 July instead.
    let plan = plan_invoice(&default_policy(), &input(date(2026, 7, 9), Europe::Paris, &FR));
    let r1 = plan.steps[1].due_at.with_timezone(&Europe::Paris).naive_local();
    assert_eq!(r1.to_string(), "2026-07-15 09:00:00");
    // Without the French calendar the Tuesday is fine.
    let plan = plan_invoice(
        &default_policy(),
        &input(date(2026, 7, 9), Europe::Paris, &WeekendsOnly),
    );
    let r1 = plan.steps[1].due_at.with_timezone(&Europe::Paris).naive_local();
    assert_eq!(r1.to_string(), "2026-07-14 09:00:00");
}

#[test]
fn invoices_below_the_threshold_are_not_chased() {
    let policy = default_policy();
    let mut small = input(date(2026, 7, 9), Europe::Paris, &FR);
    small.amount = Money::new(Decimal::new(999, 2), iso_currency::Currency::EUR);
    let plan = plan_invoice(&policy, &small);
    assert!(plan.steps.is_empty());
    let reason = plan.not_chased.unwrap();
    assert!(
        reason.contains("9.99 EUR") && reason.contains("10.00 EUR"),
        "{reason}"
    );
    // At the threshold it is chased; a currency without a threshold always is.
    small.amount = Money::new(Decimal::new(1000, 2), iso_currency::Currency::EUR);
    assert_eq!(plan_invoice(&policy, &small).not_chased, None);
    small.amount = Money::new(Decimal::new(1, 0), iso_currency::Currency::JPY);
    assert_eq!(
        plan_invoice(&policy, &small).steps.len(),
        policy.steps_for(Risk::Medium).len()
    );
}

#[test]
fn steps_whose_conditions_fail_are_left_out_with_the_reason() {
    let mut policy = email_only_policy();
    let steps = policy.segments.get_mut(&Risk::Medium.into()).unwrap();
    steps[3].conditions.min_amount = BTreeMap::from([("EUR".to_string(), Decimal::new(1000, 0))]);
    steps[4].conditions.customer_kind = Some(CustomerKind::Business);
    let mut consumer = input(date(2026, 7, 9), Europe::Paris, &FR);
    consumer.kind = CustomerKind::Consumer;
    let plan = plan_invoice(&policy, &consumer);
    let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["pre_due", "reminder_1", "reminder_2"]);
    let excluded: Vec<&str> = plan.excluded.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(excluded, vec!["reminder_3", "formal_notice"]);
    assert!(plan.excluded[0]
        .reason
        .contains("below the step's minimum of 1000"));
    assert!(plan.excluded[1].reason.contains("for business customers"));
    // Positions stay those of the policy, so the order of steps is kept.
    assert_eq!(plan.steps[2].position, 2);
}

#[test]
fn a_late_scheduler_sends_the_same_day_but_not_on_a_later_closed_day() {
    let window = SendWindow::reminders();
    let tz = Europe::Paris;
    let due = local_instant(tz, date(2026, 7, 15), NaiveTime::from_hms_opt(9, 0, 0).unwrap());
    let at = |d: u32, h: u32| local_instant(tz, date(2026, 7, d), NaiveTime::from_hms_opt(h, 0, 0).unwrap());
    assert_eq!(
        send_decision(&window, &FR, tz, due, at(15, 10)),
        SendDecision::Now
    );
    // Wednesday afternoon: late, the same day.
    assert_eq!(
        send_decision(&window, &FR, tz, due, at(15, 16)),
        SendDecision::Now
    );
    // Friday (an outage): wait for Tuesday 21 July, 09:00.
    assert_eq!(
        send_decision(&window, &FR, tz, due, at(17, 10)),
        SendDecision::WaitUntil(at(21, 9))
    );
    // Thursday morning, inside the window again: now.
    assert_eq!(
        send_decision(&window, &FR, tz, due, at(16, 11)),
        SendDecision::Now
    );
}

#[test]
fn replanning_keeps_what_was_sent_and_never_goes_back_in_the_sequence() {
    let policy = email_only_policy();
    let due_on = date(2026, 3, 16);
    let medium = plan_invoice(&policy, &input(due_on, Europe::Paris, &FR));
    // pre_due and reminder_1 went out; the rest is pending.
    let existing: Vec<ExistingStep> = medium
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| ExistingStep {
            id: Uuid::from_u128(i as u128),
            name: s.name.clone(),
            pending: (i >= 2).then(|| s.clone()),
            position: s.position,
        })
        .collect();
    let mut high_input = input(due_on, Europe::Paris, &FR);
    high_input.risk = Risk::High;
    let high = plan_invoice(&policy, &high_input);
    let r = replan(&high, &existing);
    // High's reminder_2 (J+8) and formal notice (J+15) take the place of medium's (J+12,
    // J+30), keeping their ids; high has no reminder_3; what went out stays as it is.
    assert_eq!(
        r.update,
        vec![
            (Uuid::from_u128(2), high.steps[2].clone()),
            (Uuid::from_u128(4), high.steps[3].clone()),
        ]
    );
    assert_eq!(r.remove, vec![Uuid::from_u128(3)]);
    assert!(r.insert.is_empty());
    // Back to medium once high's reminder_2 went out: medium resumes after its reminder_2.
    let mut after: Vec<ExistingStep> = existing.clone();
    after.retain(|e| e.id != Uuid::from_u128(3));
    after[2].pending = None;
    after[3].pending = Some(high.steps[3].clone());
    let back = replan(&medium, &after);
    assert_eq!(back.insert, vec![medium.steps[3].clone()]);
    assert_eq!(back.update, vec![(Uuid::from_u128(4), medium.steps[4].clone())]);
    assert!(back.remove.is_empty());
}

#[test]
fn replanned_steps_come_after_the_steps_done_by_position_too() {
    let policy = email_only_policy();
    let due_on = date(2026, 3, 16);
    let medium = plan_invoice(&policy, &input(due_on, Europe::Paris, &FR));
    // Medium's reminder_3 (position 3) went out; the customer becomes high risk, whose formal
    // notice is at position 3 too: it moves to position 4, after the reminder.
    let existing: Vec<ExistingStep> = medium
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| ExistingStep {
            id: Uuid::from_u128(i as u128),
            name: s.name.clone(),
            pending: (i == 4).then(|| s.clone()),
            position: s.position,
        })
        .collect();
    let mut high_input = input(due_on, Europe::Paris, &FR);
    high_input.risk = Risk::High;
    let high = plan_invoice(&policy, &high_input);
    let r = replan(&high, &existing);
    assert_eq!(r.update.len(), 1);
    assert_eq!(r.update[0].1.name, "formal_notice");
    assert_eq!(high.steps[3].position, 3);
    assert_eq!(r.update[0].1.position, 4);
}

// ---------------------------------------------------------------- properties

fn dates_2025_to_2028() -> impl Strategy<Value = NaiveDate> {
    (0u64..(4 * 365)).prop_map(|d| date(2025, 1, 1) + Days::new(d))
}

fn calendar_of(alsace: Option<bool>) -> Box<dyn HolidayCalendar> {
    match alsace {
        Some(alsace_moselle) => Box::new(FrenchCalendar { alsace_moselle }),
        None => Box::new(WeekendsOnly),
    }
}

/// The scheduler's decisions over one invoice, ticking at the given intervals until the
/// invoice is settled: returns the (instant, step position) of each emission.
fn simulate(
    policy: &DunningPolicy,
    plan: &Plan,
    calendar: &dyn HolidayCalendar,
    tz: Tz,
    start: DateTime<Utc>,
    ticks: &[i64],
    settled_at: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, i32)> {
    let mut pending: Vec<(Uuid, PlannedStep)> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (Uuid::from_u128(i as u128), s.clone()))
        .collect();
    let window_of =
        |s: &PlannedStep| policy.window(&policy.step_named(Risk::Medium, &s.name).unwrap().window);
    let mut emitted: Vec<(DateTime<Utc>, i32)> = Vec::new();
    let mut now = start;
    for minutes in ticks.iter().cycle().take(2000) {
        now += Duration::minutes(*minutes);
        if now >= settled_at {
            break; // The payment cancels every pending step.
        }
        let candidates: Vec<StepCandidate> = pending
            .iter()
            .map(|(id, s)| StepCandidate {
                id: *id,
                position: s.position,
                due_at: s.due_at,
            })
            .collect();
        let today = now.with_timezone(&tz).date_naive();
        let emitted_today = emitted
            .iter()
            .any(|(t, _)| t.with_timezone(&tz).date_naive() == today);
        let triage = triage_pending(&candidates, now, emitted_today);
        pending.retain(|(id, _)| !triage.skip.contains(id));
        if let Some(id) = triage.postpone {
            if let Some((_, s)) = pending.iter_mut().find(|(i, _)| *i == id) {
                s.due_at = next_day_in_window(policy, &window_of(s), calendar, tz, now);
            }
        }
        if let Some(id) = triage.emit {
            let Some(index) = pending.iter().position(|(i, _)| *i == id) else {
                continue;
            };
            let step = pending[index].1.clone();
            match send_decision(&window_of(&step), calendar, tz, step.due_at, now) {
                SendDecision::Now => {
                    emitted.push((now, step.position));
                    pending.remove(index);
                }
                SendDecision::WaitUntil(t) => pending[index].1.due_at = t,
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    emitted
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn plans_are_ordered_one_a_day_inside_their_windows_and_never_early(
        steps in random_steps(),
        send_hour in 6u32..20,
        due_on in dates_2025_to_2028(),
        tz in zones(),
        alsace in prop::option::of(any::<bool>()),
    ) {
        let policy = random_policy(&steps, send_hour);
        let calendar = calendar_of(alsace);
        let plan = plan_invoice(&policy, &input(due_on, tz, calendar.as_ref()));
        prop_assert_eq!(plan.steps.len(), steps.len());
        let mut previous: Option<&PlannedStep> = None;
        for (step, (offset, window_name)) in plan.steps.iter().zip(&steps) {
            let window = policy.window(window_name);
            let local = step.due_at.with_timezone(&tz);
            prop_assert!(window.contains(calendar.as_ref(), tz, step.due_at), "{} outside {}", local, window_name);
            let nominal = local_instant(tz, add_days(due_on, *offset), policy.send_time);
            prop_assert!(step.due_at >= nominal, "{} before its nominal {}", step.due_at, nominal);
            if let Some(p) = previous {
                prop_assert!(p.due_at < step.due_at);
                prop_assert!(p.position < step.position);
                prop_assert!(p.due_at.with_timezone(&tz).date_naive() < local.date_naive(), "two steps on {}", local);
            }
            previous = Some(step);
        }
        // Deterministic: the same input gives the same plan.
        prop_assert_eq!(&plan, &plan_invoice(&policy, &input(due_on, tz, calendar.as_ref())));
    }

    #[test]
    fn the_scheduler_never_sends_after_settlement_twice_a_day_or_in_a_closed_window(
        steps in random_steps(),
        send_hour in 6u32..20,
        due_on in dates_2025_to_2028(),
        tz in zones(),
        alsace in prop::option::of(any::<bool>()),
        late_arrival_days in 0i64..40,
        ticks in prop::collection::vec(1i64..(13 * 60), 1..8),
        settle_after_days in 1i64..120,
    ) {
        let policy = random_policy(&steps, send_hour);
        let calendar = calendar_of(alsace);
        let plan = plan_invoice(&policy, &input(due_on, tz, calendar.as_ref()));
        let issued = local_instant(tz, add_days(due_on, -25), NaiveTime::MIN);
        let start = issued + Duration::days(late_arrival_days);
        let settled_at = start + Duration::days(settle_after_days);
        let emitted = simulate(&policy, &plan, calendar.as_ref(), tz, start, &ticks, settled_at);
        let mut days = BTreeSet::new();
        let mut last_position = -1;
        for (at, position) in &emitted {
            prop_assert!(*at < settled_at, "sent at {} after settlement at {}", at, settled_at);
            prop_assert!(days.insert(at.with_timezone(&tz).date_naive()), "two on {}", at);
            prop_assert!(*position > last_position, "out of order");
            last_position = *position;
            let step = &plan.steps.iter().find(|s| s.position == *position).unwrap();
            let window = policy.window(&policy.step_named(Risk::Medium, &step.name).unwrap().window);
            let local = at.with_timezone(&tz);
            // Inside the window, or late the same day on a day the window allows.
            prop_assert!(window.allows_day(calendar.as_ref(), local.date_naive()), "sent on a closed day {}", local);
            prop_assert!(local.time() >= window.opens, "sent before the window opens {}", local);
        }
    }

    #[test]
    fn replanning_is_idempotent_and_never_touches_emitted_steps(
        steps in random_steps(),
        low_steps in random_steps(),
        high_steps in random_steps(),
        due_on in dates_2025_to_2028(),
        tz in zones(),
        emitted_count in 0usize..7,
        new_risk in prop::sample::select(vec![Risk::Low, Risk::Medium, Risk::High]),
    ) {
        // Every segment names its steps step_0, step_1...: moving to another segment updates
        // the steps of the same name, removes and adds the others.
        let mut policy = random_policy(&steps, 9);
        set_segment(&mut policy, Risk::Low, &low_steps);
        set_segment(&mut policy, Risk::High, &high_steps);
        let calendar = FR;
        let old = plan_invoice(&policy, &input(due_on, tz, &calendar));
        let mut existing: Vec<ExistingStep> = old
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| ExistingStep {
                id: Uuid::from_u128(i as u128 + 1),
                name: s.name.clone(),
                pending: (i >= emitted_count).then(|| s.clone()),
                position: s.position,
            })
            .collect();
        // With the same plan nothing changes.
        prop_assert!(replan(&old, &existing).is_empty());
        let mut changed = input(due_on, tz, &calendar);
        changed.risk = new_risk;
        let new = plan_invoice(&policy, &changed);
        let r = replan(&new, &existing);
        for (id, _) in &r.update {
            let e = existing.iter().find(|e| e.id == *id).unwrap();
            prop_assert!(e.pending.is_some(), "re-planned an emitted step");
        }
        for id in &r.remove {
            let e = existing.iter().find(|e| e.id == *id).unwrap();
            prop_assert!(e.pending.is_some(), "removed an emitted step");
        }
        // Apply it, then re-plan again: nothing more to do.
        existing.retain(|e| !r.remove.contains(&e.id));
        for (id, step) in &r.update {
            if let Some(e) = existing.iter_mut().find(|e| e.id == *id) {
                e.pending = Some(step.clone());
                e.position = step.position;
            }
        }
        for (i, step) in r.insert.iter().enumerate() {
            existing.push(ExistingStep {
                id: Uuid::from_u128(1000 + i as u128),
                name: step.name.clone(),
                pending: Some(step.clone()),
                position: step.position,
            });
        }
        prop_assert!(replan(&new, &existing).is_empty());
        // Pending steps come after every emitted one, by position too.
        let done_max = existing.iter().filter(|e| e.pending.is_none()).map(|e| e.position).max();
        for e in existing.iter().filter(|e| e.pending.is_some()) {
            prop_assert!(done_max.is_none_or(|d| e.position > d));
        }
        // And after every emitted one in the new sequence.
        let emitted_names: Vec<&str> = existing.iter().filter(|e| e.pending.is_none()).map(|e| e.name.as_str()).collect();
        let last_done = new.steps.iter().rposition(|s| emitted_names.contains(&s.name.as_str()));
        for e in existing.iter().filter(|e| e.pending.is_some()) {
            let index = new.steps.iter().position(|s| s.name == e.name).unwrap();
            prop_assert!(last_done.is_none_or(|d| index > d));
        }
    }
}
