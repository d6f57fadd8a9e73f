//! The figures a debtor reads, recomputed from the law: late-payment interest and the
//! recovery indemnity in every channel's message (email, SMS, letter) and in the
//! `invoice.handed_off` event, on relance as shipped (the default policy, a local SMS gateway,
//! the postal outbox) over seven simulated weeks.
//!
//! The expected figures come from this file's own reading of the law, not from relance:
//! L441-10 (business: the ECB rate of the half-year's first day plus 10 points, or the
//! contract's rate but never below three times the legal interest rate), Code civil 1231-6
//! and 1344-1 (consumer: the legal interest rate, from the formal notice only), D441-5 (40
//! euros), actual/365, each payment from its day, rounded half-even to the cent at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Europe::Paris;
use relance_contracts::{names, HandOffDetailV1};
use relance_tests::sms_gateway::Gateway;
use relance_tests::{date, invoice_issued, payment_received, TestEnv, POLICY_SHIPPED};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};
use std::str::FromStr;

/// The text on one line: runs of ASCII white space (line breaks of the layout) as one space;
/// the no-break spaces of French typography stay.
fn squeeze(text: &str) -> String {
    text.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// The official rates by half-year, typed from the ECB's decisions and the arrêtés fixing
/// the legal interest rate: (year, half, ECB main refinancing rate on the half-year's first
/// day, legal rate "in all other cases").
const OFFICIAL: [(i32, u32, &str, &str); 7] = [
    (2023, 1, "2.50", "2.06"),
    (2023, 2, "4.00", "4.22"),
    (2024, 1, "4.50", "5.07"),
    (2024, 2, "4.25", "4.92"),
    (2025, 1, "3.15", "3.71"),
    (2025, 2, "2.15", "2.76"),
    (2026, 1, "2.15", "2.62"),
];

fn official(day: NaiveDate) -> (Decimal, Decimal) {
    let half = if day.month() <= 6 { 1 } else { 2 };
    let (_, _, ecb, legal) = OFFICIAL
        .iter()
        .find(|(y, h, _, _)| *y == day.year() && *h == half)
        .expect("the test's table covers the day");
    (dec(ecb), dec(legal))
}

enum Rate {
    /// ECB + 10 points.
    Statutory,
    /// A contract's rate, never below three times the legal rate.
    Contract(Decimal),
    /// The legal interest rate (a consumer).
    Legal,
}

/// Interest from the day after `after` through `through`, on `principal` less each payment
/// from its day, at `rate`; rounded half-even to the cent.
fn interest(
    principal: &str,
    payments: &[(NaiveDate, &str)],
    after: NaiveDate,
    through: NaiveDate,
    rate: Rate,
) -> Decimal {
    let mut sum = Decimal::ZERO;
    for day in after.iter_days().skip(1).take_while(|d| *d <= through) {
        let paid: Decimal = payments
            .iter()
            .filter(|(on, _)| *on <= day)
            .map(|(_, a)| dec(a))
            .sum();
        let (ecb, legal) = official(day);
        let annual = match &rate {
            Rate::Statutory => ecb + Decimal::TEN,
            Rate::Contract(r) => (*r).max(legal * Decimal::from(3)),
            Rate::Legal => legal,
        };
        sum += (dec(principal) - paid) * annual;
    }
    (sum / Decimal::from(36_500)).round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
}

/// "1 234,56 €" as relance writes euros in French (narrow no-break space, no-break space).
fn euros_fr(amount: Decimal) -> String {
    let s = format!("{amount:.2}").replace('.', ",");
    let (int, frac) = s.split_once(',').unwrap();
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push('\u{202f}');
        }
        grouped.push(c);
    }
    format!("{grouped},{frac}\u{a0}€")
}

/// The message rendered for each step of an invoice, by step name: (channel, day rendered
/// in Paris, subject, text).
async fn messages(env: &TestEnv, number: &str) -> Vec<(String, String, NaiveDate, String, String)> {
    let rows: Vec<(String, String, DateTime<Utc>, String, String)> = sqlx::query_as(
        "SELECT s.name, m.channel, m.rendered_at, m.subject, m.body_text
         FROM rendered_messages m JOIN reminder_steps s ON s.id = m.step_id
         JOIN invoices i ON i.id = s.invoice_id
         WHERE i.number = $1 AND s.status = 'sent' ORDER BY m.rendered_at",
    )
    .bind(number)
    .fetch_all(&env.db)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(name, channel, at, subject, text)| {
            (
                name,
                channel,
                at.with_timezone(&Paris).date_naive(),
                subject,
                text,
            )
        })
        .collect()
}

