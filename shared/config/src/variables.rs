//! The declaration of every environment variable relance reads: its name, its default and a
//! one-line help, written once in [`VARIABLES`]. [`crate::Settings::from_vars`] takes its
//! defaults from here, `relance --help` lists it through [`SettingsArgs`], and a test holds the
//! README's configuration table to it. It parses and checks no value: that is `lib.rs`'s work.

use clap::{Arg, ArgMatches, Command};

/// What a variable means when it is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariableDefault {
    /// This value, parsed as if it had been set.
    Value(&'static str),
    /// The empty text (a part left out of messages).
    Empty,
    /// Nothing: the feature it configures is off, or another variable decides.
    Unset,
    /// Nothing, and what is used instead, in words (`now`, `built-in templates`).
    Described(&'static str),
}

impl VariableDefault {
    /// The value [`crate::Settings::from_vars`] reads when the variable is unset or empty.
    pub fn value(self) -> Option<&'static str> {
        match self {
            Self::Value(value) => Some(value),
            Self::Empty | Self::Unset | Self::Described(_) => None,
        }
    }

    /// The default as the README's configuration table writes it.
    pub fn as_markdown(self) -> String {
        match self {
            Self::Value(value) => format!("`{value}`"),
            Self::Empty => "empty".to_string(),
            Self::Unset => "unset".to_string(),
            Self::Described(words) => words.to_string(),
        }
    }

    /// The default as `--help` shows it.
    fn as_help(self) -> String {
        match self {
            Self::Value(value) => value.to_string(),
            Self::Empty => "empty".to_string(),
            Self::Unset => "unset".to_string(),
            Self::Described(words) => words.replace('`', ""),
        }
    }
}

/// Who reads a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBy {
    /// [`crate::Settings`]: also a flag of `relance`, which overrides the variable.
    Settings,
    /// The telemetry crate and its exporter, straight from the process environment: listed
    /// by `--help`, no flag.
    Telemetry,
}

/// One environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    pub default: VariableDefault,
    /// One line for `--help`; the README's table says more.
    pub help: &'static str,
    /// A secret: `<name>_FILE` may name a file holding the value instead (Docker and
    /// Kubernetes secrets).
    pub secret: bool,
    pub read_by: ReadBy,
}

const fn setting(name: &'static str, default: VariableDefault, help: &'static str) -> Variable {
    Variable {
        name,
        default,
        help,
        secret: false,
        read_by: ReadBy::Settings,
    }
}

const fn secret(name: &'static str, default: VariableDefault, help: &'static str) -> Variable {
    Variable {
        secret: true,
        ..setting(name, default, help)
    }
}

const fn telemetry(name: &'static str, default: VariableDefault, help: &'static str) -> Variable {
    Variable {
        read_by: ReadBy::Telemetry,
        ..setting(name, default, help)
    }
}

use VariableDefault::{Described, Empty, Unset, Value};

