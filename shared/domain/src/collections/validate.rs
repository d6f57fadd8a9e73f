//! Validation of the messages that pause or end a sequence: from the wire's plain fields to
//! domain values, or a rejection naming the field at fault and why. Rules that need the
//! invoice (a promise in the past in the customer's time zone, a credit note larger than the
//! balance) are checked by the consumer once it holds the invoice.

use super::lifecycle::LifecycleStatus;
use crate::money::Money;
use crate::validation::{positive_money, required_text, Rejection};
use chrono::NaiveDate;

/// Longest reason or note accepted.
pub const MAX_REASON_CHARS: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct NewPromise {
    pub invoice_number: String,
    pub promised_on: NaiveDate,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewDispute {
    pub invoice_number: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCreditNote {
    pub id: String,
    pub invoice_number: String,
    pub amount: Money,
    pub issued_on: NaiveDate,
    pub reason: Option<String>,
}

/// How a dispute ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The invoice stands: the sequence resumes.
    Upheld,
    /// Resolved by a credit note: applied, then the sequence resumes for what is left.
    Credited(NewCreditNote),
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewResolution {
    pub invoice_number: String,
    pub outcome: Outcome,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewWriteOff {
    pub invoice_number: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewLifecycleStatus {
    pub invoice_number: String,
    pub status: LifecycleStatus,
    pub reason: Option<String>,
    /// Only for `cashed`: the amount cashed; `None` is the whole balance.
    pub amount: Option<Money>,
}

/// A reason or note: may span lines, but carries no other control character.
pub(crate) fn free_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, Rejection> {
    let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > max {
        return Err(Rejection::new(field, format!("is longer than {max} characters")));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Rejection::new(field, "contains control characters"));
    }
    Ok(Some(text.to_string()))
}

fn required_reason(field: &str, value: &str) -> Result<String, Rejection> {
    free_text(field, Some(value), MAX_REASON_CHARS)?
        .ok_or_else(|| Rejection::new(field, "is required and must not be blank"))
}

fn invoice_number(prefix: &str, value: &str) -> Result<String, Rejection> {
    required_text(&format!("{prefix}.invoice_number"), value, 64)
}

/// An amount in a currency, with both fields named under `prefix`.
fn money(prefix: &str, amount: &str, currency: &str) -> Result<Money, Rejection> {
    positive_money(&format!("{prefix}.amount"), amount, currency).map_err(|r| {
        if r.field == "currency" {
            Rejection::new(&format!("{prefix}.currency"), r.reason)
        } else {
            r
        }
    })
}

pub fn validate_promise(
    number: &str,
    promised_on: Option<NaiveDate>,
    note: Option<&str>,
) -> Result<NewPromise, Rejection> {
    Ok(NewPromise {
        invoice_number: invoice_number("promise", number)?,
        promised_on: promised_on.ok_or_else(|| {
            Rejection::new(
                "promise.promised_on",
                "is required: the date the customer promised to pay by",
            )
        })?,
        note: free_text("promise.note", note, MAX_REASON_CHARS)?,
    })
}

pub fn validate_dispute(number: &str, reason: &str) -> Result<NewDispute, Rejection> {
    Ok(NewDispute {
        invoice_number: invoice_number("dispute", number)?,
        reason: required_reason("dispute.reason", reason)?,
    })
}

/// The plain fields of a credit note.
pub struct CreditNoteFields<'a> {
    pub id: &'a str,
    pub amount: &'a str,
    pub currency: &'a str,
    pub issued_on: Option<NaiveDate>,
    pub reason: Option<&'a str>,
}

/// A credit note for `number`; `issued_on` defaults to `today`. Its fields are named under
/// `prefix` (`credit_note`, or `resolution.credit_note` inside a dispute resolution).
pub fn validate_credit_note(
    prefix: &str,
    number: &str,
    f: CreditNoteFields<'_>,
    today: NaiveDate,
) -> Result<NewCreditNote, Rejection> {
    Ok(NewCreditNote {
        id: required_text(&format!("{prefix}.id"), f.id, 128)?,
        invoice_number: invoice_number(prefix, number)?,
        amount: money(prefix, f.amount, f.currency)?,
        issued_on: f.issued_on.unwrap_or(today),
        reason: free_text(&format!("{prefix}.reason"), f.reason, MAX_REASON_CHARS)?,
    })
}

pub fn validate_resolution(
    number: &str,
    outcome: &str,
    note: Option<&str>,
    credit_note: Option<CreditNoteFields<'_>>,
    today: NaiveDate,
) -> Result<NewResolution, Rejection> {
    let number = invoice_number("resolution", number)?;
    let outcome = match (outcome.trim(), credit_note) {
        ("upheld", None) => Outcome::Upheld,
        ("upheld", Some(_)) => {
            return Err(Rejection::new(
                "resolution.credit_note",
                "must be absent when the outcome is \"upheld\" (use \"credited\")",
            ))
        }
        ("credited", Some(f)) => {
            Outcome::Credited(validate_credit_note("resolution.credit_note", &number, f, today)?)
        }
        ("credited", None) => {
            return Err(Rejection::new(
                "resolution.credit_note",
                "is required when the outcome is \"credited\"",
            ))
        }
        (other, _) => {
            return Err(Rejection::new(
                "resolution.outcome",
                format!("unknown outcome {other:?} (expected upheld or credited)"),
            ))
        }
    };
    Ok(NewResolution {
        invoice_number: number,
        outcome,
        note: free_text("resolution.note", note, MAX_REASON_CHARS)?,
    })
}

pub fn validate_write_off(number: &str, reason: &str) -> Result<NewWriteOff, Rejection> {
    Ok(NewWriteOff {
        invoice_number: invoice_number("write_off", number)?,
        reason: required_reason("write_off.reason", reason)?,
    })
}

pub fn validate_lifecycle_status(
    number: &str,
    status: &str,
    reason: Option<&str>,
    amount: Option<&str>,
    currency: Option<&str>,
) -> Result<NewLifecycleStatus, Rejection> {
    let invoice_number = invoice_number("lifecycle", number)?;
    let status = status
        .parse::<LifecycleStatus>()
        .map_err(|m| Rejection::new("lifecycle.status", m))?;
    let amount = match (amount.map(str::trim).filter(|a| !a.is_empty()), currency) {
        (None, _) => None,
        (Some(_), _) if status != LifecycleStatus::Cashed => {
            return Err(Rejection::new(
                "lifecycle.amount",
                format!("is only read with the status cashed, not {status}"),
            ))
        }
        (Some(_), None) => return Err(Rejection::new("lifecycle.currency", "is required with an amount")),
        (Some(a), Some(c)) => Some(money("lifecycle", a, c)?),
    };
    Ok(NewLifecycleStatus {
        invoice_number,
        status,
        reason: free_text("lifecycle.reason", reason, MAX_REASON_CHARS)?,
        amount,
    })
}

/// A pause by hand (`pause.requested`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewManualPause {
    pub invoice_number: String,
    pub reason: String,
}

/// The release of a pause by hand (`resume.requested`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewManualResume {
    pub invoice_number: String,
    pub note: Option<String>,
}

