//! Configuration of every relance service, read from the environment and validated at
//! start: `DATABASE_URL`, `AMQP_URL`, `SMTP_URL`, `OTEL_EXPORTER_OTLP_ENDPOINT` and
//! `RELANCE_*`, each declared once, with its default, in [`variables`] (which `relance --help`
//! and the README's table follow). It owns no I/O beyond reading the environment and the
//! policy file; a bad value stops the service at start with the variable named.

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use relance_domain::interest::{InterestTerms, RateTable};
use relance_domain::legal_rates::LegalRates;
use relance_domain::{DunningPolicy, SharedClock, SimulatedClock, SystemClock};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub mod variables;
pub use variables::{SettingsArgs, VARIABLES};

/// The creditor: who is owed, and where to pay (see [`relance_domain::creditor`]). The
/// environment's is the default creditor; others are data (`creditor.updated`).
pub use relance_domain::creditor::{Creditor, DEFAULT_CREDITOR_ID};

/// Text messages and letters: their providers, and the terms a formal notice states.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelSettings {
    /// HTTP SMS gateway (`RELANCE_SMS_GATEWAY_URL`); `None` writes text messages as JSON
    /// lines to `sms_dir` instead.
    pub sms_gateway_url: Option<String>,
    /// Bearer token of the gateway; credentials in the URL (`https://user:pass@...`) are
    /// sent as basic authentication instead.
    pub sms_gateway_token: Option<String>,
    /// Sender name or number shown on the phone; empty: the gateway's default.
    pub sms_sender: String,
    pub sms_dir: PathBuf,
    /// Print-and-post API (`RELANCE_POSTAL_API_URL`); `None` writes each letter's PDF and a
    /// manifest line to a dated folder of `letter_dir`, for creditors who print themselves.
    pub postal_api_url: Option<String>,
    pub postal_api_token: Option<String>,
    pub letter_dir: PathBuf,
    /// Longest wait for an answer from the SMS gateway or the postal API.
    pub provider_timeout: Duration,
    /// Requests a sender has at its SMS gateway or postal service at once at most
    /// (`RELANCE_PROVIDER_MAX_REQUESTS`; 0: no limit): a message finding them all taken waits
    /// for one, before its last check.
    pub provider_max_requests: usize,
    /// Days from receipt a formal notice gives to pay.
    pub formal_notice_days: u32,
    /// Deprecated (`RELANCE_INTEREST_FLOOR_PERCENT`): one floor for every half-year, in
    /// place of three times each half-year's legal rate.
    pub interest_floor_percent: Option<rust_decimal::Decimal>,
    /// Deprecated (`RELANCE_INTEREST_CONSUMER_PERCENT`): one rate for consumers' debts, in
    /// place of each half-year's legal rate.
    pub interest_consumer_percent: Option<rust_decimal::Decimal>,
    /// The creditor's late-payment rate of its terms of sale; `None`: the ECB rate plus 10
    /// points. A customer's own agreed rate takes precedence.
    pub interest_contract_percent: Option<rust_decimal::Decimal>,
    /// The legal rates of each half-year (`RELANCE_LEGAL_RATES_FILE`, else the built-in
    /// table), with the ECB column from `RELANCE_ECB_RATES_FILE` when that is set.
    pub legal_rates: LegalRates,
}

impl ChannelSettings {
    /// The late-payment terms configured for this creditor: the contractual rate if the terms
    /// of sale give one, else the ECB rate plus 10 points, never below the floor.
    pub fn interest_terms(&self) -> InterestTerms {
        InterestTerms {
            rates: self.legal_rates.clone(),
            floor_override: self.interest_floor_percent,
            consumer_override: self.interest_consumer_percent,
            ..InterestTerms::statutory()
        }
        .for_customer(self.interest_contract_percent)
    }

    /// What an operator must fix about the interest settings on `today`: a half-year missing
    /// from the rate table (interest is then an estimate at the last known rates), deprecated
    /// undated rates. Logged at start and shown by `/health/ready`.
    pub fn interest_warnings(&self, today: chrono::NaiveDate) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.legal_rates.covers(today) {
            warnings.push(format!(
                "the legal rate table ends with {}: the rates of {} are missing, so late interest is computed at {}'s rates; give them in RELANCE_LEGAL_RATES_FILE",
                self.legal_rates.last(),
                relance_domain::legal_rates::HalfYear::of(today),
                self.legal_rates.last(),
            ));
        }
        if self.interest_floor_percent.is_some() {
            warnings.push("RELANCE_INTEREST_FLOOR_PERCENT is deprecated: it sets one floor for every half-year; remove it to use three times each half-year's legal rate".to_string());
        }
        if self.interest_consumer_percent.is_some() {
            warnings.push("RELANCE_INTEREST_CONSUMER_PERCENT is deprecated: it sets one rate for every half-year; remove it to use each half-year's legal rate".to_string());
        }
        warnings
    }
}

/// Where a process's metrics go (`RELANCE_METRICS_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsExporter {
    /// The Prometheus exposition on the health server's `GET /metrics` (default).
    Prometheus,
    /// Pushed over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT` (a collector).
    Otlp,
    /// Both.
    Both,
}

impl MetricsExporter {
    pub fn prometheus(self) -> bool {
        matches!(self, Self::Prometheus | Self::Both)
    }
    pub fn otlp(self) -> bool {
        matches!(self, Self::Otlp | Self::Both)
    }
}

/// The policy for a step found in `sending` whose sender died *after* the end of DATA (or the
/// provider's request) was sent: the message may or may not have reached the customer. A
/// delivery interrupted before that point is always delivered again (nothing went out), and
/// one whose answer was recorded is settled as sent, whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptedDelivery {
    /// End the step `ambiguous` and announce `reminder.ambiguous`: never a duplicate
    /// (default; `fail`, the former name, is accepted as an alias).
    Report,
    /// Announce `reminder.ambiguous` and deliver it again with the same Message-ID (or
    /// idempotency key): never a missing reminder, a possible duplicate.
    Resend,
}

impl std::str::FromStr for InterruptedDelivery {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "report" | "fail" => Ok(Self::Report),
            "resend" => Ok(Self::Resend),
            other => Err(format!(
                "{other:?}: expected report (or its alias fail) or resend"
            )),
        }
    }
}

/// The type of relance's queues (`RELANCE_QUEUE_TYPE`). A queue's type is fixed when it is
/// first declared: changing it needs `relance migrate-queues`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Replicated by a RabbitMQ cluster (Raft), with a delivery limit (default).
    #[default]
    Quorum,
    /// One node's queue, as relance declared them before quorum queues.
    Classic,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic => "classic",
        }
    }
}

