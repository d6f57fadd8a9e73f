//! Approval before formal steps, the scheduler's part: the requests nobody decides in time
//! expire. A due step the policy or its customer holds for approval is queued like any other:
//! the renderer renders it and keeps the rendering awaiting approval
//! (`relance_sequence::approvals`); the payments listener applies the decisions. A request
//! nobody decides within the policy's `expires_after_days` expires: the step is skipped
//! (`approval expired`), or the invoice whose hand-off waited is not handed off, journaled
//! and announced `approval.expired`.

use anyhow::Context;
use relance_config::Config;
use relance_contracts::{
    ApprovalExpiredV1, ReminderSkippedV1, APPROVAL_SUBJECT_HAND_OFF, APPROVAL_SUBJECT_STEP,
};
use relance_sequence::outgoing;
use relance_storage::approvals::{self, ApprovalDecision};
use relance_storage::invoices;
use relance_storage::steps::{self, StepStatus};
use sqlx::PgPool;

/// The reason a step whose approval expired is skipped with.
pub const EXPIRED_REASON: &str = "approval expired";

/// Expires the approval requests nobody decided in time: the step is skipped
/// (`approval expired`). Returns how many it looked at.
#[tracing::instrument(skip_all, err)]
pub async fn expire_approvals(db: &PgPool, config: &Config) -> anyhow::Result<usize> {
    let now = config.clock.now();
    let expired = {
        let mut conn = db.acquire().await.context("acquiring a connection")?;
        approvals::expired(&mut conn, now, 100).await?
    };
    for request in &expired {
        let number = &request.invoice_number;
        let mut tx = db
            .begin()
            .await
            .context("starting the approval expiry transaction")?;
        let Some(invoice) = invoices::lock_for_payment(&mut tx, number).await? else {
            continue;
        };
        let days = config
            .policy_for(invoice.policy.as_deref())
            .approvals
            .expires_after_days;
        let Some(step_id) = request.step_id else {
            // A hand-off nobody approved: the invoice stays, not handed off.
            if approvals::decide_hand_off(
                &mut tx,
                request.id,
                ApprovalDecision::Expired,
                None,
                None,
                None,
                now,
            )
            .await?
            {
                let detail = ApprovalExpiredV1 {
                    approval_id: request.id.to_string(),
                    subject: APPROVAL_SUBJECT_HAND_OFF.to_string(),
                    step: None,
                    after_days: days,
                };
                outgoing::announce_detail(&mut tx, now, number, None, &detail).await?;
            }
            tx.commit().await.context("committing the approval expiry")?;
            continue;
        };
        let step_id = &step_id;
        let Some(step) = steps::find(&mut tx, *step_id).await? else {
            continue;
        };
        // Decided, cancelled or paused meanwhile: nothing to do.
        let decided = approvals::decide(
            &mut tx,
            *step_id,
            ApprovalDecision::Expired,
            None,
            None,
            None,
            now,
        )
        .await?;
        if decided.is_some()
            && outgoing::transition_and_announce(
                &mut tx,
                now,
                &step,
                &[StepStatus::AwaitingApproval],
                StepStatus::Skipped,
                &ReminderSkippedV1 {
                    reason: EXPIRED_REASON.to_string(),
                },
            )
            .await?
        {
            let detail = ApprovalExpiredV1 {
                approval_id: decided.map(|id| id.to_string()).unwrap_or_default(),
                subject: APPROVAL_SUBJECT_STEP.to_string(),
                step: Some(step.name.clone()),
                after_days: days,
            };
            outgoing::announce_detail(&mut tx, now, number, Some(&step), &detail).await?;
        }
        tx.commit().await.context("committing the approval expiry")?;
    }
    Ok(expired.len())
}
