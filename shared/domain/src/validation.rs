//! Validation of inbound messages: from the wire form to domain values, or a rejection that
//! says precisely which field is wrong and why. A rejected message changes nothing.

use crate::customer::{CustomerKind, Language, Risk};
use crate::money::Money;
use chrono::NaiveDate;
use chrono_tz::Tz;
use input::*;
use rust_decimal::Decimal;
use std::str::FromStr;

/// Why an inbound message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Rejection {
    pub field: String,
    pub reason: String,
}

impl Rejection {
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// A field dropped at intake because it cannot be used, while the rest of the message is
/// accepted (an unusable phone number must not cost the customer its email reminders): the
/// consumer journals and announces it with what it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedField {
    pub field: String,
    pub reason: String,
}

/// Largest invoice PDF accepted, decoded (10 MiB): mail servers refuse bigger messages.
pub const MAX_PDF_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct NewCustomer {
    pub id: String,
    pub name: String,
    pub contact_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub postal_address: Option<String>,
    pub language: Language,
    pub timezone: Tz,
    pub risk: Risk,
    pub kind: CustomerKind,
    pub cc: Vec<String>,
    /// ISO 3166-1 alpha-2, upper case; `FR` by default. Chooses the holiday calendar.
    pub country: String,
    /// ISO 3166-2 subdivision, upper case, if given.
    pub region: Option<String>,
    /// The late-payment rate agreed with this customer, in percent a year.
    pub late_interest_percent: Option<Decimal>,
    /// Whether every reminder waits for approval (`manual`) or the policy decides (`auto`);
    /// `None`: as stored (the policy decides for a new customer).
    pub approval: Option<crate::policy::ApprovalMode>,
    /// Fields of the message left out because unusable (a bad phone number).
    pub dropped: Vec<DroppedField>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewInvoice {
    pub number: String,
    pub customer: NewCustomer,
    pub amount: Money,
    pub issued_on: NaiveDate,
    pub due_on: NaiveDate,
    pub payment_link: Option<String>,
    pub pdf: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewPayment {
    pub id: String,
    pub invoice_number: String,
    pub amount: Money,
    pub received_on: NaiveDate,
}

/// The plain fields of the wire messages, so the domain does not depend on serde types.
pub mod input {
    use chrono::NaiveDate;

    pub struct InvoiceFields<'a> {
        pub number: &'a str,
        pub amount: &'a str,
        pub currency: &'a str,
        pub issued_on: NaiveDate,
        pub due_on: Option<NaiveDate>,
        pub payment_link: Option<&'a str>,
        pub pdf: Option<Vec<u8>>,
        pub pdf_error: Option<String>,
        pub customer: CustomerFields<'a>,
    }

    pub struct CustomerFields<'a> {
        pub id: &'a str,
        pub name: &'a str,
        pub contact_name: &'a str,
        pub email: &'a str,
        pub phone: Option<&'a str>,
        pub postal_address: Option<&'a str>,
        pub language: Option<&'a str>,
        pub timezone: Option<&'a str>,
        pub risk: Option<&'a str>,
        pub kind: Option<&'a str>,
        pub cc: &'a [String],
        pub country: Option<&'a str>,
        pub region: Option<&'a str>,
        pub late_interest_percent: Option<&'a str>,
        pub approval: Option<&'a str>,
    }

    pub struct PaymentFields<'a> {
        pub id: &'a str,
        pub invoice_number: &'a str,
        pub amount: &'a str,
        pub currency: &'a str,
        pub received_on: NaiveDate,
    }
}

pub(crate) fn required_text(field: &str, value: &str, max: usize) -> Result<String, Rejection> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Rejection::new(field, "is required and must not be blank"));
    }
    if trimmed.chars().count() > max {
        return Err(Rejection::new(field, format!("is longer than {max} characters")));
    }
    if trimmed.chars().any(|c| c.is_control()) {
        return Err(Rejection::new(field, "contains control characters"));
    }
    Ok(trimmed.to_string())
}

