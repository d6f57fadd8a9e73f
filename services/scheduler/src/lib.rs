//! The scheduler: takes in issued invoices and plans their steps from the policy, then finds
//! the steps whose time has come and emits `reminder.due` jobs. Several copies may run:
//! invoices are claimed with `FOR UPDATE SKIP LOCKED`, so a step is emitted once.
//! It renders and sends nothing.

pub mod calls;
pub mod grouping;
pub mod planning;

use anyhow::Context;
use base64::Engine;
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_config::InterruptedDelivery;
use relance_contracts::names::{self, Names};
use relance_contracts::{
    ExcludedStepV1, FieldWarningV1, InterruptedAmbiguousV1, InvoiceDuplicateV1, InvoiceIssuedV1,
    InvoiceRegisteredV1, InvoiceRejectedV1, PlannedStepV1, RecoveredSentV1, RegisteredDifferenceV1,
    ReminderAmbiguousV1, ReminderCancelledV1, ReminderPostponedV1, ReminderRenderedV1, ReminderSentV1,
    ReminderSkippedV1, VERSION_1,
};
use relance_domain::collections::InvoiceState;
use relance_domain::plan::{next_day_in_window, send_decision, SendDecision};
use relance_domain::repeats;
use relance_domain::validation::input::InvoiceFields;
use relance_domain::{
    calendar_for_customer, triage_pending, validate_invoice, NewInvoice, Rejection, StepCandidate, StepKind,
};
use relance_messaging::{HandlerError, Incoming, Readiness};
use relance_sequence::{outgoing, queue_step, resume};
use relance_storage::steps::{self, StepStatus};
use relance_storage::{customers, invoices, journal, mark_processed, outbox};
use serde_json::json;
use sqlx::PgPool;
use std::collections::HashSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub mod handoff;

pub const SERVICE: &str = "scheduler";
const INBOX: &str = "scheduler.invoice_issued";

/// Runs the scheduler until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_readiness(config, Readiness::default(), shutdown).await
}

pub async fn run_with_readiness(
    config: Config,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let s = &config.settings;
    // A database not yet up (or full) at start is waited out, as the broker is.
    let Some(db) = relance_storage::connect_at_start(
        SERVICE,
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
    let intake = relance_messaging::run_queue_worker(
        SERVICE,
        &config,
        &db,
        Names::invoices_queue,
        readiness,
        shutdown.clone(),
        move |message| {
            let (db, config) = (handler_db.clone(), handler_config.clone());
            async move {
                match message.routing_key.as_str() {
                    names::CUSTOMER_UPDATED => planning::take_in_customer(&db, &config, message).await,
                    _ => take_in_invoice(&db, &config, message).await,
                }
            }
        },
    );
    // The ticks need only the database: they go on while the broker is away.
    tokio::try_join!(
        intake,
        tick_loop(&db, &config, shutdown.clone()),
        retention_loop(&db, &config, shutdown)
    )?;
    Ok(())
}

/// Removes published outbox rows and inbox records past their retention, every
/// `RELANCE_RETENTION_INTERVAL_MS`; one scheduler copy at a time does it (see
/// [`relance_storage::retention`]).
async fn retention_loop(db: &PgPool, config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let retention = &config.settings.retention;
    loop {
        if let Err(e) = purge_expired(db, config).await {
            // The database may be restarting: log and try again at the next pass.
            tracing::error!(
                error = format!("{e:#}"),
                "removing expired outbox and inbox rows failed"
            );
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(retention.interval) => {}
        }
    }
}

/// One retention pass, at the clock's current time.
pub async fn purge_expired(
    db: &PgPool,
    config: &Config,
) -> anyhow::Result<relance_storage::retention::Purged> {
    let (now, retention) = (config.clock.now(), &config.settings.retention);
    let age = |window: std::time::Duration| {
        chrono::Duration::from_std(window).context("a retention window out of range")
    };
    let purged = relance_storage::retention::purge(
        db,
        now - age(retention.outbox)?,
        now - age(retention.inbox)?,
        retention.batch,
    )
    .await?;
    if purged.outbox > 0 || purged.inbox > 0 {
        tracing::info!(
            outbox = purged.outbox,
            inbox = purged.inbox,
            "expired rows removed"
        );
    }
    Ok(purged)
}

async fn tick_loop(db: &PgPool, config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    loop {
        // Before emitting: a broken promise's steps are re-dated first, never caught up.
        if let Err(e) = resume::end_broken_promises(db, config).await {
            tracing::error!(error = format!("{e:#}"), "ending broken promises failed");
        }
        if let Err(e) = emit_due_steps(db, config).await {
            // The database may be restarting: log and try again at the next tick.
            tracing::error!(error = format!("{e:#}"), "emitting due steps failed");
        }
        if let Err(e) = recover_expired_leases(db, config).await {
            tracing::error!(error = format!("{e:#}"), "recovering expired leases failed");
        }
        let (now, s) = (config.clock.now(), &config.settings);
        let terms = s.channels.interest_terms();
        if let Err(e) = handoff::hand_off_due(db, now, handoff_delay(s), s.scheduler_batch, &terms).await {
            tracing::error!(error = format!("{e:#}"), "handing off invoices failed");
        }
        if let Err(e) = grouping::settle_groups(db, config).await {
            tracing::error!(error = format!("{e:#}"), "settling grouped steps failed");
        }
        if let Err(e) = calls::expire_call_tasks(db, config).await {
            tracing::error!(error = format!("{e:#}"), "expiring call tasks failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(config.settings.scheduler_interval) => {}
        }
    }
}

/// Emits every step that is due now, batch after batch. Returns how many invoices it handled.
pub async fn emit_due_steps(db: &PgPool, config: &Config) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let handled = emit_batch(db, config).await?;
        total += handled;
        if handled < usize::try_from(config.settings.scheduler_batch).unwrap_or(usize::MAX) {
            return Ok(total);
        }
    }
}

