//! Replies, bounces and acknowledgements end to end: the real services, a Dovecot IMAP server
//! of the test's own (tests/dovecot.rs) holding the reply-to mailbox, two copies of the
//! replies reader (`relance run replies`) reading it, and the customer page.
//!
//! A policy of the test's own: an email two days after the due date that asks for an
//! acknowledgement of receipt, a firm email two days later; a reply pauses the sequence; an
//! email address that bounced falls back to a letter. Due Monday 9 March 2026: Wednesday 11
//! (email), Friday 13 (firm email), 09:00 Paris.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use relance::drive::wait_for;
use relance_contracts::names;
use relance_tests::dovecot::Dovecot;
use relance_tests::{date, invoice_issued, open_form_page, FormPage, TestEnv, DEADLINE};
use serde_json::json;
use std::path::PathBuf;

const STEPS: &str = r#"
[[segments.SEGMENT.steps]]
name = "reminder_1"
offset_days = 2
channel = "email"
template = "reminder"
tone = "courteous"
request_receipt = true

[[segments.SEGMENT.steps]]
name = "reminder_2"
offset_days = 4
channel = "email"
template = "firm_reminder"
tone = "firm"
"#;

fn policy() -> String {
    let mut policy =
        "send_time = \"09:00\"\n\n[replies]\npause_on_reply = true\n\n[fallback]\nemail = [\"letter\"]\n"
            .to_string();
    for segment in ["low", "medium", "high"] {
        policy.push_str(&STEPS.replace("SEGMENT", segment));
    }
    policy
}

const SECRET: &str = "replies-test-secret";

async fn start(scratch: &std::path::Path, portal_url: &str) -> TestEnv {
    std::fs::create_dir_all(scratch).unwrap();
    let policy_file = scratch.join("policy.toml");
    std::fs::write(&policy_file, policy()).unwrap();
    let letters = scratch.join("letters");
    TestEnv::try_start(
        1,
        &[
            ("RELANCE_POLICY_FILE", policy_file.to_str().unwrap()),
            ("RELANCE_LETTER_DIR", letters.to_str().unwrap()),
            ("RELANCE_PORTAL_URL", portal_url),
            ("RELANCE_PORTAL_SECRET", SECRET),
        ],
    )
    .await
    .expect("starting the test environment")
}

