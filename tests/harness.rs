//! Test harness: a whole relance (the four services, N copies each) in this process, on a
//! fresh database, a private set of exchanges and queues, and its own MailDev SMTP server,
//! all on a simulated clock. Everything is removed when the test stops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::{anyhow, Context};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Connection};
use relance_config::{Config, Settings};
use relance_contracts::names::Names;
use relance_contracts::EventV1;
use relance_domain::{SharedClock, SimulatedClock};
use relance_messaging::Publisher;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration as StdDuration;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

pub use relance::drive::wait_for;

#[path = "dovecot.rs"]
pub mod dovecot;
#[path = "private_postgres.rs"]
pub mod private_postgres;
#[path = "private_rabbitmq.rs"]
pub mod private_rabbitmq;
#[path = "sms_gateway.rs"]
pub mod sms_gateway;
#[path = "smtp_proxy.rs"]
pub mod smtp_proxy;

/// The queue type the harness declares (see `TestEnv::try_start_on`); a suite that runs
/// the `relance` CLI against a harness's namespace passes it on as `RELANCE_QUEUE_TYPE`.
pub const TEST_QUEUE_TYPE: &str = "classic";

/// What a run of the `relance` command printed, and whether it succeeded.
pub struct CliRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub const DEADLINE: StdDuration = StdDuration::from_secs(60);

/// How long [`TestEnv::stop`] waits for the services to finish their in-flight work.
const SHUTDOWN_GRACE: StdDuration = StdDuration::from_secs(30);

/// relance's email-only policy of before the channels (five emails a segment, in send windows):
/// the harness's default, so that suites about the pipeline do not depend on the SMS gateway,
/// the postal outbox or call tasks. A test passes its own `RELANCE_POLICY_FILE` to change it.
pub const POLICY_EMAIL_ONLY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/domain/src/testdata/policy_email_only.toml"
);

/// The policy relance ships with (what a service uses without `RELANCE_POLICY_FILE`).
pub const POLICY_SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/domain/policies/default.toml"
);

/// The email-only policy, parsed, for a test to compute what it expects.
pub fn email_only_policy() -> relance_domain::DunningPolicy {
    let source = std::fs::read_to_string(POLICY_EMAIL_ONLY).expect("reading the email-only policy");
    relance_domain::DunningPolicy::parse(&source, POLICY_EMAIL_ONLY).expect("a valid policy")
}