#[tracing::instrument(skip_all, err)]
async fn emit_batch(db: &PgPool, config: &Config) -> anyhow::Result<usize> {
    let now = config.clock.now();
    let mut tx = db.begin().await.context("starting the scheduling transaction")?;
    let mut claimed = steps::claim_due_invoices(&mut tx, now, config.settings.scheduler_batch).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    // A customer's oldest overdue invoice first: its reminder leads the grouped message.
    claimed.sort_by(|a, b| (&a.customer_id, a.due_on, &a.number).cmp(&(&b.customer_id, b.due_on, &b.number)));
    let (mut grouped_steps, mut grouped_invoices) = (HashSet::new(), HashSet::new());
    let ids: Vec<Uuid> = claimed.iter().map(|i| i.id).collect();
    let pending = steps::pending_steps(&mut tx, &ids).await?;
    let emitted_days = steps::emission_days(&mut tx, &ids).await?;
    for invoice in &claimed {
        let tz = invoice.timezone;
        let calendar = calendar_for_customer(&invoice.country, invoice.region.as_deref());
        let risk = invoice.risk;
        // The window of a step: its own in the customer's segment (re-planning keeps pending
        // steps in that segment), else the policy's default.
        let window_of = |step: &steps::StepRecord| config.policy.step_window(risk, &step.name);
        let today = now.with_timezone(&tz).date_naive();
        let mine: Vec<&steps::StepRecord> = pending
            .iter()
            .filter(|s| s.invoice_id == invoice.id && !grouped_steps.contains(&s.id))
            .collect();
        let candidates: Vec<StepCandidate> = mine
            .iter()
            .map(|s| StepCandidate {
                id: s.id,
                position: s.position,
                due_at: s.due_at,
            })
            .collect();
        let emitted_today = grouped_invoices.contains(&invoice.id)
            || emitted_days
                .iter()
                .any(|(id, day)| *id == invoice.id && *day == today);
        let triage = triage_pending(&candidates, now, emitted_today);
        for step in mine.iter().filter(|s| triage.skip.contains(&s.id)) {
            let reason = if step.due_at <= now {
                "overtaken by a later step that is also due (catch-up)"
            } else {
                "overtaken by a later step (the sequence only moves forward)"
            };
            outgoing::transition_and_announce(
                &mut tx,
                now,
                step,
                &[StepStatus::Pending],
                StepStatus::Skipped,
                &ReminderSkippedV1 {
                    reason: reason.to_string(),
                },
            )
            .await?;
        }
        if let Some(step) = mine.iter().find(|s| Some(s.id) == triage.postpone) {
            let to = next_day_in_window(&config.policy, &window_of(step), calendar.as_ref(), tz, now);
            steps::postpone(&mut tx, step.id, to, now).await?;
            outgoing::announce_step_detail(
                &mut tx,
                now,
                step,
                &ReminderPostponedV1 {
                    reason: "a reminder for this invoice already went out today".to_string(),
                    until: Some(Some(to)),
                    calendar: None,
                },
            )
            .await?;
        }
        if let Some(step) = mine.iter().find(|s| Some(s.id) == triage.emit) {
            if let SendDecision::WaitUntil(to) =
                send_decision(&window_of(step), calendar.as_ref(), tz, step.due_at, now)
            {
                steps::postpone(&mut tx, step.id, to, now).await?;
                outgoing::announce_step_detail(
                    &mut tx,
                    now,
                    step,
                    &ReminderPostponedV1 {
                        reason: "outside its send window".to_string(),
                        until: Some(Some(to)),
                        calendar: Some(calendar.name().to_string()),
                    },
                )
                .await?;
            } else if steps::mark_queued(&mut tx, step.id, now, today).await? {
                let lead = grouping::LeadStep {
                    step,
                    customer_id: &invoice.customer_id,
                    due_on: invoice.due_on,
                    currency: &invoice.currency,
                };
                let (joined_steps, joined_invoices) =
                    grouping::gather(&mut tx, config, &lead, tz, today, now).await?;
                grouped_steps.extend(joined_steps);
                grouped_invoices.extend(joined_invoices);
                queue_step(
                    &mut tx,
                    step.id,
                    &step.invoice_number,
                    &step.name,
                    step.channel.as_str(),
                    now,
                )
                .await?;
            }
        }
    }
    tx.commit()
        .await
        .context("committing the scheduling transaction")?;
    Ok(claimed.len())
}

