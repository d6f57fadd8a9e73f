//! What inbound messages do to an invoice's sequence: pause it (stopping the reminders on
//! their way), close the invoice (cancelling every reminder not sent yet), and end pauses
//! (resuming the sequence when nothing else holds it).

use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::{InvoiceClosedV1, ReminderCancelledV1};
use relance_domain::collections::PauseKind;
use relance_sequence::{outgoing, resume};
use relance_storage::invoices::InvoiceRecord;
use relance_storage::pauses::{self, NewPause};
use relance_storage::steps;
use relance_storage::{adjustments, PgConnection};

/// Opens a pause and stops the reminders on their way (queued, rendered): they go back to
/// pending and are re-dated when the sequence resumes.
pub(crate) async fn pause(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    new: &NewPause<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    relance_sequence::replies::pause(tx, invoice, new, now).await
}

/// Closes the invoice: cancels every reminder not sent yet and ends its pauses. No thank-you.
pub(crate) async fn close(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    detail: &InvoiceClosedV1,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let reason = detail.reason();
    adjustments::close(tx, invoice.id, reason, now).await?;
    let why = format!("invoice closed ({reason})");
    for cancelled in steps::cancel_open(tx, invoice.id, &why, now).await? {
        let cancelled_detail = ReminderCancelledV1 {
            reason: why.clone(),
            was: cancelled.was.to_string(),
            stage: None,
        };
        outgoing::announce_detail(tx, now, &invoice.number, Some(&cancelled.step), &cancelled_detail).await?;
    }
    end_all_pauses(tx, invoice, &why, now).await?;
    outgoing::announce_detail(tx, now, &invoice.number, None, detail).await
}

/// Ends every pause of an invoice whose sequence is over (settled, closed).
pub(crate) async fn end_all_pauses(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let all = [
        PauseKind::Promise.as_str(),
        PauseKind::Dispute.as_str(),
        PauseKind::Suspension.as_str(),
        PauseKind::Manual.as_str(),
        PauseKind::Plan.as_str(),
        PauseKind::Reply.as_str(),
        PauseKind::PlanRequest.as_str(),
    ];
    let ended = pauses::end_kinds(tx, invoice.id, &all, reason, now).await?;
    resume::journal_ended(tx, &invoice.number, &ended, reason, now).await
}

/// Ends the pauses of these kinds and resumes the sequence if nothing else holds it.
pub(crate) async fn end_pauses(
    tx: &mut PgConnection,
    config: &Config,
    invoice: &InvoiceRecord,
    kinds: &[PauseKind],
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let ended = pauses::end_kinds(tx, invoice.id, &kinds, reason, now).await?;
    resume::after_pauses_ended(tx, config, invoice, &ended, reason, now, now).await
}
