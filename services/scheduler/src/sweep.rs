//! The sweep (lease recovery): a step left in flight past its lease (a job lost, a worker
//! that died) is handed out again; one left in `sending` is settled by how far its delivery
//! got (see [`settle_interrupted`]). An open call task (`awaiting_outcome`) is not in
//! flight: it waits for a person, and ends by its outcome, a payment or closure, or its
//! expiry (`calls::expire_call_tasks`).

use anyhow::Context;
use chrono::{DateTime, Utc};
use relance_config::{Config, InterruptedDelivery};
use relance_contracts::names;
use relance_contracts::{
    InterruptedAmbiguousV1, RecoveredSentV1, ReminderAmbiguousV1, ReminderCancelledV1, ReminderRenderedV1,
    ReminderSentV1, StopRequestedV1, VERSION_1,
};
use relance_domain::collections::InvoiceState;
use relance_domain::StepKind;
use relance_sequence::{outgoing, queue_step};
use relance_storage::steps::{self, DeliveryStage, StepRecord, StepStatus};
use relance_storage::{invoices, journal};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;
use uuid::Uuid;

/// Hands out again, or settles, the steps whose lease ran out. Returns how many.
#[tracing::instrument(skip_all, err)]
pub async fn recover_expired_leases(db: &PgPool, config: &Config) -> anyhow::Result<usize> {
    let now = config.clock.now();
    let mut tx = db.begin().await.context("starting the sweep transaction")?;
    let expired = steps::claim_expired_leases(&mut tx, config.settings.lease, 100).await?;
    for step in &expired {
        // The step goes on in its reminder's trace (kept at its emission), not the pass's;
        // the sweep's span links to it.
        let recovery = tracing::info_span!(
            parent: None,
            "recover",
            otel.name = "recover reminder",
            step = %step.name,
            status = %step.status,
        );
        relance_telemetry::link_to_parent(&recovery, &steps::trace_context(&mut tx, step.id).await?);
        relance_telemetry::add_link(&tracing::Span::current(), &recovery);
        recover(&mut tx, config, step, now).instrument(recovery).await?;
    }
    tx.commit().await.context("committing the sweep")?;
    Ok(expired.len())
}

/// Hands out again, or settles, one step whose lease ran out.
async fn recover(
    tx: &mut PgConnection,
    config: &Config,
    step: &StepRecord,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    match (step.status, config.settings.interrupted_delivery) {
        (StepStatus::Queued, _) => {
            steps::renew_lease(tx, step.id).await?;
            queue_step(
                tx,
                step.id,
                &step.invoice_number,
                &step.name,
                step.channel.as_str(),
                now,
            )
            .await?;
        }
        // A deferred step here lost its retry message: its retry is long overdue.
        (StepStatus::Rendered | StepStatus::Deferred, _) => {
            steps::renew_lease(tx, step.id).await?;
            queue_delivery(tx, step, now).await?;
        }
        (_, policy) => settle_interrupted(tx, step, policy, now).await?,
    }
    Ok(())
}

/// A delivery whose sender stopped (its lease ran out while the step was `sending`), settled
/// by the stage it recorded:
/// - answered: the provider took it; the step is sent (`reminder.sent`, `recovered`).
/// - end of DATA sent, no answer recorded: ambiguous. `reminder.ambiguous` is announced and,
///   by `policy`, the step ends `ambiguous` (report) or is delivered again (resend).
/// - before the end of DATA (claimed, connected, envelope accepted): nothing went out. A
///   reminder whose invoice was paid or closed meanwhile is cancelled; anything else goes
///   back to `rendered` and is delivered again, with the same Message-ID.
async fn settle_interrupted(
    tx: &mut PgConnection,
    step: &StepRecord,
    policy: InterruptedDelivery,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let Some(state) = steps::lock_delivery(tx, step.id).await? else {
        return Ok(());
    };
    let stage = state
        .stage()
        .with_context(|| format!("reading the delivery stage of step {}", step.id))?;
    let interrupted = Interrupted {
        step,
        stage,
        message_id: steps::find_rendered(tx, step.id).await?.map(|r| r.message_id),
        stop_requested: outgoing::stop_requested(&state),
    };
    if stage == DeliveryStage::Answered {
        return settle_answered(tx, &interrupted, state.delivery_proof.clone(), now).await;
    }
    if stage.may_have_reached_provider() {
        return settle_ambiguous(tx, &interrupted, policy, now).await;
    }
    let invoice_open = invoices::hold_for_delivery(tx, step.invoice_id).await? == Some(InvoiceState::Open);
    if step.kind != StepKind::Thanks && (state.stop_requested_at.is_some() || !invoice_open) {
        let reason = state.stop_reason.as_deref().unwrap_or("invoice settled");
        return cancel_unsent(tx, step, stage, reason, now).await;
    }
    deliver_again(tx, step, stage, now).await
}

