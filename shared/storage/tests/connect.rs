//! relance's connections run without JIT compilation: on a large ledger the planner's
//! estimates of its short indexed statements cross `jit_above_cost`, and compiling them
//! cost 20-25 ms a statement that runs in 0.3 ms (the scheduler's hand-off sweep at 1M
//! invoices, found by `relance-bench pass`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use sqlx::Connection;

/// The `jit` setting a session runs with.
async fn jit<'c>(executor: impl sqlx::PgExecutor<'c>) -> String {
    sqlx::query_scalar("SELECT current_setting('jit')")
        .fetch_one(executor)
        .await
        .unwrap()
}

#[tokio::test]
async fn pools_and_single_connections_run_without_jit() {
    let url = format!("{}/postgres", common::server_url());
    // What a connection made without relance's options gets: the server's default.
    let mut plain = sqlx::PgConnection::connect(&url).await.unwrap();
    let server_default = jit(&mut plain).await;
    plain.close().await.unwrap();

    let pool = relance_storage::connect(&url, 2).await.unwrap();
    let in_pool = jit(&pool).await;
    pool.close().await;
    let options = relance_storage::connect_options(&url).unwrap();
    let mut single = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let on_single = jit(&mut single).await;
    single.close().await.unwrap();

    assert_eq!(
        in_pool, "off",
        "a service pool (server default: {server_default})"
    );
    assert_eq!(
        on_single, "off",
        "a connection of its own (server default: {server_default})"
    );
}
