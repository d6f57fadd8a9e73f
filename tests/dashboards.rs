//! The compose stack and its dashboards, checked without Docker or Grafana:
//!
//! - `compose.yaml` is valid against the Compose specification's JSON Schema
//!   (`deploy/compose-spec.json`), and runs what an operator expects (two renderers, two
//!   senders, healthchecks, a stop grace longer than the delivery timeouts, host ports that
//!   leave a local PostgreSQL or RabbitMQ alone, letters on a named volume);
//! - Prometheus' scrape configuration names every relance process of compose.yaml;
//! - every dashboard has the structure Grafana's file provisioning loads, and its queries
//!   name the provisioned datasources;
//! - every dashboard query returns data from a real Prometheus (Debian's `prometheus`
//!   package, installed by scripts/test.sh) scraping a running relance and a private RabbitMQ
//!   node with the Prometheus plugin, after a few invoices went through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use relance_contracts::names;
use relance_tests::private_rabbitmq::PrivateRabbitMq;
use relance_tests::smtp_proxy::SmtpFaultProxy;
use relance_tests::{date, invoice_issued, payment_received, MailDev, TestEnv, DEADLINE};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A YAML file as JSON, with its merge keys (`<<: *anchor`) applied as Compose applies them.
fn yaml(path: &str) -> Value {
    let mut value: serde_norway::Value =
        serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{path}: merge keys: {e}"));
    serde_json::to_value(value).unwrap_or_else(|e| panic!("{path} as JSON: {e}"))
}

fn compose_schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read("deploy/compose-spec.json")).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the Compose JSON Schema compiles")
}

fn schema_errors(validator: &jsonschema::Validator, compose: &Value) -> Vec<String> {
    validator
        .iter_errors(compose)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// compose.yaml's services.
fn services(compose: &Value) -> &serde_json::Map<String, Value> {
    compose["services"].as_object().expect("services")
}

/// The relance processes of compose.yaml: services built from the repository that `run`.
fn relance_services(compose: &Value) -> BTreeMap<String, Value> {
    services(compose)
        .iter()
        .filter(|(_, s)| s["image"] == "relance:local" && s["command"][0] == "run")
        .map(|(name, s)| (name.clone(), s.clone()))
        .collect()
}

/// `90s`, `1m30s` as seconds.
fn duration_seconds(text: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
        } else {
            let n: u64 = number.parse().unwrap_or_else(|_| panic!("duration {text}"));
            number.clear();
            total += match c {
                'h' => n * 3600,
                'm' => n * 60,
                's' => n,
                _ => panic!("unit {c} in {text}"),
            };
        }
    }
    assert!(number.is_empty(), "duration {text} ends without a unit");
    total
}

#[test]
fn compose_file_follows_the_compose_specification() {
    let validator = compose_schema();
    let compose = yaml("compose.yaml");
    let errors = schema_errors(&validator, &compose);
    assert!(
        errors.is_empty(),
        "compose.yaml against the Compose schema: {errors:#?}"
    );

    // The schema does reject what Compose would: an unknown key, a wrong type.
    let mut broken = compose.clone();
    broken["services"]["scheduler"]["helthcheck"] = serde_json::json!({"test": "true"});
    broken["services"]["postgres"]["ports"] = serde_json::json!(5432);
    assert_eq!(schema_errors(&validator, &broken).len(), 2, "{broken:#}");
}

