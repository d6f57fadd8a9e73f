//! Pauses by hand (`pause.requested`, `resume.requested`): the accounts team holds an
//! invoice's reminders (a pause of kind `manual`, with no end date) until it releases them.
//! Releasing ends only that pause: the sequence resumes if nothing else (a promise, a
//! dispute, a suspension) still holds it.

use crate::inbound::{invoice_message, refused, require_open, InvoiceMessage};
use crate::sequence_effects::{end_pauses, pause};
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::{names, PauseRequestedV1, ResumeRequestedV1};
use relance_domain::collections::{NewManualPause, NewManualResume, PauseKind};
use relance_domain::Rejection;
use relance_messaging::HandlerError;
use relance_sequence::actions::check;
use relance_storage::invoices::InvoiceRecord;
use relance_storage::pauses::{self, NewPause};
use relance_storage::PgConnection;

impl InvoiceMessage for PauseRequestedV1 {
    invoice_message!(
        PauseRequestedV1,
        pause,
        NewManualPause,
        names::PAUSE_REQUESTED,
        "pause",
        check::pause
    );

    async fn apply(
        &self,
        request: NewManualPause,
        tx: &mut PgConnection,
        _config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        require_open(Self::WHAT, invoice)?;
        if let Some(open) = pauses::active(tx, invoice.id)
            .await?
            .into_iter()
            .find(|p| p.kind == PauseKind::Manual)
        {
            return Err(refused(
                Self::WHAT,
                &invoice.number,
                format!(
                    "it is already paused by hand since {} ({})",
                    open.started_at, open.reason
                ),
            ));
        }
        let new = NewPause {
            kind: PauseKind::Manual.as_str(),
            reason: &request.reason,
            promised_on: None,
            until: None,
            source: Self::ROUTING_KEY,
            event_id: &self.event_id,
            origin: self.pause.source.as_deref(),
        };
        pause(tx, invoice, &new, now).await?;
        Ok(())
    }
}

impl InvoiceMessage for ResumeRequestedV1 {
    invoice_message!(
        ResumeRequestedV1,
        resume,
        NewManualResume,
        names::RESUME_REQUESTED,
        "resume",
        check::resume
    );

    async fn apply(
        &self,
        request: NewManualResume,
        tx: &mut PgConnection,
        config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        require_open(Self::WHAT, invoice)?;
        let open = pauses::active(tx, invoice.id).await?;
        // Releases a pause by hand, and declines a customer's request for a payment plan.
        if !open
            .iter()
            .any(|p| matches!(p.kind, PauseKind::Manual | PauseKind::PlanRequest))
        {
            return Err(refused(Self::WHAT, &invoice.number, "it is not paused by hand"));
        }
        let reason = match &request.note {
            Some(note) => format!("released by hand ({note})"),
            None => "released by hand".to_string(),
        };
        end_pauses(
            tx,
            config,
            invoice,
            &[PauseKind::Manual, PauseKind::PlanRequest],
            &reason,
            now,
        )
        .await?;
        Ok(())
    }
}
