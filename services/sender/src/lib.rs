//! The channel senders: one worker kind per channel, each on its own queue
//! (`<ns>.sender.email`, `<ns>.sender.sms`, `<ns>.sender.letter`), sharing one delivery
//! flow. Right before delivering, the flow holds the invoice row in share mode and re-checks
//! it: no reminder goes out, on any channel, once a payment settling the invoice is
//! recorded, nor while the invoice is paused (the step goes back to pending, to be re-dated
//! when the pause ends). A grouped message that lists an invoice no longer in its group (paid,
//! closed or paused since it was rendered) goes back to the renderer instead, to be rendered
//! with the invoices left. Couriers (`mailer`, `sms`, `postal`) only talk to their providers.
//!
//! Step states: `rendered` | `deferred` -> `sending` (committed before delivery) -> `sent` |
//! `failed` | `cancelled`, or `deferred` (refused for now, or aborted for want of the
//! database) until its retry. A step
//! left in `sending` (its sender died mid-delivery) is settled by the scheduler's lease sweep
//! by the stage it reached: delivered again before the end of DATA, sent once answered, and
//! in between ambiguous, by the `RELANCE_INTERRUPTED_DELIVERY` policy.

pub mod courier;
pub mod http;
pub mod mailer;
pub mod outbox_file;
pub mod postal;
pub mod sms;
pub mod smtp;

use anyhow::Context;

use courier::{Courier, DeliveryError, Parcel};
use mailer::{EmailCourier, Mailer};
use relance_config::Config;
use relance_contracts::names::{self, Names};
use relance_contracts::{
    ReminderCancelledV1, ReminderDueV1, ReminderFailedV1, ReminderPostponedV1, ReminderRenderedV1, VERSION_1,
};
use relance_domain::collections::InvoiceState;
use relance_domain::StepKind;
use relance_messaging::{HandlerError, Incoming, Readiness};
use relance_sequence::outgoing;
use relance_storage::group_commit::GroupCommit;
use relance_storage::invoices;
use relance_storage::pauses;
use relance_storage::steps::{self, DeliveryStage, StepStatus};
use relance_storage::{deliveries, groups, journal, outbox};
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The email sender (`relance run sender`).
pub const SERVICE: &str = "sender";
/// The SMS sender (`relance run sender-sms`).
pub const SMS_SERVICE: &str = "sender-sms";
/// The letter sender, letters and registered letters (`relance run sender-letter`).
pub const LETTER_SERVICE: &str = "sender-letter";
pub const CHANNEL: &str = "email";

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_readiness(config, Readiness::default(), shutdown).await
}

pub async fn run_with_readiness(
    config: Config,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let courier = EmailCourier {
        mailer: Mailer::from_settings(&config.settings)?,
        mail_from: config.settings.creditor.mail_from.clone(),
        reply_to: config.settings.creditor.reply_to.clone(),
    };
    run_courier(SERVICE, Arc::new(courier), config, readiness, shutdown).await
}

/// The SMS sender until `shutdown`.
pub async fn run_sms(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_sms_with_readiness(config, Readiness::default(), shutdown).await
}

pub async fn run_sms_with_readiness(
    config: Config,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let courier = sms::SmsCourier::from_settings(&config.settings.channels)?;
    run_courier(SMS_SERVICE, Arc::new(courier), config, readiness, shutdown).await
}

/// The letter sender until `shutdown`.
pub async fn run_letter(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_letter_with_readiness(config, Readiness::default(), shutdown).await
}

pub async fn run_letter_with_readiness(
    config: Config,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let courier = postal::LetterCourier::from_settings(&config.settings.channels)?;
    run_courier(LETTER_SERVICE, Arc::new(courier), config, readiness, shutdown).await
}

/// Consumes the courier's queue (`<ns>.sender.<kind>`) until `shutdown`.
pub async fn run_courier(
    service: &'static str,
    courier: Arc<dyn Courier>,
    config: Config,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // A database not yet up (or full) at start is waited out, as the broker is.
    let Some(db) = relance_messaging::worker::connect_database(service, &config, &shutdown).await? else {
        return Ok(());
    };
    // The claims, last checks and results of deliveries that end together commit together
    // (RELANCE_COMMIT_BATCH); each caller goes on only once its work committed.
    let s = &config.settings;
    let commits = GroupCommit::start(&db, service, s.commit_lanes, s.commit_batch);
    let (handler_db, handler_config) = (db.clone(), config.clone());
    let kind = courier.kind();
    let queue = move |names: &Names| names.sender_queue(kind);
    relance_messaging::run_queue_worker(
        service,
        &config,
        &db,
        queue,
        readiness,
        shutdown,
        move |message| {
            let (db, config, courier) = (handler_db.clone(), handler_config.clone(), courier.clone());
            let commits = commits.clone();
            async move { deliver_job(&commits, &db, &config, courier.as_ref(), message).await }
        },
    )
    .await
}

