//! Deliveries through outages (issue 12): no lock is held across the SMTP conversation, yet
//! no reminder reaches the customer once a payment is recorded, even when the sender's
//! database session is cut mid-delivery; and a delivery interrupted is settled by how far it
//! got: delivered again before the end of DATA, reported ambiguous after it, sent once the
//! server's answer was recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, TimeZone, Utc};
use relance_contracts::names;
use relance_tests::smtp_proxy::SmtpFaultProxy;
use relance_tests::*;
use serde_json::Value;

/// The email sender (`relance_sender::SERVICE`), held back at start.
const EMAIL_SENDER: &str = "sender";

async fn step_of(env: &TestEnv, invoice: &str, step: &str) -> (String, Option<String>) {
    sqlx::query_as(
        "SELECT s.status, s.status_reason FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
         WHERE i.number = $1 AND s.name = $2",
    )
    .bind(invoice)
    .bind(step)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

/// Journal entries with this action about one step of the invoice.
async fn step_journal(env: &TestEnv, invoice: &str, step: &str, action: &str) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT j.detail FROM journal j JOIN reminder_steps s ON s.id = j.step_id
         JOIN invoices i ON i.id = s.invoice_id
         WHERE i.number = $1 AND s.name = $2 AND j.action = $3 ORDER BY j.seq",
    )
    .bind(invoice)
    .bind(step)
    .bind(action)
    .fetch_all(&env.db)
    .await
    .unwrap()
}

async fn rendered_message_id(env: &TestEnv, invoice: &str, step: &str) -> String {
    sqlx::query_scalar(
        "SELECT r.message_id FROM rendered_messages r JOIN reminder_steps s ON s.id = r.step_id
         JOIN invoices i ON i.id = s.invoice_id WHERE i.number = $1 AND s.name = $2",
    )
    .bind(invoice)
    .bind(step)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

/// Monday 2 March 2026, 10:00 in Paris: a working morning, when pre-due notes go out.
fn working_morning() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).single().unwrap()
}

/// The issue's scenario: the server is slow to answer DATA, every database session of relance
/// is terminated while the pre-due note is `sending`, and the payment is then recorded. The
/// note must not reach the server after the payment (the sender aborts before the end of
/// DATA) and the journal says so; the thank-you goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_during_a_slow_delivery_whose_session_was_cut_stops_the_reminder() {
    let mut mail = MailDev::start().await.unwrap();
    let proxy = SmtpFaultProxy::start(mail.smtp_port).await.unwrap();
    let smtp = format!("smtp://127.0.0.1:{}", proxy.port);
    let env = TestEnv::try_start(1, &[("SMTP_URL", &smtp)]).await.unwrap();
    proxy.hold_data(true);
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-1200", "300.00", date(2026, 3, 1), date(2026, 3, 6)),
    )
    .await;
    env.wait_journal("F-1200", names::INVOICE_REGISTERED, 1).await;
    env.move_clock(working_morning()).await;
    wait_for("the pre-due note held at DATA", DEADLINE, || async {
        Ok(proxy.held() == 1)
    })
    .await
    .unwrap();
    assert_eq!(step_of(&env, "F-1200", "pre_due").await.0, "sending");

    // Every session of relance's services on this database is cut (the sender's among them).
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&env.db)
    .await
    .unwrap();
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("P-1200", "F-1200", "300.00", date(2026, 3, 2)),
    )
    .await;
    env.wait_journal("F-1200", names::INVOICE_SETTLED, 1).await;
    let paid_at: DateTime<Utc> =
        sqlx::query_scalar("SELECT recorded_wall_at FROM payments WHERE id = 'P-1200'")
            .fetch_one(&env.db)
            .await
            .unwrap();
    // The payment did not cancel a step that is going out: it marked it.
    assert_eq!(step_of(&env, "F-1200", "pre_due").await.0, "sending");
    let cancelled = || step_journal(&env, "F-1200", "pre_due", names::REMINDER_CANCELLED);
    assert!(cancelled().await.is_empty());

    proxy.release();
    env.wait_journal("F-1200", names::THANKS_SENT, 1).await;
    wait_for("the note's cancellation", DEADLINE, || async {
        Ok(!cancelled().await.is_empty())
    })
    .await
    .unwrap();
    let (status, reason) = step_of(&env, "F-1200", "pre_due").await;
    assert_eq!(status, "cancelled");
    assert!(reason.unwrap_or_default().contains("invoice settled"));
    let cancelled = cancelled().await;
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert_eq!(cancelled[0]["was"], "sending", "{cancelled:?}");
    assert_eq!(env.journal_count("F-1200", names::REMINDER_SENT).await, 0);

    // What the server received: the thank-you only, after the payment; the note never.
    let note = rendered_message_id(&env, "F-1200", "pre_due").await;
    let emails = mail.wait_for_emails(1).await;
    assert!(
        emails
            .iter()
            .all(|e| !note.contains(e.message_id.trim_matches(|c| c == '<' || c == '>'))),
        "the pre-due note reached the server: {emails:?}"
    );
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(
        proxy.cut_in_data() >= 1,
        "the note's transaction ended without its final dot"
    );
    assert_eq!(proxy.accepted_at().len(), 1, "the thank-you only");
    assert!(proxy.accepted_at().iter().all(|at| *at > paid_at));
    env.stop().await;
    mail.stop().await;
}

