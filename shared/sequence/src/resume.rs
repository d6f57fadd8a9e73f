//! Resuming a paused sequence: the steps held back by a pause are re-dated when it ends (see
//! `relance_domain::collections::pause`), so the sequence goes on at the step it had reached,
//! each step in its send window on the customer's calendar.
//! Also the sweep that ends promises to pay whose time is up. Callers hold the invoice
//! `FOR UPDATE`; this module plans dates, it sends nothing.

use crate::outgoing;
use anyhow::Context;
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::{InvoiceResumedV1, ReminderPostponedV1, ReminderSkippedV1};
use relance_domain::calendar_for_customer;
use relance_domain::collections::{redate_after_pause, InvoiceState, PausedStep, Redate, Resumption};
use relance_storage::invoices::{self, InvoiceRecord};
use relance_storage::journal;
use relance_storage::pauses::{self, PauseRecord};
use relance_storage::steps::{self, StepStatus};
use serde_json::json;
use sqlx::{PgConnection, PgPool};

/// Journals the end of each pause (the journal keeps why each one ended).
pub async fn journal_ended(
    tx: &mut PgConnection,
    invoice_number: &str,
    ended: &[PauseRecord],
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for pause in ended {
        journal::append(
            tx,
            now,
            invoice_number,
            None,
            "pause.ended",
            json!({ "kind": pause.kind, "reason": reason, "started_at": pause.started_at, "event_id": pause.event_id }),
        )
        .await?;
    }
    Ok(())
}

/// The pauses ended, and if none is left, re-dates the held-back steps from `resume_at` and
/// announces `invoice.resumed`. Returns whether the sequence resumed.
pub async fn after_pauses_ended(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    ended: &[PauseRecord],
    reason: &str,
    resume_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    journal_ended(tx, &invoice.number, ended, reason, now).await?;
    if ended.is_empty()
        || invoice.status != InvoiceState::Open
        || !pauses::active(tx, invoice.id).await?.is_empty()
    {
        return Ok(false);
    }
    let tz = invoice.timezone;
    let calendar = calendar_for_customer(&invoice.country, invoice.region.as_deref());
    let risk = invoice.risk;
    let policy = config.policy_for(invoice.policy.as_deref());
    let pending = pauses::pending_reminders(tx, invoice.id).await?;
    // Each step goes back into its own send window, as when it was planned and as the
    // scheduler checks when it sends it.
    let held: Vec<PausedStep> = pending
        .iter()
        .map(|s| PausedStep {
            id: s.id,
            position: s.position,
            due_at: s.due_at,
            window: policy.step_window(risk, &s.name),
        })
        .collect();
    let resumption = Resumption {
        due_on: invoice.due_on,
        resume_at,
        tz,
        calendar: calendar.as_ref(),
        send_time: policy.send_time,
    };
    let plan = redate_after_pause(&held, &resumption);
    let mut next: Option<(String, DateTime<Utc>)> = None;
    for step in &pending {
        let change = plan.iter().find(|r| match r {
            Redate::Move { id, .. } | Redate::Skip { id, .. } => *id == step.id,
        });
        match change {
            Some(Redate::Skip { reason, .. }) => {
                outgoing::transition_and_announce(
                    tx,
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
            Some(Redate::Move { to, .. }) => {
                steps::postpone(tx, step.id, *to, now).await?;
                outgoing::announce_step_detail(
                    tx,
                    now,
                    step,
                    &ReminderPostponedV1 {
                        reason: "the sequence resumes after a pause".to_string(),
                        until: Some(Some(*to)),
                        calendar: None,
                    },
                )
                .await?;
                next = next.or(Some((step.name.clone(), *to)));
            }
            None => next = next.or(Some((step.name.clone(), step.due_at))),
        }
    }
    let kinds: Vec<&str> = ended.iter().map(|p| p.kind.as_str()).collect();
    let (next_step, next_at) = next.unzip();
    outgoing::announce_detail(
        tx,
        now,
        &invoice.number,
        None,
        &InvoiceResumedV1 {
            reason: reason.to_string(),
            pauses: kinds.iter().map(ToString::to_string).collect(),
            next_step,
            next_at,
        },
    )
    .await?;
    Ok(true)
}

/// The sweep: ends the promises to pay whose grace days are over, and resumes their
/// invoices from the end of the promise (not from when the sweep ran). Returns how many.
#[tracing::instrument(skip_all, err)]
pub async fn end_broken_promises(db: &PgPool, config: &Config) -> anyhow::Result<usize> {
    let now = config.clock.now();
    let expired = {
        let mut conn = db.acquire().await.context("acquiring a connection")?;
        pauses::expired(&mut conn, now, 100).await?
    };
    for (pause_id, number) in &expired {
        let mut tx = db.begin().await.context("starting the promise transaction")?;
        let Some(invoice) = invoices::lock_for_payment(&mut tx, number).await? else {
            continue;
        };
        // Ended meanwhile (paid, replaced by a new promise): nothing to do.
        let Some(pause) = pauses::find(&mut tx, *pause_id).await? else {
            continue;
        };
        let (promised_on, until) = (pause.promised_on, pause.until.unwrap_or(now));
        let reason = match promised_on {
            Some(day) => format!("promise to pay by {day} not kept"),
            None => "pause over".to_string(),
        };
        if pauses::end(&mut tx, pause.id, &reason, now).await? {
            after_pauses_ended(&mut tx, config, &invoice, &[pause], &reason, until, now).await?;
        }
        tx.commit().await.context("committing the end of a promise")?;
    }
    Ok(expired.len())
}
