//! `/metrics` as an operator reads it: three invoices go through the pipeline, one is paid,
//! a malformed message is dead-lettered; the counters, histograms and gauges scraped from
//! the health server say the same as the mailbox and the journal, and no label names an
//! invoice, a customer or an address.
//!
//! Its own test binary: the metrics recorder is one per process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use relance_contracts::names;
use relance_tests::{date, invoice_issued, payment_received, scrape_metrics, wait_for, TestEnv, DEADLINE};
use std::collections::BTreeMap;

/// One sample of the exposition: its metric name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse(exposition: &str) -> Vec<Sample> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// The sum of `name`'s samples whose labels include `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_went_out_and_name_no_one() {
    let addr = format!("127.0.0.1:{}", relance_tests::free_port());
    let env = TestEnv::try_start(
        1,
        &[
            ("RELANCE_HEALTH_ADDR", &addr),
            ("RELANCE_METRICS_INTERVAL_MS", "100"),
        ],
    )
    .await
    .expect("starting the test environment");
    let http = reqwest::Client::new();
    for number in ["F-M1", "F-M2", "F-M3"] {
        let invoice = invoice_issued(number, "1200.00", date(2026, 3, 2), date(2026, 3, 16));
        env.publish(names::INVOICE_ISSUED, &invoice).await;
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    // Malformed: dead-lettered by the scheduler's intake.
    env.publish_raw(&env.names.inbound_exchange(), names::INVOICE_ISSUED, b"not json")
        .await;
    env.wait_for_dead_letters(1).await;

    // The pre-due notes (J-5), then F-M1 is paid in full: its reminders are cancelled and
    // the thank-you goes out.
    env.run_until(date(2026, 3, 11)).await;
    env.mail.wait_for_emails(3).await;
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("P-M1", "F-M1", "1200.00", date(2026, 3, 12)),
    )
    .await;
    env.wait_journal("F-M1", names::INVOICE_SETTLED, 1).await;
    env.run_until(date(2026, 3, 12)).await;
    let emails = env.mail.wait_for_emails(4).await.len();
    assert_eq!(emails, 4, "three pre-due notes and a thank-you");

    let planned: i64 = sqlx::query_scalar("SELECT count(*) FROM reminder_steps WHERE kind = 'reminder'")
        .fetch_one(&env.db)
        .await
        .unwrap();
    let cancelled = env.journal_count("F-M1", names::REMINDER_CANCELLED).await;
    assert!(cancelled > 0);

    // The relay counts once the rows are published, the gauges every 100 ms: poll.
    let scraped = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let settled = wait_for("the metrics to catch up", DEADLINE, || {
        let (http, addr, scraped) = (http.clone(), addr.clone(), scraped.clone());
        async move {
            let text = scrape_metrics(&http, &addr).await;
            let s = parse(&text);
            *scraped.lock().unwrap() = text;
            Ok(
                sum(&s, "relance_steps_sent_total", &[("channel", "email")]) == emails as f64
                    && sum(&s, "relance_invoices", &[("status", "settled")]) == 1.0
                    && sum(&s, "relance_steps_cancelled_total", &[]) == cancelled as f64,
            )
        }
    })
    .await;
    let last = scraped.lock().unwrap().clone();
    let samples = parse(&last);
    assert!(settled.is_ok(), "{last}");

    // Steps by channel and step name, as the journal and the mailbox tell them.
    assert_eq!(
        sum(
            &samples,
            "relance_steps_sent_total",
            &[("channel", "email"), ("step", "pre_due")]
        ),
        3.0,
        "{last}"
    );
    assert_eq!(
        sum(
            &samples,
            "relance_steps_sent_total",
            &[("channel", "email"), ("step", "thanks")]
        ),
        1.0,
        "{last}"
    );
    assert_eq!(
        sum(&samples, "relance_steps_planned_total", &[]),
        planned as f64,
        "{last}"
    );
    assert_eq!(
        sum(&samples, "relance_steps_emitted_total", &[("channel", "email")]),
        4.0,
        "{last}"
    );
    assert_eq!(
        sum(&samples, "relance_steps_rendered_total", &[("channel", "email")]),
        4.0,
        "{last}"
    );
    // Deliveries: every one accepted with a 2xx reply; each with its due-to-sent latency.
    assert_eq!(
        sum(
            &samples,
            "relance_deliveries_total",
            &[("channel", "email"), ("outcome", "sent"), ("reply_class", "2xx")]
        ),
        4.0,
        "{last}"
    );
    assert_eq!(sum(&samples, "relance_deliveries_total", &[]), 4.0, "{last}");
    assert_eq!(
        sum(
            &samples,
            "relance_due_to_sent_seconds_count",
            &[("channel", "email")]
        ),
        4.0,
        "{last}"
    );
    assert_eq!(
        sum(&samples, "relance_payment_to_cancel_seconds_count", &[]),
        1.0,
        "{last}"
    );
    // Consumers: the malformed message dead-lettered, by queue and reason class.
    assert_eq!(
        sum(
            &samples,
            "relance_messages_dead_lettered_total",
            &[("queue", "scheduler.invoices"), ("reason_class", "permanent")]
        ),
        1.0,
        "{last}"
    );
    assert_eq!(
        sum(
            &samples,
            "relance_messages_consumed_total",
            &[("queue", "sender.email")]
        ),
        4.0,
        "{last}"
    );
    assert_eq!(
        sum(
            &samples,
            "relance_handler_duration_seconds_count",
            &[("queue", "sender.email")]
        ),
        4.0,
        "{last}"
    );
    // Group commit: the four renderings, and each delivery's claim, last check and result,
    // committed (in batches of any size); no batch undone.
    assert_eq!(
        sum(
            &samples,
            "relance_commit_batch_pieces_sum",
            &[("service", "renderer")]
        ),
        4.0,
        "{last}"
    );
    assert_eq!(
        sum(
            &samples,
            "relance_commit_batch_pieces_sum",
            &[("service", "sender")]
        ),
        12.0,
        "{last}"
    );
    assert!(
        sum(&samples, "relance_commit_batch_pieces_count", &[]) > 0.0,
        "{last}"
    );
    // Counted from zero by the renderer's and the sender's group commits, none undone.
    for service in ["renderer", "sender"] {
        assert!(
            samples
                .iter()
                .any(|s| s.name == "relance_commit_batches_undone_total"
                    && s.labels.get("service").map(String::as_str) == Some(service)),
            "{service}: {last}"
        );
    }
    assert_eq!(
        sum(&samples, "relance_commit_batches_undone_total", &[]),
        0.0,
        "{last}"
    );
    assert!(sum(&samples, "relance_scheduler_pass_duration_seconds_count", &[]) > 0.0);
    // The three pre-due notes were claimed by passes (and any postponed before their window).
    assert!(
        sum(&samples, "relance_scheduler_pass_steps_claimed_sum", &[]) >= 3.0,
        "{last}"
    );
    // Gauges: two invoices still owed, not yet due on 12 March; nothing waits in the outbox.
    assert_eq!(sum(&samples, "relance_invoices", &[("status", "to_remind")]), 0.0);
    assert_eq!(sum(&samples, "relance_invoices", &[]), 3.0, "{last}");
    assert_eq!(
        sum(
            &samples,
            "relance_outstanding_amount",
            &[("currency", "EUR"), ("aging_bucket", "not_due")]
        ),
        2400.0,
        "{last}"
    );
    assert_eq!(
        sum(&samples, "relance_outbox_backlog_messages", &[]),
        0.0,
        "{last}"
    );
    assert_eq!(
        sum(&samples, "relance_outbox_relay_leading", &[]),
        1.0,
        "the process's one relay leads: {last}"
    );
    assert_eq!(sum(&samples, "relance_call_tasks_open", &[]), 0.0, "{last}");
    assert!(
        samples.iter().any(|s| s.name == "relance_replies_to_handle"),
        "{last}"
    );
    assert_eq!(sum(&samples, "relance_replies_to_handle", &[]), 0.0, "{last}");
    assert_eq!(sum(&samples, "relance_invoices_paused", &[]), 0.0, "{last}");
    // The process and its loops.
    assert!(
        sum(&samples, "process_resident_memory_bytes", &[]) > 0.0,
        "{last}"
    );
    assert!(
        samples.iter().any(|s| s.name == "process_cpu_seconds_total"),
        "{last}"
    );
    for (service, name) in [
        ("scheduler", "scheduler pass"),
        ("scheduler", "outbox relay"),
        ("sender", "consumer sender.email"),
    ] {
        assert!(
            samples
                .iter()
                .any(|s| s.name == "relance_loop_last_success_seconds"
                    && s.labels.get("service").map(String::as_str) == Some(service)
                    && s.labels.get("loop").map(String::as_str) == Some(name)),
            "{service}: {name} in {last}"
        );
    }
    // No personal data, no invoice number in any label.
    for s in &samples {
        for value in s.labels.values() {
            assert!(
                !value.contains("F-M") && !value.contains('@') && !value.contains("ACME"),
                "{} has {value:?}",
                s.name
            );
        }
    }
    env.stop().await;
}
