//! The checked reading of stored text into the enums it stands for (status, kind, channel,
//! tone, risk, time zone): done once, when a row is read. An impossible value is an error
//! that names the table, the row and the value, never a silent default.

use std::fmt::Display;
use std::str::FromStr;

/// Parses `value`, read from `field` of the `table` row `row` (its id or number).
pub(crate) fn parse<T>(table: &str, row: impl Display, field: &str, value: &str) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    value
        .parse::<T>()
        .map_err(|e| anyhow::anyhow!("{table} row {row}: impossible {field} {value:?} ({e})"))
}

/// Parses a stored IANA time zone name.
pub(crate) fn parse_tz(table: &str, row: impl Display, value: &str) -> anyhow::Result<chrono_tz::Tz> {
    parse::<chrono_tz::Tz>(table, row, "time zone", value)
}

/// Turns a failed conversion into the error sqlx's `FromRow` gives, so that the queries
/// that read these rows keep their shape (and their context).
pub(crate) fn decode_error(error: anyhow::Error) -> sqlx::Error {
    sqlx::Error::Decode(format!("{error:#}").into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::steps::StepStatus;
    use relance_domain::{Channel, CustomerKind, Language, Risk, StepKind, Tone};

    /// Typed fields go into journal details and templates as they did as text.
    #[test]
    fn typed_fields_serialise_as_their_stored_text() {
        fn same<T: serde::Serialize + Display>(values: &[T]) {
            for value in values {
                assert_eq!(
                    serde_json::to_value(value).unwrap(),
                    serde_json::json!(value.to_string())
                );
            }
        }
        same(Channel::ALL);
        same(Risk::ALL);
        same(CustomerKind::ALL);
        same(Language::ALL);
        same(&StepStatus::ALL);
        same(&[StepKind::Reminder, StepKind::Thanks, StepKind::Recap]);
        same(&[Tone::Courteous, Tone::Firm, Tone::Formal]);
        assert_eq!(serde_json::json!(Channel::RegisteredLetter), "registered_letter");
    }

    #[test]
    fn an_impossible_value_names_the_table_the_row_and_the_value() {
        let error = parse::<Channel>("reminder_steps", "S-1", "channel", "pigeon").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("reminder_steps row S-1") && message.contains("\"pigeon\""),
            "{message}"
        );
        let error = parse_tz("customers", "C-1", "Mars/Olympus").unwrap_err();
        assert!(error.to_string().contains("Mars/Olympus"), "{error}");
        assert_eq!(
            "awaiting_outcome".parse::<StepStatus>().unwrap(),
            StepStatus::AwaitingOutcome
        );
    }
}