#[test]
fn compose_runs_the_whole_stack_as_an_operator_expects() {
    let compose = yaml("compose.yaml");
    let all = services(&compose);
    for needed in [
        "postgres",
        "rabbitmq",
        "mailpit",
        "migrate",
        "otel-collector",
        "tempo",
        "prometheus",
        "grafana",
    ] {
        assert!(all.contains_key(needed), "compose.yaml runs {needed}");
    }
    let relance = relance_services(&compose);
    let count = |command: &str| relance.values().filter(|s| s["command"][1] == command).count();
    for (command, copies) in [
        ("scheduler", 1),
        ("payments", 2),
        ("renderer", 2),
        ("sender", 2),
        ("sender-sms", 1),
        ("sender-letter", 1),
    ] {
        assert_eq!(
            count(command),
            copies,
            "processes running `relance run {command}`"
        );
    }
    for (name, service) in &relance {
        // One process each: no replicas hiding copies from the scrape configuration.
        assert!(
            service.get("deploy").is_none(),
            "{name}: one process, no replicas"
        );
        let test = service["healthcheck"]["test"].to_string();
        assert!(
            test.contains("/health/ready"),
            "{name}'s healthcheck asks readiness: {test}"
        );
        let grace = duration_seconds(service["stop_grace_period"].as_str().unwrap_or("0s"));
        // Longer than the SMTP client's 60 s and the providers' 30 s timeouts.
        assert!(grace > 60, "{name}: stop_grace_period {grace}s");
        let env = &service["environment"];
        assert_eq!(env["RELANCE_HEALTH_ADDR"], "0.0.0.0:8080", "{name}");
        assert!(
            env["OTEL_EXPORTER_OTLP_ENDPOINT"]
                .as_str()
                .is_some_and(|e| e.contains("otel-collector")),
            "{name} sends its traces to the collector"
        );
    }
    // Letters on a named volume.
    let letters = relance["sender-letter"]["volumes"].to_string();
    assert!(letters.contains("letters:/app/out/letters"), "{letters}");
    assert!(compose["volumes"].get("letters").is_some());

    // Host ports: configurable, and not a local PostgreSQL's or RabbitMQ's.
    for (name, service) in all {
        for port in service["ports"].as_array().into_iter().flatten() {
            let port = port.as_str().expect("ports as \"host:container\" strings");
            let host = port.rsplit_once(':').expect("host:container").0;
            let default = host
                .strip_prefix("${")
                .and_then(|rest| rest.strip_suffix('}'))
                .and_then(|inner| inner.split_once(":-"))
                .map(|(_, default)| default)
                .unwrap_or_else(|| panic!("{name}: host port {host} is not ${{VAR:-default}}"));
            assert!(
                !["5432", "5672", "15672", "25672", "4369"].contains(&default),
                "{name}: host port {default} clashes with a local PostgreSQL or RabbitMQ"
            );
        }
    }
    // Every file mounted from the repository is there.
    for (name, service) in all {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if let Some(path) = source.strip_prefix("./") {
                assert!(repo().join(path).exists(), "{name} mounts {path}, missing");
            }
        }
    }
    // RabbitMQ with the management and Prometheus plugins, per-queue metrics.
    let plugins = read("deploy/rabbitmq/enabled_plugins");
    assert!(plugins.contains("rabbitmq_management") && plugins.contains("rabbitmq_prometheus"));
    assert!(read("deploy/rabbitmq/rabbitmq.conf").contains("prometheus.return_per_object_metrics = true"));
}

