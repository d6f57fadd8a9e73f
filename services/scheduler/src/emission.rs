//! Emission: finds the invoices whose steps are due, decides for each what becomes of its
//! pending steps (skipped, postponed, queued) and applies it, queueing `reminder.due` jobs.
//! Invoices are claimed with `FOR UPDATE SKIP LOCKED`, so a step is emitted once however
//! many scheduler copies run. The decision ([`decide`]) is pure; loading and applying are
//! around it in [`emit_batch`].

use crate::grouping;
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use relance_config::Config;
use relance_contracts::{ReminderPostponedV1, ReminderSkippedV1};
use relance_domain::plan::{next_day_in_window, send_decision, SendDecision};
use relance_domain::policy::DunningPolicy;
use relance_domain::{calendar_for_customer, triage_pending, StepCandidate};
use relance_sequence::{outgoing, queue_step};
use relance_storage::steps::{self, ClaimCursor, DueInvoice, StepRecord, StepStatus};
use sqlx::{PgConnection, PgPool};
use std::collections::HashSet;
use tracing::Instrument;
use uuid::Uuid;

/// Emits every step that is due now, batch after batch, each claim reading on from where
/// the last one stopped ([`ClaimCursor`]). Returns how many invoices it handled.
pub async fn emit_due_steps(db: &PgPool, config: &Config) -> anyhow::Result<usize> {
    let mut total = 0;
    let mut cursor = ClaimCursor::default();
    loop {
        let handled = emit_batch(db, config, &mut cursor).await?;
        total += handled;
        let full = handled >= usize::try_from(config.settings.scheduler_batch).unwrap_or(usize::MAX);
        if !full && !cursor.more() {
            return Ok(total);
        }
    }
}

/// What becomes of one pending step of a claimed invoice.
#[derive(Debug, Clone)]
pub enum StepAction<'a> {
    /// Overtaken: it never goes out.
    Skip {
        step: &'a StepRecord,
        reason: &'static str,
    },
    /// Not now: it goes out at `until` (`calendar` named when its send window decided).
    Postpone {
        step: &'a StepRecord,
        until: DateTime<Utc>,
        reason: &'static str,
        calendar: Option<String>,
    },
    /// It goes out now: queued as a `reminder.due` job.
    Queue { step: &'a StepRecord },
}

/// The due invoices of one batch, with their pending steps and the days they last emitted on.
struct DueBatch {
    invoices: Vec<DueInvoice>,
    pending: Vec<StepRecord>,
    emitted_days: Vec<(Uuid, NaiveDate)>,
}

/// Claims up to a batch of invoices with due steps and loads their pending steps, a
/// customer's oldest overdue invoice first: its reminder leads the grouped message.
async fn load_due_batch(
    tx: &mut PgConnection,
    config: &Config,
    now: DateTime<Utc>,
    cursor: &mut ClaimCursor,
) -> anyhow::Result<DueBatch> {
    let mut invoices = steps::claim_due_invoices(tx, now, config.settings.scheduler_batch, cursor).await?;
    invoices
        .sort_by(|a, b| (&a.customer_id, a.due_on, &a.number).cmp(&(&b.customer_id, b.due_on, &b.number)));
    let ids: Vec<Uuid> = invoices.iter().map(|i| i.id).collect();
    let (pending, emitted_days) = if ids.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        (
            steps::pending_steps(tx, &ids).await?,
            steps::emission_days(tx, &ids).await?,
        )
    };
    Ok(DueBatch {
        invoices,
        pending,
        emitted_days,
    })
}

/// Runs in the scheduler pass's span (no span of its own): the pass links to the reminders
/// it emits.
async fn emit_batch(db: &PgPool, config: &Config, cursor: &mut ClaimCursor) -> anyhow::Result<usize> {
    let now = config.clock.now();
    let mut tx = db.begin().await.context("starting the scheduling transaction")?;
    let batch = load_due_batch(&mut tx, config, now, cursor).await?;
    if batch.invoices.is_empty() {
        return Ok(0);
    }
    // Steps and invoices that joined an earlier invoice's grouped message in this batch.
    let (mut grouped_steps, mut grouped_invoices) = (HashSet::new(), HashSet::new());
    for invoice in &batch.invoices {
        let today = local_day(invoice, now);
        let mine: Vec<&StepRecord> = batch
            .pending
            .iter()
            .filter(|s| s.invoice_id == invoice.id && !grouped_steps.contains(&s.id))
            .collect();
        let emitted_today = grouped_invoices.contains(&invoice.id)
            || batch
                .emitted_days
                .iter()
                .any(|(id, day)| *id == invoice.id && *day == today);
        for action in decide(
            config.policy_for(invoice.policy.as_deref()),
            invoice,
            &mine,
            emitted_today,
            now,
        ) {
            if let Some((joined_steps, joined_invoices)) =
                apply(&mut tx, config, invoice, &action, now).await?
            {
                grouped_steps.extend(joined_steps);
                grouped_invoices.extend(joined_invoices);
            }
        }
    }
    tx.commit()
        .await
        .context("committing the scheduling transaction")?;
    Ok(batch.invoices.len())
}