/// The replies to handle as the console's API lists them.
async fn replies_listed(console: &str) -> serde_json::Value {
    reqwest::get(format!("{console}/api/replies"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The collections gauges' count of replies to handle, computed now.
async fn replies_to_handle(env: &TestEnv) -> i64 {
    let mut conn = env.db.acquire().await.unwrap();
    let figures = relance_storage::gauges::figures(&mut conn, chrono::Utc::now())
        .await
        .unwrap();
    figures.replies_to_handle
}

/// (status, channel) of an invoice's step.
async fn step(env: &TestEnv, invoice: &str, name: &str) -> (String, String) {
    sqlx::query_as(
        "SELECT s.status, s.channel FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
         WHERE i.number = $1 AND s.name = $2",
    )
    .bind(invoice)
    .bind(name)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

fn reply(message_id: &str, in_reply_to: &str, from: &str) -> String {
    format!(
        "From: Jeanne Martin <{from}>\nTo: compta@exemple.test\nSubject: Re: votre relance\n\
Message-ID: {message_id}\nIn-Reply-To: {in_reply_to}\nReferences: {in_reply_to}\n\
Date: Wed, 11 Mar 2026 15:00:00 +0100\nContent-Type: text/plain; charset=utf-8\n\n\
Bonjour, nous avons réglé cette facture par virement hier.\n\n> Votre facture est échue.\n"
    )
}

fn dsn(original: &str, recipient: &str) -> String {
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.acme.test>\nTo: relance@exemple.test\n\
Subject: Undelivered Mail Returned to Sender\nMessage-ID: <dsn-1@mx.acme.test>\n\
Date: Wed, 11 Mar 2026 10:00:00 +0100\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"BOUND\"\n\n\
--BOUND\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n\
--BOUND\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.acme.test\n\n\
Final-Recipient: rfc822; {recipient}\nAction: failed\nStatus: 5.1.1\n\
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected\n\n\
--BOUND\nContent-Type: text/rfc822-headers\n\nMessage-ID: {original}\nSubject: Facture\n\n--BOUND--\n"
    )
}

fn mdn(original: &str, from: &str) -> String {
    format!(
        "From: {from}\nTo: compta@exemple.test\nSubject: Read: votre relance\nMessage-ID: <mdn-1@acme.test>\n\
Date: Wed, 11 Mar 2026 11:30:00 +0100\nMIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=disposition-notification; boundary=\"B2\"\n\n\
--B2\nContent-Type: text/plain\n\nThe message was displayed.\n\n\
--B2\nContent-Type: message/disposition-notification\n\nReporting-UA: mail.acme.test\n\
Final-Recipient: rfc822; {from}\nOriginal-Message-ID: {original}\n\
Disposition: manual-action/MDN-sent-manually; displayed\n\n--B2--\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_bounces_and_acknowledgements_read_from_the_mailbox() {
    let scratch: PathBuf =
        std::env::temp_dir().join(format!("relance-replies-{}", uuid::Uuid::new_v4().simple()));
    // The customer page's address, known before the services start (messages link to it).
    let portal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let portal_url = format!("http://{}", portal.local_addr().unwrap());
    let env = start(&scratch, &portal_url).await;
    let imap = Dovecot::start().await.expect("a Dovecot of the test's own");
    for number in ["F-R1", "F-R2", "F-R3"] {
        let mut invoice = invoice_issued(number, "1500.00", date(2026, 3, 2), date(2026, 3, 9));
        invoice["invoice"]["customer"]["postal_address"] = json!("12 rue des Forges\n69002 Lyon");
        env.publish(names::INVOICE_ISSUED, &invoice).await;
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }

    // The first reminders go out, asking for a read notification.
    env.run_until(date(2026, 3, 11)).await;
    let emails = env.mail.wait_for_emails(3).await;
    let id_of = |number: &str| {
        let to = format!("compta+{}@acme.test", number.to_lowercase());
        let email = emails
            .iter()
            .find(|e| e.to.contains(&to))
            .expect("the invoice's email");
        (
            format!("<{}>", email.message_id.trim_matches(['<', '>'])),
            to,
            email.clone(),
        )
    };
    let (r1, r1_to, r1_email) = id_of("F-R1");
    let (r2, r2_to, _) = id_of("F-R2");
    let (r3, r3_to, _) = id_of("F-R3");
    let raw = env.mail.raw(&r1_email);
    assert!(
        raw.contains("Disposition-Notification-To: compta@exemple.test"),
        "{raw}"
    );
    // ... and the one-click acknowledgement on the customer page.
    let receipt_link = r1_email
        .text
        .split_whitespace()
        .find(|w| w.starts_with(&portal_url) && w.ends_with("#receipt"))
        .unwrap_or_else(|| panic!("a receipt link in {}", r1_email.text))
        .to_string();

    // The mailbox: a reply to F-R1 and a second copy of it, a bounce of F-R2's message, a
    // read notification of F-R3's, and a mail about nothing relance sent.
    imap.deliver(&reply("<reply-1@acme.test>", &r1, &r1_to))
        .await
        .unwrap();
    imap.deliver(&reply("<reply-1@acme.test>", &r1, &r1_to))
        .await
        .unwrap();
    imap.deliver(&dsn(&r2, &r2_to)).await.unwrap();
    imap.deliver(&mdn(&r3, &r3_to)).await.unwrap();
    imap.deliver(&reply("<other@acme.test>", "<unknown@elsewhere.test>", &r1_to))
        .await
        .unwrap();

    // Two copies of the reader.
    env.start_replies(&imap.url());
    env.start_replies(&imap.url());
    wait_for("the five mails taken", DEADLINE, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM mailbox_messages")
            .fetch_one(&env.db)
            .await?;
        Ok(n >= 5)
    })
    .await
    .unwrap();
    env.wait_journal("F-R1", names::INVOICE_PAUSED, 1).await;

    // The reply: journaled once, with what the journal keeps of it; the sequence paused.
    let received = env.journal_details("F-R1", "reply.received").await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["from"], json!(r1_to));
    assert_eq!(received[0]["subject"], json!("Re: votre relance"));
    assert_eq!(
        received[0]["excerpt"],
        json!("Bonjour, nous avons réglé cette facture par virement hier.")
    );
    assert_eq!(received[0]["in_reply_to"], json!(r1));
    assert_eq!(received[0]["sha256"].as_str().map(str::len), Some(64));
    let paused = env.journal_details("F-R1", names::INVOICE_PAUSED).await;
    assert_eq!(paused[0]["kind"], json!("reply"));

    // The bounce: the address is marked bouncing, as after an SMTP refusal.
    env.wait_journal("F-R2", "customer.email_bounced", 1).await;
    let bounced = env.journal_details("F-R2", "customer.email_bounced").await;
    assert!(
        bounced[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("5.1.1 (delivery status notification"),
        "{bounced:?}"
    );

    // The read notification: an acknowledgement of receipt, announced.
    env.wait_journal("F-R3", names::INVOICE_RECEIPT_ACKNOWLEDGED, 1)
        .await;
    let ack = env
        .journal_details("F-R3", names::INVOICE_RECEIPT_ACKNOWLEDGED)
        .await;
    assert_eq!(ack[0]["source"], json!("read notification"));
    assert_eq!(ack[0]["source_id"], json!("<mdn-1@acme.test>"));
    assert_eq!(ack[0]["acknowledged_at"], json!("2026-03-11T10:30:00Z"));
    env.events_until_count(names::INVOICE_RECEIPT_ACKNOWLEDGED, 1)
        .await;

    // Matched mail is flagged \Seen once recorded; the unmatched one is left alone, and
    // recorded nowhere in the journal.
    let flagged = wait_for("four mails flagged", DEADLINE, || async {
        Ok(imap.seen_and_total().await? == (4, 5))
    })
    .await;
    assert!(
        flagged.is_ok(),
        "{:?}: {}",
        imap.seen_and_total().await,
        imap.log()
    );
    let unmatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM mailbox_messages WHERE outcome = 'unmatched' AND invoice_id IS NULL",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(unmatched, 1);
    let foreign: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM journal WHERE detail::text LIKE '%unknown@elsewhere.test%' OR detail::text LIKE '%other@acme.test%'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(foreign, 0);

    // Another reading (the readers go on every 100 ms) records nothing twice.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(env.journal_count("F-R1", "reply.received").await, 1);
    assert_eq!(env.journal_count("F-R1", names::INVOICE_PAUSED).await, 1);
    assert_eq!(env.journal_count("F-R2", "customer.email_bounced").await, 1);
    assert_eq!(
        env.journal_count("F-R3", names::INVOICE_RECEIPT_ACKNOWLEDGED)
            .await,
        1
    );

    // A mail taken but left unflagged (a reader stopped between its commit and the flag) is
    // flagged at the next reading; the unmatched one still is not.
    imap.unflag_all().await.unwrap();
    let reflagged = wait_for("four mails flagged again", DEADLINE, || async {
        Ok(imap.seen_and_total().await? == (4, 5))
    })
    .await;
    assert!(reflagged.is_ok(), "{:?}", imap.seen_and_total().await);
    assert_eq!(env.journal_count("F-R1", "reply.received").await, 1);

    // `relance tasks` lists the reply to handle.
    let tasks = env.cli(&["tasks"]).await;
    assert!(tasks.ok, "{}", tasks.stderr);
    let reply_id = received[0]["reply_id"].as_str().unwrap().to_string();
    assert!(
        tasks.stdout.contains(&reply_id) && tasks.stdout.contains("to handle (sequence paused)"),
        "{}",
        tasks.stdout
    );
    // And so does its JSON, after the call tasks (none here).
    let json = env.cli(&["tasks", "--format", "json"]).await;
    assert!(json.ok, "{}", json.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    let reply = rows
        .iter()
        .find(|r| r["kind"] == "reply")
        .unwrap_or_else(|| panic!("no reply in {rows:?}"));
    assert_eq!(reply["reply_id"], serde_json::json!(reply_id), "{reply}");
    assert_eq!(reply["invoice"], "F-R1", "{reply}");
    assert_eq!(reply["status"], "to_handle", "{reply}");
    assert_eq!(reply["pauses"], true, "{reply}");

    // The customer page's one-click acknowledgement (a POST with the page's CSRF token).
    let base = env
        .start_portal_on(portal, |s| s.portal_rate_per_minute = 1000)
        .await
        .unwrap();
    assert_eq!(base, portal_url);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The link of the received email opens the page.
    let page_url = receipt_link.trim_end_matches("#receipt").to_string();
    let token = page_url.rsplit('/').next().unwrap().to_string();
    let FormPage {
        cookie,
        token: csrf,
        html,
        ..
    } = open_form_page(&client, &page_url).await;
    assert!(html.contains("id=\"receipt\""), "{html}");
    assert!(!cookie.is_empty() && !csrf.is_empty(), "{html}");
    let answer = client
        .post(format!("{base}/p/{token}/receipt"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &cookie)
        .body(format!("csrf={csrf}&invoice=F-R1"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    env.wait_journal("F-R1", names::INVOICE_RECEIPT_ACKNOWLEDGED, 1)
        .await;
    let ack = env
        .journal_details("F-R1", names::INVOICE_RECEIPT_ACKNOWLEDGED)
        .await;
    assert_eq!(ack[0]["source"], json!("customer page"));
    let html = client
        .get(format!("{base}/p/{token}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"receipt-acknowledged\""), "{html}");
    // A GET on the action changes nothing.
    let get = client
        .get(format!("{base}/p/{token}/receipt"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);

    // Friday: F-R1 is held by the reply; F-R2's firm reminder goes by letter (its address
    // bounced); F-R3's goes by email.
    env.run_until(date(2026, 3, 13)).await;
    assert_eq!(step(&env, "F-R1", "reminder_2").await.0, "pending");
    assert_eq!(
        step(&env, "F-R2", "reminder_2").await,
        ("sent".into(), "letter".into())
    );
    let fallback = env.journal_details("F-R2", names::REMINDER_FALLBACK).await;
    assert!(
        fallback[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("the customer's email address bounced (5.1.1"),
        "{fallback:?}"
    );
    assert_eq!(
        step(&env, "F-R3", "reminder_2").await,
        ("sent".into(), "email".into())
    );

    // The console's task page lists the reply too, with its form; its JSON twin as well.
    let console = env.start_console(None).await.unwrap();
    let listed = replies_listed(&console).await;
    let replies = listed["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 1, "{listed}");
    assert_eq!(replies[0]["id"], json!(reply_id), "{listed}");
    assert_eq!(replies[0]["invoice_number"], "F-R1", "{listed}");
    assert_eq!(replies[0]["pauses"], true, "{listed}");
    let FormPage {
        cookie: console_cookie,
        token: csrf,
        html,
        ..
    } = open_form_page(&client, &format!("{console}/tasks")).await;
    assert!(
        html.contains(&format!("id=\"reply-{reply_id}\"")) && html.contains("/tasks/replies/handled"),
        "{html}"
    );
    assert!(!console_cookie.is_empty() && !csrf.is_empty(), "{html}");
    let handle = |csrf: &str, cookie: Option<&str>| {
        let mut request = client
            .post(format!("{console}/tasks/replies/handled"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "csrf={csrf}&reply_id={reply_id}&note=called+back%3A+paid"
            ));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie.to_string());
        }
        request.send()
    };
    // The gauge the team's dashboard shows counts it.
    assert_eq!(replies_to_handle(&env).await, 1);
    // Another site's form (no cookie) is refused, and nothing is handled.
    assert_eq!(handle(&csrf, None).await.unwrap().status(), 403);
    assert_eq!(env.journal_count("F-R1", "reply.handled").await, 0);

    // The reply handled from the console: the pause ends and the sequence resumes.
    let handled = handle(&csrf, Some(&console_cookie)).await.unwrap();
    assert_eq!(handled.status(), 303);
    let location = handled.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/invoices/F-R1?applied="), "{location}");
    env.wait_journal("F-R1", names::INVOICE_RESUMED, 1).await;
    let note = env.journal_details("F-R1", "reply.handled").await;
    assert_eq!(note[0]["note"], "called back: paid", "{note:?}");
    let tasks = env.cli(&["tasks"]).await;
    assert!(!tasks.stdout.contains(&reply_id), "{}", tasks.stdout);
    let all = env.cli(&["tasks", "--all"]).await;
    assert!(all.stdout.contains("called back: paid"), "{}", all.stdout);
    let left = replies_listed(&console).await;
    assert_eq!(left["replies"], json!([]), "{left}");
    assert_eq!(replies_to_handle(&env).await, 0);
    // Handled twice (a second tab, the command line): refused at once, nothing published.
    let twice = handle(&csrf, Some(&console_cookie)).await.unwrap();
    assert_eq!(twice.status(), 409);
    assert!(twice.text().await.unwrap().contains("was handled on"));
    let again = env.cli(&["tasks", "handled", &reply_id]).await;
    assert!(
        !again.ok && again.stderr.contains("was handled on"),
        "{}\n{}",
        again.stdout,
        again.stderr
    );
    assert!(!again.stdout.contains("published"), "{}", again.stdout);
    env.run_until(date(2026, 3, 17)).await;
    assert_eq!(
        step(&env, "F-R1", "reminder_2").await,
        ("sent".into(), "email".into())
    );

    env.stop().await;
    drop(imap);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_is_handled_from_the_command_line_and_a_note_too_long_is_refused_before_publishing() {
    let scratch = std::env::temp_dir().join(format!("relance-replies-{}", uuid::Uuid::new_v4().simple()));
    let env = start(&scratch, "http://127.0.0.1:9/").await;
    let invoice = invoice_issued("F-C1", "800.00", date(2026, 2, 27), date(2026, 3, 9));
    env.publish(names::INVOICE_ISSUED, &invoice).await;
    env.wait_journal("F-C1", names::INVOICE_REGISTERED, 1).await;
    // A reply as the mailbox reader records it.
    let invoice_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM invoices WHERE number = 'F-C1'")
        .fetch_one(&env.db)
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let mut tx = env.db.begin().await.unwrap();
    relance_storage::replies::take(
        &mut tx,
        &relance_storage::replies::TakenMail {
            key: "<reply-c1@acme.test>",
            mailbox: "INBOX",
            uid_validity: 1,
            uid: 1,
            sha256: "0".repeat(64).as_str(),
            outcome: "reply",
            invoice_id: Some(invoice_id),
        },
        now,
    )
    .await
    .unwrap();
    let reply = relance_storage::replies::NewReply {
        invoice_id,
        step_id: None,
        mail_key: "<reply-c1@acme.test>",
        from: "compta@acme.test",
        subject: "Re: Facture F-C1",
        sent_at: None,
        excerpt: "Nous réglons vendredi.",
        sha256: &"0".repeat(64),
        pauses: false,
    };
    let reply_id = relance_storage::replies::insert_reply(&mut tx, &reply, now)
        .await
        .unwrap()
        .to_string();
    tx.commit().await.unwrap();

    // A note longer than the listener takes: refused before anything is published.
    let long = "x".repeat(2001);
    let refused = env.cli(&["tasks", "handled", &reply_id, "--note", &long]).await;
    assert!(
        !refused.ok
            && refused
                .stderr
                .contains("reply.note is longer than 2000 characters"),
        "{}\n{}",
        refused.stdout,
        refused.stderr
    );
    assert!(!refused.stdout.contains("published"), "{}", refused.stdout);

    let handled = env
        .cli(&[
            "tasks",
            "handled",
            &reply_id,
            "--note",
            "called back",
            "--wait",
            "30",
        ])
        .await;
    assert!(handled.ok, "{}\n{}", handled.stdout, handled.stderr);
    let journaled = env.journal_details("F-C1", "reply.handled").await;
    assert_eq!(journaled.len(), 1, "{journaled:?}");
    assert_eq!(journaled[0]["note"], "called back", "{journaled:?}");
    let all = env.cli(&["tasks", "--all"]).await;
    assert!(
        all.stdout.contains(&reply_id) && all.stdout.contains("called back"),
        "{}",
        all.stdout
    );

    env.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);
}
