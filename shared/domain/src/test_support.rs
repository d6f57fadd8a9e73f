//! Test helpers shared by the planner's and the pauses' tests: policies whose medium segment
//! is given, and the proptest strategies that generate them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::customer::{Channel, Risk};
use crate::policy::{builtin_windows, DunningPolicy, StepConditions, StepTemplate, Tone};
use crate::window::SendWindow;
use chrono::{NaiveTime, Weekday};
use chrono_tz::{America, Asia, Europe, Tz};
use proptest::prelude::*;

/// A policy whose medium segment has these (offset, window) steps.
pub(crate) fn policy_with(steps: &[(i64, &str)]) -> DunningPolicy {
    let mut policy = DunningPolicy::default_policy().unwrap();
    set_segment(&mut policy, Risk::Medium, steps);
    policy
}

/// Replaces a segment with these (offset, window) steps, named `step_0`, `step_1`... in
/// every segment alike, so that segments share step names as the default policy's do.
pub(crate) fn set_segment(policy: &mut DunningPolicy, risk: Risk, steps: &[(i64, &str)]) {
    let segment: Vec<StepTemplate> = steps
        .iter()
        .enumerate()
        .map(|(i, (offset, window))| StepTemplate {
            name: format!("step_{i}"),
            offset_days: *offset,
            channel: Channel::Email,
            template: "reminder".into(),
            tone: Tone::Firm,
            line: 1,
            path: format!("segments.{risk}.steps[{i}]"),
            template_line: 1,
            window: window.to_string(),
            conditions: StepConditions::default(),
            attach_statement: false,
        })
        .collect();
    policy.segments.insert(risk.into(), segment);
}

pub(crate) fn zones() -> impl Strategy<Value = Tz> {
    prop::sample::select(vec![
        Europe::Paris,
        America::New_York,
        Asia::Tokyo,
        chrono_tz::Australia::Sydney,
    ])
}

pub(crate) fn window_names() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "any_time",
        "working_days",
        "working_mornings",
        "reminders",
        "tuesdays",
    ])
}

/// A medium segment of 1 to 6 steps, offsets strictly increasing from -20 to +60.
pub(crate) fn random_steps() -> impl Strategy<Value = Vec<(i64, &'static str)>> {
    prop::collection::vec((1i64..12, window_names()), 1..7).prop_map(|gaps| {
        let mut offset = -20;
        gaps.into_iter()
            .map(|(gap, window)| {
                offset += gap;
                (offset, window)
            })
            .collect()
    })
}

pub(crate) fn random_policy(steps: &[(i64, &str)], send_hour: u32) -> DunningPolicy {
    let mut policy = policy_with(steps);
    policy.send_time = NaiveTime::from_hms_opt(send_hour, 30, 0).unwrap();
    let mut windows = builtin_windows();
    windows.insert(
        "tuesdays".into(),
        SendWindow {
            weekdays: vec![Weekday::Tue],
            opens: NaiveTime::from_hms_opt(14, 0, 0).unwrap(),
            closes: NaiveTime::from_hms_opt(16, 0, 0).unwrap(),
            business_days_only: true,
        },
    );
    policy.windows = windows;
    policy
}
