//! Payment plans (`payment_plan.agreed`): validated on its own fields, then, under the locks
//! of every invoice it covers, against them (one customer, its currency, open, under no other
//! plan, the instalments summing to their balance, the first not before the customer's
//! today). Applied once: each invoice paused (kind `plan`: its own reminders held, a promise
//! replaced), `payment_plan.agreed` announced on each, and the plan's own notes planned on
//! its first invoice. Payments are allocated to the instalments by `payments`, and a missed
//! instalment breaks the plan in the scheduler's sweep (`relance_sequence::payment_plan`).

use crate::inbound::{begin, refused};
use crate::sequence_effects::pause;
use anyhow::Context;
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::{names, PaymentPlanAgreedDetailV1, PaymentPlanAgreedV1, PlanInstalmentV1};
use relance_domain::collections::payment_plan::{
    breaks_at, check_plan_against, plan_notes, validate_payment_plan, NewPaymentPlan, PaymentPlanFields,
    PlanInvoice,
};
use relance_domain::collections::PauseKind;
use relance_domain::plan::PlannedStep;
use relance_domain::{Channel, Rejection, Tone};
use relance_messaging::{HandlerError, Incoming};
use relance_sequence::resume;
use relance_storage::invoices::{self, InvoiceRecord};
use relance_storage::pauses::{self, NewPause};
use relance_storage::payment_plans::{self, NewPlanRow};
use relance_storage::PgConnection;
use sqlx::PgPool;

const WHAT: &str = "payment plan";

/// The message validated on its own fields, without I/O: the CLI calls it too.
pub fn payment_plan(m: &PaymentPlanAgreedV1) -> Result<NewPaymentPlan, Rejection> {
    let p = &m.plan;
    let instalments: Vec<(Option<chrono::NaiveDate>, &str)> = p
        .instalments
        .iter()
        .map(|i| (i.due_on, i.amount.as_str()))
        .collect();
    validate_payment_plan(PaymentPlanFields {
        id: &p.id,
        customer_id: &p.customer_id,
        invoice_numbers: &p.invoice_numbers,
        instalments: &instalments,
        currency: &p.currency,
        note: p.note.as_deref(),
    })
}

fn refuse_plan(plan_ref: &str, reason: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(format!("{WHAT} {plan_ref} refused: {reason}"))
}

/// Handles `payment_plan.agreed`.
#[tracing::instrument(skip_all, fields(message_id = ?message.message_id), err)]
pub async fn agree(db: &PgPool, config: &Config, message: &Incoming) -> Result<(), HandlerError> {
    let event: PaymentPlanAgreedV1 = message.json()?;
    let plan = payment_plan(&event).map_err(|r| refuse_plan(&event.plan.id, r))?;
    // Every transaction takes a plan's invoices in number order.
    let mut numbers: Vec<&String> = plan.invoice_numbers.iter().collect();
    numbers.sort();
    let Some(first) = numbers.first() else {
        return Err(refuse_plan(&plan.id, "names no invoice"));
    };
    let Some((mut tx, first_invoice, now)) =
        begin(db, config, names::PAYMENT_PLAN_AGREED, &event.event_id, first).await?
    else {
        return Ok(());
    };
    let mut locked = vec![first_invoice];
    for number in numbers.iter().skip(1) {
        let Some(invoice) = invoices::lock_for_payment(&mut tx, number).await? else {
            return Err(HandlerError::Transient(anyhow::anyhow!(
                "unknown invoice {number:?}"
            )));
        };
        locked.push(invoice);
    }
    // In the plan's own order.
    let ordered: Vec<InvoiceRecord> = plan
        .invoice_numbers
        .iter()
        .filter_map(|n| locked.iter().find(|i| &i.number == n).cloned())
        .collect();
    check(&mut tx, config, &plan, &ordered).await?;
    apply(&mut tx, config, &event, &plan, &ordered, now).await?;
    tx.commit().await.context("committing the payment plan")?;
    Ok(())
}

/// The checks that need the invoices: refused with the reason, nothing changed.
async fn check(
    tx: &mut PgConnection,
    config: &Config,
    plan: &NewPaymentPlan,
    invoices: &[InvoiceRecord],
) -> Result<(), HandlerError> {
    if let Some((_, status)) = payment_plans::find_by_ref(tx, &plan.id).await? {
        return Err(refuse_plan(
            &plan.id,
            format!("a plan of this id is already recorded ({status})"),
        ));
    }
    let mut in_plan = Vec::new();
    for invoice in invoices {
        in_plan.push(
            payment_plans::active_for_invoice(tx, invoice.id)
                .await?
                .map(|p| p.plan_ref),
        );
        let held: Vec<PauseKind> = pauses::active(tx, invoice.id)
            .await?
            .into_iter()
            .map(|p| p.kind)
            .filter(|k| matches!(k, PauseKind::Dispute | PauseKind::Suspension))
            .collect();
        if let Some(kind) = held.first() {
            return Err(refused(
                WHAT,
                &invoice.number,
                format!("the invoice is paused ({kind}): settle that first"),
            ));
        }
    }
    let views: Vec<PlanInvoice<'_>> = invoices
        .iter()
        .zip(&in_plan)
        .map(|(i, plan)| PlanInvoice {
            number: &i.number,
            customer_id: &i.customer_id,
            currency: &i.currency,
            balance: i.balance,
            open: i.status == relance_domain::collections::InvoiceState::Open,
            in_plan: plan.as_deref(),
        })
        .collect();
    let today = match invoices.first() {
        Some(i) => config.clock.now().with_timezone(&i.timezone).date_naive(),
        None => return Err(refuse_plan(&plan.id, "names no invoice")),
    };
    check_plan_against(plan, &views, today).map_err(|r| refuse_plan(&plan.id, r))
}

