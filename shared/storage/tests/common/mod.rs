//! What the storage tests share: the PostgreSQL server they work on, and a fresh migrated
//! database per test, named like the harness's (`relance_test_<time>_<id>`: a crashed run's
//! leftover is removed by the next run's sweep).
#![allow(dead_code, clippy::unwrap_used)]

use chrono::Utc;
use sqlx::PgPool;
use uuid::Uuid;

/// The server of the tests' databases (`RELANCE_TEST_DATABASE_SERVER`, or the local one).
pub fn server_url() -> String {
    std::env::var("RELANCE_TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A fresh migrated database (its URL, to drop it) and a pool of `pool_size` on it.
pub async fn fresh_database(pool_size: u32) -> (String, PgPool) {
    let url = format!(
        "{}/relance_test_{}_{}",
        server_url(),
        Utc::now().timestamp(),
        Uuid::new_v4().simple()
    );
    relance_storage::migrate(&url).await.unwrap();
    let db = relance_storage::connect(&url, pool_size).await.unwrap();
    (url, db)
}

/// Customer C-1 (ACME, Europe/Paris, medium risk), whom most storage tests bill.
pub async fn insert_customer_c1(db: &PgPool) {
    sqlx::query(
        "INSERT INTO customers (id, name, contact_name, email, language, timezone, risk, kind, updated_at)
         VALUES ('C-1', 'ACME', 'Jeanne', 'jeanne@acme.test', 'fr', 'Europe/Paris', 'medium', 'business', now())",
    )
    .execute(db)
    .await
    .unwrap();
}