/// Every variable, in the order of the README's table.
pub const VARIABLES: &[Variable] = &[
    secret("DATABASE_URL", Value(crate::DEFAULT_DATABASE_URL), "PostgreSQL database"),
    secret("RELANCE_READ_DATABASE_URL", Unset, "PostgreSQL server for reads that may lag a moment (a streaming replica of DATABASE_URL): the console's pages, the collections gauges' figures and the read-only commands; unset: DATABASE_URL"),
    secret("AMQP_URL", Value(crate::DEFAULT_AMQP_URL), "RabbitMQ broker; several URLs separated by commas (a cluster's nodes) are tried in order at each connection"),
    secret("SMTP_URL", Unset, "SMTP server as a lettre URL; unset: emails are written as .eml files to RELANCE_MAIL_DIR"),
    setting("RELANCE_SMTP_CA_FILE", Unset, "PEM file of certificate authorities trusted for the SMTP server besides the public ones (a private relay)"),
    setting("RELANCE_SMTP_POOL_SIZE", Value("16"), "SMTP connections kept open between messages, for the next ones (0: one connection per message)"),
    setting("RELANCE_SMTP_MAX_CONNECTIONS", Value("16"), "SMTP connections a sender has open at once at most: a message finding them all in use waits for one (0: no limit)"),
    setting("RELANCE_MAIL_DIR", Value("out/mail"), "folder for .eml files when SMTP_URL is unset"),
    setting("RELANCE_NAMESPACE", Value("relance"), "prefix of every exchange and queue"),
    setting("RELANCE_POLICY_FILE", Described("built-in `shared/domain/policies/default.toml`"), "dunning policy (TOML)"),
    setting("RELANCE_POLICY_DIR", Unset, "folder of further named policies (<name>.toml each) that creditors name"),
    setting("RELANCE_TEMPLATE_DIR", Described("built-in templates"), "folder replacing the built-in templates, same layout"),
    setting("RELANCE_CREDITOR_TEMPLATE_DIR", Unset, "folder of creditors' own template folders (<name>/ each, same layout) that creditors name"),
    setting("RELANCE_CLOCK", Value("system"), "system, simulated (one process) or database (shared by several processes)"),
    setting("RELANCE_CLOCK_START", Described("now"), "start of the simulated clock, RFC 3339"),
    setting("RELANCE_SCHEDULER_INTERVAL_MS", Value("1000"), "pause between scheduler passes over due steps"),
    setting("RELANCE_SCHEDULER_BATCH", Value("200"), "invoices claimed per scheduler pass"),
    setting("RELANCE_DB_POOL_SIZE", Value("8"), "database connections per service: the group commit's lanes (RELANCE_COMMIT_LANES), the handlers' reads, the outbox relay and the scheduler's jobs share them; handlers hold none across a delivery, so it need not match RELANCE_PREFETCH"),
    setting("RELANCE_COMMIT_BATCH", Value("32"), "the renderer's and sender's handlers commit their database work together (group commit): at most this many handlers' work in one transaction; 1: each its own"),
    setting("RELANCE_COMMIT_LANES", Value("2"), "group-commit transactions the renderer and sender each run at once (one database connection each while it runs)"),
    setting("RELANCE_DB_ACQUIRE_TIMEOUT_MS", Value("10000"), "how long a handler (or the outbox relay) waits for a database connection; then a busy pool is tried again soon, an unreachable database waited out"),
    setting("RELANCE_HEALTH_ADDR", Unset, "where `relance run` serves /health/live, /health/ready and /metrics, e.g. 0.0.0.0:8080"),
    setting("RELANCE_CONSOLE_ADDR", Value("127.0.0.1:8080"), "where `relance run console` serves the collections console; `run all` includes the console only when this is set"),
    secret("RELANCE_CONSOLE_TOKEN", Unset, "bearer token (or basic-auth password) the console requires; required when it listens on a non-loopback address"),
    setting("RELANCE_CONSOLE_TOTALS_INTERVAL_MS", Value("60000"), "how often the console recomputes its tracking table's snapshot (totals, derived statuses) and then its kept figures (aging, DSO, effectiveness)"),
    setting("RELANCE_PORTAL_ADDR", Value("127.0.0.1:8090"), "where `relance run portal` serves the customer page; `run all` includes it only when this is set"),
    secret("RELANCE_PORTAL_SECRET", Unset, "key signing the customer page's links (HMAC-SHA256); required by `relance run portal` and `relance portal link`"),
    setting("RELANCE_PORTAL_URL", Unset, "public base URL of the customer page (e.g. https://pay.example.fr); when set, messages' payment links point to the invoice's page"),
    setting("RELANCE_PORTAL_TOKEN_DAYS", Value("60"), "days a customer-page link stays valid"),
    setting("RELANCE_PORTAL_MAX_PROMISE_DAYS", Value("30"), "latest date a customer may promise on the page, in days from today"),
    setting("RELANCE_PORTAL_RATE_PER_MINUTE", Value("60"), "requests a minute the customer page answers per link and per address before 429"),
    secret("RELANCE_IMAP_URL", Unset, "reply-to mailbox read by `relance run replies` (imap://host:143 or imaps://host:993); `run all` includes the reader only when this is set"),
    setting("RELANCE_IMAP_USER", Empty, "the mailbox's login"),
    secret("RELANCE_IMAP_PASSWORD", Unset, "the mailbox's password"),
    setting("RELANCE_IMAP_MAILBOX", Value("INBOX"), "folder the replies reader reads"),
    setting("RELANCE_IMAP_INTERVAL_MS", Value("60000"), "pause between two readings of the mailbox"),
    setting("RELANCE_LOOP_STALL_MS", Value("300000"), "a loop (scheduler pass, outbox relay, a consumer) not completed for this long makes /health/ready answer 503, naming it"),
    setting("RELANCE_METRICS_INTERVAL_MS", Value("30000"), "how often one scheduler copy computes the collections gauges of /metrics"),
    setting("RELANCE_OUTBOX_INTERVAL_MS", Value("200"), "polling interval of the outbox relay, a fallback: each commit to the outbox wakes the leading relay (LISTEN/NOTIFY); the other processes' relays stand by and try to lead this often"),
    setting("RELANCE_OUTBOX_COALESCE_MS", Value("10"), "after a commit's notification, the leading relay waits this long for the commits that follow and publishes them in one batch"),
    setting("RELANCE_OUTBOX_RELAY", Value("on"), "on: this process relays the outbox to the broker (one relay per process: `run all` runs one for all its services); off: this copy relays nothing, another must"),
    setting("RELANCE_PREFETCH", Value("64"), "messages each consumer handles at once"),
    setting("RELANCE_RETRY_BUDGET", Value("1d"), "how long a transiently failing message keeps being retried (seconds, or a number with ms, s, m, h or d)"),
    setting("RELANCE_RETRY_MAX_DELAY", Value("1h"), "longest wait between two attempts (same format; at least RELANCE_RETRY_BASE_MS)"),
    setting("RELANCE_RETRY_BASE_MS", Value("1000"), "first retry delay; doubles at each retry up to RELANCE_RETRY_MAX_DELAY"),
    setting("RELANCE_MAX_RETRIES", Unset, "an additional cap on the count of retries; unset: the budget alone decides"),
    setting("RELANCE_PAY_WITHIN_DAYS", Value("8"), "days given to pay in a firm reminder"),
    setting("RELANCE_PROMISE_GRACE_DAYS", Value("3"), "days (0 to 60) after a promised payment date before the sequence resumes"),
    setting("RELANCE_HANDOFF_INTERVAL_MS", Value("300000"), "pause between two hand-off sweeps (hand-offs are counted in days)"),
    setting("RELANCE_HANDOFF_AFTER_DAYS", Value("8"), "days after the last step before an unpaid invoice is handed off; at least RELANCE_FORMAL_NOTICE_DAYS"),
    setting("RELANCE_POSTAL_DELIVERY_DAYS", Value("7"), "days added to the above when the last step went by post"),
    setting("RELANCE_CALL_TASK_DAYS", Value("5"), "days (1 to 60) a call task stays open after the day it opened"),
    setting("RELANCE_LEASE_MS", Value("120000"), "time after which a step left in flight is picked up by the sweep"),
    setting("RELANCE_OUTBOX_RETENTION_HOURS", Value("24"), "published outbox rows older than this are deleted"),
    setting("RELANCE_INBOX_RETENTION_DAYS", Value("30"), "records of applied messages older than this are deleted; longer than a message's retries"),
    setting("RELANCE_RETENTION_INTERVAL_MS", Value("600000"), "pause between two retention passes"),
    setting("RELANCE_RETENTION_BATCH", Value("10000"), "rows deleted per statement"),
    setting("RELANCE_INTERRUPTED_DELIVERY", Value("report"), "a delivery interrupted after it was sent: report (alias fail) or resend"),
    setting("RELANCE_QUEUE_TYPE", Value("quorum"), "quorum (replicated across a RabbitMQ cluster) or classic (the queues of relance before quorum queues; see docs/scaling.md to migrate)"),
    setting("RELANCE_QUEUE_DELIVERY_LIMIT", Value("20"), "quorum queues: times a message may come back unsettled (its consumer died holding it) before the broker dead-letters it"),
    setting("RELANCE_QUEUE_EXPIRES_MS", Unset, "queues unused this long are deleted by the broker (tests only)"),
    setting("RELANCE_CREDITOR_NAME", Value("Exemple SAS"), "your company, printed on every message"),
    setting("RELANCE_CREDITOR_ADDRESS", Value("1 rue de l'Exemple\\n75001 Paris"), "postal address; \\n separates lines"),
    setting("RELANCE_CREDITOR_IBAN", Value("FR76 3000 6000 0112 3456 7890 189"), "account to pay to; its checksum is checked at start"),
    setting("RELANCE_CREDITOR_BIC", Value("AGRIFRPP"), "BIC (omitted from messages when empty)"),
    setting("RELANCE_CREDITOR_EMAIL", Value("compta@exemple.test"), "contact address shown in messages"),
    setting("RELANCE_CREDITOR_PHONE", Empty, "contact phone shown in messages"),
    setting("RELANCE_CREDITOR_SIGNATURE", Value("Le service comptabilité"), "signature of French messages when no signatory is named"),
    setting("RELANCE_CREDITOR_SIGNATURE_EN", Value("Accounts department"), "the same, for English messages"),
    setting("RELANCE_CREDITOR_SIGNATORY", Empty, "the person who signs; messages are then signed \"name, title\""),
    setting("RELANCE_CREDITOR_SIGNATORY_TITLE_FR", Empty, "the signatory's title in French"),
    setting("RELANCE_CREDITOR_SIGNATORY_TITLE_EN", Empty, "the signatory's title in English"),
    setting("RELANCE_CREDITOR_LEGAL_FORM", Value("SAS"), "legal form, printed with the legal mentions"),
    setting("RELANCE_CREDITOR_SHARE_CAPITAL", Value("10 000 €"), "share capital, as printed"),
    setting("RELANCE_CREDITOR_SIREN", Value("123 456 782"), "SIREN: nine digits with a valid checksum; empty: left out"),
    setting("RELANCE_CREDITOR_RCS_CITY", Value("Paris"), "city of the trade and companies register (RCS)"),
    setting("RELANCE_CREDITOR_REPLY_TO", Value("compta@exemple.test"), "Reply-To of every email"),
    setting("RELANCE_EXAMPLE_CREDITOR", Value("refuse"), "refuse: `relance run` will not start while the creditor is the example one (Exemple SAS, its IBAN or SIREN); allow: for demos and tests"),
    setting("RELANCE_MAIL_FROM", Value("Exemple SAS <relance@exemple.test>"), "From of every email; its domain ends each Message-ID"),
    secret("RELANCE_SMS_GATEWAY_URL", Unset, "HTTP(S) endpoint of the SMS gateway; unset: text messages go to RELANCE_SMS_DIR"),
    secret("RELANCE_SMS_GATEWAY_TOKEN", Unset, "bearer token of the SMS gateway"),
    setting("RELANCE_SMS_SENDER", Empty, "sender name or number shown on the phone; empty: the gateway's default"),
    setting("RELANCE_SMS_DIR", Value("out/sms"), "folder of <date>/sms.jsonl when no gateway is set"),
    secret("RELANCE_POSTAL_API_URL", Unset, "HTTP(S) endpoint of a print-and-post API; unset: letters go to RELANCE_LETTER_DIR"),
    secret("RELANCE_POSTAL_API_TOKEN", Unset, "bearer token of the postal API"),
    setting("RELANCE_LETTER_DIR", Value("out/letters"), "folder of <date>/ letters to print and post yourself"),
    setting("RELANCE_PROVIDER_TIMEOUT_MS", Value("30000"), "longest wait for the SMS gateway or postal API"),
    setting("RELANCE_PROVIDER_MAX_REQUESTS", Value("16"), "requests a sender has at the SMS gateway, and at the postal API, at once at most: a message finding them all taken waits for one (0: no limit)"),
    setting("RELANCE_FORMAL_NOTICE_DAYS", Value("8"), "days a formal notice gives to pay"),
    setting("RELANCE_INTEREST_CONTRACT_PERCENT", Unset, "late-payment rate of your terms of sale, percent a year; unset: ECB rate plus 10 points"),
    setting("RELANCE_LEGAL_RATES_FILE", Unset, "legal rates by half-year, one line each; unset: the built-in table"),
    setting("RELANCE_ECB_RATES_FILE", Unset, "ECB rate changes replacing the table's ECB column"),
    setting("RELANCE_INTEREST_FLOOR_PERCENT", Unset, "deprecated: one floor for every half-year"),
    setting("RELANCE_INTEREST_CONSUMER_PERCENT", Unset, "deprecated: one rate for consumers' debts"),
    telemetry("OTEL_EXPORTER_OTLP_ENDPOINT", Unset, "export traces (and metrics, see RELANCE_METRICS_EXPORTER) over OTLP/HTTP"),
    telemetry("RELANCE_METRICS_EXPORTER", Value("prometheus"), "prometheus (/metrics on RELANCE_HEALTH_ADDR), otlp (pushed to OTEL_EXPORTER_OTLP_ENDPOINT) or both"),
    telemetry("RUST_LOG", Value("info"), "log filter (logs go to stderr)"),
    telemetry("RELANCE_LOG_FORMAT", Described("`json` when stderr is not a terminal, else `text`"), "json (one JSON object a line, with trace_id and span_id) or text (colours only on a terminal)"),
];