fn customer(invoice: &mut Value, kind: &str, language: &str, phone: Option<&str>, address: bool) {
    let c = &mut invoice["invoice"]["customer"];
    c["kind"] = json!(kind);
    c["language"] = json!(language);
    if let Some(phone) = phone {
        c["phone"] = json!(phone);
    }
    if address {
        c["postal_address"] = json!("12 rue des Forges\n69002 Lyon");
    }
}

/// The `invoice.handed_off` events announced, by invoice number (reading them takes them
/// off the test's queue: read once).
async fn hand_offs(env: &TestEnv) -> std::collections::BTreeMap<String, HandOffDetailV1> {
    env.events()
        .await
        .into_iter()
        .filter(|e| e.event_type == names::INVOICE_HANDED_OFF)
        .map(|e| {
            (
                e.invoice_number.clone(),
                serde_json::from_value(e.detail).unwrap(),
            )
        })
        .collect()
}

/// Every channel states the same claim, right in law: a partial payment mid-period (the
/// outside audit's own case: 1 500.00 due 10 March, 500.00 paid on 12 March), a debt from
/// 2023 across six half-years, a consumer before and after the formal notice, a GBP invoice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_states_the_claim_the_law_gives() {
    let scratch = std::env::temp_dir().join(format!("relance-claims-{}", uuid::Uuid::new_v4().simple()));
    let letters = scratch.join("letters");
    // The shipped policy, asking for the indemnity's equivalent in pounds.
    std::fs::create_dir_all(&scratch).unwrap();
    let policy = scratch.join("policy.toml");
    let shipped = std::fs::read_to_string(POLICY_SHIPPED).unwrap();
    std::fs::write(
        &policy,
        format!("{shipped}\n[indemnity_equivalent.GBP]\nper_euro = \"0.8650\"\non = \"2026-02-27\"\n"),
    )
    .unwrap();
    let (gateway, url) = Gateway::start().await;
    let env = TestEnv::try_start(
        1,
        &[
            ("RELANCE_POLICY_FILE", policy.to_str().unwrap()),
            ("RELANCE_SMS_GATEWAY_URL", &url),
            ("RELANCE_LETTER_DIR", letters.to_str().unwrap()),
            // Ten days, not the payment delay of ordinary reminders (8): one deadline for the
            // formal notice on every channel.
            ("RELANCE_FORMAL_NOTICE_DAYS", "10"),
            ("RELANCE_HANDOFF_AFTER_DAYS", "10"),
        ],
    )
    .await
    .expect("starting the test environment");

    // F-AUDIT: emails, an SMS, and the formal notice by email (no postal address).
    let mut audit = invoice_issued("F-AUDIT", "1500.00", date(2026, 2, 24), date(2026, 3, 10));
    customer(&mut audit, "business", "fr", Some("+33612345678"), false);
    // F-OLD: due 31 March 2023, arriving now; its first message is the formal notice.
    let mut old = invoice_issued("F-OLD", "1000.00", date(2023, 3, 1), date(2023, 3, 31));
    customer(&mut old, "business", "fr", None, true);
    // F-CONS: a consumer, already a month late: the formal notice by registered letter.
    let mut consumer = invoice_issued("F-CONS", "800.00", date(2026, 1, 15), date(2026, 1, 30));
    customer(&mut consumer, "consumer", "en", None, true);
    // F-GBP: a business invoiced in pounds.
    let mut gbp = invoice_issued("F-GBP", "1200.00", date(2026, 1, 15), date(2026, 1, 30));
    customer(&mut gbp, "business", "en", None, true);
    gbp["invoice"]["currency"] = json!("GBP");
    for (number, body) in [
        ("F-AUDIT", &audit),
        ("F-OLD", &old),
        ("F-CONS", &consumer),
        ("F-GBP", &gbp),
    ] {
        env.publish(names::INVOICE_ISSUED, body).await;
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    env.run_until(date(2026, 3, 12)).await;
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("PAY-AUDIT", "F-AUDIT", "500.00", date(2026, 3, 12)),
    )
    .await;
    env.wait_journal("F-AUDIT", names::PAYMENT_RECORDED, 1).await;
    env.run_until(date(2026, 4, 22)).await;
    env.idle().await;

    let paid = [(date(2026, 3, 12), "500.00")];
    let audit_messages = messages(&env, "F-AUDIT").await;
    let by_name = |name: &str| {
        audit_messages
            .iter()
            .find(|m| m.0 == name)
            .unwrap_or_else(|| panic!("{name} of F-AUDIT in {audit_messages:#?}"))
            .clone()
    };
    // The firm reminder of 24 March: 4.83 (the audit's figure), on the balance left.
    let (_, channel, day, _, text) = by_name("reminder_2");
    assert_eq!((channel.as_str(), day), ("email", date(2026, 3, 24)));
    let due = date(2026, 3, 10);
    let firm = interest("1500.00", &paid, due, day, Rate::Statutory);
    assert_eq!(firm, dec("4.83"));
    let text = squeeze(&text);
    assert!(text.contains(&format!("soit {}", euros_fr(firm))), "{text}");
    assert!(text.contains("taux annuel de 12,15"), "{text}");
    assert!(text.contains("BCE majoré de 10 points"), "{text}");
    assert!(
        text.contains(&format!(
            "pour un total de {}",
            euros_fr(dec("1000") + firm + dec("40"))
        )),
        "{text}"
    );
    // The SMS states the balance left.
    let (_, channel, _, _, sms) = by_name("reminder_3");
    assert_eq!(channel, "sms");
    // (In GSM-7 form: the no-break spaces became spaces.)
    let plain = sms.replace(['\u{202f}', '\u{a0}'], " ");
    assert!(plain.contains("F-AUDIT (1 000,00 €)"), "{sms}");
    assert!(gateway
        .requests_to("+33612345678")
        .iter()
        .any(|(_, body)| body["text"].as_str() == Some(sms.as_str())));
    // The formal notice by email (no postal address): 10.15 (the audit's figure), the
    // indemnity stated once, the deadline of RELANCE_FORMAL_NOTICE_DAYS.
    let (_, channel, day, _, text) = by_name("formal_notice");
    assert_eq!((channel.as_str(), day), ("email", date(2026, 4, 9)));
    let notice = interest("1500.00", &paid, due, day, Rate::Statutory);
    assert_eq!(notice, dec("10.15"));
    let text = squeeze(&text);
    assert!(text.contains(&format!("soit {}", euros_fr(notice))), "{text}");
    assert_eq!(text.matches("40,00\u{a0}€").count(), 1, "{text}");
    assert!(!text.contains("conditions générales"), "{text}");
    assert!(text.contains("au plus tard le 19/04/2026"), "{text}");
    assert!(text.contains("Malgré nos relances successives"), "{text}");
    // The email the customer received says the same.
    let received = env.mail.emails().await;
    let notice_mail = received
        .iter()
        .find(|e| e.subject.contains("Mise en demeure") && e.subject.contains("F-AUDIT"))
        .expect("the notice received");
    assert!(
        squeeze(&notice_mail.text).contains(&euros_fr(notice)),
        "{}",
        notice_mail.text
    );

    // F-OLD: the registered notice of 2 March, its first message: no "previous reminders";
    // six half-years at their own rates.
    let old_messages = messages(&env, "F-OLD").await;
    assert_eq!(old_messages.len(), 1, "{old_messages:#?}");
    let (name, channel, day, _, text) = old_messages[0].clone();
    assert_eq!(
        (name.as_str(), channel.as_str()),
        ("formal_notice", "registered_letter")
    );
    let old_interest = interest("1000.00", &[], date(2023, 3, 31), day, Rate::Statutory);
    let text = squeeze(&text);
    assert!(
        text.contains(&euros_fr(old_interest)),
        "{} in {text}",
        euros_fr(old_interest)
    );
    assert!(!text.contains("précédentes relances"), "{text}");
    assert!(text.starts_with("Paris, le"), "{text}");
    assert!(text.contains("dans un délai de 10 jours"), "{text}");

    // F-CONS: the consumer's notice claims the balance, no interest yet, no indemnity, no
    // costs; interest runs from its receipt (7 days by post) at the legal rate.
    let (_, channel, notice_day, _, text) = messages(&env, "F-CONS").await.last().cloned().unwrap();
    assert_eq!(channel, "registered_letter");
    let text = squeeze(&text);
    assert!(
        text.contains("the sum of €800.00 within 10 days of receipt"),
        "{text}"
    );
    assert!(
        text.contains("bears interest at the legal rate from the date of this formal notice"),
        "{text}"
    );
    for absent in ["D441-5", "€40.00", "and costs"] {
        assert!(!text.contains(absent), "{absent:?} in {text}");
    }

    // F-GBP: the indemnity in euros, the total in pounds without it.
    let (_, _, gbp_day, _, text) = messages(&env, "F-GBP").await.last().cloned().unwrap();
    let gbp_interest = interest("1200.00", &[], date(2026, 1, 30), gbp_day, Rate::Statutory);
    let text = squeeze(&text);
    assert!(
        text.contains("compensation for recovery costs : €40.00"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Total claimed (excluding the indemnity) : £{}",
            format_en(dec("1200.00") + gbp_interest)
        )),
        "{text}"
    );
    assert!(!text.contains("£40.00"), "{text}");
    // 40 × 0.8650 = 34.60, at the rate and date the policy gives.
    assert!(
        text.contains("that is £34.60 at 1 € = 0.865 GBP on 27 February 2026"),
        "{text}"
    );

    // The hand-offs carry the same figures, through their own day.
    let hand_offs = hand_offs(&env).await;
    let handed_off = |number: &str| {
        hand_offs
            .get(number)
            .unwrap_or_else(|| panic!("{number} handed off"))
            .clone()
    };
    let detail = handed_off("F-AUDIT");
    let through = detail.amount_due.interest_through.unwrap();
    let at_handoff = interest("1500.00", &paid, due, through, Rate::Statutory);
    assert_eq!(
        detail.amount_due.interest.as_deref(),
        Some(at_handoff.to_string().as_str())
    );
    assert_eq!(detail.amount_due.indemnity.as_deref(), Some("40.00"));
    assert_eq!(detail.amount_due.indemnity_currency.as_deref(), Some("EUR"));
    assert_eq!(
        detail.amount_due.total.as_deref(),
        Some((dec("1000.00") + at_handoff + dec("40")).to_string().as_str())
    );
    let detail = handed_off("F-OLD");
    let through = detail.amount_due.interest_through.unwrap();
    let expected = interest("1000.00", &[], date(2023, 3, 31), through, Rate::Statutory);
    assert_eq!(
        detail.amount_due.interest.as_deref(),
        Some(expected.to_string().as_str())
    );
    assert_eq!(
        detail.amount_due.interest_rate_basis.as_deref(),
        Some("statutory")
    );
    let detail = handed_off("F-CONS");
    let through = detail.amount_due.interest_through.unwrap();
    let received_on = notice_day + chrono::Days::new(7);
    let expected = interest("800.00", &[], received_on, through, Rate::Legal);
    assert!(expected > Decimal::ZERO);
    assert_eq!(
        detail.amount_due.interest.as_deref(),
        Some(expected.to_string().as_str())
    );
    assert_eq!(detail.amount_due.interest_from, received_on.succ_opt());
    assert_eq!(detail.amount_due.indemnity.as_deref(), Some("0.00"));
    assert_eq!(detail.amount_due.interest_rate_basis.as_deref(), Some("legal"));
    let detail = handed_off("F-GBP");
    let through = detail.amount_due.interest_through.unwrap();
    let expected = interest("1200.00", &[], date(2026, 1, 30), through, Rate::Statutory);
    assert_eq!(detail.amount_due.currency, "GBP");
    assert_eq!(detail.amount_due.indemnity_currency.as_deref(), Some("EUR"));
    assert_eq!(
        detail.amount_due.total.as_deref(),
        Some((dec("1200.00") + expected).to_string().as_str())
    );

    env.stop().await;
    drop(gateway);
    let _ = std::fs::remove_dir_all(&scratch);
}

