//! Approval of a step before it goes out, shared by the renderer (which renders a held step
//! and keeps the rendering awaiting approval) and the payments listener (which, on
//! approval, sends that rendering, or has the step rendered again when the figures it states
//! changed meanwhile). The rule saying whether a step waits is the policy's
//! ([`relance_domain::DunningPolicy::needs_approval`]); a customer set to manual holds every
//! reminder and every payment plan note.

use crate::outgoing;
use chrono::{DateTime, Duration, Utc};
use relance_config::Config;
use relance_contracts::{ApprovalRequestedV1, APPROVAL_SUBJECT_STEP};
use relance_domain::claim::{claim_on, Debt, INDEMNITY_CURRENCY};
use relance_domain::policy::ApprovalMode;
use relance_domain::{Money, StepKind};
use relance_storage::approvals;
use relance_storage::deliveries;
use relance_storage::invoices::InvoiceRecord;
use relance_storage::steps::StepRecord;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgConnection;

/// The figures of a preview that, changed, make approval render the step again.
pub const FIGURES: [&str; 7] = [
    "recipient",
    "currency",
    "balance",
    "interest",
    "indemnity",
    "total",
    "as_of",
];

/// Who holds a due step for approval, if anyone: `customer` (set to manual: every reminder
/// and payment plan note) or `policy` (`[approvals]`, the step's `approval`). A step already
/// granted is not held again.
pub async fn holder(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    step: &StepRecord,
) -> anyhow::Result<Option<&'static str>> {
    if !matches!(step.kind, StepKind::Reminder | StepKind::Plan) {
        return Ok(None);
    }
    let customer = approvals::customer_setting(tx, &invoice.customer_id)
        .await?
        .map(|s| s.parse::<ApprovalMode>())
        .transpose()
        .map_err(|m| anyhow::anyhow!("customers row {}: approval: {m}", invoice.customer_id))?;
    let by = if customer == Some(ApprovalMode::Manual) {
        "customer"
    } else if step.kind == StepKind::Reminder
        && config.policy_for(invoice.policy.as_deref()).needs_approval(
            invoice.risk,
            &step.name,
            &step.template,
            customer,
        )
    {
        "policy"
    } else {
        return Ok(None);
    };
    if approvals::is_granted(tx, step.id).await? {
        return Ok(None);
    }
    Ok(Some(by))
}

/// Opens the approval request of a step held with its rendering (`message`: the exact
/// subject, text, HTML, a letter's PDF hash), with the figures it states, journaled and
/// announced (`approval.requested`). The caller has moved the step to `awaiting_approval`.
pub async fn request(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    step: &StepRecord,
    by: &str,
    message: serde_json::Value,
    now: DateTime<Utc>,
) -> anyhow::Result<uuid::Uuid> {
    let mut preview = figures(tx, config, invoice, step, now).await?;
    if let Some(object) = preview.as_object_mut() {
        object.insert("message".to_string(), message);
    }
    let expires_at = now
        + Duration::days(i64::from(
            config
                .policy_for(invoice.policy.as_deref())
                .approvals
                .expires_after_days,
        ));
    let id = approvals::open(tx, step.id, invoice.id, &preview, now, expires_at).await?;
    let detail = ApprovalRequestedV1 {
        approval_id: id.to_string(),
        subject: APPROVAL_SUBJECT_STEP.to_string(),
        step: Some(step.name.clone()),
        by: by.to_string(),
        expires_at,
        preview,
    };
    outgoing::announce_detail(tx, now, &invoice.number, Some(step), &detail).await?;
    Ok(id)
}

/// The figures of `preview` that differ in `now` (empty: the rendering still holds).
pub fn changed_figures(preview: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    FIGURES
        .iter()
        .filter(|f| preview.get(**f) != now.get(**f))
        .map(|f| {
            let show = |v: Option<&serde_json::Value>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            format!("{f} {} -> {}", show(preview.get(*f)), show(now.get(*f)))
        })
        .collect()
}

/// What the step will say, as of `now`: its template, channel, tone and recipient, and the
/// claim the messages state (balance, late interest, recovery indemnity, total), computed by
/// the same rule (`relance_domain::claim`) from the same payments and formal notice.
pub async fn figures(
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
