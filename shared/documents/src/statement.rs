//! The statement of account of one customer: every invoice still owed (number, dates,
//! amount, credit notes, paid, balance, days overdue, late interest to date), the payments
//! and credit notes on them, totals per currency and the recovery indemnities, laid out as
//! a PDF with the creditor's letterhead and legal mentions, in the customer's language.
//! Owns the figures and their wording; the interest and indemnity come from the one claim
//! computation of the reminders ([`crate::claim_of`]). Reads nothing itself: the caller
//! loads a [`StatementSource`] (the renderer when a policy step attaches it, the `relance
//! statement` command, the console's download).

use crate::claim_of;
use crate::letterhead::{letterhead, percent, place};
use crate::pdf::{self, Letter, Table};
use anyhow::Context;
use chrono::NaiveDate;
use relance_config::Config;
use relance_domain::claim::{Claim, INDEMNITY_CURRENCY};
use relance_domain::locale::format_date;
use relance_domain::money::Currency;
use relance_domain::{Language, Money};
use relance_storage::statements::{StatementCustomer, StatementSource};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One invoice still owed, as the statement states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    pub number: String,
    pub issued_on: NaiveDate,
    pub due_on: NaiveDate,
    pub currency: Currency,
    /// The invoice total, before credit notes.
    pub amount: Decimal,
    pub credited: Decimal,
    pub paid: Decimal,
    pub balance: Decimal,
    /// 0 until the due date has passed.
    pub days_overdue: i64,
    /// Interest to date and the indemnity (`None` while the invoice is not late).
    pub claim: Option<Claim>,
}

/// A payment or a credit note on one of the invoices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub on: NaiveDate,
    pub invoice: String,
    /// `None` for a payment; the credit note's number otherwise.
    pub credit_note: Option<String>,
    pub amount: Decimal,
    pub currency: Currency,
}

/// The totals of the invoices in one currency. The indemnities are sums in euros: they
/// are counted in the euro row, whatever the invoices' currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyTotal {
    pub currency: Currency,
    pub balance: Decimal,
    pub interest: Decimal,
    pub indemnity: Decimal,
    /// Balance + interest (+ the indemnities, in the euro row).
    pub total: Decimal,
}

/// A statement of account on `as_of`, the figures computed.
#[derive(Debug, Clone)]
pub struct Statement {
    pub customer: StatementCustomer,
    pub as_of: NaiveDate,
    pub lines: Vec<StatementLine>,
    pub movements: Vec<Movement>,
    pub totals: Vec<CurrencyTotal>,
    /// The annual rates of the latest interest periods (several when terms differ).
    pub rates: Vec<Decimal>,
}

/// Computes the statement on `as_of` (the customer's local date): interest to that day, the
/// movements up to it, since `since` when given (else all of them on the invoices listed).
pub fn figures(
    config: &Config,
    source: &StatementSource,
    as_of: NaiveDate,
    since: Option<NaiveDate>,
) -> anyhow::Result<Statement> {
    let mut lines = Vec::new();
    let mut movements = Vec::new();
    let mut totals: BTreeMap<&'static str, CurrencyTotal> = BTreeMap::new();
    let mut rates = Vec::new();
    let in_period = |on: NaiveDate| on <= as_of && since.is_none_or(|from| on >= from);
    for item in &source.invoices {
        let invoice = &item.invoice;
        let currency = Money::parse_currency(invoice.currency.trim())
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("the currency of invoice {}", invoice.number))?;
        let claim = claim_of(config, invoice, &item.history, currency, as_of);
        let paid = invoice.amount - invoice.credited - invoice.balance;
        if let Some(rate) = claim.as_ref().and_then(|c| c.rate_percent) {
            if !rates.contains(&rate) {
                rates.push(rate);
            }
        }
        let row = totals
            .entry(currency.code())
            .or_insert_with(|| empty_total(currency));
        row.balance += invoice.balance;
        row.total += invoice.balance;
        if let Some(c) = &claim {
            row.interest += c.late_interest;
            row.total += c.late_interest;
            let euros = totals
                .entry(INDEMNITY_CURRENCY.code())
                .or_insert_with(|| empty_total(INDEMNITY_CURRENCY));
            euros.indemnity += c.recovery_indemnity;
            euros.total += c.recovery_indemnity;
        }
        for (on, amount) in item.history.payments.iter().filter(|(on, _)| in_period(*on)) {
            movements.push(Movement {
                on: *on,
                invoice: invoice.number.clone(),
                credit_note: None,
                amount: *amount,
                currency,
            });
        }
        for note in item.credit_notes.iter().filter(|n| in_period(n.issued_on)) {
            movements.push(Movement {
                on: note.issued_on,
                invoice: invoice.number.clone(),
                credit_note: Some(note.id.clone()),
                amount: note.amount,
                currency,
            });
        }
        lines.push(StatementLine {
            number: invoice.number.clone(),
            issued_on: invoice.issued_on,
            due_on: invoice.due_on,
            currency,
            amount: invoice.amount,
            credited: invoice.credited,
            paid,
            balance: invoice.balance,
            days_overdue: (as_of - invoice.due_on).num_days().max(0),
            claim,
        });
    }
    movements.sort_by(|a, b| (a.on, &a.invoice).cmp(&(b.on, &b.invoice)));
    Ok(Statement {
        customer: source.customer.clone(),
        as_of,
        lines,
        movements,
        totals: totals.into_values().collect(),
        rates,
    })
}

