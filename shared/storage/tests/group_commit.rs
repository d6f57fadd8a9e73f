//! Group commit: the work of many handlers shares a transaction, yet each handler sees its
//! own outcome, only its own failure undoes its writes (the others run again alone), and
//! nothing is reported done before the transaction holding it committed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use futures_util::future::join_all;
use futures_util::FutureExt;
use relance_storage::group_commit::{BatchFailed, GroupCommit};
use sqlx::PgPool;
use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;

/// Inserts `key` and returns the id of the transaction that holds it.
async fn insert(commits: &GroupCommit, key: i32) -> anyhow::Result<i64> {
    commits
        .run(move |conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO work (key) VALUES ($1)")
                    .bind(key)
                    .execute(&mut *conn)
                    .await?;
                let xact: i64 = sqlx::query_scalar("SELECT txid_current()")
                    .fetch_one(&mut *conn)
                    .await?;
                anyhow::Ok(xact)
            })
        })
        .await
}

async fn keys(db: &PgPool) -> Vec<i32> {
    sqlx::query_scalar("SELECT key FROM work ORDER BY key")
        .fetch_all(db)
        .await
        .unwrap()
}

async fn table(db: &PgPool) {
    // Unique at commit: two pieces of one batch inserting the same key fail the batch's
    // commit, not either piece's own statement.
    sqlx::query("CREATE TABLE work (key int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
        .execute(db)
        .await
        .unwrap();
}

#[tokio::test]
async fn concurrent_work_shares_commits_up_to_the_batch_size_and_each_caller_hears_its_own() {
    let (url, db) = common::fresh_database(3).await;
    table(&db).await;
    let commits = GroupCommit::start(&db, "test", 1, 16);
    // 50 handlers at once (all queued before the committer runs: one thread): batches of
    // 16, 16, 16 and 2.
    let xacts: Vec<i64> = join_all((0..50).map(|key| insert(&commits, key)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let distinct: BTreeSet<i64> = xacts.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "{xacts:?}");
    assert!(xacts[..16].iter().all(|x| *x == xacts[0]), "{xacts:?}");
    assert_eq!(keys(&db).await, (0..50).collect::<Vec<_>>());

    // Alone, a piece of work commits at once, in a transaction of its own.
    let alone = insert(&commits, 50).await.unwrap();
    assert!(!distinct.contains(&alone));
    assert_eq!(keys(&db).await.len(), 51);

    // A batch size of 1: each its own transaction.
    let single = GroupCommit::start(&db, "test", 2, 1);
    let xacts: BTreeSet<i64> = join_all((100..110).map(|key| insert(&single, key)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(xacts.len(), 10);

    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}

#[tokio::test]
async fn a_failing_piece_undoes_its_own_writes_only_and_a_panic_reaches_its_caller() {
    let (url, db) = common::fresh_database(3).await;
    table(&db).await;
    let commits = GroupCommit::start(&db, "test", 1, 16);
    let failing = commits.run::<i64, anyhow::Error, _>(|conn| {
        Box::pin(async move {
            sqlx::query("INSERT INTO work (key) VALUES (2)")
                .execute(&mut *conn)
                .await?;
            anyhow::bail!("the handler refused after writing")
        })
    });
    let bad_statement = commits.run(|conn| {
        Box::pin(async move {
            sqlx::query("INSERT INTO work (key) VALUES ('not a number')")
                .execute(&mut *conn)
                .await?;
            anyhow::Ok(0i64)
        })
    });
    let panicking = AssertUnwindSafe(commits.run::<i64, anyhow::Error, _>(|conn| {
        Box::pin(async move {
            sqlx::query("INSERT INTO work (key) VALUES (4)")
                .execute(&mut *conn)
                .await?;
            panic!("the handler panicked after writing")
        })
    }))
    .catch_unwind();
    let (one, failed, statement, panicked, five) = tokio::join!(
        insert(&commits, 1),
        failing,
        bad_statement,
        panicking,
        insert(&commits, 5)
    );
    // The batch failed at the second piece: rolled back, every piece ran again alone.
    let (one, five) = (one.unwrap(), five.unwrap());
    assert_ne!(one, five, "each alone");
    assert_eq!(
        failed.unwrap_err().to_string(),
        "the handler refused after writing"
    );
    assert!(format!("{:#}", statement.unwrap_err()).contains("invalid input syntax"));
    let payload = panicked.expect_err("the panic reaches the caller");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"the handler panicked after writing")
    );
    // The failed and panicked pieces' rows are gone; the others committed.
    assert_eq!(keys(&db).await, [1, 5]);

    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}

#[tokio::test]
async fn a_batch_that_fails_to_commit_runs_its_pieces_again_alone_and_the_guilty_one_fails_with_its_cause() {
    let (url, db) = common::fresh_database(3).await;
    table(&db).await;
    let commits = GroupCommit::start(&db, "test", 1, 16);
    // The unique key is checked at commit: the batch's commit fails; run alone, the first
    // two commit and the third fails at its own commit, told why (the database's own error,
    // so that an outage is still told from a bad query).
    let results = join_all([1, 2, 1].map(|key| insert(&commits, key))).await;
    let xacts: BTreeSet<i64> = results[..2].iter().map(|r| *r.as_ref().unwrap()).collect();
    assert_eq!(xacts.len(), 2, "each alone");
    let error = results[2].as_ref().expect_err("a duplicate key");
    assert!(error.chain().any(|e| e.is::<BatchFailed>()), "{error:#}");
    let code = error
        .chain()
        .find_map(|e| e.downcast_ref::<sqlx::Error>())
        .and_then(|e| e.as_database_error())
        .and_then(|e| e.code().map(|c| c.to_string()));
    assert_eq!(code.as_deref(), Some("23505"), "{error:#}");
    assert!(!relance_storage::is_unavailable(error));
    assert_eq!(keys(&db).await, [1, 2]);
    // The committer goes on.
    insert(&commits, 3).await.unwrap();
    assert_eq!(keys(&db).await, [1, 2, 3]);

    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}

#[tokio::test]
async fn without_a_database_every_caller_is_told_the_outage() {
    let (url, db) = common::fresh_database(1).await;
    table(&db).await;
    let commits = GroupCommit::start(&db, "test", 1, 16);
    db.close().await;
    let results = join_all((0..3).map(|key| insert(&commits, key))).await;
    for result in results {
        let error = result.expect_err("no database");
        assert!(relance_storage::is_unavailable(&error), "{error:#}");
    }
    relance_storage::drop_database(&url).await.unwrap();
}
