//! The dunning policy: which steps, on which channel, how firm, how many days from the due
//! date, in which send window, under which conditions, per risk segment; and the amounts
//! too small to chase. Data, not code: a TOML file validated at start, whose errors name the
//! file, the line and the field. Dating the steps is `plan`'s job, not this module's.

mod approvals;
mod fallbacks;
mod replies;

pub use approvals::{ApprovalMode, ApprovalRules};
pub use replies::ReplyRules;

pub use crate::customer::RiskKey;
use crate::customer::{Channel, CustomerKind, Risk};
use crate::money::Money;
use crate::window::{SendWindow, END_OF_DAY};
use chrono::{NaiveDate, NaiveTime, Weekday};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use toml::Spanned;

/// The policy that ships with relance (see `docs/policy.md`).
pub const DEFAULT_POLICY_TOML: &str = include_str!("../policies/default.toml");
pub const DEFAULT_POLICY_FILE: &str = "<built-in default policy>";
/// The email template that confirms a promise obtained on a call ("following our call...").
pub const CALL_RECAP_TEMPLATE: &str = "call_recap";
/// The thank-you's template when the file names none (`thanks_template`).
pub const DEFAULT_THANKS_TEMPLATE: &str = "thanks";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    Courteous,
    Firm,
    Formal,
}

impl FromStr for Tone {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "courteous" => Ok(Tone::Courteous),
            "firm" => Ok(Tone::Firm),
            "formal" => Ok(Tone::Formal),
            other => Err(format!(
                "unknown tone {other:?} (expected courteous, firm or formal)"
            )),
        }
    }
}

impl Tone {
    pub fn as_str(self) -> &'static str {
        match self {
            Tone::Courteous => "courteous",
            Tone::Firm => "firm",
            Tone::Formal => "formal",
        }
    }
}

impl fmt::Display for Tone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a step is for: chasing the debt, or thanking once it is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Reminder,
    Thanks,
    /// The email that confirms what a customer said on a call (a promised date).
    Recap,
    /// A note of a payment plan's own schedule (before an instalment, after a missed one).
    Plan,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Reminder => "reminder",
            StepKind::Thanks => "thanks",
            StepKind::Recap => "recap",
            StepKind::Plan => "plan",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reminder" => Ok(StepKind::Reminder),
            "thanks" => Ok(StepKind::Thanks),
            "recap" => Ok(StepKind::Recap),
            "plan" => Ok(StepKind::Plan),
            other => Err(format!(
                "unknown step kind {other:?} (expected reminder, thanks, recap or plan)"
            )),
        }
    }
}

/// One step of a sequence, as validated from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTemplate {
    pub name: String,
    /// Days from the due date; negative before it.
    pub offset_days: i64,
    pub channel: Channel,
    pub template: String,
    pub tone: Tone,
    /// Where the step stands in its file, to point at it in later errors.
    pub line: usize,
    /// The step's place in the file as a field path, e.g. `segments.medium.steps[2]`.
    pub path: String,
    /// The line of the step's `template`.
    pub template_line: usize,
    /// The send window the step goes out in: its own `window`, else the policy's default.
    pub window: String,
    /// When the step applies at all; a step whose conditions fail is left out of the plan.
    pub conditions: StepConditions,
    /// Whether the customer's statement of account goes with the message (`attach_statement`
    /// in the file, false by default): a second attachment of an email, an enclosure of a
    /// letter.
    pub attach_statement: bool,
}

/// Conditions on a step (`when = { ... }` in the file). Every condition given must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepConditions {
    /// Minimum invoice amount per currency code; currencies not listed are not limited.
    pub min_amount: BTreeMap<String, Decimal>,
    /// Only for customers of this kind.
    pub customer_kind: Option<CustomerKind>,
}

impl StepConditions {
    /// `Ok` when the step applies to an invoice of this amount and customer kind, else why not.
    pub fn check(&self, amount: &Money, kind: CustomerKind) -> Result<(), String> {
        if let Some(min) = self.min_amount.get(amount.currency.code()) {
            if amount.amount < *min {
                return Err(format!(
                    "the amount {} {} is below the step's minimum of {min}",
                    amount.amount,
                    amount.currency.code()
                ));
            }
        }
        match self.customer_kind {
            Some(required) if required != kind => Err(format!(
                "the step is for {} customers, this one is {}",
                required.as_str(),
                kind.as_str()
            )),
            _ => Ok(()),
        }
    }
}

/// The window of steps that name none, in a policy that sets no `default_window`: any time,
/// so that policy files written before windows existed keep their behaviour.
pub const ANY_TIME_WINDOW: &str = "any_time";

