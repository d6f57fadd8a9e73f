//! The accounts team's actions on one invoice (`relance invoice promise|dispute|resolve|
//! credit|write-off|lifecycle|pause|resume`, and the console's invoice page): each becomes the
//! inbound message another system would publish, built from plain fields and checked by the
//! same validation the payments listener applies ([`check`]), so a bad action is refused
//! before anything is published. Publishing and waiting are the caller's (transport) job;
//! the rules that need the invoice (a promise already past, a credit note above the balance,
//! no dispute open) stay with the listener, which holds the invoice.

use chrono::{DateTime, NaiveDate, Utc};
use relance_contracts::names;
use relance_contracts::{
    ApprovalDecisionV1, ApprovalGrantedV1, ApprovalRejectedV1, CreditNoteIssuedV1, CreditNoteV1,
    DisputeOpenedV1, DisputeResolvedV1, DisputeV1, InvoiceLifecycleStatusV1, InvoiceWrittenOffV1,
    LifecycleStatusV1, ManualPauseV1, ManualResumeV1, PauseRequestedV1, PromiseRecordedV1, PromiseV1,
    ResolutionCreditNoteV1, ResolutionV1, ResumeRequestedV1, WriteOffV1, VERSION_1,
};
use relance_domain::collections::{InvoiceState, PauseKind};
use relance_domain::Rejection;
use serde::Deserialize;

/// What the accounts team asks for an invoice, with the fields a person types. The JSON API
/// reads it tagged by `action` (`{"action": "promise", "date": "2026-07-15"}`); a missing
/// text field reads as blank, refused by the validation with its reason.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum InvoiceAction {
    /// A promise to pay by `date` (`promise.recorded`).
    Promise {
        #[serde(default)]
        date: Option<NaiveDate>,
        #[serde(default)]
        note: Option<String>,
    },
    /// A dispute (`dispute.opened`).
    Dispute {
        #[serde(default)]
        reason: String,
    },
    /// The open dispute resolved (`dispute.resolved`): upheld, or credited by the credit note
    /// `credit_note` of `credit_amount`.
    Resolve {
        #[serde(default)]
        note: Option<String>,
        #[serde(default)]
        credit_note: Option<String>,
        #[serde(default)]
        credit_amount: Option<String>,
        #[serde(default)]
        currency: Option<String>,
    },
    /// A credit note (`credit_note.issued`); its id is generated when not given.
    Credit {
        #[serde(default)]
        amount: String,
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        currency: Option<String>,
        #[serde(default)]
        reason: Option<String>,
    },
    /// A write-off (`invoice.written_off`).
    WriteOff {
        #[serde(default)]
        reason: String,
    },
    /// An e-invoicing lifecycle status, by name or code (`invoice.lifecycle_status`).
    Lifecycle {
        #[serde(default)]
        status: String,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        amount: Option<String>,
        #[serde(default)]
        currency: Option<String>,
    },
    /// A pause by hand (`pause.requested`).
    Pause {
        #[serde(default)]
        reason: String,
    },
    /// The release of the pause by hand (`resume.requested`).
    Resume {
        #[serde(default)]
        note: Option<String>,
    },
}

impl InvoiceAction {
    /// Its name, as the JSON API's `action` says it.
    pub fn name(&self) -> &'static str {
        match self {
            InvoiceAction::Promise { .. } => "promise",
            InvoiceAction::Dispute { .. } => "dispute",
            InvoiceAction::Resolve { .. } => "resolve",
            InvoiceAction::Credit { .. } => "credit",
            InvoiceAction::WriteOff { .. } => "write_off",
            InvoiceAction::Lifecycle { .. } => "lifecycle",
            InvoiceAction::Pause { .. } => "pause",
            InvoiceAction::Resume { .. } => "resume",
        }
    }

    /// Gives the amounts without a currency this one (the invoice's).
    pub fn with_default_currency(mut self, default: &str) -> Self {
        if let InvoiceAction::Resolve { currency, .. }
        | InvoiceAction::Credit { currency, .. }
        | InvoiceAction::Lifecycle { currency, .. } = &mut self
        {
            let given = blank_to_none(currency.take());
            *currency = Some(given.unwrap_or_else(|| default.trim().to_string()));
        }
        self
    }
}