impl std::str::FromStr for QueueType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quorum" => Ok(Self::Quorum),
            "classic" => Ok(Self::Classic),
            other => Err(format!("{other:?}: expected quorum or classic")),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub database_url: String,
    /// Where reads that may lag a moment go (a streaming replica): see
    /// [`Settings::reads_database_url`].
    pub read_database_url: Option<String>,
    pub amqp_url: String,
    /// `smtp://host:port` (or `smtps://`, with optional `user:password@`); `None` writes
    /// `.eml` files to `mail_dir` instead.
    pub smtp_url: Option<String>,
    /// Certificate authorities (PEM) trusted for the SMTP server besides the public ones.
    pub smtp_ca_file: Option<PathBuf>,
    pub mail_dir: PathBuf,
    pub otlp_endpoint: Option<String>,
    /// Prefix of every exchange and queue name (`relance` gives `relance.inbound`).
    pub namespace: String,
    pub policy_file: Option<PathBuf>,
    /// A folder of further named policies, `<name>.toml` each, which creditors name
    /// (`RELANCE_POLICY_DIR`).
    pub policy_dir: Option<PathBuf>,
    /// A folder of templates replacing the built-in ones (`RELANCE_TEMPLATE_DIR`).
    pub template_dir: Option<PathBuf>,
    /// A folder of creditors' own template folders, `<name>/` each, same layout, whose
    /// files override the others for the invoices of a creditor naming it
    /// (`RELANCE_CREDITOR_TEMPLATE_DIR`).
    pub creditor_template_dir: Option<PathBuf>,
    /// `None` for the system clock, or the start of a simulated clock.
    pub simulated_clock_start: Option<DateTime<Utc>>,
    /// The simulated clock is shared through the database (`RELANCE_CLOCK=database`).
    pub shared_clock: bool,
    pub scheduler_interval: Duration,
    /// Pause between two hand-off sweeps (`RELANCE_HANDOFF_INTERVAL_MS`).
    pub handoff_interval: Duration,
    pub scheduler_batch: i64,
    /// SMTP connections kept open between messages (`RELANCE_SMTP_POOL_SIZE`).
    pub smtp_pool_size: usize,
    /// SMTP connections open at once at most (`RELANCE_SMTP_MAX_CONNECTIONS`; 0: no limit).
    pub smtp_max_connections: usize,
    /// Database connections per service.
    pub db_pool_size: u32,
    /// Most handlers' work one group commit holds (`RELANCE_COMMIT_BATCH`).
    pub commit_batch: usize,
    /// Group commits run at once per service (`RELANCE_COMMIT_LANES`).
    pub commit_lanes: usize,
    /// How long a handler (or the outbox relay) waits for a database connection before giving
    /// up. Every connection of the pool in use: the message is tried again soon (the relay
    /// after its interval); the database unreachable: the message waits the outage out
    /// (the relay backs off up to 5 s). Neither spends a message's retries.
    pub db_acquire_timeout: Duration,
    pub outbox_interval: Duration,
    /// How long the relay lets commits gather after a notification (`RELANCE_OUTBOX_COALESCE_MS`).
    pub outbox_coalesce: Duration,
    /// Whether this process relays the outbox (`RELANCE_OUTBOX_RELAY`). A process running
    /// several services (`run all`) turns it off for all but one of them.
    pub outbox_relay: bool,
    pub prefetch: u16,
    /// An additional cap on the retries of a transient failure (`RELANCE_MAX_RETRIES`);
    /// [`NO_RETRY_CAP`] when unset: the retry budget alone decides.
    pub max_retries: u32,
    /// The first retry delay; it doubles at each retry, up to `retry_max_delay`.
    pub retry_base: Duration,
    /// How long a message keeps being retried after its first transient failure
    /// (`RELANCE_RETRY_BUDGET`) before it is given up.
    pub retry_budget: Duration,
    /// The longest wait between two attempts (`RELANCE_RETRY_MAX_DELAY`).
    pub retry_max_delay: Duration,
    /// Wall-clock time after which a step left in flight is handed out again.
    pub lease: Duration,
    /// Retention: how long published outbox rows, and the records of messages already
    /// applied (the inbox), are kept; how often the scheduler removes older ones, and how
    /// many rows one statement deletes.
    pub retention: Retention,
    /// What to do with a delivery interrupted mid-way (its sender died).
    pub interrupted_delivery: InterruptedDelivery,
    /// Days given to pay in a firm reminder.
    pub pay_within_days: u32,
    /// Days after a promised payment date before the paused sequence resumes.
    pub promise_grace_days: u32,
    /// Whole days, in the customer's calendar, after the last step of the sequence before an
    /// unpaid invoice is handed off.
    pub handoff_after_days: u32,
    /// Days added to `handoff_after_days` when the last step went by post (a letter or a
    /// registered formal notice): the letter must reach the debtor before its deadline runs.
    pub postal_delivery_days: u32,
    /// Days a call task stays open after the day it was opened, before it expires.
    pub call_task_days: u32,
    /// Queues unused for this long are deleted by the broker (tests set it; unset in production).
    pub queue_expires: Option<Duration>,
    /// `RELANCE_QUEUE_TYPE`: quorum (default) or classic.
    pub queue_type: QueueType,
    /// `RELANCE_QUEUE_DELIVERY_LIMIT`: deliveries of a message never settled before a quorum
    /// queue dead-letters it.
    pub queue_delivery_limit: u32,
    /// Where `relance run` serves `/health/live` and `/health/ready` (`RELANCE_HEALTH_ADDR`);
    /// `None`: not served.
    pub health_addr: Option<std::net::SocketAddr>,
    /// Where the collections console listens (`RELANCE_CONSOLE_ADDR`).
    pub console_addr: std::net::SocketAddr,
    /// Whether `RELANCE_CONSOLE_ADDR` was given: `run all` then runs the console too.
    pub console_addr_set: bool,
    /// The console's bearer token or basic-auth password (`RELANCE_CONSOLE_TOKEN` or `_FILE`).
    pub console_token: Option<String>,
    /// How often the console recomputes its totals snapshot (`RELANCE_CONSOLE_TOTALS_INTERVAL_MS`).
    pub console_totals_interval: Duration,
    /// Where the customer page listens (`RELANCE_PORTAL_ADDR`).
    pub portal_addr: std::net::SocketAddr,
    /// Whether `RELANCE_PORTAL_ADDR` was given: `run all` then runs the customer page too.
    pub portal_addr_set: bool,
    /// The key signing the customer page's links (`RELANCE_PORTAL_SECRET` or `_FILE`).
    pub portal_secret: Option<String>,
    /// The customer page's public base URL (`RELANCE_PORTAL_URL`): when set, messages'
    /// payment links point to the invoice's page.
    pub portal_url: Option<String>,
    /// Days a customer-page link stays valid (`RELANCE_PORTAL_TOKEN_DAYS`).
    pub portal_token_days: u32,
    /// The latest date a customer may promise on the page, in days from today
    /// (`RELANCE_PORTAL_MAX_PROMISE_DAYS`).
    pub portal_max_promise_days: u32,
    /// Requests a minute one link or one address may make (`RELANCE_PORTAL_RATE_PER_MINUTE`).
    pub portal_rate_per_minute: u32,
    /// The reply-to mailbox the replies reader reads (`RELANCE_IMAP_URL` or `_FILE`); `None`:
    /// no reader, and `run all` runs none.
    pub imap_url: Option<String>,
    /// The mailbox's login (`RELANCE_IMAP_USER`).
    pub imap_user: String,
    /// The mailbox's password (`RELANCE_IMAP_PASSWORD` or `_FILE`).
    pub imap_password: Option<String>,
    /// The folder read (`RELANCE_IMAP_MAILBOX`).
    pub imap_mailbox: String,
    /// Pause between two readings (`RELANCE_IMAP_INTERVAL_MS`).
    pub imap_interval: Duration,
    /// A loop not completed for this long is reported by `/health/ready` (`RELANCE_LOOP_STALL_MS`).
    pub loop_stall: Duration,
    /// How often one scheduler copy computes the collections gauges (`RELANCE_METRICS_INTERVAL_MS`).
    pub metrics_interval: Duration,
    /// `RELANCE_LOG_FORMAT`: `Some(true)` JSON lines, `Some(false)` text, `None`: JSON unless
    /// stderr is a terminal.
    pub log_json: Option<bool>,
    /// Where metrics go (`RELANCE_METRICS_EXPORTER`).
    pub metrics_exporter: MetricsExporter,
    pub creditor: Creditor,
    /// `RELANCE_EXAMPLE_CREDITOR=allow`: services may start with the example creditor (demos,
    /// tests); by default `relance run` refuses to (see [`Creditor::example_parts`]).
    pub allow_example_creditor: bool,
    pub channels: ChannelSettings,
}

/// Hides the credentials that URLs may carry, so that a logged config leaks no secret.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// [`redact`] for each URL of a comma-separated list (`AMQP_URL` naming a cluster's nodes).
fn redact_each(urls: &str) -> String {
    urls.split(',')
        .map(|url| redact(url.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact(&self.database_url))
            .field(
                "read_database_url",
                &self.read_database_url.as_deref().map(redact),
            )
            .field("amqp_url", &redact_each(&self.amqp_url))
            .field("smtp_url", &self.smtp_url.as_deref().map(redact))
            .field("mail_dir", &self.mail_dir)
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("namespace", &self.namespace)
            .field("policy_file", &self.policy_file)
            .field("policy_dir", &self.policy_dir)
            .field("template_dir", &self.template_dir)
            .field("creditor_template_dir", &self.creditor_template_dir)
            .field("simulated_clock_start", &self.simulated_clock_start)
            .field("scheduler_interval", &self.scheduler_interval)
            .field("handoff_interval", &self.handoff_interval)
            .field("health_addr", &self.health_addr)
            .field("console_addr", &self.console_addr)
            .field("console_token", &self.console_token.as_ref().map(|_| "<hidden>"))
            .field("portal_addr", &self.portal_addr)
            .field("portal_secret", &self.portal_secret.as_ref().map(|_| "<hidden>"))
            .field("imap_url", &self.imap_url.as_ref().map(|_| "<hidden>"))
            .field("imap_user", &self.imap_user)
            .field("imap_mailbox", &self.imap_mailbox)
            .field("portal_url", &self.portal_url)
            .finish_non_exhaustive()
    }
}

/// What the scheduler removes, and when (see `relance_storage::retention`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Published outbox rows older than this are deleted (`RELANCE_OUTBOX_RETENTION_HOURS`).
    pub outbox: Duration,
    /// Inbox records older than this are deleted (`RELANCE_INBOX_RETENTION_DAYS`): a message
    /// delivered again after that is no longer recognised by its id, only by its effect.
    pub inbox: Duration,
    /// Pause between two passes (`RELANCE_RETENTION_INTERVAL_MS`).
    pub interval: Duration,
    /// Rows per DELETE statement (`RELANCE_RETENTION_BATCH`).
    pub batch: i64,
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn retention(env: &Env) -> anyhow::Result<Retention> {
    let hours: u64 = env.parsed("RELANCE_OUTBOX_RETENTION_HOURS")?;
    let days: u64 = env.parsed("RELANCE_INBOX_RETENTION_DAYS")?;
    if !(1..=24 * 365).contains(&hours) {
        return Err(anyhow!(
            "RELANCE_OUTBOX_RETENTION_HOURS must be between 1 and 8760"
        ));
    }
    if !(1..=3650).contains(&days) {
        return Err(anyhow!("RELANCE_INBOX_RETENTION_DAYS must be between 1 and 3650"));
    }
    let retention = Retention {
        outbox: HOUR.saturating_mul(u32::try_from(hours).unwrap_or(u32::MAX)),
        inbox: DAY.saturating_mul(u32::try_from(days).unwrap_or(u32::MAX)),
        interval: env.millis("RELANCE_RETENTION_INTERVAL_MS")?,
        batch: env.parsed("RELANCE_RETENTION_BATCH")?,
    };
    if retention.interval.is_zero() {
        return Err(anyhow!("RELANCE_RETENTION_INTERVAL_MS must be positive"));
    }
    if !(1..=1_000_000).contains(&retention.batch) {
        return Err(anyhow!("RELANCE_RETENTION_BATCH must be between 1 and 1000000"));
    }
    Ok(retention)
}