/// Handles `invoice.issued`: validate, store, plan. Applied once per `event_id`; a message
/// for an invoice number already registered changes nothing (see [`note_duplicate`]).
#[tracing::instrument(skip_all, fields(message_id = ?message.message_id), err)]
pub async fn take_in_invoice(db: &PgPool, config: &Config, message: Incoming) -> Result<(), HandlerError> {
    let event: InvoiceIssuedV1 = message.json()?;
    let now = config.clock.now();
    let inv = &event.invoice;
    let validated = validate_issued(&event);
    let mut tx = db.begin().await.context("starting the intake transaction")?;
    if !mark_processed(&mut tx, INBOX, &event.event_id, now).await? {
        tracing::info!("duplicate invoice.issued ignored");
        drop(tx);
        let mut tx = db.begin().await.context("starting the duplicate note")?;
        journal::append(
            &mut tx,
            now,
            &inv.number,
            None,
            "invoice.duplicate",
            json!({ "event_id": event.event_id }),
        )
        .await?;
        tx.commit().await.context("committing the duplicate note")?;
        return Ok(());
    }
    let invoice = match validated {
        Ok(invoice) => invoice,
        Err(rejection) => {
            let detail = InvoiceRejectedV1 {
                field: rejection.field.clone(),
                reason: rejection.reason.clone(),
                event_id: event.event_id.clone(),
            };
            outgoing::announce_detail(&mut tx, now, &inv.number, None, &detail).await?;
            tx.commit().await.context("committing the rejection")?;
            return Err(HandlerError::Permanent(format!(
                "invoice {} refused: {rejection}",
                inv.number
            )));
        }
    };
    let facts = repeats::invoice_facts(&invoice);
    // Before the customer is touched: a repeat of a known number changes nothing.
    if let Some(registered) = invoices::registered_facts(&mut tx, &invoice.number).await? {
        note_duplicate(
            &mut tx,
            &invoice.number,
            &event.event_id,
            &registered,
            &facts,
            now,
        )
        .await?;
        tx.commit().await.context("committing the duplicate note")?;
        return Ok(());
    }
    let previous = customers::lock(&mut tx, &invoice.customer.id).await?;
    customers::save(&mut tx, &invoice.customer, event.occurred_at, now).await?;
    let Some(invoice_id) = invoices::insert_invoice(&mut tx, &invoice, &facts, now).await? else {
        // Another message registered this number meanwhile: roll back (the customer's details
        // too) and try again, when it is seen as the duplicate it is.
        return Err(HandlerError::Transient(anyhow::anyhow!(
            "invoice {} was registered concurrently",
            invoice.number
        )));
    };
    // The stored details: those of this message, or of a newer one already applied.
    let current = planning::stored(&mut tx, &invoice.customer.id).await?;
    let customer = planning::Planning::of(&current)?;
    let plan = customer.plan(
        config,
        invoice.amount.amount,
        invoice.amount.currency.code(),
        invoice.due_on,
    )?;
    let mut planned = Vec::new();
    for step in &plan.steps {
        steps::insert_planned(
            &mut tx,
            invoice_id,
            StepKind::Reminder,
            step,
            StepStatus::Pending,
            now,
        )
        .await?;
        planned.push(PlannedStepV1 {
            step: step.name.clone(),
            channel: step.channel.as_str().to_string(),
            due_at: step.due_at,
        });
    }
    if let Some(reason) = &plan.not_chased {
        journal::append(
            &mut tx,
            now,
            &invoice.number,
            None,
            "invoice.not_chased",
            json!({ "reason": reason }),
        )
        .await?;
    }
    let excluded: Vec<_> = plan
        .excluded
        .iter()
        .map(|e| ExcludedStepV1 {
            step: e.name.clone(),
            reason: e.reason.clone(),
        })
        .collect();
    let detail = InvoiceRegisteredV1 {
        event_id: event.event_id.clone(),
        risk: current.risk.to_string(),
        calendar: customer.calendar.name().to_string(),
        plan: planned,
        excluded: (!excluded.is_empty()).then_some(excluded),
        not_chased: plan.not_chased.clone(),
        warnings: (!invoice.customer.dropped.is_empty()).then(|| dropped_fields(&invoice.customer.dropped)),
    };
    outgoing::announce_detail(&mut tx, now, &invoice.number, None, &detail).await?;
    if let Some(previous) = previous {
        planning::replan_customer(
            &mut tx,
            config,
            &invoice.customer.id,
            &previous,
            &current,
            names::INVOICE_ISSUED,
            Some(invoice_id),
            now,
        )
        .await?;
    }
    tx.commit().await.context("committing the invoice")?;
    Ok(())
}

