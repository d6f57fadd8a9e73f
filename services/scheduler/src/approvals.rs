//! Approval before formal steps: a due step the policy (`[approvals]`, a step's `approval`)
//! or its customer (`approval = manual`) holds for a person is not queued. It becomes
//! `awaiting_approval`, an approval request is opened with a preview of what it will say
//! (template, channel, recipient, balance, late interest, recovery indemnity and total, as the
//! messages state them), journaled `approval.requested`. Once granted (payments listener) it
//! is pending again and the emission queues it like any due step. A request nobody decides
//! within the policy's `expires_after_days` expires: the step is skipped (`approval expired`),
//! journaled `approval.expired`. Decides nothing itself: the rule is the policy's
//! ([`relance_domain::DunningPolicy::needs_approval`]).

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use relance_config::Config;
use relance_contracts::ReminderSkippedV1;
use relance_domain::claim::{claim_on, Debt, INDEMNITY_CURRENCY};
use relance_domain::policy::ApprovalMode;
use relance_domain::{Money, StepKind};
use relance_sequence::outgoing;
use relance_storage::approvals::{self, ApprovalDecision};
use relance_storage::invoices::InvoiceRecord;
use relance_storage::steps::{self, DueInvoice, StepRecord, StepStatus};
use relance_storage::{deliveries, invoices, journal};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::{PgConnection, PgPool};

/// The reason a step whose approval expired is skipped with.
pub const EXPIRED_REASON: &str = "approval expired";

/// Holds a due step for approval when it needs one and has none: moves it to
/// `awaiting_approval` and opens its request. Returns whether it held it (the caller does not
/// queue it then).
pub async fn hold_for_approval(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &DueInvoice,
    step: &StepRecord,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    if step.kind != StepKind::Reminder {
        return Ok(false);
    }
    let customer = approvals::customer_setting(tx, &invoice.customer_id)
        .await?
        .map(|s| s.parse::<ApprovalMode>())
        .transpose()
        .map_err(|m| anyhow::anyhow!("customers row {}: approval: {m}", invoice.customer_id))?;
    if !config
        .policy
        .needs_approval(invoice.risk, &step.name, &step.template, customer)
        || approvals::is_granted(tx, step.id).await?
    {
        return Ok(false);
    }
    let reason = "waiting for approval";
    if !steps::transition(
        tx,
        step.id,
        &[StepStatus::Pending],
        StepStatus::AwaitingApproval,
        Some(reason),
        now,
    )
    .await?
    {
        return Ok(true);
    }
    let record = invoices::find_by_id(tx, invoice.id)
        .await?
        .context("re-reading the invoice of a step held for approval")?;
    let preview = preview(tx, config, &record, step, now).await?;
    let expires_at = now + Duration::days(i64::from(config.policy.approvals.expires_after_days));
    approvals::open(tx, step.id, invoice.id, &preview, now, expires_at).await?;
    journal::append(
        tx,
        now,
        &step.invoice_number,
        Some(step.id),
        "approval.requested",
        json!({
            "step": step.name,
            "expires_at": expires_at,
            "by": if customer == Some(ApprovalMode::Manual) { "customer" } else { "policy" },
            "preview": preview,
        }),
    )
    .await?;
    Ok(true)
}

/// What the step will say, as of `now`: its template, channel, tone and recipient, and the
/// claim the messages state (balance, late interest, recovery indemnity, total), computed by
/// the same rule (`relance_domain::claim`) from the same payments and formal notice.
pub async fn preview(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    step: &StepRecord,
    now: DateTime<Utc>,
) -> anyhow::Result<serde_json::Value> {
    let s = &config.settings;
    let today = now.with_timezone(&invoice.timezone).date_naive();
    let currency = Money::parse_currency(invoice.currency.trim()).map_err(anyhow::Error::msg)?;
    let history = deliveries::claim_history(tx, invoice.id, None).await?;
    let debt = Debt {
        amount: invoice.amount,
        credited: invoice.credited,
        balance: invoice.balance,
        due_on: invoice.due_on,
        currency,
    };
    let notice_on = history.formal_notice_effective_on(invoice.timezone, s.postal_delivery_days);
    let terms = s
        .channels
        .interest_terms()
        .for_customer(invoice.late_interest_percent);
    let claim = claim_on(&terms, invoice.kind, &debt, &history.payments, notice_on, today);
    // Rounded to the currency's minor unit, written with all its digits ("40.00").
    let plain = |amount: Decimal| {
        let money = Money::new(amount, currency);
        let mut rounded = money.rounded().amount;
        rounded.rescale(money.minor_digits());
        rounded.to_string()
    };
    Ok(json!({
        "step": step.name,
        "template": step.template,
        "channel": step.channel.as_str(),
        "tone": step.tone.as_str(),
        "language": invoice.language.as_str(),
        "recipient": invoice.email,
        "customer": invoice.customer_name,
        "currency": currency.code(),
        "balance": plain(invoice.balance),
        "interest": plain(claim.as_ref().map_or(Decimal::ZERO, |c| c.late_interest)),
        "interest_rate_percent": claim.as_ref().and_then(|c| c.rate_percent).map(|r| r.normalize().to_string()),
        "indemnity": plain(claim.as_ref().map_or(Decimal::ZERO, |c| c.recovery_indemnity)),
        "indemnity_currency": INDEMNITY_CURRENCY.code(),
        "total": plain(claim.as_ref().map_or(invoice.balance, |c| c.total)),
        "as_of": today,
    }))
}

/// Expires the approval requests nobody decided in time: the step is skipped
/// (`approval expired`). Returns how many it looked at.
#[tracing::instrument(skip_all, err)]
pub async fn expire_approvals(db: &PgPool, config: &Config) -> anyhow::Result<usize> {
    let now = config.clock.now();
    let expired = {
        let mut conn = db.acquire().await.context("acquiring a connection")?;
        approvals::expired(&mut conn, now, 100).await?
    };
    let days = config.policy.approvals.expires_after_days;
    for (step_id, number) in &expired {
        let mut tx = db
            .begin()
            .await
            .context("starting the approval expiry transaction")?;
        if invoices::lock_for_payment(&mut tx, number).await?.is_none() {
            continue;
        }
        let Some(step) = steps::find(&mut tx, *step_id).await? else {
            continue;
        };
        // Decided, cancelled or paused meanwhile: nothing to do.
        if approvals::decide(
            &mut tx,
            *step_id,
            ApprovalDecision::Expired,
            None,
            None,
            None,
            now,
        )
        .await?
            && outgoing::transition_and_announce(
                &mut tx,
                now,
                &step,
                &[StepStatus::AwaitingApproval],
                StepStatus::Skipped,
                &ReminderSkippedV1 {
                    reason: EXPIRED_REASON.to_string(),
                },
            )
            .await?
        {
            journal::append(
                &mut tx,
                now,
                number,
                Some(*step_id),
                "approval.expired",
                json!({ "step": step.name, "after_days": days }),
            )
            .await?;
        }
        tx.commit().await.context("committing the approval expiry")?;
    }
    Ok(expired.len())
}
