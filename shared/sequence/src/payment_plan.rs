//! What a payment plan does to its invoices' sequence, in the caller's transaction (which
//! holds the invoices `FOR UPDATE`): its notes queued when their time comes, a payment
//! allocated to its instalments in order (`payment_plan.instalment_paid`, then
//! `payment_plan.completed`), and the sweep that breaks a plan whose instalment is unpaid
//! past the grace (`payment_plan.broken`, and the invoices' own sequence resumes where it
//! stood). The rules are `relance_domain::collections::payment_plan`'s; this module sends
//! nothing itself.

use crate::{outgoing, resume};
use anyhow::Context;
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::{
    PaymentPlanBrokenV1, PaymentPlanCompletedV1, PaymentPlanInstalmentPaidV1, PlanInstalmentV1,
    ReminderCancelledV1, ReminderSkippedV1,
};
use relance_domain::collections::payment_plan::{allocate, InstalmentState, PlanStatus};
use relance_domain::collections::{InvoiceState, PauseKind};
use relance_storage::invoices::{self, InvoiceRecord};
use relance_storage::pauses;
use relance_storage::payment_plans::{self, InstalmentRecord, PlanRecord};
use relance_storage::steps::{self, StepStatus};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};

/// An amount as events write it: no trailing zeros.
fn amount_text(amount: Decimal) -> String {
    amount.normalize().to_string()
}

/// An instalment as the events state it.
pub fn instalment_v1(i: &InstalmentRecord) -> PlanInstalmentV1 {
    PlanInstalmentV1 {
        position: u32::try_from(i.position).unwrap_or(0),
        due_on: i.due_on,
        amount: amount_text(i.amount),
        paid: amount_text(i.paid),
    }
}

/// Cancels the plan's notes not gone out yet (of these instalments, or all), announcing each.
pub async fn cancel_notes(
    tx: &mut PgConnection,
    plan_id: uuid::Uuid,
    instalments: Option<&[i32]>,
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let open = [
        StepStatus::Pending,
        StepStatus::Queued,
        StepStatus::Rendered,
        StepStatus::Deferred,
    ];
    for note in payment_plans::open_notes(tx, plan_id, instalments).await? {
        outgoing::transition_and_announce(
            tx,
            now,
            &note,
            &open,
            StepStatus::Cancelled,
            &ReminderCancelledV1 {
                reason: reason.to_string(),
                was: note.status.to_string(),
                stage: None,
            },
        )
        .await?;
    }
    Ok(())
}

/// What allocating a payment did to the invoice's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanAllocation {
    /// The invoice is under no active plan.
    NoPlan,
    /// Allocated; instalments remain.
    Allocated,
    /// Every instalment is now paid: the plan is completed.
    Completed,
}