/// Handles `reminder.rendered.<kind>` with the courier of that kind.
#[tracing::instrument(skip_all, fields(message_id = ?message.message_id, step, channel = courier.kind()), err)]
pub async fn deliver_job(
    commits: &GroupCommit,
    db: &PgPool,
    config: &Config,
    courier: &dyn Courier,
    message: Incoming,
) -> Result<(), HandlerError> {
    let job: ReminderRenderedV1 = message.json()?;
    tracing::Span::current().record("step", tracing::field::display(job.step_id));
    let attempt = uuid::Uuid::new_v4();
    let claimed = {
        // Shared by the piece's runs (a failed batch runs it again alone).
        let inputs = Arc::new((config.clone(), job));
        commits
            .run(move |conn| {
                let inputs = inputs.clone();
                Box::pin(async move {
                    let (config, job) = &*inputs;
                    claim_parcel(conn, config, job, attempt).await
                })
            })
            .await?
    };
    let Some(parcel) = claimed else {
        return Ok(());
    };
    let step = parcel.step.clone();
    let rendered = parcel.rendered.clone();
    let gate = StepGate {
        commits,
        step: &step,
        attempt,
        clock: &config.clock,
    };
    // No transaction is open while the courier talks to its provider: the lease is renewed
    // beside it, so that the sweep never takes a live delivery for an interrupted one.
    let outcome = tokio::select! {
        outcome = courier.deliver(&parcel, &gate) => outcome,
        () = renew_lease_while_delivering(db, step.id, attempt, config.settings.lease) => {
            return Err(HandlerError::Transient(anyhow::anyhow!("the lease renewal stopped")));
        }
    };
    let delivery = Delivery {
        step: &step,
        rendered: &rendered,
        attempt,
    };
    // When a transient failure is tried again: the consumer's retry budget decides.
    let retry_in =
        match relance_messaging::RetryPolicy::from_settings(&config.settings).after_failure(&message) {
            relance_messaging::RetryDecision::Retry(next) => Some(next.wait),
            relance_messaging::RetryDecision::GiveUp(_) => None,
        };
    let bounces = courier.kind() == CHANNEL;
    let decided = outcome_action(outcome, retry_in, bounces);
    count_delivery(courier.kind(), &decided);
    let sinks = Sinks { commits, db };
    record_outcome(&sinks, config, &delivery, decided, message.retries).await
}

/// Where a delivery's records go: the group commit, and the pool for the provider's answer
/// (recorded at once, in a statement of its own).
struct Sinks<'a> {
    commits: &'a GroupCommit,
    db: &'a PgPool,
}

/// Reads what the delivery needs and claims the step, in one savepoint of a group commit: an
/// error rolls it back, the step stays `rendered`, and the job retries. `None`: the step is
/// not this sender's to deliver (settled, or stopped by the claim's checks).
async fn claim_parcel(
    conn: &mut sqlx::PgConnection,
    config: &Config,
    job: &ReminderRenderedV1,
    attempt: uuid::Uuid,
) -> Result<Option<Parcel>, HandlerError> {
    let Some(step) = steps::find(&mut *conn, job.step_id).await? else {
        return Err(HandlerError::Permanent(format!("unknown step {}", job.step_id)));
    };
    let Some(steps::RenderedParcel {
        message: rendered,
        document,
        statement,
    }) = steps::find_rendered_parcel(&mut *conn, step.id).await?
    else {
        return Err(HandlerError::Permanent(format!(
            "step {} has no rendered message",
            step.id
        )));
    };
    let pdf = if rendered.attach_invoice {
        invoices::invoice_pdf(&mut *conn, step.invoice_id).await?
    } else {
        None
    };
    let request_receipt = step.kind == StepKind::Reminder
        && invoices::find_by_id(&mut *conn, step.invoice_id)
            .await?
            .is_some_and(|invoice| {
                config
                    .policy_for(invoice.policy.as_deref())
                    .requests_receipt(invoice.risk, &step.name)
            });
    let creditor =
        relance_storage::creditors::for_invoice(&mut *conn, &config.settings.creditor, step.invoice_id)
            .await?;
    if !claim(conn, config, &step, attempt).await? {
        return Ok(None);
    }
    Ok(Some(Parcel {
        step,
        rendered,
        invoice_pdf: pdf,
        document,
        statement,
        creditor,
        at: config.clock.now(),
        request_receipt,
    }))
}