/// The windows every policy knows without defining them (a policy may redefine them).
pub fn builtin_windows() -> BTreeMap<String, SendWindow> {
    [
        (ANY_TIME_WINDOW, SendWindow::any_time()),
        ("working_days", SendWindow::working_days()),
        ("working_mornings", SendWindow::any_working_morning()),
        ("reminders", SendWindow::reminders()),
    ]
    .into_iter()
    .map(|(name, window)| (name.to_string(), window))
    .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DunningPolicy {
    /// The file the policy was read from, to name it in later errors.
    pub file: String,
    /// The customer's local time at which steps of a day go out (or the window's opening,
    /// when that time is outside the step's window).
    pub send_time: NaiveTime,
    pub thanks_template: String,
    /// The line of `thanks_template`; `None` when the file leaves the default.
    pub thanks_template_line: Option<usize>,
    pub segments: BTreeMap<RiskKey, Vec<StepTemplate>>,
    /// Named send windows: the built-in ones and those of the file.
    pub windows: BTreeMap<String, SendWindow>,
    /// The window of steps that name none.
    pub default_window: String,
    /// Invoices below these amounts (per currency code) are not chased at all.
    pub minimum_amount: BTreeMap<String, Decimal>,
    /// Reminders of one customer's overdue invoices go out together; `None`: one by one.
    pub grouping: Option<Grouping>,
    /// What a step does when its channel cannot reach the customer (see `fallback.rs`).
    pub fallbacks: crate::fallback::FallbackRules,
    /// Currencies in which messages state the 40 EUR indemnity's equivalent, beside the
    /// euros, at the rate and date given (`[indemnity_equivalent]`).
    pub indemnity_equivalents: BTreeMap<String, ExchangeRate>,
    /// Payment plans' own schedule and grace (`[payment_plans]`).
    pub payment_plans: crate::collections::payment_plan::PaymentPlanRules,
    /// Which due steps wait for a person's approval, and for how long (`[approvals]`,
    /// `approval` per step; see `approvals.rs`).
    pub approvals: ApprovalRules,
    /// Whether a reply pauses the sequence, and which steps ask for an acknowledgement of
    /// receipt (`[replies]`, `request_receipt` per step; see `replies.rs`).
    pub replies: ReplyRules,
}

/// A euro exchange rate the policy gives, stated with its date in the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeRate {
    /// Units of the currency for one euro.
    pub per_euro: Decimal,
    pub on: NaiveDate,
}

/// Grouping of one customer's reminders into one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grouping {
    /// When a reminder of an overdue invoice goes out, the customer's other overdue invoices
    /// whose next reminder is due within this many days join it (0: only those due today).
    pub within_days: u32,
}

/// The largest `grouping.within_days`: beyond it, a reminder would come too early.
pub const MAX_GROUPING_DAYS: i64 = 14;

/// A policy file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file, self.line, self.field, self.message)
    }
}

type SpannedMap<V> = Spanned<BTreeMap<Spanned<String>, V>>;

/// What a policy file's TOML says a decimal amount is: a string such as `"10.00"`, never a
/// float (which would lose cents) nor an integer (one type for every amount).
struct RawAmount(String);

