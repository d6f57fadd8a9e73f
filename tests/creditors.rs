//! Several creditors in one deployment, end to end through the real services and a real SMTP
//! server: a creditor given by `creditor.updated` (or `relance creditor set`), invoices that
//! name it, and every message, letter and statement of each invoice in its own creditor's
//! name; the environment's creditor stays the default one. A later `creditor.updated` changes
//! the next message, an older one nothing; a bad IBAN and an unknown creditor are dead-lettered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use relance_contracts::names;
use relance_tests::{date, invoice_issued, manifest_lines, Email, TestEnv};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// A courteous reminder two days after the due date, then a formal notice on `channel` at
/// eight days with the statement of account. Due Monday 9 March 2026: the 11th and the 17th.
fn policy(channel: &str) -> String {
    let steps = r#"
[[segments.SEGMENT.steps]]
name = "reminder_1"
offset_days = 2
channel = "email"
template = "reminder"
tone = "courteous"

[[segments.SEGMENT.steps]]
name = "formal_notice"
offset_days = 8
channel = "CHANNEL"
template = "formal_notice"
tone = "formal"
attach_statement = true
"#
    .replace("CHANNEL", channel);
    let mut policy = "send_time = \"09:00\"\n".to_string();
    for segment in ["low", "medium", "high"] {
        policy.push_str(&steps.replace("SEGMENT", segment));
    }
    policy
}

struct Setup {
    env: TestEnv,
    scratch: PathBuf,
    letters: PathBuf,
}

fn scratch() -> PathBuf {
    let scratch = std::env::temp_dir().join(format!("relance-creditors-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    scratch
}

async fn start(channel: &str) -> Setup {
    start_with(channel, scratch(), &[]).await
}

async fn start_with(channel: &str, scratch: PathBuf, extra: &[(&str, &str)]) -> Setup {
    let policy_file = scratch.join("policy.toml");
    std::fs::write(&policy_file, policy(channel)).unwrap();
    let letters = scratch.join("letters");
    let mut vars = vec![
        ("RELANCE_POLICY_FILE", policy_file.to_str().unwrap()),
        ("RELANCE_LETTER_DIR", letters.to_str().unwrap()),
        ("RELANCE_MAIL_FROM", "Exemple SAS <relances@exemple.test>"),
    ];
    vars.extend_from_slice(extra);
    let env = TestEnv::try_start(1, &vars)
        .await
        .expect("starting the test environment");
    Setup {
        env,
        scratch,
        letters,
    }
}

const DURAND_IBAN: &str = "DE89 3704 0044 0532 0130 00";
const DURAND_NEW_IBAN: &str = "GB82 WEST 1234 5698 7654 32";
const DEFAULT_IBAN: &str = "FR76 3000 6000 0112 3456 7890 189";

/// `creditor.updated` for Menuiserie Durand, as its details were at `occurred_at`.
fn durand(event: &str, occurred_at: &str, change: impl FnOnce(&mut Value)) -> Value {
    let mut body = json!({
        "version": 1,
        "event_id": event,
        "occurred_at": occurred_at,
        "creditor": {
            "id": "durand",
            "name": "Menuiserie Durand SARL",
            "legal_form": "SARL",
            "share_capital": "50 000 €",
            "siret": "732 829 320 00074",
            "rcs_city": "Bordeaux",
            "vat_number": "FR44732829320",
            "address": "4 quai des Chartrons\n33000 Bordeaux",
            "iban": DURAND_IBAN,
            "bic": "COBADEFFXXX",
            "email": "compta@durand.test",
            "letterhead": ["www.durand.test"],
            "signature_fr": "Le service clients Durand",
            "mail_from": "Menuiserie Durand <relances@durand.test>",
            "reply_to": "compta@durand.test"
        }
    });
    change(&mut body["creditor"]);
    body
}

/// An invoice of customer C-ACME due Monday 9 March, naming `creditor` (or none).
fn invoice(number: &str, creditor: Option<&str>) -> Value {
    let mut invoice = invoice_issued(number, "1200.00", date(2026, 2, 7), date(2026, 3, 9));
    let customer = &mut invoice["invoice"]["customer"];
    customer["id"] = json!("C-ACME");
    customer["email"] = json!("compta@acme.test");
    customer["postal_address"] = json!("12 rue des Forges\n69002 Lyon");
    if let Some(creditor) = creditor {
        invoice["invoice"]["creditor"] = json!(creditor);
    }
    invoice
}

/// Waits until the scheduler has applied `creditor.updated` `event_id`.
async fn wait_applied(env: &TestEnv, event_id: &str) {
    relance::drive::wait_for("the creditor to be applied", Duration::from_secs(60), || async {
        Ok(sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM processed_messages WHERE consumer = 'scheduler.creditor_updated' AND message_id = $1)",
        )
        .bind(event_id)
        .fetch_one(&env.db)
        .await?)
    })
    .await
    .unwrap();
}

