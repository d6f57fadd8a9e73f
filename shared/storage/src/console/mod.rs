//! What the collections console reads: the tracking table, a customer's and an invoice's
//! timeline, aging and DSO, the steps' effectiveness. Read-only queries, each over an index
//! (migrations/20261205000000_console.sql), so the collections dashboard can reuse them.

pub mod by_day;
pub mod figures;
pub mod invoices;
pub mod timeline;

use rust_decimal::Decimal;

/// An amount as the console shows it: two decimals, always (`0.00`, `1200.50`).
pub fn cents(amount: Decimal) -> Decimal {
    let mut rounded = amount.round_dp(2);
    rounded.rescale(2);
    rounded
}