impl Settings {
    /// Refuses to run services for a creditor that is still the example one, naming the
    /// variables to set, unless `RELANCE_EXAMPLE_CREDITOR=allow` (demos, tests).
    pub fn check_creditor_for_service(&self) -> anyhow::Result<()> {
        let parts = self.creditor.example_parts();
        if parts.is_empty() || self.allow_example_creditor {
            return Ok(());
        }
        bail!(
            "the creditor is still relance's example ({} as shipped): reminders would ask your customers to pay \
             the example's account. Set your own identity ({}, and the other RELANCE_CREDITOR_* variables), \
             or RELANCE_EXAMPLE_CREDITOR=allow for a demo or a test",
            parts.join(", "),
            parts.join(", ")
        )
    }

    /// The longest a message may be redelivered after it was first applied through relance's
    /// own retries: the retry budget, plus the last wait at its largest (the maximum delay and
    /// 25 % jitter); shorter when `RELANCE_MAX_RETRIES` caps the count (every retry delay at
    /// its largest, doubling from `retry_base`). The inbox must remember a message longer
    /// than this.
    pub fn redelivery_span(&self) -> Duration {
        let by_budget = self
            .retry_budget
            .saturating_add(self.retry_max_delay.saturating_add(self.retry_max_delay / 4));
        if self.max_retries == NO_RETRY_CAP {
            return by_budget;
        }
        let by_count = (0..self.max_retries.min(64))
            .map(|retry| {
                let exp = self
                    .retry_base
                    .saturating_mul(2u32.saturating_pow(retry.min(20)))
                    .min(self.retry_max_delay);
                exp.saturating_add(exp / 4)
            })
            .fold(Duration::ZERO, Duration::saturating_add);
        by_count.min(by_budget)
    }
}

/// A longer grace after a broken promise would let the promise stand in for a payment plan.
pub const MAX_PROMISE_GRACE_DAYS: u32 = 60;

/// Most SMTP connections a sender may be allowed at once (`RELANCE_SMTP_MAX_CONNECTIONS`):
/// far beyond what a mail server accepts from one client, and within what a semaphore holds.
pub const MAX_SMTP_CONNECTIONS: usize = 10_000;

/// Most requests a sender may be allowed at once at its SMS gateway or postal service
/// (`RELANCE_PROVIDER_MAX_REQUESTS`), for the same reason.
pub const MAX_PROVIDER_REQUESTS: usize = 10_000;

/// `max_retries` when `RELANCE_MAX_RETRIES` is unset: no cap on the count of retries.
pub const NO_RETRY_CAP: u32 = u32::MAX;

/// Parses a duration written as a number of seconds (`86400`) or a number with one unit:
/// `ms`, `s`, `m`, `h`, `d` (`500ms`, `90s`, `30m`, `36h`, `1d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| {
        "expected a whole number of seconds, or one with a unit: 500ms, 90s, 30m, 36h, 1d".to_string()
    })?;
    let unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown unit {other:?}: expected ms, s, m, h or d")),
    };
    number
        .checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| "too long".to_string())
}

/// Writes a duration the way [`parse_duration`] reads it, in its largest whole unit
/// (`1d`, `36h`, `90s`, `1500ms`).
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/relance";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The variables given, read with the defaults declared in [`VARIABLES`]: an unset or empty
/// variable has its declared default.
struct Env(HashMap<String, String>);

impl Env {
    /// Whether the variable was given a non-empty value (not just defaulted).
    fn is_set(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|v| !v.trim().is_empty())
    }

    /// The value set, else the declared default; `None` when neither is (a feature off).
    fn get(&self, key: &str) -> Option<String> {
        self.0
            .get(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .or_else(|| {
                variables::variable(key)
                    .and_then(|variable| variable.default.value())
                    .map(str::to_string)
            })
    }

    /// The value set, else the declared default, else the empty text.
    fn text(&self, key: &str) -> String {
        self.get(key).unwrap_or_default()
    }

    /// The value set, else the declared default, parsed; one or the other must be there.
    fn parsed<T: std::str::FromStr>(&self, key: &str) -> anyhow::Result<T>
    where
        T::Err: fmt::Display,
    {
        self.optional_parsed(key)?
            .ok_or_else(|| anyhow!("{key} is not set and has no default"))
    }

    fn optional_parsed<T: std::str::FromStr>(&self, key: &str) -> anyhow::Result<Option<T>>
    where
        T::Err: fmt::Display,
    {
        self.get(key)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|e| anyhow!("{key}={v:?} is not valid: {e}"))
            })
            .transpose()
    }

    /// A rate in percent, when set.
    fn optional_decimal(&self, key: &str) -> anyhow::Result<Option<rust_decimal::Decimal>> {
        self.get(key)
            .map(|v| {
                let v = v.trim();
                // Plain decimals only: `1e1` would parse, and is no way to write a rate.
                v.chars()
                    .all(|c| c.is_ascii_digit() || c == '.')
                    .then(|| v.parse::<rust_decimal::Decimal>().ok())
                    .flatten()
                    .filter(|r| !r.is_sign_negative() && *r <= rust_decimal::Decimal::ONE_HUNDRED)
                    .ok_or_else(|| anyhow!("{key}={v:?} is not valid: expected a rate in percent between 0 and 100, such as 12.5"))
            })
            .transpose()
    }

    /// A duration in seconds or with a unit (see [`parse_duration`]).
    fn duration(&self, key: &str) -> anyhow::Result<Duration> {
        let v = self
            .get(key)
            .ok_or_else(|| anyhow!("{key} is not set and has no default"))?;
        parse_duration(&v).map_err(|e| anyhow!("{key}={v:?} is not valid: {e}"))
    }

    fn millis(&self, key: &str) -> anyhow::Result<Duration> {
        Ok(Duration::from_millis(self.parsed(key)?))
    }
}

/// Secrets may come from files (Docker and Kubernetes secrets): `DATABASE_URL_FILE`,
/// `AMQP_URL_FILE`, `SMTP_URL_FILE` (and the same for the SMS gateway's and the postal API's
/// URL and token: each variable declared `secret`) name a file holding the value, used when
/// the variable itself is unset.
fn with_secret_files(mut vars: HashMap<String, String>) -> anyhow::Result<HashMap<String, String>> {
    for variable in VARIABLES {
        let key = variable.name;
        let Some(file_key) = variables::secret_file_variable(variable) else {
            continue;
        };
        let Some(path) = vars
            .get(&file_key)
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
        else {
            continue;
        };
        if vars.get(key).is_some_and(|v| !v.trim().is_empty()) {
            return Err(anyhow!("both {key} and {file_key} are set: keep one"));
        }
        let value =
            std::fs::read_to_string(&path).map_err(|e| anyhow!("{file_key}={path:?} cannot be read: {e}"))?;
        vars.insert(key.to_string(), value.trim().to_string());
    }
    Ok(vars)
}

impl Settings {
    /// The database for reads that may lag a moment behind the primary: the console's pages
    /// and totals, the collections gauges' figures, and the read-only commands (`relance
    /// invoices`, `tasks`, `approvals`, `journal verify|export`, `statement`).
    /// `RELANCE_READ_DATABASE_URL` (a streaming replica) when set, else `DATABASE_URL`. Every
    /// write, and every read a decision depends on (claims, the last check before a delivery,
    /// payments), stays on `DATABASE_URL`.
    pub fn reads_database_url(&self) -> &str {
        self.read_database_url.as_deref().unwrap_or(&self.database_url)
    }

