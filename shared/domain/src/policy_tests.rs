//! Every way a policy file can be refused, each with the file, line and field it names; and
//! policy files written before windows, thresholds and conditions stay valid and unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::calendar::FrenchCalendar;
use crate::plan::{plan_invoice, PlanInput};
use chrono::NaiveDate;

/// The marker ending the line an error must point at.
const HERE: &str = "# <- here";

/// A valid medium step, the low and high segments, then `extra` (TOML text).
fn policy_with(head: &str, medium_step_extra: &str, tail: &str) -> String {
    format!(
        r#"send_time = "09:00"
{head}
[[segments.medium.steps]]
name = "a"
offset_days = 5
channel = "email"
template = "reminder"
tone = "courteous"
{medium_step_extra}
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
{tail}"#
    )
}

fn line_marked(source: &str) -> usize {
    source
        .lines()
        .position(|l| l.contains(HERE))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no marker in:\n{source}"))
}

fn refused(source: &str) -> PolicyError {
    match DunningPolicy::parse(source, "policies/acme.toml") {
        Err(e) => e,
        Ok(_) => panic!("accepted:\n{source}"),
    }
}

const WINDOW: &str = r#"[windows.office]
days = ["mon", "tue"]
opens = "09:00"
closes = "17:00"
"#;

