//! Hand-off: an invoice whose sequence is over (its last reminder step sent, or otherwise
//! final) and still unpaid `RELANCE_HANDOFF_AFTER_DAYS` days later (by default the 8 days the
//! formal notice gives; plus `RELANCE_POSTAL_DELIVERY_DAYS` when the notice went by post, as
//! its deadline runs from receipt) is marked `handed_off`, journaled, and announced by an
//! `invoice.handed_off` event carrying its journal and the amount due, with the late interest
//! accrued to the hand-off day, the recovery indemnity and the total (`relance_domain::claim`,
//! as the firm reminders and the formal notice state them). A sweep of the
//! scheduler, every `RELANCE_HANDOFF_INTERVAL_MS` (hand-offs are counted in days), driven by
//! the index of ended sequences (`invoices.sequence_ended_at`), so that a pass costs the
//! same at any ledger size: several copies may run, invoices are claimed with `SKIP LOCKED` and the
//! status moves only from `open`, so an invoice is handed off once. It sends nothing to the
//! customer.

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use relance_config::Config;
use relance_contracts::{names, ApprovalRequestedV1, APPROVAL_SUBJECT_HAND_OFF};
use relance_contracts::{AmountDueV1, HandOffCreditorV1, HandOffDetailV1};
use relance_domain::claim::{claim_on, Claim, Debt, INDEMNITY_CURRENCY};
use relance_domain::interest::InterestTerms;
use relance_domain::policy::{ApprovalMode, ApprovalRules};
use relance_domain::Money;
use relance_sequence::{journal::invoice_journal_v1, outgoing};
use relance_storage::approvals;
use relance_storage::handoff::{self, HandOffCandidate, HandOffDelay};
use relance_storage::steps::StepStatus;
use relance_storage::{deliveries, journal, outbox};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;

/// Hands off every invoice due for it at `now`, batch after batch, with no approval asked.
/// Returns how many.
pub async fn hand_off_due(
    db: &PgPool,
    now: DateTime<Utc>,
    delay: HandOffDelay,
    batch: i64,
    terms: &InterestTerms,
) -> anyhow::Result<usize> {
    hand_off_due_with(db, now, delay, batch, terms, None).await
}

/// Hands off every invoice due for it at `now`, batch after batch; when the policy of the
/// invoice's creditor (in `approvals`, the configuration) says the hand-off waits for
/// approval, an invoice not yet approved gets an approval request instead (`approval.requested`, previewing the amount due), and is
/// handed off by the first pass after it is granted; a rejected or expired request leaves it
/// open, not handed off. Returns how many invoices it handed off or held.
#[tracing::instrument(skip_all, err)]
pub async fn hand_off_due_with(
    db: &PgPool,
    now: DateTime<Utc>,
    delay: HandOffDelay,
    batch: i64,
    terms: &InterestTerms,
    approvals: Option<&Config>,
) -> anyhow::Result<usize> {
    // First the sequences that ended since the last pass: they enter the index the claim reads.
    loop {
        let mut tx = db.begin().await.context("starting to note ended sequences")?;
        let consumed = handoff::note_ended_sequences(&mut tx, batch.max(1) * 5).await?;
        tx.commit().await.context("committing the ended sequences")?;
        if consumed < u64::try_from(batch.max(1) * 5).unwrap_or(u64::MAX) {
            break;
        }
    }
    let mut total = 0;
    loop {
        let mut tx = db.begin().await.context("starting the hand-off transaction")?;
        let claimed = handoff::claim_due(&mut tx, now, delay, batch).await?;
        for invoice in &claimed {
            let by_post =
                invoice.last_step_status == StepStatus::Sent && invoice.last_step_channel.is_postal();
            let after_days = delay.after_days + if by_post { delay.postal_days } else { 0 };
            if let Some(config) = approvals {
                let rules = &config.policy_for(invoice.policy.as_deref()).approvals;
                if hold_hand_off(&mut tx, rules, invoice, now, delay.postal_days, terms).await? {
                    continue;
                }
            }
            hand_off(&mut tx, invoice, now, after_days, delay.postal_days, terms).await?;
        }
        tx.commit().await.context("committing the hand-off")?;
        total += claimed.len();
        if claimed.len() < usize::try_from(batch).unwrap_or(usize::MAX) {
            return Ok(total);
        }
    }
}

/// Opens the approval request of an invoice's hand-off when it needs one and has not been
/// granted. Returns whether it holds the hand-off.
async fn hold_hand_off(
    tx: &mut sqlx::PgConnection,
    rules: &ApprovalRules,
    invoice: &HandOffCandidate,
    now: DateTime<Utc>,
    postal_delivery_days: u32,
    terms: &InterestTerms,
) -> anyhow::Result<bool> {
    let customer = approvals::invoice_customer_setting(tx, invoice.id)
        .await?
        .map(|s| s.parse::<ApprovalMode>())
        .transpose()
        .map_err(|m| anyhow::anyhow!("the customer of invoice {}: approval: {m}", invoice.number))?;
    if !rules.hand_off_needs_approval(customer) || approvals::hand_off_granted(tx, invoice.id).await? {
        return Ok(false);
    }
    let today = now.with_timezone(&invoice.timezone).date_naive();
    let claim = claim_of(tx, invoice, today, postal_delivery_days, terms).await?;
    let amount_due = amount_due(invoice, claim.as_ref(), today)?;
    let preview = json!({
        "hand_off": true,
        "invoice": invoice.number,
        "last_step": invoice.last_step,
        "last_step_status": invoice.last_step_status.to_string(),
        "amount_due": amount_due,
    });
    let expires_at = now + chrono::Duration::days(i64::from(rules.expires_after_days));
    let id = approvals::open_hand_off(tx, invoice.id, &preview, now, expires_at).await?;
    let detail = ApprovalRequestedV1 {
        approval_id: id.to_string(),
        subject: APPROVAL_SUBJECT_HAND_OFF.to_string(),
        step: None,
        by: if customer == Some(ApprovalMode::Manual) {
            "customer"
        } else {
            "policy"
        }
        .to_string(),
        expires_at,
        preview,
    };
    outgoing::announce_detail(tx, now, &invoice.number, None, &detail).await?;
    Ok(true)
}

