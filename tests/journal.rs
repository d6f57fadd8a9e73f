//! `relance journal verify` and `relance journal export`, run as the built binary against the
//! journal of a real pipeline run: the export lets an outsider recompute every hash with
//! nothing but SHA-256 and sorted JSON, and a row altered by the database owner makes verify
//! fail, naming the entry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use relance_contracts::names;
use relance_tests::{date, invoice_issued, relance_binary, TestEnv};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Output;

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

async fn relance(env: &TestEnv, args: &[&str]) -> Output {
    tokio::process::Command::new(relance_binary())
        .args(args)
        .env("DATABASE_URL", &env.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("running relance")
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Sorted-key compact JSON, written independently of relance's own code.
fn sorted_json(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<_> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), sorted_json(&map[k.as_str()])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(sorted_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// An auditor's check of an exported chain, following docs/journal.md.
fn recompute(entries: &[Value], dir: &Path) {
    let mut prev = "0".repeat(64);
    for (i, e) in entries.iter().enumerate() {
        let content = json!({
            "format": "relance-journal-entry-v1",
            "at": e["at"], "invoice_number": e["invoice_number"], "step_id": e["step_id"],
            "action": e["action"], "detail": e["detail"], "document_sha256": e["document_sha256"],
        });
        let content_sha256 = sha256(sorted_json(&content).as_bytes());
        assert_eq!(e["content_sha256"], content_sha256.as_str(), "entry {i}");
        assert_eq!(e["prev_hash"], prev.as_str(), "entry {i}");
        assert_eq!(e["seq"], i as i64 + 1);
        let link = format!(
            "relance-journal-link-v1\n{}\n{}\n{}\n{}",
            e["id"], e["seq"], prev, content_sha256
        );
        let hash = sha256(link.as_bytes());
        assert_eq!(e["hash"], hash.as_str(), "entry {i}");
        prev = hash;
    }
    assert!(dir.join("invoice.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_lets_anyone_recompute_the_hashes_and_verify_names_a_tampered_entry() {
    // The harness's email-only policy: for invoices due Monday 16 March, the pre-due notes on
    // Wednesday 11 March and the first reminders on Tuesday 24 March, 09:00 in Paris.
    let env = TestEnv::start(1).await;
    let mut invoice = invoice_issued("F-950/A", "1500.00", date(2026, 3, 2), date(2026, 3, 16));
    invoice["invoice"]["pdf_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(PDF));
    env.publish(names::INVOICE_ISSUED, &invoice).await;
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-951", "90.00", date(2026, 3, 2), date(2026, 3, 16)),
    )
    .await;
    env.run_until(date(2026, 3, 24)).await;
    env.mail.wait_for_emails(4).await;
    env.idle().await;

    let verify = relance(&env, &["journal", "verify"]).await;
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        stdout.contains("journal intact") && stdout.contains("2 chains"),
        "{stdout}"
    );

    let out = std::env::temp_dir().join(format!("relance-export-{}", uuid::Uuid::new_v4().simple()));
    let export = relance(
        &env,
        &["journal", "export", "F-950/A", "--out", out.to_str().unwrap()],
    )
    .await;
    assert_eq!(
        export.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let dir = out.join("F-950_A");
    let file: Value = serde_json::from_slice(&std::fs::read(dir.join("invoice.json")).unwrap()).unwrap();
    assert_eq!(file["format"], "relance-journal-export-v1");
    assert_eq!(file["invoice"]["number"], "F-950/A");
    assert_eq!(file["invoice"]["amount"], "1500.0000");
    assert_eq!(file["invoice"]["pdf_sha256"], sha256(PDF).as_str());
    assert_eq!(file["customer"]["email"], "compta+f-950/a@acme.test");
    assert_eq!(file["steps"].as_array().unwrap().len(), 5);
    assert_eq!(file["verification"]["intact"], true);
    let entries = file["journal"]["entries"].as_array().unwrap();
    recompute(entries, &dir);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM journal WHERE invoice_number = 'F-950/A'")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(entries.len() as i64, stored);
    assert_eq!(
        file["journal"]["head_hash"],
        file["journal_head_recorded"]["hash"]
    );

    // Two messages went out (pre-due note, first reminder); each document file hashes to what
    // the journal recorded when it was rendered and sent.
    let documents = file["documents"].as_array().unwrap();
    assert_eq!(
        documents
            .iter()
            .map(|d| d["step"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["pre_due", "reminder_1"]
    );
    for document in documents {
        let bytes = std::fs::read(dir.join(document["canonical_file"].as_str().unwrap())).unwrap();
        let hash = sha256(&bytes);
        assert_eq!(document["sha256"], hash.as_str());
        let sent = entries
            .iter()
            .find(|e| e["action"] == names::REMINDER_SENT && e["step_id"] == document["step_id"])
            .expect("a reminder.sent entry for the document");
        assert_eq!(sent["document_sha256"], hash.as_str());
        let canonical: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            canonical["invoice_pdf_sha256"],
            sha256(PDF).as_str(),
            "the PDF attached is covered"
        );
        let text = std::fs::read_to_string(dir.join(document["text_file"].as_str().unwrap())).unwrap();
        assert!(text.contains(canonical["subject"].as_str().unwrap()), "{text}");
        assert!(text.contains("1\u{202f}500,00\u{a0}€"), "{text}");
        assert!(dir.join(document["html_file"].as_str().unwrap()).exists());
    }
    assert_eq!(std::fs::read(dir.join("invoice.pdf")).unwrap(), PDF);

    // The owner rewrites what the first reminder's delivery proof says.
    let tampered: i64 = sqlx::query_scalar(
        "UPDATE journal SET detail = jsonb_set(detail, '{smtp_response}', '\"550 rejected\"')
         WHERE invoice_number = 'F-950/A' AND action = 'reminder.sent'
           AND step_id = (SELECT s.id FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
                          WHERE i.number = 'F-950/A' AND s.name = 'reminder_1')
         RETURNING id",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    let verify = relance(&env, &["journal", "verify"]).await;
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert_eq!(verify.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("journal BROKEN: 1 of 2 chains"), "{stderr}");
    assert!(
        stderr.contains(&format!("first broken: entry #{tampered} (invoice \"F-950/A\"")),
        "{stderr}"
    );
    assert!(
        stderr.contains("reminder.sent") && stderr.contains("modified"),
        "{stderr}"
    );
    let export = relance(
        &env,
        &["journal", "export", "F-950/A", "--out", out.to_str().unwrap()],
    )
    .await;
    assert_eq!(export.status.code(), Some(2));
    let file: Value = serde_json::from_slice(&std::fs::read(dir.join("invoice.json")).unwrap()).unwrap();
    assert_eq!(file["verification"]["intact"], false);

    let unknown = relance(
        &env,
        &["journal", "export", "F-NOPE", "--out", out.to_str().unwrap()],
    )
    .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown invoice"));
    let _ = std::fs::remove_dir_all(&out);
    env.stop().await;
}
