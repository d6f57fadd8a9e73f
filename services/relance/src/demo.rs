//! `relance demo`: a small ledger played through all the services on a simulated clock, with
//! the default policy's full escalation (emails, call tasks, SMS, registered letters). It uses
//! its own database (`relance_demo`) and namespace (`relance-demo`), rebuilt at each run, and
//! leaves the emails as `.eml` files in `out/demo-mail` (or in the SMTP server set by
//! `SMTP_URL`), the text messages in `out/demo-sms` (or the gateway of
//! `RELANCE_SMS_GATEWAY_URL`) and the letters' PDFs in `out/demo-letters` (or the postal API
//! of `RELANCE_POSTAL_API_URL`).

use crate::drive::{publish_inbound, wait_for, wait_until_idle};
use anyhow::Context;
use base64::Engine;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use relance_config::{Config, Settings};
use relance_contracts::names::{self, Names};
use relance_domain::{SharedClock, SimulatedClock};
use relance_messaging::{delete_topology, Publisher};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration as StdDuration;
use tokio_util::sync::CancellationToken;

/// A one-page PDF standing in for the invoice document the invoicing system would send.
const SAMPLE_INVOICE_PDF: &[u8] = include_bytes!("../demo/sample-invoice.pdf");

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap_or_default()
}

struct Customer {
    id: &'static str,
    name: &'static str,
    contact: &'static str,
    email: &'static str,
    language: &'static str,
    timezone: &'static str,
    risk: &'static str,
    kind: &'static str,
    /// Without one, the call is skipped and the SMS goes by email.
    phone: Option<&'static str>,
    /// Without one, the formal notice goes by email.
    postal_address: Option<&'static str>,
}

const CUSTOMERS: [Customer; 5] = [
    Customer {
        id: "C-ACME",
        name: "ACME Industrie SA",
        contact: "Jeanne Martin",
        email: "compta@acme-industrie.test",
        language: "fr",
        timezone: "Europe/Paris",
        risk: "medium",
        kind: "business",
        phone: Some("01 42 68 53 00"),
        postal_address: Some("Service comptabilité\n14 rue de la Forge\n69007 Lyon"),
    },
    Customer {
        id: "C-BOUL",
        name: "Boulangerie Durand",
        contact: "Paul Durand",
        email: "paul@boulangerie-durand.test",
        language: "fr",
        timezone: "Europe/Paris",
        risk: "low",
        kind: "business",
        phone: Some("06 12 34 56 78"),
        postal_address: Some("3 place du Marché\n44000 Nantes"),
    },
    Customer {
        id: "C-NORTH",
        name: "Northwind Ltd",
        contact: "Emily Clarke",
        email: "accounts@northwind.test",
        language: "en",
        timezone: "Europe/London",
        risk: "high",
        kind: "business",
        phone: Some("+44 7911 123456"),
        postal_address: Some("1 Harbour Street\nLeeds LS1 4AB\nUnited Kingdom"),
    },
    Customer {
        id: "C-LEROY",
        name: "Sophie Leroy",
        contact: "Sophie Leroy",
        email: "sophie.leroy@example.test",
        language: "fr",
        timezone: "Europe/Paris",
        risk: "medium",
        kind: "consumer",
        phone: Some("06 98 76 54 32"),
        postal_address: Some("8 allée des Tilleuls\n33000 Bordeaux"),
    },
    Customer {
        id: "C-BLUE",
        name: "Bluebird GmbH",
        contact: "Jonas Weber",
        email: "ap@bluebird.test",
        language: "en",
        timezone: "Europe/Berlin",
        risk: "medium",
        kind: "business",
        phone: None,
        postal_address: None,
    },
];

fn invoice(
    number: &str,
    customer: &Customer,
    amount: &str,
    issued_on: NaiveDate,
    due_on: NaiveDate,
    with_pdf: bool,
) -> Value {
    let mut body = json!({
        "version": 1,
        "event_id": format!("evt-{number}"),
        "occurred_at": Utc::now(),
        "invoice": {
            "number": number,
            "customer": {
                "id": customer.id, "name": customer.name, "contact_name": customer.contact, "email": customer.email,
                "language": customer.language, "timezone": customer.timezone, "risk": customer.risk, "kind": customer.kind,
            },
            "amount": amount, "currency": "EUR", "issued_on": issued_on, "due_on": due_on,
            "payment_link": format!("https://pay.exemple.test/{number}"),
        }
    });
    if let Some(phone) = customer.phone {
        body["invoice"]["customer"]["phone"] = json!(phone);
    }
    if let Some(address) = customer.postal_address {
        body["invoice"]["customer"]["postal_address"] = json!(address);
    }
    if with_pdf {
        body["invoice"]["pdf_base64"] =
            json!(base64::engine::general_purpose::STANDARD.encode(SAMPLE_INVOICE_PDF));
    }
    body
}

