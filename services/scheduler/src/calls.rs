//! The sweep that expires call tasks nobody recorded an outcome for in time
//! (`RELANCE_CALL_TASK_DAYS`): the step ends `expired`, announced as `call.task_expired`, so
//! that no task stays open for ever. The sequence itself never waited for the call: its next
//! steps go out on their own dates. Takes the invoice lock like the payments listener, so an
//! outcome and an expiry never interleave.

use anyhow::Context;
use relance_config::Config;
use relance_contracts::CallTaskExpiredV1;
use relance_sequence::outgoing;
use relance_storage::steps::{self, StepStatus};
use relance_storage::{calls, invoices};
use sqlx::PgPool;

/// Expires the open call tasks whose time is up. Returns how many it looked at.
#[tracing::instrument(skip_all, err)]
pub async fn expire_call_tasks(db: &PgPool, config: &Config) -> anyhow::Result<usize> {
    let now = config.clock.now();
    let expired = {
        let mut conn = db.acquire().await.context("acquiring a connection")?;
        calls::expired(&mut conn, now, 100).await?
    };
    let days = config.settings.call_task_days;
    let reason = format!(
        "no outcome was recorded within {days} day{} of the task",
        if days == 1 { "" } else { "s" }
    );
    for (step_id, number) in &expired {
        let mut tx = db.begin().await.context("starting the expiry transaction")?;
        if invoices::lock_for_payment(&mut tx, number).await?.is_none() {
            continue;
        }
        // Recorded, cancelled or taken back by a pause meanwhile: nothing to do.
        if steps::transition(
            &mut tx,
            *step_id,
            &[StepStatus::AwaitingOutcome],
            StepStatus::Expired,
            Some(&reason),
            now,
        )
        .await?
        {
            let step = steps::find(&mut tx, *step_id)
                .await?
                .context("re-reading the expired call step")?;
            outgoing::announce_step_detail(
                &mut tx,
                now,
                &step,
                &CallTaskExpiredV1 {
                    reason: reason.to_string(),
                },
            )
            .await?;
        }
        tx.commit().await.context("committing the expiry")?;
    }
    Ok(expired.len())
}
