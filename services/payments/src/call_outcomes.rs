//! Call outcomes (`call.outcome`): what a person of the accounts team learnt on a call task,
//! applied once (inbox by `event_id`) under the invoice row lock, like a promise or a
//! dispute. The outcome feeds the policy through the same code paths as those messages:
//! `reached` with a date is a promise to pay (the sequence pauses until the date plus the
//! grace days) confirmed to the customer by a recap email; `disputed` opens a dispute;
//! `no_answer` closes the task and the sequence goes on. A refused outcome changes nothing.

use crate::disputes::dispute_pause;
use crate::inbound::{invoice_message, refused, require_open, timezone, today, InvoiceMessage};
use crate::promises::promise_pause;
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use relance_config::Config;
use relance_contracts::{names, CallOutcomeRecordedV1, CallOutcomeV1};
use relance_domain::calls::{
    recap_step_name, validate_call_outcome, CallOutcome, CallOutcomeFields, NewCallOutcome,
    CALL_RECAP_TEMPLATE,
};
use relance_domain::collections::promise_pause_end;
use relance_domain::plan::PlannedStep;
use relance_domain::{Channel, Rejection, StepKind, Tone};
use relance_messaging::HandlerError;
use relance_sequence::outgoing;
use relance_storage::calls::{self, CallTask, RecordedOutcome};
use relance_storage::invoices::InvoiceRecord;
use relance_storage::steps::{self, StepStatus};
use relance_storage::PgConnection;

const WHAT: &str = "call outcome";

/// The message validated, without I/O: the CLI calls it too, to refuse a bad command before
/// publishing.
pub fn outcome(m: &CallOutcomeV1) -> Result<NewCallOutcome, Rejection> {
    let c = &m.call;
    validate_call_outcome(CallOutcomeFields {
        invoice_number: &c.invoice_number,
        step_id: c.step_id.as_deref(),
        outcome: &c.outcome,
        promised_on: c.promised_on,
        reason: c.reason.as_deref(),
        note: c.note.as_deref(),
    })
}

impl InvoiceMessage for CallOutcomeV1 {
    invoice_message!(
        CallOutcomeV1,
        call,
        NewCallOutcome,
        names::CALL_OUTCOME,
        WHAT,
        outcome
    );

    async fn apply(
        &self,
        call: NewCallOutcome,
        tx: &mut PgConnection,
        config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        require_open(WHAT, invoice)?;
        let task = task_for(tx, invoice, &call).await?;
        // A promise in the past (or too far away) is refused before anything changes.
        let promise = promise_of(config, invoice, &call)?;
        record(tx, invoice, &task, &call, &self.event_id, now).await?;
        let source = (names::CALL_OUTCOME, self.event_id.as_str(), None);
        match &call.outcome {
            CallOutcome::Reached { .. } => {
                if let Some((day, until)) = promise {
                    let reason = match &call.note {
                        Some(note) => format!("promised on a call to pay by {day}: {note}"),
                        None => format!("promised on a call to pay by {day}"),
                    };
                    promise_pause(tx, invoice, day, until, &reason, source, now).await?;
                    queue_recap(tx, invoice, &task, now).await?;
                }
            }
            CallOutcome::Disputed { reason } => {
                dispute_pause(tx, invoice, WHAT, reason, source, now).await?;
            }
            CallOutcome::NoAnswer => {}
        }
        Ok(())
    }
}

/// The promised day of a `reached` outcome that gives one, and the end of its pause;
/// refused when the day is in the past or too far away.
fn promise_of(
    config: &Config,
    invoice: &InvoiceRecord,
    call: &NewCallOutcome,
) -> Result<Option<(NaiveDate, DateTime<Utc>)>, HandlerError> {
    let CallOutcome::Reached {
        promised_on: Some(day),
    } = &call.outcome
    else {
        return Ok(None);
    };
    let until = promise_pause_end(
        *day,
        today(config, invoice),
        config.settings.promise_grace_days,
        timezone(invoice),
    )
    .map_err(|r| {
        refused(
            WHAT,
            &invoice.number,
            Rejection::new("call.promised_on", r.reason),
        )
    })?;
    Ok(Some((*day, until)))
}