/// "1,234.56" as relance writes amounts in English.
fn format_en(amount: Decimal) -> String {
    let s = format!("{amount:.2}");
    let (int, frac) = s.split_once('.').unwrap();
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped}.{frac}")
}

/// A contract rate below the floor is raised to three times the half-year's legal rate, and
/// the letter says why; a rate agreed with one customer replaces the creditor's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_rate_below_the_floor_is_raised_to_it() {
    let scratch = std::env::temp_dir().join(format!("relance-floor-{}", uuid::Uuid::new_v4().simple()));
    let env = TestEnv::try_start(
        1,
        &[
            ("RELANCE_POLICY_FILE", POLICY_SHIPPED),
            ("RELANCE_LETTER_DIR", scratch.to_str().unwrap()),
            ("RELANCE_INTEREST_CONTRACT_PERCENT", "5"),
        ],
    )
    .await
    .expect("starting the test environment");
    let mut body = invoice_issued("F-FLOOR", "2000.00", date(2026, 1, 15), date(2026, 1, 30));
    customer(&mut body, "business", "fr", None, true);
    // F-AGREED: a customer with its own agreed rate, above the floor: it replaces the
    // creditor's.
    let mut agreed = invoice_issued("F-AGREED", "2000.00", date(2026, 1, 15), date(2026, 1, 30));
    customer(&mut agreed, "business", "fr", None, true);
    agreed["invoice"]["customer"]["late_interest_percent"] = json!("15");
    for (number, body) in [("F-FLOOR", &body), ("F-AGREED", &agreed)] {
        env.publish(names::INVOICE_ISSUED, body).await;
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    env.run_until(date(2026, 3, 3)).await;
    env.wait_journal("F-FLOOR", names::REMINDER_SENT, 1).await;
    env.wait_journal("F-AGREED", names::REMINDER_SENT, 1).await;
    let (name, _, day, _, text) = messages(&env, "F-FLOOR").await.last().cloned().unwrap();
    assert_eq!(name, "formal_notice");
    let expected = interest("2000.00", &[], date(2026, 1, 30), day, Rate::Contract(dec("5")));
    let text = squeeze(&text);
    assert!(
        text.contains(&euros_fr(expected)),
        "{} in {text}",
        euros_fr(expected)
    );
    assert!(text.contains("7,86\u{a0}%"), "{text}");
    assert!(text.contains("trois fois le taux de l'intérêt légal"), "{text}");
    let (_, _, day, _, text) = messages(&env, "F-AGREED").await.last().cloned().unwrap();
    let expected = interest("2000.00", &[], date(2026, 1, 30), day, Rate::Contract(dec("15")));
    let text = squeeze(&text);
    assert!(
        text.contains(&euros_fr(expected)),
        "{} in {text}",
        euros_fr(expected)
    );
    assert!(text.contains("15\u{a0}%"), "{text}");
    assert!(text.contains("taux de nos conditions de vente"), "{text}");
    env.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);
}