fn call_outcome(
    id: &str,
    invoice_number: &str,
    outcome: &str,
    promised_on: Option<NaiveDate>,
    note: &str,
) -> Value {
    json!({
        "version": 1, "event_id": format!("evt-{id}"), "occurred_at": Utc::now(),
        "call": { "invoice_number": invoice_number, "outcome": outcome, "promised_on": promised_on, "note": note }
    })
}

fn payment(id: &str, invoice_number: &str, amount: &str, received_on: NaiveDate) -> Value {
    json!({
        "version": 1, "event_id": format!("evt-{id}"), "occurred_at": Utc::now(),
        "payment": { "id": id, "invoice_number": invoice_number, "amount": amount, "currency": "EUR", "received_on": received_on }
    })
}

/// A payment plan agreed with the customer of `invoice_number`: (due day of March, amount).
fn payment_plan(
    id: &str,
    customer: &Customer,
    invoice_number: &str,
    instalments: &[(u32, &str)],
    note: &str,
) -> Value {
    let instalments: Vec<Value> = instalments
        .iter()
        .map(|(d, amount)| json!({ "due_on": day(*d), "amount": amount }))
        .collect();
    json!({
        "version": 1, "event_id": format!("evt-{id}"), "occurred_at": Utc::now(),
        "plan": {
            "id": id, "customer_id": customer.id, "invoice_numbers": [invoice_number],
            "instalments": instalments, "currency": "EUR", "note": note,
        }
    })
}