/// The wire fields of an `invoice.issued`, validated (the PDF decoded first).
fn validate_issued(event: &InvoiceIssuedV1) -> Result<NewInvoice, Rejection> {
    let inv = &event.invoice;
    let (pdf, pdf_error) = match &inv.pdf_base64 {
        None => (None, None),
        Some(b64) => match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
            Ok(bytes) if bytes.starts_with(b"%PDF") => (Some(bytes), None),
            Ok(_) => (
                None,
                Some("is not a PDF document (it does not start with %PDF)".to_string()),
            ),
            Err(e) => (None, Some(format!("is not valid base64: {e}"))),
        },
    };
    let c = &inv.customer;
    validate_invoice(InvoiceFields {
        number: &inv.number,
        amount: &inv.amount,
        currency: &inv.currency,
        issued_on: inv.issued_on,
        due_on: inv.due_on,
        payment_link: inv.payment_link.as_deref(),
        pdf,
        pdf_error,
        customer: planning::customer_fields(c),
    })
}

/// An `invoice.issued` under a new event id for a number already registered: nothing
/// changes (neither the invoice nor its customer: details change through
/// `customer.updated`). Journaled and announced as `invoice.duplicate`, with `conflict` and
/// the fields that differ from the message that registered it.
async fn note_duplicate(
    tx: &mut sqlx::PgConnection,
    number: &str,
    event_id: &str,
    registered: &repeats::Facts,
    received: &repeats::Facts,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let differences = repeats::differences(registered, received);
    if differences.is_empty() {
        tracing::info!("invoice number already registered; message ignored");
    } else {
        tracing::warn!("invoice number already registered with other facts; message ignored");
    }
    let detail = InvoiceDuplicateV1 {
        event_id: event_id.to_string(),
        conflict: !differences.is_empty(),
        differences: differences
            .iter()
            .map(|d| RegisteredDifferenceV1 {
                field: d.field.clone(),
                registered: d.applied.clone(),
                received: d.received.clone(),
            })
            .collect(),
    };
    outgoing::announce_detail(tx, now, number, None, &detail).await
}

/// Fields dropped at intake, as `warnings` in the journal and events.
pub fn dropped_fields(dropped: &[relance_domain::DroppedField]) -> Vec<FieldWarningV1> {
    dropped
        .iter()
        .map(|d| FieldWarningV1 {
            field: d.field.to_string(),
            reason: d.reason.to_string(),
        })
        .collect()
}

