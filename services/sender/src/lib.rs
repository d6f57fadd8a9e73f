//! The channel senders: one worker kind per channel, each on its own queue
//! (`<ns>.sender.email`, `<ns>.sender.sms`, `<ns>.sender.letter`), sharing one delivery
//! flow. Right before delivering, the flow holds the invoice row in share mode and re-checks
//! it: no reminder goes out, on any channel, once a payment settling the invoice is
//! recorded, nor while the invoice is paused (the step goes back to pending, to be re-dated
//! when the pause ends). A grouped message that lists an invoice no longer in its group (paid,
//! closed or paused since it was rendered) goes back to the renderer instead, to be rendered
//! with the invoices left. Couriers (`mailer`, `sms`, `postal`) only talk to their providers.
//!
//! Step states: `rendered` -> `sending` (committed before delivery) -> `sent` | `failed`.
//! A step left in `sending` (its sender died mid-delivery) is settled by the scheduler's
//! lease sweep, by the `RELANCE_INTERRUPTED_DELIVERY` policy: failed with the reason
//! (default, never a duplicate) or delivered again with the same idempotency key.

pub mod courier;
pub mod http;
pub mod mailer;
pub mod postal;
pub mod sms;

use anyhow::Context;

use courier::{Courier, DeliveryError, Parcel};
use mailer::{EmailCourier, Mailer};
use relance_config::Config;
use relance_contracts::names::{self, Names};
use relance_contracts::{ReminderDueV1, ReminderRenderedV1, VERSION_1};
use relance_messaging::{outgoing, HandlerError, Incoming, Readiness};
use relance_storage::invoices::{self, STATUS_OPEN};
use relance_storage::pauses;
use relance_storage::steps::{self, StepStatus};
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
    let s = &config.settings;
    // A database not yet up (or full) at start is waited out, as the broker is.
    let Some(db) = relance_storage::connect_at_start(
        service,
        &s.database_url,
        s.db_pool_size,
        s.db_acquire_timeout,
        &shutdown,
    )
    .await?
    else {
        return Ok(());
    };
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
            async move { deliver_job(&db, &config, courier.as_ref(), message).await }
        },
    )
    .await
}

