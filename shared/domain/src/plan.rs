//! Planning: from a policy and an invoice, the dated steps, each inside its send window on
//! the customer's calendar; re-planning when the customer's segment changes; and at send
//! time, which of the due steps of one invoice goes out (catch-up: only the latest, the
//! earlier are skipped) and whether its window is open. Pure: the scheduler stores and sends.

use crate::calendar::{FrenchCalendar, HolidayCalendar};
use crate::customer::{Channel, CustomerKind, Risk};
use crate::money::Money;
use crate::policy::{DunningPolicy, Tone};
use crate::window::{local_instant, next_opening, SendWindow};
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use std::collections::BTreeSet;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub name: String,
    pub position: i32,
    pub channel: Channel,
    pub template: String,
    pub tone: Tone,
    pub due_at: DateTime<Utc>,
}

fn add_days(date: NaiveDate, days: i64) -> NaiveDate {
    let shifted = if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    };
    shifted.unwrap_or(date)
}

/// Where a step of one invoice goes out: its send window, on the customer's calendar and
/// wall clock, at the policy's send time.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    pub window: &'a SendWindow,
    pub calendar: &'a dyn HolidayCalendar,
    pub tz: Tz,
    pub send_time: NaiveTime,
}

impl Placement<'_> {
    /// The instant a step whose own local day is `day` goes out: at the send time that day,
    /// or at the next opening of its window when that is closed. A step never shares a local
    /// day with the invoice's previous one (`after`, the local day it goes out): it then
    /// starts from the day after. Local dates and times first, converted last.
    pub fn place(&self, day: NaiveDate, after: Option<NaiveDate>) -> DateTime<Utc> {
        let earliest = match after {
            Some(previous) if day <= previous => add_days(previous, 1),
            _ => day,
        };
        let not_before = local_instant(self.tz, earliest, self.send_time);
        next_opening(self.window, self.calendar, self.tz, not_before)
    }
}

/// What planning needs to know about an invoice and its customer.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub risk: Risk,
    pub kind: CustomerKind,
    pub amount: Money,
    pub due_on: NaiveDate,
    pub tz: Tz,
    pub calendar: &'a dyn HolidayCalendar,
}

/// A step of the segment left out of an invoice's plan, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcludedStep {
    pub name: String,
    pub reason: String,
}

/// The plan of one invoice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Dated steps, in order, on distinct local days, each inside its window.
    pub steps: Vec<PlannedStep>,
    /// Steps whose conditions do not hold for this invoice.
    pub excluded: Vec<ExcludedStep>,
    /// Why the invoice is not chased at all (below the policy's threshold); then no steps.
    pub not_chased: Option<String>,
}

/// The steps of the customer's segment whose conditions hold, each dated at the policy's
/// send time on `due_on + offset_days` in the customer's time zone, or at the next opening of
/// its window on the customer's calendar when that is closed. A step never shares a local
/// day with an earlier one (a window may push one onto the next): it then moves to the next
/// opening after that day. Local dates and times are worked out first and converted last, so
/// a daylight-saving change neither shifts a step nor plans it twice.
pub fn plan_invoice(policy: &DunningPolicy, input: &PlanInput<'_>) -> Plan {
    if let Some(reason) = policy.below_threshold(&input.amount) {
        return Plan {
            not_chased: Some(reason),
            ..Plan::default()
        };
    }
    let mut plan = Plan::default();
    let mut last_day: Option<NaiveDate> = None;
    for (i, step) in policy.steps_for(input.risk).iter().enumerate() {
        if let Err(reason) = step.conditions.check(&input.amount, input.kind) {
            plan.excluded.push(ExcludedStep {
                name: step.name.clone(),
                reason,
            });
            continue;
        }
        let placement = Placement {
            window: &policy.window(&step.window),
            calendar: input.calendar,
            tz: input.tz,
            send_time: policy.send_time,
        };
        let due_at = placement.place(add_days(input.due_on, step.offset_days), last_day);
        last_day = Some(due_at.with_timezone(&input.tz).date_naive());
        plan.steps.push(PlannedStep {
            name: step.name.clone(),
            position: i32::try_from(i).unwrap_or(i32::MAX),
            channel: step.channel,
            template: step.template.clone(),
            tone: step.tone,
            due_at,
        });
    }
    plan
}

/// The steps of the customer's segment, dated in the customer's time zone, in their windows
/// on the French calendar, whatever their conditions. Prefer [`plan_invoice`], which knows
/// the customer's calendar, the amount and the kind.
pub fn plan_steps(policy: &DunningPolicy, risk: Risk, due_on: NaiveDate, tz: Tz) -> Vec<PlannedStep> {
    let calendar = FrenchCalendar::default();
    let mut unconditional = policy.clone();
    unconditional.minimum_amount.clear();
    for steps in unconditional.segments.values_mut() {
        for step in steps {
            step.conditions = Default::default();
        }
    }
    let input = PlanInput {
        risk,
        kind: CustomerKind::Business,
        amount: Money::new(rust_decimal::Decimal::ONE, iso_currency::Currency::EUR),
        due_on,
        tz,
        calendar: &calendar,
    };
    plan_invoice(&unconditional, &input).steps
}

