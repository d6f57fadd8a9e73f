//! The fault suite: the four services as separate processes (two copies each) over a ledger
//! of 1,000 invoices on a shared simulated clock, while the test kills processes with SIGKILL
//! at random points and restarts them, restarts RabbitMQ (a private node of its own, never the
//! machine's shared broker), delivers payments while reminders are in flight, stops every
//! payments process for a while and publishes payments meanwhile, makes the SMTP server answer
//! 4xx for a while and then 5xx for some recipients, and publishes duplicated, reordered and
//! malformed messages. At the end it checks, from the SMTP server's inbox and the database,
//! that nothing was lost, nothing sent twice and nothing sent after a payment was recorded,
//! and prints a summary table.
//!
//! Every random choice derives from one seed, `RELANCE_FAULT_SEED` (printed at start, random
//! by default), so that a failing run's choices can be replayed. Knobs for a lighter run:
//! `RELANCE_FAULT_INVOICES` (1000), `RELANCE_FAULT_DAYS` (42 simulated days from 2 March; the
//! faults dated after the last day are left out), `RELANCE_FAULT_PAYMENTS_OUTAGE_MS` (5000),
//! `RELANCE_FAULT_SMTP_4XX_MS` (0: the 4xx period lasts at least this long, and at least 20
//! answers). `RELANCE_FAULTS_NO_BROKER_RESTART=1` runs on the broker at
//! `RELANCE_TEST_AMQP_URL` without restarting it, for a machine without RabbitMQ's server
//! scripts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use relance_contracts::names::{self, Names};
use relance_domain::{SharedClock, SimulatedClock};
use relance_messaging::Publisher;
use relance_tests::private_rabbitmq::PrivateRabbitMq;
use relance_tests::relance_binary;
use relance_tests::smtp_proxy::SmtpFaultProxy;
use relance_tests::{
    amqp_url, date, free_port, invoice_issued, payment_received, server_url, wait_for, MailDev,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};
use tokio::process::{Child, Command};

const SERVICES: [&str; 4] = ["scheduler", "renderer", "sender", "payments"];
const COPIES: usize = 2;
const DEADLINE: StdDuration = StdDuration::from_secs(120);
/// The day every payments process is stopped (a Tuesday: reminders go out that morning).
const PAYMENTS_OUTAGE_DAY: (i32, u32, u32) = (2026, 3, 24);
/// At most this many invoices are paid during the payments outage.
const PAYMENTS_DURING_OUTAGE: usize = 25;
/// The day the SMTP server is slow to answer DATA while every database session of relance is
/// cut, and the invoices whose reminders are then going out are paid (issue 12's scenario).
const SLOW_DATA_DAY: (i32, u32, u32) = (2026, 3, 10);

/// The suite's size and its seed, from the environment.
struct Knobs {
    seed: u64,
    invoices: usize,
    last_day: NaiveDate,
    payments_outage: StdDuration,
    smtp_4xx_at_least: StdDuration,
    restart_broker: bool,
}

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

impl Knobs {
    fn from_env() -> Self {
        let days: i64 = knob("RELANCE_FAULT_DAYS", 42);
        assert!(days >= 1, "RELANCE_FAULT_DAYS must be at least 1");
        Self {
            seed: knob("RELANCE_FAULT_SEED", rand::rng().random()),
            invoices: knob("RELANCE_FAULT_INVOICES", 1000),
            last_day: date(2026, 3, 2) + Duration::days(days - 1),
            payments_outage: StdDuration::from_millis(knob("RELANCE_FAULT_PAYMENTS_OUTAGE_MS", 5000)),
            smtp_4xx_at_least: StdDuration::from_millis(knob("RELANCE_FAULT_SMTP_4XX_MS", 0)),
            restart_broker: std::env::var_os("RELANCE_FAULTS_NO_BROKER_RESTART").is_none(),
        }
    }
}

struct Fleet {
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    processes: Vec<(&'static str, Child)>,
    kills: BTreeMap<&'static str, usize>,
    spawned: usize,
}

impl Fleet {
    fn spawn(&mut self, service: &'static str) -> Child {
        self.spawned += 1;
        let log = std::fs::File::create(self.log_dir.join(format!("{service}-{}.log", self.spawned)))
            .expect("a log file");
        Command::new(relance_binary())
            .args(["run", service])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting a service process")
    }

    fn start(&mut self) {
        for _ in 0..COPIES {
            for service in SERVICES {
                self.start_copy(service);
            }
        }
    }

    fn start_copy(&mut self, service: &'static str) {
        let child = self.spawn(service);
        self.processes.push((service, child));
    }

    /// SIGKILL one process chosen by `rng`, then start a new copy of its service.
    async fn kill_one(&mut self, rng: &mut StdRng) {
        let i = rng.random_range(0..self.processes.len());
        let (service, mut child) = self.processes.swap_remove(i);
        child.kill().await.expect("killing a service"); // SIGKILL
        *self.kills.entry(service).or_default() += 1;
        self.start_copy(service);
    }

