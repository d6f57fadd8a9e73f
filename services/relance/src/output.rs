//! `--format table|json|csv` of the list commands: the table for a person at a terminal,
//! JSON (one array) and CSV (a header line, then one line per row) for scripts. Each command
//! keeps its own table layout and hands its rows here for the other two.

use anyhow::Context;
use relance_domain::{SharedClock, SimulatedClock, SystemClock};
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a person.
    #[default]
    Table,
    /// One JSON array of objects.
    Json,
    /// Comma-separated, with a header line.
    Csv,
}

/// Writes `rows` as a JSON array or CSV on stdout (not for [`Format::Table`], which each
/// command lays out itself).
pub fn write_rows<T: Serialize>(format: Format, rows: &[T]) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        Format::Table | Format::Json => {
            serde_json::to_writer_pretty(&mut out, rows).context("writing JSON")?;
            writeln!(out).context("writing JSON")?;
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            for row in rows {
                writer.serialize(row).context("writing CSV")?;
            }
            writer.flush().context("writing CSV")?;
        }
    }
    Ok(())
}

/// The clock of a command: the shared simulated clock when the services follow one, the
/// simulated start when one is set, the system's otherwise.
pub async fn command_clock(
    settings: &relance_config::Settings,
    db: &sqlx::PgPool,
) -> anyhow::Result<SharedClock> {
    Ok(match (settings.shared_clock, settings.simulated_clock_start) {
        (true, Some(start)) => Arc::new(
            relance_storage::clock::follow_shared_time(
                db.clone(),
                start,
                std::time::Duration::from_secs(3600),
            )
            .await?,
        ),
        (_, Some(start)) => Arc::new(SimulatedClock::starting_at(start)),
        _ => Arc::new(SystemClock),
    })
}

/// A time as the tables show it.
pub fn minute(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}