/// The last check has passed and the end of DATA is on its way (the server has not accepted
/// the note yet) when the payment arrives: the payment is recorded at once (no lock is held
/// while the server answers) and marks the step; the note, past its point of no return,
/// reaches the server and is journaled as sent with the payment's time beside it, never as
/// cancelled. The thank-you follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_after_the_last_check_is_recorded_at_once_and_the_note_journaled_sent_beside_it() {
    let mut mail = MailDev::start().await.unwrap();
    let proxy = SmtpFaultProxy::start(mail.smtp_port).await.unwrap();
    let smtp = format!("smtp://127.0.0.1:{}", proxy.port);
    let env = TestEnv::try_start(1, &[("SMTP_URL", &smtp)]).await.unwrap();
    proxy.hold_end_of_data(true);
    env.publish(
        names::INVOICE_ISSUED,
        &invoice_issued("F-1300", "300.00", date(2026, 3, 1), date(2026, 3, 6)),
    )
    .await;
    env.wait_journal("F-1300", names::INVOICE_REGISTERED, 1).await;
    env.move_clock(working_morning()).await;
    wait_for("the pre-due note's end of DATA held", DEADLINE, || async {
        Ok(proxy.held_at_end_of_data() == 1)
    })
    .await
    .unwrap();
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("P-1300", "F-1300", "300.00", date(2026, 3, 2)),
    )
    .await;
    // Recorded while the server still waits for the end of DATA.
    env.wait_journal("F-1300", names::INVOICE_SETTLED, 1).await;
    assert_eq!(proxy.held_at_end_of_data(), 1);
    assert!(proxy.accepted_at().is_empty(), "nothing accepted yet");
    assert_eq!(step_of(&env, "F-1300", "pre_due").await.0, "sending");

    proxy.release();
    env.wait_journal("F-1300", names::THANKS_SENT, 1).await;
    let sent = step_journal(&env, "F-1300", "pre_due", names::REMINDER_SENT).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["stop_requested"]["reason"], "invoice settled", "{sent:?}");
    assert!(sent[0]["stop_requested"]["at"].is_string(), "{sent:?}");
    assert_eq!(step_of(&env, "F-1300", "pre_due").await.0, "sent");
    assert!(step_journal(&env, "F-1300", "pre_due", names::REMINDER_CANCELLED)
        .await
        .is_empty());
    assert_eq!(proxy.accepted_at().len(), 2, "the note, then the thank-you");
    env.stop().await;
    mail.stop().await;
}

