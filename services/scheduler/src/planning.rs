//! Planning an invoice from its customer's stored details, and re-planning a customer's open
//! invoices when those details change (segment, time zone, country, kind): on `invoice.issued`
//! of another invoice and on `customer.updated`. Only pending steps move; the journal says so.

use anyhow::{anyhow, Context};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use relance_config::Config;
use relance_contracts::names;
use relance_contracts::CustomerUpdatedV1;
use relance_domain::validation::input::CustomerFields;
use relance_domain::{
    calendar_for_customer, plan_invoice, replan, validate_customer, CustomerKind, DunningPolicy,
    ExistingStep, HolidayCalendar, Money, Plan, PlanInput, PlannedStep, Replan, Risk, StepKind,
};
use relance_messaging::{HandlerError, Incoming};
use relance_storage::customers::{self, PlanningDetails};
use relance_storage::steps::{self, StepStatus};
use relance_storage::{journal, mark_processed};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

const INBOX: &str = "scheduler.customer_updated";

/// A customer's stored details, as the planner takes them.
pub struct Planning {
    pub risk: Risk,
    pub kind: CustomerKind,
    pub tz: Tz,
    pub calendar: Box<dyn HolidayCalendar>,
}

impl Planning {
    pub fn of(details: &PlanningDetails) -> anyhow::Result<Self> {
        Ok(Self {
            risk: details.risk,
            kind: details.kind,
            tz: details.timezone,
            calendar: calendar_for_customer(&details.country, details.region.as_deref()),
        })
    }

    /// The plan of an invoice under `policy` (its creditor's: `config.policy_for`).
    pub fn plan(
        &self,
        policy: &DunningPolicy,
        amount: Decimal,
        currency: &str,
        due_on: NaiveDate,
    ) -> anyhow::Result<Plan> {
        let currency = Money::parse_currency(currency.trim()).map_err(|e| anyhow!(e))?;
        Ok(plan_invoice(
            policy,
            &PlanInput {
                risk: self.risk,
                kind: self.kind,
                amount: Money::new(amount, currency),
                due_on,
                tz: self.tz,
                calendar: self.calendar.as_ref(),
            },
        ))
    }
}

/// The stored customer's planning details (it was saved in this transaction).
pub async fn stored(tx: &mut PgConnection, customer_id: &str) -> anyhow::Result<PlanningDetails> {
    customers::lock(tx, customer_id)
        .await?
        .with_context(|| format!("customer {customer_id} vanished"))
}

/// Handles `customer.updated`: saves the details and re-plans the customer's open invoices
/// if what decides their plans changed. Applied once per `event_id`.
#[tracing::instrument(skip_all, fields(message_id = ?message.message_id), err)]
pub async fn take_in_customer(db: &PgPool, config: &Config, message: Incoming) -> Result<(), HandlerError> {
    let event: CustomerUpdatedV1 = message.json()?;
    let now = config.clock.now();
    let c = &event.customer;
    let customer = validate_customer(customer_fields(c))
        .map_err(|r| HandlerError::Permanent(format!("customer {} refused: {r}", c.id)))?;
    let mut tx = db.begin().await.context("starting the customer transaction")?;
    if !mark_processed(&mut tx, INBOX, &event.event_id, now).await? {
        tracing::info!("duplicate customer.updated ignored");
        return Ok(());
    }
    let previous = customers::lock(&mut tx, &customer.id).await?;
    if !customers::save(&mut tx, &customer, event.occurred_at, now).await? {
        tracing::info!("customer.updated older than the details already stored; ignored");
    } else if !customer.dropped.is_empty() {
        journal_dropped_fields(&mut tx, &customer, &event.event_id, now).await?;
    }
    if let Some(previous) = previous {
        let current = stored(&mut tx, &customer.id).await?;
        let change = DetailsChange {
            customer_id: &customer.id,
            previous: &previous,
            current: &current,
            cause: names::CUSTOMER_UPDATED,
            except: None,
        };
        replan_customer(&mut tx, config, &change, now).await?;
    }
    tx.commit().await.context("committing the customer")?;
    Ok(())
}

/// A customer accepted without an unusable field (a bad phone number): each of its open
/// invoices' journals says so (`customer.field_dropped`), since the next steps of those
/// invoices go out without it.
async fn journal_dropped_fields(
    tx: &mut PgConnection,
    customer: &relance_domain::NewCustomer,
    event_id: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    tracing::warn!(
        fields = customer.dropped.len(),
        "customer.updated accepted without unusable fields"
    );
    let warnings = crate::intake::dropped_fields(&customer.dropped);
    for invoice in customers::lock_open_invoices(tx, &customer.id).await? {
        journal::append(
            tx,
            now,
            &invoice.number,
            None,
            "customer.field_dropped",
            json!({ "event_id": event_id, "customer_id": customer.id, "warnings": warnings }),
        )
        .await?;
    }
    Ok(())
}

/// The fields of `PlanningDetails` that differ, by name, for the journal.
fn changes(previous: &PlanningDetails, current: &PlanningDetails) -> Vec<&'static str> {
    [
        ("risk", previous.risk != current.risk),
        ("kind", previous.kind != current.kind),
        ("timezone", previous.timezone != current.timezone),
        ("country", previous.country != current.country),
        ("region", previous.region != current.region),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(name, _)| name)
    .collect()
}

fn pending_step(record: &steps::StepRecord) -> anyhow::Result<PlannedStep> {
    Ok(PlannedStep {
        name: record.name.clone(),
        position: record.position,
        channel: record.channel,
        template: record.template.clone(),
        tone: record.tone,
        due_at: record.due_at,
    })
}

