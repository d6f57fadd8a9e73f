//! The dunning method end to end, on a simulated clock shared through the database
//! (`RELANCE_CLOCK=database`). With the policy relance ships: one customer per risk segment
//! over 60 days, each receiving the dated sequence of its segment across every channel
//! (emails at the SMTP server, call tasks, SMS at a local gateway, registered letters in the
//! postal outbox), every message inside its send window on the French calendar, fallbacks
//! for a customer without phone or address, and an invoice too small to chase. With the
//! email-only policy: a customer whose segment changes while its invoice is open, re-planned
//! once, and grouping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Europe::Paris;
use relance_contracts::names;
use relance_domain::calendar::FrenchCalendar;
use relance_domain::{plan_invoice, CustomerKind, DunningPolicy, HolidayCalendar, Money, PlanInput, Risk};
use relance_tests::sms_gateway::Gateway;
use relance_tests::{date, invoice_issued, manifest_lines, squeeze, Email, TestEnv, POLICY_SHIPPED};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

const FR: FrenchCalendar = FrenchCalendar {
    alsace_moselle: false,
};

async fn start() -> TestEnv {
    TestEnv::try_start(1, &[("RELANCE_CLOCK", "database")])
        .await
        .expect("starting the test environment")
}

/// Moves the shared clock forward to `end`, six hours at a time and stopping exactly at each
/// planned step, waiting each time until every due step is settled.
async fn run_to(env: &TestEnv, end: DateTime<Utc>) {
    let mut now = relance_domain::Clock::now(&env.clock);
    while now < end {
        let next_due: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(due_at) FROM reminder_steps WHERE status = 'pending' AND due_at > $1",
        )
        .bind(now)
        .fetch_one(&env.db)
        .await
        .unwrap();
        let mut next = (now + Duration::hours(6)).min(end);
        if let Some(due) = next_due {
            next = next.min(due);
        }
        env.set_time(next).await;
        now = next;
    }
}

fn at_utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).single().unwrap()
}

fn local(at: DateTime<Utc>) -> String {
    at.with_timezone(&Paris).format("%a %Y-%m-%d %H:%M").to_string()
}

fn invoice_for(
    number: &str,
    customer: &str,
    risk: &str,
    language: &str,
    amount: &str,
    due_on: NaiveDate,
) -> Value {
    let mut invoice = invoice_issued(number, amount, date(2026, 3, 2), due_on);
    invoice["invoice"]["customer"]["id"] = json!(customer);
    invoice["invoice"]["customer"]["risk"] = json!(risk);
    invoice["invoice"]["customer"]["language"] = json!(language);
    invoice
}

/// The template of each step, by the Message-ID of its email.
async fn templates_by_message_id(env: &TestEnv) -> BTreeMap<String, String> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.message_id, s.template FROM rendered_messages m JOIN reminder_steps s ON s.id = m.step_id",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, template)| (id.trim_matches(['<', '>']).to_string(), template))
        .collect()
}

/// (local send time, template, subject) of the emails one address received, in order.
async fn received_by(env: &TestEnv, address: &str) -> Vec<(String, String, String)> {
    let templates = templates_by_message_id(env).await;
    let mut emails: Vec<Email> = env
        .mail
        .emails()
        .await
        .into_iter()
        .filter(|e| e.to.iter().any(|a| a == address))
        .collect();
    emails.sort_by_key(|e| e.date);
    emails
        .iter()
        .map(|e| {
            let id = e.message_id.trim_matches(['<', '>']);
            (
                local(e.date.expect("a Date header")),
                templates.get(id).cloned().unwrap_or_else(|| format!("? {id}")),
                e.subject.clone(),
            )
        })
        .collect()
}

/// What each template's subject says, per language.
fn subject_marks(template: &str, language: &str) -> &'static str {
    match (template, language) {
        ("pre_due", "fr") => "échéance le",
        ("reminder", "fr") => "en attente de règlement",
        ("firm_reminder", "fr") => "toujours impayée",
        ("final_reminder", "fr") => "Dernière relance avant mise en demeure",
        ("formal_notice", "fr") => "Mise en demeure de payer",
        ("pre_due", "en") => "due on",
        ("reminder", "en") => "payment outstanding",
        ("firm_reminder", "en") => "remains unpaid",
        ("final_reminder", "en") => "Final reminder before formal notice",
        ("formal_notice", "en") => "Formal notice to pay",
        other => panic!("no subject known for {other:?}"),
    }
}

