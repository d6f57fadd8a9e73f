//! When a pause ends and how the sequence resumes.
//!
//! A promise to pay holds the sequence through the promised day and the grace days after it,
//! in the customer's time zone. When a pause ends the sequence resumes at the step it had
//! reached: the first step still to go out is sent at the next send time, and the steps after
//! it move by the same number of days, so the sequence keeps its rhythm; each then goes out at
//! the next opening of its own send window on the customer's calendar, one step a local day,
//! as planning places them (`plan::Placement`). Steps whose day fell inside the pause are not
//! fired at once, nor skipped by catch-up. A note meant for before the due date that could
//! now only go out after it is skipped.

use crate::calendar::HolidayCalendar;
use crate::plan::Placement;
use crate::validation::Rejection;
use crate::window::local_instant;
use crate::window::SendWindow;
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The longest promise accepted: further than this is a payment plan, not a promise.
pub const MAX_PROMISE_DAYS: i64 = 365;

/// Why a sequence is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseKind {
    /// A promise to pay by a date: ends by itself after the grace days.
    Promise,
    /// The customer contests the invoice: ends when the dispute is resolved.
    Dispute,
    /// The e-invoicing platform's "suspended": ends when the supplier completes the invoice.
    Suspension,
    /// Held by hand by the accounts team (`pause.requested`): ends when it is released
    /// (`resume.requested`), and only then.
    Manual,
    /// A payment plan holds the invoice's own sequence (its own notes go out instead): ends
    /// when the plan is completed or broken.
    Plan,
    /// The customer replied to a message and the policy holds the sequence until someone
    /// handles the reply (`[replies] pause_on_reply`; `reply.handled` ends it).
    Reply,
    /// The customer asked for a payment plan (`payment_plan.requested`, from the customer
    /// page): held while the accounts team decides; ends when a plan is agreed
    /// (`payment_plan.agreed`) or the request is declined (`resume.requested`).
    PlanRequest,
}

impl PauseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseKind::Promise => "promise",
            PauseKind::Dispute => "dispute",
            PauseKind::Suspension => "suspension",
            PauseKind::Manual => "manual",
            PauseKind::Plan => "plan",
            PauseKind::Reply => "reply",
            PauseKind::PlanRequest => "plan_request",
        }
    }
}

impl fmt::Display for PauseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PauseKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "promise" => Ok(PauseKind::Promise),
            "dispute" => Ok(PauseKind::Dispute),
            "suspension" => Ok(PauseKind::Suspension),
            "manual" => Ok(PauseKind::Manual),
            "plan_request" => Ok(PauseKind::PlanRequest),
            "plan" => Ok(PauseKind::Plan),
            "reply" => Ok(PauseKind::Reply),
            other => Err(format!("unknown pause kind {other:?}")),
        }
    }
}

fn days_after(date: NaiveDate, days: u64) -> NaiveDate {
    date.checked_add_days(Days::new(days)).unwrap_or(date)
}

/// The end of a promise's pause: the start of the customer's local day after the promised
/// day and the grace days. A promise for 25 March with 3 grace days pauses the sequence
/// until 29 March 00:00 local time. Refused when the promised day is already past, or more
/// than [`MAX_PROMISE_DAYS`] away.
pub fn promise_pause_end(
    promised_on: NaiveDate,
    today: NaiveDate,
    grace_days: u32,
    tz: Tz,
) -> Result<DateTime<Utc>, Rejection> {
    if promised_on < today {
        return Err(Rejection::new(
            "promise.promised_on",
            format!("{promised_on} is already past (today is {today} in the customer's time zone)"),
        ));
    }
    if (promised_on - today).num_days() > MAX_PROMISE_DAYS {
        return Err(Rejection::new(
            "promise.promised_on",
            format!("{promised_on} is more than {MAX_PROMISE_DAYS} days away: agree a payment plan instead"),
        ));
    }
    let resumes_on = days_after(promised_on, u64::from(grace_days) + 1);
    Ok(local_instant(tz, resumes_on, NaiveTime::MIN))
}

/// The first send time (`send_time`, local) at or after `at`.
pub fn resume_slot(at: DateTime<Utc>, tz: Tz, send_time: NaiveTime) -> DateTime<Utc> {
    let day = at.with_timezone(&tz).date_naive();
    let same_day = local_instant(tz, day, send_time);
    if same_day >= at {
        same_day
    } else {
        local_instant(tz, days_after(day, 1), send_time)
    }
}

/// A step of the paused invoice that has not gone out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedStep {
    pub id: Uuid,
    pub position: i32,
    pub due_at: DateTime<Utc>,
    /// Its send window: the policy's window of the step in the customer's segment, else the
    /// policy's default (see [`crate::DunningPolicy::step_window`]).
    pub window: SendWindow,
}

/// What happens to one step when the sequence resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redate {
    /// The step goes out at this new time.
    Move { id: Uuid, to: DateTime<Utc> },
    /// A note for before the due date that can no longer go out before it.
    Skip { id: Uuid, reason: &'static str },
}

/// The invoice and customer a sequence resumes for.
#[derive(Debug, Clone, Copy)]
pub struct Resumption<'a> {
    /// The invoice's due date.
    pub due_on: NaiveDate,
    /// When the last pause ended.
    pub resume_at: DateTime<Utc>,
    /// The customer's time zone and holiday calendar.
    pub tz: Tz,
    pub calendar: &'a dyn HolidayCalendar,
    /// The policy's send time.
    pub send_time: NaiveTime,
}

/// The steps to move (or skip) when a pause ends. The first step still to go out moves to
/// the next send time after the pause, and each later one by as many days, so the sequence
/// keeps its rhythm; then, as when the plan was made, each goes out at the next opening of
/// its own window on the customer's calendar, never on the local day of the step before it.
/// Steps not listed keep their time: nothing to do when the pause ended before the next
/// step's time. A note for before the due date that would now go out on or after it is
/// skipped.
pub fn redate_after_pause(pending: &[PausedStep], resumption: &Resumption<'_>) -> Vec<Redate> {
    let Resumption {
        due_on,
        resume_at,
        tz,
        calendar,
        send_time,
    } = *resumption;
    let local_day = |t: DateTime<Utc>| t.with_timezone(&tz).date_naive();
    let slot = resume_slot(resume_at, tz, send_time);
    let slot_day = local_day(slot);
    let mut steps: Vec<&PausedStep> = pending.iter().collect();
    steps.sort_by_key(|s| (s.position, s.due_at));
    let mut out = Vec::new();
    // Set by the first step that moves: every later one moves by as many days.
    let mut shift: Option<u64> = None;
    let mut last_day: Option<NaiveDate> = None;
    for step in steps {
        let day = local_day(step.due_at);
        let days = match shift {
            Some(days) => days,
            // The pause ended before the next step's time: the plan stands.
            None if step.due_at >= slot => return out,
            None => u64::try_from((slot_day - day).num_days()).unwrap_or(0),
        };
        let placement = Placement {
            window: &step.window,
            calendar,
            tz,
            send_time,
        };
        let to = placement.place(days_after(day, days), last_day);
        if day < due_on && local_day(to) >= due_on {
            out.push(Redate::Skip {
                id: step.id,
                reason: "a note for before the due date, which has passed during the pause",
            });
            continue;
        }
        shift = Some(days);
        last_day = Some(local_day(to));
        if to != step.due_at {
            out.push(Redate::Move { id: step.id, to });
        }
    }
    out
}

#[cfg(test)]
#[path = "pause_tests.rs"]
mod tests;
