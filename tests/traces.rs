//! Traces and OTLP metrics as an operator's collector receives them. The scheduler, the
//! renderer and the sender run as separate `relance` processes exporting over OTLP/HTTP to a
//! small receiver of the test's own (the OTLP protobuf messages decoded with
//! `opentelemetry-proto`); three invoices of three customers get their pre-due note.
//!
//! Checks: three distinct traces, one per reminder, each rooted at its emission in the
//! scheduler and holding the renderer's and the sender's spans and the SMTP call, every
//! parent found across the processes; the scheduler pass is a span of its own with links to
//! the three emissions; publish and process spans follow the messaging conventions; metrics
//! sent over OTLP (`RELANCE_METRICS_EXPORTER=otlp`) hold the step counters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use relance_contracts::names::{self, Names};
use relance_tests::{
    amqp_url, date, free_port, invoice_issued, relance_binary, server_url, wait_for, MailDev, DEADLINE,
};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::process::{Child, Command};

/// One span as received, with the service that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    kind: i32,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: BTreeMap<String, String>,
    links: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What the receiver got: spans, and the names of metrics with their data points' labels.
#[derive(Default)]
struct Collected {
    spans: Vec<Received>,
    metrics: Vec<(String, String, f64, BTreeMap<String, String>)>,
}

type Shared = Arc<Mutex<Collected>>;

fn text(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

async fn traces(State(collected): State<Shared>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
    let mut collected = collected
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for resource in request.resource_spans {
        let resource_attributes = text(&resource.resource.map(|r| r.attributes).unwrap_or_default());
        let service = resource_attributes
            .get("service.name")
            .cloned()
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                collected.spans.push(Received {
                    service: service.clone(),
                    name: span.name.clone(),
                    kind: span.kind,
                    trace_id: span.trace_id.clone(),
                    span_id: span.span_id.clone(),
                    parent_span_id: span.parent_span_id.clone(),
                    attributes: text(&span.attributes),
                    links: span
                        .links
                        .iter()
                        .map(|l| (l.trace_id.clone(), l.span_id.clone()))
                        .collect(),
                });
            }
        }
    }
    ""
}

async fn metrics(State(collected): State<Shared>, body: Bytes) -> &'static str {
    let request = ExportMetricsServiceRequest::decode(body).expect("an OTLP metrics export");
    let mut collected = collected
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for resource in request.resource_metrics {
        let resource_attributes = text(&resource.resource.map(|r| r.attributes).unwrap_or_default());
        let service = resource_attributes
            .get("service.name")
            .cloned()
            .unwrap_or_default();
        for scope in resource.scope_metrics {
            for m in scope.metrics {
                let points: Vec<(f64, BTreeMap<String, String>)> = match &m.data {
                    Some(metric::Data::Sum(sum)) => sum
                        .data_points
                        .iter()
                        .map(|p| (number(&p.value), text(&p.attributes)))
                        .collect(),
                    Some(metric::Data::Gauge(gauge)) => gauge
                        .data_points
                        .iter()
                        .map(|p| (number(&p.value), text(&p.attributes)))
                        .collect(),
                    Some(metric::Data::Histogram(h)) => h
                        .data_points
                        .iter()
                        .map(|p| (p.count as f64, text(&p.attributes)))
                        .collect(),
                    _ => Vec::new(),
                };
                for (value, labels) in points {
                    collected
                        .metrics
                        .push((service.clone(), m.name.clone(), value, labels));
                }
            }
        }
    }
    ""
}

fn number(value: &Option<opentelemetry_proto::tonic::metrics::v1::number_data_point::Value>) -> f64 {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    match value {
        Some(Value::AsDouble(d)) => *d,
        Some(Value::AsInt(i)) => *i as f64,
        None => 0.0,
    }
}