pub fn validate_manual_pause(number: &str, reason: &str) -> Result<NewManualPause, Rejection> {
    Ok(NewManualPause {
        invoice_number: invoice_number("pause", number)?,
        reason: required_reason("pause.reason", reason)?,
    })
}

pub fn validate_manual_resume(number: &str, note: Option<&str>) -> Result<NewManualResume, Rejection> {
    Ok(NewManualResume {
        invoice_number: invoice_number("resume", number)?,
        note: free_text("resume.note", note, MAX_REASON_CHARS)?,
    })
}

/// An approval decision (`approval.granted`, `approval.rejected`) on a step waiting for it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApprovalDecision {
    pub invoice_number: String,
    pub step_id: uuid::Uuid,
    pub decided_by: String,
    /// Required to reject.
    pub reason: Option<String>,
}

/// Validates an approval decision; `reject` requires a reason.
pub fn validate_approval_decision(
    number: &str,
    step_id: &str,
    decided_by: &str,
    reason: Option<&str>,
    reject: bool,
) -> Result<NewApprovalDecision, Rejection> {
    let step_id = uuid::Uuid::parse_str(step_id.trim()).map_err(|_| {
        Rejection::new(
            "approval.step_id",
            format!("{:?} is not a step id (a UUID)", step_id),
        )
    })?;
    let reason = if reject {
        Some(required_reason("approval.reason", reason.unwrap_or(""))?)
    } else {
        free_text("approval.reason", reason, MAX_REASON_CHARS)?
    };
    Ok(NewApprovalDecision {
        invoice_number: invoice_number("approval", number)?,
        step_id,
        decided_by: required_text("approval.decided_by", decided_by, 200)?,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    fn field<T: std::fmt::Debug>(result: Result<T, Rejection>) -> String {
        match result {
            Err(r) => r.field,
            Ok(v) => panic!("accepted {v:?}"),
        }
    }

    fn credit<'a>(amount: &'a str, currency: &'a str) -> CreditNoteFields<'a> {
        CreditNoteFields {
            id: "AV-1",
            amount,
            currency,
            issued_on: None,
            reason: None,
        }
    }

    #[test]
    fn a_promise_needs_an_invoice_and_a_date() {
        let ok = validate_promise(" F-1 ", Some(date(2026, 3, 25)), Some("  by transfer "));
        assert_eq!(
            ok,
            Ok(NewPromise {
                invoice_number: "F-1".into(),
                promised_on: date(2026, 3, 25),
                note: Some("by transfer".into())
            })
        );
        assert_eq!(field(validate_promise("F-1", None, None)), "promise.promised_on");
        assert_eq!(
            field(validate_promise("  ", Some(date(2026, 3, 25)), None)),
            "promise.invoice_number"
        );
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(
            field(validate_promise("F-1", Some(date(2026, 3, 25)), Some(&long))),
            "promise.note"
        );
    }

    #[test]
    fn a_dispute_and_a_write_off_need_a_reason() {
        assert_eq!(field(validate_dispute("F-1", " ")), "dispute.reason");
        assert_eq!(field(validate_dispute("F-1", "bad\u{7}bell")), "dispute.reason");
        assert!(validate_dispute("F-1", "goods damaged\nsee photos").is_ok());
        assert_eq!(field(validate_write_off("F-1", "")), "write_off.reason");
        assert_eq!(
            field(validate_write_off("", "bankrupt")),
            "write_off.invoice_number"
        );
    }

    #[test]
    fn a_credit_note_has_a_positive_amount_in_a_known_currency() {
        let today = date(2026, 3, 20);
        let ok = validate_credit_note("credit_note", "F-1", credit("150.50", "EUR"), today);
        let Ok(note) = ok else { panic!("{ok:?}") };
        assert_eq!(note.amount.to_string(), "150.50 EUR");
        assert_eq!(note.issued_on, today);
        for (amount, currency, at_fault) in [
            ("0", "EUR", "credit_note.amount"),
            ("-5", "EUR", "credit_note.amount"),
            ("1.234", "EUR", "credit_note.amount"),
            ("ten", "EUR", "credit_note.amount"),
            ("1e3", "EUR", "credit_note.amount"),
            ("12345678901234567", "EUR", "credit_note.amount"),
            ("10", "EUX", "credit_note.currency"),
        ] {
            assert_eq!(
                field(validate_credit_note(
                    "credit_note",
                    "F-1",
                    credit(amount, currency),
                    today
                )),
                at_fault
            );
        }
        let mut blank_id = credit("10", "EUR");
        blank_id.id = "";
        assert_eq!(
            field(validate_credit_note("credit_note", "F-1", blank_id, today)),
            "credit_note.id"
        );
    }

    #[test]
    fn a_resolution_is_upheld_or_credited_with_its_credit_note() {
        let today = date(2026, 3, 20);
        assert!(matches!(
            validate_resolution("F-1", "upheld", None, None, today).map(|r| r.outcome),
            Ok(Outcome::Upheld)
        ));
        let credited = validate_resolution("F-1", "credited", None, Some(credit("10", "EUR")), today);
        assert!(matches!(credited.map(|r| r.outcome), Ok(Outcome::Credited(n)) if n.invoice_number == "F-1"));
        assert_eq!(
            field(validate_resolution("F-1", "credited", None, None, today)),
            "resolution.credit_note"
        );
        assert_eq!(
            field(validate_resolution(
                "F-1",
                "upheld",
                None,
                Some(credit("10", "EUR")),
                today
            )),
            "resolution.credit_note"
        );
        assert_eq!(
            field(validate_resolution("F-1", "won", None, None, today)),
            "resolution.outcome"
        );
        assert_eq!(
            field(validate_resolution(
                "F-1",
                "credited",
                None,
                Some(credit("0", "EUR")),
                today
            )),
            "resolution.credit_note.amount"
        );
    }

    #[test]
    fn a_lifecycle_status_is_known_and_carries_an_amount_only_when_cashed() {
        let ok = validate_lifecycle_status("F-1", "212", None, Some("100.00"), Some("EUR"));
        let Ok(status) = ok else { panic!("{ok:?}") };
        assert_eq!(status.status, LifecycleStatus::Cashed);
        assert_eq!(status.amount.map(|m| m.to_string()), Some("100.00 EUR".into()));
        assert_eq!(
            field(validate_lifecycle_status("F-1", "paid", None, None, None)),
            "lifecycle.status"
        );
        assert_eq!(
            field(validate_lifecycle_status(
                "F-1",
                "refused",
                None,
                Some("1"),
                Some("EUR")
            )),
            "lifecycle.amount"
        );
        assert_eq!(
            field(validate_lifecycle_status("F-1", "cashed", None, Some("1"), None)),
            "lifecycle.currency"
        );
        assert!(
            validate_lifecycle_status("F-1", "cashed", None, None, None).is_ok_and(|s| s.amount.is_none())
        );
    }

    #[test]
    fn a_pause_by_hand_needs_its_reason_and_a_resume_may_have_a_note() {
        assert_eq!(field(validate_manual_pause("F-1", "  ")), "pause.reason");
        assert_eq!(field(validate_manual_pause("", "why")), "pause.invoice_number");
        assert_eq!(
            validate_manual_resume(" F-1 ", Some(" ")),
            Ok(NewManualResume {
                invoice_number: "F-1".into(),
                note: None
            })
        );
    }
}