/// The next sending time after the customer's local day of `now`.
pub fn next_local_day(policy: &DunningPolicy, tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.with_timezone(&tz).date_naive();
    local_instant(tz, add_days(today, 1), policy.send_time)
}

/// For a step that must wait for another day (a reminder of the invoice already went out
/// today): the policy's send time tomorrow, or its window's next opening after that.
pub fn next_day_in_window(
    policy: &DunningPolicy,
    window: &SendWindow,
    calendar: &dyn HolidayCalendar,
    tz: Tz,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    next_opening(window, calendar, tz, next_local_day(policy, tz, now))
}

/// Whether a due step may go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendDecision {
    Now,
    /// Its window is closed: wait until it opens again.
    WaitUntil(DateTime<Utc>),
}

/// A due step goes out when its window is open; or, when the scheduler is late, later the
/// same local day it was due (a window allowed that day: the customer still gets it that
/// day). Otherwise (after an outage, for an invoice that arrived late) it waits for the next
/// opening: never on a weekend, a holiday or a day its window excludes.
pub fn send_decision(
    window: &SendWindow,
    calendar: &dyn HolidayCalendar,
    tz: Tz,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> SendDecision {
    if window.contains(calendar, tz, now) {
        return SendDecision::Now;
    }
    let local_now = now.with_timezone(&tz);
    let same_day = due_at.with_timezone(&tz).date_naive() == local_now.date_naive();
    if same_day
        && due_at <= now
        && window.allows_day(calendar, local_now.date_naive())
        && local_now.time() >= window.opens
    {
        return SendDecision::Now;
    }
    SendDecision::WaitUntil(next_opening(window, calendar, tz, now))
}

/// A step of an invoice as stored, for re-planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingStep {
    pub id: Uuid,
    /// `Some` while the step is pending (not yet emitted): it may be re-planned. `None` once it
    /// was emitted, sent, skipped, cancelled or failed: it is never touched again.
    pub pending: Option<PlannedStep>,
    pub name: String,
    /// Its place in the sequence (for a step no longer pending: where it stood).
    pub position: i32,
}

/// What re-planning changes on one invoice's steps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replan {
    /// Pending steps given new values (same id, same name).
    pub update: Vec<(Uuid, PlannedStep)>,
    /// Steps of the new plan that the invoice does not have yet.
    pub insert: Vec<PlannedStep>,
    /// Pending steps that the new plan no longer has.
    pub remove: Vec<Uuid>,
}

impl Replan {
    pub fn is_empty(&self) -> bool {
        self.update.is_empty() && self.insert.is_empty() && self.remove.is_empty()
    }
}

/// Re-plans an invoice's pending steps for a new plan (a new segment, time zone, calendar or
/// customer kind). Steps already emitted are never touched, and the sequence never goes
/// back: the new plan's steps up to the last one already done (by name) are not planned
/// again. Applying the result and re-planning again with the same plan changes nothing.
pub fn replan(new_plan: &Plan, existing: &[ExistingStep]) -> Replan {
    let done: BTreeSet<&str> = existing
        .iter()
        .filter(|s| s.pending.is_none())
        .map(|s| s.name.as_str())
        .collect();
    let resume_after = new_plan
        .steps
        .iter()
        .rposition(|s| done.contains(s.name.as_str()))
        .map_or(0, |i| i + 1);
    let mut wanted: Vec<PlannedStep> = new_plan.steps[resume_after.min(new_plan.steps.len())..].to_vec();
    // Positions order a sequence: what is left of the new one comes after what was done
    // (a step of another segment may have the position of one already sent).
    let last_done = existing
        .iter()
        .filter(|s| s.pending.is_none())
        .map(|s| s.position)
        .max();
    if let (Some(last_done), Some(first)) = (last_done, wanted.first().map(|s| s.position)) {
        if first <= last_done {
            let shift = last_done - first + 1;
            for step in &mut wanted {
                step.position = step.position.saturating_add(shift);
            }
        }
    }
    let mut out = Replan::default();
    for step in &wanted {
        match existing.iter().find(|e| e.name == step.name) {
            Some(e) => {
                if let Some(current) = &e.pending {
                    if current != step {
                        out.update.push((e.id, step.clone()));
                    }
                }
            }
            None => out.insert.push(step.clone()),
        }
    }
    for e in existing {
        if e.pending.is_some() && !wanted.iter().any(|w| w.name == e.name) {
            out.remove.push(e.id);
        }
    }
    out
}

/// A pending step of one invoice whose time has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCandidate {
    pub id: Uuid,
    pub position: i32,
    pub due_at: DateTime<Utc>,
}