/// The one email about `invoice` whose subject says `what`.
fn email_about<'a>(emails: &'a [Email], invoice: &str, what: &str) -> &'a Email {
    let found: Vec<_> = emails
        .iter()
        .filter(|e| e.subject.contains(invoice) && e.text.contains(what))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one email on {invoice} saying {what:?}: {emails:#?}"
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invoice_is_reminded_in_the_name_of_its_own_creditor() {
    let s = start("email").await;
    let env = &s.env;
    env.publish(
        names::CREDITOR_UPDATED,
        &durand("evt-durand-1", "2026-03-01T08:00:00Z", |_| {}),
    )
    .await;
    wait_applied(env, "evt-durand-1").await;
    // One customer owes both companies: F-A to the default creditor (no `creditor`), F-B to
    // Durand. Both fall due the same day, yet never share a message.
    env.publish(names::INVOICE_ISSUED, &invoice("F-A", None)).await;
    env.publish(names::INVOICE_ISSUED, &invoice("F-B", Some("durand")))
        .await;
    env.wait_journal("F-A", names::INVOICE_REGISTERED, 1).await;
    env.wait_journal("F-B", names::INVOICE_REGISTERED, 1).await;
    // The journal and the event name the creditor of an invoice that names one.
    let registered = env.journal_details("F-B", names::INVOICE_REGISTERED).await;
    assert_eq!(registered[0]["creditor"], json!("durand"), "{registered:?}");
    let registered = env.journal_details("F-A", names::INVOICE_REGISTERED).await;
    assert!(registered[0].get("creditor").is_none(), "{registered:?}");

    // An unknown creditor and a bad IBAN are dead-lettered with the reason.
    env.publish(names::INVOICE_ISSUED, &invoice("F-X", Some("nobody")))
        .await;
    let bad_iban = durand("evt-durand-bad", "2026-03-02T08:00:00Z", |c| {
        c["iban"] = json!("FR76 3000 6000 0112 3456 7890 198");
    });
    env.publish(names::CREDITOR_UPDATED, &bad_iban).await;
    let reasons = env.wait_for_dead_letters(2).await;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("invoice F-X names creditor \"nobody\", which is unknown")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("creditor \"durand\" refused: creditor.iban")
                && r.contains("is not a valid IBAN")),
        "{reasons:?}"
    );
    assert_eq!(env.journal_count("F-X", names::INVOICE_REGISTERED).await, 0);

    env.run_until(date(2026, 3, 11)).await;
    let emails = env.mail.wait_for_emails(2).await;
    assert_eq!(emails.len(), 2, "{emails:#?}");
    let a = email_about(&emails, "F-A", "IBAN");
    assert_eq!(a.from, vec!["relances@exemple.test"], "{a:#?}");
    assert!(
        a.text.contains(DEFAULT_IBAN) && a.text.contains("Exemple SAS"),
        "{}",
        a.text
    );
    assert!(!a.text.contains("Durand"), "{}", a.text);
    let b = email_about(&emails, "F-B", "IBAN");
    assert_eq!(b.from, vec!["relances@durand.test"], "{b:#?}");
    assert!(b.reply_to.contains("compta@durand.test"), "{b:#?}");
    for expected in [
        DURAND_IBAN,
        "BIC : COBADEFFXXX",
        "Menuiserie Durand SARL",
        "Le service clients Durand",
    ] {
        assert!(b.text.contains(expected), "{expected:?} missing from {}", b.text);
    }
    assert!(
        b.html.contains("Menuiserie Durand SARL, SARL au capital de 50 000 € – RCS Bordeaux 732 829 320 – TVA FR44732829320"),
        "{}",
        b.html
    );
    assert!(
        !b.text.contains("Exemple SAS") && !b.text.contains(DEFAULT_IBAN),
        "{}",
        b.text
    );
    assert!(
        b.message_id.ends_with("@durand.test>") || b.message_id.ends_with("@durand.test"),
        "{b:#?}"
    );

    // A newer `creditor.updated` changes what the next message says; one older than the
    // details stored (arriving late) changes nothing.
    let newer = durand("evt-durand-2", "2026-03-12T08:00:00Z", |c| {
        c["name"] = json!("Menuiserie Durand & Fils SARL");
        c["iban"] = json!(DURAND_NEW_IBAN);
    });
    let older = durand("evt-durand-0", "2026-02-28T08:00:00Z", |c| {
        c["name"] = json!("Ancien Nom SARL");
    });
    env.publish(names::CREDITOR_UPDATED, &newer).await;
    wait_applied(env, "evt-durand-2").await;
    env.publish(names::CREDITOR_UPDATED, &older).await;
    wait_applied(env, "evt-durand-0").await;

    env.run_until(date(2026, 3, 17)).await;
    let emails = env.mail.wait_for_emails(4).await;
    assert_eq!(emails.len(), 4, "{emails:#?}");
    let notice_b = email_about(&emails, "F-B", "Durand & Fils");
    assert!(notice_b.text.contains(DURAND_NEW_IBAN), "{}", notice_b.text);
    assert!(
        !notice_b.text.contains("Ancien Nom") && !notice_b.text.contains(DURAND_IBAN),
        "{}",
        notice_b.text
    );
    // Its statement of account speaks for Durand, and lists Durand's invoice only.
    let (statement_name, _) = notice_b
        .attachments
        .iter()
        .find(|(file, _)| file.starts_with("releve-de-compte"))
        .unwrap_or_else(|| panic!("no statement attached: {notice_b:#?}"));
    let pdf = env.mail.attachment(notice_b, statement_name).await;
    let statement = pdf_extract::extract_text_from_mem(&pdf).unwrap();
    for expected in ["Menuiserie Durand & Fils SARL", "F-B", "TVA FR44732829320"] {
        assert!(
            statement.contains(expected),
            "{expected:?} missing from {statement}"
        );
    }
    assert!(
        !statement.contains("F-A") && !statement.contains("Exemple SAS"),
        "{statement}"
    );

    let a_mails: Vec<_> = emails.iter().filter(|e| e.subject.contains("F-A")).collect();
    assert_eq!(a_mails.len(), 2, "{a_mails:#?}");
    for mail in a_mails {
        assert_eq!(mail.from, vec!["relances@exemple.test"], "{mail:#?}");
        assert!(
            mail.text.contains("Exemple SAS") && !mail.text.contains("Durand"),
            "{}",
            mail.text
        );
    }

    // Still unpaid after the formal notice's eight days: handed off, the event naming the
    // creditor of Durand's invoice (the default creditor's names none).
    env.run_until(date(2026, 3, 27)).await;
    let handed_off = env
        .events_until("both invoices handed off", |events| {
            events
                .iter()
                .filter(|e| e.event_type == names::INVOICE_HANDED_OFF)
                .count()
                == 2
        })
        .await;
    let detail_of = |number: &str| {
        handed_off
            .iter()
            .find(|e| e.event_type == names::INVOICE_HANDED_OFF && e.invoice_number == number)
            .map(|e| e.detail.clone())
            .unwrap_or_else(|| panic!("no hand-off of {number}"))
    };
    assert_eq!(
        detail_of("F-B")["creditor"],
        json!({ "id": "durand", "name": "Menuiserie Durand & Fils SARL" })
    );
    assert!(detail_of("F-A").get("creditor").is_none());

    s.env.stop().await;
    let _ = std::fs::remove_dir_all(&s.scratch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_formal_notice_letter_carries_its_creditors_identity() {
    let s = start("registered_letter").await;
    let env = &s.env;
    env.publish(
        names::CREDITOR_UPDATED,
        &durand("evt-durand-1", "2026-03-01T08:00:00Z", |_| {}),
    )
    .await;
    wait_applied(env, "evt-durand-1").await;
    env.publish(names::INVOICE_ISSUED, &invoice("F-A", None)).await;
    env.publish(names::INVOICE_ISSUED, &invoice("F-B", Some("durand")))
        .await;
    env.wait_journal("F-A", names::INVOICE_REGISTERED, 1).await;
    env.wait_journal("F-B", names::INVOICE_REGISTERED, 1).await;
    env.run_until(date(2026, 3, 17)).await;
    env.wait_journal("F-A", names::REMINDER_SENT, 2).await;
    env.wait_journal("F-B", names::REMINDER_SENT, 2).await;

    let lines = manifest_lines(&s.letters);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let text_of = |folder: &std::path::Path, file: &Value| {
        let pdf = std::fs::read(folder.join(file.as_str().unwrap())).unwrap();
        pdf_extract::extract_text_from_mem(&pdf).unwrap()
    };
    let mut seen = Vec::new();
    for (folder, line) in &lines {
        let letter = text_of(folder, &line["file"]);
        let statement = text_of(folder, &line["enclosures"][0]["file"]);
        assert!(letter.contains("Mise en demeure"), "{letter}");
        if letter.contains("F-B") {
            for expected in [
                "Menuiserie Durand SARL",
                "33000 Bordeaux",
                "www.durand.test",
                "TVA FR44732829320",
                "compta@durand.test",
            ] {
                assert!(letter.contains(expected), "{expected:?} missing from {letter}");
            }
            assert!(!letter.contains("Exemple SAS"), "{letter}");
            assert!(
                statement.contains("Menuiserie Durand SARL") && statement.contains("F-B"),
                "{statement}"
            );
            assert!(!statement.contains("F-A"), "{statement}");
            seen.push("F-B");
        } else {
            assert!(
                letter.contains("F-A") && letter.contains("Exemple SAS"),
                "{letter}"
            );
            assert!(!letter.contains("Durand"), "{letter}");
            assert!(
                statement.contains("Exemple SAS") && !statement.contains("F-B"),
                "{statement}"
            );
            seen.push("F-A");
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, ["F-A", "F-B"]);

    s.env.stop().await;
    let _ = std::fs::remove_dir_all(&s.scratch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relance_creditor_set_publishes_the_creditor_and_keeps_the_fields_not_given() {
    let s = start("email").await;
    let env = &s.env;
    let set = env
        .cli(&[
            "creditor",
            "set",
            "durand",
            "--name",
            "Menuiserie Durand SARL",
            "--address",
            "4 quai des Chartrons\\n33000 Bordeaux",
            "--iban",
            DURAND_IBAN,
            "--mail-from",
            "relances@durand.test",
            "--wait",
            "60",
        ])
        .await;
    assert!(set.ok, "{}{}", set.stdout, set.stderr);
    assert!(
        set.stdout.contains("published creditor.updated for durand"),
        "{}",
        set.stdout
    );
    assert!(set.stdout.contains("durand: applied"), "{}", set.stdout);

    // A bad IBAN is refused before anything is published.
    let bad = env
        .cli(&[
            "creditor",
            "set",
            "durand",
            "--iban",
            "FR76 3000 6000 0112 3456 7890 198",
        ])
        .await;
    assert!(!bad.ok, "{}", bad.stdout);
    assert!(
        bad.stderr.contains("refused before publishing: creditor.iban"),
        "{}",
        bad.stderr
    );
    // `default` is the environment's.
    let default = env.cli(&["creditor", "set", "default", "--name", "Autre"]).await;
    assert!(
        !default.ok && default.stderr.contains("RELANCE_CREDITOR_*"),
        "{}",
        default.stderr
    );

    // One field changed: the others are kept.
    let vat = env
        .cli(&[
            "creditor",
            "set",
            "durand",
            "--vat-number",
            "FR44732829320",
            "--wait",
            "60",
        ])
        .await;
    assert!(vat.ok, "{}{}", vat.stdout, vat.stderr);
    let show = env.cli(&["creditor", "show", "durand"]).await;
    assert!(show.ok, "{}", show.stderr);
    for expected in [
        "revision 2",
        "Menuiserie Durand SARL",
        DURAND_IBAN,
        "FR44732829320",
        "relances@durand.test",
        "4 quai des Chartrons / 33000 Bordeaux",
    ] {
        assert!(
            show.stdout.contains(expected),
            "{expected:?} missing from {}",
            show.stdout
        );
    }
    let list = env.cli(&["creditor", "list"]).await;
    assert!(list.ok, "{}", list.stderr);
    assert!(
        list.stdout.contains("default") && list.stdout.contains("Exemple SAS"),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout.contains("durand") && list.stdout.contains(DURAND_IBAN),
        "{}",
        list.stdout
    );

    // An invoice naming it is reminded in its name.
    env.publish(names::INVOICE_ISSUED, &invoice("F-B", Some("durand")))
        .await;
    env.run_until(date(2026, 3, 11)).await;
    let emails = env.mail.wait_for_emails(1).await;
    assert_eq!(emails[0].from, vec!["relances@durand.test"], "{emails:#?}");
    assert!(emails[0].text.contains(DURAND_IBAN), "{}", emails[0].text);

    s.env.stop().await;
    let _ = std::fs::remove_dir_all(&s.scratch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_page_and_the_console_show_the_invoices_own_creditor() {
    const SECRET: &str = "creditors-portal-secret";
    let s = start("email").await;
    let env = &s.env;
    env.publish(
        names::CREDITOR_UPDATED,
        &durand("evt-durand-1", "2026-03-01T08:00:00Z", |_| {}),
    )
    .await;
    wait_applied(env, "evt-durand-1").await;
    env.publish(names::INVOICE_ISSUED, &invoice("F-A", None)).await;
    env.publish(names::INVOICE_ISSUED, &invoice("F-B", Some("durand")))
        .await;
    env.wait_journal("F-A", names::INVOICE_REGISTERED, 1).await;
    env.wait_journal("F-B", names::INVOICE_REGISTERED, 1).await;

    // The customer page of a link speaks for its invoice's creditor, and lists that
    // creditor's invoices only.
    let portal = env
        .start_portal_with(|settings| settings.portal_secret = Some(SECRET.into()))
        .await
        .unwrap();
    let page = |number: &str| {
        let token =
            relance_portal::token::sign(SECRET, number, relance_domain::Clock::now(&env.clock), 60).unwrap();
        let url = format!("{portal}/p/{token}");
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let b = page("F-B").await;
    assert!(
        b.contains("Menuiserie Durand SARL") && b.contains(DURAND_IBAN),
        "{b}"
    );
    assert!(
        b.contains("F-B") && !b.contains("F-A") && !b.contains("Exemple SAS"),
        "{b}"
    );
    let a = page("F-A").await;
    assert!(a.contains("Exemple SAS") && a.contains(DEFAULT_IBAN), "{a}");
    assert!(
        a.contains("F-A") && !a.contains("F-B") && !a.contains("Durand"),
        "{a}"
    );

    // The console's invoice page says whom the invoice is owed to.
    let console = env.start_console(None).await.unwrap();
    let page = reqwest::get(format!("{console}/invoices/F-B"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Owed to <strong>Menuiserie Durand SARL</strong>"),
        "{page}"
    );
    let page = reqwest::get(format!("{console}/invoices/F-A"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Owed to <strong>Exemple SAS</strong>"), "{page}");

    s.env.stop().await;
    let _ = std::fs::remove_dir_all(&s.scratch);
}

/// The built-in French reminder, as the renderer ships it.
fn builtin_template(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../services/renderer/templates")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creditor_with_its_own_policy_and_templates_is_reminded_on_its_schedule_in_its_words() {
    let scratch = scratch();
    // The deployment's named policy `quick`: the first reminder one day after the due date
    // instead of two (Tuesday 10 March instead of Wednesday 11).
    let policies = scratch.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let quick = policy("email").replace("offset_days = 2", "offset_days = 1");
    assert_ne!(quick, policy("email"));
    std::fs::write(policies.join("quick.toml"), quick).unwrap();
    // Durand's own wording of the French reminder; its other templates are the deployment's.
    let templates = scratch.join("creditor-templates");
    std::fs::create_dir_all(templates.join("durand/fr")).unwrap();
    let builtin = builtin_template("fr/reminder.txt");
    assert!(builtin.contains("Sauf erreur de notre part"));
    std::fs::write(
        templates.join("durand/fr/reminder.txt"),
        builtin.replace(
            "Sauf erreur de notre part,",
            "La Menuiserie Durand vous rappelle amicalement que",
        ),
    )
    .unwrap();
    let s = start_with(
        "email",
        scratch.clone(),
        &[
            ("RELANCE_POLICY_DIR", policies.to_str().unwrap()),
            ("RELANCE_CREDITOR_TEMPLATE_DIR", templates.to_str().unwrap()),
        ],
    )
    .await;
    let env = &s.env;
    env.publish(
        names::CREDITOR_UPDATED,
        &durand("evt-durand-1", "2026-03-01T08:00:00Z", |c| {
            c["policy"] = json!("quick");
            c["templates"] = json!("durand");
        }),
    )
    .await;
    wait_applied(env, "evt-durand-1").await;

    // A creditor naming a policy or a template folder the deployment does not have is
    // dead-lettered with the reason; the stored one is unchanged.
    let unknown_policy = durand("evt-durand-2", "2026-03-02T08:00:00Z", |c| {
        c["policy"] = json!("slow");
    });
    let unknown_templates = durand("evt-durand-3", "2026-03-02T09:00:00Z", |c| {
        c["templates"] = json!("elsewhere");
    });
    env.publish(names::CREDITOR_UPDATED, &unknown_policy).await;
    env.publish(names::CREDITOR_UPDATED, &unknown_templates).await;
    let reasons = env.wait_for_dead_letters(2).await;
    assert!(
        reasons.iter().any(|r| r.contains(
            "creditor \"durand\" refused: creditor.policy \"slow\" is not a policy of this deployment (RELANCE_POLICY_DIR: quick)"
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains(
            "creditor \"durand\" refused: creditor.templates \"elsewhere\" is not a template folder of this deployment"
        )),
        "{reasons:?}"
    );
    let show = env.cli(&["creditor", "show", "durand"]).await;
    assert!(show.ok, "{}", show.stderr);
    assert!(
        show.stdout.contains("revision 1") && show.stdout.contains("quick"),
        "{}",
        show.stdout
    );
    // `relance creditor set` run where RELANCE_POLICY_DIR is set refuses such a name before
    // publishing anything.
    let refused = tokio::process::Command::new(relance_tests::relance_binary())
        .args(["creditor", "set", "durand", "--policy", "slow"])
        .env_clear()
        .env("DATABASE_URL", &env.database_url)
        .env("AMQP_URL", relance_tests::amqp_url())
        .env("RELANCE_NAMESPACE", &env.names.namespace)
        .env("RELANCE_QUEUE_TYPE", relance_tests::TEST_QUEUE_TYPE)
        .env("RELANCE_POLICY_DIR", &policies)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains(
                "refused before publishing: creditor.policy \"slow\" is not a policy of this deployment"
            ),
        "{stderr}"
    );

    // F-A is the default creditor's (the default policy), F-B Durand's (`quick`).
    env.publish(names::INVOICE_ISSUED, &invoice("F-A", None)).await;
    env.publish(names::INVOICE_ISSUED, &invoice("F-B", Some("durand")))
        .await;
    env.wait_journal("F-A", names::INVOICE_REGISTERED, 1).await;
    env.wait_journal("F-B", names::INVOICE_REGISTERED, 1).await;
    let first_step = |detail: &Value| {
        (
            detail["plan"][0]["step"].clone(),
            detail["plan"][0]["due_at"].clone(),
        )
    };
    let a = env.journal_details("F-A", names::INVOICE_REGISTERED).await;
    let b = env.journal_details("F-B", names::INVOICE_REGISTERED).await;
    assert_eq!(
        first_step(&a[0]),
        (json!("reminder_1"), json!("2026-03-11T08:00:00Z")),
        "{a:?}"
    );
    assert!(a[0].get("policy").is_none(), "{a:?}");
    assert_eq!(
        first_step(&b[0]),
        (json!("reminder_1"), json!("2026-03-10T08:00:00Z")),
        "{b:?}"
    );
    assert_eq!(b[0]["policy"], json!("quick"), "{b:?}");

    // Tuesday: only Durand's invoice is reminded, in Durand's words.
    env.run_until(date(2026, 3, 10)).await;
    let emails = env.mail.wait_for_emails(1).await;
    assert_eq!(emails.len(), 1, "{emails:#?}");
    let b_mail = email_about(&emails, "F-B", "IBAN");
    assert!(
        b_mail
            .text
            .contains("La Menuiserie Durand vous rappelle amicalement que la facture F-B"),
        "{}",
        b_mail.text
    );
    assert!(
        !b_mail.text.contains("Sauf erreur de notre part"),
        "{}",
        b_mail.text
    );
    // Its other parts are the deployment's, with its own identity.
    assert!(
        b_mail.text.contains(DURAND_IBAN) && b_mail.text.contains("Le service clients Durand"),
        "{}",
        b_mail.text
    );
    assert_eq!(env.journal_count("F-A", names::REMINDER_SENT).await, 0);

    // Wednesday: the default creditor's invoice, on the default policy, in the built-in words.
    env.run_until(date(2026, 3, 11)).await;
    let emails = env.mail.wait_for_emails(2).await;
    assert_eq!(emails.len(), 2, "{emails:#?}");
    let a_mail = email_about(&emails, "F-A", "IBAN");
    assert!(
        a_mail.text.contains("Sauf erreur de notre part, la facture F-A"),
        "{}",
        a_mail.text
    );
    assert!(!a_mail.text.contains("Durand"), "{}", a_mail.text);

    s.env.stop().await;
    let _ = std::fs::remove_dir_all(&s.scratch);
}

/// `relance run <service>` with `vars`, stopped after a minute if it does not stop itself:
/// its exit status and standard error.
async fn run_service(service: &str, vars: &[(&str, &str)]) -> (bool, String) {
    let mut command = tokio::process::Command::new(relance_tests::relance_binary());
    command
        .args(["run", service])
        .env_clear()
        .env("RUST_LOG", "warn")
        .env("RELANCE_EXAMPLE_CREDITOR", "allow")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .kill_on_drop(true);
    for (k, v) in vars {
        command.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("relance run {service} did not stop"))
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_policy_in_relance_policy_dir_or_a_bad_creditor_template_stops_the_start() {
    let scratch = scratch();
    let policies = scratch.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let bad = policy("email").replacen("offset_days = 8", "offset_days = \"eight\"", 1);
    let line = bad
        .lines()
        .position(|l| l.contains("\"eight\""))
        .map(|i| i + 1)
        .unwrap();
    let file = policies.join("quick.toml");
    std::fs::write(&file, &bad).unwrap();
    // Files other than `.toml` are not policies.
    std::fs::write(policies.join("README.txt"), "not a policy").unwrap();
    let dir = policies.to_str().unwrap();
    let (ok, stderr) = run_service("scheduler", &[("RELANCE_POLICY_DIR", dir)]).await;
    assert!(!ok, "{stderr}");
    let at = format!(
        "invalid policy: {}:{line}: segments.low.steps[1].offset_days",
        file.display()
    );
    assert!(stderr.contains(&at), "{at:?} missing from {stderr}");

    // A creditor's template that does not parse stops the renderer at start, naming it.
    std::fs::write(&file, policy("email")).unwrap();
    let templates = scratch.join("creditor-templates");
    std::fs::create_dir_all(templates.join("durand/fr")).unwrap();
    let broken = templates.join("durand/fr/reminder.txt");
    std::fs::write(
        &broken,
        "{% block subject %}Facture {{ invoice_number }{% endblock %}",
    )
    .unwrap();
    let (ok, stderr) = run_service(
        "renderer",
        &[
            ("RELANCE_POLICY_DIR", dir),
            ("RELANCE_CREDITOR_TEMPLATE_DIR", templates.to_str().unwrap()),
        ],
    )
    .await;
    assert!(!ok, "{stderr}");
    let named = format!("creditor template {} does not parse", broken.display());
    assert!(stderr.contains(&named), "{named:?} missing from {stderr}");
    let _ = std::fs::remove_dir_all(&scratch);
}
