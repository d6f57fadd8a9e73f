//! Intake: `invoice.issued` is validated, stored and planned from the policy, and
//! `invoice.registered` journaled and announced, in one transaction. A repeat of a known
//! invoice number changes nothing (`invoice.duplicate`); an invalid invoice is refused
//! (`invoice.rejected`). What is announced is built by pure functions ([`registered_detail`],
//! [`rejected_detail`]) around which the handler loads and applies.

use crate::planning;
use anyhow::Context;
use base64::Engine;
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::names;
use relance_contracts::{
    ExcludedStepV1, FieldWarningV1, InvoiceDuplicateV1, InvoiceIssuedV1, InvoiceRegisteredV1,
    InvoiceRejectedV1, PlannedStepV1, RegisteredDifferenceV1,
};
use relance_domain::creditor::DEFAULT_CREDITOR_ID;
use relance_domain::repeats;
use relance_domain::validation::input::InvoiceFields;
use relance_domain::{validate_invoice, DroppedField, NewInvoice, Plan, Rejection, Risk, StepKind};
use relance_messaging::{HandlerError, Incoming};
use relance_sequence::outgoing;
use relance_storage::steps::{self, StepStatus};
use relance_storage::{creditors, customers, invoices, journal, mark_processed};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

const INBOX: &str = "scheduler.invoice_issued";