/// What to do with the due steps of one invoice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Triage {
    /// The step that goes out now.
    pub emit: Option<Uuid>,
    /// Earlier steps overtaken by a later one: recorded as skipped, never sent.
    pub skip: Vec<Uuid>,
    /// The step that must wait for the next day (a reminder already went out today).
    pub postpone: Option<Uuid>,
}

/// Catch-up: when several steps are due at once (the invoice arrived late, or the system was
/// down), only the latest goes out; a customer never gets two reminders for one invoice in
/// one day, so if one already went out today the latest waits for tomorrow.
pub fn triage_due(due: &[StepCandidate], already_emitted_today: bool) -> Triage {
    let Some(latest) = due.iter().max_by_key(|s| (s.position, s.due_at)) else {
        return Triage::default();
    };
    let skip = due.iter().filter(|s| s.id != latest.id).map(|s| s.id).collect();
    if already_emitted_today {
        Triage {
            emit: None,
            skip,
            postpone: Some(latest.id),
        }
    } else {
        Triage {
            emit: Some(latest.id),
            skip,
            postpone: None,
        }
    }
}

/// [`triage_due`] over every pending step of an invoice, due or not: the latest due step is
/// the one to send, and every pending step before it in the sequence is overtaken, even one
/// not due yet (a step waiting for its window while a later one, in another window, became
/// due): the sequence only moves forward.
pub fn triage_pending(pending: &[StepCandidate], now: DateTime<Utc>, already_emitted_today: bool) -> Triage {
    let due: Vec<StepCandidate> = pending.iter().filter(|s| s.due_at <= now).cloned().collect();
    let mut triage = triage_due(&due, already_emitted_today);
    let latest = triage.emit.or(triage.postpone);
    if let Some(position) = pending.iter().find(|s| Some(s.id) == latest).map(|s| s.position) {
        for s in pending {
            if s.position < position && s.due_at > now {
                triage.skip.push(s.id);
            }
        }
    }
    triage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> DunningPolicy {
        match DunningPolicy::default_policy() {
            Ok(p) => p,
            Err(e) => panic!("default policy: {e}"),
        }
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    #[test]
    fn steps_are_dated_from_the_due_date_at_local_send_time_inside_their_windows() {
        let steps = plan_steps(
            &policy(),
            Risk::Medium,
            date(2026, 3, 31),
            chrono_tz::Europe::Paris,
        );
        let due: Vec<String> = steps.iter().map(|s| s.due_at.to_rfc3339()).collect();
        // J-5 is Thursday 26 March, winter time (UTC+1). J+5 is Sunday 5 April: the reminder
        // window next opens on Tuesday 7 April (Monday 6 is Easter Monday), summer time
        // (UTC+2). The call, J+12, is Sunday 12 April: Monday 13, a working day. The firm
        // email, J+13, is that Monday: Tuesday 14. The SMS, J+17, is Friday 17 April, a
        // working day; the registered letter, J+30, Thursday 30 April.
        assert_eq!(
            due,
            vec![
                "2026-03-26T08:00:00+00:00",
                "2026-04-07T07:00:00+00:00",
                "2026-04-13T07:00:00+00:00",
                "2026-04-14T07:00:00+00:00",
                "2026-04-17T07:00:00+00:00",
                "2026-04-30T07:00:00+00:00",
            ]
        );
    }

    #[test]
    fn a_time_inside_a_dst_gap_moves_just_after_it() {
        // Clocks in Paris jump from 02:00 to 03:00 on 29 March 2026.
        let at = local_instant(
            chrono_tz::Europe::Paris,
            date(2026, 3, 29),
            NaiveTime::from_hms_opt(2, 30, 0).unwrap_or_default(),
        );
        assert_eq!(at.to_rfc3339(), "2026-03-29T01:00:00+00:00");
    }

    fn candidate(position: i32) -> StepCandidate {
        StepCandidate {
            id: Uuid::from_u128(position as u128),
            position,
            due_at: DateTime::<Utc>::MIN_UTC,
        }
    }

    #[test]
    fn catch_up_sends_only_the_latest_due_step() {
        let t = triage_due(&[candidate(0), candidate(2), candidate(1)], false);
        assert_eq!(t.emit, Some(Uuid::from_u128(2)));
        assert_eq!(t.skip, vec![Uuid::from_u128(0), Uuid::from_u128(1)]);
        assert_eq!(t.postpone, None);
    }

    #[test]
    fn a_second_reminder_the_same_day_waits_for_tomorrow() {
        let t = triage_due(&[candidate(1)], true);
        assert_eq!(
            t,
            Triage {
                emit: None,
                skip: vec![],
                postpone: Some(Uuid::from_u128(1))
            }
        );
    }

    #[test]
    fn nothing_due_means_nothing_to_do() {
        assert_eq!(triage_due(&[], false), Triage::default());
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod planner_tests;