/// The invoice's day in its customer's time zone.
fn local_day(invoice: &DueInvoice, now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&invoice.timezone).date_naive()
}

/// What becomes of an invoice's pending steps at `now`: the steps overtaken are skipped;
/// the latest due step is postponed to the next day in its window when a reminder already
/// went out today, postponed to its window's opening when that is closed, or else queued.
/// The window of a step: its own in the customer's segment (re-planning keeps pending steps
/// in that segment), else the policy's default.
pub fn decide<'a>(
    policy: &DunningPolicy,
    invoice: &DueInvoice,
    pending: &[&'a StepRecord],
    emitted_today: bool,
    now: DateTime<Utc>,
) -> Vec<StepAction<'a>> {
    let (tz, risk) = (invoice.timezone, invoice.risk);
    let calendar = calendar_for_customer(&invoice.country, invoice.region.as_deref());
    let candidates: Vec<StepCandidate> = pending
        .iter()
        .map(|s| StepCandidate {
            id: s.id,
            position: s.position,
            due_at: s.due_at,
        })
        .collect();
    let triage = triage_pending(&candidates, now, emitted_today);
    let mut actions: Vec<StepAction<'a>> = pending
        .iter()
        .filter(|s| triage.skip.contains(&s.id))
        .map(|step| StepAction::Skip {
            step,
            reason: if step.due_at <= now {
                "overtaken by a later step that is also due (catch-up)"
            } else {
                "overtaken by a later step (the sequence only moves forward)"
            },
        })
        .collect();
    if let Some(step) = pending.iter().find(|s| Some(s.id) == triage.postpone) {
        let window = policy.step_window(risk, &step.name);
        actions.push(StepAction::Postpone {
            step,
            until: next_day_in_window(policy, &window, calendar.as_ref(), tz, now),
            reason: "a reminder for this invoice already went out today",
            calendar: None,
        });
    }
    if let Some(step) = pending.iter().find(|s| Some(s.id) == triage.emit) {
        let window = policy.step_window(risk, &step.name);
        actions.push(
            match send_decision(&window, calendar.as_ref(), tz, step.due_at, now) {
                SendDecision::WaitUntil(until) => StepAction::Postpone {
                    step,
                    until,
                    reason: "outside its send window",
                    calendar: Some(calendar.name().to_string()),
                },
                SendDecision::Now => StepAction::Queue { step },
            },
        );
    }
    actions
}

