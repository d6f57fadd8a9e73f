//! `relance import invoices FILE.csv` and `relance import payments FILE.csv`: a ledger
//! export loaded as another system would send it. Each row becomes the inbound message
//! (`invoice.issued`, `payment.received`), checked with the consuming service's own
//! validation; a bad row is reported with its line number and the others go on. The good
//! ones are published with publisher confirms, under a message id derived from the invoice
//! number or payment id, so that the services' inboxes make a second run change nothing.
//! The columns and the accepted French conventions are in docs/import.md.

use crate::output;
use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use relance_config::Settings;
use relance_contracts::names::{self, Names};
use relance_contracts::{CustomerV1, InvoiceIssuedV1, InvoiceV1, PaymentReceivedV1, PaymentV1, VERSION_1};
use relance_messaging::publish::check_confirmation;
use relance_messaging::{declare_topology, properties, Publisher, TopologyOptions};
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Invoices: one `invoice.issued` per row.
    Invoices {
        file: PathBuf,
        /// The column separator; guessed from the header line (`;`, `,` or tab) when not given.
        #[arg(long)]
        delimiter: Option<char>,
    },
    /// Payments: one `payment.received` per row.
    Payments {
        file: PathBuf,
        #[arg(long)]
        delimiter: Option<char>,
    },
}

/// How many messages are published before their confirms are awaited together.
const CONFIRM_BATCH: usize = 200;

pub async fn run(settings: Settings, command: ImportCommand) -> anyhow::Result<()> {
    let (kind, file, delimiter) = match command {
        ImportCommand::Invoices { file, delimiter } => (Kind::Invoices, file, delimiter),
        ImportCommand::Payments { file, delimiter } => (Kind::Payments, file, delimiter),
    };
    let db = relance_storage::connect(&settings.database_url, 1).await?;
    let clock = output::command_clock(&settings, &db).await?;
    let now = clock.now();
    db.close().await;
    let table = read_table(&file, delimiter)?;
    let checked = check_rows(kind, &table, now);
    for bad in &checked.refused {
        eprintln!("line {}: {}", bad.line, bad.reason);
    }
    let published = publish(&settings, kind, &checked.messages).await?;
    println!(
        "{published} {} published from {} ({} row(s) refused)",
        kind.routing_key(),
        file.display(),
        checked.refused.len()
    );
    if !checked.refused.is_empty() {
        bail!(
            "{} row(s) refused (listed above with their line numbers); the {published} others were published",
            checked.refused.len()
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Invoices,
    Payments,
}

impl Kind {
    fn routing_key(self) -> &'static str {
        match self {
            Self::Invoices => names::INVOICE_ISSUED,
            Self::Payments => names::PAYMENT_RECEIVED,
        }
    }
}

/// A CSV file read: its header (normalised column names) and its records with their line.
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<(u64, Vec<String>)>,
    /// Lines that could not be read as text.
    pub unreadable: Vec<Refused>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub line: u64,
    pub reason: String,
}

/// Reads the file: separator guessed from the header line unless given; a line that is not
/// UTF-8 is reported, not fatal.
pub fn read_table(file: &Path, delimiter: Option<char>) -> anyhow::Result<Table> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    parse_table(&bytes, delimiter)
}