impl<'de> Deserialize<'de> for RawAmount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Amount;
        impl serde::de::Visitor<'_> for Amount {
            type Value = RawAmount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal amount as a string such as \"10.00\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawAmount, E> {
                Ok(RawAmount(v.to_string()))
            }
        }
        deserializer.deserialize_str(Amount)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    send_time: Spanned<String>,
    #[serde(default)]
    thanks_template: Option<Spanned<String>>,
    #[serde(default)]
    default_window: Option<Spanned<String>>,
    #[serde(default)]
    windows: Option<SpannedMap<Spanned<RawWindow>>>,
    #[serde(default)]
    minimum_amount: Option<SpannedMap<Spanned<RawAmount>>>,
    #[serde(default)]
    grouping: Option<RawGrouping>,
    segments: SpannedMap<RawSegment>,
    #[serde(default)]
    indemnity_equivalent: Option<SpannedMap<Spanned<RawExchangeRate>>>,
    #[serde(default)]
    payment_plans: Option<RawPaymentPlans>,
    // Validated by `fallbacks::parse`.
    #[serde(default, rename = "fallback")]
    _fallback: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "fallback_templates")]
    _fallback_templates: Option<serde::de::IgnoredAny>,
    // Validated by `approvals::parse`.
    #[serde(default, rename = "approvals")]
    _approvals: Option<serde::de::IgnoredAny>,
    // Validated by `replies::parse`.
    #[serde(default, rename = "replies")]
    _replies: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExchangeRate {
    per_euro: Spanned<RawAmount>,
    on: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaymentPlans {
    #[serde(default)]
    grace_days: Option<Spanned<i64>>,
    #[serde(default)]
    notice_days_before: Option<Spanned<i64>>,
    #[serde(default)]
    reminder_days_after: Option<Spanned<Vec<i64>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrouping {
    within_days: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    days: Spanned<Vec<Spanned<String>>>,
    opens: Spanned<String>,
    closes: Spanned<String>,
    #[serde(default)]
    business_days_only: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Spanned<String>,
    offset_days: Spanned<i64>,
    channel: Spanned<String>,
    template: Spanned<String>,
    tone: Spanned<String>,
    #[serde(default)]
    window: Option<Spanned<String>>,
    #[serde(default)]
    when: Option<Spanned<RawConditions>>,
    #[serde(default)]
    attach_statement: bool,
    // Validated by `fallbacks::parse`.
    #[serde(default, rename = "fallback")]
    _fallback: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "fallback_templates")]
    _fallback_templates: Option<serde::de::IgnoredAny>,
    // Validated by `approvals::parse`.
    #[serde(default, rename = "approval")]
    _approval: Option<serde::de::IgnoredAny>,
    // Validated by `replies::parse`.
    #[serde(default, rename = "request_receipt")]
    _request_receipt: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConditions {
    #[serde(default)]
    min_amount: Option<SpannedMap<Spanned<RawAmount>>>,
    #[serde(default)]
    customer_kind: Option<Spanned<String>>,
}

/// The field path of a segment's step, counted from 0 as in the file: `segments.medium.steps[2]`.
pub(crate) fn step_path(segment: &str, index: usize) -> String {
    format!("segments.{segment}.steps[{index}]")
}

/// A policy file that TOML or serde refuses, as a [`PolicyError`]: a file that is not TOML
/// names the field `syntax`; a value of the wrong type, an unknown key or a missing one names
/// the dotted path of the field (`segments.medium.steps[2].tone`) found at the error's span.
pub(crate) fn toml_refusal(source: &str, file: &str, error: &toml::de::Error) -> PolicyError {
    let refusal = |span: Option<std::ops::Range<usize>>, field: String, message: String| PolicyError {
        file: file.to_string(),
        line: line_of(source, span.map_or(0, |s| s.start)),
        field,
        message,
    };
    let document = match toml::de::DeTable::parse(source) {
        Ok(document) => document,
        Err(syntax) => return refusal(syntax.span(), "syntax".to_string(), syntax.message().to_string()),
    };
    let message = error.message().trim();
    let mut field = error
        .span()
        .map(|span| path_at(document.get_ref(), &span))
        .unwrap_or_default();
    let message = if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        field = join_path(&field, missing);
        "is required but missing".to_string()
    } else {
        plain_message(message)
    };
    if field.is_empty() {
        field = "(top level)".to_string();
    }
    refusal(error.span(), field, message)
}

fn join_path(path: &str, key: &str) -> String {
    let key = if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// The path of the innermost key or value of the document whose span holds `target`.
fn path_at(document: &toml::de::DeTable<'_>, target: &std::ops::Range<usize>) -> String {
    // (length of the span, path): the shortest span holding the target wins, the deepest
    // on a tie.
    let mut best: Option<(usize, String)> = None;
    let mut consider = |span: std::ops::Range<usize>, path: &str| {
        if span.start <= target.start && target.end <= span.end {
            let length = span.end - span.start;
            if best.as_ref().is_none_or(|(l, _)| length <= *l) {
                best = Some((length, path.to_string()));
            }
        }
    };
    fn walk(
        value: &toml::de::DeValue<'_>,
        path: &str,
        consider: &mut dyn FnMut(std::ops::Range<usize>, &str),
    ) {
        match value {
            toml::de::DeValue::Table(table) => {
                for (key, value) in table {
                    let path = join_path(path, key.get_ref());
                    consider(key.span(), &path);
                    consider(value.span(), &path);
                    walk(value.get_ref(), &path, consider);
                }
            }
            toml::de::DeValue::Array(items) => {
                for (index, item) in items.into_iter().enumerate() {
                    let path = format!("{path}[{index}]");
                    consider(item.span(), &path);
                    walk(item.get_ref(), &path, consider);
                }
            }
            _ => {}
        }
    }
    walk(&toml::de::DeValue::Table(document.clone()), "", &mut consider);
    best.map(|(_, path)| path).unwrap_or_default()
}

/// serde's wording made plain: `expected a string, found the float 10.0`, `unknown field
/// "x" (expected one of: a, b)`.
fn plain_message(message: &str) -> String {
    if let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.split_once(", expected "))
    {
        let expected = match expected {
            "i64" | "u32" | "i32" | "u64" => "an integer",
            "a sequence" => "an array",
            "a map" => "a table",
            e if e.starts_with("struct ") => "a table",
            e => e,
        };
        let found = match found.split_once(' ') {
            Some(("floating", value)) => format!(
                "the float {}",
                value.trim_start_matches("point ").replace('`', "")
            ),
            Some(("integer", value)) => format!("the integer {}", value.replace('`', "")),
            Some(("boolean", value)) => format!("the boolean {}", value.replace('`', "")),
            Some(("string", value)) => format!("the string {value}"),
            _ if found == "sequence" => "an array".to_string(),
            _ if found == "map" => "a table".to_string(),
            _ => found.to_string(),
        };
        return format!("expected {expected}, found {found}");
    }
    if let Some((unknown, known)) = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split_once("`, "))
    {
        let known = known
            .replace('`', "")
            .replace("expected one of ", "expected one of: ");
        return format!("unknown field {unknown:?} ({known})");
    }
    message.to_string()
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn weekday(s: &str) -> Result<Weekday, String> {
    Ok(match s {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        other => {
            return Err(format!(
                "unknown day {other:?} (expected mon, tue, wed, thu, fri, sat or sun)"
            ))
        }
    })
}