fn assert_sequence(
    who: &str,
    received: &[(String, String, String)],
    expected: &[(String, String)],
    language: &str,
) {
    let got: Vec<(String, String)> = received
        .iter()
        .map(|(t, tpl, _)| (t.clone(), tpl.clone()))
        .collect();
    assert_eq!(got, expected, "{who}: received {received:#?}");
    for (when, template, subject) in received {
        assert!(
            subject.contains(subject_marks(template, language)),
            "{who}: {when} {template}: {subject}"
        );
    }
}

/// relance as shipped: the default policy (`shared/domain/policies/default.toml`), a local
/// SMS gateway and the postal outbox folder.
struct Shipped {
    env: TestEnv,
    gateway: Gateway,
    letters: PathBuf,
    scratch: PathBuf,
}

async fn start_shipped() -> Shipped {
    let scratch = std::env::temp_dir().join(format!("relance-dunning-{}", uuid::Uuid::new_v4().simple()));
    let letters = scratch.join("letters");
    let (gateway, url) = Gateway::start().await;
    let env = TestEnv::try_start(
        1,
        &[
            ("RELANCE_CLOCK", "database"),
            ("RELANCE_POLICY_FILE", POLICY_SHIPPED),
            ("RELANCE_SMS_GATEWAY_URL", &url),
            ("RELANCE_LETTER_DIR", letters.to_str().unwrap()),
        ],
    )
    .await
    .expect("starting the test environment");
    Shipped {
        env,
        gateway,
        letters,
        scratch,
    }
}

/// (local time, channel, template) of what the shipped policy plans for an invoice.
fn planned_on_channels(risk: Risk, amount: &str, due_on: NaiveDate) -> Vec<(String, String, String)> {
    let policy = DunningPolicy::default_policy().unwrap();
    plan_invoice(
        &policy,
        &PlanInput {
            risk,
            kind: CustomerKind::Business,
            amount: Money::new(
                Decimal::from_str(amount).unwrap(),
                Money::parse_currency("EUR").unwrap(),
            ),
            due_on,
            tz: Paris,
            calendar: &FR,
        },
    )
    .steps
    .iter()
    .map(|s| {
        (
            local(s.due_at),
            s.channel.as_str().to_string(),
            s.template.clone(),
        )
    })
    .collect()
}

/// (local time, channel, template) of what went out for an invoice, from its journal: the
/// messages sent and the call tasks opened.
async fn delivered(env: &TestEnv, invoice: &str) -> Vec<(String, String, String)> {
    let rows: Vec<(DateTime<Utc>, String, String)> = sqlx::query_as(
        "SELECT j.at, s.channel, s.template FROM journal j JOIN reminder_steps s ON s.id = j.step_id
         WHERE j.invoice_number = $1 AND j.action IN ('reminder.sent', 'call.task_opened') AND s.kind = 'reminder'
         ORDER BY j.at, j.id",
    )
    .bind(invoice)
    .fetch_all(&env.db)
    .await
    .unwrap();
    rows.into_iter().map(|(at, c, t)| (local(at), c, t)).collect()
}