/// The claim: `rendered | deferred -> sending` under a new attempt id, and the checks that make a
/// delivery pointless (invoice paid or closed, paused, group changed), in one short
/// savepoint. An error rolls it all back: the step stays `rendered` and the job retries.
/// Returns whether the step is now this sender's to deliver.
async fn claim(
    tx: &mut sqlx::PgConnection,
    config: &Config,
    step: &steps::StepRecord,
    attempt: uuid::Uuid,
) -> anyhow::Result<bool> {
    let now = config.clock.now();
    if !steps::claim_delivery(&mut *tx, step.id, attempt, now).await? {
        // In `sending`, it belongs to a live sender, or to a dead one whose lease the
        // scheduler's sweep will settle; otherwise it is settled already: not ours.
        let status = steps::lock_for_delivery(&mut *tx, step.id).await?;
        tracing::info!(?status, "step is not waiting for delivery; job ignored");
        journal::append(
            &mut *tx,
            now,
            &step.invoice_number,
            Some(step.id),
            "job.ignored",
            json!({ "stage": "send", "status": status }),
        )
        .await?;
        return Ok(false);
    }
    // Stage `claimed` was written by the claim itself.
    Ok(!stop_before_delivery(tx, step, now).await?)
}

/// What makes a claimed delivery pointless, settled in the caller's transaction: a reminder
/// (or recap) of an invoice no longer open is cancelled, a paused invoice's reminder goes
/// back to `pending`, a grouped message whose group changed goes back to the renderer.
/// Returns whether the step was settled so.
async fn stop_before_delivery(
    tx: &mut sqlx::PgConnection,
    step: &steps::StepRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<bool> {
    let invoice_status = invoices::hold_for_delivery(tx, step.invoice_id).await?;
    // Reminders and call recaps are about an unpaid invoice; a thank-you is not.
    if step.kind != StepKind::Thanks && invoice_status != Some(InvoiceState::Open) {
        let reason = "invoice settled before sending";
        if steps::transition(
            tx,
            step.id,
            &[StepStatus::Sending],
            StepStatus::Cancelled,
            Some(reason),
            now,
        )
        .await?
        {
            let detail = ReminderCancelledV1 {
                reason: reason.to_string(),
                was: StepStatus::Sending.as_str().to_string(),
                stage: None,
            };
            outgoing::announce_step_detail(tx, now, step, &detail).await?;
        }
        return Ok(true);
    }
    if step.kind == StepKind::Reminder && hold_back_if_paused(tx, step, now).await? {
        return Ok(true);
    }
    Ok(step.kind == StepKind::Reminder && rerender_if_group_changed(tx, step, now).await?)
}

/// Renews the delivery's lease every third of it, until dropped (never returns).
async fn renew_lease_while_delivering(
    db: &PgPool,
    step: uuid::Uuid,
    attempt: uuid::Uuid,
    lease: std::time::Duration,
) {
    let every = (lease / 3).max(std::time::Duration::from_millis(50));
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = steps::renew_delivery_lease(db, step, attempt).await {
            tracing::warn!(error = format!("{e:#}"), "renewing the delivery lease failed");
        }
    }
}

/// How long the last check may take before the delivery is aborted: past it, the database
/// is as good as unreadable. A check given up so may still commit `data_end_sent` later (its
/// group commit runs on; so could a commit whose acknowledgement was lost, before group
/// commit): the abort that follows settles the step (deferred or stopped) in the same order
/// of commits, and if even that fails the sweep treats the step as ambiguous, by
/// `RELANCE_INTERRUPTED_DELIVERY`, rather than delivering it again.
const LAST_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The delivery gate of one claimed step: makes the last check before the point of no
/// return, which records stage `data_end_sent`. No transaction stays open while
/// the provider answers: a payment committed after the last check marks the step, and the
/// delivery is journaled as sent with the payment's time beside it, never as cancelled.
struct StepGate<'a> {
    commits: &'a GroupCommit,
    step: &'a steps::StepRecord,
    attempt: uuid::Uuid,
    clock: &'a relance_domain::SharedClock,
}