/// The declaration of `name`, if it is declared.
pub fn variable(name: &str) -> Option<&'static Variable> {
    VARIABLES.iter().find(|variable| variable.name == name)
}

/// The variables naming a file that holds a secret: `DATABASE_URL_FILE`...
pub fn secret_file_variable(variable: &Variable) -> Option<String> {
    variable.secret.then(|| format!("{}_FILE", variable.name))
}

/// `RELANCE_MAIL_DIR` → `mail-dir`, `DATABASE_URL_FILE` → `database-url-file`.
fn flag(name: &str) -> String {
    name.strip_prefix("RELANCE_")
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', "-")
}

fn settings_arg(name: String, help: String, default: VariableDefault) -> Arg {
    let arg = Arg::new(name.clone())
        .long(flag(&name))
        .env(name)
        // The values may be secrets: `--help` shows the names only.
        .hide_env_values(true);
    match default {
        VariableDefault::Value(value) => arg.help(help).default_value(value),
        other => arg.help(format!("{help} [default: {}]", other.as_help())),
    }
}

/// The settings as `relance` received them: each from its flag, else its environment
/// variable, else its declared default. Flatten it into a clap parser
/// (`#[command(flatten)]`); [`crate::Settings::from_vars`] reads [`SettingsArgs::into_vars`].
#[derive(Debug, Clone, Default)]
pub struct SettingsArgs {
    vars: Vec<(String, String)>,
}

