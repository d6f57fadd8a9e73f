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