impl courier::DeliveryGate for StepGate<'_> {
    fn reached(&self, stage: DeliveryStage) -> futures_util::future::BoxFuture<'_, ()> {
        // Not written: a delivery interrupted once connected, or with its envelope accepted,
        // is settled by the sweep as one interrupted right after its claim (nothing went out:
        // delivered again). Writing them cost two transactions per email and changed
        // nothing a recovery decides; `data_end_sent` (the last check) and `answered` stay.
        Box::pin(async move {
            tracing::debug!(stage = stage.as_str(), "delivery stage reached");
        })
    }

    fn confirm(&self) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match tokio::time::timeout(LAST_CHECK_TIMEOUT, self.last_check()).await {
                Ok(Ok(None)) => Ok(()),
                Ok(Ok(Some(reason))) => Err(reason),
                Ok(Err(e)) => Err(format!("the last check could not read the database: {e:#}")),
                Err(_) => Err(format!(
                    "the last check could not read the database within {LAST_CHECK_TIMEOUT:?}"
                )),
            }
        })
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}

impl StepGate<'_> {
    /// Re-reads the invoice (held in share mode for this short transaction only: a payment
    /// being committed is waited for and seen), the step's stop mark, pauses and the group;
    /// if nothing stops the delivery, commits stage `data_end_sent` (in a group commit: the
    /// delivery goes on only once it committed). `Some(reason)` stops it.
    async fn last_check(&self) -> anyhow::Result<Option<String>> {
        let (step, attempt) = (Arc::new(self.step.clone()), self.attempt);
        self.commits
            .run(move |tx| {
                let step = step.clone();
                Box::pin(async move {
                    if let Some(reason) = stop_reason(&mut *tx, &step, attempt).await? {
                        return Ok(Some(reason));
                    }
                    if !steps::record_stage(&mut *tx, step.id, attempt, DeliveryStage::DataEndSent).await? {
                        return Ok(Some("the step is no longer this sender's".into()));
                    }
                    Ok(None)
                })
            })
            .await
    }
}

/// Holds the invoice (and a grouped message's invoices) in share mode and says what, if
/// anything, stops the delivery of `step` under `attempt`: the step no longer this sender's,
/// a stop mark, the invoice settled or closed, a pause, or a change in the group.
async fn stop_reason(
    tx: &mut sqlx::PgConnection,
    step: &steps::StepRecord,
    attempt: uuid::Uuid,
) -> anyhow::Result<Option<String>> {
    let invoice_status = invoices::hold_for_delivery(tx, step.invoice_id).await?;
    let Some(state) = steps::lock_delivery(tx, step.id).await? else {
        return Ok(Some("the step is gone".into()));
    };
    if state.status != StepStatus::Sending || state.delivery_attempt != Some(attempt) {
        return Ok(Some(format!(
            "the step is no longer this sender's (now {})",
            state.status
        )));
    }
    if step.kind != StepKind::Thanks {
        if let Some(reason) = &state.stop_reason {
            return Ok(Some(format!("{reason} while it was being sent")));
        }
        if invoice_status != Some(InvoiceState::Open) {
            return Ok(Some("invoice settled before sending".into()));
        }
    }
    if step.kind == StepKind::Reminder {
        if !pauses::active(&mut *tx, step.invoice_id).await?.is_empty() {
            return Ok(Some("invoice paused before sending".into()));
        }
        let listed = groups::listed(&mut *tx, step.id).await?;
        if !listed.is_empty() {
            let mut held: Vec<uuid::Uuid> = listed.iter().map(|l| l.invoice_id).collect();
            held.sort();
            held.dedup();
            invoices::hold_all_for_delivery(&mut *tx, &held).await?;
            if groups::listed(&mut *tx, step.id)
                .await?
                .iter()
                .any(|l| !l.still_grouped)
            {
                return Ok(Some("an invoice the grouped message listed left it".into()));
            }
        }
    }
    Ok(None)
}