/// Handles `invoice.issued`: validate, store, plan. Applied once per `event_id`; a message
/// for an invoice number already registered changes nothing (see [`note_duplicate`]).
#[tracing::instrument(skip_all, fields(message_id = ?message.message_id), err)]
pub async fn take_in_invoice(db: &PgPool, config: &Config, message: Incoming) -> Result<(), HandlerError> {
    let event: InvoiceIssuedV1 = message.json()?;
    let now = config.clock.now();
    let number = &event.invoice.number;
    let validated = validate_issued(&event);
    let mut tx = db.begin().await.context("starting the intake transaction")?;
    if !mark_processed(&mut tx, INBOX, &event.event_id, now).await? {
        tracing::info!("duplicate invoice.issued ignored");
        drop(tx);
        return note_redelivery(db, number, &event.event_id, now).await;
    }
    let invoice = match validated {
        Ok(invoice) => invoice,
        Err(rejection) => {
            let detail = rejected_detail(&rejection, &event.event_id);
            outgoing::announce_detail(&mut tx, now, number, None, &detail).await?;
            tx.commit().await.context("committing the rejection")?;
            return Err(HandlerError::Permanent(format!(
                "invoice {number} refused: {rejection}"
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
    register(&mut tx, config, &event, &invoice, &facts, now).await?;
    tx.commit().await.context("committing the invoice")?;
    Ok(())
}

/// The same `invoice.issued` delivered again (its event id already applied): journaled as
/// `invoice.duplicate`, in a transaction of its own.
async fn note_redelivery(
    db: &PgPool,
    number: &str,
    event_id: &str,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let mut tx = db.begin().await.context("starting the duplicate note")?;
    journal::append(
        &mut tx,
        now,
        number,
        None,
        "invoice.duplicate",
        json!({ "event_id": event_id }),
    )
    .await?;
    tx.commit().await.context("committing the duplicate note")?;
    Ok(())
}

/// Stores a new invoice and its customer, plans its steps, announces `invoice.registered`,
/// and re-plans the customer's other open invoices if its details changed.
async fn register(
    tx: &mut PgConnection,
    config: &Config,
    event: &InvoiceIssuedV1,
    invoice: &NewInvoice,
    facts: &repeats::Facts,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    // The creditor the invoice names must be known: dead-lettered otherwise (nothing is
    // stored), to be replayed once its `creditor.updated` is applied.
    let creditor = event
        .invoice
        .creditor
        .as_deref()
        .map(str::trim)
        .unwrap_or(DEFAULT_CREDITOR_ID);
    if !creditors::exists(tx, creditor).await? {
        return Err(HandlerError::Permanent(format!(
            "invoice {} names creditor {creditor:?}, which is unknown: publish its creditor.updated, then replay this message",
            invoice.number
        )));
    }
    let previous = customers::lock(tx, &invoice.customer.id).await?;
    customers::save(tx, &invoice.customer, event.occurred_at, now).await?;
    let Some(invoice_id) = invoices::insert_invoice(tx, invoice, facts, now).await? else {
        // Another message registered this number meanwhile: roll back (the customer's details
        // too) and try again, when it is seen as the duplicate it is.
        return Err(HandlerError::Transient(anyhow::anyhow!(
            "invoice {} was registered concurrently",
            invoice.number
        )));
    };
    creditors::assign(tx, invoice_id, creditor).await?;
    // The stored details: those of this message, or of a newer one already applied.
    let current = planning::stored(tx, &invoice.customer.id).await?;
    let customer = planning::Planning::of(&current)?;
    let policy_name = creditors::policy_of_invoice(tx, invoice_id).await?;
    let plan = customer.plan(
        config.policy_for(policy_name.as_deref()),
        invoice.amount.amount,
        invoice.amount.currency.code(),
        invoice.due_on,
    )?;
    store_plan(tx, invoice_id, &invoice.number, &plan, now).await?;
    let mut detail = registered_detail(
        &event.event_id,
        current.risk,
        customer.calendar.name(),
        &plan,
        &invoice.customer.dropped,
    );
    detail.creditor = (creditor != DEFAULT_CREDITOR_ID).then(|| creditor.to_string());
    detail.policy = policy_name;
    outgoing::announce_detail(tx, now, &invoice.number, None, &detail).await?;
    if let Some(previous) = previous {
        let change = planning::DetailsChange {
            customer_id: &invoice.customer.id,
            previous: &previous,
            current: &current,
            cause: names::INVOICE_ISSUED,
            except: Some(invoice_id),
        };
        planning::replan_customer(tx, config, &change, now).await?;
    }
    Ok(())
}

/// Stores the planned steps as pending, and journals `invoice.not_chased` when the plan
/// says why the invoice is not chased.
async fn store_plan(
    tx: &mut PgConnection,
    invoice_id: Uuid,
    number: &str,
    plan: &Plan,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    steps::insert_planned_all(
        tx,
        invoice_id,
        StepKind::Reminder,
        &plan.steps,
        StepStatus::Pending,
        now,
    )
    .await?;
    if let Some(reason) = &plan.not_chased {
        journal::append(
            tx,
            now,
            number,
            None,
            "invoice.not_chased",
            json!({ "reason": reason }),
        )
        .await?;
    }
    Ok(())
}

/// `invoice.registered` for an invoice planned with `plan` in the customer's segment `risk`
/// and `calendar`, with the customer's fields dropped at intake as warnings.
pub fn registered_detail(
    event_id: &str,
    risk: Risk,
    calendar: &str,
    plan: &Plan,
    dropped: &[DroppedField],
) -> InvoiceRegisteredV1 {
    let planned = plan
        .steps
        .iter()
        .map(|step| PlannedStepV1 {
            step: step.name.clone(),
            channel: step.channel.as_str().to_string(),
            due_at: step.due_at,
        })
        .collect();
    let excluded: Vec<_> = plan
        .excluded
        .iter()
        .map(|e| ExcludedStepV1 {
            step: e.name.clone(),
            reason: e.reason.clone(),
        })
        .collect();
    InvoiceRegisteredV1 {
        event_id: event_id.to_string(),
        risk: risk.to_string(),
        calendar: calendar.to_string(),
        plan: planned,
        excluded: (!excluded.is_empty()).then_some(excluded),
        not_chased: plan.not_chased.clone(),
        warnings: (!dropped.is_empty()).then(|| dropped_fields(dropped)),
        creditor: None,
        policy: None,
    }
}

/// `invoice.rejected` for an invoice refused by validation.
pub fn rejected_detail(rejection: &Rejection, event_id: &str) -> InvoiceRejectedV1 {
    InvoiceRejectedV1 {
        field: rejection.field.clone(),
        reason: rejection.reason.clone(),
        event_id: event_id.to_string(),
    }
}

/// The wire fields of an `invoice.issued`, validated (the PDF decoded first). Also what
/// `relance import invoices` checks each row with before publishing it.
pub fn validate_issued(event: &InvoiceIssuedV1) -> Result<NewInvoice, Rejection> {
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
    tx: &mut PgConnection,
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
pub fn dropped_fields(dropped: &[DroppedField]) -> Vec<FieldWarningV1> {
    dropped
        .iter()
        .map(|d| FieldWarningV1 {
            field: d.field.to_string(),
            reason: d.reason.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use chrono::TimeZone;
    use relance_domain::plan::ExcludedStep;
    use relance_domain::{Channel, PlannedStep, Tone};

    fn planned(name: &str, channel: Channel) -> PlannedStep {
        PlannedStep {
            name: name.to_string(),
            position: 1,
            channel,
            template: "reminder".to_string(),
            tone: Tone::Firm,
            due_at: Utc.with_ymd_and_hms(2025, 3, 12, 8, 0, 0).unwrap(),
        }
    }

    #[test]
    fn registered_lists_the_plan_and_leaves_out_what_is_empty() {
        let plan = Plan {
            steps: vec![
                planned("reminder_1", Channel::Email),
                planned("sms", Channel::Sms),
            ],
            excluded: Vec::new(),
            not_chased: None,
        };
        let detail = registered_detail("evt-1", Risk::Medium, "FR", &plan, &[]);
        assert_eq!(detail.event_id, "evt-1");
        assert_eq!(detail.risk, Risk::Medium.to_string());
        assert_eq!(detail.calendar, "FR");
        let steps: Vec<_> = detail
            .plan
            .iter()
            .map(|p| (p.step.as_str(), p.channel.as_str()))
            .collect();
        assert_eq!(steps, vec![("reminder_1", "email"), ("sms", "sms")]);
        assert_eq!(detail.excluded, None);
        assert_eq!(detail.warnings, None);
        assert_eq!(detail.not_chased, None);
    }

    #[test]
    fn registered_names_excluded_steps_dropped_fields_and_why_not_chased() {
        let plan = Plan {
            steps: Vec::new(),
            excluded: vec![ExcludedStep {
                name: "formal_notice".to_string(),
                reason: "below its minimum amount".to_string(),
            }],
            not_chased: Some("below the policy's threshold".to_string()),
        };
        let dropped = [DroppedField {
            field: "phone".to_string(),
            reason: "not a phone number".to_string(),
        }];
        let detail = registered_detail("evt-2", Risk::High, "DE", &plan, &dropped);
        let excluded = detail.excluded.expect("excluded steps listed");
        assert_eq!(excluded[0].step, "formal_notice");
        assert_eq!(excluded[0].reason, "below its minimum amount");
        let warnings = detail.warnings.expect("dropped fields listed");
        assert_eq!(
            (warnings[0].field.as_str(), warnings[0].reason.as_str()),
            ("phone", "not a phone number")
        );
        assert_eq!(detail.not_chased.as_deref(), Some("below the policy's threshold"));
    }

    #[test]
    fn rejected_carries_the_field_the_reason_and_the_event() {
        let detail = rejected_detail(&Rejection::new("amount", "is not a number"), "evt-3");
        assert_eq!(
            (
                detail.field.as_str(),
                detail.reason.as_str(),
                detail.event_id.as_str()
            ),
            ("amount", "is not a number", "evt-3")
        );
    }
}
