//! The collections gauges count the invoices per collections status, and the amounts owed by
//! age, exactly as the overview derives each invoice's status one by one: they come from two
//! aggregate queries over the ledger (the overview's page-by-page walk read the ledger once
//! per page, about an hour at 1M invoices), so this checks the two derivations agree on a
//! ledger where every status, several time zones and the edges of the rule occur. The
//! console's totals snapshot lists every invoice with its status from the same aggregate
//! (`plan_at`): checked here too, invoice by invoice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{TimeZone, Utc};
use relance_domain::collections::CollectionStatus;
use relance_storage::console::invoices::{self, Cursor, Filter, Sort, TotalsSnapshot};
use relance_storage::{gauges, overview};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

#[tokio::test]
async fn the_gauges_and_the_console_snapshot_count_each_status_as_the_overview_derives_it() {
    let (url, db) = common::fresh_database(2).await;
    // Customers in three time zones: a step planned at 23:30 UTC falls on the next local day
    // in Paris (summer time) and Auckland, the same one in Los Angeles.
    sqlx::query(
        "INSERT INTO customers (id, name, contact_name, email, language, timezone, risk, kind, updated_at)
         SELECT 'C-' || n, 'Client ' || n, 'Contact', 'c' || n || '@example.test', 'fr',
                (ARRAY['Europe/Paris', 'Pacific/Auckland', 'America/Los_Angeles'])[n + 1], 'medium', 'business', now()
         FROM generate_series(0, 2) AS n",
    )
    .execute(&db)
    .await
    .unwrap();
    // 900 invoices due from 11 days before to 9 days after 1 June; some settled, closed,
    // handed off; some open with nothing left to pay (owed by no one); in EUR and USD.
    sqlx::query(
        "INSERT INTO invoices (id, number, customer_id, amount, currency, balance, issued_on, due_on, status, created_at)
         SELECT gen_random_uuid(), 'F-' || lpad(n::text, 4, '0'), 'C-' || (n % 3), 100 + n,
                CASE WHEN n % 5 = 0 THEN 'USD' ELSE 'EUR' END,
                CASE WHEN n % 19 = 0 THEN 0 WHEN n % 11 = 0 THEN 0 ELSE 100 + n END,
                date '2026-04-01', date '2026-06-01' + (n % 21 - 11),
                CASE WHEN n % 11 = 0 THEN 'settled' WHEN n % 13 = 0 THEN 'closed'
                     WHEN n % 17 = 0 THEN 'handed_off' ELSE 'open' END, now()
         FROM generate_series(1, 900) AS n",
    )
    .execute(&db)
    .await
    .unwrap();
    // Four reminder steps each (notes 5 days and 1 day before the due date, a firm reminder,
    // the formal notice), at 23:30 UTC, each gone out or not by the invoice's and the step's
    // ranks: the note of the day before is on the due date itself in Paris and Auckland
    // (not a note before the due date there), the day before in Los Angeles.
    sqlx::query(
        "INSERT INTO reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at, status, updated_at)
         SELECT gen_random_uuid(), i.id, 'step_' || p, 'reminder', p, 'email', 'reminder',
                (ARRAY['courteous', 'courteous', 'firm', 'formal'])[p + 1],
                (i.due_on + (ARRAY[-5, -1, 5, 8])[p + 1]) + time '23:30' AT TIME ZONE 'UTC',
                CASE (substr(i.number, 3)::int + p) % 6 WHEN 0 THEN 'sent' WHEN 1 THEN 'queued'
                     WHEN 2 THEN 'skipped' WHEN 3 THEN 'cancelled' ELSE 'pending' END,
                now()
         FROM invoices i, generate_series(0, 3) AS p
         WHERE substr(i.number, 3)::int % 23 <> 0",
    )
    .execute(&db)
    .await
    .unwrap();
    // Pauses: some holding, some ended (which hold nothing), one invoice with two.
    sqlx::query(
        "INSERT INTO invoice_pauses (id, invoice_id, kind, reason, promised_on, until, source, event_id, started_at, ended_at)
         SELECT gen_random_uuid(), i.id, k.kind, 'test',
                CASE WHEN k.kind = 'promise' THEN date '2026-06-10' END,
                CASE WHEN k.kind = 'promise' THEN timestamptz '2026-06-11 00:00Z' END,
                'test', i.number || k.kind, now(),
                CASE WHEN substr(i.number, 3)::int % 9 = 0 THEN now() END
         FROM invoices i
         JOIN (VALUES ('dispute', 7), ('promise', 9), ('manual', 14)) AS k(kind, every)
           ON substr(i.number, 3)::int % k.every = 0",
    )
    .execute(&db)
    .await
    .unwrap();

    // On the due date's evening in Paris, so today differs across the time zones.
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 21, 0, 0).single().unwrap();
    let listed = overview::list(&db, now, None).await.unwrap();
    assert_eq!(listed.len(), 900);
    let mut expected_counts: BTreeMap<&str, u64> =
        CollectionStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let mut expected_owed: BTreeMap<(String, &str), Decimal> = BTreeMap::new();
    for invoice in &listed {
        *expected_counts.entry(invoice.status.as_str()).or_default() += 1;
        let owed = !matches!(
            invoice.status,
            CollectionStatus::Settled | CollectionStatus::Closed | CollectionStatus::HandedOff
        );
        if owed && invoice.balance > Decimal::ZERO {
            let days = (now.date_naive() - invoice.due_on).num_days();
            let bucket = match days {
                ..=0 => "not_due",
                1..=30 => "1_30_days",
                _ => "31_60_days",
            };
            *expected_owed
                .entry((invoice.currency.clone(), bucket))
                .or_default() += invoice.balance;
        }
    }
    for status in CollectionStatus::ALL {
        assert!(
            expected_counts[status.as_str()] > 0,
            "the ledger has no {status} invoice: {expected_counts:?}"
        );
    }

    let mut lead = gauges::try_lead(&url)
        .await
        .unwrap()
        .expect("the gauges' lock is free");
    // Background figures: the leading connection never runs parallel workers (on a large
    // ledger they would take every core from the deliveries and payments).
    let workers: String = sqlx::query_scalar("SHOW max_parallel_workers_per_gather")
        .fetch_one(&mut lead)
        .await
        .unwrap();
    assert_eq!(workers, "0");
    let figures = gauges::figures(&mut lead, now).await.unwrap();
    assert_eq!(figures.invoices, expected_counts);
    assert_eq!(figures.outstanding, expected_owed);
    let paused_expected = listed.iter().filter(|i| !i.pauses.is_empty()).count();
    assert_eq!(usize::try_from(figures.invoices_paused).unwrap(), paused_expected);

    drop(lead);

    // The console's totals snapshot: the same counts and balances per status, and every
    // invoice listed under the status the overview gives it (a page filtered on a status
    // is chosen from the snapshot).
    let balances = |invoices: &mut dyn Iterator<Item = &overview::InvoiceOverview>| {
        let mut totals: BTreeMap<String, (u64, BTreeMap<String, Decimal>)> = CollectionStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), (0, BTreeMap::new())))
            .collect();
        for invoice in invoices {
            let total = totals.get_mut(invoice.status.as_str()).unwrap();
            total.0 += 1;
            *total.1.entry(invoice.currency.clone()).or_default() += invoice.balance;
        }
        totals
    };
    let summed = |snapshot: &TotalsSnapshot, filter: &Filter| {
        snapshot
            .sum(filter)
            .into_iter()
            .map(|(status, t)| {
                (
                    status,
                    (
                        t.count,
                        t.balance.into_iter().filter(|(_, b)| !b.is_zero()).collect(),
                    ),
                )
            })
            .collect::<BTreeMap<String, (u64, BTreeMap<String, Decimal>)>>()
    };
    let nonzero = |mut totals: BTreeMap<String, (u64, BTreeMap<String, Decimal>)>| {
        for (_, balance) in totals.values_mut() {
            balance.retain(|_, b| !b.is_zero());
        }
        totals
    };
    let whole = Filter::default();
    let snapshot = TotalsSnapshot::compute(&db, now, &whole).await.unwrap();
    assert_eq!(summed(&snapshot, &whole), nonzero(balances(&mut listed.iter())));
    for status in CollectionStatus::ALL {
        let filter = Filter {
            status: Some(status),
            ..Filter::default()
        };
        let mut shown = Vec::new();
        let mut after = None;
        loop {
            let cursor = after.as_deref().map(|c| Cursor::decode(c).unwrap());
            let page = invoices::page_over_snapshot(
                &db,
                now,
                &snapshot,
                &filter,
                Sort::DueDate,
                cursor.as_ref(),
                100,
            )
            .await
            .unwrap();
            shown.extend(page.invoices.into_iter().map(|t| t.number));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        shown.sort();
        let mut expected: Vec<String> = listed
            .iter()
            .filter(|i| i.status == status)
            .map(|i| i.number.clone())
            .collect();
        expected.sort();
        assert_eq!(shown, expected, "the invoices listed as {status}");
    }
    // A customer's totals are computed for that customer alone (the console counts them live).
    let customer = Filter {
        customer: Some("C-1".into()),
        ..Filter::default()
    };
    let theirs = TotalsSnapshot::compute(&db, now, &customer).await.unwrap();
    assert_eq!(
        summed(&theirs, &customer),
        nonzero(balances(
            &mut listed.iter().filter(|i| i.customer_name == "Client 1")
        ))
    );

    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}