/// A customer's request for a payment plan, validated (`payment_plan.requested`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewPlanRequest {
    pub invoice_number: String,
    pub months: Option<u32>,
    /// Proposed instalments: due date and amount.
    pub instalments: Vec<(NaiveDate, rust_decimal::Decimal)>,
    pub note: Option<String>,
    /// `customer_page`, `console`, `cli`...
    pub source: Option<String>,
}

impl NewPlanRequest {
    /// What it proposes, in words: "6 monthly instalments" or the instalments listed.
    pub fn proposal(&self) -> String {
        match self.months {
            Some(months) if self.instalments.is_empty() => format!("{months} monthly instalments"),
            _ => self
                .instalments
                .iter()
                .map(|(on, amount)| format!("{amount} on {on}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The inbound message of a customer's request for a payment plan (the customer page),
/// validated as the payments listener validates it.
pub fn plan_request_instruction(
    number: &str,
    months: Option<u32>,
    note: Option<String>,
    source: Option<&str>,
    event_id: String,
    now: DateTime<Utc>,
) -> Result<Instruction, Rejection> {
    let id = event_id.clone();
    let m = relance_contracts::PaymentPlanRequestedV1 {
        version: VERSION_1,
        event_id,
        occurred_at: now,
        request: relance_contracts::PaymentPlanRequestV1 {
            invoice_number: number.trim().to_string(),
            months,
            instalments: Vec::new(),
            note: blank_to_none(note),
            source: source.map(str::to_string),
        },
    };
    checked(
        names::PAYMENT_PLAN_REQUESTED,
        &m,
        check::plan_request(&m),
        number,
        &id,
    )
}

/// The message an action publishes: its routing key, its body, the invoice it is about.
#[derive(Debug, Clone)]
pub struct Instruction {
    pub routing_key: &'static str,
    pub body: serde_json::Value,
    pub invoice_number: String,
    pub event_id: String,
}

/// Where an action is taken, as the messages' optional `source` says it.
pub const SOURCE_CUSTOMER_PAGE: &str = "customer_page";
pub const SOURCE_CONSOLE: &str = "console";
pub const SOURCE_CLI: &str = "cli";

impl Instruction {
    /// The same message saying where it was taken (`source` of the promise, dispute, pause,
    /// resume, approval decision or plan it carries; other messages have none and are left
    /// as they are).
    pub fn with_source(mut self, source: &str) -> Self {
        let part = match self.routing_key {
            names::PROMISE_RECORDED => "promise",
            names::DISPUTE_OPENED => "dispute",
            names::PAUSE_REQUESTED => "pause",
            names::RESUME_REQUESTED => "resume",
            names::APPROVAL_GRANTED | names::APPROVAL_REJECTED => "approval",
            names::PAYMENT_PLAN_AGREED => "plan",
            names::PAYMENT_PLAN_REQUESTED => "request",
            _ => return self,
        };
        if let Some(object) = self.body.get_mut(part).and_then(|p| p.as_object_mut()) {
            object.insert(
                "source".to_string(),
                serde_json::Value::String(source.to_string()),
            );
        }
        self
    }
}

fn blank_to_none(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The message `m` under `routing_key`, once `check` (the listener's own validation)
/// accepted it.
fn checked<M: serde::Serialize, T>(
    routing_key: &'static str,
    m: &M,
    check: Result<T, Rejection>,
    invoice_number: &str,
    event_id: &str,
) -> Result<Instruction, Rejection> {
    check?;
    let body = serde_json::to_value(m)
        .map_err(|e| Rejection::new(routing_key, format!("cannot be written as JSON: {e}")))?;
    Ok(Instruction {
        routing_key,
        body,
        invoice_number: invoice_number.trim().to_string(),
        event_id: event_id.to_string(),
    })
}

/// The inbound message for `action` on invoice `number`, validated as the payments listener
/// validates it. `event_id` identifies it (and deduplicates it); `now` is its time.
pub fn instruction(
    number: &str,
    action: InvoiceAction,
    event_id: String,
    now: DateTime<Utc>,
) -> Result<Instruction, Rejection> {
    let invoice_number = number.trim().to_string();
    let id = event_id.clone();
    match action {
        InvoiceAction::Promise { date, note } => {
            let m = PromiseRecordedV1 {
                version: VERSION_1,
                event_id,
                occurred_at: now,
                promise: PromiseV1 {
                    invoice_number,
                    promised_on: date,
                    note: blank_to_none(note),
                    source: None,
                },
            };
            checked(names::PROMISE_RECORDED, &m, check::promise(&m), number, &id)
        }
        InvoiceAction::Dispute { reason } => {
            let m = DisputeOpenedV1 {
                version: VERSION_1,
                event_id,
                occurred_at: now,
                dispute: DisputeV1 {
                    invoice_number,
                    reason,
                    source: None,
                },
            };
            checked(names::DISPUTE_OPENED, &m, check::dispute(&m), number, &id)
        }
        InvoiceAction::Resolve {
            note,
            credit_note,
            credit_amount,
            currency,
        } => {
            let m = DisputeResolvedV1 {
                version: VERSION_1,
                event_id,
                occurred_at: now,
                resolution: resolution(invoice_number, note, credit_note, credit_amount, currency)?,
            };
            checked(names::DISPUTE_RESOLVED, &m, check::resolution(&m), number, &id)
        }
        InvoiceAction::Pause { reason } => {
            let m = PauseRequestedV1 {
                version: VERSION_1,
                event_id,
                occurred_at: now,
                pause: ManualPauseV1 {
                    invoice_number,
                    reason,
                    source: None,
                },
            };
            checked(names::PAUSE_REQUESTED, &m, check::pause(&m), number, &id)
        }
        InvoiceAction::Resume { note } => {
            let m = ResumeRequestedV1 {
                version: VERSION_1,
                event_id,
                occurred_at: now,
                resume: ManualResumeV1 {
                    invoice_number,
                    note: blank_to_none(note),
                    source: None,
                },
            };
            checked(names::RESUME_REQUESTED, &m, check::resume(&m), number, &id)
        }
        closing => closing_instruction(invoice_number, closing, event_id, now),
    }
}

/// A resolution: upheld, or credited when both the credit note's id and amount are given.
fn resolution(
    invoice_number: String,
    note: Option<String>,
    credit_note: Option<String>,
    credit_amount: Option<String>,
    currency: Option<String>,
) -> Result<ResolutionV1, Rejection> {
    let credit = match (blank_to_none(credit_note), blank_to_none(credit_amount)) {
        (Some(id), Some(amount)) => Some(ResolutionCreditNoteV1 {
            id,
            amount,
            currency: currency.unwrap_or_default(),
            issued_on: None,
        }),
        (None, None) => None,
        _ => {
            return Err(Rejection::new(
                "resolution.credit_note",
                "needs both the credit note's id and its amount (or neither, to uphold the invoice)",
            ))
        }
    };
    Ok(ResolutionV1 {
        invoice_number,
        outcome: if credit.is_some() { "credited" } else { "upheld" }.to_string(),
        note: blank_to_none(note),
        credit_note: credit,
    })
}

/// The actions that end a sequence or lower what is owed: credit notes, write-offs,
/// lifecycle statuses.
fn closing_instruction(
    invoice_number: String,
    action: InvoiceAction,
    event_id: String,
    now: DateTime<Utc>,
) -> Result<Instruction, Rejection> {
    let number = invoice_number.clone();
    let id = event_id.clone();
    match action {
        InvoiceAction::Credit {
            amount,
            id: note_id,
            currency,
            reason,
        } => {
            let m = CreditNoteIssuedV1 {
                version: VERSION_1,
                credit_note: CreditNoteV1 {
                    id: blank_to_none(note_id).unwrap_or_else(|| credit_note_id(&event_id)),
                    invoice_number,
                    amount: amount.trim().to_string(),
                    currency: currency.unwrap_or_default(),
                    issued_on: None,
                    reason: blank_to_none(reason),
                },
                event_id,
                occurred_at: now,
            };
            checked(
                names::CREDIT_NOTE_ISSUED,
                &m,
                check::credit_note(&m),
                &number,
                &id,
            )
        }
        InvoiceAction::WriteOff { reason } => {
            let m = InvoiceWrittenOffV1 {
                version: VERSION_1,
                event_id,
                occurred_at: now,
                write_off: WriteOffV1 {
                    invoice_number,
                    reason,
                },
            };
            checked(names::INVOICE_WRITTEN_OFF, &m, check::write_off(&m), &number, &id)
        }
        InvoiceAction::Lifecycle {
            status,
            reason,
            amount,
            currency,
        } => {
            let amount = blank_to_none(amount);
            let currency = amount.as_ref().and(currency);
            let m = InvoiceLifecycleStatusV1 {
                version: VERSION_1,
                event_id,
                occurred_at: now,
                lifecycle: LifecycleStatusV1 {
                    invoice_number,
                    status,
                    reason: blank_to_none(reason),
                    amount,
                    currency,
                },
            };
            checked(
                names::INVOICE_LIFECYCLE_STATUS,
                &m,
                check::lifecycle(&m),
                &number,
                &id,
            )
        }
        // The others are built by `instruction`.
        other => instruction(&number, other, event_id, now),
    }
}

/// What the invoice's state already says of an action, before it is published: the payments
/// listener refuses the same under the invoice lock (a sequence that is over, a dispute
/// already open or none to resolve, a pause by hand already there or none to release), so a
/// caller that can read the invoice (the console) says so at once rather than after its wait.
/// The listener stays the judge: the state may change between this look and the message.
pub fn refused_by_state(
    action: &InvoiceAction,
    state: InvoiceState,
    pauses: &[PauseKind],
) -> Option<Rejection> {
    let field = match action {
        InvoiceAction::Lifecycle { .. } => return None,
        other => other.name(),
    };
    if state != InvoiceState::Open {
        return Some(Rejection::new(
            "invoice",
            format!("the invoice is {state}: its sequence is over"),
        ));
    }
    let has = |kind: PauseKind| pauses.contains(&kind);
    let reason = match action {
        InvoiceAction::Dispute { .. } if has(PauseKind::Dispute) => "a dispute is already open",
        InvoiceAction::Resolve { .. } if !has(PauseKind::Dispute) => "no dispute is open on it",
        InvoiceAction::Pause { .. } if has(PauseKind::Manual) => "it is already paused by hand",
        InvoiceAction::Resume { .. } if !has(PauseKind::Manual) && !has(PauseKind::PlanRequest) => {
            "it is not paused by hand"
        }
        _ => return None,
    };
    Some(Rejection::new(field, reason))
}

/// A decision on a step waiting for approval (`relance approvals approve|reject`, the
/// console's approvals page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalVerdict {
    /// `approval.granted`: the step goes out.
    Grant,
    /// `approval.rejected`: the step is skipped (a reason is required).
    Reject,
}

/// The inbound message deciding the approval of step `step_id` of invoice `number`,
/// validated as the payments listener validates it.
pub fn approval_instruction(
    number: &str,
    step_id: &str,
    verdict: ApprovalVerdict,
    decided_by: &str,
    reason: Option<String>,
    event_id: String,
    now: DateTime<Utc>,
) -> Result<Instruction, Rejection> {
    let id = event_id.clone();
    let approval = ApprovalDecisionV1 {
        invoice_number: number.trim().to_string(),
        step_id: step_id.trim().to_string(),
        decided_by: decided_by.trim().to_string(),
        reason: blank_to_none(reason),
        source: None,
    };
    match verdict {
        ApprovalVerdict::Grant => {
            let m = ApprovalGrantedV1 {
                version: VERSION_1,
                event_id,
                occurred_at: now,
                approval,
            };
            checked(
                names::APPROVAL_GRANTED,
                &m,
                check::approval_granted(&m),
                number,
                &id,
            )
        }
        ApprovalVerdict::Reject => {
            let m = ApprovalRejectedV1 {
                version: VERSION_1,
                event_id,
                occurred_at: now,
                approval,
            };
            checked(
                names::APPROVAL_REJECTED,
                &m,
                check::approval_rejected(&m),
                number,
                &id,
            )
        }
    }
}

/// A credit note's id when the action gives none: `AV-` and the start of the event id's last
/// part (`cli-3f2a...` gives `AV-3f2a...`).
fn credit_note_id(event_id: &str) -> String {
    let last = event_id.rsplit('-').next().unwrap_or(event_id);
    let short: String = last.chars().take(12).collect();
    format!("AV-{short}")
}

/// The inbound messages validated, without I/O: the payments listener validates each one it
/// receives with these, and [`instruction`] each one before it is published.
pub mod check {
    use relance_contracts::{
        ApprovalDecisionV1, ApprovalGrantedV1, ApprovalRejectedV1, CreditNoteIssuedV1, DisputeOpenedV1,
        DisputeResolvedV1, InvoiceLifecycleStatusV1, InvoiceWrittenOffV1, PauseRequestedV1,
        PromiseRecordedV1, ResolutionCreditNoteV1, ResumeRequestedV1,
    };
    use relance_domain::collections::validate::CreditNoteFields;
    use relance_domain::collections::{
        validate_approval_decision, validate_credit_note, validate_dispute, validate_lifecycle_status,
        validate_manual_pause, validate_manual_resume, validate_promise, validate_resolution,
        validate_write_off, NewApprovalDecision, NewCreditNote, NewDispute, NewLifecycleStatus,
        NewManualPause, NewManualResume, NewPromise, NewResolution, NewWriteOff,
    };
    use relance_domain::Rejection;

    pub fn promise(m: &PromiseRecordedV1) -> Result<NewPromise, Rejection> {
        let p = &m.promise;
        validate_promise(&p.invoice_number, p.promised_on, p.note.as_deref())
    }

    pub fn dispute(m: &DisputeOpenedV1) -> Result<NewDispute, Rejection> {
        validate_dispute(&m.dispute.invoice_number, &m.dispute.reason)
    }

    fn credit_fields(c: &ResolutionCreditNoteV1) -> CreditNoteFields<'_> {
        CreditNoteFields {
            id: &c.id,
            amount: &c.amount,
            currency: &c.currency,
            issued_on: c.issued_on,
            reason: None,
        }
    }

    pub fn resolution(m: &DisputeResolvedV1) -> Result<NewResolution, Rejection> {
        let r = &m.resolution;
        validate_resolution(
            &r.invoice_number,
            &r.outcome,
            r.note.as_deref(),
            r.credit_note.as_ref().map(credit_fields),
            m.occurred_at.date_naive(),
        )
    }

    pub fn credit_note(m: &CreditNoteIssuedV1) -> Result<NewCreditNote, Rejection> {
        let c = &m.credit_note;
        validate_credit_note(
            "credit_note",
            &c.invoice_number,
            CreditNoteFields {
                id: &c.id,
                amount: &c.amount,
                currency: &c.currency,
                issued_on: c.issued_on,
                reason: c.reason.as_deref(),
            },
            m.occurred_at.date_naive(),
        )
    }

    pub fn write_off(m: &InvoiceWrittenOffV1) -> Result<NewWriteOff, Rejection> {
        validate_write_off(&m.write_off.invoice_number, &m.write_off.reason)
    }

    pub fn lifecycle(m: &InvoiceLifecycleStatusV1) -> Result<NewLifecycleStatus, Rejection> {
        let l = &m.lifecycle;
        validate_lifecycle_status(
            &l.invoice_number,
            &l.status,
            l.reason.as_deref(),
            l.amount.as_deref(),
            l.currency.as_deref(),
        )
    }

    pub fn pause(m: &PauseRequestedV1) -> Result<NewManualPause, Rejection> {
        validate_manual_pause(&m.pause.invoice_number, &m.pause.reason)
    }

    /// A customer's request for a payment plan: a number of months (2 to 36) or at least two
    /// proposed instalments (dated, amounts positive), a note of at most 1000 characters.
    pub fn plan_request(
        m: &relance_contracts::PaymentPlanRequestedV1,
    ) -> Result<super::NewPlanRequest, Rejection> {
        let r = &m.request;
        let number = r.invoice_number.trim();
        if number.is_empty() {
            return Err(Rejection::new("request.invoice_number", "is required"));
        }
        if let Some(months) = r.months {
            if !(2..=36).contains(&months) {
                return Err(Rejection::new(
                    "request.months",
                    format!("{months} is out of range (2 to 36)"),
                ));
            }
        }
        let mut instalments = Vec::new();
        for (n, i) in r.instalments.iter().enumerate() {
            let field = format!("request.instalments[{n}]");
            let due_on = i
                .due_on
                .ok_or_else(|| Rejection::new(&format!("{field}.due_on"), "is required"))?;
            let amount: rust_decimal::Decimal = i.amount.trim().parse().map_err(|_| {
                Rejection::new(
                    &format!("{field}.amount"),
                    format!("{:?} is not an amount", i.amount),
                )
            })?;
            if amount <= rust_decimal::Decimal::ZERO {
                return Err(Rejection::new(&format!("{field}.amount"), "must be positive"));
            }
            instalments.push((due_on, amount));
        }
        if r.months.is_none() && instalments.len() < 2 {
            return Err(Rejection::new(
                "request.months",
                "give a number of months, or at least two instalments",
            ));
        }
        let note = r
            .note
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        if note.as_ref().is_some_and(|n| n.chars().count() > 1000) {
            return Err(Rejection::new("request.note", "is longer than 1000 characters"));
        }
        Ok(super::NewPlanRequest {
            invoice_number: number.to_string(),
            months: r.months,
            instalments,
            note,
            source: r
                .source
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        })
    }

    pub fn resume(m: &ResumeRequestedV1) -> Result<NewManualResume, Rejection> {
        validate_manual_resume(&m.resume.invoice_number, m.resume.note.as_deref())
    }

    fn approval(a: &ApprovalDecisionV1, reject: bool) -> Result<NewApprovalDecision, Rejection> {
        validate_approval_decision(
            &a.invoice_number,
            &a.step_id,
            &a.decided_by,
            a.reason.as_deref(),
            reject,
        )
    }

    pub fn approval_granted(m: &ApprovalGrantedV1) -> Result<NewApprovalDecision, Rejection> {
        approval(&m.approval, false)
    }

    pub fn approval_rejected(m: &ApprovalRejectedV1) -> Result<NewApprovalDecision, Rejection> {
        approval(&m.approval, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-07-08T10:00:00Z".parse().unwrap_or_default()
    }

    #[test]
    fn an_action_reads_from_json_tagged_by_its_name() {
        let action: InvoiceAction = serde_json::from_str(r#"{"action": "write_off", "reason": "bankrupt"}"#)
            .unwrap_or(InvoiceAction::Resume { note: None });
        assert_eq!(
            action,
            InvoiceAction::WriteOff {
                reason: "bankrupt".into()
            }
        );
    }

    #[test]
    fn a_bad_amount_is_refused_with_its_field_and_a_good_credit_note_gets_an_id() {
        let credit = |amount: &str| InvoiceAction::Credit {
            amount: amount.into(),
            id: Some(" ".into()),
            currency: None,
            reason: None,
        };
        let refused = instruction(
            "F-1",
            credit("-3").with_default_currency("EUR"),
            "console-abc".into(),
            now(),
        );
        assert!(
            matches!(&refused, Err(r) if r.field == "credit_note.amount"),
            "{refused:?}"
        );
        let ok = instruction(
            "F-1",
            credit("120.50").with_default_currency("EUR"),
            "console-0123456789abcdef".into(),
            now(),
        );
        let ok = ok.map(|i| (i.routing_key, i.body["credit_note"].clone()));
        assert!(
            matches!(&ok, Ok((names::CREDIT_NOTE_ISSUED, body))
                if body["id"] == "AV-0123456789ab" && body["currency"] == "EUR" && body["amount"] == "120.50"),
            "{ok:?}"
        );
    }

    #[test]
    fn a_resolution_needs_both_or_neither_of_the_credit_notes_id_and_amount() {
        let resolve = |id: Option<&str>, amount: Option<&str>| InvoiceAction::Resolve {
            note: None,
            credit_note: id.map(str::to_string),
            credit_amount: amount.map(str::to_string),
            currency: Some("EUR".into()),
        };
        assert!(instruction("F-1", resolve(Some("AV-1"), Some("")), "e".into(), now()).is_err());
        let upheld = instruction("F-1", resolve(Some(" "), None), "e".into(), now());
        assert!(matches!(&upheld, Ok(i) if i.body["resolution"]["outcome"] == "upheld"));
        let credited = instruction("F-1", resolve(Some("AV-1"), Some("10")), "e".into(), now());
        assert!(matches!(&credited, Ok(i) if i.body["resolution"]["outcome"] == "credited"));
    }

    #[test]
    fn the_invoices_state_refuses_what_the_listener_would() {
        let resume = InvoiceAction::Resume { note: None };
        let pause = InvoiceAction::Pause { reason: "po".into() };
        let open = InvoiceState::Open;
        assert!(refused_by_state(&resume, open, &[PauseKind::Dispute]).is_some());
        assert!(refused_by_state(&resume, open, &[PauseKind::Manual]).is_none());
        assert!(refused_by_state(&pause, open, &[PauseKind::Manual]).is_some());
        assert!(refused_by_state(&pause, open, &[PauseKind::Promise]).is_none());
        let closed = refused_by_state(&pause, InvoiceState::Closed, &[]);
        assert!(matches!(closed, Some(r) if r.reason.contains("closed")));
        let lifecycle = InvoiceAction::Lifecycle {
            status: "cashed".into(),
            reason: None,
            amount: None,
            currency: None,
        };
        assert!(refused_by_state(&lifecycle, InvoiceState::Settled, &[]).is_none());
    }

    #[test]
    fn a_pause_by_hand_needs_a_reason() {
        let refused = instruction(
            "F-1",
            InvoiceAction::Pause { reason: " ".into() },
            "e".into(),
            now(),
        );
        assert!(
            matches!(&refused, Err(r) if r.field == "pause.reason"),
            "{refused:?}"
        );
        let ok = instruction(
            "F-1",
            InvoiceAction::Pause {
                reason: "waiting for the customer's purchase order".into(),
            },
            "e".into(),
            now(),
        );
        assert!(matches!(&ok, Ok(i) if i.routing_key == names::PAUSE_REQUESTED));
    }
}