fn email(field: &str, value: &str) -> Result<String, Rejection> {
    let value = value.trim();
    email_address::EmailAddress::from_str(value)
        .map(|_| value.to_string())
        .map_err(|e| Rejection::new(field, format!("{value:?} is not a valid email address ({e})")))
}

pub(crate) fn positive_money(field: &str, amount: &str, currency: &str) -> Result<Money, Rejection> {
    let currency = Money::parse_currency(currency.trim()).map_err(|m| Rejection::new("currency", m))?;
    let amount = Money::parse_amount(amount.trim()).map_err(|reason| Rejection::new(field, reason))?;
    if amount <= Decimal::ZERO {
        return Err(Rejection::new(field, format!("must be positive, got {amount}")));
    }
    let money = Money::new(amount, currency);
    if money.rounded().amount != amount {
        return Err(Rejection::new(
            field,
            format!("{amount} has more decimals than {} allows", currency.code()),
        ));
    }
    Ok(money)
}

pub fn validate_invoice(f: InvoiceFields<'_>) -> Result<NewInvoice, Rejection> {
    let number = required_text("invoice.number", f.number, 64)?;
    let amount = positive_money("invoice.amount", f.amount, f.currency)?;
    let due_on = f.due_on.ok_or_else(|| {
        Rejection::new(
            "invoice.due_on",
            "is required: an invoice without a due date cannot be chased",
        )
    })?;
    if due_on < f.issued_on {
        return Err(Rejection::new(
            "invoice.due_on",
            format!("{due_on} is before the issue date {}", f.issued_on),
        ));
    }
    if let Some(reason) = f.pdf_error {
        return Err(Rejection::new("invoice.pdf_base64", reason));
    }
    if let Some(pdf) = &f.pdf {
        if pdf.len() > MAX_PDF_BYTES {
            return Err(Rejection::new(
                "invoice.pdf_base64",
                format!("is {} bytes, more than the {MAX_PDF_BYTES} allowed", pdf.len()),
            ));
        }
    }
    let payment_link = match f.payment_link.map(str::trim).filter(|l| !l.is_empty()) {
        Some(link)
            if !(link.starts_with("https://") || link.starts_with("http://"))
                || link.chars().any(char::is_whitespace) =>
        {
            return Err(Rejection::new(
                "invoice.payment_link",
                format!("{link:?} is not an http(s) URL"),
            ));
        }
        other => other.map(str::to_string),
    };
    let c = f.customer;
    let mut dropped = Vec::new();
    let phone = match c.phone.map(str::trim).filter(|p| !p.is_empty()) {
        None => None,
        Some(raw) => match normalize_phone(raw, region_of_timezone(c.timezone.unwrap_or("Europe/Paris"))) {
            Ok(e164) => Some(e164),
            Err(reason) => {
                dropped.push(DroppedField {
                    field: "invoice.customer.phone".to_string(),
                    reason: format!(
                        "{reason}; the number is dropped: text messages and calls fall back as for a customer without a phone"
                    ),
                });
                None
            }
        },
    };
    let customer = NewCustomer {
        id: required_text("invoice.customer.id", c.id, 128)?,
        name: required_text("invoice.customer.name", c.name, 200)?,
        contact_name: required_text("invoice.customer.contact_name", c.contact_name, 200)?,
        email: email("invoice.customer.email", c.email)?,
        phone,
        postal_address: c
            .postal_address
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        language: Language::from_str(c.language.unwrap_or("fr"))
            .map_err(|m| Rejection::new("invoice.customer.language", m))?,
        timezone: Tz::from_str(c.timezone.unwrap_or("Europe/Paris")).map_err(|_| {
            Rejection::new(
                "invoice.customer.timezone",
                format!(
                    "{:?} is not an IANA time zone such as Europe/Paris",
                    c.timezone.unwrap_or("")
                ),
            )
        })?,
        risk: Risk::from_str(c.risk.unwrap_or("medium"))
            .map_err(|m| Rejection::new("invoice.customer.risk", m))?,
        kind: CustomerKind::from_str(c.kind.unwrap_or("business"))
            .map_err(|m| Rejection::new("invoice.customer.kind", m))?,
        cc: c
            .cc
            .iter()
            .map(|a| email("invoice.customer.cc", a))
            .collect::<Result<_, _>>()?,
        country: country("invoice.customer.country", c.country)?,
        region: region("invoice.customer.region", c.region)?,
        late_interest_percent: rate_percent(
            "invoice.customer.late_interest_percent",
            c.late_interest_percent,
        )?,
        approval: c
            .approval
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.parse()
                    .map_err(|m| Rejection::new("invoice.customer.approval", m))
            })
            .transpose()?,
        dropped,
    };
    Ok(NewInvoice {
        number,
        customer,
        amount,
        issued_on: f.issued_on,
        due_on,
        payment_link,
        pdf: f.pdf,
    })
}