/// A ledger line: (day of March it arrives, routing key, body).
type LedgerLine = (u32, &'static str, Value);

/// The ledger: the invoices issued, then the payments and call outcomes.
fn ledger() -> Vec<LedgerLine> {
    let mut ledger = invoices_issued();
    ledger.extend(payments_and_calls());
    ledger.extend(payment_plans());
    ledger.extend(second_creditor());
    ledger.extend(approvals_and_customer_page());
    ledger
}

/// The invoices of the ledger.
fn invoices_issued() -> Vec<LedgerLine> {
    let [acme, boul, north, leroy, blue] = &CUSTOMERS;
    let feb = |d| NaiveDate::from_ymd_opt(2026, 2, d).unwrap_or_default();
    let jan = |d| NaiveDate::from_ymd_opt(2026, 1, d).unwrap_or_default();
    vec![
        (
            2,
            names::INVOICE_ISSUED,
            invoice("F-2026-0101", acme, "1500.00", feb(10), day(12), true),
        ),
        (
            2,
            names::INVOICE_ISSUED,
            invoice("F-2026-0102", boul, "480.00", feb(4), day(6), false),
        ),
        (
            2,
            names::INVOICE_ISSUED,
            invoice("F-2026-0103", north, "2400.00", feb(8), day(10), true),
        ),
        // Arrives late: its pre-due note and first reminder are overtaken, only the latest goes.
        (
            2,
            names::INVOICE_ISSUED,
            invoice("F-2026-0099", acme, "920.00", jan(15), feb(14), true),
        ),
        (
            2,
            names::INVOICE_ISSUED,
            invoice("F-2026-0104", leroy, "89.90", feb(20), day(25), false),
        ),
        (
            2,
            names::INVOICE_ISSUED,
            invoice("F-2026-0105", blue, "3150.00", feb(18), day(18), true),
        ),
        // Refused: due before it was issued.
        (
            2,
            names::INVOICE_ISSUED,
            invoice("F-2026-0106", blue, "100.00", day(2), feb(27), false),
        ),
        (
            9,
            names::INVOICE_ISSUED,
            invoice("F-2026-0107", acme, "640.00", day(9), day(20), true),
        ),
    ]
}

/// The payments and call outcomes of the ledger.
fn payments_and_calls() -> Vec<LedgerLine> {
    vec![
        (
            15,
            names::PAYMENT_RECEIVED,
            payment("PAY-3001", "F-2026-0103", "1000.00", day(15)),
        ),
        (
            16,
            names::PAYMENT_RECEIVED,
            payment("PAY-3002", "F-2026-0107", "640.00", day(16)),
        ),
        (
            20,
            names::PAYMENT_RECEIVED,
            payment("PAY-3003", "F-2026-0101", "1500.00", day(20)),
        ),
        // A duplicate delivery of the same payment: applied once.
        (
            20,
            names::PAYMENT_RECEIVED,
            payment("PAY-3003", "F-2026-0101", "1500.00", day(20)),
        ),
        // The accounts team called the bakery about its invoice on Friday (the call task of
        // its J+14): Monday, the outcome is recorded. The promise pauses the sequence and a
        // recap email confirms the date; the bakery keeps its word.
        (
            23,
            names::CALL_OUTCOME,
            call_outcome(
                "CALL-3101",
                "F-2026-0102",
                "reached",
                Some(day(27)),
                "P. Durand: transfer on Friday",
            ),
        ),
        (
            26,
            names::PAYMENT_RECEIVED,
            payment("PAY-3004", "F-2026-0105", "3150.00", day(26)),
        ),
        (
            27,
            names::PAYMENT_RECEIVED,
            payment("PAY-3005", "F-2026-0102", "480.00", day(27)),
        ),
    ]
}

/// Two payment plans: the bakery pays a second invoice in three weekly instalments and keeps
/// them (each announced by its own note, then the thank-you); Northwind misses its first
/// instalment (a reminder three days after it), the plan breaks after the grace days and the
/// invoice's own sequence resumes where it stood.
fn payment_plans() -> Vec<LedgerLine> {
    let [_, boul, north, _, _] = &CUSTOMERS;
    let feb = |d| NaiveDate::from_ymd_opt(2026, 2, d).unwrap_or_default();
    vec![
        (
            2,
            names::INVOICE_ISSUED,
            invoice("F-2026-0108", boul, "900.00", feb(20), day(5), false),
        ),
        (
            2,
            names::INVOICE_ISSUED,
            invoice("F-2026-0109", north, "1200.00", feb(15), day(3), true),
        ),
        (
            9,
            names::PAYMENT_PLAN_AGREED,
            payment_plan(
                "PLAN-2026-0002",
                north,
                "F-2026-0109",
                &[(13, "600.00"), (31, "600.00")],
                "E. Clarke: two instalments",
            ),
        ),
        (
            10,
            names::PAYMENT_PLAN_AGREED,
            payment_plan(
                "PLAN-2026-0001",
                boul,
                "F-2026-0108",
                &[(16, "300.00"), (23, "300.00"), (30, "300.00")],
                "P. Durand: three weekly transfers",
            ),
        ),
        (
            16,
            names::PAYMENT_RECEIVED,
            payment("PAY-3006", "F-2026-0108", "300.00", day(16)),
        ),
        (
            23,
            names::PAYMENT_RECEIVED,
            payment("PAY-3007", "F-2026-0108", "300.00", day(23)),
        ),
        (
            30,
            names::PAYMENT_RECEIVED,
            payment("PAY-3008", "F-2026-0108", "300.00", day(30)),
        ),
    ]
}

// ---- Two creditors (issue #17) -------------------------------------------------------------
// A sister company shares the deployment: `creditor.updated` gives its identity, and one
// invoice names it. Its messages go out in its name (From, IBAN, legal mentions, letterhead);
// the other invoices stay the default creditor's (RELANCE_CREDITOR_*, the example company).

/// The second creditor's id.
const SECOND_CREDITOR: &str = "lumiere";

/// The second creditor on the first day, its invoice the next.
fn second_creditor() -> Vec<LedgerLine> {
    let [acme, ..] = &CUSTOMERS;
    let feb = |d| NaiveDate::from_ymd_opt(2026, 2, d).unwrap_or_default();
    let mut invoice = invoice("F-LUM-0001", acme, "2100.00", feb(9), day(11), true);
    invoice["invoice"]["creditor"] = json!(SECOND_CREDITOR);
    invoice["invoice"]["payment_link"] = json!("https://pay.lumiere.test/F-LUM-0001");
    let creditor = json!({
        "version": 1, "event_id": "evt-creditor-lumiere-1", "occurred_at": Utc::now(),
        "creditor": {
            "id": SECOND_CREDITOR, "name": "Studio Lumière SAS", "legal_form": "SAS", "share_capital": "20 000 €",
            "siret": "732 829 320 00074", "rcs_city": "Lyon", "vat_number": "FR44732829320",
            "address": "22 quai Saint-Vincent\n69001 Lyon", "iban": "FR14 2004 1010 0505 0001 3M02 606",
            "bic": "PSSTFRPPLYO", "email": "compta@lumiere.test", "letterhead": ["Groupe Exemple"],
            "signature_fr": "La comptabilité clients", "signature_en": "Customer accounts",
            "mail_from": "Studio Lumière <relances@lumiere.test>", "reply_to": "compta@lumiere.test",
        }
    });
    vec![
        (2, names::CREDITOR_UPDATED, creditor),
        (3, names::INVOICE_ISSUED, invoice),
    ]
}

/// Each creditor and what went out in its name.
async fn print_creditors(db: &sqlx::PgPool, settings: &Settings) -> anyhow::Result<()> {
    let rows: Vec<(Option<String>, i64, i64)> = sqlx::query_as(
        "SELECT i.creditor_id, count(DISTINCT i.id),
             count(s.id) FILTER (WHERE s.status IN ('sent', 'completed', 'expired', 'awaiting_outcome'))
         FROM invoices i LEFT JOIN reminder_steps s ON s.invoice_id = i.id
         GROUP BY i.creditor_id ORDER BY i.creditor_id NULLS FIRST",
    )
    .fetch_all(db)
    .await
    .context("counting each creditor's messages")?;
    let mut conn = db.acquire().await.context("acquiring a connection")?;
    for (id, invoices, sent) in rows {
        let creditor = match &id {
            None => settings.creditor.clone(),
            Some(id) => relance_storage::creditors::find(&mut conn, &settings.creditor, id)
                .await?
                .map(|stored| stored.creditor)
                .with_context(|| format!("creditor {id} vanished"))?,
        };
        println!(
            "Creditor {:<8} {} ({} invoice(s), {} message(s) from {}, IBAN {})",
            creditor.id, creditor.name, invoices, sent, creditor.mail_from, creditor.iban
        );
    }
    Ok(())
}
// ---- end of two creditors ---------------------------------------------------------------------
// --- gaps (issue #17): an approval and a promise made on the customer page -----------------

/// A customer set to manual approval (Odoo's manual follow-up): every reminder it gets waits,
/// rendered, for the accounts team, which the demo plays (see `Demo::approve_waiting`).
const MANUAL_CUSTOMER: Customer = Customer {
    id: "C-MERLE",
    name: "Atelier Merle SARL",
    contact: "Louis Merle",
    email: "compta@atelier-merle.test",
    language: "fr",
    timezone: "Europe/Paris",
    risk: "medium",
    kind: "business",
    phone: None,
    postal_address: Some("22 quai des Tanneurs\n67000 Strasbourg"),
};

/// The demo's accounts team, who approves what waits for approval.
const APPROVER: &str = "Claire Petit (comptabilité)";
/// The invoice its customer promises to pay on the customer page, the day it does, and the
/// date it promises.
const PAGE_PROMISE: (&str, u32, u32) = ("F-2026-0121", 18, 27);

/// Atelier Merle's invoices: one long overdue, whose formal notice (a registered letter)
/// waits for approval with its exact rendering, is approved and posted; one the customer
/// promises to pay on the customer page (the sequence pauses), then pays.
fn approvals_and_customer_page() -> Vec<LedgerLine> {
    let merle = &MANUAL_CUSTOMER;
    let manual = |mut body: Value| {
        body["invoice"]["customer"]["approval"] = json!("manual");
        body
    };
    let jan = |d| NaiveDate::from_ymd_opt(2026, 1, d).unwrap_or_default();
    let feb = |d| NaiveDate::from_ymd_opt(2026, 2, d).unwrap_or_default();
    vec![
        (
            2,
            names::INVOICE_ISSUED,
            manual(invoice("F-2026-0120", merle, "2200.00", jan(20), feb(4), true)),
        ),
        (
            2,
            names::INVOICE_ISSUED,
            manual(invoice("F-2026-0121", merle, "450.00", feb(27), day(16), false)),
        ),
        (
            PAGE_PROMISE.2,
            names::PAYMENT_RECEIVED,
            payment("PAY-3020", "F-2026-0121", "450.00", day(PAGE_PROMISE.2)),
        ),
    ]
}

impl Demo<'_> {
    /// Approves every step waiting for approval, as the accounts team would after reading its
    /// preview (`relance approvals show`): publishes `approval.granted`. Returns the event ids.
    async fn approve_waiting(&self) -> anyhow::Result<Vec<String>> {
        let mut published = Vec::new();
        for waiting in relance_storage::approvals::pending(self.db).await? {
            let event_id = format!("demo-approval-{}", waiting.step_id.simple());
            let instruction = relance_sequence::actions::approval_instruction(
                &waiting.invoice_number,
                &waiting.step_id.to_string(),
                relance_sequence::actions::ApprovalVerdict::Grant,
                APPROVER,
                Some("preview read: figures and wording checked".to_string()),
                event_id.clone(),
                self.clock.now(),
            )
            .map_err(|r| anyhow::anyhow!("the demo's approval refused: {r}"))?;
            publish_inbound(
                self.publisher,
                self.names,
                instruction.routing_key,
                &instruction.body,
            )
            .await?;
            published.push(event_id);
        }
        Ok(published)
    }

    /// The customer opens its page (the link its emails carry), and promises there, through
    /// the page's own HTTP form, to pay `PAGE_PROMISE`'s invoice by the promised day.
    async fn promise_on_the_page(&self) -> anyhow::Result<()> {
        let Some(config) = self.portal else {
            return Ok(());
        };
        let (number, _, by) = PAGE_PROMISE;
        let url = relance_portal::link(config, number)?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("an HTTP client for the customer page")?;
        let page = client
            .get(&url)
            .send()
            .await
            .context("opening the customer page")?;
        let cookie = page
            .headers()
            .get("set-cookie")
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').next())
            .unwrap_or_default()
            .to_string();
        let html = page.text().await.context("reading the customer page")?;
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_string();
        let answer = client
            .post(format!("{url}/promise"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie)
            .body(format!("csrf={csrf}&invoice={number}&date={}", day(by)))
            .send()
            .await
            .context("promising on the customer page")?;
        let applied = answer
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .is_some_and(|l| l.contains("outcome=applied"));
        println!(
            "  {}: Atelier Merle promised on its page to pay {number} by {} ({})",
            self.clock.now().date_naive(),
            day(by),
            if applied { "applied" } else { "not applied" }
        );
        Ok(())
    }
}

/// Serves the customer page on a free local port for the demo (its links then point there):
/// returns its configuration, with the page's address as `RELANCE_PORTAL_URL`.
async fn start_customer_page(mut config: Config, shutdown: &CancellationToken) -> anyhow::Result<Config> {
    if config.settings.portal_secret.is_none() {
        config.settings.portal_secret = Some("relance-demo-portal-secret".to_string());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo's customer page")?;
    let (addr, server) = relance_portal::serve(listener, config.clone(), shutdown.clone()).await?;
    tokio::spawn(server);
    config.settings.portal_url = Some(format!("http://{addr}"));
    println!("  customer page on http://{addr}/p/...");
    Ok(config)
}

// --- end of gaps -------------------------------------------------------------------------

/// The demo's database: the server of `DATABASE_URL`, database `relance_demo`.
fn demo_database_url(database_url: &str) -> String {
    let (base, query) = match database_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (database_url, String::new()),
    };
    let server = match base.rfind('/') {
        Some(i) if base[..i].ends_with('/') => base, // no database part (postgres://host)
        Some(i) => &base[..i],
        None => base,
    };
    format!("{server}/relance_demo{query}")
}

pub async fn run(settings: Settings, days: u32) -> anyhow::Result<()> {
    let start: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 3, 2, 6, 0, 0)
        .single()
        .context("demo start")?;
    let settings = demo_settings(settings);
    println!("relance demo: {days} simulated days from {}", start.date_naive());
    print_destinations(&settings);

    relance_storage::drop_database(&settings.database_url).await?;
    relance_storage::migrate(&settings.database_url).await?;
    let names = Names::new(&settings.namespace);
    let connection = relance_messaging::connect(&settings.amqp_url, "demo").await?;
    {
        let channel = connection.create_channel().await?;
        let _ = delete_topology(&channel, &names).await;
        relance_messaging::declare_topology(
            &channel,
            &names,
            &relance_messaging::TopologyOptions::from_settings(&settings),
        )
        .await?;
    }
    let publisher = Publisher::open(&connection).await?;
    let simulated = SimulatedClock::starting_at(start);
    let clock: SharedClock = Arc::new(simulated.clone());
    let config = Config::with_clock(settings.clone(), clock.clone())?;
    let db = relance_storage::connect(&settings.database_url, 4).await?;
    let shutdown = CancellationToken::new();
    // gaps: the customer page, for the promise made on it (its links in the messages).
    let config = start_customer_page(config, &shutdown).await?;
    let portal = Some(&config);
    let services = tokio::spawn(crate::run_services(
        &crate::SERVICES,
        config.clone(),
        shutdown.clone(),
    ));

    let demo = Demo {
        publisher: &publisher,
        names: &names,
        db: &db,
        simulated: &simulated,
        clock: &clock,
        portal,
    };
    demo.play(start, days).await?;
    publisher.close().await;
    let _ = connection.close(200, "demo over".into()).await;
    shutdown.cancel();
    services.await.context("joining the services")??;
    print_timeline(&db).await?;
    print_creditors(&db, &settings).await?;
    Ok(())
}

