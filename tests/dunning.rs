//! The dunning method end to end, on a simulated clock shared through the database
//! (`RELANCE_CLOCK=database`): one customer per risk segment over 60 days, each receiving the
//! dated sequence of its segment, every message inside its send window on the French
//! calendar; an invoice too small to chase; and a customer whose segment changes while its
//! invoice is open, re-planned once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Europe::Paris;
use relance_contracts::names;
use relance_domain::calendar::FrenchCalendar;
use relance_domain::{plan_invoice, CustomerKind, DunningPolicy, HolidayCalendar, Money, PlanInput, Risk};
use relance_tests::{date, invoice_issued, Email, TestEnv};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
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

/// (local time in Paris, step template) of what the policy plans for an invoice.
fn planned(risk: Risk, kind: CustomerKind, amount: &str, due_on: NaiveDate) -> Vec<(String, String)> {
    let policy = DunningPolicy::default_policy().unwrap();
    let plan = plan_invoice(
        &policy,
        &PlanInput {
            risk,
            kind,
            amount: Money::new(
                Decimal::from_str(amount).unwrap(),
                Money::parse_currency("EUR").unwrap(),
            ),
            due_on,
            tz: Paris,
            calendar: &FR,
        },
    );
    plan.steps
        .iter()
        .map(|s| (local(s.due_at), s.template.clone()))
        .collect()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_segment_gets_its_dated_sequence_inside_windows_and_holidays_over_sixty_days() {
    let env = start().await;
    // Issued Monday 2 March 2026. Low (English), medium and high customers, and an invoice
    // below the policy's 10 EUR threshold.
    let invoices = [
        ("F-LOW", "C-LOW", "low", "en", "800.00", date(2026, 3, 16)),
        ("F-MED", "C-MED", "medium", "fr", "1200.00", date(2026, 3, 10)),
        ("F-HIGH", "C-HIGH", "high", "fr", "3000.00", date(2026, 4, 13)),
        ("F-SMALL", "C-SMALL", "medium", "fr", "9.50", date(2026, 3, 10)),
    ];
    for (number, customer, risk, language, amount, due_on) in invoices {
        env.publish(
            names::INVOICE_ISSUED,
            &invoice_for(number, customer, risk, language, amount, due_on),
        )
        .await;
    }
    for (number, ..) in invoices {
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }

    run_to(&env, at_utc(2026, 5, 1, 23)).await;

    // Each customer got exactly the sequence the policy plans, at 09:00 in Paris.
    let expected_low = planned(Risk::Low, CustomerKind::Business, "800.00", date(2026, 3, 16));
    let expected_medium = planned(Risk::Medium, CustomerKind::Business, "1200.00", date(2026, 3, 10));
    let expected_high = planned(Risk::High, CustomerKind::Business, "3000.00", date(2026, 4, 13));
    let low = received_by(&env, "compta+f-low@acme.test").await;
    let medium = received_by(&env, "compta+f-med@acme.test").await;
    let high = received_by(&env, "compta+f-high@acme.test").await;
    assert_sequence("low", &low, &expected_low, "en");
    assert_sequence("medium", &medium, &expected_medium, "fr");
    assert_sequence("high", &high, &expected_high, "fr");

    // What the plan says, spelled out: rising firmness, the formal notice last, the windows
    // and the calendar at work.
    let templates = |r: &[(String, String, String)]| r.iter().map(|(_, t, _)| t.clone()).collect::<Vec<_>>();
    assert_eq!(
        templates(&low),
        vec![
            "pre_due",
            "reminder",
            "firm_reminder",
            "final_reminder",
            "formal_notice"
        ]
    );
    assert_eq!(templates(&medium), templates(&low));
    assert_eq!(
        templates(&high),
        vec!["pre_due", "reminder", "firm_reminder", "formal_notice"]
    );
    // High: J-7 is Easter Monday 6 April 2026, a public holiday: the note waits for Tuesday.
    assert!(FR.is_holiday(date(2026, 4, 6)));
    assert_eq!(high[0].0, "Tue 2026-04-07 09:00");
    // Low: J+7 is Monday 23 March, outside the Tuesday-to-Thursday reminder window.
    assert_eq!(low[1].0, "Tue 2026-03-24 09:00");
    // Medium: J+5 is Sunday 15 March: Tuesday 17 March. Clocks changed on 29 March: still 09:00.
    assert_eq!(medium[1].0, "Tue 2026-03-17 09:00");
    assert_eq!(medium[3].0, "Tue 2026-03-31 09:00");
    for (who, received) in [("low", &low), ("medium", &medium), ("high", &high)] {
        for (i, (when, template, _)) in received.iter().enumerate() {
            let day = NaiveDate::parse_from_str(&when[4..14], "%Y-%m-%d").unwrap();
            assert!(!FR.is_holiday(day), "{who}: {when}");
            assert!(when.ends_with("09:00"), "{who}: {when}");
            let allowed: &[Weekday] = if i == 0 {
                &[
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                ]
            } else {
                &[Weekday::Tue, Weekday::Wed, Weekday::Thu]
            };
            assert!(allowed.contains(&day.weekday()), "{who}: {template} on {when}");
        }
    }

    // Too small to chase: registered, no step, no email, and the journal says why.
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
    assert_eq!(env.mail.emails().await.len(), 5 + 5 + 4);
    // The formal notice ends the sequence: unpaid eight days later (RELANCE_HANDOFF_AFTER_DAYS),
    // the invoice is handed off; the high-risk one's notice (28 April) is too recent.
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
