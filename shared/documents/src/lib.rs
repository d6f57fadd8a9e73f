//! Documents laid out as PDF, shared by the services that send them and those that show them:
//! the A4 layout with the creditor's letterhead (`pdf`, `letterhead`), and the customer's
//! statement of account (`statement`). Also the one place an invoice's claim (interest to
//! date, indemnity) is computed from its stored rows ([`claim_of`]), for every channel and
//! document. Reads nothing from the database and sends nothing: callers load the rows.

pub mod letterhead;
pub mod pdf;
pub mod statement;

use chrono::NaiveDate;
use relance_config::Config;
use relance_domain::claim::{claim_on, Claim, Debt};
use relance_storage::deliveries::ClaimHistory;
use relance_storage::invoices::InvoiceRecord;

/// What is owed on top of the balance of `invoice` on `today` (the customer's local date),
/// `None` until its due date has passed: the one computation every channel and the statement
/// of account state, from the same payments and formal notice.
pub fn claim_of(
    config: &Config,
    invoice: &InvoiceRecord,
    history: &ClaimHistory,
    currency: relance_domain::money::Currency,
    today: NaiveDate,
) -> Option<Claim> {
    let notice_on =
        history.formal_notice_effective_on(invoice.timezone, config.settings.postal_delivery_days);
    claim_on(
        &config
            .settings
            .channels
            .interest_terms()
            .for_customer(invoice.late_interest_percent),
        invoice.kind,
        &debt_of(invoice, currency),
        &history.payments,
        notice_on,
        today,
    )
}

/// The amounts of an invoice a claim is computed from.
pub fn debt_of(invoice: &InvoiceRecord, currency: relance_domain::money::Currency) -> Debt {
    Debt {
        amount: invoice.amount,
        credited: invoice.credited,
        balance: invoice.balance,
        due_on: invoice.due_on,
        currency,
    }
}