/// The demo's own database and exchanges, fast intervals, and (unless a server is
/// configured) the mail, SMS and letters written to emptied folders under `out/`.
fn demo_settings(mut settings: Settings) -> Settings {
    settings.database_url = demo_database_url(&settings.database_url);
    settings.namespace = "relance-demo".to_string();
    settings.scheduler_interval = StdDuration::from_millis(50);
    settings.handoff_interval = StdDuration::from_millis(50);
    settings.outbox_interval = StdDuration::from_millis(20);
    settings.retry_base = StdDuration::from_millis(200);
    if settings.smtp_url.is_none() {
        settings.mail_dir = "out/demo-mail".into();
        let _ = std::fs::remove_dir_all(&settings.mail_dir);
    }
    if settings.channels.sms_gateway_url.is_none() {
        settings.channels.sms_dir = "out/demo-sms".into();
        let _ = std::fs::remove_dir_all(&settings.channels.sms_dir);
    }
    if settings.channels.postal_api_url.is_none() {
        settings.channels.letter_dir = "out/demo-letters".into();
        let _ = std::fs::remove_dir_all(&settings.channels.letter_dir);
    }
    settings
}

/// Where the demo's database, exchanges and messages go.
fn print_destinations(settings: &Settings) {
    let folder_or = |url: &Option<String>, via: &str, folder: &std::path::Path| match url {
        Some(_) => format!("via {via}"),
        None => folder.display().to_string(),
    };
    println!(
        "  database relance_demo, exchanges relance-demo.*, mail {}, SMS {}, letters {}",
        folder_or(&settings.smtp_url, "SMTP_URL", &settings.mail_dir),
        folder_or(
            &settings.channels.sms_gateway_url,
            "RELANCE_SMS_GATEWAY_URL",
            &settings.channels.sms_dir
        ),
        folder_or(
            &settings.channels.postal_api_url,
            "RELANCE_POSTAL_API_URL",
            &settings.channels.letter_dir
        ),
    );
}

