//! The `call.outcome` message the accounts team sends (from `relance tasks outcome` or the
//! console's task form): built from plain fields and checked by the same validation as the
//! payments listener applies, so a bad outcome is refused before it is published. Publishing
//! it is the caller's (transport) job.

use chrono::{DateTime, NaiveDate, Utc};
use relance_contracts::{CallOutcomeV1, CallV1, VERSION_1};
use relance_domain::calls::{validate_call_outcome, CallOutcomeFields};
use relance_domain::Rejection;

/// What a caller records: the invoice (and the call step when known) and what came of it.
#[derive(Debug, Clone, Default)]
pub struct RecordedCall {
    pub invoice_number: String,
    pub step_id: Option<String>,
    /// `reached`, `disputed` or `no_answer`.
    pub outcome: String,
    pub promised_on: Option<NaiveDate>,
    pub reason: Option<String>,
    pub note: Option<String>,
}

/// The `call.outcome` message for `call`, validated.
pub fn call_outcome_message(
    call: RecordedCall,
    event_id: String,
    now: DateTime<Utc>,
) -> Result<CallOutcomeV1, Rejection> {
    let blank_to_none = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let message = CallOutcomeV1 {
        version: VERSION_1,
        event_id,
        occurred_at: now,
        call: CallV1 {
            invoice_number: call.invoice_number.trim().to_string(),
            step_id: blank_to_none(call.step_id),
            outcome: call.outcome.trim().to_string(),
            promised_on: call.promised_on,
            reason: blank_to_none(call.reason),
            note: blank_to_none(call.note),
        },
    };
    let c = &message.call;
    validate_call_outcome(CallOutcomeFields {
        invoice_number: &c.invoice_number,
        step_id: c.step_id.as_deref(),
        outcome: &c.outcome,
        promised_on: c.promised_on,
        reason: c.reason.as_deref(),
        note: c.note.as_deref(),
    })?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disputed_call_needs_its_reason_and_blank_fields_are_left_out() {
        let call = RecordedCall {
            invoice_number: "F-1".into(),
            outcome: "disputed".into(),
            reason: Some("  ".into()),
            ..RecordedCall::default()
        };
        assert!(call_outcome_message(call, "e".into(), Utc::now()).is_err());
        let call = RecordedCall {
            invoice_number: "F-1".into(),
            outcome: "no_answer".into(),
            note: Some(" ".into()),
            step_id: Some(String::new()),
            ..RecordedCall::default()
        };
        let m = call_outcome_message(call, "e".into(), Utc::now()).unwrap();
        assert_eq!((m.call.note, m.call.step_id), (None, None));
    }
}
