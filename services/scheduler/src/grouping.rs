//! Grouping a customer's reminders: when a reminder of an overdue invoice goes out, the same
//! stage of the customer's other overdue invoices due within a few days joins its message
//! (the renderer lists them), instead of one message each. Members are settled with their
//! lead: sent with it, or released to go out alone if it does not go out (a payment).

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use relance_config::Config;
use relance_contracts::{
    GroupedAmbiguousV1, GroupedIntoV1, GroupedSentV1, ReminderAmbiguousV1, ReminderSentV1, ReminderSkippedV1,
};
use relance_domain::grouping::{joining, Lead, OtherStep};
use relance_domain::StepKind;
use relance_sequence::outgoing;
use relance_sequence::queue_step;
use relance_storage::steps::{self, StepRecord, StepStatus};
use relance_storage::{groups, journal};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use std::collections::HashSet;
use uuid::Uuid;

/// The lead step just queued, and its invoice.
pub struct LeadStep<'a> {
    pub step: &'a StepRecord,
    pub customer_id: &'a str,
    pub due_on: NaiveDate,
    pub currency: &'a str,
    /// The named policy of its creditor (`None`: the default one): grouping joins only
    /// invoices of the same creditor, so the lead's policy decides.
    pub policy: Option<&'a str>,
}

/// Folds the customer's other overdue invoices' steps into `lead`'s message, when the policy
/// groups. Returns the steps that joined and the invoices they belong to.
pub async fn gather(
    tx: &mut PgConnection,
    config: &Config,
    lead: &LeadStep<'_>,
    tz: Tz,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> anyhow::Result<(HashSet<Uuid>, HashSet<Uuid>)> {
    let (mut steps_joined, mut invoices_joined) = (HashSet::new(), HashSet::new());
    let Some(grouping) = config.policy_for(lead.policy).grouping else {
        return Ok((steps_joined, invoices_joined));
    };
    if lead.step.kind != StepKind::Reminder || lead.due_on >= today {
        return Ok((steps_joined, invoices_joined));
    }
    let others = other_pending(tx, lead, today).await?;
    let lead_shape = Lead {
        channel: lead.step.channel,
        template: &lead.step.template,
        currency: lead.currency,
    };
    for member in joining(&grouping, &lead_shape, today, now, tz, &others) {
        if !groups::join(tx, member.step_id, lead.step.id, now, today).await? {
            continue;
        }
        steps_joined.insert(member.step_id);
        invoices_joined.insert(member.invoice_id);
        let Some(record) = steps::find(tx, member.step_id).await? else {
            continue;
        };
        journal::append(
            tx,
            now,
            &record.invoice_number,
            Some(record.id),
            "reminder.grouped",
            json!({
                "step": record.name,
                "into_invoice": lead.step.invoice_number,
                "into_step": lead.step.name,
            }),
        )
        .await?;
        steps_joined.extend(skip_overtaken(tx, &member.overtaken, now).await?);
    }
    Ok((steps_joined, invoices_joined))
}

/// The customer's other invoices' pending steps, as grouping compares them with the lead.
async fn other_pending(
    tx: &mut PgConnection,
    lead: &LeadStep<'_>,
    today: NaiveDate,
) -> anyhow::Result<Vec<OtherStep>> {
    Ok(
        groups::other_pending(tx, lead.customer_id, lead.step.invoice_id, today)
            .await?
            .into_iter()
            .map(|o| OtherStep {
                step_id: o.step_id,
                invoice_id: o.invoice_id,
                invoice_due_on: o.invoice_due_on,
                currency: o.currency,
                emitted_today: o.emitted_today,
                position: o.position,
                channel: o.channel,
                template: o.template,
                due_at: o.due_at,
            })
            .collect(),
    )
}

/// Skips a joining member's earlier steps, overtaken by the step that joined. Returns those
/// skipped.
async fn skip_overtaken(
    tx: &mut PgConnection,
    overtaken: &[Uuid],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Uuid>> {
    let reason = "overtaken by a later step that joined a grouped message";
    let mut skipped_ids = Vec::new();
    for id in overtaken {
        if !steps::transition(
            tx,
            *id,
            &[StepStatus::Pending],
            StepStatus::Skipped,
            Some(reason),
            now,
        )
        .await?
        {
            continue;
        }
        if let Some(skipped) = steps::find(tx, *id).await? {
            let detail = ReminderSkippedV1 {
                reason: reason.to_string(),
            };
            outgoing::announce_step_detail(tx, now, &skipped, &detail).await?;
        }
        skipped_ids.push(*id);
    }
    Ok(skipped_ids)
}

/// Settles members whose lead has ended: sent with a sent lead (announced as sent, with the
/// lead's message as proof), released to go out alone otherwise. Returns how many.
#[tracing::instrument(skip_all, err)]
pub async fn settle_groups(db: &PgPool, config: &Config) -> anyhow::Result<usize> {
    let now = config.clock.now();
    let mut tx = db.begin().await.context("starting the group settlement")?;
    let settled = groups::settled_leads(&mut tx, 100).await?;
    for s in &settled {
        let member = &s.member;
        if s.lead_status == StepStatus::Sent {
            if groups::mark_sent(&mut tx, member.id, s.lead_proof.as_deref(), now).await? {
                outgoing::announce_step_detail(
                    &mut tx,
                    now,
                    member,
                    &ReminderSentV1::Grouped(GroupedSentV1 {
                        grouped_into: GroupedIntoV1 {
                            invoice_number: s.lead_invoice.to_string(),
                            step: s.lead_step.to_string(),
                        },
                        message_id: s.lead_message_id.clone(),
                    }),
                )
                .await?;
            }
        } else if s.lead_status == StepStatus::Ambiguous {
            // The message that listed it may or may not have gone out: as its lead.
            let reason = "the grouped message it joined may or may not have reached the customer";
            if steps::transition(
                &mut tx,
                member.id,
                &[StepStatus::Queued],
                StepStatus::Ambiguous,
                Some(reason),
                now,
            )
            .await?
            {
                outgoing::announce_step_detail(
                    &mut tx,
                    now,
                    member,
                    &ReminderAmbiguousV1::Grouped(GroupedAmbiguousV1 {
                        reason: reason.to_string(),
                        grouped_into: GroupedIntoV1 {
                            invoice_number: s.lead_invoice.to_string(),
                            step: s.lead_step.to_string(),
                        },
                        message_id: s.lead_message_id.clone(),
                    }),
                )
                .await?;
            }
        } else if groups::release(&mut tx, member.id, now).await? {
            journal::append(
                &mut tx,
                now,
                &member.invoice_number,
                Some(member.id),
                "reminder.ungrouped",
                json!({ "reason": format!("the message it joined was {}", s.lead_status), "lead": s.lead_id }),
            )
            .await?;
            queue_step(
                &mut tx,
                member.id,
                &member.invoice_number,
                &member.name,
                member.channel.as_str(),
                now,
            )
            .await?;
        }
    }
    tx.commit().await.context("committing the group settlement")?;
    Ok(settled.len())
}