/// The running demo: where it publishes, its database and its simulated clock.
struct Demo<'a> {
    publisher: &'a Publisher,
    names: &'a Names,
    db: &'a sqlx::PgPool,
    simulated: &'a SimulatedClock,
    clock: &'a SharedClock,
    /// gaps: the customer page's configuration, when it runs.
    portal: Option<&'a Config>,
}

impl Demo<'_> {
    /// Plays the ledger day by day from `start`, walking each day hour by hour so that steps
    /// go out at their local time.
    async fn play(&self, start: DateTime<Utc>, days: u32) -> anyhow::Result<()> {
        let deadline = StdDuration::from_secs(60);
        let mut ledger = ledger();
        let mut seen_events = std::collections::BTreeSet::new();
        for d in 0..=days {
            let today = start + Duration::days(i64::from(d));
            self.simulated.set(today);
            let mut todays_event_ids = Vec::new();
            for (_, routing_key, body) in ledger.iter().filter(|(on, _, _)| today.date_naive() == day(*on)) {
                publish_inbound(self.publisher, self.names, routing_key, body).await?;
                todays_event_ids.push(body["event_id"].as_str().unwrap_or_default().to_string());
            }
            ledger.retain(|(on, _, _)| today.date_naive() != day(*on));
            if !todays_event_ids.is_empty() {
                // Wait until the services have taken in what arrived today: each new event id
                // is recorded once (a replayed one is not).
                seen_events.extend(todays_event_ids);
                let expected = i64::try_from(seen_events.len()).unwrap_or(i64::MAX);
                self.wait_for_applied(expected, deadline).await?;
            }
            // gaps: the customer promises on its page.
            if today.date_naive() == day(PAGE_PROMISE.1) {
                self.promise_on_the_page().await?;
                seen_events.insert(format!("page-promise-{}", PAGE_PROMISE.0));
            }
            for hour in 1..=24 {
                self.simulated.set(today + Duration::hours(hour));
                wait_until_idle(self.db, self.clock, deadline).await?;
                // gaps: the accounts team approves what waits, after reading its preview.
                let approved = self.approve_waiting().await?;
                if !approved.is_empty() {
                    seen_events.extend(approved);
                    let expected = i64::try_from(seen_events.len()).unwrap_or(i64::MAX);
                    self.wait_for_applied(expected, deadline).await?;
                    wait_until_idle(self.db, self.clock, deadline).await?;
                }
            }
        }
        Ok(())
    }

    /// Waits until `expected` inbound messages are recorded as applied.
    async fn wait_for_applied(&self, expected: i64, deadline: StdDuration) -> anyhow::Result<()> {
        wait_for("the day's messages to be applied", deadline, || {
            let db = self.db.clone();
            async move {
                let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_messages")
                    .fetch_one(&db)
                    .await?;
                Ok(applied >= expected)
            }
        })
        .await
    }
}