/// One claimed delivery: the step, its rendered message, and the attempt that holds it.
struct Delivery<'a> {
    step: &'a steps::StepRecord,
    rendered: &'a steps::RenderedMessage,
    attempt: uuid::Uuid,
}

/// What a courier's delivery comes to.
#[derive(Debug)]
enum OutcomeAction {
    /// The provider took it: recorded as sent.
    Sent(courier::Receipt),
    /// Stopped at the last check, nothing went out: settled by what stopped it, or deferred.
    Aborted(String),
    /// No answer after the end of DATA: left for the sweep (the delivery is ambiguous).
    Ambiguous(String),
    /// A transient failure with retry budget left: deferred, retried after `wait`.
    Retry {
        reason: String,
        wait: std::time::Duration,
    },
    /// A permanent failure, or a transient one past the budget: failed. `bounce`: an SMTP
    /// server refused the customer's address for good.
    Fail { reason: String, bounce: bool },
}

/// Decides what a delivery's `outcome` comes to: `retry_in` is the consumer's retry budget
/// (`None` when spent), `bounces` whether the courier's refusals are email bounces.
fn outcome_action(
    outcome: Result<courier::Receipt, DeliveryError>,
    retry_in: Option<std::time::Duration>,
    bounces: bool,
) -> OutcomeAction {
    match outcome {
        Ok(receipt) => OutcomeAction::Sent(receipt),
        Err(DeliveryError::Aborted(reason)) => OutcomeAction::Aborted(reason),
        Err(DeliveryError::Unanswered(reason)) => OutcomeAction::Ambiguous(reason),
        // Retried while the retry budget lasts (the consumer's own decision); failed after.
        Err(DeliveryError::Transient(reason)) => match retry_in {
            Some(wait) => OutcomeAction::Retry { reason, wait },
            None => OutcomeAction::Fail {
                reason,
                bounce: false,
            },
        },
        // An SMTP server that refused the customer's address for good: its later email
        // steps fall back to another channel (see the policy's `fallback`).
        Err(DeliveryError::Permanent(reason)) => OutcomeAction::Fail {
            bounce: bounces && mailer::is_smtp_refusal(&reason),
            reason,
        },
    }
}

/// Records what the courier's delivery came to, in a group commit; `retries` is how many
/// times the job was tried before.
async fn record_outcome(
    sinks: &Sinks<'_>,
    config: &Config,
    delivery: &Delivery<'_>,
    action: OutcomeAction,
    retries: u32,
) -> Result<(), HandlerError> {
    let now = config.clock.now();
    let Delivery {
        step,
        rendered,
        attempt,
    } = *delivery;
    let step = Arc::new(step.clone());
    match action {
        OutcomeAction::Sent(receipt) => record_sent(sinks, step, attempt, Arc::new(receipt), now).await,
        OutcomeAction::Aborted(reason) => {
            settle_aborted(sinks.commits, step, attempt, Arc::new(reason), now).await
        }
        OutcomeAction::Ambiguous(reason) => {
            // The server may have the message: left at stage `data_end_sent`, for the sweep to
            // settle by the interrupted-delivery policy once the lease runs out.
            tracing::warn!(
                reason,
                "no answer after the end of DATA: the delivery is ambiguous"
            );
            Ok(())
        }
        OutcomeAction::Retry { reason, wait } => {
            let next_attempt_at = chrono::Duration::from_std(wait).ok().map(|d| now + d);
            let why = Arc::new(reason.clone());
            sinks
                .commits
                .run(move |tx| {
                    let (step, why) = (step.clone(), why.clone());
                    Box::pin(async move {
                        if steps::defer_delivery(&mut *tx, step.id, attempt, &why, next_attempt_at, wait, now)
                            .await?
                        {
                            journal::append(
                                &mut *tx,
                                now,
                                &step.invoice_number,
                                Some(step.id),
                                "reminder.delivery_deferred",
                                json!({ "reason": why, "attempt": retries + 1, "next_attempt_at": next_attempt_at }),
                            )
                            .await?;
                        }
                        anyhow::Ok(())
                    })
                })
                .await
                .context("releasing the step for a retry")?;
            Err(HandlerError::Transient(anyhow::anyhow!(reason)))
        }
        OutcomeAction::Fail { reason, bounce } => {
            let failure = Arc::new((rendered.clone(), reason));
            sinks
                .commits
                .run(move |tx| {
                    let (step, failure) = (step.clone(), failure.clone());
                    Box::pin(async move {
                        let (rendered, reason) = &*failure;
                        if steps::end_delivery(
                            &mut *tx,
                            step.id,
                            attempt,
                            StepStatus::Failed,
                            Some(reason),
                            now,
                        )
                        .await?
                        {
                            let failed = ReminderFailedV1 {
                                reason: reason.clone(),
                                attempts: Some(retries + 1),
                            };
                            outgoing::announce_step_detail(&mut *tx, now, &step, &failed).await?;
                            if bounce {
                                record_bounce(&mut *tx, &step, rendered, reason, now).await?;
                            }
                        }
                        anyhow::Ok(())
                    })
                })
                .await
                .context("recording the failure")?;
            Ok(())
        }
    }
}

