//! The collections status of an invoice, derived from its status, its pauses and its plan:
//! what the accounts team has to expect next.

use crate::policy::Tone;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use std::fmt;
use std::str::FromStr;

/// The invoice status as stored (`open`, `settled`, `closed`, `handed_off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceState {
    Open,
    Settled,
    Closed,
    HandedOff,
}

impl FromStr for InvoiceState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(InvoiceState::Open),
            "settled" => Ok(InvoiceState::Settled),
            "closed" => Ok(InvoiceState::Closed),
            "handed_off" => Ok(InvoiceState::HandedOff),
            other => Err(format!("unknown invoice status {other:?}")),
        }
    }
}

impl InvoiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceState::Open => "open",
            InvoiceState::Settled => "settled",
            InvoiceState::Closed => "closed",
            InvoiceState::HandedOff => "handed_off",
        }
    }
}

impl fmt::Display for InvoiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CollectionStatus {
    /// Not yet due; the note before the due date has still to go out.
    ToWarn,
    /// Not yet due; nothing is planned before the due date any more.
    NotDue,
    /// Overdue; amicable reminders (courteous or firm) are still to go out.
    ToRemind,
    /// Overdue; a formal step (formal notice) is due or past, or the amicable steps are all
    /// done: the next move is formal.
    ToFormalise,
    /// A promise to pay, a dispute or a suspension holds the sequence.
    Paused,
    Settled,
    Closed,
    HandedOff,
}

impl CollectionStatus {
    pub const ALL: [CollectionStatus; 8] = [
        CollectionStatus::ToWarn,
        CollectionStatus::NotDue,
        CollectionStatus::ToRemind,
        CollectionStatus::ToFormalise,
        CollectionStatus::Paused,
        CollectionStatus::Settled,
        CollectionStatus::Closed,
        CollectionStatus::HandedOff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CollectionStatus::ToWarn => "to_warn",
            CollectionStatus::NotDue => "not_due",
            CollectionStatus::ToRemind => "to_remind",
            CollectionStatus::ToFormalise => "to_formalise",
            CollectionStatus::Paused => "paused",
            CollectionStatus::Settled => "settled",
            CollectionStatus::Closed => "closed",
            CollectionStatus::HandedOff => "handed_off",
        }
    }
}

impl fmt::Display for CollectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CollectionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let wanted = s.trim().replace('-', "_");
        CollectionStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == wanted)
            .ok_or_else(|| {
                let known: Vec<&str> = CollectionStatus::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown collections status {s:?} (expected one of: {})",
                    known.join(", ")
                )
            })
    }
}

/// One reminder step of the plan, as far as the status is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSnapshot {
    pub due_at: DateTime<Utc>,
    pub tone: Tone,
    /// Not gone out yet: pending, or in flight (queued, rendered, sending).
    pub pending: bool,
}

/// What the collections status needs to know of an invoice's plan at one time: what
/// [`PlanAt::of`] reads from its steps, or what a query over a whole ledger computes for
/// each invoice with the same definitions (the collections gauges do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanAt {
    /// A formal step (formal notice) is due or past, sent or not.
    pub formal_due: bool,
    /// A step not gone out yet is planned on a local day before the due date (the note
    /// before the due date).
    pub warning_pending: bool,
    /// An amicable step (courteous or firm) has not gone out yet.
    pub amicable_pending: bool,
}

impl PlanAt {
    pub fn of(steps: &[StepSnapshot], due_on: NaiveDate, tz: Tz, now: DateTime<Utc>) -> Self {
        let local_day = |t: DateTime<Utc>| t.with_timezone(&tz).date_naive();
        PlanAt {
            formal_due: steps.iter().any(|s| s.tone == Tone::Formal && s.due_at <= now),
            warning_pending: steps.iter().any(|s| s.pending && local_day(s.due_at) < due_on),
            amicable_pending: steps.iter().any(|s| s.pending && s.tone != Tone::Formal),
        }
    }
}

/// The collections status at `now`. An invoice is overdue from the day after its due date,
/// in the customer's time zone.
pub fn collection_status(
    state: InvoiceState,
    paused: bool,
    due_on: NaiveDate,
    tz: Tz,
    steps: &[StepSnapshot],
    now: DateTime<Utc>,
) -> CollectionStatus {
    collection_status_at(state, paused, due_on, tz, PlanAt::of(steps, due_on, tz, now), now)
}

