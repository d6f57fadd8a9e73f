//! Phone-call tasks: a policy step on channel `call` asks a person of the accounts team to
//! call the customer. This module holds the rules about them: the outcome a caller records
//! (`call.outcome`), validated from the wire's plain fields, and how long a task stays open.
//! What an outcome does to the sequence (a promise, a dispute) is the payments listener's
//! job; rendering the call script is the renderer's. No I/O.

use crate::collections::validate::{free_text, MAX_REASON_CHARS};
use crate::validation::{required_text, Rejection};
use crate::window::local_instant;
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

/// The email template that confirms a promise obtained on a call; the policy lists it
/// among the templates it may render, so it is defined there.
pub use crate::policy::CALL_RECAP_TEMPLATE;

/// The longest a call task may stay open (`RELANCE_CALL_TASK_DAYS`).
pub const MAX_CALL_TASK_DAYS: u32 = 60;

/// The name of the recap step of a call step: one per call, so two calls may each have one.
pub fn recap_step_name(call_step: &str) -> String {
    format!("{call_step}_recap")
}

/// What came of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The customer was reached; with a date, they promised to pay by it.
    Reached { promised_on: Option<NaiveDate> },
    /// The customer contests the invoice.
    Disputed { reason: String },
    /// Nobody answered (or a voicemail): the sequence goes on.
    NoAnswer,
}

impl CallOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            CallOutcome::Reached { .. } => "reached",
            CallOutcome::Disputed { .. } => "disputed",
            CallOutcome::NoAnswer => "no_answer",
        }
    }
}

/// A call outcome, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCallOutcome {
    pub invoice_number: String,
    /// The call step; `None`: the invoice's open call task.
    pub step_id: Option<Uuid>,
    pub outcome: CallOutcome,
    /// Free text: who called, who answered, what was said.
    pub note: Option<String>,
}

/// The plain fields of a `call.outcome` message.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOutcomeFields<'a> {
    pub invoice_number: &'a str,
    pub step_id: Option<&'a str>,
    pub outcome: &'a str,
    pub promised_on: Option<NaiveDate>,
    pub reason: Option<&'a str>,
    pub note: Option<&'a str>,
}

pub fn validate_call_outcome(f: CallOutcomeFields<'_>) -> Result<NewCallOutcome, Rejection> {
    let invoice_number = required_text("call.invoice_number", f.invoice_number, 64)?;
    let step_id = match f.step_id.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(id) => Some(Uuid::parse_str(id).map_err(|_| {
            Rejection::new(
                "call.step_id",
                format!("{id:?} is not a step id (a UUID, as `relance tasks` shows)"),
            )
        })?),
    };
    let reason = free_text("call.reason", f.reason, MAX_REASON_CHARS)?;
    let only_when = |field: &str, outcome: &str| {
        Rejection::new(
            field,
            format!(
                "is only for the outcome {outcome:?} (this one is {:?})",
                f.outcome.trim()
            ),
        )
    };
    let outcome = match f.outcome.trim() {
        "reached" => {
            if reason.is_some() {
                return Err(only_when("call.reason", "disputed"));
            }
            CallOutcome::Reached {
                promised_on: f.promised_on,
            }
        }
        "disputed" => {
            if f.promised_on.is_some() {
                return Err(only_when("call.promised_on", "reached"));
            }
            CallOutcome::Disputed {
                reason: reason.ok_or_else(|| {
                    Rejection::new(
                        "call.reason",
                        "is required when the outcome is \"disputed\": what is contested",
                    )
                })?,
            }
        }
        "no_answer" => {
            if f.promised_on.is_some() {
                return Err(only_when("call.promised_on", "reached"));
            }
            if reason.is_some() {
                return Err(only_when("call.reason", "disputed"));
            }
            CallOutcome::NoAnswer
        }
        other => {
            return Err(Rejection::new(
                "call.outcome",
                format!("unknown outcome {other:?} (expected reached, disputed or no_answer)"),
            ))
        }
    };
    Ok(NewCallOutcome {
        invoice_number,
        step_id,
        outcome,
        note: free_text("call.note", f.note, MAX_REASON_CHARS)?,
    })
}

/// When a call task opened at `opened_at` expires: it stays open through the customer's
/// local day `days` days later, and expires at the start of the next one.
pub fn task_expiry(opened_at: DateTime<Utc>, days: u32, tz: Tz) -> DateTime<Utc> {
    let opened_on = opened_at.with_timezone(&tz).date_naive();
    let last_day = opened_on
        .checked_add_days(Days::new(u64::from(days) + 1))
        .unwrap_or(opened_on);
    local_instant(tz, last_day, NaiveTime::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn fields<'a>(outcome: &'a str) -> CallOutcomeFields<'a> {
        CallOutcomeFields {
            invoice_number: "F-1",
            outcome,
            ..CallOutcomeFields::default()
        }
    }

    #[test]
    fn each_outcome_takes_only_its_own_fields() {
        let date = NaiveDate::from_ymd_opt(2026, 3, 20);
        let reached = validate_call_outcome(CallOutcomeFields {
            promised_on: date,
            ..fields("reached")
        });
        assert_eq!(
            reached.map(|o| o.outcome),
            Ok(CallOutcome::Reached { promised_on: date })
        );
        let disputed = validate_call_outcome(CallOutcomeFields {
            reason: Some(" two pallets damaged "),
            ..fields("disputed")
        });
        assert_eq!(
            disputed.map(|o| o.outcome),
            Ok(CallOutcome::Disputed {
                reason: "two pallets damaged".into()
            })
        );
        assert_eq!(
            validate_call_outcome(fields("no_answer")).map(|o| o.outcome),
            Ok(CallOutcome::NoAnswer)
        );
        let e = validate_call_outcome(fields("disputed")).err();
        assert_eq!(e.map(|e| e.field), Some("call.reason".to_string()));
        let e = validate_call_outcome(CallOutcomeFields {
            promised_on: date,
            ..fields("no_answer")
        })
        .err();
        assert_eq!(e.map(|e| e.field), Some("call.promised_on".to_string()));
        let e = validate_call_outcome(fields("voicemail")).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.field == "call.outcome" && e.reason.contains("no_answer")),
            "{e:?}"
        );
    }

    #[test]
    fn a_step_id_must_be_a_uuid_and_the_invoice_is_required() {
        let e = validate_call_outcome(CallOutcomeFields {
            step_id: Some("call_1"),
            ..fields("no_answer")
        })
        .err();
        assert_eq!(e.map(|e| e.field), Some("call.step_id".to_string()));
        let e = validate_call_outcome(CallOutcomeFields {
            invoice_number: " ",
            ..fields("no_answer")
        })
        .err();
        assert_eq!(e.map(|e| e.field), Some("call.invoice_number".to_string()));
        let id = Uuid::from_u128(7);
        let ok = validate_call_outcome(CallOutcomeFields {
            step_id: Some(&id.to_string()),
            ..fields("no_answer")
        });
        assert_eq!(ok.map(|o| o.step_id), Ok(Some(id)));
    }

    #[test]
    fn a_task_stays_open_through_its_last_local_day() {
        // Opened Thursday 12 March 2026 at 09:00 Paris (08:00 UTC), 5 days: open through
        // Tuesday 17 March, expires at midnight Paris (23:00 UTC).
        let opened = Utc
            .with_ymd_and_hms(2026, 3, 12, 8, 0, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(
            task_expiry(opened, 5, chrono_tz::Europe::Paris).to_rfc3339(),
            "2026-03-17T23:00:00+00:00"
        );
    }
}