/// Steps left in `sending` by a sender that stopped, at each stage a delivery records: before
/// any SMTP exchange (a database error after the claim) and with the envelope accepted, they
/// are delivered again, once, with their Message-ID; after the end of DATA the delivery is
/// reported ambiguous (not failed, not sent); with the server's answer recorded it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_delivery_is_settled_by_how_far_it_got() {
    let mut env = TestEnv::try_start_holding(1, &[EMAIL_SENDER], &[("RELANCE_LEASE_MS", "300")])
        .await
        .unwrap();
    let cases = [
        ("F-1301", "claimed"),
        ("F-1302", "envelope_accepted"),
        ("F-1303", "data_end_sent"),
        ("F-1304", "answered"),
    ];
    for (number, _) in cases {
        env.publish(
            names::INVOICE_ISSUED,
            &invoice_issued(number, "80.00", date(2026, 3, 1), date(2026, 3, 6)),
        )
        .await;
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    env.move_clock(working_morning()).await;
    for (number, _) in cases {
        env.wait_journal(number, "reminder.rendered", 1).await;
    }
    // As if a sender had claimed each and stopped at that stage, minutes ago.
    for (number, stage) in cases {
        sqlx::query(
            "UPDATE reminder_steps SET status = 'sending', delivery_stage = $2, delivery_attempt = gen_random_uuid(),
                 delivery_proof = CASE WHEN $2 = 'answered' THEN '250 2.0.0 Ok: queued' END,
                 status_changed_at = clock_timestamp() - interval '1 hour'
             WHERE name = 'pre_due' AND status = 'rendered'
               AND invoice_id = (SELECT id FROM invoices WHERE number = $1)",
        )
        .bind(number)
        .bind(stage)
        .execute(&env.db)
        .await
        .unwrap();
    }
    env.start_held(1, &[EMAIL_SENDER]);
    env.wait_journal("F-1301", names::REMINDER_SENT, 1).await;
    env.wait_journal("F-1302", names::REMINDER_SENT, 1).await;
    env.wait_journal("F-1303", names::REMINDER_AMBIGUOUS, 1).await;
    env.wait_journal("F-1304", names::REMINDER_SENT, 1).await;
    env.idle().await;

    let emails = env.mail.emails().await;
    let mut to: Vec<String> = emails.iter().flat_map(|e| e.to.clone()).collect();
    to.sort();
    assert_eq!(
        to,
        vec!["compta+f-1301@acme.test", "compta+f-1302@acme.test"],
        "each once"
    );
    for e in &emails {
        let number = if e.to[0].contains("1301") {
            "F-1301"
        } else {
            "F-1302"
        };
        let id = rendered_message_id(&env, number, "pre_due").await;
        assert!(
            id.contains(e.message_id.trim_matches(|c| c == '<' || c == '>')),
            "{id} {e:?}"
        );
    }
    for number in ["F-1301", "F-1302"] {
        let (status, reason) = step_of(&env, number, "pre_due").await;
        assert_eq!(status, "sent");
        assert!(
            reason.unwrap_or_default().contains("before the end of DATA"),
            "{number}"
        );
    }
    let (status, reason) = step_of(&env, "F-1303", "pre_due").await;
    assert_eq!(status, "ambiguous");
    assert!(reason.unwrap_or_default().contains("may or may not"));
    let ambiguous = env.journal_details("F-1303", names::REMINDER_AMBIGUOUS).await;
    assert_eq!(ambiguous[0]["policy"], "report");
    assert_eq!(ambiguous[0]["stage"], "data_end_sent");
    assert_eq!(env.journal_count("F-1303", names::REMINDER_FAILED).await, 0);
    assert_eq!(env.journal_count("F-1303", names::REMINDER_SENT).await, 0);
    assert_eq!(step_of(&env, "F-1304", "pre_due").await.0, "sent");
    let recovered = env.journal_details("F-1304", names::REMINDER_SENT).await;
    assert_eq!(recovered[0]["response"], "250 2.0.0 Ok: queued", "{recovered:?}");
    env.stop().await;
}
