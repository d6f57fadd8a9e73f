//! The scheduler: every job that moves an invoice's sequence forward on its own, by time or
//! by an inbound invoice or customer. Several copies may run: invoices are claimed with
//! `FOR UPDATE SKIP LOCKED`, so a step is emitted once. It renders and sends nothing.
//! Its jobs, one module each:
//! - intake of `invoice.issued` (validate, store, plan): [`intake`];
//! - planning, and re-planning on `customer.updated`: [`planning`];
//! - creditors given as data, `creditor.updated`: [`creditors`];
//! - resuming the steps held back by a broken promise: `relance_sequence::resume`;
//! - emission of due steps as `reminder.due` jobs: [`emission`];
//! - grouping a customer's reminders into one message, and settling the members: [`grouping`];
//! - lease recovery, and settling interrupted deliveries: [`sweep`];
//! - hand-off of invoices past their last step: [`handoff`];
//! - expiry of call tasks left without an outcome: [`calls`];
//! - retention of the outbox and inbox: [`retention`].
//!
//! This file holds only the wiring: the queue worker and the tick loop that runs the jobs.

pub mod approvals;
pub mod calls;
pub mod creditors;
pub mod emission;
mod gauges;
pub mod grouping;
pub mod handoff;
pub mod intake;
pub mod planning;
pub mod retention;
pub mod sweep;

pub use emission::emit_due_steps;
pub use intake::take_in_invoice;
pub use retention::purge_expired;
pub use sweep::recover_expired_leases;

use relance_config::Config;
use relance_contracts::names::{self, Names};
use relance_messaging::Readiness;
use relance_sequence::resume;
use relance_telemetry::liveness::Heartbeat;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub const SERVICE: &str = "scheduler";

/// Runs the scheduler until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_readiness(config, Readiness::default(), shutdown).await
}

pub async fn run_with_readiness(
    config: Config,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(db) = relance_messaging::worker::connect_database(SERVICE, &config, &shutdown).await? else {
        return Ok(());
    };
    let pass_beat = readiness.loops().register("scheduler pass");
    let intake = relance_messaging::run_queue_worker(
        SERVICE,
        &config,
        &db,
        Names::invoices_queue,
        readiness,
        shutdown.clone(),
        relance_messaging::worker::with_db_and_config(&db, &config, |db, config, message| async move {
            match message.routing_key.as_str() {
                names::CUSTOMER_UPDATED => planning::take_in_customer(&db, &config, message).await,
                names::CREDITOR_UPDATED => creditors::take_in_creditor(&db, &config, message).await,
                _ => intake::take_in_invoice(&db, &config, message).await,
            }
        }),
    );
    // The ticks need only the database: they go on while the broker is away.
    tokio::try_join!(
        intake,
        tick_loop(&db, &config, pass_beat, shutdown.clone()),
        gauges::gauges_loop(&config, shutdown.clone()),
        retention::retention_loop(&db, &config, shutdown)
    )?;
    Ok(())
}

/// Runs the timed jobs, one pass every `RELANCE_SCHEDULER_INTERVAL_MS`, until `shutdown`. A
/// job that fails (the database restarting) is logged and tried again at the next pass.
/// A pass that completed without error beats `heartbeat` (the health server reports a pass
/// stuck or failing for longer than `RELANCE_LOOP_STALL_MS`).
async fn tick_loop(
    db: &PgPool,
    config: &Config,
    heartbeat: Heartbeat,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Hand-offs are counted in days: their sweep runs every `RELANCE_HANDOFF_INTERVAL_MS`,
    // not at every pass (the first pass does it).
    let mut last_handoff: Option<tokio::time::Instant> = None;
    loop {
        // The pass is a trace of its own; each reminder it emits starts another, linked to it.
        let span = tracing::info_span!("scheduler pass", steps_claimed = tracing::field::Empty);
        if pass(db, config, &mut last_handoff).instrument(span).await {
            heartbeat.beat();
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(config.settings.scheduler_interval) => {}
        }
    }
}

/// One scheduler pass; returns whether it completed (emission without error).
async fn pass(db: &PgPool, config: &Config, last_handoff: &mut Option<tokio::time::Instant>) -> bool {
    let started = std::time::Instant::now();
    let mut completed = true;
    // Before emitting: a broken promise's steps are re-dated first, never caught up.
    if let Err(e) = resume::end_broken_promises(db, config).await {
        completed = false;
        tracing::error!(error = format!("{e:#}"), "ending broken promises failed");
    }
    // A payment plan missed beyond its grace is broken before emitting, so that the
    // invoice's own sequence resumes re-dated, never caught up; then the plans' own notes.
    if let Err(e) = relance_sequence::payment_plan::break_missed_plans(db, config).await {
        completed = false;
        tracing::error!(error = format!("{e:#}"), "breaking missed payment plans failed");
    }
    if let Err(e) = relance_sequence::payment_plan::emit_due_notes(db, config).await {
        completed = false;
        tracing::error!(error = format!("{e:#}"), "emitting payment plan notes failed");
    }
    let claimed = match emission::emit_due_steps(db, config).await {
        Ok(claimed) => claimed,
        Err(e) => {
            completed = false;
            tracing::error!(error = format!("{e:#}"), "emitting due steps failed");
            0
        }
    };
    if let Err(e) = sweep::recover_expired_leases(db, config).await {
        tracing::error!(error = format!("{e:#}"), "recovering expired leases failed");
    }
    let (now, s) = (config.clock.now(), &config.settings);
    if last_handoff.is_none_or(|at| at.elapsed() >= s.handoff_interval) {
        *last_handoff = Some(tokio::time::Instant::now());
        let terms = s.channels.interest_terms();
        let approvals = Some(config);
        if let Err(e) =
            handoff::hand_off_due_with(db, now, handoff_delay(s), s.scheduler_batch, &terms, approvals).await
        {
            tracing::error!(error = format!("{e:#}"), "handing off invoices failed");
        }
    }
    if let Err(e) = grouping::settle_groups(db, config).await {
        tracing::error!(error = format!("{e:#}"), "settling grouped steps failed");
    }
    if let Err(e) = calls::expire_call_tasks(db, config).await {
        tracing::error!(error = format!("{e:#}"), "expiring call tasks failed");
    }
    if let Err(e) = approvals::expire_approvals(db, config).await {
        tracing::error!(error = format!("{e:#}"), "expiring approval requests failed");
    }
    relance_telemetry::metrics::record_scheduler_pass(started.elapsed(), claimed);
    tracing::Span::current().record("steps_claimed", claimed);
    completed
}

/// The hand-off delay the settings give.
fn handoff_delay(s: &relance_config::Settings) -> relance_storage::handoff::HandOffDelay {
    relance_storage::handoff::HandOffDelay {
        after_days: s.handoff_after_days,
        postal_days: s.postal_delivery_days,
    }
}