/// (reason) of each step of an invoice journaled `action`, by step name.
async fn step_reasons(env: &TestEnv, invoice: &str, action: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT s.name, coalesce(j.detail->>'reason', '') FROM journal j JOIN reminder_steps s ON s.id = j.step_id
         WHERE j.invoice_number = $1 AND j.action = $2 ORDER BY j.id",
    )
    .bind(invoice)
    .bind(action)
    .fetch_all(&env.db)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_segment_gets_the_full_escalation_across_channels_over_sixty_days() {
    let Shipped {
        env,
        gateway,
        letters,
        scratch,
    } = start_shipped().await;
    // Issued Monday 2 March 2026. Medium and high customers with a mobile number and a
    // postal address; a low-risk one (English) with neither; an invoice below the policy's
    // 10 EUR threshold.
    let invoices = [
        ("F-LOW", "C-LOW", "low", "en", "800.00", date(2026, 3, 16), None),
        (
            "F-MED",
            "C-MED",
            "medium",
            "fr",
            "1200.00",
            date(2026, 3, 10),
            Some("06 12 34 56 78"),
        ),
        (
            "F-HIGH",
            "C-HIGH",
            "high",
            "fr",
            "3000.00",
            date(2026, 4, 13),
            Some("06 99 88 77 66"),
        ),
        (
            "F-SMALL",
            "C-SMALL",
            "medium",
            "fr",
            "9.50",
            date(2026, 3, 10),
            None,
        ),
    ];
    for (number, customer, risk, language, amount, due_on, phone) in invoices {
        let mut invoice = invoice_for(number, customer, risk, language, amount, due_on);
        invoice["invoice"]["payment_link"] = json!(format!("https://pay.exemple.test/{number}"));
        if let Some(phone) = phone {
            invoice["invoice"]["customer"]["phone"] = json!(phone);
            invoice["invoice"]["customer"]["postal_address"] = json!("12 rue des Forges\n69002 Lyon");
        }
        env.publish(names::INVOICE_ISSUED, &invoice).await;
    }
    for (number, ..) in invoices {
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }

    run_to(&env, at_utc(2026, 5, 1, 23)).await;

    // Medium and high: exactly the dated sequence the policy plans, on every channel, at
    // 09:00 in Paris.
    let medium = delivered(&env, "F-MED").await;
    let high = delivered(&env, "F-HIGH").await;
    assert_eq!(
        medium,
        planned_on_channels(Risk::Medium, "1200.00", date(2026, 3, 10))
    );
    assert_eq!(
        high,
        planned_on_channels(Risk::High, "3000.00", date(2026, 4, 13))
    );
    let row = |when: &str, channel: &str, template: &str| {
        (when.to_string(), channel.to_string(), template.to_string())
    };
    // Spelled out for medium, due Tuesday 10 March: J-5 Thursday; J+5 is a Sunday, the
    // reminder waits for Tuesday; the call J+12 (a Sunday) opens on Monday 23; the firmer
    // email J+13 waits for Tuesday 24; the SMS J+17 on Friday 27 March; clocks changed on
    // 29 March, the registered letter J+30 still goes at 09:00 on Thursday 9 April.
    assert_eq!(
        medium,
        vec![
            row("Thu 2026-03-05 09:00", "email", "pre_due"),
            row("Tue 2026-03-17 09:00", "email", "reminder"),
            row("Mon 2026-03-23 09:00", "call", "call_script"),
            row("Tue 2026-03-24 09:00", "email", "firm_reminder"),
            row("Fri 2026-03-27 09:00", "sms", "sms_reminder"),
            row("Thu 2026-04-09 09:00", "registered_letter", "formal_notice"),
        ]
    );
    // High, due Monday 13 April: J-7 is Easter Monday, the note waits for Tuesday 7 April;
    // everything follows within two weeks of the due date.
    assert_eq!(
        high,
        vec![
            row("Tue 2026-04-07 09:00", "email", "pre_due"),
            row("Thu 2026-04-16 09:00", "email", "reminder"),
            row("Mon 2026-04-20 09:00", "call", "call_script"),
            row("Tue 2026-04-21 09:00", "email", "firm_reminder"),
            row("Thu 2026-04-23 09:00", "sms", "sms_reminder"),
            row("Tue 2026-04-28 09:00", "registered_letter", "formal_notice"),
        ]
    );

    // Low, without a phone or an address: its call is skipped, its SMS goes as the final
    // reminder by email and its formal notice by email, each on the planned day.
    let low = delivered(&env, "F-LOW").await;
    let expected_low: Vec<(String, String, String)> =
        planned_on_channels(Risk::Low, "800.00", date(2026, 3, 16))
            .into_iter()
            .filter(|(_, channel, _)| channel != "call")
            .map(|(when, channel, template)| match channel.as_str() {
                "sms" => (when, "email".to_string(), "final_reminder".to_string()),
                "registered_letter" => (when, "email".to_string(), "formal_notice".to_string()),
                _ => (when, channel, template),
            })
            .collect();
    assert_eq!(low, expected_low);
    // Due Monday 16 March: J-3 Friday 13; J+7 is a Monday, the reminder waits for Tuesday;
    // the call J+14 (Monday 30 March) is skipped; the SMS J+22 goes as an email on Tuesday
    // 7 April, the formal notice J+35 by email on Monday 20 April (a working day: its window).
    assert_eq!(
        low,
        vec![
            row("Fri 2026-03-13 09:00", "email", "pre_due"),
            row("Tue 2026-03-24 09:00", "email", "reminder"),
            row("Tue 2026-03-31 09:00", "email", "firm_reminder"),
            row("Tue 2026-04-07 09:00", "email", "final_reminder"),
            row("Mon 2026-04-20 09:00", "email", "formal_notice"),
        ]
    );
    assert_eq!(
        step_reasons(&env, "F-LOW", names::REMINDER_SKIPPED).await,
        vec![("call".to_string(), "the customer has no phone number".to_string())]
    );
    let fallbacks: Vec<String> = step_reasons(&env, "F-LOW", names::REMINDER_FALLBACK)
        .await
        .into_iter()
        .map(|(step, _)| step)
        .collect();
    assert_eq!(fallbacks, vec!["reminder_3", "formal_notice"]);

    // Every message on a working day, never a public holiday, at 09:00; emails after the
    // due date on Tuesday to Thursday only.
    for (who, sequence) in [("low", &low), ("medium", &medium), ("high", &high)] {
        for (i, (when, channel, template)) in sequence.iter().enumerate() {
            let day = NaiveDate::parse_from_str(&when[4..14], "%Y-%m-%d").unwrap();
            assert!(!FR.is_holiday(day), "{who}: {when}");
            assert!(when.ends_with("09:00"), "{who}: {when}");
            let weekday = day.weekday();
            assert!(!matches!(weekday, Weekday::Sat | Weekday::Sun), "{who}: {when}");
            if channel == "email" && i > 0 && template != "final_reminder" && template != "formal_notice" {
                assert!(
                    matches!(weekday, Weekday::Tue | Weekday::Wed | Weekday::Thu),
                    "{who}: {template} on {when}"
                );
            }
        }
    }

    // What the customers actually received. Emails at the SMTP server, with their subjects.
    let emails_of = |sequence: &[(String, String, String)]| -> Vec<(String, String)> {
        sequence
            .iter()
            .filter(|(_, channel, _)| channel == "email")
            .map(|(when, _, template)| (when.clone(), template.clone()))
            .collect()
    };
    assert_sequence(
        "low",
        &received_by(&env, "compta+f-low@acme.test").await,
        &emails_of(&low),
        "en",
    );
    assert_sequence(
        "medium",
        &received_by(&env, "compta+f-med@acme.test").await,
        &emails_of(&medium),
        "fr",
    );
    assert_sequence(
        "high",
        &received_by(&env, "compta+f-high@acme.test").await,
        &emails_of(&high),
        "fr",
    );
    assert_eq!(env.mail.emails().await.len(), 5 + 3 + 3);

    // One SMS each at the gateway, in E.164, with the invoice and its payment link.
    for (number, phone) in [("F-MED", "+33612345678"), ("F-HIGH", "+33699887766")] {
        let requests = gateway.requests_to(phone);
        assert_eq!(requests.len(), 1, "{number}: {requests:?}");
        let text = requests[0].1["text"].as_str().unwrap();
        assert!(text.contains(number), "{text}");
        assert!(
            text.contains(&format!("https://pay.exemple.test/{number}")),
            "{text}"
        );
    }
    assert_eq!(gateway.count(), 2);

    // One registered formal notice each in the postal outbox, in the folder of its day,
    // whose PDF states the invoice, the amount and the deadline.
    let mut posted = manifest_lines(&letters);
    posted.sort_by_key(|(folder, _)| folder.clone());
    let posted: Vec<(String, String, bool, PathBuf)> = posted
        .into_iter()
        .map(|(folder, line)| {
            let file = folder.join(line["file"].as_str().unwrap());
            (
                folder.file_name().unwrap().to_string_lossy().to_string(),
                line["invoice"].as_str().unwrap().to_string(),
                line["registered"] == json!(true),
                file,
            )
        })
        .collect();
    let summary: Vec<(&str, &str, bool)> = posted
        .iter()
        .map(|(day, invoice, registered, _)| (day.as_str(), invoice.as_str(), *registered))
        .collect();
    assert_eq!(
        summary,
        vec![("2026-04-09", "F-MED", true), ("2026-04-28", "F-HIGH", true)]
    );
    for ((_, invoice, _, file), amount) in posted.iter().zip(["1200,00€", "3000,00€"]) {
        let text = pdf_extract::extract_text_from_mem(&std::fs::read(file).unwrap()).unwrap();
        assert!(text.contains("Mise en demeure"), "{text}");
        assert!(text.contains(invoice.as_str()), "{text}");
        assert!(squeeze(&text).contains(amount), "{amount}: {text}");
        assert!(
            text.contains("8 jours à compter de la réception"),
            "deadline: {text}"
        );
    }

    // The call tasks nobody answered expired after RELANCE_CALL_TASK_DAYS, and the sequence
    // went on without them.
    for number in ["F-MED", "F-HIGH"] {
        assert_eq!(
            env.journal_count(number, names::CALL_TASK_EXPIRED).await,
            1,
            "{number}"
        );
    }

    // Too small to chase: registered, no step, no message, and the journal says why.
    assert!(env.steps("F-SMALL").await.is_empty());
    assert!(received_by(&env, "compta+f-small@acme.test").await.is_empty());
    let reason: String = sqlx::query_scalar(
        "SELECT detail->>'reason' FROM journal WHERE invoice_number = 'F-SMALL' AND action = 'invoice.not_chased'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert!(
        reason.contains("9.50 EUR") && reason.contains("10.00 EUR"),
        "{reason}"
    );
    // The formal notice ends the sequence: unpaid eight days later (RELANCE_HANDOFF_AFTER_DAYS),
    // the invoice is handed off; a notice by post waits seven more days to be received
    // (RELANCE_POSTAL_DELIVERY_DAYS). Medium's registered notice of 9 April: the day after
    // 24 April; low's emailed notice of 20 April: the day after 28 April. The high-risk one's
    // notice (28 April) is too recent.
    for (number, day) in [("F-MED", "2026-04-25"), ("F-LOW", "2026-04-29")] {
        let at: DateTime<Utc> = sqlx::query_scalar(
            "SELECT at FROM journal WHERE invoice_number = $1 AND action = 'invoice.handed_off'",
        )
        .bind(number)
        .fetch_one(&env.db)
        .await
        .unwrap();
        assert_eq!(at.with_timezone(&Paris).date_naive().to_string(), day, "{number}");
    }
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT number, status FROM invoices ORDER BY number")
            .fetch_all(&env.db)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        vec![
            ("F-HIGH".into(), "open".into()),
            ("F-LOW".into(), "handed_off".into()),
            ("F-MED".into(), "handed_off".into()),
            ("F-SMALL".into(), "open".into()),
        ]
    );
    env.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);
}

