//! A simulated clock shared by several processes through the database (`RELANCE_CLOCK=database`):
//! the time lives in the `simulated_clock` row, each process follows it.

use anyhow::Context;
use chrono::{DateTime, Utc};
use relance_domain::{Clock, SimulatedClock};
use sqlx::PgPool;
use std::time::Duration;

/// Sets the shared simulated time.
pub async fn set_shared_time(db: &PgPool, now: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO simulated_clock (id, now) VALUES (true, $1) ON CONFLICT (id) DO UPDATE SET now = $1",
    )
    .bind(now)
    .execute(db)
    .await
    .context("setting the shared simulated clock")?;
    Ok(())
}

async fn read(db: &PgPool) -> anyhow::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar("SELECT now FROM simulated_clock WHERE id")
        .fetch_optional(db)
        .await
        .context("reading the shared simulated clock")
}

/// A clock that follows the shared row, refreshed every `interval` by a background task.
/// Starts at the row's time, or at `start` (written to the row) when there is none.
pub async fn follow_shared_time(
    db: PgPool,
    start: DateTime<Utc>,
    interval: Duration,
) -> anyhow::Result<SimulatedClock> {
    let now = match read(&db).await? {
        Some(now) => now,
        None => {
            set_shared_time(&db, start).await?;
            start
        }
    };
    let clock = SimulatedClock::starting_at(now);
    let follower = clock.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            match read(&db).await {
                // Time only moves forward, even if a reader sees an older row.
                Ok(Some(now)) if now > follower.now() => follower.set(now),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "shared clock not readable; keeping the last time"
                ),
            }
        }
    });
    Ok(clock)
}
