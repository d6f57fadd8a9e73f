//! What the creditor may claim on top of the balance once an invoice is late: interest
//! accrued to date (Code de commerce L441-10, or the consumer rate) and, for a business, the
//! 40 EUR recovery indemnity (D441-5). Stated from the firm reminders on, and in the formal
//! notice, whatever the channel.

use crate::letter::interest_terms;
use chrono::NaiveDate;
use relance_config::Config;
use relance_domain::interest::{late_interest, recovery_indemnity};
use relance_domain::CustomerKind;
use relance_storage::invoices::InvoiceRecord;
use rust_decimal::Decimal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub late_interest: Decimal,
    pub recovery_indemnity: Decimal,
    /// Balance + interest + indemnity.
    pub total: Decimal,
    /// The annual rate of the latest period, in percent.
    pub rate_percent: Option<Decimal>,
}

/// The claim on `today`, or `None` while the invoice is not yet late.
pub fn claim_on(
    config: &Config,
    invoice: &InvoiceRecord,
    kind: CustomerKind,
    payments: &[(NaiveDate, Decimal)],
    today: NaiveDate,
) -> Option<Claim> {
    if today <= invoice.due_on {
        return None;
    }
    // Credit notes lower the debt itself: interest runs on the invoice net of them.
    let owed = invoice.amount - invoice.credited;
    let interest = late_interest(
        &interest_terms(&config.settings.channels),
        kind,
        owed,
        invoice.due_on,
        payments,
        today,
    );
    let indemnity = recovery_indemnity(kind);
    Some(Claim {
        late_interest: interest.total,
        recovery_indemnity: indemnity,
        total: invoice.balance + interest.total + indemnity,
        rate_percent: interest.periods.last().map(|p| p.annual_rate_percent),
    })
}