/// Allocates a payment recorded on `invoice` to its active plan's instalments, oldest
/// first: `payment_plan.instalment_paid` for each one it completes (its notes cancelled),
/// and when every instalment is paid `payment_plan.completed` on each invoice of the plan and
/// its pauses ended. `settled`: the payment settled `invoice` (whose pauses the settlement
/// ends, with its thank-you).
pub async fn allocate_payment(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    payment_id: &str,
    amount: Decimal,
    settled: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<PlanAllocation> {
    let Some(plan) = payment_plans::active_for_invoice(tx, invoice.id).await? else {
        return Ok(PlanAllocation::NoPlan);
    };
    let states: Vec<InstalmentState> = plan
        .instalments
        .iter()
        .map(|i| InstalmentState {
            amount: i.amount,
            paid: i.paid,
        })
        .collect();
    let allocation = allocate(&states, amount);
    let mut instalments = plan.instalments.clone();
    for (index, paid) in &allocation.changed {
        let Some(instalment) = instalments.get_mut(*index) else {
            continue;
        };
        instalment.paid = *paid;
        let fully = allocation.newly_paid.contains(index).then_some(now);
        payment_plans::set_paid(tx, plan.id, instalment.position, *paid, fully).await?;
    }
    let allocated: Vec<serde_json::Value> = allocation
        .changed
        .iter()
        .filter_map(|(index, paid)| {
            let i = instalments.get(*index)?;
            Some(serde_json::json!({ "position": i.position, "paid": amount_text(*paid), "amount": amount_text(i.amount) }))
        })
        .collect();
    relance_storage::journal::append(
        tx,
        now,
        &invoice.number,
        None,
        "payment_plan.payment_allocated",
        serde_json::json!({ "plan_id": plan.plan_ref, "payment_id": payment_id, "instalments": allocated }),
    )
    .await?;
    let remaining = u32::try_from(instalments.iter().filter(|i| !i.is_paid()).count()).unwrap_or(0);
    for index in &allocation.newly_paid {
        let Some(instalment) = instalments.get(*index) else {
            continue;
        };
        let reason = format!(
            "instalment {} of payment plan {} paid",
            instalment.position, plan.plan_ref
        );
        cancel_notes(tx, plan.id, Some(&[instalment.position]), &reason, now).await?;
        let detail = PaymentPlanInstalmentPaidV1 {
            plan_id: plan.plan_ref.clone(),
            instalment: instalment_v1(instalment),
            payment_id: payment_id.to_string(),
            remaining,
        };
        outgoing::announce_detail(tx, now, &invoice.number, None, &detail).await?;
    }
    if !allocation.completed {
        if settled {
            hand_notes_over(tx, &plan, invoice, now).await?;
        }
        return Ok(PlanAllocation::Allocated);
    }
    complete(tx, config, &plan, invoice, settled, now).await?;
    Ok(PlanAllocation::Completed)
}

/// The invoice carrying the plan's notes is settled while instalments remain: its notes
/// still pending go to the plan's next invoice still open (the settlement cancels what is
/// left on the settled one).
async fn hand_notes_over(
    tx: &mut PgConnection,
    plan: &PlanRecord,
    settled: &InvoiceRecord,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for (id, number) in plan.invoices.iter().filter(|(id, _)| *id != settled.id) {
        let Some(other) = invoices::lock_for_payment(tx, number).await? else {
            continue;
        };
        if other.status != InvoiceState::Open || other.balance.is_zero() {
            continue;
        }
        let moved = payment_plans::move_pending_notes(tx, plan.id, settled.id, *id, now).await?;
        if moved > 0 {
            relance_storage::journal::append(
                tx,
                now,
                number,
                None,
                "payment_plan.notes_moved",
                serde_json::json!({ "plan_id": plan.plan_ref, "from": settled.number, "notes": moved }),
            )
            .await?;
        }
        return Ok(());
    }
    Ok(())
}

/// Every instalment paid: the plan ends `completed`, announced on each of its invoices, and
/// the pauses it held end (an invoice the payment settled ends them with its settlement).
async fn complete(
    tx: &mut PgConnection,
    config: &Config,
    plan: &PlanRecord,
    paid_invoice: &InvoiceRecord,
    settled: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let reason = format!("payment plan {} completed", plan.plan_ref);
    if !payment_plans::end(tx, plan.id, PlanStatus::Completed, &reason, now).await? {
        return Ok(());
    }
    cancel_notes(tx, plan.id, None, &reason, now).await?;
    let total: Decimal = plan.instalments.iter().map(|i| i.amount).sum();
    let detail = PaymentPlanCompletedV1 {
        plan_id: plan.plan_ref.clone(),
        total: amount_text(total),
        currency: plan.currency.clone(),
    };
    for (invoice_id, number) in &plan.invoices {
        outgoing::announce_detail(tx, now, number, None, &detail).await?;
        if *invoice_id == paid_invoice.id && settled {
            continue;
        }
        let invoice = if *invoice_id == paid_invoice.id {
            Some(paid_invoice.clone())
        } else {
            invoices::lock_for_payment(tx, number).await?
        };
        if let Some(invoice) = invoice {
            end_plan_pause(tx, config, &invoice, &reason, now).await?;
        }
    }
    Ok(())
}

/// Ends the invoice's plan pause and resumes its own sequence if nothing else holds it.
async fn end_plan_pause(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let ended = pauses::end_kinds(tx, invoice.id, &[PauseKind::Plan.as_str()], reason, now).await?;
    resume::after_pauses_ended(tx, config, invoice, &ended, reason, now, now).await
}

/// The sweep: breaks the active plans with an instalment unpaid past its grace, and resumes
/// their invoices' own sequence where it stood. Returns how many plans it broke.
#[tracing::instrument(skip_all, err)]
pub async fn break_missed_plans(db: &PgPool, config: &Config) -> anyhow::Result<usize> {
    let now = config.clock.now();
    let missed = {
        let mut conn = db.acquire().await.context("acquiring a connection")?;
        payment_plans::breaking(&mut conn, now, 100).await?
    };
    let mut broken = 0;
    for (plan_id, _) in &missed {
        let mut tx = db.begin().await.context("starting the plan transaction")?;
        let Some(plan) = payment_plans::load(&mut tx, *plan_id).await? else {
            continue;
        };
        // The invoices first, in number order, as every transaction on them takes them.
        let mut numbers: Vec<&String> = plan.invoices.iter().map(|(_, n)| n).collect();
        numbers.sort();
        let mut locked = Vec::new();
        for number in numbers {
            if let Some(invoice) = invoices::lock_for_payment(&mut tx, number).await? {
                locked.push(invoice);
            }
        }
        // Read again under the locks: a payment may have come meanwhile.
        let Some(plan) = payment_plans::load(&mut tx, *plan_id).await? else {
            continue;
        };
        let Some(missed) = plan
            .instalments
            .iter()
            .find(|i| !i.is_paid() && i.breaks_at <= now)
        else {
            continue;
        };
        let open: Vec<InvoiceRecord> = locked
            .into_iter()
            .filter(|i| i.status == InvoiceState::Open)
            .collect();
        if plan.status == PlanStatus::Active && open.is_empty() {
            // Its invoices were settled or closed otherwise (a credit note, a write-off):
            // nothing is left to chase, nor to break.
            let reason = format!(
                "payment plan {} ended: its invoices are no longer chased",
                plan.plan_ref
            );
            payment_plans::end(&mut tx, plan.id, PlanStatus::Completed, &reason, now).await?;
            cancel_notes(&mut tx, plan.id, None, &reason, now).await?;
        } else if plan.status == PlanStatus::Active {
            break_plan(&mut tx, config, &plan, missed, &open, now).await?;
            broken += 1;
        }
        tx.commit()
            .await
            .context("committing the break of a payment plan")?;
    }
    Ok(broken)
}

async fn break_plan(
    tx: &mut PgConnection,
    config: &Config,
    plan: &PlanRecord,
    missed: &InstalmentRecord,
    invoices: &[InvoiceRecord],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let reason = format!(
        "instalment {} of payment plan {} ({} due on {}) unpaid {} days after its due date",
        missed.position,
        plan.plan_ref,
        amount_text(missed.amount - missed.paid),
        missed.due_on,
        plan.grace_days
    );
    if !payment_plans::end(tx, plan.id, PlanStatus::Broken, &reason, now).await? {
        return Ok(());
    }
    cancel_notes(
        tx,
        plan.id,
        None,
        &format!("payment plan {} broken", plan.plan_ref),
        now,
    )
    .await?;
    let balance: Decimal = invoices.iter().map(|i| i.balance).sum();
    let detail = PaymentPlanBrokenV1 {
        plan_id: plan.plan_ref.clone(),
        instalment: instalment_v1(missed),
        grace_days: plan.grace_days,
        balance: amount_text(balance),
        currency: plan.currency.clone(),
        reason: reason.clone(),
    };
    for invoice in invoices {
        outgoing::announce_detail(tx, now, &invoice.number, None, &detail).await?;
        end_plan_pause(tx, config, invoice, &reason, now).await?;
    }
    Ok(())
}

/// Queues the notes of active plans whose time has come. Returns how many.
#[tracing::instrument(skip_all, err)]
pub async fn emit_due_notes(db: &PgPool, config: &Config) -> anyhow::Result<usize> {
    let now = config.clock.now();
    let due = {
        let mut conn = db.acquire().await.context("acquiring a connection")?;
        payment_plans::due_notes(&mut conn, now, 100).await?
    };
    let mut queued = 0;
    for note in &due {
        let mut tx = db.begin().await.context("starting the plan note transaction")?;
        let Some(invoice) = invoices::lock_for_payment(&mut tx, &note.invoice_number).await? else {
            continue;
        };
        // A dispute (or a suspension) holds the plan's notes too: nobody is asked to pay an
        // instalment of an invoice under dispute. The note is skipped, not held.
        let held_by = pauses::active(&mut tx, invoice.id)
            .await?
            .into_iter()
            .find(|p| p.kind != PauseKind::Plan);
        if let Some(pause) = held_by {
            let skipped = ReminderSkippedV1 {
                reason: format!("the invoice is paused ({})", pause.kind),
            };
            outgoing::transition_and_announce(
                &mut tx,
                now,
                note,
                &[StepStatus::Pending],
                StepStatus::Skipped,
                &skipped,
            )
            .await?;
            tx.commit().await.context("committing a skipped plan note")?;
            continue;
        }
        let local_day = now.with_timezone(&invoice.timezone).date_naive();
        if steps::mark_queued(&mut tx, note.id, now, local_day).await? {
            crate::queue_step(
                &mut tx,
                note.id,
                &note.invoice_number,
                &note.name,
                note.channel.as_str(),
                now,
            )
            .await?;
            queued += 1;
        }
        tx.commit().await.context("committing a plan note")?;
    }
    Ok(queued)
}
