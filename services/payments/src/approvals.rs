//! Approval decisions (`approval.granted`, `approval.rejected`) on a step waiting for
//! approval (`awaiting_approval`, opened by the scheduler). Granted: the step is pending
//! again and the scheduler sends it (at its window's next opening); rejected: it is skipped
//! with the reason. Both journaled with who decided. Refused when the step is not waiting
//! (decided, expired, or cancelled by a payment meanwhile): a decision applies once.

use crate::inbound::{invoice_message, refused, require_open, InvoiceMessage};
use anyhow::Context;
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::{names, ApprovalGrantedV1, ApprovalRejectedV1, ReminderSkippedV1};
use relance_domain::collections::NewApprovalDecision;
use relance_domain::Rejection;
use relance_messaging::HandlerError;
use relance_sequence::actions::check;
use relance_sequence::outgoing;
use relance_storage::approvals::{self, ApprovalDecision};
use relance_storage::invoices::InvoiceRecord;
use relance_storage::steps::{self, StepRecord, StepStatus};
use relance_storage::{journal, PgConnection};
use serde_json::json;

impl InvoiceMessage for ApprovalGrantedV1 {
    invoice_message!(
        ApprovalGrantedV1,
        approval,
        NewApprovalDecision,
        names::APPROVAL_GRANTED,
        "approval",
        check::approval_granted
    );

    async fn apply(
        &self,
        decision: NewApprovalDecision,
        tx: &mut PgConnection,
        _config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        let step = waiting_step(Self::WHAT, tx, invoice, &decision).await?;
        decide(
            tx,
            &step,
            &decision,
            ApprovalDecision::Granted,
            &self.event_id,
            now,
        )
        .await?;
        steps::transition(
            tx,
            step.id,
            &[StepStatus::AwaitingApproval],
            StepStatus::Pending,
            Some("approved"),
            now,
        )
        .await?;
        journal::append(
            tx,
            now,
            &invoice.number,
            Some(step.id),
            names::APPROVAL_GRANTED,
            json!({ "step": step.name, "decided_by": decision.decided_by, "reason": decision.reason,
                    "event_id": self.event_id }),
        )
        .await?;
        Ok(())
    }
}

impl InvoiceMessage for ApprovalRejectedV1 {
    invoice_message!(
        ApprovalRejectedV1,
        approval,
        NewApprovalDecision,
        names::APPROVAL_REJECTED,
        "rejection",
        check::approval_rejected
    );

    async fn apply(
        &self,
        decision: NewApprovalDecision,
        tx: &mut PgConnection,
        _config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        let step = waiting_step(Self::WHAT, tx, invoice, &decision).await?;
        decide(
            tx,
            &step,
            &decision,
            ApprovalDecision::Rejected,
            &self.event_id,
            now,
        )
        .await?;
        let reason = decision.reason.clone().unwrap_or_default();
        journal::append(
            tx,
            now,
            &invoice.number,
            Some(step.id),
            names::APPROVAL_REJECTED,
            json!({ "step": step.name, "decided_by": decision.decided_by, "reason": reason,
                    "event_id": self.event_id }),
        )
        .await?;
        outgoing::transition_and_announce(
            tx,
            now,
            &step,
            &[StepStatus::AwaitingApproval],
            StepStatus::Skipped,
            &ReminderSkippedV1 {
                reason: format!("approval rejected by {}: {reason}", decision.decided_by),
            },
        )
        .await?;
        Ok(())
    }
}

/// The step the decision is for, if it is this invoice's and still waiting for approval.
async fn waiting_step(
    what: &str,
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    decision: &NewApprovalDecision,
) -> Result<StepRecord, HandlerError> {
    require_open(what, invoice)?;
    let step = steps::find(tx, decision.step_id)
        .await?
        .filter(|s| s.invoice_id == invoice.id)
        .ok_or_else(|| {
            refused(
                what,
                &invoice.number,
                format!("it has no step {}", decision.step_id),
            )
        })?;
    if step.status != StepStatus::AwaitingApproval {
        return Err(refused(
            what,
            &invoice.number,
            format!("step {} is {}, not waiting for approval", step.name, step.status),
        ));
    }
    Ok(step)
}

async fn decide(
    tx: &mut PgConnection,
    step: &StepRecord,
    decision: &NewApprovalDecision,
    verdict: ApprovalDecision,
    event_id: &str,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let decided = approvals::decide(
        tx,
        step.id,
        verdict,
        Some(&decision.decided_by),
        decision.reason.as_deref(),
        Some(event_id),
        now,
    )
    .await
    .context("recording the approval decision")?;
    if !decided {
        return Err(HandlerError::Permanent(format!(
            "step {} of invoice {} has no open approval request",
            step.name, step.invoice_number
        )));
    }
    Ok(())
}