/// A step found `sending` past its lease, and how far its delivery got.
struct Interrupted<'a> {
    step: &'a StepRecord,
    stage: DeliveryStage,
    message_id: Option<String>,
    stop_requested: Option<StopRequestedV1>,
}

/// The provider answered before the sender stopped: the step is sent.
async fn settle_answered(
    tx: &mut PgConnection,
    interrupted: &Interrupted<'_>,
    response: Option<String>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let step = interrupted.step;
    let sent = ReminderSentV1::Recovered(RecoveredSentV1 {
        recovered: "the sender stopped after the provider accepted the message".to_string(),
        stage: interrupted.stage.as_str().to_string(),
        message_id: interrupted.message_id.clone(),
        response,
        stop_requested: interrupted.stop_requested.clone(),
    });
    let thanks = step.kind == StepKind::Thanks;
    if steps::transition(tx, step.id, &[StepStatus::Sending], StepStatus::Sent, None, now).await? {
        outgoing::announce_sent(tx, now, step, thanks, sent).await?;
    }
    Ok(())
}

/// The end of DATA went out and no answer was recorded: by `policy`, reported as
/// `ambiguous` or delivered again.
async fn settle_ambiguous(
    tx: &mut PgConnection,
    interrupted: &Interrupted<'_>,
    policy: InterruptedDelivery,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let step = interrupted.step;
    let reason =
        "delivery interrupted after the end of DATA was sent: it may or may not have reached the customer";
    let (policy_name, to) = match policy {
        InterruptedDelivery::Report => ("report", StepStatus::Ambiguous),
        InterruptedDelivery::Resend => ("resend", StepStatus::Rendered),
    };
    let detail = ReminderAmbiguousV1::Interrupted(InterruptedAmbiguousV1 {
        reason: reason.to_string(),
        stage: interrupted.stage.as_str().to_string(),
        message_id: interrupted.message_id.clone(),
        policy: policy_name.to_string(),
        stop_requested: interrupted.stop_requested.clone(),
    });
    if steps::transition(tx, step.id, &[StepStatus::Sending], to, Some(reason), now).await? {
        outgoing::announce_step_detail(tx, now, step, &detail).await?;
        if to == StepStatus::Rendered {
            queue_delivery(tx, step, now).await?;
        }
    }
    Ok(())
}

/// Nothing went out, and the reminder is no longer wanted (a stop requested, the invoice
/// paid or closed): cancelled.
async fn cancel_unsent(
    tx: &mut PgConnection,
    step: &StepRecord,
    stage: DeliveryStage,
    stop_reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let reason =
        format!("{stop_reason} before sending (the interrupted delivery had not sent the end of DATA)");
    if steps::transition(
        tx,
        step.id,
        &[StepStatus::Sending],
        StepStatus::Cancelled,
        Some(&reason),
        now,
    )
    .await?
    {
        let detail = ReminderCancelledV1 {
            reason: reason.clone(),
            was: StepStatus::Sending.as_str().to_string(),
            stage: Some(stage.as_str().to_string()),
        };
        outgoing::announce_step_detail(tx, now, step, &detail).await?;
    }
    Ok(())
}

/// Nothing went out and the step is still wanted: back to `rendered`, delivered again with
/// the same Message-ID.
async fn deliver_again(
    tx: &mut PgConnection,
    step: &StepRecord,
    stage: DeliveryStage,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let reason = format!(
        "delivery interrupted before the end of DATA (stage {}); delivered again with the same Message-ID",
        stage.as_str()
    );
    if steps::transition(
        tx,
        step.id,
        &[StepStatus::Sending],
        StepStatus::Rendered,
        Some(&reason),
        now,
    )
    .await?
    {
        // Journaled (not announced: nothing changed for the customer), so that the proof
        // shows the interruption and the fault suite can count them by stage.
        journal::append(
            tx,
            now,
            &step.invoice_number,
            Some(step.id),
            "reminder.delivery_interrupted",
            json!({ "stage": stage.as_str(), "reason": reason, "then": "delivered again" }),
        )
        .await?;
        queue_delivery(tx, step, now).await?;
    }
    Ok(())
}

/// Hands a rendered step to its channel's sender again.
async fn queue_delivery(tx: &mut PgConnection, step: &StepRecord, now: DateTime<Utc>) -> anyhow::Result<()> {
    let job = ReminderRenderedV1 {
        version: VERSION_1,
        job_id: Uuid::new_v4(),
        step_id: step.id,
        invoice_number: step.invoice_number.clone(),
        step: step.name.clone(),
        channel: step.channel.to_string(),
    };
    let key = names::reminder_rendered(step.channel.sender_kind());
    journal::append_with_message(
        tx,
        now,
        &step.invoice_number,
        Some(step.id),
        "reminder.requeued",
        json!({ "stage": "send" }),
        Some(&outgoing::job(&key, job.job_id, &step.invoice_number, &job)?),
    )
    .await
}