/// Records the plan, pauses each invoice, announces the plan on each and plans its notes.
async fn apply(
    tx: &mut PgConnection,
    config: &Config,
    event: &PaymentPlanAgreedV1,
    plan: &NewPaymentPlan,
    invoices: &[InvoiceRecord],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let Some(first) = invoices.first() else {
        return Ok(());
    };
    // A plan covers invoices of one customer; the first invoice's creditor's policy rules it.
    let policy = config.policy_for(first.policy.as_deref());
    let rules = &policy.payment_plans;
    let tz = first.timezone;
    let balances: Vec<(uuid::Uuid, rust_decimal::Decimal)> =
        invoices.iter().map(|i| (i.id, i.balance)).collect();
    let instalments: Vec<_> = plan
        .instalments
        .iter()
        .map(|i| (i.due_on, i.amount, breaks_at(i.due_on, rules.grace_days, tz)))
        .collect();
    let earlier_plans = payment_plans::count_for_invoice(tx, first.id).await?;
    let plan_id = payment_plans::insert(
        tx,
        &NewPlanRow {
            plan_ref: &plan.id,
            customer_id: &plan.customer_id,
            currency: plan.currency.code(),
            note: plan.note.as_deref(),
            grace_days: rules.grace_days,
            event_id: &event.event_id,
            invoices: &balances,
            instalments: &instalments,
        },
        now,
    )
    .await?;
    let reason = match &plan.note {
        Some(note) => format!("payment plan {}: {note}", plan.id),
        None => format!(
            "payment plan {} in {} instalments",
            plan.id,
            plan.instalments.len()
        ),
    };
    let detail = PaymentPlanAgreedDetailV1 {
        plan_id: plan.id.clone(),
        invoice_numbers: plan.invoice_numbers.clone(),
        currency: plan.currency.code().to_string(),
        total: crate::amount_text(plan.total()),
        instalments: plan
            .instalments
            .iter()
            .enumerate()
            .map(|(n, i)| PlanInstalmentV1 {
                position: u32::try_from(n + 1).unwrap_or(0),
                due_on: i.due_on,
                amount: crate::amount_text(i.amount),
                paid: "0".to_string(),
            })
            .collect(),
        grace_days: rules.grace_days,
        note: plan.note.clone(),
        event_id: event.event_id.clone(),
    };
    for invoice in invoices {
        let replaced = format!("replaced by payment plan {}", plan.id);
        let promises =
            pauses::end_kinds(tx, invoice.id, &[PauseKind::Promise.as_str()], &replaced, now).await?;
        resume::journal_ended(tx, &invoice.number, &promises, &replaced, now).await?;
        let new = NewPause {
            kind: PauseKind::Plan.as_str(),
            reason: &reason,
            promised_on: None,
            until: None,
            source: names::PAYMENT_PLAN_AGREED,
            event_id: &event.event_id,
            origin: event.plan.source.as_deref(),
        };
        pause(tx, invoice, &new, now).await?;
        // The customer's request for a plan, if any, is answered by this one.
        let answered = format!("answered by payment plan {}", plan.id);
        let requests =
            pauses::end_kinds(tx, invoice.id, &[PauseKind::PlanRequest.as_str()], &answered, now).await?;
        resume::journal_ended(tx, &invoice.number, &requests, &answered, now).await?;
        relance_sequence::outgoing::announce_detail(tx, now, &invoice.number, None, &detail).await?;
    }
    let prefix = if earlier_plans > 0 {
        format!("plan{}", earlier_plans + 1)
    } else {
        "plan".to_string()
    };
    for (n, note) in plan_notes(&plan.instalments, rules, tz, policy.send_time, now)
        .into_iter()
        .enumerate()
    {
        let step = PlannedStep {
            name: note.name.replacen("plan", &prefix, 1),
            position: 2000 + i32::try_from(n).unwrap_or(0),
            channel: Channel::Email,
            template: note.template.to_string(),
            tone: Tone::Courteous,
            due_at: note.due_at,
        };
        payment_plans::insert_note(tx, first.id, plan_id, note.position, &step, now).await?;
    }
    Ok(())
}