/// The provider took the message: the answer is recorded at once (stage `answered`, in a
/// statement of its own: a sender dying now leaves a step the sweep settles as sent), then
/// the step becomes `sent` and `reminder.sent` (or `thanks.sent`) is announced, with the
/// payment's time beside it if one was recorded while it was going out.
async fn record_sent(
    sinks: &Sinks<'_>,
    step: Arc<steps::StepRecord>,
    attempt: uuid::Uuid,
    receipt: Arc<courier::Receipt>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), HandlerError> {
    if let Err(e) = steps::record_answer(sinks.db, step.id, attempt, &receipt.proof).await {
        tracing::warn!(error = format!("{e:#}"), "recording the provider's answer failed");
    }
    let (due_at, channel) = (step.due_at, step.channel);
    let recorded = sinks
        .commits
        .run(move |tx| {
            let (step, receipt) = (step.clone(), receipt.clone());
            Box::pin(async move { record_sent_in(tx, &step, attempt, &receipt, now).await })
        })
        .await
        .context("recording the delivery")?;
    if recorded {
        relance_telemetry::metrics::observe_due_to_sent(channel.as_str(), now - due_at);
    }
    Ok(())
}

/// [`record_sent`]'s work in its savepoint; whether the step was still this delivery's.
async fn record_sent_in(
    tx: &mut sqlx::PgConnection,
    step: &steps::StepRecord,
    attempt: uuid::Uuid,
    receipt: &courier::Receipt,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<bool> {
    // The invoice before the step, in the order a payment takes them: a payment being
    // recorded now is waited for (and its stop mark seen), never deadlocked with.
    invoices::hold_for_delivery(&mut *tx, step.invoice_id).await?;
    let state = steps::lock_delivery(&mut *tx, step.id).await?;
    let Some(state) =
        state.filter(|s| s.delivery_attempt == Some(attempt) && s.status == StepStatus::Sending)
    else {
        tracing::warn!("the step left `sending` while it was delivered; nothing recorded");
        return Ok(false);
    };
    let proof = Some(receipt.proof.as_str());
    steps::end_delivery_with_proof(&mut *tx, step.id, attempt, StepStatus::Sent, None, proof, now).await?;
    if let Some(reference) = &receipt.reference {
        deliveries::set_delivery_reference(&mut *tx, step.id, reference).await?;
    }
    let mut sent = receipt.detail.clone();
    if let Some(stop) = outgoing::stop_requested(&state) {
        courier::note_stop_requested(&mut sent, stop);
    }
    let thanks = step.kind == StepKind::Thanks;
    outgoing::announce_sent(&mut *tx, now, step, thanks, sent).await?;
    Ok(true)
}

/// The courier aborted before the point of no return: nothing went out. What stopped it
/// (a payment, a closure, a pause, a changed group) settles the step; if nothing did (the
/// database could not be read), the step is `deferred` and the job retries. If
/// even that cannot be written, the step stays `sending` before the end of DATA, and the
/// sweep delivers it again once the lease runs out.
async fn settle_aborted(
    commits: &GroupCommit,
    step: Arc<steps::StepRecord>,
    attempt: uuid::Uuid,
    reason: Arc<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), HandlerError> {
    tracing::info!(
        reason = reason.as_str(),
        "delivery aborted before the end of DATA"
    );
    let why = reason.clone();
    let deferred = commits
        .run(move |tx| {
            let (step, why) = (step.clone(), why.clone());
            Box::pin(async move { settle_aborted_in(tx, &step, attempt, &why, now).await })
        })
        .await
        .context("settling the aborted delivery")?;
    if !deferred {
        return Ok(());
    }
    Err(HandlerError::Transient(anyhow::anyhow!(
        "delivery aborted before the end of DATA: {reason}"
    )))
}

/// [`settle_aborted`]'s work in its savepoint; whether the step was deferred for a retry
/// (rather than settled by what stopped it, or by someone else meanwhile).
async fn settle_aborted_in(
    tx: &mut sqlx::PgConnection,
    step: &steps::StepRecord,
    attempt: uuid::Uuid,
    reason: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<bool> {
    // The invoice before the step, in the order a payment takes them.
    invoices::hold_for_delivery(&mut *tx, step.invoice_id).await?;
    let state = steps::lock_delivery(&mut *tx, step.id).await?;
    if !state.is_some_and(|s| s.delivery_attempt == Some(attempt) && s.status == StepStatus::Sending) {
        return Ok(false); // Settled by someone else meanwhile.
    }
    if stop_before_delivery(&mut *tx, step, now).await? {
        return Ok(false);
    }
    steps::defer_delivery(
        &mut *tx,
        step.id,
        attempt,
        reason,
        None,
        std::time::Duration::ZERO,
        now,
    )
    .await?;
    journal::append(
        &mut *tx,
        now,
        &step.invoice_number,
        Some(step.id),
        "reminder.delivery_aborted",
        json!({ "reason": reason }),
    )
    .await?;
    Ok(true)
}

/// Records the customer's bounced address (see `relance_sequence::replies::record_bounce`,
/// the path asynchronous bounces read from the mailbox take too).
async fn record_bounce(
    tx: &mut sqlx::PgConnection,
    step: &steps::StepRecord,
    rendered: &steps::RenderedMessage,
    reason: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    relance_sequence::replies::record_bounce(
        tx,
        step.invoice_id,
        &step.invoice_number,
        Some(step.id),
        &rendered.recipients,
        reason,
        now,
    )
    .await?;
    Ok(())
}

/// A paused invoice refuses delivery: the step goes back to `pending`, to be re-dated when
/// the sequence resumes (or cancelled if the invoice closes). Not lost, not sent.
async fn hold_back_if_paused(
    tx: &mut sqlx::PgConnection,
    step: &steps::StepRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<bool> {
    let active = pauses::active(tx, step.invoice_id).await?;
    if active.is_empty() {
        return Ok(false);
    }
    let kinds: Vec<&str> = active.iter().map(|p| p.kind.as_str()).collect();
    let reason = format!("invoice paused ({}) before sending", kinds.join(", "));
    if pauses::pull_back_delivery(tx, step.id, &reason, now).await? {
        outgoing::announce_step_detail(
            tx,
            now,
            step,
            &ReminderPostponedV1 {
                reason,
                until: None,
                calendar: None,
            },
        )
        .await?;
    }
    Ok(true)
}

/// A grouped message lists the customer's other overdue invoices as they stood when it was
/// rendered. When one of them has left the group since (paid, closed, or paused: its step no
/// longer waits in this message), the message must not go out as rendered: the rendering is
/// set aside (kept as proof, see `steps::supersede_renderings`), the step goes back to
/// `queued` and to the renderer, which renders it with the invoices still in the group (or
/// none: a plain reminder), and a sender delivers that one. Journaled `reminder.rerendered`
/// with the invoices dropped. The listed invoices are held in share mode first, like the
/// lead's: a payment of one of them is either seen here, or waits until this delivery is
/// recorded, so a message never lists an invoice paid before it went out. Returns whether
/// the step went back to the renderer.
async fn rerender_if_group_changed(
    tx: &mut sqlx::PgConnection,
    step: &steps::StepRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<bool> {
    let listed = groups::listed(tx, step.id).await?;
    if listed.is_empty() {
        return Ok(false);
    }
    let mut held: Vec<uuid::Uuid> = listed.iter().map(|l| l.invoice_id).collect();
    held.sort();
    held.dedup();
    invoices::hold_all_for_delivery(tx, &held).await?;
    // Read again under the locks: what a payment committed meanwhile is seen now.
    let listed = groups::listed(tx, step.id).await?;
    let (kept, dropped): (Vec<_>, Vec<_>) = listed.iter().partition(|l| l.still_grouped);
    if dropped.is_empty() {
        return Ok(false);
    }
    let reason = "an invoice the grouped message listed left it before it was sent";
    if !steps::transition(
        tx,
        step.id,
        &[StepStatus::Sending],
        StepStatus::Queued,
        Some(reason),
        now,
    )
    .await?
    {
        return Ok(true); // Settled by someone else meanwhile: not ours to send.
    }
    // Journaled before the rendering is set aside: the entry carries its hash.
    journal::append(
        tx,
        now,
        &step.invoice_number,
        Some(step.id),
        "reminder.rerendered",
        json!({
            "reason": reason,
            "dropped": dropped
                .iter()
                .map(|l| json!({ "invoice_number": l.invoice_number, "step": l.step, "status": l.status }))
                .collect::<Vec<_>>(),
            "kept": kept.iter().map(|l| &l.invoice_number).collect::<Vec<_>>(),
        }),
    )
    .await?;
    steps::supersede_renderings(tx, &[step.id], reason, now).await?;
    let job = ReminderDueV1 {
        version: VERSION_1,
        job_id: uuid::Uuid::new_v4(),
        step_id: step.id,
        invoice_number: step.invoice_number.clone(),
        step: step.name.clone(),
        channel: step.channel.to_string(),
    };
    outbox::enqueue(
        tx,
        &outgoing::job(names::REMINDER_DUE, job.job_id, &step.invoice_number, &job)?,
        now,
    )
    .await?;
    Ok(true)
}

/// A delivery attempt in `relance_deliveries_total`, with the class of the provider's answer.
fn count_delivery(channel: &str, action: &OutcomeAction) {
    use relance_telemetry::metrics::{record_delivery, reply_code_in, DeliveryOutcome};
    let (outcome, answer) = match action {
        OutcomeAction::Sent(receipt) => (DeliveryOutcome::Sent, Some(receipt.proof.as_str())),
        OutcomeAction::Aborted(_) => (DeliveryOutcome::Stopped, None),
        OutcomeAction::Ambiguous(_) => (DeliveryOutcome::Ambiguous, None),
        OutcomeAction::Retry { reason, .. } => (DeliveryOutcome::Deferred, Some(reason.as_str())),
        OutcomeAction::Fail { reason, .. } => (DeliveryOutcome::Failed, Some(reason.as_str())),
    };
    record_delivery(channel, outcome, answer.and_then(reply_code_in));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn refusal() -> String {
        format!("{}550 5.1.1 no such user", mailer::SMTP_REFUSAL)
    }

    #[test]
    fn a_transient_failure_is_retried_while_the_budget_lasts_then_fails() {
        let wait = Duration::from_secs(60);
        let retried = outcome_action(Err(DeliveryError::Transient("421".into())), Some(wait), true);
        assert!(matches!(retried, OutcomeAction::Retry { reason, wait: w } if reason == "421" && w == wait));
        let spent = outcome_action(Err(DeliveryError::Transient(refusal())), None, true);
        assert!(
            matches!(spent, OutcomeAction::Fail { bounce: false, .. }),
            "{spent:?}"
        );
    }

    #[test]
    fn only_an_smtp_refusal_by_the_email_courier_is_a_bounce() {
        let budget = Some(Duration::from_secs(60));
        let bounced = outcome_action(Err(DeliveryError::Permanent(refusal())), budget, true);
        assert!(matches!(bounced, OutcomeAction::Fail { bounce: true, reason } if reason == refusal()));
        let other_channel = outcome_action(Err(DeliveryError::Permanent(refusal())), budget, false);
        assert!(matches!(other_channel, OutcomeAction::Fail { bounce: false, .. }));
        let unbuildable = outcome_action(Err(DeliveryError::Permanent("bad header".into())), budget, true);
        assert!(matches!(unbuildable, OutcomeAction::Fail { bounce: false, .. }));
    }

    #[test]
    fn an_abort_and_a_missing_answer_are_never_retried_as_failures() {
        let budget = Some(Duration::from_secs(60));
        let aborted = outcome_action(Err(DeliveryError::Aborted("paid".into())), budget, true);
        assert!(matches!(aborted, OutcomeAction::Aborted(reason) if reason == "paid"));
        let unanswered = outcome_action(Err(DeliveryError::Unanswered("timeout".into())), budget, true);
        assert!(matches!(unanswered, OutcomeAction::Ambiguous(reason) if reason == "timeout"));
    }
}
