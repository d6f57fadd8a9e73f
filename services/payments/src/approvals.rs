//! Approval decisions (`approval.granted`, `approval.rejected`) on a step waiting for
//! approval (`awaiting_approval`: rendered by the renderer and held, its rendering in the
//! request's preview), or on an invoice's hand-off waiting for approval (the decision names
//! the hand-off request's id). Granted: the held rendering goes to its sender at once, byte
//! for byte what the preview showed; when the figures it states changed since (a payment, a
//! day's interest) the rendering is superseded and the step rendered again, and the journal
//! says so (`rerendered`). A granted hand-off is handed off by the scheduler's next pass.
//! Rejected: the step is skipped with the reason, or the invoice is not handed off. Both
//! journaled with who decided and announced on the events exchange. Refused when nothing is
//! waiting (decided, expired, or cancelled by a payment meanwhile): a decision applies once.

use crate::inbound::{invoice_message, refused, require_open, InvoiceMessage};
use anyhow::Context;
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::{
    names, ApprovalGrantedEventV1, ApprovalGrantedV1, ApprovalRejectedEventV1, ApprovalRejectedV1,
    ReminderRenderedV1, ReminderSkippedV1, APPROVAL_SUBJECT_HAND_OFF, APPROVAL_SUBJECT_STEP, VERSION_1,
};
use relance_domain::collections::NewApprovalDecision;
use relance_domain::Rejection;
use relance_messaging::HandlerError;
use relance_sequence::actions::check;
use relance_sequence::approvals::{changed_figures, figures};
use relance_sequence::outgoing;
use relance_storage::approvals::{self, ApprovalDecision};
use relance_storage::invoices::InvoiceRecord;
use relance_storage::steps::{self, StepRecord, StepStatus};
use relance_storage::{outbox, PgConnection};
use uuid::Uuid;

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
        config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        let origin = self.approval.source.as_deref();
        if decide_hand_off(
            Self::WHAT,
            tx,
            invoice,
            &decision,
            ApprovalDecision::Granted,
            (&self.event_id, origin),
            now,
        )
        .await?
        {
            return Ok(());
        }
        let step = waiting_step(Self::WHAT, tx, invoice, &decision).await?;
        let Some((request_id, preview)) = approvals::open_request(tx, step.id)
            .await
            .context("reading the approval request")?
        else {
            return Err(no_request(&step));
        };
        let held = preview.get("message").is_some_and(|m| !m.is_null());
        let changed = changed_figures(&preview, &figures(tx, config, invoice, &step, now).await?);
        decide(
            tx,
            &step,
            &decision,
            ApprovalDecision::Granted,
            &self.event_id,
            now,
        )
        .await?;
        let rerendered = if held && changed.is_empty() && !step.channel.is_task() {
            // The held rendering goes out as previewed.
            steps::transition(
                tx,
                step.id,
                &[StepStatus::AwaitingApproval],
                StepStatus::Rendered,
                Some("approved"),
                now,
            )
            .await?;
            let job = ReminderRenderedV1 {
                version: VERSION_1,
                job_id: Uuid::new_v4(),
                step_id: step.id,
                invoice_number: step.invoice_number.clone(),
                step: step.name.clone(),
                channel: step.channel.to_string(),
            };
            let routing_key = names::reminder_rendered(step.channel.sender_kind());
            let queued = outgoing::job(&routing_key, job.job_id, &invoice.number, &job)?;
            outbox::enqueue(tx, &queued, now).await?;
            None
        } else {
            let why = if !held {
                "held before it was rendered".to_string()
            } else if changed.is_empty() {
                "a call task is opened once approved".to_string()
            } else {
                format!("the figures changed since the preview: {}", changed.join(", "))
            };
            if held {
                steps::supersede_renderings(
                    tx,
                    &[step.id],
                    &format!("rendered again on approval: {why}"),
                    now,
                )
                .await?;
            }
            steps::transition(
                tx,
                step.id,
                &[StepStatus::AwaitingApproval],
                StepStatus::Pending,
                Some("approved"),
                now,
            )
            .await?;
            Some(why)
        };
        let detail = ApprovalGrantedEventV1 {
            approval_id: request_id.to_string(),
            subject: APPROVAL_SUBJECT_STEP.to_string(),
            step: Some(step.name.clone()),
            decided_by: decision.decided_by.clone(),
            reason: decision.reason.clone(),
            event_id: self.event_id.clone(),
            rerendered,
            source: origin.map(str::to_string),
        };
        outgoing::announce_detail(tx, now, &invoice.number, Some(&step), &detail).await?;
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
        let origin = self.approval.source.as_deref();
        if decide_hand_off(
            Self::WHAT,
            tx,
            invoice,
            &decision,
            ApprovalDecision::Rejected,
            (&self.event_id, origin),
            now,
        )
        .await?
        {
            return Ok(());
        }
        let step = waiting_step(Self::WHAT, tx, invoice, &decision).await?;
        let request_id = decide(
            tx,
            &step,
            &decision,
            ApprovalDecision::Rejected,
            &self.event_id,
            now,
        )
        .await?;
        let reason = decision.reason.clone().unwrap_or_default();
        let detail = ApprovalRejectedEventV1 {
            approval_id: request_id.to_string(),
            subject: APPROVAL_SUBJECT_STEP.to_string(),
            step: Some(step.name.clone()),
            decided_by: decision.decided_by.clone(),
            reason: reason.clone(),
            event_id: self.event_id.clone(),
            source: origin.map(str::to_string),
        };
        outgoing::announce_detail(tx, now, &invoice.number, Some(&step), &detail).await?;
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