    /// SIGKILL every process of `service`, without starting new ones; returns how many.
    async fn kill_all(&mut self, service: &str) -> usize {
        let mut killed = 0;
        let mut kept = Vec::new();
        for (name, mut child) in std::mem::take(&mut self.processes) {
            if name == service {
                child.kill().await.expect("killing a service");
                killed += 1;
            } else {
                kept.push((name, child));
            }
        }
        self.processes = kept;
        killed
    }

    async fn stop(&mut self) {
        for (_, child) in &mut self.processes {
            let _ = child.kill().await;
        }
    }
}

/// Whether the probe process's `/health/ready` answers 200.
async fn is_ready(http: &reqwest::Client, port: u16) -> bool {
    http.get(format!("http://127.0.0.1:{port}/health/ready"))
        .timeout(StdDuration::from_secs(5))
        .send()
        .await
        .is_ok_and(|r| r.status().as_u16() == 200)
}

async fn wait_readiness(http: &reqwest::Client, port: u16, want: bool) {
    wait_for(&format!("the probe to say ready={want}"), DEADLINE, || async {
        Ok(is_ready(http, port).await == want)
    })
    .await
    .unwrap();
}

/// An outside system's connection to the broker, reconnecting while the broker restarts.
struct Outside {
    url: String,
    connection: lapin::Connection,
    publisher: Publisher,
}

impl Outside {
    async fn connect(url: &str) -> Self {
        let connection = relance_messaging::connect(url, "faults").await.unwrap();
        let publisher = Publisher::open(&connection).await.unwrap();
        Self {
            url: url.to_string(),
            connection,
            publisher,
        }
    }