#[test]
fn every_refusal_names_the_file_the_line_and_the_field() {
    // (what is wrong, source with the offending line marked, field, message): wrong values,
    // values of the wrong type, unknown and missing keys, broken TOML.
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "send time",
            policy_with("", "", "").replace("send_time = \"09:00\"", &format!("send_time = \"9h\" {HERE}")),
            "send_time",
            "\"9h\" is not a time of day as HH:MM",
        ),
        (
            "exchange rate",
            policy_with("", "", &format!("[indemnity_equivalent.GBP]\nper_euro = \"0,865\" {HERE}\non = \"2026-02-27\"\n")),
            "indemnity_equivalent.GBP.per_euro",
            "\"0,865\" is not a positive rate such as \"0.8650\"",
        ),
        (
            "exchange rate date",
            policy_with("", "", &format!("[indemnity_equivalent.GBP]\nper_euro = \"0.865\"\non = \"27/02/2026\" {HERE}\n")),
            "indemnity_equivalent.GBP.on",
            "\"27/02/2026\" is not a date as \"YYYY-MM-DD\"",
        ),
        (
            "thanks template",
            policy_with(&format!("thanks_template = \"Merci!\" {HERE}"), "", ""),
            "thanks_template",
            "must be lowercase letters, digits and _",
        ),
        (
            "window name",
            policy_with(&format!("[windows.Office] {HERE}\ndays = [\"mon\"]\nopens = \"09:00\"\ncloses = \"12:00\"\n"), "", ""),
            "windows",
            "\"Office\" must be lowercase letters, digits and _",
        ),
        (
            "window day",
            policy_with(&format!("[windows.office]\ndays = [\"mon\", \"lundi\"] {HERE}\nopens = \"09:00\"\ncloses = \"12:00\"\n"), "", ""),
            "windows.office.days",
            "unknown day \"lundi\" (expected mon, tue, wed, thu, fri, sat or sun)",
        ),
        (
            "window opening",
            policy_with(&format!("[windows.office]\ndays = [\"mon\"]\nopens = \"9\" {HERE}\ncloses = \"12:00\"\n"), "", ""),
            "windows.office.opens",
            "\"9\" is not a time of day as HH:MM",
        ),
        (
            "window closing",
            policy_with(&format!("[windows.office]\ndays = [\"mon\"]\nopens = \"09:00\"\ncloses = \"25:00\" {HERE}\n"), "", ""),
            "windows.office.closes",
            "\"25:00\" is not a time of day as HH:MM",
        ),
        (
            "window closing before opening",
            policy_with(&format!("[windows.office]\ndays = [\"mon\"]\nopens = \"14:00\"\ncloses = \"09:00\" {HERE}\n"), "", ""),
            "windows.office.closes",
            "send window opens at 14:00:00 but closes at 09:00:00: it must open before it closes (windows across midnight are not supported)",
        ),
        (
            "window without days",
            policy_with(&format!("[windows.office]\ndays = [] {HERE}\nopens = \"09:00\"\ncloses = \"12:00\"\n"), "", ""),
            "windows.office.days",
            "send window has no weekday: list at least one",
        ),
        (
            "window of business days on weekends",
            policy_with(&format!("[windows.office]\ndays = [\"sat\", \"sun\"] {HERE}\nopens = \"09:00\"\ncloses = \"12:00\"\n"), "", ""),
            "windows.office.days",
            "send window is for business days only but lists only Saturday and Sunday",
        ),
        (
            "window with an unknown key",
            policy_with(&format!("[windows.office]\ndays = [\"mon\"]\nopens = \"09:00\"\ncloses = \"12:00\"\nholidays = true {HERE}\n"), "", ""),
            "windows.office.holidays",
            "unknown field \"holidays\" (expected one of: days, opens, closes, business_days_only)",
        ),
        (
            "default window",
            policy_with(&format!("default_window = \"office\" {HERE}"), "", ""),
            "default_window",
            "unknown window \"office\" (known: any_time, reminders, working_days, working_mornings)",
        ),
        (
            "threshold currency",
            policy_with(&format!("[minimum_amount]\nEUX = \"10.00\" {HERE}"), "", ""),
            "minimum_amount.EUX",
            "unknown currency \"EUX\" (expected an ISO 4217 code such as EUR)",
        ),
        (
            "threshold amount",
            policy_with(&format!("[minimum_amount]\nEUR = \"ten\" {HERE}"), "", ""),
            "minimum_amount.EUR",
            "\"ten\" is not a decimal amount such as \"10.00\"",
        ),
        (
            "negative threshold",
            policy_with(&format!("[minimum_amount]\nEUR = \"-1\" {HERE}"), "", ""),
            "minimum_amount.EUR",
            "\"-1\" is negative",
        ),
        (
            "threshold decimals",
            policy_with(&format!("[minimum_amount]\nJPY = \"10.5\" {HERE}"), "", ""),
            "minimum_amount.JPY",
            "\"10.5\" has more decimals than JPY allows",
        ),
        (
            "threshold as a float",
            policy_with(&format!("[minimum_amount]\nEUR = 10.0 {HERE}"), "", ""),
            "minimum_amount.EUR",
            "expected a decimal amount as a string such as \"10.00\", found the float 10.0",
        ),
        (
            "grouping window",
            policy_with(&format!("[grouping]\nwithin_days = 30 {HERE}"), "", ""),
            "grouping.within_days",
            "30 is out of range (0 to 14 days)",
        ),
        (
            "negative grouping window",
            policy_with(&format!("[grouping]\nwithin_days = -1 {HERE}"), "", ""),
            "grouping.within_days",
            "-1 is out of range (0 to 14 days)",
        ),
        (
            "grouping with an unknown key",
            policy_with(&format!("[grouping]\nwithin_days = 3\nsame_day = true {HERE}"), "", ""),
            "grouping.same_day",
            "unknown field \"same_day\" (expected within_days)",
        ),
        (
            "unknown segment",
            policy_with("", "", &format!("[[segments.urgent.steps]] {HERE}\nname = \"a\"\noffset_days = 1\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n")),
            "segments",
            "unknown risk \"urgent\" (expected one of: low, medium, high)",
        ),
        (
            "segment without steps",
            policy_with("", "", "").replace(
                "[[segments.high.steps]]\nname = \"a\"\noffset_days = 5\nchannel = \"email\"\ntemplate = \"reminder\"\ntone = \"courteous\"\n",
                &format!("[segments.high] {HERE}\nsteps = []\n"),
            ),
            "segments.high.steps",
            "a segment needs at least one step",
        ),
        (
            "missing segment",
            policy_with("", "", "").replace(
                "[[segments.high.steps]]\nname = \"a\"\noffset_days = 5\nchannel = \"email\"\ntemplate = \"reminder\"\ntone = \"courteous\"\n",
                "",
            ).replace("[[segments.medium.steps]]", &format!("[[segments.medium.steps]] {HERE}")),
            "segments",
            "segment high is missing (low, medium and high are all required)",
        ),
        (
            "step name",
            policy_with("", &format!("[[segments.medium.steps]]\nname = \"Relance 2\" {HERE}\noffset_days = 9\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n"), ""),
            "segments.medium.steps[1].name",
            "\"Relance 2\" must be lowercase letters, digits and _",
        ),
        (
            "reserved step name",
            policy_with("", &format!("[[segments.medium.steps]]\nname = \"thanks\" {HERE}\noffset_days = 9\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n"), ""),
            "segments.medium.steps[1].name",
            "\"thanks\" is reserved for the thank-you message",
        ),
        (
            "step name twice",
            policy_with("", &format!("[[segments.medium.steps]]\nname = \"a\" {HERE}\noffset_days = 9\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n"), ""),
            "segments.medium.steps[1].name",
            "step \"a\" appears twice in this segment",
        ),
        (
            "offset out of range",
            policy_with("", &format!("[[segments.medium.steps]]\nname = \"b\"\noffset_days = 400 {HERE}\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n"), ""),
            "segments.medium.steps[1].offset_days",
            "400 is out of range (-60 to 365 days)",
        ),
        (
            "offsets out of order",
            policy_with("", &format!("[[segments.medium.steps]]\nname = \"b\"\noffset_days = 5 {HERE}\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n"), ""),
            "segments.medium.steps[1].offset_days",
            "5 must come after the previous step's 5 (steps are listed in order, one day at most one step)",
        ),
        (
            "channel",
            policy_with("", &format!("[[segments.medium.steps]]\nname = \"b\"\noffset_days = 9\nchannel = \"pigeon\" {HERE}\ntemplate = \"x\"\ntone = \"firm\"\n"), ""),
            "segments.medium.steps[1].channel",
            "unknown channel \"pigeon\" (expected one of: email, sms, letter, registered_letter, call)",
        ),
        (
            "template",
            policy_with("", &format!("[[segments.medium.steps]]\nname = \"b\"\noffset_days = 9\nchannel = \"email\"\ntemplate = \"../x\" {HERE}\ntone = \"firm\"\n"), ""),
            "segments.medium.steps[1].template",
            "must be lowercase letters, digits and _",
        ),
        (
            "tone",
            policy_with("", &format!("[[segments.medium.steps]]\nname = \"b\"\noffset_days = 9\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"angry\" {HERE}\n"), ""),
            "segments.medium.steps[1].tone",
            "unknown tone \"angry\" (expected courteous, firm or formal)",
        ),
        (
            "step window",
            policy_with(WINDOW, &format!("window = \"evenings\" {HERE}"), ""),
            "segments.medium.steps[0].window",
            "unknown window \"evenings\" (known: any_time, office, reminders, working_days, working_mornings)",
        ),
        (
            "step minimum amount",
            policy_with("", &format!("when = {{ min_amount = {{ EUR = \"1,5\" }} }} {HERE}"), ""),
            "segments.medium.steps[0].when.min_amount.EUR",
            "\"1,5\" is not a decimal amount such as \"10.00\"",
        ),
        (
            "step customer kind",
            policy_with("", &format!("when = {{ customer_kind = \"company\" }} {HERE}"), ""),
            "segments.medium.steps[0].when.customer_kind",
            "unknown customerkind \"company\" (expected one of: business, consumer)",
        ),
        (
            "unknown condition",
            policy_with("", &format!("[segments.medium.steps.when]\nmax_amount = {{ EUR = \"5\" }} {HERE}"), ""),
            "segments.medium.steps[0].when.max_amount",
            "unknown field \"max_amount\" (expected min_amount or customer_kind)",
        ),
        (
            "unknown top-level key",
            policy_with(&format!("send_day = 3 {HERE}"), "", ""),
            "send_day",
            "unknown field \"send_day\" (expected one of: send_time, thanks_template, default_window, windows, minimum_amount, grouping, segments, indemnity_equivalent, payment_plans, fallback, fallback_templates, approvals, replies)",
        ),
        (
            "step offset as a string",
            policy_with("", &format!("[[segments.medium.steps]]\nname = \"b\"\noffset_days = \"9\" {HERE}\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"firm\"\n"), ""),
            "segments.medium.steps[1].offset_days",
            "expected an integer, found the string \"9\"",
        ),
        (
            "step without a tone",
            policy_with("", &format!("[[segments.medium.steps]] {HERE}\nname = \"b\"\noffset_days = 9\nchannel = \"email\"\ntemplate = \"x\"\n"), ""),
            "segments.medium.steps[1].tone",
            "is required but missing",
        ),
        (
            "step minimum amount as an integer",
            policy_with("", &format!("when = {{ min_amount = {{ EUR = 500 }} }} {HERE}"), ""),
            "segments.medium.steps[0].when.min_amount.EUR",
            "expected a decimal amount as a string such as \"10.00\", found the integer 500",
        ),
        (
            "send time as a number",
            policy_with("", "", "").replace("send_time = \"09:00\"", &format!("send_time = 9 {HERE}")),
            "send_time",
            "expected a string, found the integer 9",
        ),
        (
            "window days as a string",
            policy_with(&format!("[windows.office]\ndays = \"mon\" {HERE}\nopens = \"09:00\"\ncloses = \"12:00\"\n"), "", ""),
            "windows.office.days",
            "expected an array, found the string \"mon\"",
        ),
        (
            "business days as a string",
            policy_with(&format!("[windows.office]\ndays = [\"mon\"]\nopens = \"09:00\"\ncloses = \"12:00\"\nbusiness_days_only = \"yes\" {HERE}\n"), "", ""),
            "windows.office.business_days_only",
            "expected a boolean, found the string \"yes\"",
        ),
        (
            "payment plan grace out of range",
            policy_with(&format!("[payment_plans]\ngrace_days = 90 {HERE}\n"), "", ""),
            "payment_plans.grace_days",
            "90 is out of range (0 to 60 days)",
        ),
        (
            "payment plan reminder beyond the grace",
            policy_with(&format!("[payment_plans]\ngrace_days = 5\nreminder_days_after = [3, 8] {HERE}\n"), "", ""),
            "payment_plans.reminder_days_after",
            "8 is not a day after the instalment within the grace (1 to 5), in increasing order",
        ),
        (
            "broken TOML",
            policy_with(&format!("default_window = = \"x\" {HERE}"), "", ""),
            "syntax",
            "extra `=`, expected nothing",
        ),
    ];
    for (what, source, field, message) in &cases {
        let e = refused(source);
        let line = line_marked(source);
        assert_eq!(
            (e.file.as_str(), e.line, e.field.as_str()),
            ("policies/acme.toml", line, *field),
            "{what}: {e}\n{source}"
        );
        // The whole message, as a user reads it.
        assert_eq!(
            e.to_string(),
            format!("policies/acme.toml:{line}: {field}: {message}"),
            "{what}"
        );
    }
}

