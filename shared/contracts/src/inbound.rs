//! Inbound messages: what invoicing and banking systems publish on `<ns>.inbound`.
//!
//! Fields are kept as the wire gives them (amounts as decimal strings, optional dates), so
//! that validation in the domain crate can say precisely what is wrong with a message.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Routing key `invoice.issued`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceIssuedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub invoice: InvoiceV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceV1 {
    pub number: String,
    pub customer: CustomerV1,
    /// Decimal string, e.g. `"1500.00"`.
    pub amount: String,
    /// ISO 4217 code, e.g. `"EUR"`.
    pub currency: String,
    pub issued_on: NaiveDate,
    /// Optional on the wire only so that a missing due date is refused with a clear reason.
    #[serde(default)]
    pub due_on: Option<NaiveDate>,
    #[serde(default)]
    pub payment_link: Option<String>,
    /// The invoice PDF, base64-encoded, attached to reminders.
    #[serde(default)]
    pub pdf_base64: Option<String>,
    /// The id of the invoice's creditor, as given by `creditor.updated`; absent (or
    /// `"default"`): the deployment's default creditor (`RELANCE_CREDITOR_*`). An unknown id
    /// is dead-lettered with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creditor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerV1 {
    pub id: String,
    pub name: String,
    pub contact_name: String,
    pub email: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub postal_address: Option<String>,
    /// `"fr"` (default) or `"en"`.
    #[serde(default)]
    pub language: Option<String>,
    /// IANA time zone, default `"Europe/Paris"`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// `"low"`, `"medium"` (default) or `"high"`.
    #[serde(default)]
    pub risk: Option<String>,
    /// `"business"` (default) or `"consumer"`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Further addresses to copy, e.g. the accounts-payable mailbox.
    #[serde(default)]
    pub cc: Vec<String>,
    /// ISO 3166-1 alpha-2 country, default `"FR"`: its public holidays keep reminders away.
    #[serde(default)]
    pub country: Option<String>,
    /// ISO 3166-2 subdivision (e.g. `"FR-67"`), for regional holidays such as Alsace-Moselle's.
    #[serde(default)]
    pub region: Option<String>,
    /// The late-payment rate agreed with this customer, in percent a year, as a decimal
    /// string (`"12.5"`); absent: the creditor's (`RELANCE_INTEREST_CONTRACT_PERCENT`), else
    /// the statutory rate. Never applied below the floor of L441-10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_interest_percent: Option<String>,
    /// `"manual"`: every reminder of this customer waits for the accounts team's approval
    /// (`relance approvals`); `"auto"`: the policy decides. Absent: unchanged (the policy
    /// decides for a new customer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
}

/// Routing key `customer.updated`: a customer's details changed in your system (its risk
/// segment, time zone, country...). The customer's open invoices are re-planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerUpdatedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub customer: CustomerV1,
}

/// Routing key `payment.received`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentReceivedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub payment: PaymentV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentV1 {
    pub id: String,
    pub invoice_number: String,
    /// Decimal string.
    pub amount: String,
    pub currency: String,
    pub received_on: NaiveDate,
}

/// Routing key `creditor.updated`: a creditor's identity, created or replaced whole (several
/// companies dunned by one deployment: an accounting firm, a group). Invoices name it by `id`
/// (`invoice.issued`'s `creditor`). Applied once per `event_id`; one older (`occurred_at`)
/// than the details stored changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreditorUpdatedV1 {
    pub version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub creditor: CreditorV1,
}

/// A creditor's identity. Text fields left out are empty (not printed); the sender addresses
/// and signatures left out are the default creditor's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreditorV1 {
    /// A short stable key chosen by you: letters, digits, `-`, `_`, `.` (`default` is taken).
    pub id: String,
    /// Legal name, printed on every message.
    pub name: String,
    /// Postal address, lines separated by `\n`.
    pub address: String,
    /// The account to pay to; its checksum is checked (a bad IBAN is dead-lettered).
    pub iban: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bic: Option<String>,
    /// Legal form (`SAS`, `SARL`...), share capital as printed (`10 000 €`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_form: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_capital: Option<String>,
    /// SIREN (nine digits) and SIRET (fourteen), checksums checked; the SIREN is taken from
    /// the SIRET when only that is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub siren: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub siret: Option<String>,
    /// City of the trade and companies register (RCS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcs_city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_number: Option<String>,
    /// Contact shown in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Further letterhead lines, under the address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub letterhead: Vec<String>,
    /// Signature per language when no signatory is named (`fr`, `en`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_fr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_en: Option<String>,
    /// The person who signs, and their title per language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatory_title_fr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatory_title_en: Option<String>,
    /// `From` and `Reply-To` of its emails (`Name <address>` or an address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Sender name or number of its text messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_sender: Option<String>,
    /// The named policy its invoices follow: a `<name>.toml` of the deployment's
    /// `RELANCE_POLICY_DIR` (one the deployment does not have is dead-lettered). Absent: the
    /// deployment's default policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Its own templates: a folder `<name>/` of the deployment's
    /// `RELANCE_CREDITOR_TEMPLATE_DIR`, whose files override the deployment's templates for
    /// its invoices (an unknown one is dead-lettered). Absent: the deployment's templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<String>,
}