/// Applies one decided action in the scheduling transaction. A queued step gathers the
/// customer's other overdue invoices' steps into its message: those are returned (the steps
/// that joined, and their invoices).
async fn apply(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &DueInvoice,
    action: &StepAction<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<(HashSet<Uuid>, HashSet<Uuid>)>> {
    match action {
        StepAction::Skip { step, reason } => {
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
            Ok(None)
        }
        StepAction::Postpone {
            step,
            until,
            reason,
            calendar,
        } => {
            steps::postpone(tx, step.id, *until, now).await?;
            let detail = ReminderPostponedV1 {
                reason: reason.to_string(),
                until: Some(Some(*until)),
                calendar: calendar.clone(),
            };
            outgoing::announce_step_detail(tx, now, step, &detail).await?;
            Ok(None)
        }
        StepAction::Queue { step } => {
            // One trace per reminder: its emission is a root span, continued by its render,
            // its delivery and the events after them; the pass links to it, and it to the pass.
            let emission = tracing::info_span!(
                parent: None,
                "emit",
                otel.name = "emit reminder",
                step = %step.name,
                channel = step.channel.as_str(),
            );
            let pass = tracing::Span::current();
            relance_telemetry::add_link(&pass, &emission);
            relance_telemetry::add_link(&emission, &pass);
            queue_due_step(tx, config, invoice, step, now)
                .instrument(emission)
                .await
        }
    }
}

/// Queues a due step (and what joins its message).
async fn queue_due_step(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &DueInvoice,
    step: &StepRecord,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<(HashSet<Uuid>, HashSet<Uuid>)>> {
    let today = local_day(invoice, now);
    let trace = relance_telemetry::current_trace_headers();
    if !steps::mark_queued_traced(tx, step.id, now, today, &trace).await? {
        return Ok(None);
    }
    let lead = grouping::LeadStep {
        step,
        customer_id: &invoice.customer_id,
        due_on: invoice.due_on,
        currency: &invoice.currency,
        policy: invoice.policy.as_deref(),
    };
    let joined = grouping::gather(tx, config, &lead, invoice.timezone, today, now).await?;
    queue_step(
        tx,
        step.id,
        &step.invoice_number,
        &step.name,
        step.channel.as_str(),
        now,
    )
    .await?;
    Ok(Some(joined))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use chrono::TimeZone;
    use relance_domain::{Channel, Risk, StepKind, Tone};

    fn invoice() -> DueInvoice {
        DueInvoice {
            id: Uuid::from_u128(1),
            number: "INV-1".to_string(),
            timezone: chrono_tz::Europe::Paris,
            risk: Risk::Medium,
            country: "FR".to_string(),
            region: None,
            customer_id: "C-1".to_string(),
            due_on: NaiveDate::from_ymd_opt(2025, 3, 1).unwrap(),
            currency: "EUR".to_string(),
            policy: None,
        }
    }

    fn step(id: u128, name: &str, position: i32, due_at: DateTime<Utc>) -> StepRecord {
        StepRecord {
            id: Uuid::from_u128(id),
            invoice_id: Uuid::from_u128(1),
            invoice_number: "INV-1".to_string(),
            name: name.to_string(),
            kind: StepKind::Reminder,
            position,
            channel: Channel::Email,
            template: "reminder".to_string(),
            tone: Tone::Firm,
            due_at,
            status: StepStatus::Pending,
            emitted_on: None,
        }
    }

    /// Each action's kind and step, to compare.
    fn summary(actions: &[StepAction<'_>]) -> Vec<(&'static str, Uuid)> {
        actions
            .iter()
            .map(|a| match a {
                StepAction::Skip { step, .. } => ("skip", step.id),
                StepAction::Postpone { step, .. } => ("postpone", step.id),
                StepAction::Queue { step } => ("queue", step.id),
            })
            .collect()
    }

    fn policy() -> DunningPolicy {
        DunningPolicy::default_policy().unwrap()
    }

    /// Wednesday 12 March 2025, 10:00 in Paris: inside the `reminders` window (Tue-Thu 9-12).
    fn wednesday_morning() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 12, 9, 0, 0).unwrap()
    }

    #[test]
    fn a_due_step_inside_its_window_is_queued() {
        let now = wednesday_morning();
        let due = step(10, "reminder_1", 1, now - chrono::Duration::hours(1));
        let actions = decide(&policy(), &invoice(), &[&due], false, now);
        assert_eq!(summary(&actions), vec![("queue", due.id)]);
    }

    #[test]
    fn a_due_step_outside_its_window_waits_for_it_with_the_calendar_named() {
        // Saturday 15 March 2025, 10:00 in Paris: the window opens on Tuesday.
        let now = Utc.with_ymd_and_hms(2025, 3, 15, 9, 0, 0).unwrap();
        let due = step(10, "reminder_1", 1, now - chrono::Duration::hours(1));
        let actions = decide(&policy(), &invoice(), &[&due], false, now);
        let [StepAction::Postpone {
            step,
            until,
            reason,
            calendar,
        }] = actions.as_slice()
        else {
            panic!("expected one postponement, got {actions:?}");
        };
        assert_eq!(step.id, due.id);
        assert_eq!(*reason, "outside its send window");
        assert!(calendar.is_some());
        assert_eq!(*until, Utc.with_ymd_and_hms(2025, 3, 18, 8, 0, 0).unwrap());
    }

    #[test]
    fn a_second_reminder_the_same_day_is_postponed_to_the_next_day_in_its_window() {
        let now = wednesday_morning();
        let due = step(10, "reminder_1", 1, now - chrono::Duration::hours(1));
        let actions = decide(&policy(), &invoice(), &[&due], true, now);
        let [StepAction::Postpone {
            until,
            reason,
            calendar,
            ..
        }] = actions.as_slice()
        else {
            panic!("expected one postponement, got {actions:?}");
        };
        assert_eq!(*reason, "a reminder for this invoice already went out today");
        assert_eq!(*calendar, None);
        assert!(*until > now);
    }

    #[test]
    fn earlier_due_steps_are_skipped_and_the_latest_is_queued() {
        let now = wednesday_morning();
        let first = step(10, "reminder_1", 1, now - chrono::Duration::days(3));
        let second = step(11, "reminder_2", 2, now - chrono::Duration::hours(1));
        let actions = decide(&policy(), &invoice(), &[&first, &second], false, now);
        assert_eq!(summary(&actions), vec![("skip", first.id), ("queue", second.id)]);
        let StepAction::Skip { reason, .. } = &actions[0] else {
            panic!("expected a skip first, got {actions:?}");
        };
        assert_eq!(*reason, "overtaken by a later step that is also due (catch-up)");
    }

    #[test]
    fn nothing_due_decides_nothing() {
        let now = wednesday_morning();
        let later = step(10, "reminder_1", 1, now + chrono::Duration::days(1));
        assert!(decide(&policy(), &invoice(), &[&later], false, now).is_empty());
    }
}