/// An annual rate in percent, as a plain decimal string between 0 and 100.
fn rate_percent(field: &str, value: Option<&str>) -> Result<Option<Decimal>, Rejection> {
    let Some(raw) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    Money::parse_amount(raw)
        .ok()
        .filter(|r| !r.is_sign_negative() && *r <= Decimal::ONE_HUNDRED)
        .map(Some)
        .ok_or_else(|| {
            Rejection::new(
                field,
                format!("{raw:?} is not a rate in percent between 0 and 100, such as \"12.5\""),
            )
        })
}

/// The country whose numbering plan applies to a phone number written without its
/// international prefix, guessed from the customer's time zone; France when unknown.
pub fn region_of_timezone(timezone: &str) -> &'static str {
    const REGIONS: &[(&str, &str)] = &[
        ("Europe/Paris", "FR"),
        ("Europe/Monaco", "MC"),
        ("Europe/Brussels", "BE"),
        ("Europe/Luxembourg", "LU"),
        ("Europe/Zurich", "CH"),
        ("Europe/Berlin", "DE"),
        ("Europe/Madrid", "ES"),
        ("Europe/Rome", "IT"),
        ("Europe/Amsterdam", "NL"),
        ("Europe/Lisbon", "PT"),
        ("Europe/London", "GB"),
        ("Europe/Dublin", "IE"),
        ("Europe/Vienna", "AT"),
        ("Europe/Warsaw", "PL"),
        ("America/New_York", "US"),
        ("America/Chicago", "US"),
        ("America/Denver", "US"),
        ("America/Los_Angeles", "US"),
        ("America/Toronto", "CA"),
        ("America/Montreal", "CA"),
        ("Indian/Reunion", "RE"),
        ("Indian/Mayotte", "YT"),
        ("America/Guadeloupe", "GP"),
        ("America/Martinique", "MQ"),
        ("America/Cayenne", "GF"),
        ("Pacific/Noumea", "NC"),
        ("Pacific/Tahiti", "PF"),
        ("Africa/Casablanca", "MA"),
        ("Africa/Tunis", "TN"),
        ("Africa/Algiers", "DZ"),
        ("Africa/Dakar", "SN"),
        ("Africa/Abidjan", "CI"),
    ];
    REGIONS
        .iter()
        .find(|(tz, _)| *tz == timezone)
        .map(|(_, region)| *region)
        .unwrap_or("FR")
}