    /// Reads the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(std::env::vars())
    }

    /// Reads settings from the given variables (tests pass their own).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Self> {
        let env = Env(with_secret_files(vars.into_iter().collect())?);
        let clock = env.text("RELANCE_CLOCK");
        let simulated_clock_start = match clock.as_str() {
            "system" => None,
            "simulated" | "database" => Some(match env.get("RELANCE_CLOCK_START") {
                None => Utc::now(),
                Some(v) => DateTime::parse_from_rfc3339(&v)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|e| anyhow!("RELANCE_CLOCK_START={v:?} is not an RFC 3339 time: {e}"))?,
            }),
            other => {
                return Err(anyhow!(
                    "RELANCE_CLOCK={other:?} is not valid: expected system, simulated or database"
                ))
            }
        };
        let namespace = env.text("RELANCE_NAMESPACE");
        if namespace.is_empty()
            || !namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(anyhow!(
                "RELANCE_NAMESPACE={namespace:?} is not valid: letters, digits, '-', '_' and '.' only"
            ));
        }
        let settings = Settings {
            database_url: env.text("DATABASE_URL"),
            read_database_url: env.get("RELANCE_READ_DATABASE_URL"),
            amqp_url: env.text("AMQP_URL"),
            smtp_url: env.get("SMTP_URL"),
            smtp_ca_file: env.get("RELANCE_SMTP_CA_FILE").map(PathBuf::from),
            mail_dir: PathBuf::from(env.text("RELANCE_MAIL_DIR")),
            otlp_endpoint: env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            namespace,
            policy_file: env.get("RELANCE_POLICY_FILE").map(PathBuf::from),
            policy_dir: env.get("RELANCE_POLICY_DIR").map(PathBuf::from),
            template_dir: env.get("RELANCE_TEMPLATE_DIR").map(PathBuf::from),
            creditor_template_dir: env.get("RELANCE_CREDITOR_TEMPLATE_DIR").map(PathBuf::from),
            simulated_clock_start,
            shared_clock: clock == "database",
            scheduler_interval: env.millis("RELANCE_SCHEDULER_INTERVAL_MS")?,
            handoff_interval: env.millis("RELANCE_HANDOFF_INTERVAL_MS")?,
            scheduler_batch: env.parsed("RELANCE_SCHEDULER_BATCH")?,
            db_pool_size: env.parsed("RELANCE_DB_POOL_SIZE")?,
            commit_batch: env.parsed("RELANCE_COMMIT_BATCH")?,
            commit_lanes: env.parsed("RELANCE_COMMIT_LANES")?,
            smtp_pool_size: env.parsed("RELANCE_SMTP_POOL_SIZE")?,
            smtp_max_connections: env.parsed("RELANCE_SMTP_MAX_CONNECTIONS")?,
            db_acquire_timeout: env.millis("RELANCE_DB_ACQUIRE_TIMEOUT_MS")?,
            outbox_interval: env.millis("RELANCE_OUTBOX_INTERVAL_MS")?,
            outbox_coalesce: env.millis("RELANCE_OUTBOX_COALESCE_MS")?,
            outbox_relay: match env.text("RELANCE_OUTBOX_RELAY").as_str() {
                "on" => true,
                "off" => false,
                other => return Err(anyhow!("RELANCE_OUTBOX_RELAY={other:?} is not valid: on or off")),
            },
            prefetch: env.parsed("RELANCE_PREFETCH")?,
            max_retries: env
                .optional_parsed("RELANCE_MAX_RETRIES")?
                .unwrap_or(NO_RETRY_CAP),
            retry_base: env.millis("RELANCE_RETRY_BASE_MS")?,
            retry_budget: env.duration("RELANCE_RETRY_BUDGET")?,
            retry_max_delay: env.duration("RELANCE_RETRY_MAX_DELAY")?,
            pay_within_days: env.parsed("RELANCE_PAY_WITHIN_DAYS")?,
            promise_grace_days: env.parsed("RELANCE_PROMISE_GRACE_DAYS")?,
            handoff_after_days: env.parsed("RELANCE_HANDOFF_AFTER_DAYS")?,
            postal_delivery_days: env.parsed("RELANCE_POSTAL_DELIVERY_DAYS")?,
            call_task_days: env.parsed("RELANCE_CALL_TASK_DAYS")?,
            lease: env.millis("RELANCE_LEASE_MS")?,
            retention: retention(&env)?,
            interrupted_delivery: env.parsed("RELANCE_INTERRUPTED_DELIVERY")?,
            queue_type: env.parsed("RELANCE_QUEUE_TYPE")?,
            queue_delivery_limit: env.parsed("RELANCE_QUEUE_DELIVERY_LIMIT")?,
            queue_expires: match env.get("RELANCE_QUEUE_EXPIRES_MS") {
                None => None,
                Some(_) => Some(env.millis("RELANCE_QUEUE_EXPIRES_MS")?),
            },
            health_addr: match env.get("RELANCE_HEALTH_ADDR") {
                None => None,
                Some(v) => Some(v.parse().map_err(|e| {
                    anyhow!("RELANCE_HEALTH_ADDR={v:?} is not a socket address (e.g. 0.0.0.0:8080): {e}")
                })?),
            },
            console_addr: {
                let v = env.text("RELANCE_CONSOLE_ADDR");
                v.parse().map_err(|e| {
                    anyhow!("RELANCE_CONSOLE_ADDR={v:?} is not a socket address (e.g. 127.0.0.1:8080): {e}")
                })?
            },
            console_addr_set: env.is_set("RELANCE_CONSOLE_ADDR"),
            console_token: env.get("RELANCE_CONSOLE_TOKEN"),
            console_totals_interval: env.millis("RELANCE_CONSOLE_TOTALS_INTERVAL_MS")?,
            portal_addr: {
                let v = env.text("RELANCE_PORTAL_ADDR");
                v.parse().map_err(|e| {
                    anyhow!("RELANCE_PORTAL_ADDR={v:?} is not a socket address (e.g. 127.0.0.1:8090): {e}")
                })?
            },
            portal_addr_set: env.is_set("RELANCE_PORTAL_ADDR"),
            portal_secret: env.get("RELANCE_PORTAL_SECRET").filter(|s| !s.trim().is_empty()),
            portal_url: env
                .get("RELANCE_PORTAL_URL")
                .map(|u| u.trim().trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty()),
            portal_token_days: env.parsed("RELANCE_PORTAL_TOKEN_DAYS")?,
            portal_max_promise_days: env.parsed("RELANCE_PORTAL_MAX_PROMISE_DAYS")?,
            portal_rate_per_minute: env.parsed("RELANCE_PORTAL_RATE_PER_MINUTE")?,
            imap_url: env
                .get("RELANCE_IMAP_URL")
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty()),
            imap_user: env.text("RELANCE_IMAP_USER"),
            imap_password: env.get("RELANCE_IMAP_PASSWORD"),
            imap_mailbox: env.text("RELANCE_IMAP_MAILBOX"),
            imap_interval: env.millis("RELANCE_IMAP_INTERVAL_MS")?,
            loop_stall: match env.millis("RELANCE_LOOP_STALL_MS")? {
                // An idle consumer beats every second: a shorter threshold would blame it.
                stall if stall < Duration::from_secs(2) => {
                    return Err(anyhow!(
                        "RELANCE_LOOP_STALL_MS={} is too short: at least 2000",
                        stall.as_millis()
                    ))
                }
                stall => stall,
            },
            metrics_interval: env.millis("RELANCE_METRICS_INTERVAL_MS")?,
            metrics_exporter: match env.text("RELANCE_METRICS_EXPORTER").as_str() {
                "prometheus" => MetricsExporter::Prometheus,
                "otlp" => MetricsExporter::Otlp,
                "both" => MetricsExporter::Both,
                other => {
                    return Err(anyhow!(
                        "RELANCE_METRICS_EXPORTER={other:?} is not valid: prometheus, otlp or both"
                    ))
                }
            },
            log_json: match env.get("RELANCE_LOG_FORMAT").as_deref() {
                None => None,
                Some("json") => Some(true),
                Some("text") => Some(false),
                Some(other) => {
                    return Err(anyhow!("RELANCE_LOG_FORMAT={other:?} is not valid: json or text"))
                }
            },
            creditor: Creditor {
                id: DEFAULT_CREDITOR_ID.to_string(),
                name: env.text("RELANCE_CREDITOR_NAME"),
                address: env.text("RELANCE_CREDITOR_ADDRESS").replace("\\n", "\n"),
                iban: iban(&env)?,
                bic: env.text("RELANCE_CREDITOR_BIC"),
                email: env.text("RELANCE_CREDITOR_EMAIL"),
                phone: env.text("RELANCE_CREDITOR_PHONE"),
                signature: env.text("RELANCE_CREDITOR_SIGNATURE"),
                signature_en: env.text("RELANCE_CREDITOR_SIGNATURE_EN"),
                signatory: env.text("RELANCE_CREDITOR_SIGNATORY"),
                signatory_title_fr: env.text("RELANCE_CREDITOR_SIGNATORY_TITLE_FR"),
                signatory_title_en: env.text("RELANCE_CREDITOR_SIGNATORY_TITLE_EN"),
                legal_form: env.text("RELANCE_CREDITOR_LEGAL_FORM"),
                share_capital: env.text("RELANCE_CREDITOR_SHARE_CAPITAL"),
                siren: siren(&env)?,
                rcs_city: env.text("RELANCE_CREDITOR_RCS_CITY"),
                reply_to: env.text("RELANCE_CREDITOR_REPLY_TO"),
                mail_from: env.text("RELANCE_MAIL_FROM"),
                ..Creditor::default()
            },
            allow_example_creditor: match env.text("RELANCE_EXAMPLE_CREDITOR").as_str() {
                "refuse" => false,
                "allow" => true,
                other => {
                    return Err(anyhow!(
                        "RELANCE_EXAMPLE_CREDITOR={other:?} is not valid: refuse or allow"
                    ))
                }
            },
            channels: channel_settings(&env)?,
        };
        for (url, key) in [
            (&settings.channels.sms_gateway_url, "RELANCE_SMS_GATEWAY_URL"),
            (&settings.channels.postal_api_url, "RELANCE_POSTAL_API_URL"),
        ] {
            if let Some(url) = url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(anyhow!("{key}={:?} is not an http(s) URL", redact(url)));
                }
            }
        }
        if settings.metrics_exporter.otlp() && settings.otlp_endpoint.is_none() {
            return Err(anyhow!(
                "RELANCE_METRICS_EXPORTER={} needs OTEL_EXPORTER_OTLP_ENDPOINT (where to send them)",
                env.text("RELANCE_METRICS_EXPORTER")
            ));
        }
        if settings.scheduler_batch <= 0 {
            return Err(anyhow!("RELANCE_SCHEDULER_BATCH must be positive"));
        }
        if settings.queue_delivery_limit == 0 {
            return Err(anyhow!("RELANCE_QUEUE_DELIVERY_LIMIT must be positive"));
        }
        if settings.prefetch == 0 {
            return Err(anyhow!("RELANCE_PREFETCH must be positive"));
        }
        if settings.smtp_max_connections > MAX_SMTP_CONNECTIONS {
            return Err(anyhow!(
                "RELANCE_SMTP_MAX_CONNECTIONS must be at most {MAX_SMTP_CONNECTIONS} (0: no limit)"
            ));
        }
        if settings.channels.provider_max_requests > MAX_PROVIDER_REQUESTS {
            return Err(anyhow!(
                "RELANCE_PROVIDER_MAX_REQUESTS must be at most {MAX_PROVIDER_REQUESTS} (0: no limit)"
            ));
        }
        if settings.commit_batch == 0 {
            return Err(anyhow!(
                "RELANCE_COMMIT_BATCH must be positive (1: each handler commits alone)"
            ));
        }
        if settings.commit_lanes == 0 {
            return Err(anyhow!("RELANCE_COMMIT_LANES must be positive"));
        }
        if settings.commit_lanes as u64 >= u64::from(settings.db_pool_size) {
            return Err(anyhow!(
                "RELANCE_COMMIT_LANES ({}) must be less than RELANCE_DB_POOL_SIZE ({}): each lane holds a connection while it commits",
                settings.commit_lanes,
                settings.db_pool_size
            ));
        }
        if settings.retry_base.is_zero() {
            return Err(anyhow!("RELANCE_RETRY_BASE_MS must be positive"));
        }
        if settings.retry_budget.is_zero() {
            return Err(anyhow!("RELANCE_RETRY_BUDGET must be positive, e.g. 1d"));
        }
        if settings.retry_max_delay < settings.retry_base {
            return Err(anyhow!(
                "RELANCE_RETRY_MAX_DELAY ({}) must be at least RELANCE_RETRY_BASE_MS ({} ms)",
                format_duration(settings.retry_max_delay),
                settings.retry_base.as_millis()
            ));
        }
        if settings.promise_grace_days > MAX_PROMISE_GRACE_DAYS {
            return Err(anyhow!(
                "RELANCE_PROMISE_GRACE_DAYS must be at most {MAX_PROMISE_GRACE_DAYS}"
            ));
        }
        if settings.portal_url.is_some() && settings.portal_secret.is_none() {
            return Err(anyhow!(
                "RELANCE_PORTAL_URL is set but RELANCE_PORTAL_SECRET is not: the customer page's links are signed with it"
            ));
        }
        if settings.portal_token_days == 0 {
            return Err(anyhow!("RELANCE_PORTAL_TOKEN_DAYS must be at least 1"));
        }
        // The hand-off must not come before the deadline the formal notice gives.
        if settings.handoff_after_days < settings.channels.formal_notice_days {
            return Err(anyhow!(
                "RELANCE_HANDOFF_AFTER_DAYS ({}) must be at least RELANCE_FORMAL_NOTICE_DAYS ({}): an invoice would be handed off before the deadline its formal notice gives",
                settings.handoff_after_days,
                settings.channels.formal_notice_days
            ));
        }
        // An inbox that forgets a message before its last retry would apply it twice.
        if settings.retention.inbox <= settings.redelivery_span() {
            return Err(anyhow!(
                "RELANCE_INBOX_RETENTION_DAYS ({} days) must be longer than the retries of a message ({} s with RELANCE_MAX_RETRIES and RELANCE_RETRY_BASE_MS)",
                settings.retention.inbox.as_secs() / DAY.as_secs(),
                settings.redelivery_span().as_secs()
            ));
        }
        if settings.postal_delivery_days > 30 {
            return Err(anyhow!("RELANCE_POSTAL_DELIVERY_DAYS must be at most 30"));
        }
        if !(1..=relance_domain::calls::MAX_CALL_TASK_DAYS).contains(&settings.call_task_days) {
            return Err(anyhow!(
                "RELANCE_CALL_TASK_DAYS must be between 1 and {}",
                relance_domain::calls::MAX_CALL_TASK_DAYS
            ));
        }
        Ok(settings)
    }
}