/// `HH:MM`; `24:00` too when `end_of_day` (a window open until midnight).
fn time_of_day(s: &str, end_of_day: bool) -> Result<NaiveTime, String> {
    if end_of_day && s == "24:00" {
        return Ok(END_OF_DAY);
    }
    NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| format!("{s:?} is not a time of day as HH:MM"))
}

/// A non-negative amount in a known currency, with no more decimals than it allows.
fn amount_in(code: &str, value: &str) -> Result<Decimal, String> {
    let currency = Money::parse_currency(code)?;
    let amount = Money::parse_amount(value.trim())
        .map_err(|_| format!("{value:?} is not a decimal amount such as \"10.00\""))?;
    if amount.is_sign_negative() {
        return Err(format!("{value:?} is negative"));
    }
    if Money::new(amount, currency).rounded().amount != amount {
        return Err(format!("{value:?} has more decimals than {code} allows"));
    }
    Ok(amount)
}

/// Builds errors that point into one source file.
/// The longest grace of a payment plan's missed instalment.
pub const MAX_PLAN_GRACE_DAYS: i64 = 60;

/// `[payment_plans]`: each number within its range; reminders within the grace.
fn payment_plan_rules(
    p: &RawPaymentPlans,
    at: &Locator<'_>,
) -> Result<crate::collections::payment_plan::PaymentPlanRules, PolicyError> {
    let defaults = crate::collections::payment_plan::PaymentPlanRules::default();
    let days = |value: &Option<Spanned<i64>>, field: &str, default: u32| -> Result<u32, PolicyError> {
        match value {
            None => Ok(default),
            Some(v) => u32::try_from(*v.get_ref())
                .ok()
                .filter(|d| i64::from(*d) <= MAX_PLAN_GRACE_DAYS)
                .ok_or_else(|| {
                    at.err(
                        v.span(),
                        field,
                        format!(
                            "{} is out of range (0 to {MAX_PLAN_GRACE_DAYS} days)",
                            v.get_ref()
                        ),
                    )
                }),
        }
    };
    let grace_days = days(&p.grace_days, "payment_plans.grace_days", defaults.grace_days)?;
    let notice_days_before = days(
        &p.notice_days_before,
        "payment_plans.notice_days_before",
        defaults.notice_days_before,
    )?;
    let reminder_days_after = match &p.reminder_days_after {
        None => defaults
            .reminder_days_after
            .into_iter()
            .filter(|d| *d <= grace_days)
            .collect(),
        Some(list) => {
            let mut out = Vec::new();
            for d in list.get_ref() {
                match u32::try_from(*d).ok().filter(|d| *d >= 1 && *d <= grace_days) {
                    Some(d) if out.last().is_none_or(|last| d > *last) => out.push(d),
                    _ => {
                        return Err(at.err(
                            list.span(),
                            "payment_plans.reminder_days_after",
                            format!(
                                "{d} is not a day after the instalment within the grace (1 to {grace_days}), in increasing order"
                            ),
                        ))
                    }
                }
            }
            out
        }
    };
    Ok(crate::collections::payment_plan::PaymentPlanRules {
        grace_days,
        notice_days_before,
        reminder_days_after,
    })
}

struct Locator<'a> {
    source: &'a str,
    file: &'a str,
}