/// The sweep: a step left in flight past its lease (a job lost, a worker that died) is
/// handed out again; one left in `sending` is settled by how far its delivery got (see
/// [`settle_interrupted`]).
/// An open call task (`awaiting_outcome`) is not in flight: it waits for a person, and ends
/// by its outcome, a payment or closure, or its expiry (`calls::expire_call_tasks`).
#[tracing::instrument(skip_all, err)]
pub async fn recover_expired_leases(db: &PgPool, config: &Config) -> anyhow::Result<usize> {
    let now = config.clock.now();
    let mut tx = db.begin().await.context("starting the sweep transaction")?;
    let expired = steps::claim_expired_leases(&mut tx, config.settings.lease, 100).await?;
    for step in &expired {
        match (step.status, config.settings.interrupted_delivery) {
            (StepStatus::Queued, _) => {
                steps::renew_lease(&mut tx, step.id).await?;
                queue_step(
                    &mut tx,
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
                steps::renew_lease(&mut tx, step.id).await?;
                queue_delivery(&mut tx, step, now).await?;
            }
            (_, policy) => settle_interrupted(&mut tx, step, policy, now).await?,
        }
    }
    tx.commit().await.context("committing the sweep")?;
    Ok(expired.len())
}

/// A delivery whose sender stopped (its lease ran out while the step was `sending`), settled
/// by the stage it recorded:
/// - before the end of DATA (claimed, connected, envelope accepted): nothing went out. A
///   reminder whose invoice was paid or closed meanwhile is cancelled; anything else goes
///   back to `rendered` and is delivered again, with the same Message-ID.
/// - answered: the provider took it; the step is sent (`reminder.sent`, `recovered`).
/// - end of DATA sent, no answer recorded: ambiguous. `reminder.ambiguous` is announced and,
///   by `policy`, the step ends `ambiguous` (report) or is delivered again (resend).
async fn settle_interrupted(
    tx: &mut sqlx::PgConnection,
    step: &steps::StepRecord,
    policy: InterruptedDelivery,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let Some(state) = steps::lock_delivery(tx, step.id).await? else {
        return Ok(());
    };
    let stage = state
        .stage()
        .with_context(|| format!("reading the delivery stage of step {}", step.id))?;
    let message_id = steps::find_rendered(tx, step.id).await?.map(|r| r.message_id);
    let stop_requested = outgoing::stop_requested(&state);
    if stage == steps::DeliveryStage::Answered {
        let sent = ReminderSentV1::Recovered(RecoveredSentV1 {
            recovered: "the sender stopped after the provider accepted the message".to_string(),
            stage: stage.as_str().to_string(),
            message_id,
            response: state.delivery_proof.clone(),
            stop_requested,
        });
        let thanks = step.kind == StepKind::Thanks;
        if steps::transition(tx, step.id, &[StepStatus::Sending], StepStatus::Sent, None, now).await? {
            outgoing::announce_sent(tx, now, step, thanks, sent).await?;
        }
        return Ok(());
    }
    if stage.may_have_reached_provider() {
        let reason = "delivery interrupted after the end of DATA was sent: it may or may not have reached the customer";
        let (policy_name, to) = match policy {
            InterruptedDelivery::Report => ("report", StepStatus::Ambiguous),
            InterruptedDelivery::Resend => ("resend", StepStatus::Rendered),
        };
        let detail = ReminderAmbiguousV1::Interrupted(InterruptedAmbiguousV1 {
            reason: reason.to_string(),
            stage: stage.as_str().to_string(),
            message_id,
            policy: policy_name.to_string(),
            stop_requested,
        });
        if steps::transition(tx, step.id, &[StepStatus::Sending], to, Some(reason), now).await? {
            outgoing::announce_step_detail(tx, now, step, &detail).await?;
            if to == StepStatus::Rendered {
                queue_delivery(tx, step, now).await?;
            }
        }
        return Ok(());
    }
    let invoice_open = invoices::hold_for_delivery(tx, step.invoice_id).await? == Some(InvoiceState::Open);
    if step.kind != StepKind::Thanks && (state.stop_requested_at.is_some() || !invoice_open) {
        let reason = state.stop_reason.as_deref().unwrap_or("invoice settled");
        let reason =
            format!("{reason} before sending (the interrupted delivery had not sent the end of DATA)");
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
        return Ok(());
    }
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
async fn queue_delivery(
    tx: &mut sqlx::PgConnection,
    step: &steps::StepRecord,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let job = ReminderRenderedV1 {
        version: VERSION_1,
        job_id: Uuid::new_v4(),
        step_id: step.id,
        invoice_number: step.invoice_number.clone(),
        step: step.name.clone(),
        channel: step.channel.to_string(),
    };
    let key = names::reminder_rendered(step.channel.sender_kind());
    outbox::enqueue(
        tx,
        &outgoing::job(&key, job.job_id, &step.invoice_number, &job)?,
        now,
    )
    .await?;
    journal::append(
        tx,
        now,
        &step.invoice_number,
        Some(step.id),
        "reminder.requeued",
        json!({ "stage": "send" }),
    )
    .await
}

/// The hand-off delay the settings give.
fn handoff_delay(s: &relance_config::Settings) -> relance_storage::handoff::HandOffDelay {
    relance_storage::handoff::HandOffDelay {
        after_days: s.handoff_after_days,
        postal_days: s.postal_delivery_days,
    }
}
