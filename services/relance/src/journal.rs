//! `relance journal verify` and `relance journal export`: the proof side of the journal.
//! Verify checks every chain and document hash; export writes one invoice's file for a
//! creditor to show what was sent, when, and that the record is intact. Both only read.

use crate::output::{self, Format};
use anyhow::Context;
use relance_domain::{Clock, SystemClock};
use relance_sequence::journal::invoice_journal_v1;
use relance_storage::deliveries;
use relance_storage::journal::verify::{self, Verification};
use relance_storage::journal::{self, canonical, document};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use std::path::{Path, PathBuf};
use uuid::Uuid;

#[derive(Debug, clap::Subcommand)]
pub enum JournalCommand {
    /// Check every invoice's chain and the documents it refers to. Exit status 2, naming the
    /// first broken entry, when anything was altered.
    Verify {
        /// `json`: one object (counts and problems); `csv`: one line per broken chain.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Write one invoice's proof file into OUT/<invoice>/: invoice.json (the invoice, its
    /// steps, payments and journal entries with their hashes) and the messages sent.
    Export {
        invoice: String,
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

/// Runs the command; returns false when the journal (or the exported chain) is broken.
pub async fn run(database_url: &str, command: JournalCommand) -> anyhow::Result<bool> {
    let db = relance_storage::connect(database_url, 2).await?;
    let intact = match command {
        JournalCommand::Verify { format } if format != Format::Table => {
            let report = verify::verify_all(&db).await?;
            write_verification(&report, format)?;
            report.is_intact()
        }
        JournalCommand::Verify { .. } => {
            let report = verify::verify_all(&db).await?;
            let text = describe(&report);
            if report.is_intact() {
                println!("{text}");
            } else {
                eprintln!("{text}");
            }
            report.is_intact()
        }
        JournalCommand::Export { invoice, out } => {
            let export = export(&db, &invoice, &out).await?;
            println!(
                "invoice {invoice:?}: {} journal entries, {} documents, written to {}",
                export.entries,
                export.documents,
                export.dir.display()
            );
            if !export.verification.is_intact() {
                eprintln!("{}", describe(&export.verification));
            }
            export.verification.is_intact()
        }
    };
    db.close().await;
    Ok(intact)
}

/// One broken chain as `journal verify --format json|csv` writes it.
#[derive(serde::Serialize)]
struct ProblemRow<'a> {
    chain: &'a str,
    entry_id: Option<i64>,
    seq: Option<i64>,
    action: Option<&'a str>,
    at: Option<String>,
    reason: &'a str,
}

fn write_verification(report: &Verification, format: Format) -> anyhow::Result<()> {
    let problems: Vec<ProblemRow> = report
        .problems
        .iter()
        .map(|p| ProblemRow {
            chain: &p.chain,
            entry_id: p.entry_id,
            seq: p.seq,
            action: p.action.as_deref(),
            at: p.at.map(|t| t.to_rfc3339()),
            reason: &p.reason,
        })
        .collect();
    if format == Format::Csv {
        return output::write_rows(format, &problems);
    }
    let value = json!({
        "intact": report.is_intact(),
        "chains": report.chains,
        "entries": report.entries,
        "documents": report.documents,
        "first_broken_entry": report.first_problem().and_then(|p| p.entry_id),
        "problems": problems,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&value).context("writing JSON")?
    );
    Ok(())
}

/// What verify prints: a summary, then the first broken entry and any others.
pub fn describe(report: &Verification) -> String {
    let counts = format!(
        "{} entries in {} chains, {} documents",
        report.entries, report.chains, report.documents
    );
    let Some(first) = report.first_problem() else {
        return format!("journal intact: {counts}");
    };
    let mut text = format!(
        "journal BROKEN: {} of {} chains fail verification ({counts})\nfirst broken: {first}",
        report.problems.len(),
        report.chains
    );
    for other in report.problems.iter().filter(|p| *p != first) {
        text.push_str(&format!("\nalso broken: {other}"));
    }
    text
}

/// What [`export`] wrote.
#[derive(Debug)]
pub struct Export {
    pub dir: PathBuf,
    pub entries: usize,
    pub documents: usize,
    pub verification: Verification,
}

/// A name usable as a file or folder name on any system.
fn file_safe(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match safe.trim_matches('.') {
        "" => "_".to_string(),
        s => s.to_string(),
    }
}

/// Writes `out/<invoice>/invoice.json` and, per rendered message, its canonical form
/// (`NN-step.document.json`, whose SHA-256 is the `document_sha256` of the journal entries
/// about it), its text (`.txt`, with the headers) and HTML (`.html`); and the invoice PDF.
pub async fn export(db: &PgPool, invoice_number: &str, out: &Path) -> anyhow::Result<Export> {
    let mut pooled = db.acquire().await.context("acquiring a connection")?;
    // One snapshot for every read: the entries, the head and the documents exported agree
    // with each other while the services go on writing.
    let mut conn = verify::snapshot(&mut pooled).await?;
    let invoice = read_invoice(&mut conn, invoice_number).await?;
    let entries = journal::chain(&mut conn, invoice_number).await?;
    if invoice.is_none() && entries.is_empty() {
        anyhow::bail!(
            "unknown invoice {invoice_number:?}: no invoice and no journal entry under this number"
        );
    }
    let verification = verify::verify_chain_in_snapshot(&mut conn, invoice_number).await?;
    let chain = invoice_journal_v1(&mut conn, invoice_number).await?;
    let head = journal::head(&mut conn, invoice_number).await?;

    let dir = out.join(file_safe(invoice_number));
    let documents_dir = dir.join("documents");
    std::fs::create_dir_all(&documents_dir)
        .with_context(|| format!("creating {}", documents_dir.display()))?;

    let (mut steps, mut payments, mut documents): (Vec<Value>, Vec<Value>, Vec<Value>) =
        (Vec::new(), Vec::new(), Vec::new());
    if let Some(invoice) = &invoice {
        (steps, payments) = steps_and_payments(&mut conn, invoice.id).await?;
        let mut pdf_file = None;
        if let Some(pdf) = &invoice.pdf {
            write_file(dir.join("invoice.pdf"), pdf)?;
            pdf_file = Some("invoice.pdf");
        }
        documents = write_rendered(&mut conn, &dir, invoice.id, pdf_file).await?;
        documents.extend(write_superseded(&mut conn, &dir, invoice.id, pdf_file).await?);
    }
    let (invoice_json, customer_json) = match invoice {
        Some(i) => (i.invoice, i.customer),
        None => (Value::Null, Value::Null),
    };
    let file = json!({
        "format": "relance-journal-export-v1",
        "exported_at": canonical::timestamp(SystemClock.now()),
        "invoice": invoice_json,
        "customer": customer_json,
        "steps": steps,
        "payments": payments,
        "documents": documents,
        "journal": chain,
        "journal_head_recorded": head.map(|h| json!({ "seq": h.seq, "hash": h.hash })),
        "verification": {
            "intact": verification.is_intact(),
            "problems": verification.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
        "hashing": {
            "reference": "docs/journal.md",
            "content_sha256": "SHA-256 of the canonical JSON (keys sorted, no whitespace) of {format: \"relance-journal-entry-v1\", at, invoice_number, step_id, action, detail, document_sha256}",
            "hash": "SHA-256 of \"relance-journal-link-v1\\n{id}\\n{seq}\\n{prev_hash}\\n{content_sha256}\"; prev_hash of seq 1 is 64 zeros",
            "document_sha256": "SHA-256 of the bytes of the document's canonical_file",
        },
    });
    let pretty = serde_json::to_vec_pretty(&file).context("encoding invoice.json")?;
    write_file(dir.join("invoice.json"), &pretty)?;
    conn.commit().await.context("ending the export's snapshot")?;
    Ok(Export {
        dir,
        entries: entries.len(),
        documents: documents.len(),
        verification,
    })
}

/// An invoice as exported: its row and its customer's as JSON (amounts as text, without the
/// PDF), and its PDF.
struct ExportedInvoice {
    id: Uuid,
    invoice: Value,
    customer: Value,
    pdf: Option<Vec<u8>>,
}

async fn read_invoice(
    conn: &mut PgConnection,
    invoice_number: &str,
) -> anyhow::Result<Option<ExportedInvoice>> {
    let row: Option<(Uuid, Value, Value, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT i.id,
                to_jsonb(i) - 'pdf' || jsonb_build_object('amount', i.amount::text, 'balance', i.balance::text),
                to_jsonb(c), i.pdf
         FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE i.number = $1",
    )
    .bind(invoice_number)
    .fetch_optional(&mut *conn)
    .await
    .context("reading the invoice")?;
    Ok(row.map(|(id, invoice, customer, pdf)| ExportedInvoice {
        id,
        invoice,
        customer,
        pdf,
    }))
}

/// The invoice's steps and payments, as JSON rows.
async fn steps_and_payments(conn: &mut PgConnection, id: Uuid) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let steps = sqlx::query_scalar(
        "SELECT to_jsonb(s) FROM reminder_steps s WHERE s.invoice_id = $1 ORDER BY s.kind, s.position",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .context("reading the steps")?;
    let payments = sqlx::query_scalar(
        "SELECT to_jsonb(p) || jsonb_build_object('amount', p.amount::text)
         FROM payments p WHERE p.invoice_id = $1 ORDER BY p.recorded_at, p.id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .context("reading the payments")?;
    Ok((steps, payments))
}

fn write_file(path: PathBuf, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Writes the files of every rendered message of the invoice; returns their descriptions.
async fn write_rendered(
    conn: &mut PgConnection,
    dir: &Path,
    id: Uuid,
    pdf_file: Option<&str>,
) -> anyhow::Result<Vec<Value>> {
    let rendered: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT r.step_id, s.name FROM rendered_messages r JOIN reminder_steps s ON s.id = r.step_id
         WHERE s.invoice_id = $1 ORDER BY r.rendered_at, s.position",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .context("listing the rendered messages")?;
    let mut documents = Vec::new();
    for (n, (step_id, step_name)) in rendered.iter().enumerate() {
        let prefix = format!("{:02}-{}", n + 1, file_safe(step_name));
        if let Some(doc) = document::for_step(&mut *conn, *step_id).await? {
            let pdf = deliveries::document_of(&mut *conn, *step_id)
                .await?
                .map(|(pdf, _)| pdf);
            documents.push(write_document(
                dir,
                &prefix,
                &doc,
                pdf.as_deref(),
                step_name,
                pdf_file,
            )?);
        }
    }
    Ok(documents)
}

/// Renderings replaced before they were delivered (a pause, a grouped message that lost an
/// invoice): never sent, but journal entries recorded their hash. Writes their files;
/// returns their descriptions.
async fn write_superseded(
    conn: &mut PgConnection,
    dir: &Path,
    id: Uuid,
    pdf_file: Option<&str>,
) -> anyhow::Result<Vec<Value>> {
    let superseded: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT DISTINCT r.step_id, s.name FROM superseded_renderings r JOIN reminder_steps s ON s.id = r.step_id
         WHERE s.invoice_id = $1 ORDER BY r.step_id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .context("listing the superseded renderings")?;
    let mut documents = Vec::new();
    for (step_id, step_name) in &superseded {
        for old in document::superseded_for_step(&mut *conn, *step_id).await? {
            let prefix = format!("superseded-{}-{}", old.id, file_safe(step_name));
            let pdf = document::superseded_pdf(&mut *conn, old.id).await?;
            let mut files = write_document(dir, &prefix, &old.document, pdf.as_deref(), step_name, pdf_file)?;
            if let Some(files) = files.as_object_mut() {
                files.insert(
                    "superseded".into(),
                    json!({ "at": canonical::timestamp(old.superseded_at), "reason": old.reason }),
                );
            }
            documents.push(files);
        }
    }
    Ok(documents)
}

/// Writes one rendered message's files under `dir/documents/`; returns their description.
fn write_document(
    dir: &Path,
    prefix: &str,
    doc: &document::Document,
    rendered_pdf: Option<&[u8]>,
    step_name: &str,
    invoice_pdf_file: Option<&str>,
) -> anyhow::Result<Value> {
    let step_id = doc.message.step_id;
    let write = |file: &str, bytes: &[u8]| {
        let path = dir.join(file);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    let canonical_file = format!("documents/{prefix}.document.json");
    write(&canonical_file, doc.canonical().as_bytes())?;
    let m = &doc.message;
    let cc = match m.cc.is_empty() {
        true => String::new(),
        false => format!("Cc: {}\n", m.cc.join(", ")),
    };
    let headers = format!(
        "Channel: {}\nMessage-ID: {}\nTo: {}\n{cc}Subject: {}\nRendered: {}\n\n",
        m.channel,
        m.message_id,
        m.recipients.join(", "),
        m.subject,
        canonical::timestamp(m.rendered_at)
    );
    let text_file = format!("documents/{prefix}.txt");
    write(&text_file, format!("{headers}{}", m.body_text).as_bytes())?;
    let html_file = match &m.body_html {
        Some(html) => {
            let file = format!("documents/{prefix}.html");
            write(&file, html.as_bytes())?;
            Some(file)
        }
        None => None,
    };
    // A letter's PDF, as posted.
    let rendered_pdf = match rendered_pdf {
        Some(pdf) => {
            let file = format!("documents/{prefix}.pdf");
            write(&file, pdf)?;
            json!({ "file": file, "sha256": doc.rendered_pdf_sha256 })
        }
        None => Value::Null,
    };
    let attachments = match (&doc.invoice_pdf_sha256, invoice_pdf_file) {
        (Some(sha), Some(file)) => json!([{ "file": file, "sha256": sha }]),
        _ => json!([]),
    };
    Ok(json!({
        "step_id": step_id,
        "step": step_name,
        "channel": m.channel,
        "sha256": doc.sha256(),
        "canonical_file": canonical_file,
        "text_file": text_file,
        "html_file": html_file,
        "rendered_pdf": rendered_pdf,
        "attachments": attachments,
    }))
}
