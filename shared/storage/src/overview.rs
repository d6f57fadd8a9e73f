//! The collections overview: every invoice with its collections status (derived from its
//! status, pauses and plan by the domain), its balance and its next step. Read-only.

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use relance_domain::collections::{collection_status, CollectionStatus, InvoiceState, StepSnapshot};
use relance_domain::Tone;
use rust_decimal::Decimal;
use sqlx::PgPool;
use std::collections::HashMap;
use std::str::FromStr;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct InvoiceOverview {
    pub number: String,
    pub customer_name: String,
    pub status: CollectionStatus,
    pub balance: Decimal,
    pub currency: String,
    pub due_on: NaiveDate,
    /// The next reminder not gone out yet, and when it is planned.
    pub next_step: Option<String>,
    pub next_at: Option<DateTime<Utc>>,
    /// Kinds of the pauses holding the invoice (`promise`, `dispute`, `suspension`).
    pub pauses: Vec<String>,
    /// When a promise's pause ends by itself.
    pub paused_until: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct InvoiceRow {
    id: Uuid,
    number: String,
    customer_name: String,
    status: String,
    balance: Decimal,
    currency: String,
    due_on: NaiveDate,
    timezone: String,
    pauses: Vec<String>,
    paused_until: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct StepRow {
    invoice_id: Uuid,
    name: String,
    tone: String,
    status: String,
    due_at: DateTime<Utc>,
}

/// Every invoice at `now`, by due date, optionally only those in `only` status.
pub async fn list(
    db: &PgPool,
    now: DateTime<Utc>,
    only: Option<CollectionStatus>,
) -> anyhow::Result<Vec<InvoiceOverview>> {
    let invoices: Vec<InvoiceRow> = sqlx::query_as(
        "SELECT i.id, i.number, c.name AS customer_name, i.status, i.balance, trim(i.currency) AS currency, i.due_on,
                c.timezone,
                coalesce(array_agg(p.kind ORDER BY p.started_at) FILTER (WHERE p.id IS NOT NULL), '{}') AS pauses,
                max(p.until) AS paused_until
         FROM invoices i JOIN customers c ON c.id = i.customer_id
         LEFT JOIN invoice_pauses p ON p.invoice_id = i.id AND p.ended_at IS NULL
         GROUP BY i.id, c.id ORDER BY i.due_on, i.number",
    )
    .fetch_all(db)
    .await
    .context("reading invoices")?;
    let steps: Vec<StepRow> = sqlx::query_as(
        "SELECT invoice_id, name, tone, status, due_at FROM reminder_steps WHERE kind = 'reminder'
         ORDER BY invoice_id, position",
    )
    .fetch_all(db)
    .await
    .context("reading reminder steps")?;
    let mut plans: HashMap<Uuid, Vec<StepRow>> = HashMap::new();
    for step in steps {
        plans.entry(step.invoice_id).or_default().push(step);
    }
    let mut out = Vec::new();
    for invoice in invoices {
        let plan = plans.remove(&invoice.id).unwrap_or_default();
        let is_pending =
            |s: &StepRow| matches!(s.status.as_str(), "pending" | "queued" | "rendered" | "sending");
        let snapshots: Vec<StepSnapshot> = plan
            .iter()
            .map(|s| StepSnapshot {
                due_at: s.due_at,
                tone: Tone::from_str(&s.tone).unwrap_or(Tone::Courteous),
                pending: is_pending(s),
            })
            .collect();
        let state = InvoiceState::from_str(&invoice.status).map_err(anyhow::Error::msg)?;
        let tz = Tz::from_str(&invoice.timezone).unwrap_or(chrono_tz::Europe::Paris);
        let status = collection_status(
            state,
            !invoice.pauses.is_empty(),
            invoice.due_on,
            tz,
            &snapshots,
            now,
        );
        if only.is_some_and(|wanted| wanted != status) {
            continue;
        }
        let next = plan
            .iter()
            .find(|s| is_pending(s))
            .filter(|_| state == InvoiceState::Open);
        out.push(InvoiceOverview {
            number: invoice.number,
            customer_name: invoice.customer_name,
            status,
            balance: invoice.balance,
            currency: invoice.currency,
            due_on: invoice.due_on,
            next_step: next.map(|s| s.name.clone()),
            next_at: next.map(|s| s.due_at),
            pauses: invoice.pauses,
            paused_until: invoice.paused_until,
        });
    }
    Ok(out)
}
