//! Promises to pay (`promise.recorded`): the sequence pauses until the promised date plus
//! the grace days, replacing the invoice's current promise. A call outcome's promise goes
//! through the same [`promise_pause`].

use crate::inbound::{invoice_message, rejected, require_open, timezone, today, InvoiceMessage};
use crate::sequence_effects::pause;
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::{names, PromiseRecordedV1};
use relance_domain::collections::{promise_pause_end, NewPromise, PauseKind};
use relance_domain::Rejection;
use relance_messaging::HandlerError;
use relance_sequence::actions::check;
use relance_sequence::resume;
use relance_storage::invoices::InvoiceRecord;
use relance_storage::pauses::{self, NewPause};
use relance_storage::PgConnection;

impl InvoiceMessage for PromiseRecordedV1 {
    invoice_message!(
        PromiseRecordedV1,
        promise,
        NewPromise,
        names::PROMISE_RECORDED,
        "promise",
        check::promise
    );

    async fn apply(
        &self,
        promise: NewPromise,
        tx: &mut PgConnection,
        config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        require_open(Self::WHAT, invoice)?;
        let until = promise_pause_end(
            promise.promised_on,
            today(config, invoice),
            config.settings.promise_grace_days,
            timezone(invoice),
        )
        .map_err(rejected(Self::WHAT, &invoice.number))?;
        let reason = promise
            .note
            .clone()
            .unwrap_or_else(|| format!("promise to pay by {}", promise.promised_on));
        let source = (
            Self::ROUTING_KEY,
            self.event_id.as_str(),
            self.promise.source.as_deref(),
        );
        promise_pause(tx, invoice, promise.promised_on, until, &reason, source, now).await?;
        Ok(())
    }
}

/// Pauses the invoice on a promise to pay by `promised_on` until `until`, replacing its
/// current promise. `source`: the routing key and event id of the message that brought it
/// (`promise.recorded`, or the outcome of a call).
pub(crate) async fn promise_pause(
    tx: &mut PgConnection,
    invoice: &InvoiceRecord,
    promised_on: chrono::NaiveDate,
    until: DateTime<Utc>,
    reason: &str,
    (source, event_id, origin): (&str, &str, Option<&str>),
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let replaced = format!("replaced by the promise to pay by {promised_on}");
    let previous = pauses::end_kinds(tx, invoice.id, &[PauseKind::Promise.as_str()], &replaced, now).await?;
    resume::journal_ended(tx, &invoice.number, &previous, &replaced, now).await?;
    let new = NewPause {
        kind: PauseKind::Promise.as_str(),
        reason,
        promised_on: Some(promised_on),
        until: Some(until),
        source,
        event_id,
        origin,
    };
    pause(tx, invoice, &new, now).await
}
