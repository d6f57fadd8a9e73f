//! The collections overview paged over a ledger larger than one read batch: every invoice is
//! listed once, in (due date, number) order, page after page, with or without a status filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{TimeZone, Utc};
use relance_domain::collections::CollectionStatus;
use relance_storage::overview::{list_page, Page};

/// Every page of the overview, following `more_after`, as invoice numbers.
async fn all_pages(db: &sqlx::PgPool, only: Option<CollectionStatus>, limit: usize) -> Vec<Vec<String>> {
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0).single().unwrap();
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = Page {
            only,
            after: after.as_deref(),
            limit,
        };
        let listed = list_page(db, now, &page).await.unwrap();
        if let Some(status) = only {
            assert!(listed.invoices.iter().all(|i| i.status == status));
        }
        pages.push(listed.invoices.iter().map(|i| i.number.clone()).collect());
        match listed.more_after {
            Some(last) => after = Some(last),
            None => return pages,
        }
    }
}

#[tokio::test]
async fn pages_list_every_invoice_once_in_due_date_order() {
    // A fresh database named like the harness's, so a crashed run's leftover is removed.
    let (url, db) = common::fresh_database(2).await;
    common::insert_customer_c1(&db).await;
    // 1 203 invoices over 40 due dates (several a day, so the number breaks ties); every
    // third one settled.
    sqlx::query(
        "INSERT INTO invoices (id, number, customer_id, amount, currency, balance, issued_on, due_on, status, created_at)
         SELECT gen_random_uuid(), 'F-' || lpad(n::text, 5, '0'), 'C-1', 100, 'EUR',
                CASE WHEN n % 3 = 0 THEN 0 ELSE 100 END, date '2026-01-01',
                date '2026-03-01' + ((n * 7) % 40), CASE WHEN n % 3 = 0 THEN 'settled' ELSE 'open' END, now()
         FROM generate_series(1, 1203) AS n",
    )
    .execute(&db)
    .await
    .unwrap();
    let expected: Vec<String> = sqlx::query_scalar("SELECT number FROM invoices ORDER BY due_on, number")
        .fetch_all(&db)
        .await
        .unwrap();

    let pages = all_pages(&db, None, 100).await;
    assert_eq!(pages.len(), 13, "twelve full pages and the last three invoices");
    assert!(pages[..12].iter().all(|p| p.len() == 100));
    assert_eq!(pages.concat(), expected);

    let settled_expected: Vec<String> =
        sqlx::query_scalar("SELECT number FROM invoices WHERE status = 'settled' ORDER BY due_on, number")
            .fetch_all(&db)
            .await
            .unwrap();
    let settled = all_pages(&db, Some(CollectionStatus::Settled), 150).await;
    assert_eq!(settled_expected.len(), 401);
    assert_eq!(
        settled.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![150, 150, 101]
    );
    assert_eq!(settled.concat(), settled_expected);

    // Exactly one page's worth: no "more" on the last page.
    assert_eq!(
        all_pages(&db, Some(CollectionStatus::Settled), 401).await.len(),
        1
    );
    // An unknown invoice to start after is an error, not an empty list.
    let now = Utc::now();
    let page = Page {
        only: None,
        after: Some("F-99999"),
        limit: 10,
    };
    let error = list_page(&db, now, &page).await.unwrap_err();
    assert!(format!("{error:#}").contains("F-99999"), "{error:#}");

    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}
