//! Outbox folders, for channels without a provider configured: JSON lines appended to a
//! file of a dated folder (`<dir>/<YYYY-MM-DD>/<file>`), at most once per reference (looked
//! for in the day's file and the day before's: a resend just after midnight of what went
//! just before it is not written again). Knows nothing of what a line describes (a text
//! message, a letter's manifest entry).

use anyhow::Context;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// The folder of `at`'s (UTC) date under `dir`.
fn day_folder(dir: &Path, at: DateTime<Utc>) -> PathBuf {
    dir.join(at.format("%Y-%m-%d").to_string())
}

/// Creates (if need be) the folder of `at`'s date under `dir`, and returns it.
pub async fn dated_folder(dir: &Path, at: DateTime<Utc>) -> anyhow::Result<PathBuf> {
    let folder = day_folder(dir, at);
    tokio::fs::create_dir_all(&folder)
        .await
        .with_context(|| format!("creating {}", folder.display()))?;
    Ok(folder)
}

/// The file named `name` of `at`'s day, or of the day before, that already has a line of
/// `reference`, if one has.
pub async fn written(dir: &Path, at: DateTime<Utc>, name: &str, reference: &str) -> Option<PathBuf> {
    for day in [at, at - chrono::Duration::days(1)] {
        let file = day_folder(dir, day).join(name);
        if has_reference(&file, reference).await {
            return Some(file);
        }
    }
    None
}

/// Whether `file` (JSON lines; absent: none) has a line of this `reference`.
async fn has_reference(file: &Path, reference: &str) -> bool {
    let existing = tokio::fs::read_to_string(file).await.unwrap_or_default();
    existing
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|l| l.get("reference").and_then(|r| r.as_str()) == Some(reference))
}

/// Appends `line` to `file` and flushes it (`what` names the file in the error).
pub async fn append_line(file: &Path, line: &serde_json::Value, what: &str) -> anyhow::Result<()> {
    let mut out = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    out.write_all(format!("{line}\n").as_bytes())
        .await
        .with_context(|| format!("writing {}", file.display()))?;
    out.flush().await.with_context(|| format!("flushing {what}"))?;
    Ok(())
}