fn customer_updated(event_id: &str, occurred_at: &str, risk: &str) -> Value {
    json!({
        "version": 1,
        "event_id": event_id,
        "occurred_at": occurred_at,
        "customer": {
            "id": "C-ACME",
            "name": "ACME Industrie SA",
            "contact_name": "Jeanne Martin",
            "email": "compta+f-a@acme.test",
            "risk": risk,
        }
    })
}

/// (cause, old segment, new segment) of each `steps.replanned` of an invoice.
async fn replans(env: &TestEnv, invoice: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT detail->>'cause', detail->>'old_segment', detail->>'new_segment' FROM journal
         WHERE invoice_number = $1 AND action = 'steps.replanned' ORDER BY id",
    )
    .bind(invoice)
    .fetch_all(&env.db)
    .await
    .unwrap()
}

/// (name, status, local due time) of an invoice's steps.
async fn steps_of(env: &TestEnv, invoice: &str) -> Vec<(String, String, String)> {
    let rows: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT s.name, s.status, s.due_at FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
         WHERE i.number = $1 AND s.kind = 'reminder' ORDER BY s.due_at",
    )
    .bind(invoice)
    .fetch_all(&env.db)
    .await
    .unwrap();
    rows.into_iter().map(|(n, s, d)| (n, s, local(d))).collect()
}