/// Validates a phone number and writes it in E.164 (`+33612345678`). A number without the
/// international prefix is read in `default_region`'s numbering plan (ISO 3166 code).
pub fn normalize_phone(raw: &str, default_region: &str) -> Result<String, String> {
    let region = phonenumber::country::Id::from_str(default_region).ok();
    let number = phonenumber::parse(region, raw).map_err(|e| {
        format!("{raw:?} is not a phone number ({e}); write it as +33 6 12 34 56 78 or in the customer's national format")
    })?;
    if !phonenumber::is_valid(&number) {
        return Err(format!(
            "{raw:?} is not a valid phone number (read with the {default_region} numbering plan unless it starts with +)"
        ));
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// Whether a number (E.164) can receive text messages: mobiles, or numbers whose plan does
/// not tell mobiles from landlines. Returns why not otherwise.
pub fn sms_capable(e164: &str) -> Result<(), String> {
    let number =
        phonenumber::parse(None, e164).map_err(|e| format!("{e164:?} is not a phone number ({e})"))?;
    match number.number_type(&phonenumber::metadata::DATABASE) {
        phonenumber::Type::Mobile
        | phonenumber::Type::FixedLineOrMobile
        | phonenumber::Type::PersonalNumber => Ok(()),
        other => Err(format!(
            "{e164} is not a mobile number ({other:?}): it cannot receive text messages"
        )),
    }
}

fn country(field: &str, value: Option<&str>) -> Result<String, Rejection> {
    let code = value.map(str::trim).filter(|c| !c.is_empty()).unwrap_or("FR");
    if code.len() == 2 && code.chars().all(|c| c.is_ascii_alphabetic()) {
        Ok(code.to_ascii_uppercase())
    } else {
        Err(Rejection::new(
            field,
            format!("{code:?} is not an ISO 3166-1 alpha-2 country code such as FR"),
        ))
    }
}

fn region(field: &str, value: Option<&str>) -> Result<Option<String>, Rejection> {
    match value.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) if r.len() <= 16 && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
            Ok(Some(r.to_ascii_uppercase()))
        }
        Some(r) => Err(Rejection::new(
            field,
            format!("{r:?} is not an ISO 3166-2 subdivision code such as FR-67"),
        )),
    }
}

pub fn validate_payment(f: PaymentFields<'_>) -> Result<NewPayment, Rejection> {
    Ok(NewPayment {
        id: required_text("payment.id", f.id, 128)?,
        invoice_number: required_text("payment.invoice_number", f.invoice_number, 64)?,
        amount: positive_money("payment.amount", f.amount, f.currency)?,
        received_on: f.received_on,
    })
}