#[test]
fn windows_thresholds_and_conditions_are_read_from_the_file() {
    let source = policy_with(
        &format!("default_window = \"office\"\n[minimum_amount]\nEUR = \"25\"\nJPY = \"3000\"\n{WINDOW}\n[windows.nights]\ndays = [\"sat\"]\nopens = \"20:00\"\ncloses = \"24:00\"\nbusiness_days_only = false\n"),
        "[[segments.medium.steps]]\nname = \"b\"\noffset_days = 9\nchannel = \"email\"\ntemplate = \"x\"\ntone = \"formal\"\nwindow = \"nights\"\nwhen = { min_amount = { EUR = \"500.00\" }, customer_kind = \"consumer\" }\n",
        "",
    );
    let policy = DunningPolicy::parse(&source, "acme.toml").unwrap();
    let medium = policy.steps_for(Risk::Medium);
    assert_eq!(medium[0].window, "office");
    assert_eq!(medium[1].window, "nights");
    assert_eq!(
        medium[1].conditions,
        StepConditions {
            min_amount: BTreeMap::from([("EUR".to_string(), Decimal::new(50000, 2))]),
            customer_kind: Some(CustomerKind::Consumer),
        }
    );
    let nights = policy.window("nights");
    assert_eq!(nights.closes, END_OF_DAY);
    assert!(!nights.business_days_only);
    assert_eq!(policy.window("office").weekdays, vec![Weekday::Mon, Weekday::Tue]);
    // The built-in windows are there too; an unknown name falls back to the default window.
    assert_eq!(policy.window("reminders"), SendWindow::reminders());
    assert_eq!(policy.window("gone"), policy.window("office"));
    assert_eq!(policy.minimum_amount.len(), 2);
    assert_eq!(policy.grouping, None);
}

