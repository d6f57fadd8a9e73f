//! A step updated or read by its id (or by the message it is grouped into) is found through
//! its own index, whatever the statistics say. Each such statement also checks the step's
//! status, which used to let the planner scan the partial index of steps in flight instead
//! whenever the statistics, taken when few steps were in flight, called it nearly empty: on a
//! large ledger with thousands of reminders going out at once, every stage update walked the
//! whole index (40 ms a statement instead of 0.1, `relance-bench pipeline --due-every`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::Value;
use uuid::Uuid;

/// The indexes a plan reads, from `EXPLAIN (FORMAT JSON)`.
fn indexes(plan: &Value, found: &mut Vec<String>) {
    match plan {
        Value::Object(node) => {
            if let Some(Value::String(name)) = node.get("Index Name") {
                found.push(name.clone());
            }
            node.values().for_each(|v| indexes(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| indexes(v, found)),
        _ => {}
    }
}

#[tokio::test]
async fn lookups_by_id_use_the_primary_key_when_the_statistics_say_nothing_is_in_flight() {
    let (url, db) = common::fresh_database(2).await;
    common::insert_customer_c1(&db).await;
    // 3,000 invoices of six pending steps each, analyzed so: nothing in flight.
    sqlx::query(
        "INSERT INTO invoices (id, number, customer_id, amount, currency, balance, issued_on, due_on, status, created_at)
         SELECT gen_random_uuid(), 'F-' || n, 'C-1', 100, 'EUR', 100, date '2026-04-01', date '2026-06-01', 'open', now()
         FROM generate_series(1, 3000) AS n",
    )
    .execute(&db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at, status, updated_at)
         SELECT gen_random_uuid(), i.id, 'step_' || p, 'reminder', p, 'email', 'reminder', 'courteous',
                timestamptz '2026-06-01 08:00Z' + p * interval '5 days', 'pending', now()
         FROM invoices i, generate_series(0, 5) AS p",
    )
    .execute(&db)
    .await
    .unwrap();
    sqlx::query("ANALYZE reminder_steps").execute(&db).await.unwrap();
    // Then a reminder of each goes out at once, some deferred by their provider, and the
    // statistics are not told.
    sqlx::query(
        "UPDATE reminder_steps SET status = CASE WHEN substr(name, 6)::int = 0 THEN 'sending' ELSE 'deferred' END,
                delivery_attempt = gen_random_uuid(), retry_wall_at = now(), status_changed_at = clock_timestamp()
         WHERE position < 2",
    )
    .execute(&db)
    .await
    .unwrap();

    let statements = [
        // A delivery's stage, its provider's answer, its result (`steps::record_stage`,
        // `record_answer`, the result's update).
        "UPDATE reminder_steps SET delivery_stage = 'data_end_sent', delivery_renewed_at = clock_timestamp()
         WHERE id = $1 AND status = 'sending' AND delivery_attempt = $2",
        "UPDATE reminder_steps SET status = 'sent', status_changed_at = clock_timestamp()
         WHERE id = $1 AND status = 'sending' AND delivery_attempt = $2",
        // A deferred delivery claimed again.
        "UPDATE reminder_steps SET status = 'sending', delivery_attempt = $2
         WHERE id = $1 AND status = 'deferred'",
        // The steps grouped into a message.
        "SELECT id FROM reminder_steps WHERE grouped_into = $1 AND status = 'queued' AND $2::uuid IS NOT NULL",
    ];
    for statement in statements {
        let plan: Value = sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) {statement}"))
            .bind(Uuid::new_v4())
            .bind(Uuid::new_v4())
            .fetch_one(&db)
            .await
            .unwrap();
        let mut found = Vec::new();
        indexes(&plan, &mut found);
        assert!(
            !found.is_empty()
                && found
                    .iter()
                    .all(|i| i == "reminder_steps_pkey" || i == "reminder_steps_grouped"),
            "{statement}\nreads {found:?}: {plan}"
        );
    }

    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}