/// The claim on the invoice on the customer's day `today`: the same claim the letters and
/// emails state, from the same payments and notice.
async fn claim_of(
    tx: &mut sqlx::PgConnection,
    invoice: &HandOffCandidate,
    today: NaiveDate,
    postal_delivery_days: u32,
    terms: &InterestTerms,
) -> anyhow::Result<Option<Claim>> {
    let history = deliveries::claim_history(tx, invoice.id, None).await?;
    let currency = Money::parse_currency(invoice.currency.trim()).map_err(anyhow::Error::msg)?;
    let debt = Debt {
        amount: invoice.amount,
        credited: invoice.credited,
        balance: invoice.balance,
        due_on: invoice.due_on,
        currency,
    };
    let notice_on = history.formal_notice_effective_on(invoice.timezone, postal_delivery_days);
    let terms = terms.for_customer(invoice.late_interest_percent);
    Ok(claim_on(
        &terms,
        invoice.customer_kind,
        &debt,
        &history.payments,
        notice_on,
        today,
    ))
}

async fn hand_off(
    tx: &mut sqlx::PgConnection,
    invoice: &HandOffCandidate,
    now: DateTime<Utc>,
    after_days: u32,
    postal_delivery_days: u32,
    terms: &InterestTerms,
) -> anyhow::Result<()> {
    let reason = format!(
        "unpaid {after_days} days after the last step of the sequence ({} {})",
        invoice.last_step, invoice.last_step_status
    );
    if !handoff::mark_handed_off(tx, invoice.id, &reason, now).await? {
        return Ok(());
    }
    // Interest runs through the customer's local day of the hand-off, less each payment
    // from the day it was received.
    let today = now.with_timezone(&invoice.timezone).date_naive();
    let claim = claim_of(tx, invoice, today, postal_delivery_days, terms).await?;
    let amount_due = amount_due(invoice, claim.as_ref(), today)?;
    // The journal as committed before this hand-off; its head is also journaled, so that the
    // entry recording the hand-off pins the chain that was handed over.
    let chain = invoice_journal_v1(tx, &invoice.number).await?;
    journal::append(
        tx,
        now,
        &invoice.number,
        None,
        names::INVOICE_HANDED_OFF,
        json!({
            "reason": reason,
            "amount_due": amount_due,
            "journal_head": { "seq": chain.head_seq, "hash": chain.head_hash },
        }),
    )
    .await?;
    let detail = HandOffDetailV1 {
        reason,
        after_days,
        last_step: invoice.last_step.clone(),
        last_step_status: invoice.last_step_status.to_string(),
        last_step_at: invoice.last_step_at,
        amount_due,
        journal: chain,
        creditor: invoice.creditor.as_ref().map(|(id, name)| HandOffCreditorV1 {
            id: id.clone(),
            name: name.clone(),
        }),
    };
    outbox::enqueue(
        tx,
        &outgoing::event(&invoice.number, None, &detail, now).context("encoding the hand-off event")?,
        now,
    )
    .await
}

fn amount_due(
    invoice: &HandOffCandidate,
    claim: Option<&Claim>,
    today: NaiveDate,
) -> anyhow::Result<AmountDueV1> {
    let currency = Money::parse_currency(invoice.currency.trim()).map_err(anyhow::Error::msg)?;
    let plain = |amount: Decimal| {
        let mut rounded = Money::new(amount, currency).rounded().amount;
        rounded.rescale(Money::new(amount, currency).minor_digits());
        rounded.to_string()
    };
    Ok(AmountDueV1 {
        currency: currency.code().to_string(),
        invoiced: plain(invoice.amount),
        credited: plain(invoice.credited),
        paid: plain(invoice.amount - invoice.credited - invoice.balance),
        principal: plain(invoice.balance),
        // Not yet late (never at hand-off): nothing on top of the balance.
        interest: Some(plain(claim.map_or(Decimal::ZERO, |c| c.late_interest))),
        interest_through: Some(today),
        interest_rate_percent: claim
            .and_then(|c| c.rate_percent)
            .map(|r| r.normalize().to_string()),
        indemnity: Some(plain(claim.map_or(Decimal::ZERO, |c| c.recovery_indemnity))),
        indemnity_currency: Some(INDEMNITY_CURRENCY.code().to_string()),
        interest_from: claim.and_then(|c| c.interest_from),
        interest_rate_basis: claim.and_then(|c| c.rate_source).map(|s| s.as_str().to_string()),
        rates_estimated: claim.is_some_and(|c| !c.rates_known),
        total: Some(plain(claim.map_or(invoice.balance, |c| c.total))),
    })
}
