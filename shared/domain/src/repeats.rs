//! Repeated business keys: an `invoice.issued` for an invoice number already registered, or
//! a `payment.received` for a payment id already recorded, under a new event id. Decides
//! whether the repeat says what was applied (a harmless duplicate) or something else (a
//! conflict, with the fields that differ). Pure: the consumers load the facts and apply the
//! decision; a repeat never changes what was applied.

use crate::validation::{NewInvoice, NewPayment};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Facts of a message, by field path (`invoice.customer.email`), as text; `None` when absent.
pub type Facts = BTreeMap<String, Option<String>>;

/// A field on which a repeat disagrees with what was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub field: String,
    /// What relance applied (registered invoice, recorded payment).
    pub applied: Option<String>,
    /// What the repeat says.
    pub received: Option<String>,
}

fn amount_text(amount: Decimal) -> String {
    amount.normalize().to_string()
}

/// The facts of an accepted `invoice.issued`, as validated (normalised phone, defaults
/// applied), kept with the invoice so a later repeat can be compared with them. The PDF is
/// not among them.
pub fn invoice_facts(invoice: &NewInvoice) -> Facts {
    let c = &invoice.customer;
    let text = |s: &str| Some(s.to_string());
    [
        ("invoice.amount", Some(amount_text(invoice.amount.amount))),
        ("invoice.currency", text(invoice.amount.currency.code())),
        ("invoice.issued_on", Some(invoice.issued_on.to_string())),
        ("invoice.due_on", Some(invoice.due_on.to_string())),
        ("invoice.payment_link", invoice.payment_link.clone()),
        ("invoice.customer.id", text(&c.id)),
        ("invoice.customer.name", text(&c.name)),
        ("invoice.customer.contact_name", text(&c.contact_name)),
        ("invoice.customer.email", text(&c.email)),
        ("invoice.customer.phone", c.phone.clone()),
        ("invoice.customer.postal_address", c.postal_address.clone()),
        ("invoice.customer.language", text(c.language.as_str())),
        ("invoice.customer.timezone", text(c.timezone.name())),
        ("invoice.customer.risk", text(c.risk.as_str())),
        ("invoice.customer.kind", text(c.kind.as_str())),
        ("invoice.customer.cc", Some(c.cc.join(", "))),
        ("invoice.customer.country", text(&c.country)),
        ("invoice.customer.region", c.region.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The fields on which `received` disagrees with `applied`, in field order. Only fields
/// `applied` knows are compared (an invoice registered before relance kept its customer's
/// facts is compared on the invoice's own fields). Empty: a true duplicate.
pub fn differences(applied: &Facts, received: &Facts) -> Vec<Difference> {
    applied
        .iter()
        .filter_map(|(field, was)| {
            let now = received.get(field).cloned().flatten();
            (*was != now).then(|| Difference {
                field: field.clone(),
                applied: was.clone(),
                received: now,
            })
        })
        .collect()
}

/// A payment as it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPayment {
    pub invoice_number: String,
    pub amount: Decimal,
    pub currency: String,
}

/// How a `payment.received` whose id is already recorded disagrees with the recorded one:
/// empty when it names the same invoice, amount and currency (a true duplicate, ignored);
/// otherwise a conflict.
pub fn payment_differences(recorded: &RecordedPayment, received: &NewPayment) -> Vec<Difference> {
    let facts = |number: &str, amount: Decimal, currency: &str| -> Facts {
        [
            ("payment.invoice_number", number.to_string()),
            ("payment.amount", amount_text(amount)),
            ("payment.currency", currency.trim().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Some(v)))
        .collect()
    };
    differences(
        &facts(&recorded.invoice_number, recorded.amount, &recorded.currency),
        &facts(
            &received.invoice_number,
            received.amount.amount,
            received.amount.currency.code(),
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::validation::input::{CustomerFields, InvoiceFields};
    use crate::{validate_invoice, Money};
    use chrono::NaiveDate;
    use std::str::FromStr;

    fn invoice(amount: &str, email: &str, risk: &str, phone: Option<&str>) -> NewInvoice {
        let day = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
        validate_invoice(InvoiceFields {
            number: "F-1",
            amount,
            currency: "EUR",
            issued_on: day(2),
            due_on: Some(day(16)),
            payment_link: None,
            pdf: None,
            pdf_error: None,
            customer: CustomerFields {
                id: "C-1",
                name: "ACME",
                contact_name: "Jeanne Martin",
                email,
                phone,
                postal_address: None,
                language: None,
                timezone: None,
                risk: Some(risk),
                kind: None,
                cc: &[],
                country: None,
                region: None,
                late_interest_percent: None,
                approval: None,
            },
        })
        .unwrap()
    }

    #[test]
    fn the_same_invoice_written_differently_is_a_true_duplicate() {
        let applied = invoice_facts(&invoice(
            "1500.00",
            "ap@acme.test",
            "medium",
            Some("06 12 34 56 78"),
        ));
        let again = invoice_facts(&invoice("1500", " ap@acme.test ", "medium", Some("+33612345678")));
        assert_eq!(differences(&applied, &again), vec![]);
    }

    #[test]
    fn a_repeat_with_another_email_and_risk_conflicts_on_those_fields() {
        let applied = invoice_facts(&invoice("1500.00", "ap@acme.test", "medium", None));
        let again = invoice_facts(&invoice("1500.00", "new@acme.test", "high", None));
        let fields: Vec<(String, Option<String>, Option<String>)> = differences(&applied, &again)
            .into_iter()
            .map(|d| (d.field, d.applied, d.received))
            .collect();
        assert_eq!(
            fields,
            vec![
                (
                    "invoice.customer.email".into(),
                    Some("ap@acme.test".into()),
                    Some("new@acme.test".into())
                ),
                (
                    "invoice.customer.risk".into(),
                    Some("medium".into()),
                    Some("high".into())
                ),
            ]
        );
    }

    #[test]
    fn only_the_fields_kept_at_registration_are_compared() {
        let mut applied = Facts::new();
        applied.insert("invoice.amount".into(), Some("1500".into()));
        let again = invoice_facts(&invoice("1500.00", "other@acme.test", "high", None));
        assert_eq!(differences(&applied, &again), vec![]);
        let dearer = invoice_facts(&invoice("1600", "other@acme.test", "high", None));
        assert_eq!(differences(&applied, &dearer).len(), 1);
    }

    #[test]
    fn a_payment_id_reused_for_another_amount_or_invoice_conflicts() {
        let recorded = RecordedPayment {
            invoice_number: "F-1".into(),
            amount: Decimal::from_str("100.0000").unwrap(),
            currency: "EUR".into(),
        };
        let payment = |number: &str, amount: &str| NewPayment {
            id: "P-1".into(),
            invoice_number: number.into(),
            amount: Money::new(Decimal::from_str(amount).unwrap(), iso_currency::Currency::EUR),
            received_on: NaiveDate::from_ymd_opt(2026, 3, 20).unwrap(),
        };
        assert_eq!(payment_differences(&recorded, &payment("F-1", "100.00")), vec![]);
        let other = payment_differences(&recorded, &payment("F-1", "150"));
        assert_eq!(
            other,
            vec![Difference {
                field: "payment.amount".into(),
                applied: Some("100".into()),
                received: Some("150".into())
            }]
        );
        assert_eq!(
            payment_differences(&recorded, &payment("F-2", "100"))[0].field,
            "payment.invoice_number"
        );
    }
}