pub fn parse_table(bytes: &[u8], delimiter: Option<char>) -> anyhow::Result<Table> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first_line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let delimiter = match delimiter {
        Some(c) => u8::try_from(c).map_err(|_| anyhow!("the separator must be one ASCII character"))?,
        None => guess_delimiter(first_line),
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let columns = reader
        .byte_headers()
        .context("reading the header line")?
        .iter()
        .map(|h| canonical_column(&String::from_utf8_lossy(h)))
        .collect::<Vec<_>>();
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for record in reader.byte_records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                unreadable.push(Refused {
                    line,
                    reason: format!("not readable as CSV: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|f| f.is_empty()) {
            continue;
        }
        let fields: Result<Vec<String>, _> = record
            .iter()
            .map(|f| std::str::from_utf8(f).map(str::to_string))
            .collect();
        match fields {
            Ok(fields) => rows.push((line, fields)),
            Err(_) => unreadable.push(Refused {
                line,
                reason: "not UTF-8 text: save the export as UTF-8".to_string(),
            }),
        }
    }
    Ok(Table {
        columns,
        rows,
        unreadable,
    })
}

/// The separator of a French export is `;` (the comma is its decimal mark); else `,` or tab.
fn guess_delimiter(header: &[u8]) -> u8 {
    [b';', b'\t', b',']
        .into_iter()
        .max_by_key(|d| header.iter().filter(|b| *b == d).count())
        .filter(|d| header.contains(d))
        .unwrap_or(b',')
}

/// A column's name as documented: lower case, `_` for spaces and dashes, accents dropped,
/// and the French names of accounting exports mapped to ours.
fn canonical_column(raw: &str) -> String {
    let plain: String = raw
        .trim()
        .trim_start_matches('\u{feff}')
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'à' | 'â' => 'a',
            'ô' => 'o',
            'ù' | 'û' => 'u',
            'î' | 'ï' => 'i',
            'ç' => 'c',
            ' ' | '-' | '.' => '_',
            c => c,
        })
        .collect();
    let name = match plain.as_str() {
        // The invoice's number: `number` in an invoice file, `invoice_number` in a payment
        // file (either is read in both).
        "numero" | "numero_facture" | "facture" | "n_facture" => "number",
        "montant" | "montant_ttc" => "amount",
        "devise" => "currency",
        "date_facture" | "date_emission" => "issued_on",
        "echeance" | "date_echeance" => "due_on",
        "code_client" | "client_id" => "customer_id",
        "client" | "raison_sociale" | "nom_client" => "customer_name",
        "contact" => "contact_name",
        "courriel" | "mail" => "email",
        "telephone" | "tel" => "phone",
        "adresse" => "postal_address",
        "langue" => "language",
        "pays" => "country",
        "risque" => "risk",
        "lien_paiement" => "payment_link",
        "creancier" => "creditor",
        "reference" | "reference_paiement" | "payment_id" => "id",
        "date_reglement" | "date_paiement" | "date_reception" => "received_on",
        other => other,
    };
    name.to_string()
}

/// An amount as the wire wants it (`1234.56`), from `1 234,56`, `1234,56`, `1.234,56`,
/// `1,234.56` or `1234.56`: spaces (also non-breaking) dropped; when both marks appear the
/// last one is the decimal mark, and a lone comma is one.
pub fn wire_amount(raw: &str) -> String {
    let compact: String = raw
        .trim()
        .trim_end_matches('€')
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{202f}' && *c != '\'')
        .collect();
    match (compact.rfind(','), compact.rfind('.')) {
        (Some(comma), Some(dot)) if comma > dot => compact.replace('.', "").replace(',', "."),
        (Some(_), Some(_)) => compact.replace(',', ""),
        (Some(_), None) => compact.replace(',', "."),
        _ => compact,
    }
}

/// A date as French exports write it (`31/01/2026`, `31-01-2026`, `31.01.2026`) or ISO.
pub fn parse_date(raw: &str) -> Result<NaiveDate, String> {
    let raw = raw.trim();
    ["%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(raw, f).ok())
        .ok_or_else(|| format!("{raw:?} is not a date (dd/mm/yyyy or yyyy-mm-dd)"))
}

/// A row's fields by column name.
struct Row<'a> {
    fields: HashMap<&'a str, &'a str>,
}

impl<'a> Row<'a> {
    fn new(columns: &'a [String], values: &'a [String]) -> Self {
        Self {
            fields: columns
                .iter()
                .map(String::as_str)
                .zip(values.iter().map(String::as_str))
                .collect(),
        }
    }

    /// The column's value, `None` when absent or blank.
    fn get(&self, column: &str) -> Option<&'a str> {
        self.fields.get(column).copied().filter(|v| !v.is_empty())
    }

    fn text(&self, column: &str) -> String {
        self.get(column).unwrap_or_default().to_string()
    }

    fn opt(&self, column: &str) -> Option<String> {
        self.get(column).map(str::to_string)
    }

    fn date(&self, column: &str) -> Result<Option<NaiveDate>, String> {
        self.get(column)
            .map(|d| parse_date(d).map_err(|e| format!("{column}: {e}")))
            .transpose()
    }

    fn required_date(&self, column: &str) -> Result<NaiveDate, String> {
        self.date(column)?.ok_or_else(|| format!("{column}: is required"))
    }
}

/// The rows checked: the messages to publish (routing key, message id, body), and the rows
/// refused with why.
pub struct Checked {
    pub messages: Vec<(String, serde_json::Value)>,
    pub refused: Vec<Refused>,
}

