//! A customer's request for a payment plan (`payment_plan.requested`, from the customer
//! page): journaled with what it proposes and where it came from, and the sequence paused
//! (kind `plan_request`, no end date) while the accounts team decides. `relance tasks` and
//! the console's invoice page list it. The team agrees a plan (`payment_plan.agreed`, whose
//! plan then holds the invoice and lifts this pause) or declines it (`resume.requested`,
//! which ends the pause and resumes the sequence).

use crate::inbound::{invoice_message, refused, require_open, InvoiceMessage};
use crate::sequence_effects::pause;
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::{names, PaymentPlanRequestedV1};
use relance_domain::collections::PauseKind;
use relance_domain::Rejection;
use relance_messaging::HandlerError;
use relance_sequence::actions::{check, NewPlanRequest};
use relance_storage::invoices::InvoiceRecord;
use relance_storage::pauses::{self, NewPause};
use relance_storage::{journal, PgConnection};
use serde_json::json;

impl InvoiceMessage for PaymentPlanRequestedV1 {
    invoice_message!(
        PaymentPlanRequestedV1,
        request,
        NewPlanRequest,
        names::PAYMENT_PLAN_REQUESTED,
        "payment plan request",
        check::plan_request
    );

    async fn apply(
        &self,
        request: NewPlanRequest,
        tx: &mut PgConnection,
        _config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        require_open(Self::WHAT, invoice)?;
        let active = pauses::active(tx, invoice.id).await?;
        if active.iter().any(|p| p.kind == PauseKind::Plan) {
            return Err(refused(
                Self::WHAT,
                &invoice.number,
                "a payment plan already holds it",
            ));
        }
        if active.iter().any(|p| p.kind == PauseKind::PlanRequest) {
            return Err(refused(
                Self::WHAT,
                &invoice.number,
                "a payment plan request already waits for the accounts team",
            ));
        }
        let proposal = request.proposal();
        journal::append(
            tx,
            now,
            &invoice.number,
            None,
            names::PAYMENT_PLAN_REQUESTED,
            json!({
                "months": request.months,
                "instalments": request.instalments.iter()
                    .map(|(on, amount)| json!({ "due_on": on, "amount": amount.to_string() }))
                    .collect::<Vec<_>>(),
                "proposal": proposal,
                "note": request.note,
                "source": request.source,
                "event_id": self.event_id,
            }),
        )
        .await?;
        let reason = match &request.note {
            Some(note) => format!("payment plan requested ({proposal}): {note}"),
            None => format!("payment plan requested ({proposal})"),
        };
        let new = NewPause {
            kind: PauseKind::PlanRequest.as_str(),
            reason: &reason,
            promised_on: None,
            until: None,
            source: Self::ROUTING_KEY,
            event_id: &self.event_id,
            origin: request.source.as_deref(),
        };
        pause(tx, invoice, &new, now).await?;
        Ok(())
    }
}