/// Decides the invoice's hand-off when the decision names its open hand-off request.
/// Returns whether it did.
async fn decide_hand_off(
    what: &str,
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    decision: &NewApprovalDecision,
    verdict: ApprovalDecision,
    (event_id, origin): (&str, Option<&str>),
    now: DateTime<Utc>,
) -> Result<bool, HandlerError> {
    if !approvals::is_open_hand_off(tx, invoice.id, decision.step_id)
        .await
        .context("reading the hand-off's approval request")?
    {
        return Ok(false);
    }
    require_open(what, invoice)?;
    approvals::decide_hand_off(
        tx,
        decision.step_id,
        verdict,
        Some(&decision.decided_by),
        decision.reason.as_deref(),
        Some(event_id),
        now,
    )
    .await
    .context("recording the hand-off's approval decision")?;
    let approval_id = decision.step_id.to_string();
    let subject = APPROVAL_SUBJECT_HAND_OFF.to_string();
    if verdict == ApprovalDecision::Granted {
        let detail = ApprovalGrantedEventV1 {
            approval_id,
            subject,
            step: None,
            decided_by: decision.decided_by.clone(),
            reason: decision.reason.clone(),
            event_id: event_id.to_string(),
            rerendered: None,
            source: origin.map(str::to_string),
        };
        outgoing::announce_detail(tx, now, &invoice.number, None, &detail).await?;
    } else {
        let detail = ApprovalRejectedEventV1 {
            approval_id,
            subject,
            step: None,
            decided_by: decision.decided_by.clone(),
            reason: decision.reason.clone().unwrap_or_default(),
            event_id: event_id.to_string(),
            source: origin.map(str::to_string),
        };
        outgoing::announce_detail(tx, now, &invoice.number, None, &detail).await?;
    }
    Ok(true)
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
                format!(
                    "it has no step {} nor hand-off waiting with that id",
                    decision.step_id
                ),
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

fn no_request(step: &StepRecord) -> HandlerError {
    HandlerError::Permanent(format!(
        "step {} of invoice {} has no open approval request",
        step.name, step.invoice_number
    ))
}

/// Records the decision of the step's open request; returns the request's id.
async fn decide(
    tx: &mut PgConnection,
    step: &StepRecord,
    decision: &NewApprovalDecision,
    verdict: ApprovalDecision,
    event_id: &str,
    now: DateTime<Utc>,
) -> Result<Uuid, HandlerError> {
    approvals::decide(
        tx,
        step.id,
        verdict,
        Some(&decision.decided_by),
        decision.reason.as_deref(),
        Some(event_id),
        now,
    )
    .await
    .context("recording the approval decision")?
    .ok_or_else(|| no_request(step))
}
