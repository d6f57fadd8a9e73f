//! The invoice and step the call-script and letter tests render.
#![allow(clippy::unwrap_used)]

use chrono::{NaiveDate, Utc};
use relance_storage::invoices::InvoiceRecord;
use relance_storage::steps::StepRecord;
use rust_decimal::Decimal;

/// Invoice F-9 of ACME Industrie SA: 1 500.00 EUR issued 7 February 2026, due 9 March,
/// 1 000.00 left to pay.
pub(crate) fn invoice(kind: &str, language: &str) -> InvoiceRecord {
    InvoiceRecord {
        id: uuid::Uuid::nil(),
        number: "F-9".into(),
        amount: Decimal::new(150000, 2),
        currency: "EUR".into(),
        balance: Decimal::new(100000, 2),
        credited: Decimal::ZERO,
        issued_on: NaiveDate::from_ymd_opt(2026, 2, 7).unwrap(),
        due_on: NaiveDate::from_ymd_opt(2026, 3, 9).unwrap(),
        payment_link: None,
        has_pdf: false,
        status: "open".parse().unwrap(),
        customer_id: "C-9".into(),
        customer_name: "ACME Industrie SA".into(),
        contact_name: "Jeanne Martin".into(),
        email: "compta@acme.test".into(),
        cc: vec![],
        language: language.parse().unwrap(),
        timezone: "Europe/Paris".parse().unwrap(),
        risk: "medium".parse().unwrap(),
        kind: kind.parse().unwrap(),
        country: "FR".into(),
        region: None,
        late_interest_percent: None,
        policy: None,
        templates: None,
    }
}

/// A queued step of invoice F-9.
pub(crate) fn step(name: &str, kind: &str, channel: &str, template: &str, tone: &str) -> StepRecord {
    StepRecord {
        id: uuid::Uuid::nil(),
        invoice_id: uuid::Uuid::nil(),
        invoice_number: "F-9".into(),
        name: name.into(),
        kind: kind.parse().unwrap(),
        position: 3,
        channel: channel.parse().unwrap(),
        template: template.into(),
        tone: tone.parse().unwrap(),
        due_at: Utc::now(),
        status: "queued".parse().unwrap(),
        emitted_on: None,
    }
}