/// The `relance` binary of this build, for tests that run services or the CLI as separate
/// processes: `RELANCE_TEST_BINARY`, else `relance` in the target folder of the test.
pub fn relance_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("RELANCE_TEST_BINARY") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the test's path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the target folder")
        .join("relance");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin relance` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

pub fn server_url() -> String {
    std::env::var("RELANCE_TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn amqp_url() -> String {
    std::env::var("RELANCE_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A MailDev SMTP server of this test's own, read back through its HTTP API.
pub struct MailDev {
    child: Child,
    pub smtp_port: u16,
    web_port: u16,
    mail_dir: PathBuf,
    http: reqwest::Client,
}

/// An email as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Email {
    /// MailDev's id of the message (to fetch its attachments).
    pub id: String,
    pub subject: String,
    /// The `From` address(es) and the `Reply-To` header, as received.
    pub from: Vec<String>,
    pub reply_to: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub text: String,
    pub html: String,
    /// (file name, content type)
    pub attachments: Vec<(String, String)>,
    pub message_id: String,
    /// When the server received it (wall clock): the time MailDev finished writing the
    /// message's `.eml` file, i.e. when it answered the end of DATA. (MailDev's own `time`
    /// field is the message's `Date` header, relance's simulated clock: not this.)
    pub received_at: Option<DateTime<Utc>>,
    /// Its `Date` header: when relance sent it, on relance's (simulated) clock.
    pub date: Option<DateTime<Utc>>,
}

fn text_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn addresses(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|list| list.iter().map(|a| text_of(a, "address")).collect())
        .unwrap_or_default()
}

impl Email {
    fn from_maildev(v: &Value, mail_dir: &std::path::Path) -> Self {
        Self {
            id: text_of(v, "id"),
            subject: text_of(v, "subject"),
            from: addresses(v, "from"),
            reply_to: v
                .get("headers")
                .map(|h| text_of(h, "reply-to"))
                .unwrap_or_default(),
            to: addresses(v, "to"),
            cc: addresses(v, "cc"),
            text: text_of(v, "text"),
            html: text_of(v, "html"),
            attachments: v
                .get("attachments")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .map(|a| (text_of(a, "fileName"), text_of(a, "contentType")))
                        .collect()
                })
                .unwrap_or_default(),
            message_id: text_of(v, "messageId"),
            received_at: std::fs::metadata(mail_dir.join(format!("{}.eml", text_of(v, "id"))))
                .and_then(|m| m.modified())
                .ok()
                .map(DateTime::<Utc>::from),
            date: DateTime::parse_from_rfc3339(&text_of(v, "date"))
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

impl Email {
    pub fn recipients(&self) -> Vec<&str> {
        self.to.iter().map(String::as_str).collect()
    }
}

/// Whether a local TCP socket listens on `port` (Linux's `/proc/net/tcp`, state `0A`).
fn tcp_listening(port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&wanted) && fields[3] == "0A"
        })
    })
}

impl MailDev {
    /// Starts MailDev on two free ports. A port found free may be taken by another test before
    /// MailDev binds it: then MailDev exits, and it is started again on other ports.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// [`MailDev::start`] with more of MailDev's options (e.g. TLS and AUTH on its SMTP port).
    pub async fn start_with(options: &[&str]) -> anyhow::Result<Self> {
        let mut last_error = anyhow!("MailDev did not start");
        for _ in 0..3 {
            match Self::start_once(options).await {
                Ok(maildev) => return Ok(maildev),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    async fn start_once(options: &[&str]) -> anyhow::Result<Self> {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node_modules/maildev/bin/maildev");
        if !bin.exists() {
            return Err(anyhow!(
                "MailDev is not installed: run `npm ci` in tests/ (scripts/test.sh does it)"
            ));
        }
        let (smtp_port, web_port) = (free_port(), free_port());
        let mail_dir = std::env::temp_dir().join(format!(
            "relance-maildev-{smtp_port}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let child = Command::new("node")
            .arg(&bin)
            .args([
                "--ip",
                "127.0.0.1",
                "--smtp",
                &smtp_port.to_string(),
                "--web",
                &web_port.to_string(),
                "--silent",
                "--mail-directory",
            ])
            .arg(&mail_dir)
            .args(options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting MailDev")?;
        let mut maildev = Self {
            child,
            smtp_port,
            web_port,
            mail_dir,
            http: reqwest::Client::new(),
        };
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(30);
        loop {
            // MailDev in TLS mode dies of a connection closed before its handshake: ask the
            // kernel whether the port listens instead of connecting to it.
            let smtp_up = if options.contains(&"--incoming-secure") {
                tcp_listening(smtp_port)
            } else {
                tokio::net::TcpStream::connect(("127.0.0.1", smtp_port))
                    .await
                    .is_ok()
            };
            if smtp_up && maildev.fetch().await.is_ok() {
                return Ok(maildev);
            }
            let failure = match maildev.child.try_wait()? {
                Some(status) => Some(anyhow!(
                    "MailDev exited ({status}) on ports {smtp_port}/{web_port}"
                )),
                None if tokio::time::Instant::now() >= deadline => {
                    Some(anyhow!("MailDev did not answer within 30 s"))
                }
                None => None,
            };
            if let Some(failure) = failure {
                maildev.stop().await;
                return Err(failure);
            }
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        }
    }

    async fn fetch(&self) -> anyhow::Result<Vec<Email>> {
        let response = self
            .http
            .get(format!("http://127.0.0.1:{}/email", self.web_port))
            .send()
            .await?;
        let list: Vec<Value> = response.error_for_status()?.json().await?;
        // MailDev lists the newest last; keep arrival order.
        Ok(list
            .iter()
            .map(|v| Email::from_maildev(v, &self.mail_dir))
            .collect())
    }

    /// The content of an attachment of a received email.
    pub async fn attachment(&self, email: &Email, file_name: &str) -> Vec<u8> {
        let base = format!("http://127.0.0.1:{}/email/{}", self.web_port, email.id);
        let details: Value = self
            .http
            .get(&base)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("asking MailDev for the email")
            .json()
            .await
            .expect("MailDev's email as JSON");
        // MailDev serves an attachment under the name it stored it as.
        let stored = details["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["fileName"] == file_name)
            .and_then(|a| a["generatedFileName"].as_str())
            .unwrap_or(file_name)
            .to_string();
        let response = self
            .http
            .get(format!("{base}/attachment/{stored}"))
            .send()
            .await
            .expect("asking MailDev for the attachment");
        response
            .error_for_status()
            .expect("MailDev has the attachment")
            .bytes()
            .await
            .expect("reading the attachment")
            .to_vec()
    }

    /// Every email received so far.
    pub async fn emails(&self) -> Vec<Email> {
        self.fetch().await.expect("reading MailDev's inbox")
    }

    /// Waits until at least `n` emails arrived, and returns them all.
    pub async fn wait_for_emails(&self, n: usize) -> Vec<Email> {
        wait_for(&format!("{n} emails"), DEADLINE, || async {
            Ok(self.fetch().await?.len() >= n)
        })
        .await
        .expect("emails to arrive");
        self.emails().await
    }

    /// The message as the server received it (its `.eml` file): headers and all.
    pub fn raw(&self, email: &Email) -> String {
        std::fs::read_to_string(self.mail_dir.join(format!("{}.eml", email.id))).unwrap_or_default()
    }

    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.mail_dir);
    }
}

/// One relance, isolated.
pub struct TestEnv {
    pub db: PgPool,
    pub database_url: String,
    pub names: Names,
    pub clock: SimulatedClock,
    pub shared_clock: SharedClock,
    pub mail: MailDev,
    pub connection: Connection,
    pub publisher: Publisher,
    events_queue: String,
    /// The services follow the simulated time through the database (`RELANCE_CLOCK=database`).
    database_clock: bool,
    shutdown: CancellationToken,
    services: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Services held back at start (see [`TestEnv::try_start_holding`]), once started.
    late_services: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The services' configuration, to start held-back services with the same one.
    config: Config,
    stopped: bool,
}

/// 2026-03-02 06:00 UTC, a Monday.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0)
        .single()
        .expect("a valid time")
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid date")
}

impl TestEnv {
    /// Starts `copies` copies of each service.
    pub async fn start(copies: usize) -> Self {
        Self::try_start(copies, &[])
            .await
            .expect("starting the test environment")
    }

    pub async fn try_start(copies: usize, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        remove_stale_databases().await;
        Self::try_start_on(&server_url(), copies, extra_env).await
    }

    /// As [`TestEnv::try_start`], without the services named in `held` (e.g.
    /// `relance_sender::SERVICE`): their queues fill up until [`TestEnv::start_held`] starts
    /// them, so a test can act between two stages of the pipeline without racing it. While a
    /// stage is held, the pipeline never goes idle: wait on the journal, not on `set_time`.
    pub async fn try_start_holding(
        copies: usize,
        held: &[&str],
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        remove_stale_databases().await;
        Self::try_start_on_holding(&server_url(), copies, held, extra_env).await
    }

    /// Starts `copies` copies of each of these services (held back at start).
    pub fn start_held(&mut self, copies: usize, services: &[&'static str]) {
        let mut list = Vec::new();
        for _ in 0..copies {
            list.extend_from_slice(services);
        }
        self.late_services.push(tokio::spawn(relance::run_services_owned(
            list,
            self.config.clone(),
            self.shutdown.clone(),
        )));
    }

    /// As [`TestEnv::try_start`], on the PostgreSQL server at `server` (e.g. a private one).
    pub async fn try_start_on(
        server: &str,
        copies: usize,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::try_start_on_holding(server, copies, &[], extra_env).await
    }

    /// As [`TestEnv::try_start_on`], the services reading what may lag from
    /// `reads_server` (`RELANCE_READ_DATABASE_URL`: a streaming replica of `server`): starts
    /// them once the test database and its migrations have reached it.
    pub async fn try_start_with_reads_on(
        server: &str,
        reads_server: &str,
        copies: usize,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_on(server, Some(reads_server), copies, &[], extra_env).await
    }

    async fn try_start_on_holding(
        server: &str,
        copies: usize,
        held: &[&str],
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_on(server, None, copies, held, extra_env).await
    }

    async fn start_on(
        server: &str,
        reads_server: Option<&str>,
        copies: usize,
        held: &[&str],
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        // Spans need a tracer for trace context to travel in message headers, as in services.
        static TELEMETRY: std::sync::OnceLock<Option<relance_telemetry::TelemetryGuard>> =
            std::sync::OnceLock::new();
        TELEMETRY.get_or_init(|| relance_telemetry::init("relance-tests", None).ok());
        // The creation time in the name lets a later run remove what a crashed run left.
        let id = format!("{}_{}", Utc::now().timestamp(), uuid::Uuid::new_v4().simple());
        let database_url = format!("{server}/relance_test_{id}");
        relance_storage::migrate(&database_url).await?;
        let read_database_url = match reads_server {
            Some(reads_server) => {
                let url = format!("{reads_server}/relance_test_{id}");
                wait_for_replica(&database_url, &url).await?;
                Some(url)
            }
            None => None,
        };
        let mail = MailDev::start().await?;
        let mut vars: BTreeMap<String, String> = [
            ("DATABASE_URL", database_url.clone()),
            ("AMQP_URL", amqp_url()),
            ("SMTP_URL", format!("smtp://127.0.0.1:{}", mail.smtp_port)),
            ("RELANCE_NAMESPACE", format!("t-{}", id.replace('_', "-"))),
            ("RELANCE_SCHEDULER_INTERVAL_MS", "20".into()),
            ("RELANCE_HANDOFF_INTERVAL_MS", "20".into()),
            ("RELANCE_OUTBOX_INTERVAL_MS", "10".into()),
            ("RELANCE_RETRY_BASE_MS", "100".into()),
            ("RELANCE_MAX_RETRIES", "3".into()),
            ("RELANCE_DB_POOL_SIZE", "4".into()),
            ("RELANCE_QUEUE_EXPIRES_MS", "600000".into()),
            // Classic queues here, quorum (the default) in the suites that ask for it
            // (shared/messaging/tests/queue_types.rs, pipeline.rs, traces.rs): every test
            // declares some 80 queues and drops them minutes later, and on the machine's one
            // shared RabbitMQ 3.10 node that churn of short-lived quorum queues (one Raft
            // cluster each) stalled the whole broker for ~10 minutes, twice, on 2026-12-04.
            ("RELANCE_QUEUE_TYPE", TEST_QUEUE_TYPE.into()),
            ("RELANCE_CREDITOR_NAME", "Exemple SAS".into()),
            ("RELANCE_EXAMPLE_CREDITOR", "allow".into()),
            ("RELANCE_POLICY_FILE", POLICY_EMAIL_ONLY.into()),
            (
                "RELANCE_CREDITOR_IBAN",
                "FR76 3000 6000 0112 3456 7890 189".into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(url) = read_database_url {
            vars.insert("RELANCE_READ_DATABASE_URL".into(), url);
        }
        for (k, v) in extra_env {
            vars.insert(k.to_string(), v.to_string());
        }
        // Services may run as the restricted worker role, as in production.
        if let Some(user) = vars.remove("RELANCE_TEST_DB_USER") {
            let url = database_url.replacen("postgres@", &format!("{user}@"), 1);
            vars.insert("DATABASE_URL".into(), url);
        }
        let settings = Settings::from_vars(vars)?;
        let names = Names::new(&settings.namespace);
        let clock = SimulatedClock::starting_at(start_time());
        let shared_clock: SharedClock = Arc::new(clock.clone());
        let config = if settings.shared_clock {
            // As separate processes would: the services read the time from the database.
            let db = relance_storage::connect(&database_url, 2).await?;
            relance_storage::clock::set_shared_time(&db, start_time()).await?;
            let follower =
                relance_storage::clock::follow_shared_time(db, start_time(), StdDuration::from_millis(10))
                    .await?;
            Config::with_clock(settings.clone(), Arc::new(follower))?
        } else {
            Config::with_clock(settings.clone(), shared_clock.clone())?
        };
        let database_clock = settings.shared_clock;
        let connection = relance_messaging::connect(&settings.amqp_url, "tests").await?;
        let channel = connection.create_channel().await?;
        relance_messaging::declare_topology(
            &channel,
            &names,
            &relance_messaging::TopologyOptions::from_settings(&settings),
        )
        .await?;
        // A queue of our own on the events exchange, to follow what relance announces.
        let events_queue = format!("{}.test-events", settings.namespace);
        let mut args = FieldTable::default();
        args.insert(ShortString::from("x-expires"), AMQPValue::LongLongInt(600_000));
        channel
            .queue_declare(events_queue.as_str().into(), QueueDeclareOptions::default(), args)
            .await?;
        channel
            .queue_bind(
                events_queue.as_str().into(),
                names.events_exchange().as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let publisher = Publisher::open(&connection).await?;
        let db = relance_storage::connect(&database_url, 4).await?;
        let shutdown = CancellationToken::new();
        let mut list = Vec::new();
        for _ in 0..copies {
            list.extend(relance::SERVICES.iter().filter(|s| !held.contains(s)));
        }
        let services = tokio::spawn(relance::run_services_owned(
            list,
            config.clone(),
            shutdown.clone(),
        ));
        Ok(Self {
            db,
            database_url,
            names,
            clock,
            shared_clock,
            mail,
            connection,
            publisher,
            events_queue,
            database_clock,
            shutdown,
            services: Some(services),
            late_services: Vec::new(),
            config,
            stopped: false,
        })
    }

    /// Starts the collections console in-process on a free loopback port, with the services'
    /// configuration (and so their clock), requiring `token` when given; returns its base URL.
    /// It stops with the services.
    pub async fn start_console(&self, token: Option<&str>) -> anyhow::Result<String> {
        let token = token.map(str::to_string);
        self.start_console_with(|settings| settings.console_token = token)
            .await
    }

    /// Starts a console with its settings changed by `change` (e.g. its totals interval),
    /// and waits for its first totals snapshot (until then its first pages have no totals).
    pub async fn start_console_with(&self, change: impl FnOnce(&mut Settings)) -> anyhow::Result<String> {
        let mut config = self.config.clone();
        change(&mut config.settings);
        let token = config.settings.console_token.clone().filter(|t| !t.is_empty());
        let base = serve_console(config, &self.shutdown).await?;
        let url = format!("{base}/api/invoices?limit=1");
        let http = reqwest::Client::new();
        wait_for("the console's first totals snapshot", DEADLINE, || async {
            let mut request = http.get(&url);
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            let page: Value = request.send().await?.error_for_status()?.json().await?;
            Ok(!page["totals_as_of"].is_null())
        })
        .await?;
        Ok(base)
    }

    /// Starts a console with its settings changed by `change` and returns at once, without
    /// waiting for its first snapshot.
    pub async fn start_console_unready(&self, change: impl FnOnce(&mut Settings)) -> anyhow::Result<String> {
        let mut config = self.config.clone();
        change(&mut config.settings);
        serve_console(config, &self.shutdown).await
    }

    /// Starts the customer page (`relance run portal`) on a free port with the services'
    /// configuration changed by `change` (its secret, rate limit); returns its base URL.
    pub async fn start_portal_with(&self, change: impl FnOnce(&mut Settings)) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        self.start_portal_on(listener, change).await
    }

    /// As [`Self::start_portal_with`], on `listener` (bound before the services started, so
    /// that their `RELANCE_PORTAL_URL` can name it).
    pub async fn start_portal_on(
        &self,
        listener: tokio::net::TcpListener,
        change: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<String> {
        let mut config = self.config.clone();
        change(&mut config.settings);
        let (addr, server) = relance_portal::serve(listener, config, self.shutdown.clone()).await?;
        tokio::spawn(server);
        Ok(format!("http://{addr}"))
    }

    /// Starts a replies reader (`relance run replies`) in-process on the mailbox at `imap_url`
    /// (user `relance`, see `dovecot.rs`), reading it every 100 ms, with the services'
    /// configuration (and so their clock and policy). It stops with the services.
    pub fn start_replies(&self, imap_url: &str) {
        let mut config = self.config.clone();
        config.settings.imap_url = Some(imap_url.to_string());
        config.settings.imap_user = dovecot::USER.to_string();
        config.settings.imap_password = Some(dovecot::PASSWORD.to_string());
        config.settings.imap_interval = StdDuration::from_millis(100);
        tokio::spawn(relance_replies::run(config, self.shutdown.clone()));
    }

    /// Publishes on the inbound exchange, as an invoicing or banking system would.
    pub async fn publish(&self, routing_key: &str, body: &Value) {
        relance::drive::publish_inbound(&self.publisher, &self.names, routing_key, body)
            .await
            .expect("publishing");
    }

    /// Publishes raw bytes (for malformed messages).
    pub async fn publish_raw(&self, exchange: &str, routing_key: &str, body: &[u8]) {
        let channel = self.publisher.channel();
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publishing");
        confirm.await.expect("confirm");
    }

    /// Moves the simulated clock and waits until every step due by then is settled.
    pub async fn set_time(&self, to: DateTime<Utc>) {
        self.move_clock(to).await;
        self.idle().await;
    }

    /// Moves the simulated clock, without waiting for what falls due.
    pub async fn move_clock(&self, to: DateTime<Utc>) {
        self.clock.set(to);
        if self.database_clock {
            relance_storage::clock::set_shared_time(&self.db, to)
                .await
                .expect("setting the shared clock");
        }
    }

    /// Moves the clock to `day` at 06:00 UTC, then hour by hour to the end of that day.
    pub async fn run_until(&self, day: NaiveDate) {
        let mut t = self.clock.now_utc();
        let end = Utc.from_utc_datetime(&day.and_hms_opt(23, 0, 0).expect("a time"));
        while t < end {
            t = (t + Duration::hours(6)).min(end);
            self.set_time(t).await;
        }
    }

    pub async fn idle(&self) {
        relance::drive::wait_until_idle(&self.db, &self.shared_clock, DEADLINE)
            .await
            .expect("the pipeline to go idle");
    }

    /// The invoice's status in the collections overview, now.
    pub async fn collections_status(&self, invoice: &str) -> relance_domain::collections::CollectionStatus {
        relance_storage::overview::list(&self.db, relance_domain::Clock::now(&self.clock), None)
            .await
            .expect("reading the overview")
            .into_iter()
            .find(|i| i.number == invoice)
            .map(|i| i.status)
            .expect("the invoice in the overview")
    }

    /// Waits until the journal has `n` entries with this action for the invoice.
    pub async fn wait_journal(&self, invoice: &str, action: &str, n: i64) {
        wait_for(&format!("{n} {action} for {invoice}"), DEADLINE, || async {
            Ok(self.journal_count(invoice, action).await >= n)
        })
        .await
        .expect("journal entries");
    }

    /// The details of the invoice's journal entries with this action, oldest first.
    pub async fn journal_details(&self, invoice: &str, action: &str) -> Vec<Value> {
        sqlx::query_scalar("SELECT detail FROM journal WHERE invoice_number = $1 AND action = $2 ORDER BY id")
            .bind(invoice)
            .bind(action)
            .fetch_all(&self.db)
            .await
            .expect("reading journal entries")
    }

    pub async fn journal_count(&self, invoice: &str, action: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM journal WHERE invoice_number = $1 AND action = $2")
            .bind(invoice)
            .bind(action)
            .fetch_one(&self.db)
            .await
            .expect("counting journal entries")
    }

    /// (step name, status) of every step of an invoice, in plan order.
    pub async fn steps(&self, invoice: &str) -> Vec<(String, String)> {
        sqlx::query_as(
            "SELECT s.name, s.status FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
             WHERE i.number = $1 ORDER BY s.kind, s.position",
        )
        .bind(invoice)
        .fetch_all(&self.db)
        .await
        .expect("reading steps")
    }

    /// Messages on the dead-letter queue: (reason header, body).
    pub async fn dead_letters(&self) -> Vec<(String, Vec<u8>)> {
        self.drain(&self.names.dead_letter_queue())
            .await
            .into_iter()
            .map(|(headers, body)| {
                (
                    headers
                        .get(relance_contracts::names::HEADER_DEAD_LETTER_REASON)
                        // Dead-lettered by the broker (a quorum queue's delivery limit).
                        .or_else(|| headers.get("x-first-death-reason"))
                        .cloned()
                        .unwrap_or_default(),
                    body,
                )
            })
            .collect()
    }

    /// Runs the `relance` command against this environment (its database, broker namespace
    /// and queue type), as the accounts team would from a shell.
    pub async fn cli_output(&self, args: &[&str]) -> std::process::Output {
        self.cli_output_with(args, &[]).await
    }

    /// [`TestEnv::cli_output`] with these variables set besides.
    pub async fn cli_output_with(&self, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
        tokio::process::Command::new(relance_binary())
            .args(args)
            .env_clear()
            .env("DATABASE_URL", &self.database_url)
            .env("AMQP_URL", amqp_url())
            .env("RELANCE_NAMESPACE", &self.names.namespace)
            .env("RELANCE_QUEUE_TYPE", TEST_QUEUE_TYPE)
            .env("RELANCE_QUEUE_EXPIRES_MS", "600000")
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied())
            .output()
            .await
            .expect("running relance")
    }

    /// [`TestEnv::cli_output`], its output as text.
    pub async fn cli(&self, args: &[&str]) -> CliRun {
        let out = self.cli_output(args).await;
        CliRun {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Approves the waiting step as `by` would with `relance approvals approve ID --by BY`,
    /// waiting (30 s at most) for the payments listener to apply it.
    pub async fn approve_with_cli(&self, step_id: impl std::fmt::Display, by: &str) {
        let approve = self
            .cli(&[
                "approvals",
                "approve",
                &step_id.to_string(),
                "--by",
                by,
                "--wait",
                "30",
            ])
            .await;
        assert!(approve.ok, "{}", approve.stderr);
    }

    /// Polls the dead-letter queue until `n` messages were taken from it; returns their reasons.
    pub async fn wait_for_dead_letters(&self, n: usize) -> Vec<String> {
        let start = std::time::Instant::now();
        let mut reasons = Vec::new();
        loop {
            reasons.extend(self.dead_letters().await.into_iter().map(|(reason, _)| reason));
            if reasons.len() >= n {
                return reasons;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {n} dead letters, got {reasons:?}"
            );
            tokio::time::sleep(StdDuration::from_millis(25)).await;
        }
    }

    /// Events announced so far (and not read before).
    pub async fn events(&self) -> Vec<EventV1> {
        self.drain(&self.events_queue)
            .await
            .into_iter()
            .map(|(_, body)| serde_json::from_slice(&body).expect("an EventV1"))
            .collect()
    }

    /// The events announced so far and those that follow, until `done` holds for them all
    /// (the outbox relay publishes an event a moment after the commit that journals it).
    /// Reading takes them off the test's queue.
    pub async fn events_until(&self, what: &str, done: impl Fn(&[EventV1]) -> bool) -> Vec<EventV1> {
        let start = std::time::Instant::now();
        let mut seen = Vec::new();
        loop {
            seen.extend(self.events().await);
            if done(&seen) {
                return seen;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; events seen: {seen:?}"
            );
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        }
    }

    /// As [`TestEnv::events_until`]: until `n` events of type `event_type` were read.
    pub async fn events_until_count(&self, event_type: &str, n: usize) -> Vec<EventV1> {
        self.events_until(&format!("{n} {event_type}"), |events| {
            events.iter().filter(|e| e.event_type == event_type).count() >= n
        })
        .await
    }

    async fn drain(&self, queue: &str) -> Vec<(BTreeMap<String, String>, Vec<u8>)> {
        let channel = self.connection.create_channel().await.expect("a channel");
        let mut out = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            let headers = message
                .delivery
                .properties
                .headers()
                .as_ref()
                .map(|t| {
                    t.inner()
                        .iter()
                        .filter_map(|(k, v)| match v {
                            AMQPValue::LongString(s) => Some((
                                k.as_str().to_string(),
                                String::from_utf8_lossy(s.as_bytes()).into_owned(),
                            )),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((headers, message.delivery.data.clone()));
        }
        let _ = channel.close(200, "done".into()).await;
        out
    }

    /// Stops the services and removes the database, exchanges, queues and SMTP server.
    pub async fn stop(mut self) {
        self.stopped = true;
        self.shutdown.cancel();
        let late: Vec<_> = self.late_services.drain(..).collect();
        let outcome = match self.services.take() {
            // Bounded: a shutdown that hangs is reported, not allowed to hang the suite.
            Some(mut services) => match tokio::time::timeout(SHUTDOWN_GRACE, &mut services).await {
                Ok(joined) => joined,
                Err(_) => {
                    eprintln!("warning: the services did not stop within {SHUTDOWN_GRACE:?}; aborted");
                    services.abort();
                    Ok(Ok(()))
                }
            },
            None => Ok(Ok(())),
        };
        let mut late_outcomes = Vec::new();
        for mut services in late {
            late_outcomes.push(match tokio::time::timeout(SHUTDOWN_GRACE, &mut services).await {
                Ok(joined) => joined,
                Err(_) => {
                    eprintln!("warning: the held services did not stop within {SHUTDOWN_GRACE:?}; aborted");
                    services.abort();
                    Ok(Ok(()))
                }
            });
        }
        // The connection is gone when a test stopped its broker node (a private one, removed
        // with its queues); on the shared broker, the queues expire on their own.
        match self.connection.create_channel().await {
            Ok(channel) => {
                let _ = channel
                    .queue_delete(self.events_queue.as_str().into(), Default::default())
                    .await;
                let _ = relance_messaging::delete_topology(&channel, &self.names).await;
            }
            Err(e) => eprintln!("warning: the test's topology was not deleted: {e}"),
        }
        let _ = self.connection.close(200, "done".into()).await;
        self.db.close().await;
        drop_test_database(&self.database_url).await;
        self.mail.stop().await;
        outcome.expect("services task").expect("services stopped cleanly");
        for outcome in late_outcomes {
            outcome
                .expect("held services task")
                .expect("held services stopped cleanly");
        }
    }
}

/// Extension: the simulated clock's time.
trait Now {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl Now for SimulatedClock {
    fn now_utc(&self) -> DateTime<Utc> {
        relance_domain::Clock::now(self)
    }
}

/// An `invoice.issued` body; tweak the JSON for special cases.
pub fn invoice_issued(number: &str, amount: &str, issued_on: NaiveDate, due_on: NaiveDate) -> Value {
    json!({
        "version": 1,
        "event_id": format!("evt-invoice-{number}"),
        "occurred_at": "2026-03-01T10:00:00Z",
        "invoice": {
            "number": number,
            "customer": {
                "id": format!("C-{number}"),
                "name": "ACME Industrie SA",
                "contact_name": "Jeanne Martin",
                "email": format!("compta+{}@acme.test", number.to_lowercase()),
            },
            "amount": amount,
            "currency": "EUR",
            "issued_on": issued_on,
            "due_on": due_on,
        }
    })
}

pub fn payment_received(id: &str, invoice: &str, amount: &str, received_on: NaiveDate) -> Value {
    json!({
        "version": 1,
        "event_id": format!("evt-payment-{id}"),
        "occurred_at": "2026-03-01T10:00:00Z",
        "payment": { "id": id, "invoice_number": invoice, "amount": amount, "currency": "EUR", "received_on": received_on }
    })
}

impl Drop for TestEnv {
    /// A test that panicked still removes its database (queues expire on their own).
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.shutdown.cancel();
        let url = self.database_url.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                runtime.block_on(drop_test_database(&url));
            }
        })
        .join();
    }
}

/// Drops a test's database. Pools still open on it (the services of a test that ended
/// without `stop()`, a console or a process the test started) may reconnect between the
/// forced drop's termination of the sessions and the drop itself ("being accessed by other
/// users"): tried again for a few seconds, then left to the sweep of a later run with a
/// line on stderr.
async fn drop_test_database(url: &str) {
    let mut last = None;
    for _ in 0..30 {
        match relance_storage::drop_database(url).await {
            Ok(()) => return,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    if let Some(e) = last {
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("test database left behind ({url}): {e:#}\n"),
        );
    }
}

/// Drops test databases older than two hours that crashed runs left behind.
async fn remove_stale_databases() {
    let Ok(admin) = relance_storage::connect(&format!("{}/postgres", server_url()), 1).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'relance_test_%'")
            .fetch_all(&admin)
            .await
            .unwrap_or_default();
    let cutoff = Utc::now().timestamp() - 2 * 3600;
    for name in names {
        let created = name
            .trim_start_matches("relance_test_")
            .split('_')
            .next()
            .and_then(|t| t.parse::<i64>().ok());
        if created.is_none_or(|t| t < cutoff) {
            let _ = relance_storage::drop_database(&format!("{}/{name}", server_url())).await;
        }
    }
    admin.close().await;
}

/// The manifest lines of every dated folder of the postal outbox.
pub fn manifest_lines(letters: &std::path::Path) -> Vec<(PathBuf, Value)> {
    let Ok(days) = std::fs::read_dir(letters) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for day in days.flatten() {
        let manifest = day.path().join("manifest.jsonl");
        for line in std::fs::read_to_string(&manifest).unwrap_or_default().lines() {
            lines.push((day.path(), serde_json::from_str(line).unwrap()));
        }
    }
    lines
}

/// Text extraction may print spaces of any kind, or none, inside amounts.
pub fn squeeze(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Waits until the replica at `replica_url` has the database at `primary_url` with all its
/// migrations.
async fn wait_for_replica(primary_url: &str, replica_url: &str) -> anyhow::Result<()> {
    let migrations = |url: String| async move {
        let db = relance_storage::connect(&url, 1).await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(&db)
            .await?;
        db.close().await;
        anyhow::Ok(count)
    };
    let applied = migrations(primary_url.to_string()).await?;
    wait_for("the replica to have the test database", DEADLINE, || async {
        Ok(migrations(replica_url.to_string())
            .await
            .is_ok_and(|n| n == applied))
    })
    .await
}

/// The Prometheus exposition a service's health server (`RELANCE_HEALTH_ADDR`) serves.
pub async fn scrape_metrics(http: &reqwest::Client, addr: &str) -> String {
    http.get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("reaching /metrics")
        .text()
        .await
        .expect("reading /metrics")
}

/// Serves a console on a free port until `shutdown`; its base URL.
async fn serve_console(config: Config, shutdown: &CancellationToken) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (addr, server) = relance_console::serve(listener, config, shutdown.clone()).await?;
    tokio::spawn(server);
    Ok(format!("http://{addr}"))
}

/// A page with forms as a browser gets it: its status, the CSRF cookie it sets (`name=value`,
/// to send back; empty when it sets none), the token of its forms (empty when it has none)
/// and its HTML.
pub struct FormPage {
    pub status: u16,
    pub cookie: String,
    pub token: String,
    pub html: String,
}

/// Opens a page with forms (the console's, the customer page).
pub async fn open_form_page(client: &reqwest::Client, url: &str) -> FormPage {
    let page = client.get(url).send().await.unwrap();
    let status = page.status().as_u16();
    let cookie = page
        .headers()
        .get("set-cookie")
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
        .unwrap_or_default();
    let html = page.text().await.unwrap();
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string();
    FormPage {
        status,
        cookie,
        token,
        html,
    }
}