    /// Publishes and returns once the broker has confirmed the message.
    async fn publish(&mut self, names: &Names, routing_key: &str, body: &[u8]) {
        let start = Instant::now();
        loop {
            let props = relance_messaging::properties("", "", routing_key, Utc::now(), &BTreeMap::new());
            match self
                .publisher
                .publish(&names.inbound_exchange(), routing_key, body, props, false)
                .await
            {
                Ok(()) => return,
                Err(e) => {
                    assert!(start.elapsed() < DEADLINE, "publishing failed: {e:#}");
                    // Pace the reconnection attempts while the broker comes back.
                    tokio::time::sleep(StdDuration::from_millis(200)).await;
                    if let Ok(fresh) = relance_messaging::connect(&self.url, "faults").await {
                        if let Ok(p) = Publisher::open(&fresh).await {
                            self.publisher = p;
                            self.connection = fresh;
                        }
                    }
                }
            }
        }
    }
}

fn payment_body(number: &str, day: NaiveDate) -> Vec<u8> {
    serde_json::to_vec(&payment_received(&format!("P-{number}"), number, "300.00", day)).unwrap()
}

/// The `q` quantile (0..=1) of `values` by nearest rank, or zero when there is none.
fn quantile(values: &[StdDuration], q: f64) -> StdDuration {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return StdDuration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn seconds(d: StdDuration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_nothing_twice_nothing_after_payment_under_faults() {
    let knobs = Knobs::from_env();
    let seed = knobs.seed;
    let _ = writeln!(
        std::io::stderr(),
        "relance fault suite: seed {seed} (replay with RELANCE_FAULT_SEED={seed})"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let invoices = knobs.invoices;
    // The broker the services use: a private node, restarted by the suite, or (with
    // RELANCE_FAULTS_NO_BROKER_RESTART) the test broker, left alone.
    let broker = knobs.restart_broker.then(|| {
        PrivateRabbitMq::start().expect("a private RabbitMQ node (or set RELANCE_FAULTS_NO_BROKER_RESTART=1)")
    });
    let broker_url = broker.as_ref().map_or_else(amqp_url, PrivateRabbitMq::url);

    let id = format!("{}_{}", Utc::now().timestamp(), uuid::Uuid::new_v4().simple());
    let database_url = format!("{}/relance_test_{id}", server_url());
    relance_storage::migrate(&database_url).await.unwrap();
    let db = relance_storage::connect(&database_url, 4).await.unwrap();
    let mut mail = MailDev::start().await.unwrap();
    // The SMTP server as the senders see it: MailDev behind a proxy that can refuse.
    let smtp = SmtpFaultProxy::start(mail.smtp_port).await.unwrap();
    let namespace = format!("t-{}", id.replace('_', "-"));
    let names = Names::new(&namespace);
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0).single().unwrap();
    relance_storage::clock::set_shared_time(&db, start).await.unwrap();
    let clock = SimulatedClock::starting_at(start);
    let shared: SharedClock = Arc::new(clock.clone());

    let mut outside = Outside::connect(&broker_url).await;
    let channel = outside.connection.create_channel().await.unwrap();
    let topology = relance_messaging::TopologyOptions {
        queue_expires: Some(StdDuration::from_secs(900)),
        ..Default::default()
    };
    relance_messaging::declare_topology(&channel, &names, &topology)
        .await
        .unwrap();

    let log_dir = std::env::temp_dir().join(format!("relance-faults-{id}"));
    std::fs::create_dir_all(&log_dir).unwrap();
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", database_url.clone()),
        ("AMQP_URL", broker_url.clone()),
        ("SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.port)),
        ("RELANCE_NAMESPACE", namespace.clone()),
        ("RELANCE_CLOCK", "database".into()),
        ("RELANCE_CLOCK_START", start.to_rfc3339()),
        ("RELANCE_SCHEDULER_INTERVAL_MS", "50".into()),
        ("RELANCE_OUTBOX_INTERVAL_MS", "20".into()),
        ("RELANCE_RETRY_BASE_MS", "300".into()),
        ("RELANCE_MAX_RETRIES", "7".into()),
        ("RELANCE_LEASE_MS", "3000".into()),
        ("RELANCE_DB_POOL_SIZE", "3".into()),
        ("RELANCE_QUEUE_EXPIRES_MS", "900000".into()),
        ("RELANCE_POLICY_FILE", relance_tests::POLICY_EMAIL_ONLY.into()),
        ("RELANCE_EXAMPLE_CREDITOR", "allow".into()),
        ("RUST_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut fleet = Fleet {
        env,
        log_dir: log_dir.clone(),
        processes: Vec::new(),
        kills: BTreeMap::new(),
        spawned: 0,
    };
    fleet.start();
    // One more process, never killed, whose readiness is watched through the broker restart
    // (a renderer: every payments process is stopped during the payments outage).
    let health_port = free_port();
    let mut probe = Command::new(relance_binary())
        .args(["run", "renderer"])
        .envs(fleet.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RELANCE_HEALTH_ADDR", format!("127.0.0.1:{health_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log_dir.join("probe.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    wait_readiness(&http, health_port, true).await;

    // The ledger: due dates over three weeks; a third paid after the first reminder, a
    // seventh paid the very hour a reminder falls due; ten invoices whose payment arrives first.
    let mut payments: BTreeMap<NaiveDate, Vec<(String, bool)>> = BTreeMap::new(); // day -> (invoice, at send time)
    let mut published_messages = 0usize;
    for i in 0..invoices {
        let number = format!("L-{i:04}");
        let due = date(2026, 3, 8) + Duration::days((i % 20) as i64);
        let body = serde_json::to_vec(&invoice_issued(&number, "300.00", date(2026, 3, 1), due)).unwrap();
        outside.publish(&names, names::INVOICE_ISSUED, &body).await;
        published_messages += 1;
        if i % 3 == 0 {
            payments
                .entry(due + Duration::days(6))
                .or_default()
                .push((number, false));
        } else if i % 7 == 0 {
            payments
                .entry(due + Duration::days(5))
                .or_default()
                .push((number, true));
        }
    }
    let paid_otherwise: BTreeSet<String> = payments.values().flatten().map(|(n, _)| n.clone()).collect();
    let late_invoices: Vec<String> = (0..10).map(|i| format!("R-{i:02}")).collect();
    let mut late_published = false;
    let mut malformed = 0usize;
    let mut broker_restarts = 0usize;
    let mut broker_down = StdDuration::ZERO;
    let mut smtp_4xx_window = StdDuration::ZERO;
    let mut duplicates = 0usize;
    let mut rng_kills = 0usize;
    let mut not_ready_during_restart = false;
    // Recipients whose mailbox the SMTP server says does not exist, from 20 March on.
    let refused_recipients: BTreeSet<String> = (0..invoices)
        .filter(|i| i % 50 == 1)
        .map(|i| format!("compta+l-{i:04}@acme.test"))
        .collect();
    let mut refusing_since: Option<DateTime<Utc>> = None;
    // The payments outage: (invoice, when the broker confirmed its payment).
    let outage_day = date(
        PAYMENTS_OUTAGE_DAY.0,
        PAYMENTS_OUTAGE_DAY.1,
        PAYMENTS_OUTAGE_DAY.2,
    );
    let mut paid_during_outage: Vec<(String, DateTime<Utc>)> = Vec::new();
    let slow_data_day = date(SLOW_DATA_DAY.0, SLOW_DATA_DAY.1, SLOW_DATA_DAY.2);
    // Deliveries held at DATA, sessions cut, and the invoices paid meanwhile.
    let mut slow_data_held = 0usize;
    let mut slow_data_sessions_cut = 0i64;
    let mut paid_during_slow_data: Vec<String> = Vec::new();
    let mut payments_down = StdDuration::ZERO;
    let mut payments_outage_kills = 0usize;

    let mut day = date(2026, 3, 2);
    while day <= knobs.last_day {
        let morning = Utc.from_utc_datetime(&day.and_hms_opt(6, 0, 0).unwrap());
        // Reordered: payments for the R- invoices on 5 March, the invoices a few hours later.
        if day == date(2026, 3, 5) {
            late_published = true;
            for number in &late_invoices {
                outside
                    .publish(&names, names::PAYMENT_RECEIVED, &payment_body(number, day))
                    .await;
                published_messages += 1;
            }
        }
        for hour in [0, 2, 3, 6, 12, 17] {
            let now = morning + Duration::hours(hour);
            let outage_now = hour == 2 && day == outage_day;
            let mut outage_started = None;
            if outage_now {
                // Every payments process stops just before 09:00 in Paris, when reminders
                // fall due; the invoices with a reminder due then are paid meanwhile (their
                // payments confirmed by the broker before the reminders fall due).
                payments_outage_kills = fleet.kill_all("payments").await;
                outage_started = Some(Instant::now());
                let due: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT i.number FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
                     WHERE s.kind = 'reminder' AND s.status IN ('pending', 'queued', 'rendered') AND s.due_at <= $1
                       AND i.status = 'open' ORDER BY i.number",
                )
                .bind(now)
                .fetch_all(&db)
                .await
                .unwrap();
                let chosen = due
                    .into_iter()
                    .filter(|n| !paid_otherwise.contains(n))
                    .filter(|n| {
                        !refused_recipients.contains(&format!("compta+{}@acme.test", n.to_lowercase()))
                    })
                    .take(PAYMENTS_DURING_OUTAGE);
                for number in chosen {
                    outside
                        .publish(&names, names::PAYMENT_RECEIVED, &payment_body(&number, day))
                        .await;
                    paid_during_outage.push((number, Utc::now()));
                    published_messages += 1;
                }
            }
            let slow_data_now = hour == 3 && day == slow_data_day;
            if slow_data_now {
                smtp.hold_data(true);
            }
            clock.set(now);
            relance_storage::clock::set_shared_time(&db, now).await.unwrap();
            if slow_data_now {
                // The server holds its answer to DATA; with deliveries waiting on it, every
                // database session of relance is cut, and their invoices are paid.
                let held = wait_for("deliveries held at DATA", DEADLINE, || async {
                    Ok(smtp.held() >= 1)
                })
                .await;
                slow_data_held = smtp.held();
                if held.is_ok() {
                    let going_out: Vec<String> = sqlx::query_scalar(
                        "SELECT DISTINCT i.number FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
                         WHERE s.kind = 'reminder' AND s.status = 'sending' AND i.status = 'open' ORDER BY i.number",
                    )
                    .fetch_all(&db)
                    .await
                    .unwrap();
                    slow_data_sessions_cut = sqlx::query_scalar(
                        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE datname = current_database() AND pid <> pg_backend_pid()) cut",
                    )
                    .fetch_one(&db)
                    .await
                    .unwrap();
                    let chosen: Vec<String> = going_out
                        .into_iter()
                        .filter(|n| !paid_otherwise.contains(n))
                        .filter(|n| {
                            !refused_recipients.contains(&format!("compta+{}@acme.test", n.to_lowercase()))
                        })
                        .collect();
                    for number in &chosen {
                        outside
                            .publish(&names, names::PAYMENT_RECEIVED, &payment_body(number, day))
                            .await;
                        published_messages += 1;
                    }
                    wait_for("the payments during the slow DATA recorded", DEADLINE, || async {
                        let recorded: i64 = sqlx::query_scalar(
                            "SELECT count(*) FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = ANY($1)",
                        )
                        .bind(&chosen)
                        .fetch_one(&db)
                        .await?;
                        Ok(recorded as usize >= chosen.len())
                    })
                    .await
                    .unwrap();
                    paid_during_slow_data = chosen;
                }
                smtp.release();
            }
            if hour == 3 && day == date(2026, 3, 13) {
                // The SMTP server is busy for a while: every transaction gets a 4xx.
                let began = Instant::now();
                smtp.refuse_temporarily(true);
                wait_for(
                    "the SMTP server to refuse 20 times",
                    DEADLINE + knobs.smtp_4xx_at_least,
                    || async {
                        Ok(smtp.temporary_refusals() >= 20 && began.elapsed() >= knobs.smtp_4xx_at_least)
                    },
                )
                .await
                .unwrap();
                smtp.refuse_temporarily(false);
                smtp_4xx_window = began.elapsed();
            }
            if outage_now {
                // The outage lasts this long (the fault's length, not a wait for anything).
                if let Some(left) = knobs
                    .payments_outage
                    .checked_sub(outage_started.unwrap().elapsed())
                {
                    tokio::time::sleep(left).await;
                }
                for _ in 0..COPIES {
                    fleet.start_copy("payments");
                }
                payments_down = outage_started.unwrap().elapsed();
            }
            if hour == 3 {
                // 09:00 in Paris: steps fall due now; pay some invoices at this very moment.
                for (number, at_send_time) in payments.get(&day).into_iter().flatten() {
                    if *at_send_time {
                        // Each payment is delivered twice.
                        for _ in 0..2 {
                            outside
                                .publish(&names, names::PAYMENT_RECEIVED, &payment_body(number, day))
                                .await;
                        }
                        published_messages += 2;
                        duplicates += 1;
                    }
                }
            }
            if hour == 6 && day == date(2026, 3, 5) {
                for number in &late_invoices {
                    let body = serde_json::to_vec(&invoice_issued(
                        number,
                        "300.00",
                        date(2026, 3, 1),
                        date(2026, 3, 20),
                    ))
                    .unwrap();
                    outside.publish(&names, names::INVOICE_ISSUED, &body).await;
                    published_messages += 1;
                }
            }
            // A kill at a random point of the day's work, most days.
            if rng.random_bool(0.6) {
                let pause = rng.random_range(0..400);
                tokio::time::sleep(StdDuration::from_millis(pause)).await;
                fleet.kill_one(&mut rng).await;
                rng_kills += 1;
            }
        }
        for (number, at_send_time) in payments.get(&day).into_iter().flatten() {
            if !at_send_time {
                for _ in 0..2 {
                    outside
                        .publish(&names, names::PAYMENT_RECEIVED, &payment_body(number, day))
                        .await;
                }
                published_messages += 2;
                duplicates += 1;
            }
        }
        if day.format("%d").to_string().ends_with('0') {
            for garbage in [&b"{ broken"[..], b"{\"version\": 7}", b"\xff\xfe"] {
                outside.publish(&names, names::INVOICE_ISSUED, garbage).await;
                malformed += 1;
            }
        }
        if let (true, Some(broker)) = (day == date(2026, 3, 16), broker.as_ref()) {
            let began = Instant::now();
            broker.stop_app().unwrap();
            wait_readiness(&http, health_port, false).await;
            not_ready_during_restart = true;
            broker.start_app().unwrap();
            broker_down = began.elapsed();
            wait_readiness(&http, health_port, true).await;
            broker_restarts += 1;
        }
        if day == date(2026, 3, 19) {
            smtp.refuse_recipients(refused_recipients.iter().cloned());
            refusing_since = Some(Utc::now());
        }
        relance::drive::wait_until_idle(&db, &shared, DEADLINE)
            .await
            .expect("the fleet to catch up");
        day += Duration::days(1);
    }
    let total_payments: usize = payments
        .iter()
        .filter(|(d, _)| **d <= knobs.last_day)
        .map(|(_, list)| list.len())
        .sum::<usize>()
        + if late_published { late_invoices.len() } else { 0 }
        + paid_during_outage.len()
        + paid_during_slow_data.len();
    wait_for("every payment recorded", DEADLINE, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
            .fetch_one(&db)
            .await?;
        Ok(n as usize == total_payments)
    })
    .await
    .unwrap();
    relance::drive::wait_until_idle(&db, &shared, DEADLINE)
        .await
        .unwrap();

    // What the SMTP server received, by Message-ID.
    let emails = mail.emails().await;
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for e in &emails {
        *by_id
            .entry(e.message_id.trim_matches(|c| c == '<' || c == '>').to_string())
            .or_default() += 1;
    }
    let duplicated: usize = by_id.values().map(|n| n - 1).sum();
    // Every sent step reached the server; every step due is in a final state.
    let sent_ids: Vec<String> = sqlx::query_scalar(
        "SELECT trim(both '<>' from r.message_id) FROM reminder_steps s JOIN rendered_messages r ON r.step_id = s.id WHERE s.status = 'sent'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let sent_set: BTreeSet<&String> = sent_ids.iter().collect();
    let missing = sent_ids.iter().filter(|m| !by_id.contains_key(*m)).count();
    let unfinished: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reminder_steps WHERE due_at <= $1 AND status IN ('pending', 'queued', 'rendered', 'sending')",
    )
    .bind(clock_now(&clock))
    .fetch_one(&db)
    .await
    .unwrap();
    let registered: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices")
        .fetch_one(&db)
        .await
        .unwrap();
    // Deliveries interrupted by a killed sender, by how far they got: before the end of DATA
    // (delivered again), after it with no answer recorded (ambiguous, reported), after the
    // answer (recorded as sent by the sweep).
    let count = |sql: &'static str| {
        let db = db.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&db).await.unwrap() }
    };
    let interrupted = count("SELECT count(*) FROM reminder_steps WHERE status = 'ambiguous'").await;
    let redelivered =
        count("SELECT count(*) FROM journal WHERE action = 'reminder.delivery_interrupted'").await;
    let redelivered_sent = count(
        "SELECT count(DISTINCT j.step_id) FROM journal j JOIN reminder_steps s ON s.id = j.step_id
         WHERE j.action = 'reminder.delivery_interrupted' AND s.status = 'sent'",
    )
    .await;
    let recovered = count(
        "SELECT count(*) FROM journal WHERE action IN ('reminder.sent', 'thanks.sent') AND detail ? 'recovered'",
    )
    .await;
    let failed_interrupted = count(
        "SELECT count(*) FROM reminder_steps WHERE status = 'failed' AND status_reason LIKE 'delivery interrupted%'",
    )
    .await;
    // Emails whose step is not `sent`: only ambiguous deliveries may have reached the server.
    let reached_unrecorded = by_id.keys().filter(|m| !sent_set.contains(m)).count() as i64;
    let unexplained = reached_unrecorded - interrupted;
    // No reminder reached the server after the payment settling its invoice was recorded.
    let settled: BTreeMap<String, DateTime<Utc>> = sqlx::query_as::<_, (String, DateTime<Utc>)>(
        "SELECT i.id::text, max(p.recorded_wall_at) FROM invoices i JOIN payments p ON p.invoice_id = i.id WHERE i.status = 'settled' GROUP BY i.id",
    )
    .fetch_all(&db)
    .await
    .unwrap()
    .into_iter()
    .collect();
    // Message-ID -> (invoice id, invoice number, step kind)
    let step_invoice: BTreeMap<String, (String, String, String)> =
        sqlx::query_as::<_, (String, String, String, String)>(
            "SELECT trim(both '<>' from r.message_id), s.invoice_id::text, i.number, s.kind
             FROM rendered_messages r JOIN reminder_steps s ON s.id = r.step_id JOIN invoices i ON i.id = s.invoice_id",
        )
        .fetch_all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|(m, id, number, kind)| (m, (id, number, kind)))
        .collect();
    // The SMTP faults: 4xx deferred deliveries that went out later; 5xx failed their step.
    let deferred: i64 =
        sqlx::query_scalar("SELECT count(*) FROM journal WHERE action = 'reminder.delivery_deferred'")
            .fetch_one(&db)
            .await
            .unwrap();
    // Steps deferred by a 4xx (once or more), by what became of them: (kind, status, steps).
    let deferred_outcomes: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT s.kind, s.status, count(*) FROM reminder_steps s
         WHERE s.id IN (SELECT step_id FROM journal WHERE action = 'reminder.delivery_deferred' AND step_id IS NOT NULL)
         GROUP BY s.kind, s.status ORDER BY s.kind, s.status",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let deferred_then = |kind: &str, status: &str| -> i64 {
        deferred_outcomes
            .iter()
            .filter(|(k, s, _)| k == kind && s == status)
            .map(|(_, _, n)| n)
            .sum()
    };
    let deferred_other: i64 = deferred_outcomes
        .iter()
        .filter(|(_, s, _)| s != "sent")
        .map(|(_, _, n)| n)
        .sum();
    let refused_failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reminder_steps WHERE status = 'failed' AND status_reason LIKE 'SMTP server refused%'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let failed_unexplained: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(status_reason, '') FROM reminder_steps WHERE status = 'failed'
         AND status_reason NOT LIKE 'SMTP server refused%'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let failed_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM journal WHERE action = 'reminder.failed'")
            .fetch_one(&db)
            .await
            .unwrap();
    let failed_steps: i64 = sqlx::query_scalar("SELECT count(*) FROM reminder_steps WHERE status = 'failed'")
        .fetch_one(&db)
        .await
        .unwrap();
    let reached_refused = emails
        .iter()
        .filter(|e| {
            e.to.iter()
                .any(|to| refused_recipients.contains(&to.to_lowercase()))
                && matches!((e.received_at, refusing_since), (Some(at), Some(since)) if at > since)
        })
        .count();
    let reminder_of = |e: &relance_tests::Email| -> Option<&(String, String, String)> {
        step_invoice
            .get(e.message_id.trim_matches(|c| c == '<' || c == '>'))
            .filter(|(_, _, kind)| kind == "reminder")
    };
    // Message-IDs of deliveries a payment reached after their last check (past the point of
    // no return): journaled sent (or ambiguous) with the payment's time beside it.
    let past_point_of_no_return: BTreeSet<String> = sqlx::query_scalar(
        "SELECT trim(both '<>' from detail->>'message_id') FROM journal
         WHERE action IN ('reminder.sent', 'reminder.ambiguous') AND detail ? 'stop_requested'
           AND detail->>'message_id' IS NOT NULL",
    )
    .fetch_all(&db)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let received_after_payment: Vec<&relance_tests::Email> = emails
        .iter()
        .filter(|e| match (reminder_of(e), e.received_at) {
            (Some((invoice, _, _)), Some(at)) => settled.get(invoice).is_some_and(|paid| at > *paid),
            _ => false,
        })
        .collect();
    // A reminder the server took after the payment is a broken promise unless the payment
    // came after the sender's last check, which the journal then says.
    let (after_point_of_no_return, after_payment): (Vec<&relance_tests::Email>, Vec<_>) =
        received_after_payment.into_iter().partition(|e| {
            past_point_of_no_return.contains(e.message_id.trim_matches(|c| c == '<' || c == '>'))
        });
    let (after_point_of_no_return, after_payment) = (after_point_of_no_return.len(), after_payment.len());
    // The payments outage: from the broker's confirm of each payment to its recording, which
    // cancels the invoice's open steps in the same transaction; and the reminders the server
    // received after the payment had been published.
    let recorded_at: BTreeMap<String, DateTime<Utc>> = sqlx::query_as::<_, (String, DateTime<Utc>)>(
        "SELECT i.number, min(p.recorded_wall_at) FROM invoices i JOIN payments p ON p.invoice_id = i.id GROUP BY i.number",
    )
    .fetch_all(&db)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let stop_windows: Vec<StdDuration> = paid_during_outage
        .iter()
        .map(|(number, confirmed)| {
            let recorded = recorded_at
                .get(number)
                .expect("the outage's payments are recorded");
            (*recorded - *confirmed).to_std().unwrap_or(StdDuration::ZERO)
        })
        .collect();
    let confirmed_at: BTreeMap<&str, DateTime<Utc>> = paid_during_outage
        .iter()
        .map(|(n, at)| (n.as_str(), *at))
        .collect();
    let mut after_published: BTreeSet<&str> = BTreeSet::new();
    let mut reminders_after_published = 0usize;
    for e in &emails {
        if let (Some((_, number, _)), Some(at)) = (reminder_of(e), e.received_at) {
            if confirmed_at
                .get(number.as_str())
                .is_some_and(|confirmed| at > *confirmed)
            {
                reminders_after_published += 1;
                after_published.insert(number.as_str());
            }
        }
    }
    let dead_letters = {
        // A fresh connection: the first one may have died with the broker restart.
        outside = Outside::connect(&broker_url).await;
        let channel = outside.connection.create_channel().await;
        let mut n = 0usize;
        if let Ok(channel) = channel {
            while let Ok(Some(_)) = channel
                .basic_get(
                    names.dead_letter_queue().as_str().into(),
                    lapin::options::BasicGetOptions { no_ack: true },
                )
                .await
            {
                n += 1;
            }
        }
        n
    };

    let expected_invoices = invoices + if late_published { late_invoices.len() } else { 0 };
    let kills: Vec<String> = fleet.kills.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let longest = broker_down.max(smtp_4xx_window).max(payments_down);
    let outages = format!(
        "{}: broker down {} ({broker_restarts} restart), SMTP answering 4xx for {} ({} answers), payments down {}; steps failed for a transient cause: {}",
        seconds(longest),
        seconds(broker_down),
        seconds(smtp_4xx_window),
        smtp.temporary_refusals(),
        seconds(payments_down),
        failed_unexplained.len(),
    );
    // What became of the deliveries going out when their invoices were paid in the slow DATA:
    // sent (the journal gives the payment beside it, `stop_requested`) or cancelled while
    // `sending` (the sender stopped before the end of DATA).
    let slow_data_outcome = |sql: &'static str| {
        let (db, numbers) = (db.clone(), paid_during_slow_data.clone());
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(&numbers)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    let slow_data_sent = slow_data_outcome(
        "SELECT count(*) FROM journal WHERE invoice_number = ANY($1) AND action = 'reminder.sent'
         AND detail ? 'stop_requested'",
    )
    .await;
    let slow_data_cancelled = slow_data_outcome(
        "SELECT count(*) FROM journal WHERE invoice_number = ANY($1) AND action = 'reminder.cancelled'
         AND detail->>'was' = 'sending'",
    )
    .await;
    let summary = format!(
        "\nrelance fault suite ({invoices} invoices + {} reordered, {COPIES} copies of each service as processes, {} simulated days)\n\
         | seed            | {seed} (replay: RELANCE_FAULT_SEED={seed}) |\n\
         | faults injected | SIGKILL {rng_kills} ({}), broker restarts {broker_restarts}, duplicated payments {duplicates}, reordered payments {}, malformed {malformed}, SMTP 4xx answers {}, SMTP 5xx answers {} |\n\
         | messages        | published {published_messages}, emails received {}, dead letters {dead_letters} |\n\
         | lost            | {} (steps not final {unfinished}, sent but not received {missing}, invoices not registered {}) |\n\
         | duplicated      | {duplicated} |\n\
         | after payment   | {after_payment} (besides {after_point_of_no_return} whose end of DATA had left when the payment was recorded: journaled sent with the payment's time beside it) |\n\
         | interrupted     | before the end of DATA: {redelivered} (delivered again with their Message-ID, {redelivered_sent} sent since); after it, no answer recorded: {interrupted} ambiguous (reported), {} of them had reached the server; after the answer: {recovered} recorded as sent; failed for an interruption: {failed_interrupted} |\n\
         | SMTP refusals   | {deferred} deliveries deferred by a 4xx and retried; {refused_failed} steps failed at once by a 5xx, each with a reminder.failed event |\n\
         | deferred, then  | delivered: {} reminders, {} thank-yous; otherwise: {deferred_other} (cancelled by a payment, or failed) |\n\
         | longest outage survived | {outages} |\n\
         | slow DATA, sessions cut | {slow_data_held} deliveries held at DATA, {slow_data_sessions_cut} database sessions cut, {} invoices paid meanwhile: {slow_data_sent} of their reminders sent (with the payment beside it), {slow_data_cancelled} cancelled while sending (stopped before the end of DATA) |\n\
         | payments outage | {} payments processes killed for {}, {} payments published meanwhile; payment confirmed -> steps cancelled: max {}, p99 {}, median {}; reminders received after their payment was published: {reminders_after_published} (for {} invoices) |\n",
        if late_published { late_invoices.len() } else { 0 },
        (knobs.last_day - date(2026, 3, 2)).num_days() + 1,
        kills.join(", "),
        if late_published { late_invoices.len() } else { 0 },
        smtp.temporary_refusals(),
        smtp.permanent_refusals(),
        emails.len(),
        unfinished as usize + missing + expected_invoices.saturating_sub(registered as usize),
        expected_invoices.saturating_sub(registered as usize),
        reached_unrecorded,
        deferred_then("reminder", "sent"),
        deferred_then("thanks", "sent"),
        paid_during_slow_data.len(),
        payments_outage_kills,
        seconds(payments_down),
        paid_during_outage.len(),
        seconds(quantile(&stop_windows, 1.0)),
        seconds(quantile(&stop_windows, 0.99)),
        seconds(quantile(&stop_windows, 0.5)),
        after_published.len(),
    );
    let _ = std::io::stderr().write_all(summary.as_bytes());
    let _ = std::fs::write(std::env::temp_dir().join("relance-faults-summary.txt"), &summary);

    fleet.stop().await;
    let _ = probe.kill().await;
    if let Ok(channel) = outside.connection.create_channel().await {
        let _ = relance_messaging::delete_topology(&channel, &names).await;
    }
    let _ = outside.connection.close(200, "done".into()).await;
    db.close().await;
    mail.stop().await;
    drop(broker);

    assert_eq!(registered as usize, expected_invoices, "{summary}");
    assert_eq!(unfinished, 0, "{summary}");
    assert_eq!(missing, 0, "{summary}");
    assert_eq!(duplicated, 0, "{summary}");
    assert_eq!(after_payment, 0, "{summary}");
    assert!(
        unexplained <= 0,
        "emails without a sent or ambiguous step: {summary}"
    );
    // An interruption is never a failure of its own: before the end of DATA the delivery is
    // made again, after it the step is ambiguous.
    assert_eq!(failed_interrupted, 0, "{summary}");
    assert_eq!(dead_letters, malformed, "{summary}");
    if broker_restarts > 0 {
        assert!(not_ready_during_restart, "{summary}");
    }
    if smtp.temporary_refusals() > 0 {
        assert!(deferred >= 1, "the 4xx period deferred deliveries: {summary}");
    }
    if refusing_since.is_some() && smtp.permanent_refusals() > 0 {
        assert!(
            refused_failed >= 1 && refused_failed as usize <= smtp.permanent_refusals(),
            "5xx answers failed steps: {summary}"
        );
    }
    assert!(
        failed_unexplained.is_empty(),
        "failed steps without a known reason: {failed_unexplained:?}"
    );
    assert_eq!(
        failed_events, failed_steps,
        "every failed step announced: {summary}"
    );
    assert_eq!(reached_refused, 0, "{summary}");
    if slow_data_day <= knobs.last_day {
        assert!(slow_data_held >= 1, "deliveries were held at DATA: {summary}");
    }
    if outage_day <= knobs.last_day {
        assert!(
            !paid_during_outage.is_empty(),
            "the payments outage found reminders due to pay: {summary}"
        );
    }
    let _ = relance_storage::drop_database(&database_url).await;
    let _ = std::fs::remove_dir_all(&log_dir);
}

fn clock_now(clock: &SimulatedClock) -> DateTime<Utc> {
    relance_domain::Clock::now(clock)
}