fn owned(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_change_replans_the_pending_steps_once_and_never_what_was_sent() {
    let env = start().await;
    // Medium: pre-due Thursday 5 March, first reminder Tuesday 17 March, then 24 and 31 March
    // and the formal notice on Thursday 9 April.
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_for("F-A", "C-ACME", "medium", "fr", "1200.00", date(2026, 3, 10)),
    )
    .await;
    env.wait_journal("F-A", names::INVOICE_REGISTERED, 1).await;
    run_to(&env, at_utc(2026, 3, 18, 6)).await;
    assert_eq!(env.mail.emails().await.len(), 2);

    // Wednesday 18 March, 07:00 in Paris: the customer becomes high risk.
    env.publish(
        names::CUSTOMER_UPDATED,
        &customer_updated("crm-1", "2026-03-18T06:00:00Z", "high"),
    )
    .await;
    env.wait_journal("F-A", "steps.replanned", 1).await;
    // High's J+8 is today, J+15 Wednesday 25 March; high has no third reminder.
    assert_eq!(
        steps_of(&env, "F-A").await,
        owned(&[
            ("pre_due", "sent", "Thu 2026-03-05 09:00"),
            ("reminder_1", "sent", "Tue 2026-03-17 09:00"),
            ("reminder_2", "pending", "Wed 2026-03-18 09:00"),
            ("formal_notice", "pending", "Wed 2026-03-25 09:00"),
        ])
    );
    // The same update again, under its own id or another: nothing more.
    env.publish(
        names::CUSTOMER_UPDATED,
        &customer_updated("crm-1", "2026-03-18T06:00:00Z", "high"),
    )
    .await;
    env.publish(
        names::CUSTOMER_UPDATED,
        &customer_updated("crm-2", "2026-03-18T06:00:00Z", "high"),
    )
    .await;
    // An older update arriving late (medium) changes nothing either.
    env.publish(
        names::CUSTOMER_UPDATED,
        &customer_updated("crm-0", "2026-03-10T06:00:00Z", "medium"),
    )
    .await;
    relance_tests::wait_for(
        "the three updates to be applied",
        relance_tests::DEADLINE,
        || async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM processed_messages WHERE consumer = 'scheduler.customer_updated'",
            )
            .fetch_one(&env.db)
            .await?;
            Ok(n == 3)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        replans(&env, "F-A").await,
        vec![("customer.updated".into(), "medium".into(), "high".into())]
    );
    let risk: String = sqlx::query_scalar("SELECT risk FROM customers WHERE id = 'C-ACME'")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(risk, "high");

    // The firm reminder goes out today at 09:00.
    run_to(&env, at_utc(2026, 3, 19, 6)).await;
    assert_eq!(env.mail.emails().await.len(), 3);

    // Thursday 19 March: a new invoice of the customer says it is low risk now. The first
    // invoice follows low's rhythm from where it stands: J+25 (Saturday 4 April) moves to
    // Tuesday 7 April, and the formal notice to J+35, Tuesday 14 April.
    let mut second = invoice_for("F-B", "C-ACME", "low", "fr", "300.00", date(2026, 5, 29));
    second["occurred_at"] = json!("2026-03-19T06:00:00Z");
    second["invoice"]["customer"]["email"] = json!("compta+f-a@acme.test");
    env.publish(names::INVOICE_ISSUED, &second).await;
    env.wait_journal("F-A", "steps.replanned", 2).await;
    assert_eq!(
        replans(&env, "F-A").await,
        vec![
            ("customer.updated".into(), "medium".into(), "high".into()),
            ("invoice.issued".into(), "high".into(), "low".into()),
        ]
    );
    assert_eq!(
        steps_of(&env, "F-A").await,
        owned(&[
            ("pre_due", "sent", "Thu 2026-03-05 09:00"),
            ("reminder_1", "sent", "Tue 2026-03-17 09:00"),
            ("reminder_2", "sent", "Wed 2026-03-18 09:00"),
            ("reminder_3", "pending", "Tue 2026-04-07 09:00"),
            ("formal_notice", "pending", "Tue 2026-04-14 09:00"),
        ])
    );

    run_to(&env, at_utc(2026, 4, 20, 23)).await;
    let received: Vec<(String, String)> = received_by(&env, "compta+f-a@acme.test")
        .await
        .into_iter()
        .filter(|(_, _, subject)| subject.contains("F-A"))
        .map(|(when, template, _)| (when, template))
        .collect();
    assert_eq!(
        received,
        vec![
            ("Thu 2026-03-05 09:00".to_string(), "pre_due".to_string()),
            ("Tue 2026-03-17 09:00".to_string(), "reminder".to_string()),
            ("Wed 2026-03-18 09:00".to_string(), "firm_reminder".to_string()),
            ("Tue 2026-04-07 09:00".to_string(), "final_reminder".to_string()),
            ("Tue 2026-04-14 09:00".to_string(), "formal_notice".to_string()),
        ]
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_customer_update_is_dead_lettered_and_changes_nothing() {
    let env = start().await;
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_for("F-C", "C-ACME", "medium", "fr", "1200.00", date(2026, 3, 10)),
    )
    .await;
    env.wait_journal("F-C", names::INVOICE_REGISTERED, 1).await;
    let before = steps_of(&env, "F-C").await;
    env.publish(
        names::CUSTOMER_UPDATED,
        &customer_updated("crm-bad", "2026-03-03T06:00:00Z", "extreme"),
    )
    .await;
    let reasons = env.wait_for_dead_letters(1).await;
    assert!(
        reasons[0].contains("customer.risk") && reasons[0].contains("extreme"),
        "{reasons:?}"
    );
    assert_eq!(steps_of(&env, "F-C").await, before);
    assert!(replans(&env, "F-C").await.is_empty());
    env.stop().await;
}