impl SettingsArgs {
    /// The variables given, with those the telemetry reads from the process environment.
    pub fn into_vars(self) -> Vec<(String, String)> {
        let mut vars = self.vars;
        for variable in VARIABLES.iter().filter(|v| v.read_by == ReadBy::Telemetry) {
            if let Ok(value) = std::env::var(variable.name) {
                vars.push((variable.name.to_string(), value));
            }
        }
        vars
    }
}

impl clap::Args for SettingsArgs {
    fn augment_args(cmd: Command) -> Command {
        let mut cmd =
            cmd.next_help_heading("Settings (each flag may be given by its environment variable instead)");
        for variable in VARIABLES.iter().filter(|v| v.read_by == ReadBy::Settings) {
            cmd = cmd.arg(settings_arg(
                variable.name.to_string(),
                variable.help.to_string(),
                variable.default,
            ));
            if let Some(file_variable) = secret_file_variable(variable) {
                cmd = cmd.arg(settings_arg(
                    file_variable,
                    format!("a file holding {}, used instead of it", variable.name),
                    VariableDefault::Unset,
                ));
            }
        }
        let telemetry: Vec<String> = VARIABLES
            .iter()
            .filter(|v| v.read_by == ReadBy::Telemetry)
            .map(|v| format!("  {}: {} [default: {}]", v.name, v.help, v.default.as_help()))
            .collect();
        cmd.next_help_heading(None).after_help(format!(
            "Also read from the environment, with no flag:\n{}",
            telemetry.join("\n")
        ))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for SettingsArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut vars = Vec::new();
        for variable in VARIABLES.iter().filter(|v| v.read_by == ReadBy::Settings) {
            let names = std::iter::once(variable.name.to_string()).chain(secret_file_variable(variable));
            for name in names {
                // Only what was given: clap also reports each declared default, and a default
                // is not "set" (`run all` runs the console or the customer page only when
                // their address is given); `Settings::from_vars` fills in the defaults.
                if matches.value_source(&name) == Some(clap::parser::ValueSource::DefaultValue) {
                    continue;
                }
                if let Some(value) = matches.get_one::<String>(&name) {
                    vars.push((name, value.clone()));
                }
            }
        }
        Ok(Self { vars })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{FromArgMatches, Parser};
    use std::collections::BTreeMap;

    /// The rows of the README's configuration table: each variable named in a row's first
    /// cell, with the row's default cell.
    fn readme_table() -> BTreeMap<String, String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let section = readme.split("\n## Configuration\n").nth(1).unwrap();
        let section = section.split("\n## ").next().unwrap();
        let mut table = BTreeMap::new();
        for row in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let (names, default) = (cells[1], cells[2]);
            for name in names.split('`').skip(1).step_by(2) {
                let previous = table.insert(name.to_string(), default.to_string());
                assert!(previous.is_none(), "{name} is in two rows of the README's table");
            }
        }
        table
    }

    #[test]
    fn the_readme_table_lists_every_declared_variable_with_its_default_and_nothing_else() {
        let mut table = readme_table();
        for variable in VARIABLES {
            let default = table.remove(variable.name);
            assert_eq!(
                default.as_deref(),
                Some(variable.default.as_markdown().as_str()),
                "{}: the README's default differs from the declaration (or the row is missing)",
                variable.name
            );
            if let Some(file_variable) = secret_file_variable(variable) {
                let default = table.remove(&file_variable);
                assert_eq!(default.as_deref(), Some("unset"), "{file_variable}");
            }
        }
        assert!(table.is_empty(), "in the README's table, not declared: {table:?}");
    }

    #[test]
    fn every_variable_the_settings_read_is_declared() {
        let source = include_str!("lib.rs");
        let mut read = 0;
        for method in [
            "get",
            "text",
            "parsed",
            "millis",
            "duration",
            "optional_decimal",
            "optional_parsed",
        ] {
            for (i, _) in source.match_indices(&format!("env.{method}(\"")) {
                let start = i + method.len() + 6;
                let name: String = source[start..].chars().take_while(|c| *c != '"').collect();
                assert!(variable(&name).is_some(), "{name} is read but not declared");
                read += 1;
            }
        }
        assert!(
            read > 50,
            "only {read} reads found: has the way lib.rs reads them changed?"
        );
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: SettingsArgs,
    }

    #[test]
    fn the_help_lists_every_variable_with_its_default() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        // Long lines are wrapped: compare with every run of white space as one space.
        let one_line = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        let help = one_line(&Cli::command().render_help().to_string());
        for variable in VARIABLES {
            assert!(
                help.contains(variable.name),
                "{} missing from --help",
                variable.name
            );
            let shown = match variable.default.as_help() {
                // As clap shows a value with a space in it.
                value
                    if value.contains(' ')
                        && variable.read_by == ReadBy::Settings
                        && variable.default.value().is_some() =>
                {
                    format!("{value:?}")
                }
                value => value,
            };
            let default = one_line(&format!("[default: {shown}]"));
            assert!(
                help.contains(&default),
                "{}: {default} missing from --help:\n{help}",
                variable.name
            );
        }
        assert!(help.contains("[env: RELANCE_SMS_GATEWAY_TOKEN_FILE]"), "{help}");
    }

    #[test]
    fn a_flag_or_its_variable_gives_the_value_and_the_declared_default_fills_the_rest() {
        use clap::CommandFactory;
        let matches = Cli::command()
            .try_get_matches_from([
                "relance",
                "--namespace",
                "tenant-a",
                "--smtp-url-file=/run/secrets/smtp",
            ])
            .unwrap();
        let vars: BTreeMap<String, String> = SettingsArgs::from_arg_matches(&matches)
            .unwrap()
            .vars
            .into_iter()
            .collect();
        assert_eq!(
            vars.get("RELANCE_NAMESPACE").map(String::as_str),
            Some("tenant-a")
        );
        assert_eq!(
            vars.get("SMTP_URL_FILE").map(String::as_str),
            Some("/run/secrets/smtp")
        );
        // A default is left to `Settings::from_vars`, not passed as if it had been given
        // (a value the process environment may hold is not asserted).
        if std::env::var_os("RELANCE_CONSOLE_ADDR").is_none() {
            assert!(!vars.contains_key("RELANCE_CONSOLE_ADDR"), "{vars:?}");
            let given = vars.iter().filter(|(k, _)| k.as_str() != "SMTP_URL_FILE");
            let settings = crate::Settings::from_vars(given.map(|(k, v)| (k.clone(), v.clone()))).unwrap();
            assert!(!settings.console_addr_set && !settings.portal_addr_set);
            assert_eq!(settings.console_addr.to_string(), "127.0.0.1:8080");
        }
    }
}