fn channel_settings(env: &Env) -> anyhow::Result<ChannelSettings> {
    Ok(ChannelSettings {
        sms_gateway_url: env.get("RELANCE_SMS_GATEWAY_URL"),
        sms_gateway_token: env.get("RELANCE_SMS_GATEWAY_TOKEN"),
        sms_sender: env.text("RELANCE_SMS_SENDER"),
        sms_dir: PathBuf::from(env.text("RELANCE_SMS_DIR")),
        postal_api_url: env.get("RELANCE_POSTAL_API_URL"),
        postal_api_token: env.get("RELANCE_POSTAL_API_TOKEN"),
        letter_dir: PathBuf::from(env.text("RELANCE_LETTER_DIR")),
        provider_timeout: env.millis("RELANCE_PROVIDER_TIMEOUT_MS")?,
        provider_max_requests: env.parsed("RELANCE_PROVIDER_MAX_REQUESTS")?,
        formal_notice_days: env.parsed("RELANCE_FORMAL_NOTICE_DAYS")?,
        interest_floor_percent: env.optional_decimal("RELANCE_INTEREST_FLOOR_PERCENT")?,
        interest_consumer_percent: env.optional_decimal("RELANCE_INTEREST_CONSUMER_PERCENT")?,
        interest_contract_percent: env.optional_decimal("RELANCE_INTEREST_CONTRACT_PERCENT")?,
        legal_rates: legal_rates(env)?,
    })
}

/// `RELANCE_CREDITOR_IBAN`: an IBAN whose country format and checksum hold (ISO 13616),
/// kept as written; refused at start otherwise, since every message asks to pay into it.
fn iban(env: &Env) -> anyhow::Result<String> {
    let raw = env.text("RELANCE_CREDITOR_IBAN");
    match relance_domain::creditor::check_iban(&raw) {
        Ok(iban) => Ok(iban),
        Err(e) => bail!(
            "RELANCE_CREDITOR_IBAN={raw:?} is not a valid IBAN ({e}): check it against your bank's details"
        ),
    }
}

/// `RELANCE_CREDITOR_SIREN`: nine digits (spaces allowed) whose Luhn checksum holds, or
/// empty; refused at start otherwise, since it is printed on every letter.
fn siren(env: &Env) -> anyhow::Result<String> {
    let raw = env.text("RELANCE_CREDITOR_SIREN");
    match relance_domain::creditor::check_company_number(&raw, 9) {
        Some(digits) => Ok(digits),
        None => bail!("RELANCE_CREDITOR_SIREN={raw:?} is not a SIREN: nine digits with a valid checksum, such as \"123 456 782\""),
    }
}

/// `RELANCE_LEGAL_RATES_FILE` or the built-in table, with the ECB column replaced by
/// `RELANCE_ECB_RATES_FILE` when set. A bad line stops the service at start with `file:line`.
fn legal_rates(env: &Env) -> anyhow::Result<LegalRates> {
    let table = match env.get("RELANCE_LEGAL_RATES_FILE") {
        None => LegalRates::built_in(),
        Some(path) => {
            let source = std::fs::read_to_string(&path)
                .with_context(|| format!("reading RELANCE_LEGAL_RATES_FILE {path}"))?;
            LegalRates::parse(&source, &path).map_err(|e| anyhow!("invalid legal rate table: {e}"))?
        }
    };
    Ok(match env.get("RELANCE_ECB_RATES_FILE") {
        None => table,
        Some(path) => {
            let source = std::fs::read_to_string(&path)
                .with_context(|| format!("reading RELANCE_ECB_RATES_FILE {path}"))?;
            let ecb = RateTable::parse(&source, &path).map_err(|e| anyhow!("invalid ECB rate table: {e}"))?;
            table.with_ecb_changes(&ecb)
        }
    })
}