/// (local send time, subject, text) of the emails to one address, in order.
async fn emails_to(env: &TestEnv, address: &str) -> Vec<(String, String, String)> {
    let mut emails: Vec<Email> = env
        .mail
        .emails()
        .await
        .into_iter()
        .filter(|e| e.to.iter().any(|a| a == address))
        .collect();
    emails.sort_by_key(|e| (e.date, e.subject.clone()));
    emails
        .into_iter()
        .map(|e| (local(e.date.expect("a Date header")), e.subject, e.text))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_invoices_of_one_customer_go_out_in_one_message() {
    let env = start().await;
    // Due Monday 9, Tuesday 10 and Wednesday 11 March: each first reminder (J+5) falls on the
    // weekend or Monday, so all three are due on Tuesday 17 March; the second ones on Tuesday
    // 24 March.
    for (number, amount, due_on) in [
        ("F-G1", "100.00", date(2026, 3, 9)),
        ("F-G2", "200.00", date(2026, 3, 10)),
        ("F-G3", "300.00", date(2026, 3, 11)),
    ] {
        let mut invoice = invoice_for(number, "C-GROUP", "medium", "fr", amount, due_on);
        invoice["invoice"]["customer"]["email"] = json!("compta@groupe.test");
        env.publish(names::INVOICE_ISSUED, &invoice).await;
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    run_to(&env, at_utc(2026, 3, 25, 6)).await;
    let received = emails_to(&env, "compta@groupe.test").await;
    let summary: Vec<(&str, &str)> = received
        .iter()
        .map(|(w, s, _)| (w.as_str(), s.as_str()))
        .collect();
    // Before the due date each invoice has its own note; once overdue, one message a week.
    assert_eq!(
        summary,
        vec![
            ("Wed 2026-03-04 09:00", "Facture F-G1 : échéance le 09/03/2026"),
            ("Thu 2026-03-05 09:00", "Facture F-G2 : échéance le 10/03/2026"),
            ("Fri 2026-03-06 09:00", "Facture F-G3 : échéance le 11/03/2026"),
            ("Tue 2026-03-17 09:00", "Facture F-G1 en attente de règlement"),
            ("Tue 2026-03-24 09:00", "Relance : facture F-G1 toujours impayée"),
        ]
    );
    for (_, _, text) in &received[3..] {
        assert!(
            text.contains("facture F-G2 du 02/03/2026, échue le 10/03/2026 : 200,00\u{a0}€")
                && text.contains("facture F-G3 du 02/03/2026, échue le 11/03/2026 : 300,00\u{a0}€")
                && text.contains("Montant total restant dû : 600,00\u{a0}€"),
            "{text}"
        );
    }
    // Each invoice's reminder counts as sent, with the message it went out in.
    let sent: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT i.number, s.status, g.name FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
         LEFT JOIN reminder_steps g ON g.id = s.grouped_into
         WHERE s.name = 'reminder_1' ORDER BY i.number",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    assert_eq!(
        sent,
        vec![
            ("F-G1".into(), "sent".into(), None),
            ("F-G2".into(), "sent".into(), Some("reminder_1".into())),
            ("F-G3".into(), "sent".into(), Some("reminder_1".into())),
        ]
    );
    let grouped_sent = env
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == names::REMINDER_SENT && e.invoice_number == "F-G3")
        .filter(|e| e.detail.get("grouped_into").is_some())
        .map(|e| {
            e.detail["grouped_into"]["invoice_number"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect::<Vec<_>>();
    assert_eq!(grouped_sent, vec!["F-G1", "F-G1"]);

    // F-G1 is paid: on Tuesday 31 March F-G2 leads, with F-G3 alone beside it.
    env.publish(
        names::PAYMENT_RECEIVED,
        &relance_tests::payment_received("PAY-G1", "F-G1", "100.00", date(2026, 3, 26)),
    )
    .await;
    env.wait_journal("F-G1", names::INVOICE_SETTLED, 1).await;
    run_to(&env, at_utc(2026, 3, 31, 18)).await;
    let received = emails_to(&env, "compta@groupe.test").await;
    let last = received.last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1.as_str()),
        (
            "Tue 2026-03-31 09:00",
            "Dernière relance avant mise en demeure : facture F-G2"
        )
    );
    assert!(
        last.2.contains("facture F-G3") && !last.2.contains("F-G1"),
        "{}",
        last.2
    );
    assert!(
        last.2.contains("Montant total restant dû : 500,00\u{a0}€"),
        "{}",
        last.2
    );
    // The thank-you for F-G1 and that one: nothing else since the 24th.
    assert_eq!(received.len(), 7, "{received:#?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grouped_reminder_whose_message_does_not_go_out_is_sent_alone() {
    let env = start().await;
    for (number, due_on) in [("F-R1", date(2026, 3, 9)), ("F-R2", date(2026, 3, 10))] {
        let mut invoice = invoice_for(number, "C-REL", "medium", "fr", "100.00", due_on);
        invoice["invoice"]["customer"]["email"] = json!("compta@release.test");
        env.publish(names::INVOICE_ISSUED, &invoice).await;
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    run_to(&env, at_utc(2026, 3, 16, 23)).await;
    // As if on Tuesday 17 March F-R2's reminder had joined F-R1's message, and F-R1 had been
    // paid before that message went out (its step cancelled).
    sqlx::query(
        "UPDATE reminder_steps m SET status = 'queued', emitted_on = '2026-03-17',
             grouped_into = (SELECT l.id FROM reminder_steps l JOIN invoices i ON i.id = l.invoice_id
                             WHERE i.number = 'F-R1' AND l.name = 'reminder_1')
         FROM invoices i WHERE i.id = m.invoice_id AND i.number = 'F-R2' AND m.name = 'reminder_1'",
    )
    .execute(&env.db)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE reminder_steps s SET status = 'cancelled', status_reason = 'invoice settled'
         FROM invoices i WHERE i.id = s.invoice_id AND i.number = 'F-R1' AND s.name = 'reminder_1'",
    )
    .execute(&env.db)
    .await
    .unwrap();
    env.wait_journal("F-R2", "reminder.ungrouped", 1).await;
    // Its pre-due note, then the reminder, alone.
    env.wait_journal("F-R2", names::REMINDER_SENT, 2).await;
    let received = emails_to(&env, "compta@release.test").await;
    let subjects: Vec<&str> = received.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        vec![
            "Facture F-R1 : échéance le 09/03/2026",
            "Facture F-R2 : échéance le 10/03/2026",
            "Facture F-R2 en attente de règlement",
        ]
    );
    assert!(!received[2].2.contains("F-R1"), "{}", received[2].2);
    env.stop().await;
}
