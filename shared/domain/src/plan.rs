//! Planning: from a policy and an invoice, the dated steps; and at send time, which of the
//! due steps of one invoice goes out (catch-up: only the latest, the earlier are skipped).

use crate::customer::{Channel, Risk};
use crate::policy::{DunningPolicy, Tone};
use chrono::{DateTime, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
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

fn add_days(date: NaiveDate, days: i64) -> NaiveDate {
    let shifted = if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    };
    shifted.unwrap_or(date)
}

/// The steps of the customer's segment, dated in the customer's time zone.
pub fn plan_steps(policy: &DunningPolicy, risk: Risk, due_on: NaiveDate, tz: Tz) -> Vec<PlannedStep> {
    policy
        .steps_for(risk)
        .iter()
        .enumerate()
        .map(|(i, step)| PlannedStep {
            name: step.name.clone(),
            position: i32::try_from(i).unwrap_or(i32::MAX),
            channel: step.channel,
            template: step.template.clone(),
            tone: step.tone,
            due_at: local_instant(tz, add_days(due_on, step.offset_days), policy.send_time),
        })
        .collect()
}

/// The next sending time after the customer's local day of `now`.
pub fn next_local_day(policy: &DunningPolicy, tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.with_timezone(&tz).date_naive();
    local_instant(tz, add_days(today, 1), policy.send_time)
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
    fn steps_are_dated_from_the_due_date_at_local_send_time() {
        let steps = plan_steps(
            &policy(),
            Risk::Medium,
            date(2026, 3, 31),
            chrono_tz::Europe::Paris,
        );
        let due: Vec<String> = steps.iter().map(|s| s.due_at.to_rfc3339()).collect();
        // 26 March is winter time (UTC+1); 5 and 12 April are summer time (UTC+2).
        assert_eq!(
            due,
            vec![
                "2026-03-26T08:00:00+00:00",
                "2026-04-05T07:00:00+00:00",
                "2026-04-12T07:00:00+00:00",
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