/// The default policy of the first release, kept verbatim: files written before windows,
/// thresholds and conditions stay valid and plan exactly as they did.
const POLICY_BEFORE_WINDOWS: &str = include_str!("testdata/policy_before_windows.toml");

#[test]
fn a_policy_file_from_before_windows_is_valid_and_plans_as_before() {
    let policy = DunningPolicy::parse(POLICY_BEFORE_WINDOWS, "old.toml").unwrap();
    assert_eq!(policy.default_window, ANY_TIME_WINDOW);
    assert!(policy.minimum_amount.is_empty());
    assert_eq!(policy.grouping, None);
    let due_on = NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
    let plan = plan_invoice(
        &policy,
        &PlanInput {
            risk: Risk::Medium,
            kind: CustomerKind::Business,
            amount: Money::new(Decimal::ONE, iso_currency::Currency::EUR),
            due_on,
            tz: chrono_tz::Europe::Paris,
            calendar: &FrenchCalendar::default(),
        },
    );
    let due: Vec<String> = plan.steps.iter().map(|s| s.due_at.to_rfc3339()).collect();
    // Sunday 5 April and Easter Sunday 12 April included: no window, as before.
    assert_eq!(
        due,
        vec![
            "2026-03-26T08:00:00+00:00",
            "2026-04-05T07:00:00+00:00",
            "2026-04-12T07:00:00+00:00",
        ]
    );
}