/// A change of a customer's planning details, and what it re-plans.
pub struct DetailsChange<'a> {
    pub customer_id: &'a str,
    pub previous: &'a PlanningDetails,
    pub current: &'a PlanningDetails,
    /// The message that changed them (`invoice.issued`, `customer.updated`), for the journal.
    pub cause: &'a str,
    /// An invoice planned just now from the current details: left as it is.
    pub except: Option<Uuid>,
}

/// Re-plans the pending steps of the customer's open invoices (but `change.except`, planned
/// just now) when its planning details changed, and journals `steps.replanned` on each
/// invoice whose steps moved. Steps already emitted are never touched; with unchanged
/// details, or a second time, it does nothing.
pub async fn replan_customer(
    tx: &mut PgConnection,
    config: &Config,
    change: &DetailsChange<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let changed = changes(change.previous, change.current);
    if changed.is_empty() {
        return Ok(0);
    }
    let planning = Planning::of(change.current)?;
    let mut replanned = 0;
    for invoice in customers::lock_open_invoices(tx, change.customer_id).await? {
        if Some(invoice.id) == change.except {
            continue;
        }
        let records: Vec<steps::StepRecord> = steps::for_invoice(tx, invoice.id)
            .await?
            .into_iter()
            .filter(|s| s.kind == StepKind::Reminder)
            .collect();
        let existing = existing_steps(&records)?;
        let policy = config.policy_for(invoice.policy.as_deref());
        let plan = planning.plan(policy, invoice.amount, &invoice.currency, invoice.due_on)?;
        let moves = replan(&plan, &existing);
        if moves.is_empty() {
            continue;
        }
        apply_replan(tx, invoice.id, &moves, now).await?;
        let replanned_steps = ReplannedSteps {
            records: &records,
            moves: &moves,
            changed: &changed,
            calendar: planning.calendar.name(),
        };
        journal_replanned(tx, &invoice.number, invoice.id, change, &replanned_steps, now).await?;
        replanned += 1;
    }
    Ok(replanned)
}

/// An invoice's reminder steps as the re-planner compares them with a new plan.
fn existing_steps(records: &[steps::StepRecord]) -> anyhow::Result<Vec<ExistingStep>> {
    records
        .iter()
        .map(|r| {
            Ok(ExistingStep {
                id: r.id,
                name: r.name.clone(),
                position: r.position,
                pending: if r.status == StepStatus::Pending {
                    Some(pending_step(r)?)
                } else {
                    None
                },
            })
        })
        .collect()
}

/// Removes, moves and adds an invoice's pending steps as re-planned.
async fn apply_replan(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    moves: &Replan,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for id in &moves.remove {
        steps::remove_pending(tx, *id).await?;
    }
    for (id, step) in &moves.update {
        steps::replan_pending(tx, *id, step, now).await?;
    }
    steps::insert_planned_all(
        tx,
        invoice_id,
        StepKind::Reminder,
        &moves.insert,
        StepStatus::Pending,
        now,
    )
    .await?;
    Ok(())
}

/// What one invoice's re-planning did, for its journal.
struct ReplannedSteps<'a> {
    /// The invoice's reminder steps before.
    records: &'a [steps::StepRecord],
    moves: &'a Replan,
    /// The planning details that changed, by name.
    changed: &'a [&'static str],
    calendar: &'a str,
}

/// Journals `steps.replanned` on the invoice, with its pending steps as they now are.
async fn journal_replanned(
    tx: &mut PgConnection,
    number: &str,
    invoice_id: Uuid,
    change: &DetailsChange<'_>,
    replanned: &ReplannedSteps<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let name_of = |id: Uuid| {
        replanned
            .records
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.name.clone())
    };
    let moves = replanned.moves;
    let pending: Vec<_> = steps::for_invoice(tx, invoice_id)
        .await?
        .into_iter()
        .filter(|s| s.kind == StepKind::Reminder && s.status == StepStatus::Pending)
        .map(|s| json!({ "step": s.name, "template": s.template, "due_at": s.due_at }))
        .collect();
    journal::append(
        tx,
        now,
        number,
        None,
        "steps.replanned",
        json!({
            "cause": change.cause,
            "changed": replanned.changed,
            "old_segment": change.previous.risk,
            "new_segment": change.current.risk,
            "calendar": replanned.calendar,
            "removed": moves.remove.iter().filter_map(|id| name_of(*id)).collect::<Vec<_>>(),
            "added": moves.insert.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            "moved": moves.update.iter().map(|(_, s)| s.name.clone()).collect::<Vec<_>>(),
            "pending": pending,
        }),
    )
    .await
}

/// A customer of the queue contract, as validation reads it (`invoice.issued` and
/// `customer.updated` carry the same customer).
pub(crate) fn customer_fields(c: &relance_contracts::CustomerV1) -> CustomerFields<'_> {
    CustomerFields {
        id: &c.id,
        name: &c.name,
        contact_name: &c.contact_name,
        email: &c.email,
        phone: c.phone.as_deref(),
        postal_address: c.postal_address.as_deref(),
        language: c.language.as_deref(),
        timezone: c.timezone.as_deref(),
        risk: c.risk.as_deref(),
        kind: c.kind.as_deref(),
        cc: &c.cc,
        country: c.country.as_deref(),
        region: c.region.as_deref(),
        late_interest_percent: c.late_interest_percent.as_deref(),
        approval: c.approval.as_deref(),
    }
}
