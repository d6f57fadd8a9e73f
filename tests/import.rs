//! Loading a ledger export as an accountant would: a French CSV (`;`, decimal comma,
//! dd/mm/yyyy) through `relance import`, a bad row reported with its line while the good
//! ones are registered, a second run changing nothing; and the list commands' JSON and CSV.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use relance_contracts::names;
use relance_domain::collections::CollectionStatus;
use relance_tests::{wait_for, CliRun, TestEnv, DEADLINE};
use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;

async fn relance(env: &TestEnv, args: &[&str]) -> CliRun {
    env.cli(args).await
}

const INVOICES: &str =
    "\u{feff}Numéro;Code client;Client;Contact;Courriel;Montant;Devise;Date facture;Échéance
F-IMP-1;C-ACME;ACME Industrie SA;Jeanne Martin;compta@acme.test;1 234,56;EUR;02/03/2026;01/04/2026
F-IMP-2;C-DURAND;Boulangerie Durand;Paul Durand;paul@durand.test;920,00;EUR;2026-03-02;31/03/2026
F-IMP-3;C-NORTH;Northwind;Ann Lee;ann@northwind.test;12,50;EUR;02/03/2026;15/02/2026
F-IMP-4;C-ACME;ACME Industrie SA;Jeanne Martin;compta@acme.test;75;EUR;02/03/2026;16/04/2026
";

async fn invoice_amounts(env: &TestEnv) -> Vec<(String, Decimal)> {
    sqlx::query_as("SELECT number, amount FROM invoices WHERE number LIKE 'F-IMP-%' ORDER BY number")
        .fetch_all(&env.db)
        .await
        .unwrap()
}

async fn journal_count(env: &TestEnv, invoice: &str, action: &str) -> i64 {
    env.journal_count(invoice, action).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_french_ledger_export_is_imported_once_with_its_bad_row_reported() {
    let env = TestEnv::start(1).await;
    let dir = std::env::temp_dir().join(format!("relance-import-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("factures.csv");
    std::fs::write(&file, INVOICES).unwrap();
    let path = file.to_str().unwrap();

    let first = relance(&env, &["import", "invoices", path]).await;
    // The due date before the issue date is refused, by line, with the intake's reason.
    assert!(!first.ok, "a refused row makes the exit status say so");
    assert!(
        first.stderr.contains("line 4: invoice.due_on"),
        "{}",
        first.stderr
    );
    assert!(
        first.stdout.contains("3 invoice.issued published"),
        "{}",
        first.stdout
    );
    wait_for("the three good invoices", DEADLINE, || async {
        Ok(invoice_amounts(&env).await.len() == 3)
    })
    .await
    .unwrap();
    assert_eq!(
        invoice_amounts(&env).await,
        vec![
            ("F-IMP-1".to_string(), Decimal::from_str("1234.56").unwrap()),
            ("F-IMP-2".to_string(), Decimal::from_str("920.00").unwrap()),
            ("F-IMP-4".to_string(), Decimal::from_str("75").unwrap()),
        ]
    );

    // Again: the same message ids, so the scheduler's inbox applies nothing; it notes each
    // redelivery in the invoice's journal, and nothing else changes.
    let steps_before: i64 = sqlx::query_scalar("SELECT count(*) FROM reminder_steps")
        .fetch_one(&env.db)
        .await
        .unwrap();
    let second = relance(&env, &["import", "invoices", path]).await;
    assert!(second.stderr.contains("line 4:"), "{}", second.stderr);
    for number in ["F-IMP-1", "F-IMP-2", "F-IMP-4"] {
        env.wait_journal(number, names::INVOICE_DUPLICATE, 1).await;
        let notes = env.journal_details(number, names::INVOICE_DUPLICATE).await;
        assert_eq!(
            notes[0]["event_id"],
            format!("import-invoice-{number}"),
            "{notes:?}"
        );
        assert_eq!(journal_count(&env, number, names::INVOICE_REGISTERED).await, 1);
    }
    env.idle().await;
    assert_eq!(invoice_amounts(&env).await.len(), 3);
    let steps_after: i64 = sqlx::query_scalar("SELECT count(*) FROM reminder_steps")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(steps_after, steps_before);

    // A payment export settles one of them.
    let payments = dir.join("reglements.csv");
    std::fs::write(
        &payments,
        "Référence;Facture;Montant;Date règlement\nVIR-001;F-IMP-2;920,00;05/03/2026\nVIR-002;F-IMP-1;abc;05/03/2026\n",
    )
    .unwrap();
    let paid = relance(&env, &["import", "payments", payments.to_str().unwrap()]).await;
    assert!(paid.stderr.contains("line 3: payment.amount"), "{}", paid.stderr);
    assert!(
        paid.stdout.contains("1 payment.received published"),
        "{}",
        paid.stdout
    );
    env.wait_journal("F-IMP-2", names::INVOICE_SETTLED, 1).await;
    assert_eq!(env.collections_status("F-IMP-2").await, CollectionStatus::Settled);

    // The list commands as JSON and CSV.
    let json = relance(&env, &["invoices", "--format", "json"]).await;
    assert!(json.ok, "{}", json.stderr);
    let listed: Vec<Value> = serde_json::from_str(&json.stdout).expect("invoices --format json parses");
    let one = listed.iter().find(|i| i["number"] == "F-IMP-1").unwrap();
    assert_eq!(one["balance"], "1234.56");
    assert_eq!(one["currency"], "EUR");
    assert_eq!(one["customer"], "ACME Industrie SA");
    let csv = relance(&env, &["invoices", "--format", "csv"]).await;
    assert!(
        csv.stdout
            .starts_with("number,customer,status,balance,currency,due_on"),
        "{}",
        csv.stdout
    );
    assert_eq!(csv.stdout.lines().count(), 1 + listed.len());
    let tasks = relance(&env, &["tasks", "--all", "--format", "json"]).await;
    assert!(tasks.ok, "{}", tasks.stderr);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&tasks.stdout).unwrap(),
        Vec::<Value>::new()
    );

    std::fs::remove_dir_all(&dir).unwrap();
    env.stop().await;
}