/// [`collection_status`] from what it needs of the plan.
pub fn collection_status_at(
    state: InvoiceState,
    paused: bool,
    due_on: NaiveDate,
    tz: Tz,
    plan: PlanAt,
    now: DateTime<Utc>,
) -> CollectionStatus {
    match state {
        InvoiceState::Settled => return CollectionStatus::Settled,
        InvoiceState::Closed => return CollectionStatus::Closed,
        InvoiceState::HandedOff => return CollectionStatus::HandedOff,
        InvoiceState::Open => {}
    }
    if paused {
        return CollectionStatus::Paused;
    }
    if plan.formal_due {
        return CollectionStatus::ToFormalise;
    }
    let today = now.with_timezone(&tz).date_naive();
    if today <= due_on {
        return if plan.warning_pending {
            CollectionStatus::ToWarn
        } else {
            CollectionStatus::NotDue
        };
    }
    if plan.amicable_pending {
        CollectionStatus::ToRemind
    } else {
        CollectionStatus::ToFormalise
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::Europe::Paris;

    fn utc(m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, m, d, 8, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn due() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 16).unwrap_or_default()
    }

    fn step(m: u32, d: u32, tone: Tone, pending: bool) -> StepSnapshot {
        StepSnapshot {
            due_at: utc(m, d),
            tone,
            pending,
        }
    }

    /// Pre-due note on 11 March, courteous reminder 21 March, firm 28 March, formal 15 April.
    fn plan(sent_up_to: usize) -> Vec<StepSnapshot> {
        [
            (3, 11, Tone::Courteous),
            (3, 21, Tone::Courteous),
            (3, 28, Tone::Firm),
            (4, 15, Tone::Formal),
        ]
        .iter()
        .enumerate()
        .map(|(i, (m, d, tone))| step(*m, *d, *tone, i >= sent_up_to))
        .collect()
    }

    fn status(
        state: InvoiceState,
        paused: bool,
        steps: &[StepSnapshot],
        now: DateTime<Utc>,
    ) -> CollectionStatus {
        collection_status(state, paused, due(), Paris, steps, now)
    }

    #[test]
    fn the_status_follows_the_plan() {
        use CollectionStatus::*;
        let open = InvoiceState::Open;
        assert_eq!(status(open, false, &plan(0), utc(3, 2)), ToWarn);
        assert_eq!(status(open, false, &plan(1), utc(3, 12)), NotDue);
        // The due day itself is not overdue yet.
        assert_eq!(status(open, false, &plan(1), utc(3, 16)), NotDue);
        assert_eq!(status(open, false, &plan(1), utc(3, 17)), ToRemind);
        assert_eq!(status(open, false, &plan(3), utc(4, 2)), ToFormalise);
        assert_eq!(status(open, false, &plan(3), utc(4, 15)), ToFormalise);
        assert_eq!(status(open, false, &plan(4), utc(4, 20)), ToFormalise);
    }

    #[test]
    fn a_formal_step_due_now_is_to_formalise_even_with_reminders_left() {
        let mut steps = plan(1);
        steps[3].due_at = utc(3, 20);
        assert_eq!(
            status(InvoiceState::Open, false, &steps, utc(3, 20)),
            CollectionStatus::ToFormalise
        );
    }

    #[test]
    fn an_amicable_sequence_that_is_over_calls_for_formal_action() {
        let steps: Vec<StepSnapshot> = plan(3).into_iter().take(3).collect();
        assert_eq!(
            status(InvoiceState::Open, false, &steps, utc(4, 1)),
            CollectionStatus::ToFormalise
        );
    }

    #[test]
    fn pauses_and_ends_win_over_the_plan() {
        use CollectionStatus::*;
        assert_eq!(status(InvoiceState::Open, true, &plan(1), utc(3, 20)), Paused);
        assert_eq!(status(InvoiceState::Settled, true, &plan(1), utc(3, 20)), Settled);
        assert_eq!(status(InvoiceState::Closed, false, &plan(1), utc(3, 20)), Closed);
        assert_eq!(
            status(InvoiceState::HandedOff, false, &plan(4), utc(5, 1)),
            HandedOff
        );
    }

    #[test]
    fn statuses_read_back_from_their_names() {
        for s in CollectionStatus::ALL {
            assert_eq!(s.as_str().parse(), Ok(s));
        }
        assert_eq!("to-remind".parse(), Ok(CollectionStatus::ToRemind));
        assert!("late".parse::<CollectionStatus>().is_err());
    }
}