/// What a service needs to run: settings, the one clock, the validated policies.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    pub clock: SharedClock,
    /// The default policy (`RELANCE_POLICY_FILE`, else the built-in one): that of the default
    /// creditor and of every creditor naming no policy. Read it through
    /// [`Config::policy_for`] for an invoice.
    pub policy: Arc<DunningPolicy>,
    /// The named policies of `RELANCE_POLICY_DIR`, by name (the file's stem).
    pub policies: Arc<BTreeMap<String, Arc<DunningPolicy>>>,
}

/// The named policies of a folder: every `<name>.toml` in it, each validated as
/// `RELANCE_POLICY_FILE` is. A bad one stops here with its file, line and field.
pub fn load_policy_dir(dir: &Path) -> anyhow::Result<BTreeMap<String, Arc<DunningPolicy>>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading RELANCE_POLICY_DIR {}", dir.display()))?;
    let mut policies = BTreeMap::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading RELANCE_POLICY_DIR {}", dir.display()))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
            continue;
        };
        if !is_policy_name(&name) {
            bail!(
                "invalid policy file name {}: a policy's name is 1 to 64 letters, digits, '-', '_' or '.'",
                path.display()
            );
        }
        let source = std::fs::read_to_string(&path)
            .with_context(|| format!("reading policy file {}", path.display()))?;
        let policy = DunningPolicy::parse(&source, &path.display().to_string())
            .map_err(|e| anyhow!("invalid policy: {e}"))?;
        policies.insert(name, Arc::new(policy));
    }
    Ok(policies)
}