/// Validates a customer on its own (`customer.updated`), with the same rules as the customer
/// of an invoice; a rejection names the field as `customer.<field>`.
pub fn validate_customer(c: CustomerFields<'_>) -> Result<NewCustomer, Rejection> {
    let probe = InvoiceFields {
        number: "customer",
        amount: "1",
        currency: "EUR",
        issued_on: NaiveDate::MIN,
        due_on: Some(NaiveDate::MIN),
        payment_link: None,
        pdf: None,
        pdf_error: None,
        customer: c,
    };
    let unprefixed = |field: &str| field.strip_prefix("invoice.").unwrap_or(field).to_string();
    validate_invoice(probe)
        .map(|invoice| {
            let mut customer = invoice.customer;
            for d in &mut customer.dropped {
                d.field = unprefixed(&d.field);
            }
            customer
        })
        .map_err(|r| Rejection {
            field: unprefixed(&r.field),
            reason: r.reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    fn fields<'a>(amount: &'a str, due_on: Option<NaiveDate>, email: &'a str) -> InvoiceFields<'a> {
        InvoiceFields {
            number: "F-1",
            amount,
            currency: "EUR",
            issued_on: date(2026, 1, 1),
            due_on,
            payment_link: None,
            pdf: None,
            pdf_error: None,
            customer: CustomerFields {
                id: "C1",
                name: "ACME",
                contact_name: "Jeanne Martin",
                email,
                phone: None,
                postal_address: None,
                language: None,
                timezone: None,
                risk: None,
                kind: None,
                cc: &[],
                country: None,
                region: None,
                late_interest_percent: None,
                approval: None,
            },
        }
    }

    #[test]
    fn a_good_invoice_gets_the_documented_defaults() {
        let invoice = validate_invoice(fields("1500.00", Some(date(2026, 1, 31)), "ap@acme.test"));
        let Ok(invoice) = invoice else {
            panic!("{invoice:?}")
        };
        assert_eq!(invoice.amount.to_string(), "1500.00 EUR");
        assert_eq!(invoice.customer.language, Language::Fr);
        assert_eq!(invoice.customer.timezone, chrono_tz::Europe::Paris);
        assert_eq!(invoice.customer.risk, Risk::Medium);
        assert_eq!(invoice.customer.kind, CustomerKind::Business);
        assert_eq!(invoice.customer.country, "FR");
        assert_eq!(invoice.customer.region, None);
    }

    #[test]
    fn a_customers_agreed_rate_is_a_plain_percentage() {
        let mut input = fields("10", Some(date(2026, 2, 1)), "a@b.test");
        input.customer.late_interest_percent = Some(" 12.5 ");
        let invoice = validate_invoice(input).unwrap();
        assert_eq!(invoice.customer.late_interest_percent, Some(Decimal::new(125, 1)));
        for bad in ["1e1", "-3", "101", "douze"] {
            let mut input = fields("10", Some(date(2026, 2, 1)), "a@b.test");
            input.customer.late_interest_percent = Some(bad);
            let refused = validate_invoice(input).unwrap_err();
            assert_eq!(refused.field, "invoice.customer.late_interest_percent", "{bad}");
            assert!(
                refused.reason.contains("is not a rate in percent"),
                "{}",
                refused.reason
            );
        }
    }

    #[test]
    fn country_and_region_are_codes() {
        let mut input = fields("10", Some(date(2026, 2, 1)), "a@b.test");
        input.customer.country = Some("be");
        input.customer.region = Some("fr-67");
        let invoice = validate_invoice(input).unwrap();
        assert_eq!(
            (
                invoice.customer.country.as_str(),
                invoice.customer.region.as_deref()
            ),
            ("BE", Some("FR-67"))
        );
        for (country, region, field) in [
            (Some("France"), None, "invoice.customer.country"),
            (Some("F1"), None, "invoice.customer.country"),
            (None, Some("Bas Rhin"), "invoice.customer.region"),
        ] {
            let mut input = fields("10", Some(date(2026, 2, 1)), "a@b.test");
            input.customer.country = country;
            input.customer.region = region;
            assert_eq!(
                validate_invoice(input).map_err(|r| r.field),
                Err(field.to_string())
            );
        }
    }

    #[test]
    fn a_customer_alone_is_validated_with_the_same_rules() {
        let mut c = fields("10", None, "not-an-address").customer;
        assert_eq!(
            validate_customer(c).map_err(|r| r.field),
            Err("customer.email".to_string())
        );
        c = fields("10", None, "ap@acme.test").customer;
        c.risk = Some("high");
        let customer = validate_customer(c).unwrap();
        assert_eq!((customer.risk, customer.id.as_str()), (Risk::High, "C1"));
        c = fields("10", None, "ap@acme.test").customer;
        c.risk = Some("extreme");
        assert_eq!(
            validate_customer(c).map_err(|r| r.field),
            Err("customer.risk".to_string())
        );
    }

    #[test]
    fn phone_numbers_are_normalised_to_e164_in_the_customers_numbering_plan() {
        let cases = [
            ("06 12 34 56 78", "FR", "+33612345678"),
            ("06.12.34.56.78", "FR", "+33612345678"),
            ("+33 6 12 34 56 78", "FR", "+33612345678"),
            ("0033 6 12 34 56 78", "FR", "+33612345678"),
            ("+32 470 12 34 56", "FR", "+32470123456"),
            ("0470 12 34 56", "BE", "+32470123456"),
            ("01 42 68 53 00", "FR", "+33142685300"),
            ("(415) 555-2671", "US", "+14155552671"),
        ];
        for (raw, region, expected) in cases {
            assert_eq!(
                normalize_phone(raw, region),
                Ok(expected.to_string()),
                "{raw} in {region}"
            );
        }
        for bad in [
            "12",
            "06 12",
            "not a number",
            "+33 6 12 34 56 78 90 12",
            "+999 123456",
        ] {
            let refused = normalize_phone(bad, "FR");
            assert!(refused.is_err(), "{bad} accepted as {refused:?}");
        }
        assert_eq!(region_of_timezone("Europe/Brussels"), "BE");
        assert_eq!(region_of_timezone("Asia/Tokyo"), "FR");
        assert_eq!(sms_capable("+33612345678"), Ok(()));
        assert!(sms_capable("+33142685300").is_err_and(|e| e.contains("not a mobile")));
    }

    #[test]
    fn the_phone_is_checked_at_intake_in_the_customers_time_zone_and_may_be_absent() {
        let mut input = fields("10", Some(date(2026, 2, 1)), "a@b.test");
        input.customer.phone = Some("0470 12 34 56");
        input.customer.timezone = Some("Europe/Brussels");
        assert_eq!(
            validate_invoice(input).map(|i| i.customer.phone),
            Ok(Some("+32470123456".to_string()))
        );
        let mut blank = fields("10", Some(date(2026, 2, 1)), "a@b.test");
        blank.customer.phone = Some("  ");
        assert_eq!(validate_invoice(blank).map(|i| i.customer.phone), Ok(None));
    }

    #[test]
    fn a_bad_phone_is_dropped_with_a_warning_and_the_invoice_accepted() {
        let mut bad = fields("10", Some(date(2026, 2, 1)), "a@b.test");
        bad.customer.phone = Some("06 12");
        let invoice = validate_invoice(bad).unwrap();
        assert_eq!(invoice.customer.phone, None);
        assert_eq!(invoice.customer.email, "a@b.test");
        let dropped: Vec<&str> = invoice
            .customer
            .dropped
            .iter()
            .map(|d| d.field.as_str())
            .collect();
        assert_eq!(dropped, vec!["invoice.customer.phone"]);
        assert!(invoice.customer.dropped[0].reason.contains("\"06 12\""));
        let mut c = fields_of_customer();
        c.phone = Some("not a number");
        let customer = validate_customer(c).unwrap();
        assert_eq!(customer.phone, None);
        assert_eq!(customer.dropped[0].field, "customer.phone");
        let good = validate_invoice(fields("10", Some(date(2026, 2, 1)), "a@b.test")).unwrap();
        assert!(good.customer.dropped.is_empty());
    }

    fn fields_of_customer() -> CustomerFields<'static> {
        fields("10", None, "ap@acme.test").customer
    }

    #[test]
    fn amounts_that_are_not_plain_decimals_or_too_large_for_the_database_are_refused() {
        for amount in ["1e3", "12345678901234567", "+10", "1 000"] {
            let refused = validate_invoice(fields(amount, Some(date(2026, 2, 1)), "a@b.test"));
            assert_eq!(
                refused.map_err(|r| r.field),
                Err("invoice.amount".to_string()),
                "{amount}"
            );
            let payment = validate_payment(PaymentFields {
                id: "P-1",
                invoice_number: "F-1",
                amount,
                currency: "EUR",
                received_on: date(2026, 2, 1),
            });
            assert_eq!(
                payment.map_err(|r| r.field),
                Err("payment.amount".to_string()),
                "{amount}"
            );
        }
        let largest = validate_invoice(fields("9999999999999999.99", Some(date(2026, 2, 1)), "a@b.test"));
        assert_eq!(
            largest.map(|i| i.amount.amount.to_string()),
            Ok("9999999999999999.99".to_string())
        );
    }

    #[test]
    fn bad_invoices_are_refused_with_the_field_at_fault() {
        let cases = [
            (fields("1500", None, "a@b.test"), "invoice.due_on"),
            (
                fields("1500", Some(date(2025, 12, 1)), "a@b.test"),
                "invoice.due_on",
            ),
            (fields("-3", Some(date(2026, 2, 1)), "a@b.test"), "invoice.amount"),
            (fields("0", Some(date(2026, 2, 1)), "a@b.test"), "invoice.amount"),
            (
                fields("12.345", Some(date(2026, 2, 1)), "a@b.test"),
                "invoice.amount",
            ),
            (
                fields("abc", Some(date(2026, 2, 1)), "a@b.test"),
                "invoice.amount",
            ),
            (
                fields("10", Some(date(2026, 2, 1)), "not-an-address"),
                "invoice.customer.email",
            ),
        ];
        for (input, field) in cases {
            match validate_invoice(input) {
                Err(r) => assert_eq!(r.field, field, "{r}"),
                Ok(i) => panic!("accepted {i:?}"),
            }
        }
        let mut unknown_currency = fields("10", Some(date(2026, 2, 1)), "a@b.test");
        unknown_currency.currency = "EUX";
        assert_eq!(
            validate_invoice(unknown_currency).map_err(|r| r.field),
            Err("currency".to_string())
        );
    }
}