fn empty_total(currency: Currency) -> CurrencyTotal {
    CurrencyTotal {
        currency,
        balance: Decimal::ZERO,
        interest: Decimal::ZERO,
        indemnity: Decimal::ZERO,
        total: Decimal::ZERO,
    }
}

/// The name the statement is sent and saved under:
/// `releve-de-compte-<customer>-<date>.pdf` or `statement-of-account-<customer>-<date>.pdf`.
pub fn file_name(customer_id: &str, language: Language, as_of: NaiveDate) -> String {
    let customer: String = customer_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let stem = match language {
        Language::Fr => "releve-de-compte",
        Language::En => "statement-of-account",
    };
    format!("{stem}-{customer}-{as_of}.pdf")
}

/// A statement laid out: its PDF, SHA-256 (hex) and file name.
#[derive(Debug, Clone)]
pub struct StatementDocument {
    pub pdf: Vec<u8>,
    pub sha256: String,
    pub name: String,
    pub pages: usize,
}

struct Labels {
    title: &'static str,
    as_of: &'static str,
    attention: &'static str,
    customer: &'static str,
    open: &'static str,
    columns: [&'static str; 9],
    movements: &'static str,
    movement_columns: [&'static str; 4],
    payment: &'static str,
    credit_note: &'static str,
    totals: &'static str,
    total_columns: [&'static str; 5],
    none: &'static str,
}

fn labels(language: Language) -> Labels {
    match language {
        Language::Fr => Labels {
            title: "Relevé de compte",
            as_of: "Relevé de compte au ",
            attention: "À l'attention de ",
            customer: "Référence client",
            open: "Factures ouvertes",
            columns: [
                "Facture",
                "Émise le",
                "Échéance",
                "Montant",
                "Avoirs",
                "Réglé",
                "Reste dû",
                "Retard (j)",
                "Pénalités",
            ],
            movements: "Règlements et avoirs",
            movement_columns: ["Date", "Facture", "Opération", "Montant"],
            payment: "Règlement",
            credit_note: "Avoir",
            totals: "Totaux par devise",
            total_columns: ["Devise", "Reste dû", "Pénalités", "Indemnités", "Total dû"],
            none: "Aucune facture n'est en attente de règlement à cette date.",
        },
        Language::En => Labels {
            title: "Statement of account",
            as_of: "Statement of account as of ",
            attention: "For the attention of ",
            customer: "Customer reference",
            open: "Open invoices",
            columns: [
                "Invoice",
                "Issued",
                "Due",
                "Amount",
                "Credit notes",
                "Paid",
                "Balance",
                "Days late",
                "Interest",
            ],
            movements: "Payments and credit notes",
            movement_columns: ["Date", "Invoice", "Entry", "Amount"],
            payment: "Payment",
            credit_note: "Credit note",
            totals: "Totals per currency",
            total_columns: ["Currency", "Balance", "Interest", "Indemnities", "Total due"],
            none: "No invoice is awaiting payment on this date.",
        },
    }
}

/// A date in a table cell: short enough for its column.
fn short_date(date: NaiveDate, language: Language) -> String {
    match language {
        Language::Fr => format_date(date, language),
        Language::En => date.format("%-d %b %Y").to_string(),
    }
}

/// Lays the statement out as a PDF in the customer's language.
pub fn document(config: &Config, statement: &Statement) -> anyhow::Result<StatementDocument> {
    let customer = &statement.customer;
    let language = customer.language;
    let l = labels(language);
    let creditor = &config.settings.creditor;
    let date = format_date(statement.as_of, language);
    let place_and_date = match language {
        Language::Fr => format!("{}, le {date}", place(&creditor.address)),
        Language::En => format!("{}, {date}", place(&creditor.address)),
    };
    let mut recipient = vec![
        customer.name.clone(),
        format!("{}{}", l.attention, customer.contact_name),
    ];
    recipient.extend(
        customer
            .postal_address
            .iter()
            .flat_map(|a| a.lines())
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_string),
    );
    let letter = Letter {
        title: format!("{} – {}", l.title, customer.name),
        language: language.as_str().to_string(),
        letterhead: letterhead(config),
        recipient,
        mention: None,
        place_and_date,
        subject: format!("{}{date}", l.as_of),
        references: vec![(l.customer.to_string(), customer.id.clone())],
        tables: tables(&l, statement),
        paragraphs: paragraphs(config, statement, &l),
        // The mentions business papers must carry (R123-237), on every page.
        footer: creditor.legal_mentions_in(language.as_str()),
    };
    let (pdf, pages) = pdf::render(&letter)?;
    Ok(StatementDocument {
        sha256: hex::encode(Sha256::digest(&pdf)),
        name: file_name(&customer.id, language, statement.as_of),
        pdf,
        pages,
    })
}

fn tables(l: &Labels, statement: &Statement) -> Vec<Table> {
    let language = statement.customer.language;
    let money = |amount: Decimal, currency: Currency| Money::new(amount, currency).format(language);
    let mut tables = Vec::new();
    if statement.lines.is_empty() {
        return tables;
    }
    tables.push(Table {
        heading: l.open.to_string(),
        columns: l.columns.iter().map(|c| c.to_string()).collect(),
        widths: vec![0.12, 0.10, 0.10, 0.12, 0.10, 0.11, 0.12, 0.11, 0.11],
        rows: statement
            .lines
            .iter()
            .map(|line| {
                let interest = line.claim.as_ref().map_or(Decimal::ZERO, |c| c.late_interest);
                vec![
                    line.number.clone(),
                    short_date(line.issued_on, language),
                    short_date(line.due_on, language),
                    money(line.amount, line.currency),
                    money(line.credited, line.currency),
                    money(line.paid, line.currency),
                    money(line.balance, line.currency),
                    line.days_overdue.to_string(),
                    money(interest, line.currency),
                ]
            })
            .collect(),
        bold_rows: 0,
        left_columns: 1,
    });
    if !statement.movements.is_empty() {
        tables.push(Table {
            heading: l.movements.to_string(),
            columns: l.movement_columns.iter().map(|c| c.to_string()).collect(),
            widths: vec![0.15, 0.2, 0.35, 0.3],
            rows: statement
                .movements
                .iter()
                .map(|m| {
                    let entry = match &m.credit_note {
                        Some(id) => format!("{} {id}", l.credit_note),
                        None => l.payment.to_string(),
                    };
                    vec![
                        short_date(m.on, language),
                        m.invoice.clone(),
                        entry,
                        money(m.amount, m.currency),
                    ]
                })
                .collect(),
            bold_rows: 0,
            left_columns: 3,
        });
    }
    tables.push(Table {
        heading: l.totals.to_string(),
        columns: l.total_columns.iter().map(|c| c.to_string()).collect(),
        widths: vec![0.2, 0.2, 0.2, 0.2, 0.2],
        rows: statement
            .totals
            .iter()
            .map(|t| {
                vec![
                    t.currency.code().to_string(),
                    money(t.balance, t.currency),
                    money(t.interest, t.currency),
                    money(t.indemnity, t.currency),
                    money(t.total, t.currency),
                ]
            })
            .collect(),
        bold_rows: statement.totals.len(),
        left_columns: 1,
    });
    tables
}

/// What the figures rest on, and how to pay.
fn paragraphs(config: &Config, statement: &Statement, l: &Labels) -> Vec<String> {
    let language = statement.customer.language;
    let date = format_date(statement.as_of, language);
    let creditor = &config.settings.creditor;
    let mut paragraphs = Vec::new();
    if statement.lines.is_empty() {
        paragraphs.push(l.none.to_string());
    }
    let rates: Vec<String> = statement.rates.iter().map(|r| percent(*r, language)).collect();
    let has_interest = statement.totals.iter().any(|t| !t.interest.is_zero());
    let has_indemnity = statement.totals.iter().any(|t| !t.indemnity.is_zero());
    let euros = |amount| Money::new(amount, INDEMNITY_CURRENCY).format(language);
    let indemnity = euros(relance_domain::interest::recovery_indemnity(
        relance_domain::CustomerKind::Business,
    ));
    match language {
        Language::Fr => {
            if has_interest {
                paragraphs.push(format!(
                    "Les pénalités de retard sont calculées jusqu'au {date} inclus, au taux annuel de {} (article L441-10 du Code de commerce), sur le montant de chaque facture net de ses avoirs, diminué de chaque règlement à sa date.",
                    rates.join(", ")
                ));
            }
            if has_indemnity {
                paragraphs.push(format!(
                    "Une indemnité forfaitaire pour frais de recouvrement de {indemnity} est due pour chaque facture payée après son échéance (article D441-5 du Code de commerce)."
                ));
            }
            if !statement.lines.is_empty() {
                paragraphs.push(format!(
                    "Règlement par virement à {} – IBAN {} – BIC {}, en rappelant les numéros de facture.",
                    creditor.name, creditor.iban, creditor.bic
                ));
            }
        }
        Language::En => {
            if has_interest {
                paragraphs.push(format!(
                    "Late-payment interest is computed up to and including {date}, at the annual rate of {} (French Commercial Code, article L441-10), on each invoice net of its credit notes, less each payment from its date.",
                    rates.join(", ")
                ));
            }
            if has_indemnity {
                paragraphs.push(format!(
                    "A fixed compensation for recovery costs of {indemnity} is due for each invoice paid after its due date (French Commercial Code, article D441-5)."
                ));
            }
            if !statement.lines.is_empty() {
                paragraphs.push(format!(
                    "Payment by bank transfer to {} – IBAN {} – BIC {}, quoting the invoice numbers.",
                    creditor.name, creditor.iban, creditor.bic
                ));
            }
        }
    }
    paragraphs
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use relance_config::Settings;
    use relance_domain::SimulatedClock;
    use relance_storage::deliveries::ClaimHistory;
    use relance_storage::invoices::InvoiceRecord;
    use relance_storage::statements::{CreditNoteLine, StatementInvoice};
    use std::sync::Arc;

    /// Invoice F-9 of ACME Industrie SA: 1 500.00 EUR issued 7 February 2026, due 9 March,
    /// 1 000.00 left to pay (the renderer's letter tests use the same).
    fn invoice(kind: &str, language: &str) -> InvoiceRecord {
        InvoiceRecord {
            id: uuid_nil(),
            number: "F-9".into(),
            amount: Decimal::new(150000, 2),
            currency: "EUR".into(),
            balance: Decimal::new(100000, 2),
            credited: Decimal::ZERO,
            issued_on: date(2026, 2, 7),
            due_on: date(2026, 3, 9),
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

    fn uuid_nil() -> uuid::Uuid {
        uuid::Uuid::nil()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn config() -> Config {
        let settings = Settings::from_vars(Vec::<(String, String)>::new()).unwrap();
        let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 3, 17, 8, 0, 0).unwrap();
        Config::with_clock(settings, Arc::new(SimulatedClock::starting_at(now))).unwrap()
    }

    /// ACME's three invoices on 17 March 2026: F-9 (1 500.00 due 9 March, 500.00 paid on
    /// 13 March), F-10 (800.00 due 31 March, a 200.00 credit note), F-11 (300.00 in USD,
    /// due 1 March, nothing paid).
    fn source(language: &str) -> StatementSource {
        let partly_paid = StatementInvoice {
            invoice: invoice("business", language),
            history: ClaimHistory {
                payments: vec![(date(2026, 3, 13), Decimal::new(50000, 2))],
                ..ClaimHistory::default()
            },
            credit_notes: vec![],
        };
        let mut credited = invoice("business", language);
        credited.number = "F-10".into();
        credited.amount = Decimal::new(80000, 2);
        credited.credited = Decimal::new(20000, 2);
        credited.balance = Decimal::new(60000, 2);
        credited.issued_on = date(2026, 3, 1);
        credited.due_on = date(2026, 3, 31);
        let mut dollars = invoice("business", language);
        dollars.number = "F-11".into();
        dollars.currency = "USD".into();
        dollars.amount = Decimal::new(30000, 2);
        dollars.balance = Decimal::new(30000, 2);
        dollars.issued_on = date(2026, 2, 1);
        dollars.due_on = date(2026, 3, 1);
        StatementSource {
            customer: StatementCustomer {
                id: "C-9".into(),
                name: "ACME Industrie SA".into(),
                contact_name: "Jeanne Martin".into(),
                postal_address: Some("12 rue des Forges\n69002 Lyon".into()),
                email: "compta@acme.test".into(),
                language: language.parse().unwrap(),
                timezone: "Europe/Paris".parse().unwrap(),
            },
            invoices: vec![
                partly_paid,
                StatementInvoice {
                    invoice: credited,
                    history: ClaimHistory::default(),
                    credit_notes: vec![CreditNoteLine {
                        id: "AV-7".into(),
                        issued_on: date(2026, 3, 5),
                        amount: Decimal::new(20000, 2),
                    }],
                },
                StatementInvoice {
                    invoice: dollars,
                    history: ClaimHistory::default(),
                    credit_notes: vec![],
                },
            ],
        }
    }

    #[test]
    fn the_figures_state_paid_credited_balance_days_late_and_the_reminders_interest() {
        let config = config();
        let source = source("fr");
        let s = figures(&config, &source, date(2026, 3, 17), None).unwrap();
        let f9 = &s.lines[0];
        assert_eq!(
            (f9.paid, f9.balance, f9.days_overdue),
            (Decimal::new(50000, 2), Decimal::new(100000, 2), 8)
        );
        // The same claim as the formal notice of F-9 on that day (letter.rs): 3.16 and 40.
        let claim = f9.claim.as_ref().unwrap();
        assert_eq!(claim.late_interest, Decimal::new(316, 2));
        assert_eq!(claim.recovery_indemnity, Decimal::from(40));
        let f10 = &s.lines[1];
        assert_eq!(
            (f10.credited, f10.paid, f10.balance),
            (Decimal::new(20000, 2), Decimal::ZERO, Decimal::new(60000, 2))
        );
        assert_eq!(f10.days_overdue, 0);
        assert!(f10.claim.is_none(), "not due: nothing on top");
        let f11 = &s.lines[2];
        assert_eq!(f11.days_overdue, 16);
        let usd_interest = f11.claim.as_ref().unwrap().late_interest;
        assert!(usd_interest > Decimal::ZERO);

        assert_eq!(
            s.movements
                .iter()
                .map(|m| (m.invoice.as_str(), m.credit_note.as_deref(), m.amount))
                .collect::<Vec<_>>(),
            vec![
                ("F-10", Some("AV-7"), Decimal::new(20000, 2)),
                ("F-9", None, Decimal::new(50000, 2))
            ]
        );
        let eur = s.totals.iter().find(|t| t.currency.code() == "EUR").unwrap();
        assert_eq!(eur.balance, Decimal::new(160000, 2));
        assert_eq!(eur.interest, Decimal::new(316, 2));
        // Two late invoices: two indemnities, in euros, the dollar invoice's one included.
        assert_eq!(eur.indemnity, Decimal::from(80));
        assert_eq!(eur.total, Decimal::new(168316, 2));
        let usd = s.totals.iter().find(|t| t.currency.code() == "USD").unwrap();
        assert_eq!(usd.indemnity, Decimal::ZERO);
        assert_eq!(usd.total, Decimal::new(30000, 2) + usd_interest);

        let since = figures(&config, &source, date(2026, 3, 17), Some(date(2026, 3, 10))).unwrap();
        assert_eq!(
            since.movements.len(),
            1,
            "the credit note of 5 March is before the period"
        );
    }

    #[test]
    fn the_pdf_lists_the_invoices_in_the_customers_language() {
        let config = config();
        for (language, expected) in [
            (
                "fr",
                [
                    "Relevé de compte au 17/03/2026",
                    "Factures ouvertes",
                    "Avoir AV-7",
                    "D441-5",
                ],
            ),
            (
                "en",
                [
                    "Statement of account as of 17 March 2026",
                    "Open invoices",
                    "Credit note AV-7",
                    "D441-5",
                ],
            ),
        ] {
            let s = figures(&config, &source(language), date(2026, 3, 17), None).unwrap();
            let doc = document(&config, &s).unwrap();
            assert!(doc.pdf.starts_with(b"%PDF"));
            assert_eq!(doc.sha256, hex::encode(Sha256::digest(&doc.pdf)));
            let text = pdf_extract::extract_text_from_mem(&doc.pdf).unwrap();
            for e in expected
                .iter()
                .chain(&["F-9", "F-10", "F-11", "ACME Industrie SA", "69002 Lyon"])
            {
                assert!(text.contains(e), "{e:?} missing from {text}");
            }
        }
        assert_eq!(
            file_name("C 9/x", Language::Fr, date(2026, 3, 17)),
            "releve-de-compte-C-9-x-2026-03-17.pdf"
        );
        assert_eq!(
            file_name("C-9", Language::En, date(2026, 3, 17)),
            "statement-of-account-C-9-2026-03-17.pdf"
        );
    }
}
