//! The payments service: applies what happens to an invoice from outside relance, each
//! message once, under the invoice row lock, journaled and announced in the same
//! transaction. It consumes `<ns>.payments.payments` (the queue's name is part of the
//! contract and kept; it carries more than payments). One module per inbound message kind:
//! - `payment.received`: [`payments`] (settling the invoice, the thank-you);
//! - `promise.recorded`: [`promises`];
//! - `dispute.opened`, `dispute.resolved`: [`disputes`];
//! - `credit_note.issued`, `invoice.written_off`: [`credit_notes`];
//! - `invoice.lifecycle_status`: [`lifecycle`];
//! - `call.outcome`: [`call_outcomes`];
//! - `pause.requested`, `resume.requested` (pauses by hand): [`manual_pauses`].
//! - `payment_plan.agreed`: [`plans`] (payments are allocated to its instalments in
//!   [`payments`]).
//! - `approval.granted`, `approval.rejected` (steps waiting for approval): [`approvals`].
//!
//! [`inbound`] is what they share (dispatch, validate, apply once under the lock), and
//! [`sequence_effects`] what they do to the sequence (pause, close, end pauses).

pub mod approvals;
pub mod call_outcomes;
pub mod credit_notes;
pub mod disputes;
pub mod inbound;
pub mod lifecycle;
pub mod manual_pauses;
pub mod payments;
pub mod plan_requests;
pub mod plans;
pub mod promises;
pub mod replies;
pub mod sequence_effects;

pub use payments::record_payment;

use relance_config::Config;
use relance_contracts::names::{self, Names};
use relance_messaging::{HandlerError, Incoming, Readiness};
use rust_decimal::Decimal;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "payments";

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_readiness(config, Readiness::default(), shutdown).await
}

pub async fn run_with_readiness(
    config: Config,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(db) = relance_messaging::worker::connect_database(SERVICE, &config, &shutdown).await? else {
        return Ok(());
    };
    relance_messaging::run_queue_worker(
        SERVICE,
        &config,
        &db,
        Names::payments_queue,
        readiness,
        shutdown,
        relance_messaging::worker::with_db_and_config(&db, &config, |db, config, message| async move {
            handle_inbound(&db, &config, message).await
        }),
    )
    .await
}

/// Dispatches on the routing key: payments in [`payments`], every other kind through
/// [`inbound::handle`] to its module.
pub async fn handle_inbound(db: &PgPool, config: &Config, message: Incoming) -> Result<(), HandlerError> {
    match message.routing_key.as_str() {
        // A retry scheduled before routing keys were kept through retries arrives under the
        // queue's name: only payments were on this queue then.
        key if key == names::PAYMENT_RECEIVED || key == message.queue => {
            payments::record_payment(db, config, message).await
        }
        _ => inbound::handle(db, config, message).await,
    }
}

/// An amount as the journal and events write it: no trailing zeros.
pub(crate) fn amount_text(amount: Decimal) -> String {
    amount.normalize().to_string()
}