/// Handles `reminder.rendered.<kind>` with the courier of that kind.
#[tracing::instrument(skip_all, fields(message_id = ?message.message_id, step, channel = courier.kind()), err)]
pub async fn deliver_job(
    db: &PgPool,
    config: &Config,
    courier: &dyn Courier,
    message: Incoming,
) -> Result<(), HandlerError> {
    let job: ReminderRenderedV1 = message.json()?;
    tracing::Span::current().record("step", tracing::field::display(job.step_id));
    let mut conn = db.acquire().await.context("acquiring a connection")?;
    let Some(step) = steps::find(&mut conn, job.step_id).await? else {
        return Err(HandlerError::Permanent(format!("unknown step {}", job.step_id)));
    };
    let Some(rendered) = steps::find_rendered(&mut conn, step.id).await? else {
        return Err(HandlerError::Permanent(format!(
            "step {} has no rendered message",
            step.id
        )));
    };
    let pdf = if rendered.attach_invoice {
        invoices::invoice_pdf(&mut conn, step.invoice_id).await?
    } else {
        None
    };
    let document = deliveries::document_of(&mut conn, step.id).await?;
    drop(conn);

    // 1. Claim the delivery: rendered -> sending, committed, so a crash leaves a trace. A step
    //    already in `sending` belongs to a live sender, or to a dead one whose lease the
    //    scheduler's sweep will settle: either way, not ours.
    let now = config.clock.now();
    let mut tx = db.begin().await.context("starting the claim transaction")?;
    let status = steps::lock_for_delivery(&mut tx, step.id).await?;
    if status.as_deref() != Some(StepStatus::Rendered.as_str()) {
        tracing::info!(?status, "step is not waiting for delivery; job ignored");
        journal::append(
            &mut tx,
            now,
            &step.invoice_number,
            Some(step.id),
            "job.ignored",
            json!({ "stage": "send", "status": status }),
        )
        .await?;
        tx.commit().await.context("committing the note")?;
        return Ok(());
    }
    steps::transition(
        &mut tx,
        step.id,
        &[StepStatus::Rendered],
        StepStatus::Sending,
        None,
        now,
    )
    .await?;
    tx.commit().await.context("committing the claim")?;

    // 2. Hold the invoice and the step, re-check, deliver, record: one transaction. A
    //    payment waits for it, or has already settled the invoice and we do not send.
    let mut tx = db.begin().await.context("starting the delivery transaction")?;
    let invoice_status = invoices::hold_for_delivery(&mut tx, step.invoice_id).await?;
    if steps::lock_for_delivery(&mut tx, step.id).await?.as_deref() != Some(StepStatus::Sending.as_str()) {
        return Ok(()); // Cancelled by a payment, or settled by a sweep, in between.
    }
    let now = config.clock.now();
    // Reminders and call recaps are about an unpaid invoice; a thank-you is not.
    if step.kind != "thanks" && invoice_status.as_deref() != Some(STATUS_OPEN) {
        outgoing::transition_and_announce(
            &mut tx,
            now,
            &step,
            &[StepStatus::Sending],
            StepStatus::Cancelled,
            names::REMINDER_CANCELLED,
            "invoice settled before sending",
        )
        .await?;
        tx.commit().await.context("committing the cancellation")?;
        return Ok(());
    }
    if step.kind == "reminder" && hold_back_if_paused(&mut tx, &step, now).await? {
        tx.commit().await.context("committing the pull-back")?;
        return Ok(());
    }
    if step.kind == "reminder" && rerender_if_group_changed(&mut tx, &step, now).await? {
        tx.commit().await.context("committing the re-rendering")?;
        return Ok(());
    }
    let s = &config.settings;
    let parcel = Parcel {
        step: step.clone(),
        rendered: rendered.clone(),
        invoice_pdf: pdf,
        document,
        at: now,
    };
    let outcome = courier.deliver(&parcel).await;
    match outcome {
        Ok(receipt) => {
            // From here to the commit is the window in which a crash leaves a delivered
            // step in `sending` (settled by the interrupted-delivery policy).
            let accepted = std::time::Instant::now();
            steps::transition(
                &mut tx,
                step.id,
                &[StepStatus::Sending],
                StepStatus::Sent,
                None,
                now,
            )
            .await?;
            steps::set_delivery_proof(&mut tx, step.id, &receipt.proof).await?;
            if let Some(reference) = &receipt.reference {
                deliveries::set_delivery_reference(&mut tx, step.id, reference).await?;
            }
            let event_type = if step.kind == "thanks" {
                names::THANKS_SENT
            } else {
                names::REMINDER_SENT
            };
            outgoing::announce_step(&mut tx, now, &step, event_type, receipt.detail).await?;
            tx.commit().await.context("recording the delivery")?;
            tracing::debug!(
                window_ms = u64::try_from(accepted.elapsed().as_millis()).unwrap_or(u64::MAX),
                "delivery recorded"
            );
            Ok(())
        }
        Err(DeliveryError::Transient(reason)) if message.retries < s.max_retries => {
            drop(tx);
            let mut tx = db.begin().await.context("starting the release transaction")?;
            steps::transition(
                &mut tx,
                step.id,
                &[StepStatus::Sending],
                StepStatus::Rendered,
                Some(&reason),
                now,
            )
            .await?;
            journal::append(
                &mut tx,
                now,
                &step.invoice_number,
                Some(step.id),
                "reminder.delivery_deferred",
                json!({ "reason": reason, "attempt": message.retries + 1 }),
            )
            .await?;
            tx.commit().await.context("releasing the step for a retry")?;
            Err(HandlerError::Transient(anyhow::anyhow!(reason)))
        }
        Err(failure) => {
            let permanent = matches!(failure, DeliveryError::Permanent(_));
            let (DeliveryError::Transient(reason) | DeliveryError::Permanent(reason)) = failure;
            steps::transition(
                &mut tx,
                step.id,
                &[StepStatus::Sending],
                StepStatus::Failed,
                Some(&reason),
                now,
            )
            .await?;
            outgoing::announce_step(
                &mut tx,
                now,
                &step,
                names::REMINDER_FAILED,
                json!({ "reason": reason, "attempts": message.retries + 1 }),
            )
            .await?;
            // An SMTP server that refused the customer's address for good: its later email
            // steps fall back to another channel (see the policy's `fallback`).
            if permanent && courier.kind() == CHANNEL && mailer::is_smtp_refusal(&reason) {
                for address in &rendered.recipients {
                    if deliveries::record_email_bounce(&mut tx, step.invoice_id, address, &reason, now)
                        .await?
                    {
                        journal::append(
                            &mut tx,
                            now,
                            &step.invoice_number,
                            Some(step.id),
                            "customer.email_bounced",
                            json!({ "reason": reason }),
                        )
                        .await?;
                    }
                }
            }
            tx.commit().await.context("recording the failure")?;
            Ok(())
        }
    }
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
        outgoing::announce_step(
            tx,
            now,
            step,
            names::REMINDER_POSTPONED,
            json!({ "reason": reason }),
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
        channel: step.channel.clone(),
    };
    outbox::enqueue(
        tx,
        &outgoing::job(names::REMINDER_DUE, job.job_id, &step.invoice_number, &job)?,
        now,
    )
    .await?;
    Ok(true)
}