#[derive(sqlx::FromRow)]
struct TimelineRow {
    at: DateTime<Utc>,
    invoice_number: Option<String>,
    action: String,
    detail: Value,
    step: Option<String>,
    channel: Option<String>,
}

async fn print_timeline(db: &sqlx::PgPool) -> anyhow::Result<()> {
    let rows: Vec<TimelineRow> = sqlx::query_as(
        "SELECT j.at, j.invoice_number, j.action, j.detail, s.name AS step, s.channel
         FROM journal j LEFT JOIN reminder_steps s ON s.id = j.step_id
         WHERE j.action IN ('invoice.registered', 'invoice.rejected', 'reminder.sent', 'reminder.skipped', 'reminder.cancelled',
                            'reminder.failed', 'payment.recorded', 'invoice.settled', 'thanks.sent', 'reminder.postponed',
                            'invoice.handed_off', 'reminder.fallback', 'call.task_opened', 'call.outcome_recorded',
                            'call.task_expired', 'invoice.paused', 'invoice.resumed', 'payment_plan.agreed',
                            'payment_plan.instalment_paid', 'payment_plan.completed', 'payment_plan.broken',
                            'approval.requested', 'approval.granted', 'approval.rejected', 'approval.expired')
         ORDER BY j.at, j.id",
    )
    .fetch_all(db)
    .await
    .context("reading the journal")?;
    println!();
    println!("{:<17} {:<12} {:<19} details", "when (UTC)", "invoice", "what");
    println!("{}", "-".repeat(100));
    for row in rows {
        let details = timeline_details(&row);
        println!(
            "{:<17} {:<12} {:<19} {}",
            row.at.format("%Y-%m-%d %H:%M"),
            row.invoice_number.unwrap_or_default(),
            row.action,
            details
        );
    }
    print_sent_summary(db).await
}