fn check_rows(kind: Kind, table: &Table, now: DateTime<Utc>) -> Checked {
    let mut refused = table.unreadable.clone();
    let mut messages = Vec::new();
    // A number twice in one file: the second row would be ignored by the services (or be a
    // conflict); said here, with both lines.
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (line, values) in &table.rows {
        let row = Row::new(&table.columns, values);
        let checked = match kind {
            Kind::Invoices => invoice_message(&row, now),
            Kind::Payments => payment_message(&row, now),
        };
        match checked {
            Ok((key, body)) => match seen.get(&key) {
                Some(first) => refused.push(Refused {
                    line: *line,
                    reason: format!("{key} is already on line {first} of this file"),
                }),
                None => {
                    seen.insert(key.clone(), *line);
                    messages.push((key, body));
                }
            },
            Err(reason) => refused.push(Refused { line: *line, reason }),
        }
    }
    refused.sort_by_key(|r| r.line);
    Checked { messages, refused }
}

/// An `invoice.issued` from a row, checked by the scheduler's intake validation. The key is
/// the invoice number; the event id derives from it.
fn invoice_message(row: &Row<'_>, now: DateTime<Utc>) -> Result<(String, serde_json::Value), String> {
    let number = row
        .get("number")
        .or(row.get("invoice_number"))
        .unwrap_or_default()
        .to_string();
    let event = InvoiceIssuedV1 {
        version: VERSION_1,
        event_id: format!("import-invoice-{}", number.trim()),
        occurred_at: now,
        invoice: InvoiceV1 {
            number: number.clone(),
            customer: CustomerV1 {
                id: row.text("customer_id"),
                name: row.text("customer_name"),
                contact_name: row.text("contact_name"),
                email: row.text("email"),
                phone: row.opt("phone"),
                postal_address: row.opt("postal_address"),
                language: row.opt("language"),
                timezone: row.opt("timezone"),
                risk: row.opt("risk"),
                kind: row.opt("kind"),
                cc: row
                    .get("cc")
                    .map(|cc| {
                        cc.split([',', ' '])
                            .filter(|a| !a.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                country: row.opt("country"),
                region: row.opt("region"),
                late_interest_percent: row.get("late_interest_percent").map(wire_amount),
                approval: row.opt("approval"),
            },
            amount: wire_amount(row.get("amount").unwrap_or_default()),
            currency: row.get("currency").unwrap_or("EUR").to_string(),
            issued_on: row.required_date("issued_on")?,
            due_on: row.date("due_on")?,
            payment_link: row.opt("payment_link"),
            pdf_base64: None,
            creditor: row.opt("creditor"),
        },
    };
    relance_scheduler::intake::validate_issued(&event).map_err(|r| r.to_string())?;
    let body = serde_json::to_value(&event).map_err(|e| format!("writing the message: {e}"))?;
    Ok((format!("invoice {}", number.trim()), body))
}

/// A `payment.received` from a row, checked by the payments listener's validation. The key
/// is the payment id; the event id derives from it.
fn payment_message(row: &Row<'_>, now: DateTime<Utc>) -> Result<(String, serde_json::Value), String> {
    let id = row.text("id");
    let event = PaymentReceivedV1 {
        version: VERSION_1,
        event_id: format!("import-payment-{}", id.trim()),
        occurred_at: now,
        payment: PaymentV1 {
            id: id.clone(),
            invoice_number: row
                .get("invoice_number")
                .or(row.get("number"))
                .unwrap_or_default()
                .to_string(),
            amount: wire_amount(row.get("amount").unwrap_or_default()),
            currency: row.get("currency").unwrap_or("EUR").to_string(),
            received_on: row.required_date("received_on")?,
        },
    };
    relance_payments::payments::validate_received(&event).map_err(|r| r.to_string())?;
    let body = serde_json::to_value(&event).map_err(|e| format!("writing the message: {e}"))?;
    Ok((format!("payment {}", id.trim()), body))
}

/// Publishes the messages on `<ns>.inbound`, awaiting the broker's confirms a batch at a
/// time; a progress bar (rate, ETA) on a terminal. Returns how many were confirmed.
async fn publish(
    settings: &Settings,
    kind: Kind,
    messages: &[(String, serde_json::Value)],
) -> anyhow::Result<usize> {
    let names = Names::new(&settings.namespace);
    let connection = relance_messaging::connect(&settings.amqp_url, "import").await?;
    let channel = connection.create_channel().await.context("opening a channel")?;
    // The exchange and queues may not exist yet if no service ever ran.
    declare_topology(&channel, &names, &TopologyOptions::from_settings(settings)).await?;
    let _ = channel.close(200, "declared".into()).await;
    let publisher = Publisher::open(&connection).await?;
    let bar = progress_bar(messages.len());
    let outcome = async {
        let mut confirmed = 0;
        for batch in messages.chunks(CONFIRM_BATCH) {
            let mut confirms = Vec::with_capacity(batch.len());
            for (_, body) in batch {
                let id = body.get("event_id").and_then(|v| v.as_str()).unwrap_or_default();
                let props = properties(id, id, kind.routing_key(), Utc::now(), &BTreeMap::new());
                let payload = serde_json::to_vec(body).context("encoding a message")?;
                confirms.push(
                    publisher
                        .publish_unconfirmed(
                            &names.inbound_exchange(),
                            kind.routing_key(),
                            &payload,
                            props,
                            true,
                        )
                        .await?,
                );
            }
            for confirm in confirms {
                let confirmation = confirm.await.context("waiting for the broker's confirm")?;
                check_confirmation(confirmation, kind.routing_key())?;
                confirmed += 1;
                bar.inc(1);
            }
        }
        anyhow::Ok(confirmed)
    }
    .await;
    bar.finish_and_clear();
    publisher.close().await;
    let _ = connection.close(200, "done".into()).await;
    outcome
}

/// A bar with the rate and the time left, drawn only when stderr is a terminal.
fn progress_bar(len: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {per_sec}  ETA {eta}") {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn french_amounts_become_wire_decimals() {
        assert_eq!(wire_amount("1 234,56"), "1234.56");
        assert_eq!(wire_amount("1\u{a0}234,56 €"), "1234.56");
        assert_eq!(wire_amount("1\u{202f}234,5"), "1234.5");
        assert_eq!(wire_amount("1.234,56"), "1234.56");
        assert_eq!(wire_amount("1,234.56"), "1234.56");
        assert_eq!(wire_amount("920"), "920");
        assert_eq!(wire_amount("920.00"), "920.00");
    }

    #[test]
    fn french_and_iso_dates_are_read() {
        let d = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
        assert_eq!(parse_date("31/01/2026"), Ok(d));
        assert_eq!(parse_date("2026-01-31"), Ok(d));
        assert_eq!(parse_date("31.01.2026"), Ok(d));
        assert!(parse_date("01/31/2026").is_err());
    }

    #[test]
    fn a_french_export_is_read_with_its_separator_and_column_names() {
        let csv = "\u{feff}Numéro;Client;Montant;Date facture;Échéance\nF-1;\"ACME; SA\";1 234,56;02/03/2026;2026-04-01\n\n";
        let table = parse_table(csv.as_bytes(), None).unwrap();
        assert_eq!(
            table.columns,
            ["number", "customer_name", "amount", "issued_on", "due_on"]
        );
        assert_eq!(table.rows.len(), 1);
        assert_eq!(table.rows[0].0, 2);
        assert_eq!(table.rows[0].1[1], "ACME; SA");
    }

    #[test]
    fn each_bad_row_is_refused_with_its_line_and_the_others_kept() {
        let csv = "number;customer_id;customer_name;contact_name;email;amount;issued_on;due_on\n\
                   F-1;C-1;ACME;Jeanne;ap@acme.test;1 500,00;02/03/2026;01/04/2026\n\
                   F-2;C-1;ACME;Jeanne;ap@acme.test;-3;02/03/2026;01/04/2026\n\
                   F-3;C-1;ACME;Jeanne;ap@acme.test;10;02/03/2026;31/02/2026\n\
                   F-1;C-1;ACME;Jeanne;ap@acme.test;1 500,00;02/03/2026;01/04/2026\n";
        let table = parse_table(csv.as_bytes(), None).unwrap();
        let checked = check_rows(Kind::Invoices, &table, Utc::now());
        assert_eq!(checked.messages.len(), 1);
        assert_eq!(checked.messages[0].1["event_id"], "import-invoice-F-1");
        assert_eq!(checked.messages[0].1["invoice"]["amount"], "1500.00");
        let lines: Vec<u64> = checked.refused.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 4, 5], "{:?}", checked.refused);
        assert!(
            checked.refused[0].reason.contains("invoice.amount"),
            "{:?}",
            checked.refused
        );
        assert!(
            checked.refused[1].reason.contains("due_on"),
            "{:?}",
            checked.refused
        );
        assert!(
            checked.refused[2].reason.contains("line 2"),
            "{:?}",
            checked.refused
        );
    }
}