/// An OTLP/HTTP receiver (protobuf, `/v1/traces` and `/v1/metrics`) on a free port.
async fn start_receiver() -> (String, Shared) {
    let collected = Shared::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(collected.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, collected)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans from `span` up to its trace's root, following parent span ids; `Err` names a
/// parent that never arrived.
fn ancestry<'a>(spans: &'a [Received], span: &'a Received) -> Result<Vec<&'a Received>, String> {
    let mut chain = vec![span];
    let mut current = span;
    while !current.parent_span_id.is_empty() {
        let parent = spans
            .iter()
            .find(|s| s.trace_id == current.trace_id && s.span_id == current.parent_span_id)
            .ok_or_else(|| {
                format!(
                    "the parent {} of {} ({}) is missing",
                    hex(&current.parent_span_id),
                    current.name,
                    current.service
                )
            })?;
        chain.push(parent);
        current = parent;
    }
    Ok(chain)
}

/// The SMTP spans whose whole ancestry arrived, each with its chain (SMTP first, root last).
fn complete_chains(spans: &[Received]) -> Vec<Vec<&Received>> {
    spans
        .iter()
        .filter(|s| s.name == "smtp send")
        .filter_map(|s| ancestry(spans, s).ok())
        .collect()
}

struct Processes(Vec<Child>);

impl Processes {
    fn spawn(&mut self, service: &str, env: &[(String, String)], extra: &[(&str, &str)]) {
        let child = Command::new(relance_binary())
            .args(["run", service])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("starting a relance process");
        self.0.push(child);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_reminder_is_one_trace_across_the_processes_and_metrics_go_over_otlp() {
    let (endpoint, collected) = start_receiver().await;
    let id = format!("{}_{}", Utc::now().timestamp(), uuid::Uuid::new_v4().simple());
    let database_url = format!("{}/relance_test_{id}", server_url());
    relance_storage::migrate(&database_url).await.unwrap();
    let db = relance_storage::connect(&database_url, 2).await.unwrap();
    let mut mail = MailDev::start().await.unwrap();
    let namespace = format!("t-{}", id.replace('_', "-"));
    let names = Names::new(&namespace);
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0).single().unwrap();
    relance_storage::clock::set_shared_time(&db, start).await.unwrap();
    let connection = relance_messaging::connect(&amqp_url(), "tests").await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let topology = relance_messaging::TopologyOptions {
        queue_expires: Some(std::time::Duration::from_secs(600)),
        ..Default::default()
    };
    relance_messaging::declare_topology(&channel, &names, &topology)
        .await
        .unwrap();
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", database_url.clone()),
        ("AMQP_URL", amqp_url()),
        ("SMTP_URL", format!("smtp://127.0.0.1:{}", mail.smtp_port)),
        ("RELANCE_NAMESPACE", namespace.clone()),
        ("RELANCE_CLOCK", "database".into()),
        ("RELANCE_CLOCK_START", start.to_rfc3339()),
        ("RELANCE_SCHEDULER_INTERVAL_MS", "200".into()),
        ("RELANCE_OUTBOX_INTERVAL_MS", "50".into()),
        ("RELANCE_DB_POOL_SIZE", "3".into()),
        ("RELANCE_QUEUE_EXPIRES_MS", "600000".into()),
        ("RELANCE_POLICY_FILE", relance_tests::POLICY_EMAIL_ONLY.into()),
        ("RELANCE_EXAMPLE_CREDITOR", "allow".into()),
        ("RUST_LOG", "warn".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
        // Spans and metrics leave within a fraction of a second, not at exit.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut processes = Processes(Vec::new());
    processes.spawn("scheduler", &env, &[("RELANCE_METRICS_EXPORTER", "otlp")]);
    processes.spawn("renderer", &env, &[("RELANCE_METRICS_EXPORTER", "otlp")]);
    processes.spawn(
        "sender",
        &env,
        &[
            ("RELANCE_METRICS_EXPORTER", "both"),
            ("RELANCE_HEALTH_ADDR", &format!("127.0.0.1:{}", free_port())),
        ],
    );

    // Three invoices of three customers, due on 16 March: their pre-due notes go out on
    // Wednesday 11 March in the morning.
    let publisher = relance_messaging::Publisher::open(&connection).await.unwrap();
    let invoices = ["F-T1", "F-T2", "F-T3"];
    for number in invoices {
        let body = invoice_issued(number, "900.00", date(2026, 3, 2), date(2026, 3, 16));
        relance::drive::publish_inbound(&publisher, &names, names::INVOICE_ISSUED, &body)
            .await
            .unwrap();
    }
    wait_for("the three invoices registered", DEADLINE, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM journal WHERE action = $1")
            .bind(names::INVOICE_REGISTERED)
            .fetch_one(&db)
            .await?;
        Ok(n == 3)
    })
    .await
    .unwrap();
    let wednesday = Utc.with_ymd_and_hms(2026, 3, 11, 8, 0, 0).single().unwrap();
    relance_storage::clock::set_shared_time(&db, wednesday)
        .await
        .unwrap();
    assert_eq!(mail.wait_for_emails(3).await.len(), 3);

    // Spans arrive in batches from three processes: wait until each SMTP call's ancestry
    // is complete and the sender has published what followed.
    let arrived = wait_for("three complete traces", DEADLINE, || {
        let collected = collected.clone();
        async move {
            let c = collected
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let sent_published = c.spans.iter().filter(|s| {
                s.attributes
                    .get("messaging.rabbitmq.destination.routing_key")
                    .map(String::as_str)
                    == Some(names::REMINDER_SENT)
            });
            Ok(complete_chains(&c.spans).len() >= 3 && sent_published.count() >= 3)
        }
    })
    .await;
    let spans = collected
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .spans
        .clone();
    let summary = || {
        spans
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} <- {} [{}]",
                    s.service,
                    s.name,
                    hex(&s.span_id),
                    hex(&s.parent_span_id),
                    hex(&s.trace_id)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(arrived.is_ok(), "spans received:\n{}", summary());

    let chains = complete_chains(&spans);
    let traces: BTreeSet<&Vec<u8>> = chains.iter().map(|chain| &chain[0].trace_id).collect();
    assert_eq!(traces.len(), 3, "three reminders, three traces:\n{}", summary());
    let mut emissions = BTreeSet::new();
    for chain in &chains {
        let smtp = chain[0];
        let root = chain.last().unwrap();
        // The trace starts at the emission, in the scheduler, not at its pass.
        assert_eq!(
            (root.service.as_str(), root.name.as_str()),
            ("relance-scheduler", "emit reminder")
        );
        assert_eq!(smtp.service, "relance-sender");
        assert_eq!(smtp.kind, SpanKind::Client as i32);
        emissions.insert(root.span_id.clone());
        // Scheduler -> publish reminder.due -> renderer processes it -> publish
        // reminder.rendered.email -> sender processes it -> SMTP: parent after parent (the
        // publishing is done by whichever process's relay took the outbox row).
        let from_root: Vec<&Received> = chain.iter().rev().copied().collect();
        let processed_by = |service: &str| {
            from_root
                .iter()
                .position(|s| s.service == service && s.kind == SpanKind::Consumer as i32)
        };
        let steps: Vec<String> = from_root
            .iter()
            .map(|s| format!("{} {}", s.service, s.name))
            .collect();
        let (renderer, sender) = (processed_by("relance-renderer"), processed_by("relance-sender"));
        assert!(
            renderer.is_some_and(|r| sender.is_some_and(|s| r < s)),
            "chain {steps:?}\n{}",
            summary()
        );
        assert!(
            from_root[..sender.unwrap()]
                .iter()
                .any(|s| s.service == "relance-renderer" && s.name == "render_job"),
            "{steps:?}"
        );
        let services = &steps;
        let consumed: Vec<&&Received> = chain
            .iter()
            .filter(|s| s.kind == SpanKind::Consumer as i32)
            .collect();
        let produced: Vec<&&Received> = chain
            .iter()
            .filter(|s| s.kind == SpanKind::Producer as i32)
            .collect();
        assert!(consumed.len() >= 2 && produced.len() >= 2, "{services:?}");
        for span in consumed.iter().chain(produced.iter()) {
            let a = &span.attributes;
            assert_eq!(
                a.get("messaging.system").map(String::as_str),
                Some("rabbitmq"),
                "{a:?}"
            );
            for key in [
                "messaging.destination.name",
                "messaging.rabbitmq.destination.routing_key",
                "messaging.message.id",
                "messaging.operation.type",
            ] {
                assert!(a.get(key).is_some_and(|v| !v.is_empty()), "{key} missing: {a:?}");
            }
        }
        // What followed the delivery belongs to the same trace.
        assert!(
            spans.iter().any(|s| s.trace_id == smtp.trace_id
                && s.kind == SpanKind::Producer as i32
                && s.attributes
                    .get("messaging.rabbitmq.destination.routing_key")
                    .map(String::as_str)
                    == Some(names::REMINDER_SENT)),
            "reminder.sent is not in the trace of its delivery"
        );
        // No address in the SMTP span.
        assert!(
            !smtp.attributes.values().any(|v| v.contains('@')),
            "{:?}",
            smtp.attributes
        );
    }
    // The pass that emitted them is a trace of its own, linked to each emission.
    let linked: BTreeSet<Vec<u8>> = spans
        .iter()
        .filter(|s| s.service == "relance-scheduler" && s.name == "scheduler pass")
        .flat_map(|s| {
            assert!(!traces.contains(&s.trace_id), "a pass shares a reminder's trace");
            s.links.iter().map(|(_, span_id)| span_id.clone())
        })
        .collect();
    assert!(
        emissions.is_subset(&linked),
        "the passes link to {} of the 3 emissions",
        emissions.intersection(&linked).count()
    );

    // Metrics over OTLP: the steps emitted, rendered and sent, the sender's deliveries and
    // their latency (the sender exports both ways).
    let got_metrics = wait_for("metrics over OTLP", DEADLINE, || {
        let collected = collected.clone();
        async move {
            let c = collected
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Cumulative sums, per process: the last point of each series counts, and the
            // processes add up (a step is counted by the relay that published it).
            let total = |service: Option<&str>, name: &str| -> f64 {
                let mut last: BTreeMap<(String, String), f64> = BTreeMap::new();
                for (s, n, value, labels) in &c.metrics {
                    if service.is_none_or(|service| s == service) && n == name {
                        last.insert((s.clone(), format!("{labels:?}")), *value);
                    }
                }
                last.values().sum()
            };
            Ok(total(None, "relance_steps_emitted_total") == 3.0
                && total(None, "relance_steps_rendered_total") == 3.0
                && total(None, "relance_steps_sent_total") == 3.0
                && total(Some("relance-sender"), "relance_deliveries_total") == 3.0
                && total(Some("relance-sender"), "relance_due_to_sent_seconds") == 3.0)
        }
    })
    .await;
    let metrics = collected
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .metrics
        .clone();
    let names_received: BTreeSet<(&str, &str)> = metrics
        .iter()
        .map(|(s, n, _, _)| (s.as_str(), n.as_str()))
        .collect();
    let mut relance_points: BTreeMap<String, f64> = BTreeMap::new();
    for (s, n, v, l) in &metrics {
        if n.starts_with("relance_steps_emitted")
            || n.starts_with("relance_steps_sent")
            || n.starts_with("relance_steps_rendered")
            || n.starts_with("relance_deliver")
            || n.starts_with("relance_due")
        {
            relance_points.insert(format!("{s} {n} {l:?}"), *v);
        }
    }
    assert!(
        got_metrics.is_ok(),
        "metrics received: {names_received:?}\npoints: {relance_points:#?}"
    );
    for (_, _, _, labels) in &metrics {
        assert!(
            !labels.values().any(|v| v.contains("F-T") || v.contains('@')),
            "{labels:?}"
        );
    }

    drop(processes);
    let _ = relance_messaging::delete_topology(&channel, &names).await;
    let _ = connection.close(200, "done".into()).await;
    db.close().await;
    let _ = relance_storage::drop_database(&database_url).await;
    mail.stop().await;
}