/// Whether `name` can name a policy (and a creditor's template folder): 1 to 64 letters,
/// digits, `-`, `_` or `.`, not starting with a dot.
pub fn is_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl Config {
    /// The policy of an invoice whose creditor names `policy` (`None`: the default policy).
    /// A name the deployment does not have (a file removed after the creditor named it)
    /// falls back to the default policy, with an error in the log.
    pub fn policy_for(&self, policy: Option<&str>) -> &DunningPolicy {
        match policy {
            None => &self.policy,
            Some(name) => match self.policies.get(name) {
                Some(policy) => policy,
                None => {
                    tracing::error!(
                        policy = name,
                        "a creditor names a policy this deployment does not have; the default policy applies"
                    );
                    &self.policy
                }
            },
        }
    }

    /// Whether the deployment has the named policy (`RELANCE_POLICY_DIR`).
    pub fn has_policy(&self, name: &str) -> bool {
        self.policies.contains_key(name)
    }

    /// Every policy: the default one, then the named ones with their names.
    pub fn every_policy(&self) -> impl Iterator<Item = (Option<&str>, &DunningPolicy)> {
        std::iter::once((None, self.policy.as_ref())).chain(
            self.policies
                .iter()
                .map(|(name, p)| (Some(name.as_str()), p.as_ref())),
        )
    }

    /// This configuration with `creditor` in place of the default one, and the policy it
    /// names in place of the default policy: what renders the documents of an invoice of
    /// that creditor (the clock is shared).
    pub fn for_creditor(&self, creditor: Creditor) -> Config {
        let mut config = self.clone();
        if !creditor.policy.is_empty() {
            if let Some(policy) = self.policies.get(&creditor.policy) {
                config.policy = policy.clone();
            } else {
                // Logged, and the default policy kept.
                let _ = self.policy_for(Some(&creditor.policy));
            }
        }
        config.settings.creditor = creditor;
        config
    }

    /// Builds the clock and loads the policy named by the settings (or the built-in one).
    /// A bad policy file stops here, with the file, line and field at fault.
    pub fn from_settings(settings: Settings) -> anyhow::Result<Self> {
        let clock: SharedClock = match settings.simulated_clock_start {
            None => Arc::new(SystemClock),
            Some(start) => Arc::new(SimulatedClock::starting_at(start)),
        };
        Self::with_clock(settings, clock)
    }

    /// As [`Config::from_settings`], sharing a clock the caller already has (the demo and
    /// tests run all services on one simulated clock).
    pub fn with_clock(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let policy = match &settings.policy_file {
            None => DunningPolicy::default_policy().map_err(|e| anyhow!("{e}"))?,
            Some(path) => {
                let source = std::fs::read_to_string(path)
                    .with_context(|| format!("reading policy file {}", path.display()))?;
                DunningPolicy::parse(&source, &path.display().to_string())
                    .map_err(|e| anyhow!("invalid policy: {e}"))?
            }
        };
        let policies = match &settings.policy_dir {
            None => BTreeMap::new(),
            Some(dir) => load_policy_dir(dir)?,
        };
        Ok(Self {
            settings,
            clock,
            policy: Arc::new(policy),
            policies: Arc::new(policies),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_go_to_the_read_database_when_one_is_set_and_to_the_database_otherwise() {
        let alone = Settings::from_vars(vars(&[("DATABASE_URL", "postgres://primary/relance")]));
        let Ok(alone) = alone else { panic!("{alone:?}") };
        assert_eq!(alone.reads_database_url(), "postgres://primary/relance");
        let replica = Settings::from_vars(vars(&[
            ("DATABASE_URL", "postgres://primary/relance"),
            (
                "RELANCE_READ_DATABASE_URL",
                "postgres://reader:pw-4711@replica/relance",
            ),
        ]));
        let Ok(replica) = replica else {
            panic!("{replica:?}")
        };
        assert_eq!(replica.database_url, "postgres://primary/relance");
        assert_eq!(
            replica.reads_database_url(),
            "postgres://reader:pw-4711@replica/relance"
        );
        assert!(
            !format!("{replica:?}").contains("pw-4711"),
            "the read database's password is shown: {replica:?}"
        );
    }

    #[test]
    fn a_clusters_nodes_are_shown_without_their_passwords() {
        let s = Settings::from_vars(vars(&[(
            "AMQP_URL",
            "amqp://relance:pw-1@rabbit-1:5672/%2f, amqp://relance:pw-2@rabbit-2:5672/%2f",
        )]));
        let Ok(s) = s else { panic!("{s:?}") };
        let shown = format!("{s:?}");
        assert!(
            shown.contains("amqp://***@rabbit-1:5672/%2f,amqp://***@rabbit-2:5672/%2f"),
            "{shown}"
        );
        assert!(!shown.contains("pw-"), "{shown}");
    }

    #[test]
    fn defaults_point_at_the_local_services() {
        let s = Settings::from_vars(vars(&[]));
        let Ok(s) = s else { panic!("{s:?}") };
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(s.namespace, "relance");
        assert_eq!(s.smtp_url, None);
        assert_eq!(s.simulated_clock_start, None);
        assert_eq!(s.promise_grace_days, 3);
        assert_eq!(s.call_task_days, 5);
        assert_eq!(s.retry_budget, Duration::from_secs(86_400));
        assert_eq!(s.retry_max_delay, Duration::from_secs(3600));
        assert_eq!(s.max_retries, NO_RETRY_CAP, "no cap on the count unless set");
    }

    #[test]
    fn the_retry_budget_reads_seconds_or_a_unit_and_a_bad_one_names_its_variable() {
        for (text, want) in [
            ("86400", 86_400_000),
            ("90s", 90_000),
            ("30m", 1_800_000),
            ("36h", 129_600_000),
            ("2d", 172_800_000),
            ("500ms", 500),
        ] {
            let s = Settings::from_vars(vars(&[("RELANCE_RETRY_BUDGET", text)]));
            let Ok(s) = s else { panic!("{text}: {s:?}") };
            assert_eq!(s.retry_budget, Duration::from_millis(want), "{text}");
        }
        for (key, bad) in [
            ("RELANCE_RETRY_BUDGET", "1 week"),
            ("RELANCE_RETRY_BUDGET", "0"),
            ("RELANCE_RETRY_MAX_DELAY", "-5s"),
            ("RELANCE_RETRY_MAX_DELAY", "10ms"),
        ] {
            let Err(e) = Settings::from_vars(vars(&[(key, bad)])) else {
                panic!("{key}={bad} accepted")
            };
            assert!(e.to_string().contains(key), "{e}");
        }
        let s = Settings::from_vars(vars(&[("RELANCE_MAX_RETRIES", "3")]));
        let Ok(s) = s else { panic!("{s:?}") };
        assert_eq!(s.max_retries, 3, "still a cap when set");
        for d in [86_400_000, 129_600_000, 90_000, 1500, 100] {
            let d = Duration::from_millis(d);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
    }

    #[test]
    fn the_outbox_relay_is_on_unless_turned_off_and_another_word_is_refused() {
        let on = Settings::from_vars(vars(&[]));
        assert!(matches!(on, Ok(ref s) if s.outbox_relay), "{on:?}");
        let off = Settings::from_vars(vars(&[("RELANCE_OUTBOX_RELAY", "off")]));
        assert!(matches!(off, Ok(ref s) if !s.outbox_relay), "{off:?}");
        let Err(e) = Settings::from_vars(vars(&[("RELANCE_OUTBOX_RELAY", "no")])) else {
            panic!("RELANCE_OUTBOX_RELAY=no accepted")
        };
        assert!(e.to_string().contains("RELANCE_OUTBOX_RELAY"), "{e}");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let e = Settings::from_vars(vars(&[("RELANCE_SCHEDULER_INTERVAL_MS", "soon")]));
        assert!(format!("{:?}", e.err()).contains("RELANCE_SCHEDULER_INTERVAL_MS"));
        let e = Settings::from_vars(vars(&[("RELANCE_CLOCK", "sundial")]));
        assert!(format!("{:?}", e.err()).contains("RELANCE_CLOCK"));
        let e = Settings::from_vars(vars(&[("RELANCE_PROMISE_GRACE_DAYS", "-1")]));
        assert!(format!("{:?}", e.err()).contains("RELANCE_PROMISE_GRACE_DAYS"));
        let e = Settings::from_vars(vars(&[("RELANCE_PROMISE_GRACE_DAYS", "61")]));
        assert!(format!("{:?}", e.err()).contains("RELANCE_PROMISE_GRACE_DAYS"));
        // A hand-off before the formal notice's deadline is refused.
        let e = Settings::from_vars(vars(&[
            ("RELANCE_HANDOFF_AFTER_DAYS", "5"),
            ("RELANCE_FORMAL_NOTICE_DAYS", "8"),
        ]));
        let e = format!("{:?}", e.err());
        assert!(
            e.contains("RELANCE_HANDOFF_AFTER_DAYS (5) must be at least RELANCE_FORMAL_NOTICE_DAYS (8)"),
            "{e}"
        );
        let ok = Settings::from_vars(vars(&[
            ("RELANCE_HANDOFF_AFTER_DAYS", "15"),
            ("RELANCE_POSTAL_DELIVERY_DAYS", "3"),
        ]));
        assert!(ok
            .as_ref()
            .is_ok_and(|s| s.handoff_after_days == 15 && s.postal_delivery_days == 3));
        for bad in ["0", "61", "a week"] {
            let e = Settings::from_vars(vars(&[("RELANCE_CALL_TASK_DAYS", bad)]));
            assert!(
                format!("{:?}", e.err()).contains("RELANCE_CALL_TASK_DAYS"),
                "{bad}"
            );
        }
    }

    #[test]
    fn retention_defaults_to_a_day_of_outbox_and_thirty_days_of_inbox() {
        let s = Settings::from_vars(vars(&[])).unwrap();
        assert_eq!(s.retention.outbox, Duration::from_secs(24 * 3600));
        assert_eq!(s.retention.inbox, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(s.retention.batch, 10_000);
        for (key, bad) in [
            ("RELANCE_OUTBOX_RETENTION_HOURS", "0"),
            ("RELANCE_INBOX_RETENTION_DAYS", "0"),
            ("RELANCE_INBOX_RETENTION_DAYS", "a month"),
            ("RELANCE_RETENTION_BATCH", "0"),
            ("RELANCE_RETENTION_INTERVAL_MS", "0"),
        ] {
            let e = Settings::from_vars(vars(&[(key, bad)]));
            assert!(format!("{:?}", e.err()).contains(key), "{key}={bad}");
        }
        // Forty retries of up to an hour each outlast a one-day inbox: refused at start.
        let e = Settings::from_vars(vars(&[
            ("RELANCE_MAX_RETRIES", "40"),
            ("RELANCE_INBOX_RETENTION_DAYS", "1"),
        ]));
        let e = format!("{:?}", e.err());
        assert!(
            e.contains("RELANCE_INBOX_RETENTION_DAYS (1 days) must be longer"),
            "{e}"
        );
        let ok = Settings::from_vars(vars(&[
            ("RELANCE_MAX_RETRIES", "40"),
            ("RELANCE_INBOX_RETENTION_DAYS", "3"),
        ]));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn a_sender_has_sixteen_smtp_connections_for_sixty_four_messages_unless_told_otherwise() {
        let s = Settings::from_vars(vars(&[])).unwrap();
        assert_eq!((s.smtp_max_connections, s.prefetch), (16, 64));
        let none = Settings::from_vars(vars(&[("RELANCE_SMTP_MAX_CONNECTIONS", "0")])).unwrap();
        assert_eq!(none.smtp_max_connections, 0, "0: no limit");
        for bad in ["10001", "-1", "many"] {
            let e = Settings::from_vars(vars(&[("RELANCE_SMTP_MAX_CONNECTIONS", bad)]));
            assert!(
                format!("{:?}", e.err()).contains("RELANCE_SMTP_MAX_CONNECTIONS"),
                "RELANCE_SMTP_MAX_CONNECTIONS={bad}"
            );
        }
    }

    #[test]
    fn a_sender_has_sixteen_requests_at_its_sms_gateway_or_postal_service_unless_told_otherwise() {
        let s = Settings::from_vars(vars(&[])).unwrap();
        assert_eq!(s.channels.provider_max_requests, 16);
        let none = Settings::from_vars(vars(&[("RELANCE_PROVIDER_MAX_REQUESTS", "0")])).unwrap();
        assert_eq!(none.channels.provider_max_requests, 0, "0: no limit");
        let two = Settings::from_vars(vars(&[("RELANCE_PROVIDER_MAX_REQUESTS", "2")])).unwrap();
        assert_eq!(two.channels.provider_max_requests, 2);
        for bad in ["10001", "-1", "many"] {
            let e = Settings::from_vars(vars(&[("RELANCE_PROVIDER_MAX_REQUESTS", bad)]));
            assert!(
                format!("{:?}", e.err()).contains("RELANCE_PROVIDER_MAX_REQUESTS"),
                "RELANCE_PROVIDER_MAX_REQUESTS={bad}"
            );
        }
    }

    #[test]
    fn secrets_can_come_from_files() {
        let path = std::env::temp_dir().join(format!("relance-secret-{}", std::process::id()));
        std::fs::write(&path, "smtp://relance:s3cret@mail.example:587\n").unwrap();
        let file = path.to_string_lossy().to_string();
        let s = Settings::from_vars(vars(&[("SMTP_URL_FILE", &file)])).unwrap();
        assert_eq!(
            s.smtp_url.as_deref(),
            Some("smtp://relance:s3cret@mail.example:587")
        );
        assert!(!format!("{s:?}").contains("s3cret"));
        let both = Settings::from_vars(vars(&[("SMTP_URL_FILE", &file), ("SMTP_URL", "smtp://x")]));
        assert!(format!("{:?}", both.err()).contains("SMTP_URL_FILE"));
        std::fs::remove_file(&path).unwrap();
        let missing = Settings::from_vars(vars(&[("DATABASE_URL_FILE", "/nonexistent/relance-db-url")]));
        assert!(format!("{:?}", missing.err()).contains("DATABASE_URL_FILE"));
    }

    #[test]
    fn the_metrics_exporter_is_one_of_three_and_otlp_needs_an_endpoint() {
        let s = Settings::from_vars(vars(&[])).unwrap();
        assert_eq!(s.metrics_exporter, MetricsExporter::Prometheus);
        let s = Settings::from_vars(vars(&[
            ("RELANCE_METRICS_EXPORTER", "both"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ]))
        .unwrap();
        assert!(s.metrics_exporter.otlp() && s.metrics_exporter.prometheus());
        let e = Settings::from_vars(vars(&[("RELANCE_METRICS_EXPORTER", "otlp")]));
        assert!(format!("{:?}", e.err()).contains("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let e = Settings::from_vars(vars(&[("RELANCE_METRICS_EXPORTER", "statsd")]));
        assert!(format!("{:?}", e.err()).contains("RELANCE_METRICS_EXPORTER"));
    }

    #[test]
    fn health_address_is_checked() {
        let s = Settings::from_vars(vars(&[("RELANCE_HEALTH_ADDR", "0.0.0.0:8080")])).unwrap();
        assert_eq!(s.health_addr.map(|a| a.port()), Some(8080));
        let e = Settings::from_vars(vars(&[("RELANCE_HEALTH_ADDR", "localhost")]));
        assert!(format!("{:?}", e.err()).contains("RELANCE_HEALTH_ADDR"));
    }

    #[test]
    fn loop_stall_and_log_format_are_checked() {
        let s = Settings::from_vars(vars(&[])).unwrap();
        assert_eq!(s.loop_stall, Duration::from_secs(300));
        assert_eq!(s.log_json, None);
        let s = Settings::from_vars(vars(&[("RELANCE_LOG_FORMAT", "json")])).unwrap();
        assert_eq!(s.log_json, Some(true));
        let e = Settings::from_vars(vars(&[("RELANCE_LOG_FORMAT", "yaml")]));
        assert!(format!("{:?}", e.err()).contains("RELANCE_LOG_FORMAT"));
        let e = Settings::from_vars(vars(&[("RELANCE_LOOP_STALL_MS", "500")]));
        assert!(format!("{:?}", e.err()).contains("at least 2000"));
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let s = Settings::from_vars(vars(&[("AMQP_URL", "amqp://user:s3cret@broker:5672/%2f")]));
        let Ok(s) = s else { panic!("{s:?}") };
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("broker:5672"), "{shown}");
    }

    #[test]
    fn an_ecb_rate_file_replaces_the_built_in_table_and_a_bad_one_is_refused_with_its_line() {
        let dir = std::env::temp_dir().join(format!("relance-ecb-{}-{}", std::process::id(), line!()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("ecb.txt");
        let path_text = path.display().to_string();
        let _ = std::fs::write(&path, "# ECB MRO\n2025-06-11 2.15\n2025-12-31 1.90\n");
        let s = Settings::from_vars(vars(&[("RELANCE_ECB_RATES_FILE", &path_text)]));
        let Ok(s) = s else { panic!("{s:?}") };
        // The half-year's reference is the rate in force on its first day.
        let rates = s.channels.interest_terms().rates;
        let day = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
        assert_eq!(
            rates.on(day(2026, 3, 1)).rates.ecb_reference,
            rust_decimal::Decimal::new(190, 2)
        );
        assert_eq!(
            rates.on(day(2025, 12, 1)).rates.ecb_reference,
            rust_decimal::Decimal::new(215, 2)
        );

        let _ = std::fs::write(&path, "2025-06-11 2.15\n2026-02-04 1,90\n");
        let e = format!(
            "{:?}",
            Settings::from_vars(vars(&[("RELANCE_ECB_RATES_FILE", &path_text)])).err()
        );
        assert!(e.contains("ecb.txt:2: \"1,90\" is not a rate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_creditors_signature_and_legal_mentions_follow_the_settings_and_the_language() {
        let Ok(s) = Settings::from_vars(vars(&[])) else {
            panic!("default settings")
        };
        assert_eq!(s.creditor.signature_in("fr"), "Le service comptabilité");
        assert_eq!(s.creditor.signature_in("en"), "Accounts department");
        assert_eq!(
            s.creditor.legal_mentions_in("fr"),
            "Exemple SAS, SAS au capital de 10 000 € – RCS Paris 123 456 782"
        );
        let Ok(s) = Settings::from_vars(vars(&[
            ("RELANCE_CREDITOR_SIGNATORY", "Jeanne Dupont"),
            (
                "RELANCE_CREDITOR_SIGNATORY_TITLE_FR",
                "Responsable du recouvrement",
            ),
            ("RELANCE_CREDITOR_SIGNATORY_TITLE_EN", "Credit manager"),
            ("RELANCE_CREDITOR_SIREN", "552 100 554"),
            ("RELANCE_CREDITOR_SHARE_CAPITAL", "1 000 000 €"),
        ])) else {
            panic!("signatory settings")
        };
        assert_eq!(
            s.creditor.signature_in("fr"),
            "Jeanne Dupont, Responsable du recouvrement"
        );
        assert_eq!(s.creditor.signature_in("en"), "Jeanne Dupont, Credit manager");
        assert_eq!(
            s.creditor.legal_mentions_in("en"),
            "Exemple SAS, SAS with a share capital of 1 000 000 € – RCS Paris 552 100 554"
        );
        for bad in ["123456789", "12345678", "12345678a"] {
            let e = format!(
                "{:?}",
                Settings::from_vars(vars(&[("RELANCE_CREDITOR_SIREN", bad)])).err()
            );
            assert!(
                e.contains("RELANCE_CREDITOR_SIREN") && e.contains("is not a SIREN"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_legal_rate_file_replaces_the_table_and_a_missing_half_year_is_warned_about() {
        let dir = std::env::temp_dir().join(format!("relance-legal-{}-{}", std::process::id(), line!()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("legal.txt");
        let path_text = path.display().to_string();
        let day = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
        // The built-in table: a day past its last half-year is warned about, with both names.
        let Ok(s) = Settings::from_vars(vars(&[])) else {
            panic!("default settings")
        };
        let last = s.channels.legal_rates.last();
        let after = day(last.year + 1, 3, 1);
        let warnings = s.channels.interest_warnings(after);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(&format!("ends with {last}")), "{warnings:?}");
        assert!(warnings[0].contains("RELANCE_LEGAL_RATES_FILE"), "{warnings:?}");
        assert!(s.channels.interest_warnings(last.first_day()).is_empty());
        // A file that goes further: no warning, and its rates are used.
        let next = last.next();
        let _ = std::fs::write(&path, format!("{last} 2.15 6.67 2.62\n{next} 2.00 6.40 2.40\n"));
        let Ok(s) = Settings::from_vars(vars(&[("RELANCE_LEGAL_RATES_FILE", &path_text)])) else {
            panic!("a good legal rate file")
        };
        assert!(s.channels.interest_warnings(next.first_day()).is_empty());
        assert_eq!(
            s.channels
                .interest_terms()
                .rates
                .on(next.first_day())
                .rates
                .floor(),
            rust_decimal::Decimal::new(720, 2)
        );
        // A bad line stops the start, naming the file and the line.
        let _ = std::fs::write(&path, format!("{last} 2.15 6.67 2.62\n{next} 2.00 6,40 2.40\n"));
        let e = format!(
            "{:?}",
            Settings::from_vars(vars(&[("RELANCE_LEGAL_RATES_FILE", &path_text)])).err()
        );
        assert!(
            e.contains("legal.txt:2: the legal rate for individuals \"6,40\""),
            "{e}"
        );
        // The deprecated single rates still apply, with a warning each.
        let Ok(s) = Settings::from_vars(vars(&[
            ("RELANCE_INTEREST_FLOOR_PERCENT", "9"),
            ("RELANCE_INTEREST_CONSUMER_PERCENT", "3"),
        ])) else {
            panic!("deprecated settings")
        };
        assert_eq!(s.channels.interest_warnings(last.first_day()).len(), 2);
        let e = format!(
            "{:?}",
            Settings::from_vars(vars(&[("RELANCE_INTEREST_CONTRACT_PERCENT", "1e1")])).err()
        );
        assert!(
            e.contains("RELANCE_INTEREST_CONTRACT_PERCENT=\"1e1\" is not valid"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn named_policies_come_from_relance_policy_dir_and_a_creditor_follows_its_own() {
        let dir = std::env::temp_dir().join(format!("relance-policy-dir-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let default = relance_domain::policy::DEFAULT_POLICY_TOML;
        let _ = std::fs::write(
            dir.join("early.toml"),
            default.replace("send_time = \"09:00\"", "send_time = \"07:30\""),
        );
        let _ = std::fs::write(dir.join("README.md"), "not a policy");
        let s = Settings::from_vars(vars(&[("RELANCE_POLICY_DIR", &dir.display().to_string())]));
        let Ok(s) = s else { panic!("{s:?}") };
        let config = Config::from_settings(s);
        let Ok(config) = config else { panic!("{config:?}") };
        assert_eq!(config.policies.keys().collect::<Vec<_>>(), ["early"]);
        assert!(config.has_policy("early") && !config.has_policy("README"));
        let time = |p: &DunningPolicy| p.send_time.format("%H:%M").to_string();
        assert_eq!(time(config.policy_for(None)), "09:00");
        assert_eq!(time(config.policy_for(Some("early"))), "07:30");
        // A name the deployment lost: the default policy.
        assert_eq!(time(config.policy_for(Some("gone"))), "09:00");
        let creditor = Creditor {
            id: "durand".into(),
            policy: "early".into(),
            ..Creditor::default()
        };
        assert_eq!(time(&config.for_creditor(creditor).policy), "07:30");
        assert_eq!(time(&config.for_creditor(Creditor::default()).policy), "09:00");
        assert_eq!(config.every_policy().count(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bad_policy_file_is_refused_at_start_with_its_file_line_and_field() {
        let dir = std::env::temp_dir().join(format!("relance-policy-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("policy.toml");
        let default = relance_domain::policy::DEFAULT_POLICY_TOML;
        let line_of = |source: &str, start: &str| {
            source
                .lines()
                .position(|l| l.starts_with(start))
                .map(|i| i + 1)
                .unwrap_or(0)
        };
        // (the file, the start of the line at fault, field: message)
        let cases = [
            (
                default.replace("send_time = \"09:00\"", "send_time = \"25:99\""),
                "send_time",
                "send_time: \"25:99\" is not a time of day as HH:MM",
            ),
            (
                default.replace("EUR = \"10.00\"", "EUR = 10.0"),
                "EUR = 10.0",
                "minimum_amount.EUR: expected a decimal amount as a string such as \"10.00\", found the float 10.0",
            ),
            (
                default.replace("send_time = \"09:00\"", "send_time = \"09:00\"\nsend_day = \"tue\""),
                "send_day",
                "send_day: unknown field \"send_day\" (expected one of: send_time, thanks_template, \
                 default_window, windows, minimum_amount, grouping, segments, indemnity_equivalent, payment_plans, fallback, fallback_templates, approvals, replies)",
            ),
        ];
        for (source, at, error) in cases {
            let line = line_of(&source, at);
            let _ = std::fs::write(&path, &source);
            let s = Settings::from_vars(vars(&[("RELANCE_POLICY_FILE", &path.display().to_string())]));
            let Ok(s) = s else { panic!("{s:?}") };
            let e = Config::from_settings(s)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert_eq!(e, format!("invalid policy: {}:{line}: {error}", path.display()));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