/// A rate table that lacks the current half-year is said loudly: in the messages ("not yet
/// published"), in `/health/ready`'s warnings and as a metric; the claim is then computed at
/// the last known half-year's rates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legal_rate_table_without_the_current_half_year_is_warned_about() {
    let scratch = std::env::temp_dir().join(format!("relance-rates-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    // Ends with 2025-H2: the simulated clock is in March 2026.
    let table = scratch.join("legal.txt");
    std::fs::write(&table, "2025-H1 3.15 7.21 3.71\n2025-H2 2.15 6.65 2.76\n").unwrap();
    let port = relance_tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let env = TestEnv::try_start(
        1,
        &[
            ("RELANCE_LEGAL_RATES_FILE", table.to_str().unwrap()),
            ("RELANCE_HEALTH_ADDR", &addr),
        ],
    )
    .await
    .expect("starting the test environment");
    let http = reqwest::Client::new();
    // The health server starts with the services, in the background: wait until it answers.
    let ready_url = format!("http://{addr}/health/ready");
    relance_tests::wait_for("the health endpoint", relance_tests::DEADLINE, || async {
        Ok(http.get(&ready_url).send().await.is_ok())
    })
    .await
    .unwrap();
    let ready: Value = http.get(&ready_url).send().await.unwrap().json().await.unwrap();
    let warnings = ready["warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{ready}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("ends with 2025-H2: the rates of 2026-H1 are missing"),
        "{ready}"
    );
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "relance_legal_rates_current_half_year_missing 1"),
        "{metrics}"
    );

    // A firm reminder of 24 March: computed at 2025-H2's rate (ECB 2.15 + 10), and said so.
    let mut body = invoice_issued("F-EST", "1000.00", date(2026, 2, 24), date(2026, 3, 10));
    customer(&mut body, "business", "fr", None, false);
    env.publish(names::INVOICE_ISSUED, &body).await;
    env.wait_journal("F-EST", names::INVOICE_REGISTERED, 1).await;
    env.run_until(date(2026, 3, 24)).await;
    let (name, _, day, _, text) = messages(&env, "F-EST").await.last().cloned().unwrap();
    assert_eq!(name, "reminder_2");
    let expected = interest("1000.00", &[], date(2026, 3, 10), day, Rate::Statutory);
    let text = squeeze(&text);
    assert!(
        text.contains(&euros_fr(expected)),
        "{} in {text}",
        euros_fr(expected)
    );
    assert!(text.contains("n'étant pas encore publié"), "{text}");
    env.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);
}
