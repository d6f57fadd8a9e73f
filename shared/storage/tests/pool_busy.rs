//! A pool timeout is an outage only when the database cannot be reached: when every
//! connection of the pool is open and in use, the database answers and the message is
//! not to be held as if it were down.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use relance_storage::{connect_with_timeout, is_pool_busy, is_unavailable, mark_pool_busy};
use std::time::Duration;

#[tokio::test]
async fn a_busy_pool_is_told_from_an_unreachable_database() {
    let pool = connect_with_timeout(
        &format!("{}/postgres", common::server_url()),
        1,
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    let held = pool.acquire().await.unwrap();
    let timed_out = anyhow::Error::new(pool.acquire().await.unwrap_err()).context("recording a delivery");
    let marked = mark_pool_busy(timed_out, &pool);
    assert!(is_pool_busy(&marked), "{marked:#}");
    assert!(!is_unavailable(&marked), "{marked:#}");
    assert!(format!("{marked:#}").contains("busy"));
    drop(held);

    // Nothing listens on port 1: every connection attempt fails until the timeout.
    let down = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy("postgres://postgres@127.0.0.1:1/postgres")
        .unwrap();
    let error = down.acquire().await.unwrap_err();
    assert!(matches!(error, sqlx::Error::PoolTimedOut), "{error:?}");
    let marked = mark_pool_busy(anyhow::Error::new(error), &down);
    assert!(!is_pool_busy(&marked));
    assert!(is_unavailable(&marked), "an unreachable database is an outage");
}
