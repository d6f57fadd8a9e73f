//! Disputes (`dispute.opened`, `dispute.resolved`): an open dispute pauses the sequence
//! until it is resolved; a resolution upholds the invoice (the sequence resumes) or credits
//! it (a credit note, see `credit_notes`). A call outcome's dispute goes through the same
//! [`dispute_pause`].

use crate::credit_notes::{apply_credit_note, Balance};
use crate::inbound::{invoice_message, refused, require_open, InvoiceMessage};
use crate::sequence_effects::{end_pauses, pause};
use anyhow::Context;
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::{names, DisputeOpenedV1, DisputeResolvedV1};
use relance_domain::collections::{NewDispute, NewResolution, Outcome, PauseKind};
use relance_domain::Rejection;
use relance_messaging::HandlerError;
use relance_sequence::actions::check;
use relance_storage::invoices::{self, InvoiceRecord};
use relance_storage::pauses::{self, NewPause};
use relance_storage::PgConnection;

impl InvoiceMessage for DisputeOpenedV1 {
    invoice_message!(
        DisputeOpenedV1,
        dispute,
        NewDispute,
        names::DISPUTE_OPENED,
        "dispute",
        check::dispute
    );

    async fn apply(
        &self,
        dispute: NewDispute,
        tx: &mut PgConnection,
        _config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        require_open(Self::WHAT, invoice)?;
        let source = (
            Self::ROUTING_KEY,
            self.event_id.as_str(),
            self.dispute.source.as_deref(),
        );
        dispute_pause(tx, invoice, Self::WHAT, &dispute.reason, source, now).await
    }
}

/// Pauses the invoice on a dispute until it is resolved; refused (as `what`) when a
/// dispute is already open. `source`: the routing key and event id of the message.
pub(crate) async fn dispute_pause(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    what: &str,
    reason: &str,
    (source, event_id, origin): (&str, &str, Option<&str>),
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    if let Some(open) = pauses::active(tx, invoice.id)
        .await?
        .into_iter()
        .find(|p| p.kind == PauseKind::Dispute)
    {
        return Err(refused(
            what,
            &invoice.number,
            format!(
                "a dispute is already open since {} ({})",
                open.started_at, open.reason
            ),
        ));
    }
    let new = NewPause {
        kind: PauseKind::Dispute.as_str(),
        reason,
        promised_on: None,
        until: None,
        source,
        event_id,
        origin,
    };
    pause(tx, invoice, &new, now).await?;
    Ok(())
}

impl InvoiceMessage for DisputeResolvedV1 {
    invoice_message!(
        DisputeResolvedV1,
        resolution,
        NewResolution,
        names::DISPUTE_RESOLVED,
        "dispute resolution",
        check::resolution
    );

    async fn apply(
        &self,
        resolution: NewResolution,
        tx: &mut PgConnection,
        config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        require_open(Self::WHAT, invoice)?;
        let open = pauses::active(tx, invoice.id).await?;
        if !open.iter().any(|p| p.kind == PauseKind::Dispute) {
            return Err(refused(Self::WHAT, &invoice.number, "no dispute is open on it"));
        }
        let reason = match &resolution.outcome {
            Outcome::Upheld => "dispute resolved: the invoice is upheld".to_string(),
            Outcome::Credited(note) => format!("dispute resolved by credit note {}", note.id),
        };
        let reason = match &resolution.note {
            Some(note) => format!("{reason} ({note})"),
            None => reason,
        };
        if let Outcome::Credited(note) = &resolution.outcome {
            if apply_credit_note(tx, config, invoice, note, now).await? == Balance::Ended {
                return Ok(());
            }
        }
        // The balance may have changed: resume from the invoice as it is now.
        let invoice = invoices::find_by_id(tx, invoice.id)
            .await?
            .context("re-reading the invoice")?;
        end_pauses(tx, config, &invoice, &[PauseKind::Dispute], &reason, now).await?;
        Ok(())
    }
}