impl Locator<'_> {
    fn err(&self, span: std::ops::Range<usize>, field: &str, message: impl Into<String>) -> PolicyError {
        PolicyError {
            file: self.file.to_string(),
            line: line_of(self.source, span.start),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn amounts(
        &self,
        raw: &SpannedMap<Spanned<RawAmount>>,
        field: &str,
    ) -> Result<BTreeMap<String, Decimal>, PolicyError> {
        let mut out = BTreeMap::new();
        for (code, value) in raw.get_ref() {
            let field = format!("{field}.{}", code.get_ref());
            let amount = amount_in(code.get_ref(), &value.get_ref().0)
                .map_err(|m| self.err(value.span(), &field, m))?;
            out.insert(code.get_ref().clone(), amount);
        }
        Ok(out)
    }

    fn window(&self, name: &Spanned<String>, raw: &Spanned<RawWindow>) -> Result<SendWindow, PolicyError> {
        let field = |f: &str| format!("windows.{}.{f}", name.get_ref());
        if !valid_identifier(name.get_ref()) {
            return Err(self.err(
                name.span(),
                "windows",
                format!("{:?} must be lowercase letters, digits and _", name.get_ref()),
            ));
        }
        let w = raw.get_ref();
        let mut weekdays = Vec::new();
        for day in w.days.get_ref() {
            let d = weekday(day.get_ref()).map_err(|m| self.err(day.span(), &field("days"), m))?;
            if !weekdays.contains(&d) {
                weekdays.push(d);
            }
        }
        let window = SendWindow {
            weekdays,
            opens: time_of_day(w.opens.get_ref(), false)
                .map_err(|m| self.err(w.opens.span(), &field("opens"), m))?,
            closes: time_of_day(w.closes.get_ref(), true)
                .map_err(|m| self.err(w.closes.span(), &field("closes"), m))?,
            business_days_only: w.business_days_only.unwrap_or(true),
        };
        window.validate().map_err(|m| {
            let (span, f) = if window.opens >= window.closes {
                (w.closes.span(), "closes")
            } else {
                (w.days.span(), "days")
            };
            self.err(span, &field(f), m)
        })?;
        Ok(window)
    }
}

impl DunningPolicy {
    pub fn default_policy() -> Result<Self, PolicyError> {
        Self::parse(DEFAULT_POLICY_TOML, DEFAULT_POLICY_FILE)
    }

    /// Parses and validates a policy; `file` only names the source in errors.
    pub fn parse(source: &str, file: &str) -> Result<Self, PolicyError> {
        let at = Locator { source, file };
        let raw: RawPolicy = toml::from_str(source).map_err(|e| toml_refusal(source, file, &e))?;

        let send_time = time_of_day(raw.send_time.get_ref(), false)
            .map_err(|m| at.err(raw.send_time.span(), "send_time", m))?;
        let thanks_template = match &raw.thanks_template {
            Some(t) if !valid_identifier(t.get_ref()) => {
                return Err(at.err(
                    t.span(),
                    "thanks_template",
                    "must be lowercase letters, digits and _",
                ))
            }
            Some(t) => t.get_ref().clone(),
            None => DEFAULT_THANKS_TEMPLATE.to_string(),
        };
        let thanks_template_line = raw
            .thanks_template
            .as_ref()
            .map(|t| line_of(source, t.span().start));
        let mut windows = builtin_windows();
        if let Some(raw_windows) = &raw.windows {
            for (name, window) in raw_windows.get_ref() {
                windows.insert(name.get_ref().clone(), at.window(name, window)?);
            }
        }
        let known_window = |name: &Spanned<String>, field: &str| -> Result<String, PolicyError> {
            if windows.contains_key(name.get_ref()) {
                Ok(name.get_ref().clone())
            } else {
                Err(at.err(
                    name.span(),
                    field,
                    format!(
                        "unknown window {:?} (known: {})",
                        name.get_ref(),
                        windows.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        };
        let default_window = match &raw.default_window {
            Some(name) => known_window(name, "default_window")?,
            None => ANY_TIME_WINDOW.to_string(),
        };
        let minimum_amount = match &raw.minimum_amount {
            Some(m) => at.amounts(m, "minimum_amount")?,
            None => BTreeMap::new(),
        };
        let mut indemnity_equivalents = BTreeMap::new();
        for (code, rate) in raw
            .indemnity_equivalent
            .as_ref()
            .map(|m| m.get_ref().iter())
            .into_iter()
            .flatten()
        {
            let field = |f: &str| format!("indemnity_equivalent.{}.{f}", code.get_ref());
            Money::parse_currency(code.get_ref())
                .map_err(|m| at.err(code.span(), "indemnity_equivalent", m))?;
            let r = rate.get_ref();
            let per_euro = Money::parse_amount(r.per_euro.get_ref().0.trim())
                .ok()
                .filter(|p| *p > Decimal::ZERO)
                .ok_or_else(|| {
                    at.err(
                        r.per_euro.span(),
                        &field("per_euro"),
                        format!(
                            "{:?} is not a positive rate such as \"0.8650\"",
                            r.per_euro.get_ref().0
                        ),
                    )
                })?;
            let on = NaiveDate::parse_from_str(r.on.get_ref(), "%Y-%m-%d").map_err(|_| {
                at.err(
                    r.on.span(),
                    &field("on"),
                    format!("{:?} is not a date as \"YYYY-MM-DD\"", r.on.get_ref()),
                )
            })?;
            indemnity_equivalents.insert(code.get_ref().clone(), ExchangeRate { per_euro, on });
        }

        let grouping = match &raw.grouping {
            None => None,
            Some(g) => {
                let days = *g.within_days.get_ref();
                let within_days = u32::try_from(days)
                    .ok()
                    .filter(|d| i64::from(*d) <= MAX_GROUPING_DAYS)
                    .ok_or_else(|| {
                        at.err(
                            g.within_days.span(),
                            "grouping.within_days",
                            format!("{days} is out of range (0 to {MAX_GROUPING_DAYS} days)"),
                        )
                    })?;
                Some(Grouping { within_days })
            }
        };

        let payment_plans = match &raw.payment_plans {
            None => Default::default(),
            Some(p) => payment_plan_rules(p, &at)?,
        };

        let mut segments = BTreeMap::new();
        for (segment_name, segment) in raw.segments.get_ref() {
            let risk = Risk::from_str(segment_name.get_ref())
                .map_err(|m| at.err(segment_name.span(), "segments", m))?;
            if segment.steps.is_empty() {
                return Err(at.err(
                    segment_name.span(),
                    &format!("segments.{}.steps", segment_name.get_ref()),
                    "a segment needs at least one step",
                ));
            }
            let mut steps: Vec<StepTemplate> = Vec::new();
            for (index, raw_step) in segment.steps.iter().enumerate() {
                let path = step_path(segment_name.get_ref(), index);
                let field = |f: &str| format!("{path}.{f}");
                let s = raw_step.get_ref();
                let name = s.name.get_ref();
                if !valid_identifier(name) {
                    return Err(at.err(
                        s.name.span(),
                        &field("name"),
                        format!("{name:?} must be lowercase letters, digits and _"),
                    ));
                }
                if name == "thanks" {
                    return Err(at.err(
                        s.name.span(),
                        &field("name"),
                        "\"thanks\" is reserved for the thank-you message",
                    ));
                }
                if steps.iter().any(|p| &p.name == name) {
                    return Err(at.err(
                        s.name.span(),
                        &field("name"),
                        format!("step {name:?} appears twice in this segment"),
                    ));
                }
                let offset_days = *s.offset_days.get_ref();
                if !(-60..=365).contains(&offset_days) {
                    return Err(at.err(
                        s.offset_days.span(),
                        &field("offset_days"),
                        format!("{offset_days} is out of range (-60 to 365 days)"),
                    ));
                }
                if let Some(previous) = steps.last() {
                    if offset_days <= previous.offset_days {
                        return Err(at.err(s.offset_days.span(), &field("offset_days"), format!(
                            "{offset_days} must come after the previous step's {} (steps are listed in order, one day at most one step)",
                            previous.offset_days
                        )));
                    }
                }
                let channel = Channel::from_str(s.channel.get_ref())
                    .map_err(|m| at.err(s.channel.span(), &field("channel"), m))?;
                if !valid_identifier(s.template.get_ref()) {
                    return Err(at.err(
                        s.template.span(),
                        &field("template"),
                        "must be lowercase letters, digits and _",
                    ));
                }
                let tone =
                    Tone::from_str(s.tone.get_ref()).map_err(|m| at.err(s.tone.span(), &field("tone"), m))?;
                let window = match &s.window {
                    Some(w) => known_window(w, &field("window"))?,
                    None => default_window.clone(),
                };
                let mut conditions = StepConditions::default();
                if let Some(when) = &s.when {
                    let when = when.get_ref();
                    if let Some(min) = &when.min_amount {
                        conditions.min_amount = at.amounts(min, &field("when.min_amount"))?;
                    }
                    if let Some(kind) = &when.customer_kind {
                        conditions.customer_kind = Some(
                            CustomerKind::from_str(kind.get_ref())
                                .map_err(|m| at.err(kind.span(), &field("when.customer_kind"), m))?,
                        );
                    }
                }
                steps.push(StepTemplate {
                    name: name.clone(),
                    offset_days,
                    channel,
                    template: s.template.get_ref().clone(),
                    tone,
                    line: line_of(source, raw_step.span().start),
                    template_line: line_of(source, s.template.span().start),
                    path: path.clone(),
                    window,
                    conditions,
                    attach_statement: s.attach_statement,
                });
            }
            segments.insert(RiskKey::from(risk), steps);
        }
        for risk in Risk::ALL {
            if !segments.contains_key(&RiskKey::from(*risk)) {
                return Err(at.err(
                    raw.segments.span(),
                    "segments",
                    format!("segment {risk:?} is missing (low, medium and high are all required)")
                        .to_lowercase(),
                ));
            }
        }
        Ok(Self {
            file: file.to_string(),
            send_time,
            thanks_template,
            thanks_template_line,
            segments,
            windows,
            default_window,
            minimum_amount,
            grouping,
            fallbacks: fallbacks::parse(source, file)?,
            indemnity_equivalents,
            payment_plans,
            approvals: approvals::parse(source, file)?,
            replies: replies::parse(source, file)?,
        })
    }

    pub fn steps_for(&self, risk: Risk) -> &[StepTemplate] {
        self.segments
            .get(&RiskKey::from(risk))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The step of that name in a segment, if the segment has one.
    pub fn step_named(&self, risk: Risk, name: &str) -> Option<&StepTemplate> {
        self.steps_for(risk).iter().find(|s| s.name == name)
    }

    /// The send window of a step of the customer's segment, by name: the step's own window,
    /// else the policy's default (a step the segment does not have, e.g. one planned under an
    /// earlier policy file). Used when a step is planned, re-dated after a pause, or sent.
    pub fn step_window(&self, risk: Risk, step: &str) -> SendWindow {
        match self.step_named(risk, step) {
            Some(template) => self.window(&template.window),
            None => self.window(&self.default_window),
        }
    }

    /// The window of that name; the default window for a name the policy does not know
    /// (a step planned under an earlier policy file), and any time if even that is missing.
    pub fn window(&self, name: &str) -> SendWindow {
        self.windows
            .get(name)
            .or_else(|| self.windows.get(&self.default_window))
            .cloned()
            .unwrap_or_else(SendWindow::any_time)
    }

    /// Why an invoice of this amount is not chased at all, if it is below the threshold of
    /// its currency; `None` when it is chased.
    pub fn below_threshold(&self, amount: &Money) -> Option<String> {
        let threshold = self.minimum_amount.get(amount.currency.code())?;
        (amount.amount < *threshold).then(|| {
            format!(
                "the amount {} {code} is below the policy's minimum of {threshold} {code}",
                amount.amount,
                code = amount.currency.code()
            )
        })
    }

    /// Every template the policy may render, each with the line and field of the file that
    /// calls for it, so a renderer can check at start that it has them all: the steps'
    /// templates, those of their fallback channels, the call recap when the policy has
    /// calls, and the thank-you.
    pub fn template_uses(&self) -> Vec<TemplateUse> {
        let mut uses: Vec<TemplateUse> = self
            .segments
            .values()
            .flatten()
            .map(|s| TemplateUse {
                template: s.template.clone(),
                channel: s.channel,
                line: s.template_line,
                field: format!("{}.template", s.path),
                why: None,
            })
            .collect();
        // What a step falling back to another channel renders there.
        uses.extend(self.fallback_templates_needed());
        // A call that obtains a promise is confirmed by email.
        if let Some(call) = self
            .segments
            .values()
            .flatten()
            .find(|s| s.channel == Channel::Call)
        {
            uses.push(TemplateUse {
                template: CALL_RECAP_TEMPLATE.to_string(),
                channel: Channel::Email,
                line: call.line,
                field: format!("{}.channel", call.path),
                why: Some("the email confirming a date promised on a call".to_string()),
            });
        }
        // The thank-you goes by email.
        uses.push(TemplateUse {
            template: self.thanks_template.clone(),
            channel: Channel::Email,
            line: self.thanks_template_line.unwrap_or(1),
            field: "thanks_template".to_string(),
            why: self
                .thanks_template_line
                .is_none()
                .then(|| "the thank-you, thanks_template's default".to_string()),
        });
        uses
    }
}

/// A template the policy may render, and where the file calls for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateUse {
    pub template: String,
    /// The channel it is rendered for, which says the files it needs.
    pub channel: Channel,
    pub line: usize,
    /// The field that names it, or that calls for it when the file names it nowhere.
    pub field: String,
    /// Why the policy needs it, when the file does not name it.
    pub why: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_valid_and_follows_practice() {
        let policy = DunningPolicy::default_policy();
        assert!(policy.is_ok(), "{policy:?}");
        let Ok(policy) = policy else { return };
        let medium: Vec<(&str, i64)> = policy
            .steps_for(Risk::Medium)
            .iter()
            .map(|s| (s.name.as_str(), s.offset_days))
            .collect();
        assert_eq!(
            medium,
            vec![
                ("pre_due", -5),
                ("reminder_1", 5),
                ("call", 12),
                ("reminder_2", 13),
                ("reminder_3", 17),
                ("formal_notice", 30)
            ]
        );
        // Every segment escalates across the channels: email, email, a call, a firmer email,
        // an SMS (three written reminders after the due date), then the formal notice by
        // registered letter.
        for risk in Risk::ALL {
            let steps = policy.steps_for(*risk);
            let channels: Vec<Channel> = steps.iter().map(|s| s.channel).collect();
            assert_eq!(
                channels,
                vec![
                    Channel::Email,
                    Channel::Email,
                    Channel::Call,
                    Channel::Email,
                    Channel::Sms,
                    Channel::RegisteredLetter
                ],
                "{risk}"
            );
            let last = steps.last().map(|s| (s.template.as_str(), s.tone));
            assert_eq!(last, Some(("formal_notice", Tone::Formal)), "{risk}");
            let written_after_due = steps
                .iter()
                .filter(|s| s.offset_days > 0 && s.channel != Channel::Call && s.tone != Tone::Formal)
                .count();
            assert_eq!(written_after_due, 3, "{risk}");
            assert_eq!(steps[0].window, "working_mornings");
            assert_eq!(steps[1].window, "reminders", "{risk}");
            // Without a mobile number the SMS goes as the final reminder by email; without a
            // postal address the formal notice goes by email.
            assert_eq!(
                policy.fallback_order(*risk, "reminder_3", Channel::Sms),
                vec![(Channel::Email, "final_reminder".to_string())]
            );
            assert_eq!(
                policy.fallback_order(*risk, "formal_notice", Channel::RegisteredLetter),
                vec![(Channel::Email, "formal_notice".to_string())]
            );
            assert!(policy.fallback_order(*risk, "call", Channel::Call).is_empty());
        }
        let offsets =
            |risk: Risk| -> Vec<i64> { policy.steps_for(risk).iter().map(|s| s.offset_days).collect() };
        // High risk: everything sooner; low risk: everything later.
        for (i, medium_offset) in offsets(Risk::Medium).iter().enumerate() {
            assert!(offsets(Risk::High)[i] < *medium_offset);
            assert!(offsets(Risk::Low)[i] > *medium_offset);
        }
        assert_eq!(policy.minimum_amount.get("EUR"), Some(&Decimal::new(1000, 2)));
        assert_eq!(policy.grouping, Some(Grouping { within_days: 3 }));
        assert_eq!(
            policy.send_time,
            NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default()
        );
    }

    fn error_of(source: &str) -> PolicyError {
        match DunningPolicy::parse(source, "policy.toml") {
            Err(e) => e,
            Ok(p) => PolicyError {
                file: String::new(),
                line: 0,
                field: String::new(),
                message: format!("unexpectedly valid: {p:?}"),
            },
        }
    }

    const VALID_TAIL: &str = r#"
[[segments.low.steps]]
name = "a"
offset_days = 5
channel = "email"
template = "reminder"
tone = "courteous"
[[segments.high.steps]]
name = "a"
offset_days = 5
channel = "email"
template = "reminder"
tone = "courteous"
"#;

    #[test]
    fn a_bad_channel_is_refused_with_its_line_and_field() {
        let source = format!(
            "send_time = \"09:00\"\n[[segments.medium.steps]]\nname = \"a\"\noffset_days = 5\nchannel = \"pigeon\"\ntemplate = \"x\"\ntone = \"firm\"\n{VALID_TAIL}"
        );
        assert_eq!(
            error_of(&source).to_string(),
            "policy.toml:5: segments.medium.steps[0].channel: unknown channel \"pigeon\" (expected one of: email, sms, letter, registered_letter, call)"
        );
    }

    #[test]
    fn steps_out_of_order_are_refused() {
        let source = format!(
            "send_time = \"09:00\"\n[[segments.medium.steps]]\nname = \"a\"\noffset_days = 5\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n[[segments.medium.steps]]\nname = \"b\"\noffset_days = 5\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n{VALID_TAIL}"
        );
        let e = error_of(&source);
        assert_eq!(
            (e.line, e.field.as_str()),
            (10, "segments.medium.steps[1].offset_days"),
            "{e}"
        );
    }

    #[test]
    fn a_float_where_an_amount_is_expected_names_the_field() {
        let source = format!("send_time = \"09:00\"\n[minimum_amount]\nEUR = 10.0\n{VALID_TAIL}\n[[segments.medium.steps]]\nname = \"a\"\noffset_days = 5\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n");
        assert_eq!(
            error_of(&source).to_string(),
            "policy.toml:3: minimum_amount.EUR: expected a decimal amount as a string such as \"10.00\", found the float 10.0"
        );
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let e = error_of("send_time = \"09:00\"\nsegments = [\n");
        assert_eq!((e.line, e.field.as_str()), (2, "syntax"), "{e}");
    }

    #[test]
    fn a_missing_segment_is_refused() {
        let e = error_of("send_time = \"09:00\"\n[[segments.low.steps]]\nname = \"a\"\noffset_days = 5\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n");
        assert!(e.message.contains("medium"), "{e}");
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let e = error_of(&format!("send_time = \"09:00\"\nsend_day = 3\n{VALID_TAIL}"));
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("send_day"), "{e}");
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod validation_tests;
