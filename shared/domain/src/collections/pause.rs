//! When a pause ends and how the sequence resumes.
//!
//! A promise to pay holds the sequence through the promised day and the grace days after it,
//! in the customer's time zone. When a pause ends the sequence resumes at the step it had
//! reached: the first step still to go out is sent at the next send time, and the steps after
//! it move by the same number of days, so the sequence keeps its rhythm. Steps whose day fell
//! inside the pause are not fired at once, nor skipped by catch-up. A note meant for before
//! the due date that could now only go out after it is skipped.

use crate::plan::local_instant;
use crate::validation::Rejection;
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The longest promise accepted: further than this is a payment plan, not a promise.
pub const MAX_PROMISE_DAYS: i64 = 365;

/// Why a sequence is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PauseKind {
    /// A promise to pay by a date: ends by itself after the grace days.
    Promise,
    /// The customer contests the invoice: ends when the dispute is resolved.
    Dispute,
    /// The e-invoicing platform's "suspended": ends when the supplier completes the invoice.
    Suspension,
}

impl PauseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseKind::Promise => "promise",
            PauseKind::Dispute => "dispute",
            PauseKind::Suspension => "suspension",
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
}

/// What happens to one step when the sequence resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redate {
    /// The step goes out at this new time.
    Move { id: Uuid, to: DateTime<Utc> },
    /// A note for before the due date that can no longer go out before it.
    Skip { id: Uuid, reason: &'static str },
}

/// The steps to move (or skip) when a pause ends at `resume_at`. Steps not listed keep
/// their time: nothing to do when the pause ended before the next step's time.
pub fn redate_after_pause(
    pending: &[PausedStep],
    due_on: NaiveDate,
    resume_at: DateTime<Utc>,
    tz: Tz,
    send_time: NaiveTime,
) -> Vec<Redate> {
    let local_day = |t: DateTime<Utc>| t.with_timezone(&tz).date_naive();
    let slot = resume_slot(resume_at, tz, send_time);
    let slot_day = local_day(slot);
    let mut steps: Vec<&PausedStep> = pending.iter().collect();
    steps.sort_by_key(|s| (s.position, s.due_at));
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for step in steps {
        let day = local_day(step.due_at);
        if day < due_on && slot_day >= due_on && step.due_at < slot {
            out.push(Redate::Skip {
                id: step.id,
                reason: "a note for before the due date, which has passed during the pause",
            });
        } else {
            kept.push(step);
        }
    }
    let Some(first) = kept.first() else {
        return out;
    };
    if first.due_at >= slot {
        return out;
    }
    let shift = u64::try_from((slot_day - local_day(first.due_at)).num_days()).unwrap_or(0);
    for step in kept {
        let to = local_instant(tz, days_after(local_day(step.due_at), shift), send_time);
        if to != step.due_at {
            out.push(Redate::Move { id: step.id, to });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::Europe::Paris;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn nine() -> NaiveTime {
        NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default()
    }

    fn step(n: u128, position: i32, due_at: DateTime<Utc>) -> PausedStep {
        PausedStep {
            id: Uuid::from_u128(n),
            position,
            due_at,
        }
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
        // that ended on 2 April at 00:00 local.
        let pending = [step(1, 1, utc(2026, 3, 21, 8)), step(2, 2, utc(2026, 3, 28, 8))];
        let plan = redate_after_pause(&pending, date(2026, 3, 16), utc(2026, 4, 1, 22), Paris, nine());
        assert_eq!(
            plan,
            vec![
                // 2 April 09:00 in Paris is summer time (UTC+2).
                Redate::Move {
                    id: Uuid::from_u128(1),
                    to: utc(2026, 4, 2, 7)
                },
                Redate::Move {
                    id: Uuid::from_u128(2),
                    to: utc(2026, 4, 9, 7)
                },
            ]
        );
    }

    #[test]
    fn nothing_moves_when_the_pause_ended_before_the_next_step() {
        let pending = [step(1, 1, utc(2026, 3, 21, 8))];
        assert!(
            redate_after_pause(&pending, date(2026, 3, 16), utc(2026, 3, 19, 12), Paris, nine()).is_empty()
        );
    }

    #[test]
    fn a_pre_due_note_overtaken_by_the_due_date_is_skipped() {
        // Pre-due note on 11 March, due 16 March, paused until 18 March.
        let pending = [step(0, 0, utc(2026, 3, 11, 8)), step(1, 1, utc(2026, 3, 21, 8))];
        let plan = redate_after_pause(&pending, date(2026, 3, 16), utc(2026, 3, 17, 23), Paris, nine());
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert!(matches!(plan[0], Redate::Skip { id, .. } if id == Uuid::from_u128(0)));
        // A pause that ends before the due date keeps the note, at the next send time.
        let plan = redate_after_pause(&pending, date(2026, 3, 16), utc(2026, 3, 12, 12), Paris, nine());
        assert_eq!(
            plan[0],
            Redate::Move {
                id: Uuid::from_u128(0),
                to: utc(2026, 3, 13, 8)
            }
        );
    }
}