#[test]
fn prometheus_scrapes_every_relance_process_and_rabbitmq() {
    let compose = yaml("compose.yaml");
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    let targets: BTreeSet<String> = prometheus["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| job["static_configs"].as_array().cloned().unwrap_or_default())
        .flat_map(|config| config["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    for name in relance_services(&compose).keys() {
        assert!(
            targets.contains(&format!("{name}:8080")),
            "{name} is scraped: {targets:?}"
        );
    }
    assert!(targets.contains("rabbitmq:15692"), "{targets:?}");
    assert_eq!(targets.len(), relance_services(&compose).len() + 1, "{targets:?}");
}

/// The provisioned datasources' uids, by type.
fn datasources() -> BTreeMap<String, String> {
    let file = yaml("deploy/grafana/provisioning/datasources/datasources.yaml");
    file["datasources"]
        .as_array()
        .expect("datasources")
        .iter()
        .map(|d| {
            (
                d["uid"].as_str().expect("a uid").to_string(),
                d["type"].as_str().expect("a type").to_string(),
            )
        })
        .collect()
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = repo().join("deploy/grafana/dashboards");
    let mut list: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("deploy/grafana/dashboards")
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (name, json)
        })
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// (dashboard, panel title, expression) of every query.
fn expressions() -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    for (name, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                all.push((
                    name.clone(),
                    panel["title"].as_str().unwrap_or_default().to_string(),
                    target["expr"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    all
}

#[test]
fn dashboards_have_what_grafana_provisioning_loads() {
    let sources = datasources();
    assert_eq!(sources.get("prometheus").map(String::as_str), Some("prometheus"));
    assert_eq!(sources.get("tempo").map(String::as_str), Some("tempo"));
    // The provider reads the folder compose.yaml mounts the dashboards on.
    let provider = yaml("deploy/grafana/provisioning/dashboards/dashboards.yaml");
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let compose = yaml("compose.yaml");
    let mounts = compose["services"]["grafana"]["volumes"].to_string();
    assert!(
        mounts.contains(&format!("./deploy/grafana/dashboards:{path}")),
        "{mounts}"
    );

    let list = dashboards();
    let titles: BTreeSet<&str> = list.iter().map(|(_, d)| d["title"].as_str().unwrap()).collect();
    assert_eq!(
        titles,
        BTreeSet::from(["relance: Collections", "relance: Pipeline", "relance: Queues"])
    );
    let mut uids = BTreeSet::new();
    for (name, dashboard) in &list {
        assert!(
            uids.insert(dashboard["uid"].as_str().expect("a uid")),
            "{name}: uid taken"
        );
        assert!(
            dashboard["schemaVersion"].as_u64().is_some(),
            "{name}: schemaVersion"
        );
        let mut ids = BTreeSet::new();
        for panel in panels(dashboard) {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{name}: a panel without a title");
            assert!(
                ids.insert(panel["id"].as_u64().expect("a panel id")),
                "{name}: id of {title} taken"
            );
            let grid = &panel["gridPos"];
            for key in ["x", "y", "w", "h"] {
                assert!(grid[key].as_u64().is_some(), "{name}: {title}: gridPos.{key}");
            }
            assert!(
                grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
                "{name}: {title}"
            );
            let kind = panel["type"].as_str().expect("a panel type");
            match kind {
                "row" => continue,
                "text" => {
                    assert!(panel["options"]["content"]
                        .as_str()
                        .is_some_and(|c| !c.is_empty()));
                    continue;
                }
                _ => {}
            }
            let targets = panel["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: {title}: targets"));
            assert!(!targets.is_empty(), "{name}: {title}: no query");
            for target in std::iter::once(panel).chain(targets) {
                let uid = target["datasource"]["uid"].as_str().unwrap_or_default();
                assert_eq!(
                    sources.get(uid).map(String::as_str),
                    Some("prometheus"),
                    "{name}: {title}: datasource {uid}"
                );
            }
            for target in targets {
                assert!(target["refId"].as_str().is_some(), "{name}: {title}: refId");
                assert!(
                    target["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                    "{name}: {title}: expr"
                );
            }
            for link in panel["fieldConfig"]["defaults"]["links"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let uid = link["internal"]["datasourceUid"].as_str().unwrap_or_default();
                assert!(sources.contains_key(uid), "{name}: {title}: link to {uid}");
            }
        }
    }
    // From a latency outlier to its traces.
    let (_, pipeline) = list.iter().find(|(n, _)| n == "pipeline.json").unwrap();
    let linked = panels(pipeline).into_iter().any(|p| {
        p["targets"]
            .to_string()
            .contains("relance_due_to_sent_seconds_bucket")
            && p["fieldConfig"]["defaults"]["links"][0]["internal"]["datasourceUid"] == "tempo"
    });
    assert!(linked, "the due-to-sent latency panel links to Tempo");
}

/// Grafana's variables replaced by what Grafana would put there at a 1 s scrape interval.
fn concrete(expr: &str) -> String {
    let done = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "5s")
        .replace("$__range", "5m");
    assert!(!done.contains('$'), "an unknown Grafana variable in {expr}");
    done
}

/// Debian's `prometheus` (scripts/test.sh installs it), or `RELANCE_TEST_PROMETHEUS`.
fn prometheus_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RELANCE_TEST_PROMETHEUS") {
        return PathBuf::from(path);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v prometheus"])
        .output()
        .expect("running sh");
    let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
    assert!(
        found.status.success() && !path.is_empty(),
        "the prometheus binary is not installed: `apt-get install prometheus` (scripts/test.sh does), \
         or set RELANCE_TEST_PROMETHEUS to its path"
    );
    PathBuf::from(path)
}

#[test]
fn promtool_accepts_the_stacks_prometheus_configuration() {
    let promtool = prometheus_binary().with_file_name("promtool");
    let output = Command::new(&promtool)
        .args(["check", "config", "--syntax-only"])
        .arg(repo().join("deploy/prometheus/prometheus.yml"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", promtool.display()));
    assert!(
        output.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_relance_metric_of_the_dashboards_is_documented() {
    let operations = read("docs/operations.md");
    for (dashboard, panel, expr) in expressions() {
        for name in metric_names(&concrete(&expr)) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            if name.starts_with("relance_") || name.starts_with("process_") {
                assert!(
                    operations.contains(&format!("`{base}`")),
                    "{dashboard}: {panel}: {name} is not in docs/operations.md"
                );
            }
        }
    }
}

/// A Prometheus server of the test's own, on a free port, with its data in a temporary
/// folder; killed (by its own process) and the folder removed on drop.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Prometheus {
    fn start(relance: &str, rabbitmq: &str) -> Self {
        let binary = prometheus_binary();
        let dir = std::env::temp_dir().join(format!("relance-prometheus-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: relance\n    static_configs:\n      - targets: [\"{relance}\"]\n\
             \x20 - job_name: rabbitmq\n    static_configs:\n      - targets: [\"{rabbitmq}\"]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = relance_tests::free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Self {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `/api/v1/query` at now: the result vector, or Prometheus' error.
    async fn query(&self, http: &reqwest::Client, expr: &str) -> Result<Vec<Value>, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/query", self.url), &[("query", expr)])
            .map_err(|e| format!("{expr}: {e}"))?;
        let answer = http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("asking Prometheus: {e}"))?;
        let body: Value = answer
            .json()
            .await
            .map_err(|e| format!("Prometheus' answer: {e}"))?;
        if body["status"] != "success" {
            return Err(format!("{expr}: {body}"));
        }
        Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Polls `expr` until it returns at least one series, or gives up after `deadline`.
    async fn data(
        &self,
        http: &reqwest::Client,
        expr: &str,
        deadline: Duration,
    ) -> Result<Vec<Value>, String> {
        let start = Instant::now();
        loop {
            match self.query(http, expr).await {
                Ok(result) if !result.is_empty() => return Ok(result),
                Ok(_) if start.elapsed() > deadline => return Err("no data".into()),
                Err(e) if start.elapsed() > deadline => return Err(e),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// The metric names Prometheus holds.
    async fn names(&self, http: &reqwest::Client) -> BTreeSet<String> {
        let body: Value = http
            .get(format!("{}/api/v1/label/__name__/values", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The metric names an expression refers to: words before `{`, `[` or `)` and not a
/// PromQL function or keyword.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    let mut previous = String::new();
    // Inside `{...}` (matchers), `"..."` or the label list of `by (...)`/`without (...)`.
    let (mut in_braces, mut in_quotes, mut in_grouping) = (false, false, false);
    for c in expr.chars().chain(std::iter::once(' ')) {
        if in_quotes {
            in_quotes = c != '"';
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            let is_name = !in_braces
                && !in_grouping
                && c != '('
                && word.contains('_')
                && !word.starts_with(|d: char| d.is_ascii_digit());
            if is_name {
                names.insert(word.clone());
            }
            previous = std::mem::take(&mut word);
        }
        match c {
            '{' => in_braces = true,
            '}' => in_braces = false,
            '"' => in_quotes = true,
            '(' if previous == "by" || previous == "without" => in_grouping = true,
            ')' => in_grouping = false,
            _ => {}
        }
        if !c.is_whitespace() {
            previous.clear();
        }
    }
    names
}

#[test]
fn metric_names_are_found_in_an_expression() {
    let expr = "histogram_quantile(0.99, sum by (channel, le) (rate(relance_due_to_sent_seconds_bucket{queue=\"a_b\"}[1m]))) / max without (reason_class) (process_cpu_seconds_total)";
    assert_eq!(
        metric_names(expr),
        BTreeSet::from([
            "relance_due_to_sent_seconds_bucket".to_string(),
            "process_cpu_seconds_total".to_string()
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    // Fails at once, naming the package, when Prometheus is not installed.
    prometheus_binary();
    let rabbitmq = tokio::task::spawn_blocking(PrivateRabbitMq::start_with_prometheus)
        .await
        .unwrap()
        .expect("a private RabbitMQ node with the Prometheus plugin");
    let rabbitmq_metrics = format!("127.0.0.1:{}", rabbitmq.prometheus_port.unwrap());
    let health = format!("127.0.0.1:{}", relance_tests::free_port());
    // The SMTP server refuses one customer's mailbox for good: that step fails.
    let mut mail = MailDev::start().await.unwrap();
    let proxy = SmtpFaultProxy::start(mail.smtp_port).await.unwrap();
    proxy.refuse_recipients(["compta+f-d3@acme.test".to_string()]);
    let smtp = format!("smtp://127.0.0.1:{}", proxy.port);
    let env = TestEnv::try_start(
        1,
        &[
            ("RELANCE_HEALTH_ADDR", &health),
            ("RELANCE_METRICS_INTERVAL_MS", "100"),
            ("AMQP_URL", &rabbitmq.url()),
            ("SMTP_URL", &smtp),
        ],
    )
    .await
    .expect("starting relance on the private broker");
    let prometheus = Prometheus::start(&health, &rabbitmq_metrics);
    let http = reqwest::Client::new();

    // Three invoices due on 16 March (F-D3's pre-due note refused by the server: failed), one
    // already overdue when it arrives (its earlier steps are skipped), a malformed message
    // (dead-lettered at once) and a payment for an unknown invoice (retried, then
    // dead-lettered).
    for number in ["F-D1", "F-D2", "F-D3"] {
        let invoice = invoice_issued(number, "1200.00", date(2026, 3, 2), date(2026, 3, 16));
        env.publish(names::INVOICE_ISSUED, &invoice).await;
        env.wait_journal(number, names::INVOICE_REGISTERED, 1).await;
    }
    let late = invoice_issued("F-D4", "300.00", date(2026, 1, 5), date(2026, 2, 4));
    env.publish(names::INVOICE_ISSUED, &late).await;
    env.wait_journal("F-D4", names::INVOICE_REGISTERED, 1).await;
    env.publish_raw(&env.names.inbound_exchange(), names::INVOICE_ISSUED, b"not json")
        .await;
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("P-NOPE", "F-NOPE", "10.00", date(2026, 3, 2)),
    )
    .await;
    env.wait_for_dead_letters(2).await;
    env.run_until(date(2026, 3, 11)).await;
    env.publish(
        names::PAYMENT_RECEIVED,
        &payment_received("P-D1", "F-D1", "1200.00", date(2026, 3, 12)),
    )
    .await;
    env.wait_journal("F-D1", names::INVOICE_SETTLED, 1).await;
    env.run_until(date(2026, 3, 12)).await;
    let sent: i64 =
        sqlx::query_scalar("SELECT count(*) FROM journal WHERE action IN ('reminder.sent', 'thanks.sent')")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert!(sent >= 3, "two pre-due notes and a thank-you at least, {sent}");
    env.wait_journal("F-D3", names::REMINDER_FAILED, 1).await;

    // Prometheus has scraped the last of it.
    let caught_up = prometheus
        .data(
            &http,
            &format!("sum(relance_steps_sent_total) == {sent}"),
            DEADLINE,
        )
        .await;
    assert!(
        caught_up.is_ok(),
        "Prometheus never saw {sent} sends: {}",
        prometheus.log()
    );

    let known = prometheus.names(&http).await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for (dashboard, panel, expr) in expressions() {
        let expr = concrete(&expr);
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{dashboard}: {panel}: no metric in {expr}");
        checked += 1;
        // Rates need two scrapes of a series; a series seen once gets them within seconds.
        match prometheus.data(&http, &expr, Duration::from_secs(20)).await {
            Ok(_) => {}
            Err(e) => {
                let unknown: Vec<&String> = names.iter().filter(|n| !known.contains(*n)).collect();
                failures.push(format!(
                    "{dashboard}: {panel}: {expr}: {e}; unknown metrics: {unknown:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 30, "only {checked} queries checked");
    // Two invoices still owed in EUR: a DSO of some days; F-D1 was paid the day after its
    // pre-due note: some step has a share paid within 7 days above 0.
    for expr in [
        "relance_dso_days{currency=\"EUR\"} > 0",
        "relance_step_paid_within_days_ratio{within=\"7\"} > 0",
    ] {
        let seen = prometheus.data(&http, expr, Duration::from_secs(20)).await;
        assert!(seen.is_ok(), "{expr}: {seen:?}");
    }
    drop(prometheus);
    env.stop().await;
    mail.stop().await;
    drop(rabbitmq);
}