/// What the timeline says of one journal entry.
fn timeline_details(row: &TimelineRow) -> String {
    let d = &row.detail;
    let text = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let step = row.step.clone().unwrap_or_default();
    match row.action.as_str() {
        "invoice.registered" => format!(
            "risk {}, {} steps planned",
            text("risk"),
            d.get("plan").and_then(Value::as_array).map_or(0, Vec::len)
        ),
        "invoice.rejected" => format!("{}: {}", text("field"), text("reason")),
        "reminder.sent" | "thanks.sent" => {
            let recipient = match d.get("recipients") {
                Some(Value::Array(all)) => all.first().and_then(Value::as_str).unwrap_or(""),
                Some(Value::String(one)) => one,
                _ => "",
            };
            let what = match text("subject") {
                subject if !subject.is_empty() => format!("\"{subject}\""),
                _ => format!("({})", row.channel.clone().unwrap_or_default().replace('_', " ")),
            };
            format!("{} -> {recipient} {what}", step)
        }
        "reminder.skipped" | "reminder.cancelled" | "reminder.postponed" => {
            format!("{} ({})", step, text("reason"))
        }
        "reminder.failed" => format!("{}: {}", step, text("reason")),
        "reminder.fallback" => format!(
            "{}: {} -> {} ({})",
            step,
            text("from"),
            text("to"),
            text("reason")
        ),
        "call.task_opened" => text("title"),
        "call.outcome_recorded" => format!("{} {}", text("outcome"), text("promised_on")),
        "call.task_expired" => text("reason"),
        "invoice.paused" => {
            // A promise made on the customer page says its date in its reason already.
            let (reason, promised_on) = (text("reason"), text("promised_on"));
            if promised_on.is_empty() || reason.contains(&promised_on) {
                format!("{}: {reason}", text("kind"))
            } else {
                format!("{}: {reason} (pays by {promised_on})", text("kind"))
            }
        }
        "invoice.resumed" => text("reason"),
        "payment_plan.agreed" => {
            let instalments: Vec<String> = d["instalments"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .map(|i| {
                            format!(
                                "{} {}",
                                i["due_on"].as_str().unwrap_or(""),
                                i["amount"].as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!("{}: {}", text("plan_id"), instalments.join(", "))
        }
        "payment_plan.instalment_paid" => format!(
            "{} instalment {} paid, {} left",
            text("plan_id"),
            d["instalment"]["position"],
            d["remaining"]
        ),
        "payment_plan.completed" => format!("{}: {} EUR paid", text("plan_id"), text("total")),
        "payment_plan.broken" => text("reason"),
        // gaps: approvals.
        "approval.requested" if text("subject") == "hand_off" => format!(
            "hand-off waits ({}): {} EUR claimed",
            text("by"),
            d["preview"]["amount_due"]["total"].as_str().unwrap_or("")
        ),
        "approval.requested" => format!(
            "{} waits ({}): \"{}\", total {} EUR",
            text("step"),
            text("by"),
            d["preview"]["message"]["subject"].as_str().unwrap_or(""),
            d["preview"]["total"].as_str().unwrap_or("")
        ),
        "approval.granted" if text("subject") == "hand_off" => {
            format!("hand-off approved by {}", text("decided_by"))
        }
        "approval.granted" => format!(
            "{} approved by {}{}",
            text("step"),
            text("decided_by"),
            match text("rerendered") {
                r if r.is_empty() => ", sent as previewed".to_string(),
                r => format!(", rendered again: {r}"),
            }
        ),
        "approval.rejected" => format!(
            "{} rejected by {}: {}",
            text("step"),
            text("decided_by"),
            text("reason")
        ),
        "approval.expired" => format!("{} expired after {} days", text("step"), d["after_days"]),
        "payment.recorded" => format!("{} EUR received, balance {}", text("amount"), text("balance")),
        "invoice.settled" => format!("paid in full ({} EUR)", text("amount_paid")),
        "invoice.handed_off" => format!(
            "{} EUR due, journal up to #{} {:.12}…",
            d["amount_due"]["principal"].as_str().unwrap_or(""),
            d["journal_head"]["seq"],
            d["journal_head"]["hash"].as_str().unwrap_or("")
        ),
        _ => String::new(),
    }
}

/// How many messages went out, by channel, and whether the journal is intact.
async fn print_sent_summary(db: &sqlx::PgPool) -> anyhow::Result<()> {
    let by_channel: Vec<(String, i64)> = sqlx::query_as(
        "SELECT channel, count(*) FROM reminder_steps WHERE status IN ('sent', 'completed', 'expired', 'awaiting_outcome')
         GROUP BY channel ORDER BY channel",
    )
    .fetch_all(db)
    .await
    .context("counting sent messages")?;
    let summary: Vec<String> = by_channel
        .iter()
        .map(|(channel, n)| match channel.as_str() {
            "call" => format!("{n} call tasks"),
            "registered_letter" => format!("{n} registered letters"),
            "sms" => format!("{n} SMS"),
            other => format!("{n} {other}s"),
        })
        .collect();
    println!("{}", "-".repeat(100));
    println!(
        "Sent: {} (thank-yous and call recaps included). Every action above is in the journal table of relance_demo.",
        summary.join(", ")
    );
    let verification = relance_storage::journal::verify::verify_all(db).await?;
    println!("{}", crate::journal::describe(&verification));
    Ok(())
}