/// Records the outcome on its task, completes the task (an expired one keeps its status:
/// its late outcome still counts) and announces `call.outcome_recorded`.
async fn record(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    task: &CallTask,
    call: &NewCallOutcome,
    event_id: &str,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let (reason, promised_on) = match &call.outcome {
        CallOutcome::Disputed { reason } => (Some(reason.as_str()), None),
        CallOutcome::Reached { promised_on } => (None, *promised_on),
        CallOutcome::NoAnswer => (None, None),
    };
    let recorded = RecordedOutcome {
        outcome: call.outcome.as_str(),
        promised_on,
        reason,
        note: call.note.as_deref(),
        event_id,
    };
    if !calls::record_outcome(tx, task.step_id, &recorded, now).await? {
        return Err(refused(
            WHAT,
            &invoice.number,
            "its outcome was recorded meanwhile",
        ));
    }
    let late = task.status == StepStatus::Expired;
    if !late {
        let why = format!("call outcome: {}", call.outcome.as_str());
        steps::transition(
            tx,
            task.step_id,
            &[StepStatus::AwaitingOutcome],
            StepStatus::Completed,
            Some(&why),
            now,
        )
        .await?;
    }
    let step = steps::find(tx, task.step_id)
        .await?
        .context("re-reading the call step")?;
    let detail = CallOutcomeRecordedV1 {
        outcome: call.outcome.as_str().to_string(),
        promised_on,
        reason: reason.map(ToString::to_string),
        note: call.note.clone(),
        late,
        event_id: event_id.to_string(),
    };
    outgoing::announce_step_detail(tx, now, &step, &detail).await?;
    Ok(())
}

/// The task the outcome is for: the step named, or the invoice's open task. Refused when
/// there is none, or when its outcome is already known or it was cancelled.
async fn task_for(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    call: &NewCallOutcome,
) -> Result<CallTask, HandlerError> {
    let Some(task) = calls::find_for_outcome(tx, invoice.id, call.step_id).await? else {
        let why = match call.step_id {
            Some(id) => format!("step {id} is not a call task of this invoice"),
            None => "no call task is open on it".to_string(),
        };
        return Err(refused(WHAT, &invoice.number, why));
    };
    if let (Some(outcome), Some(at)) = (&task.outcome, task.recorded_at) {
        return Err(refused(
            WHAT,
            &invoice.number,
            format!(
                "the outcome of call {} was already recorded ({outcome}, {at})",
                task.step
            ),
        ));
    }
    let open = [StepStatus::AwaitingOutcome, StepStatus::Expired];
    if !open.contains(&task.status) {
        return Err(refused(
            WHAT,
            &invoice.number,
            format!("the call task {} is {}", task.step, task.status),
        ));
    }
    Ok(task)
}

/// Queues the email that confirms the promised date ("following our call..."): its own step,
/// through the renderer and the email sender like a thank-you, journaled, and sent while the
/// promise pauses the reminders.
async fn queue_recap(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    task: &CallTask,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let recap = PlannedStep {
        name: recap_step_name(&task.step),
        position: 1001,
        channel: Channel::Email,
        template: CALL_RECAP_TEMPLATE.to_string(),
        tone: Tone::Courteous,
        due_at: now,
    };
    let step_id =
        steps::insert_planned(tx, invoice.id, StepKind::Recap, &recap, StepStatus::Pending, now).await?;
    let local_day = now.with_timezone(&timezone(invoice)).date_naive();
    steps::mark_queued(tx, step_id, now, local_day).await?;
    calls::set_recap(tx, task.step_id, step_id).await?;
    relance_sequence::queue_step(
        tx,
        step_id,
        &invoice.number,
        &recap.name,
        recap.channel.as_str(),
        now,
    )
    .await
}
