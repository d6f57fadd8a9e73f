//! The console's figures summed in memory from the ledger aggregated by day equal the SQL
//! reference exactly: a past day's aging (every day of a range), its sales per month, and the
//! steps' effectiveness over many periods, on a ledger with partial and full payments, an
//! overpayment, payments before the issue date, credit notes, closures and hand-offs (one
//! without its date), three segments and two currencies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{Days, NaiveDate, NaiveTime, TimeZone, Utc};
use relance_storage::console::by_day::FiguresByDay;
use relance_storage::console::figures;

/// The ledger's database (its URL, to drop it at the end) and a pool on it.
async fn ledger() -> (String, sqlx::PgPool) {
    // A fresh database named like the harness's, so a crashed run's leftover is removed.
    let (url, db) = common::fresh_database(2).await;
    let statements = [
        "INSERT INTO customers (id, name, contact_name, email, language, timezone, risk, kind, updated_at)
         SELECT 'C-' || r, 'Customer ' || r, 'J. Martin', r || '@example.test', 'fr', 'Europe/Paris', r, 'business', now()
         FROM unnest(ARRAY['low', 'medium', 'high']) AS r",
        // 600 invoices issued over four months, due 0 to 60 days later; some closed or
        // handed off on a day of their life (one closed without a date).
        "INSERT INTO invoices (id, number, customer_id, amount, currency, balance, issued_on, due_on, status,
                               status_changed_at, created_at, settled_at)
         SELECT gen_random_uuid(), 'F-' || lpad(n::text, 4, '0'),
                'C-' || (ARRAY['low', 'medium', 'high'])[n % 3 + 1],
                amount, CASE WHEN n % 4 = 0 THEN 'USD' ELSE 'EUR' END, amount, issued, issued + (n % 5) * 15,
                CASE WHEN n % 11 = 0 THEN 'closed' WHEN n % 13 = 0 THEN 'handed_off' ELSE 'open' END,
                CASE WHEN n % 77 = 0 THEN NULL
                     WHEN n % 11 = 0 OR n % 13 = 0 THEN (issued + n % 50) + time '23:30' END,
                now(),
                CASE WHEN n % 3 = 0 THEN (issued + n % 20) + time '10:00' END
         FROM (SELECT n, 100 + (n * 37) % 900 + (n % 7) * 0.0125 AS amount,
                      date '2026-01-01' + (n * 13) % 120 AS issued
               FROM generate_series(1, 600) AS n) s",
        // A third paid some days after the issue on every other invoice; the rest on every
        // sixth (settling it); more than owed on every tenth; before the issue on every 17th;
        // two payments on one day on every ninth.
        "INSERT INTO payments (id, invoice_id, amount, currency, received_on, recorded_at)
         SELECT 'P1-' || number, id, round(amount / 3, 4), currency, issued_on + (substr(number, 3)::int % 40), now()
         FROM invoices WHERE substr(number, 3)::int % 2 = 0",
        "INSERT INTO payments (id, invoice_id, amount, currency, received_on, recorded_at)
         SELECT 'P2-' || number, id, amount - round(amount / 3, 4), currency, issued_on + 20 + (substr(number, 3)::int % 30), now()
         FROM invoices WHERE substr(number, 3)::int % 6 = 0",
        "INSERT INTO payments (id, invoice_id, amount, currency, received_on, recorded_at)
         SELECT 'P3-' || number, id, amount, currency, issued_on + 45, now()
         FROM invoices WHERE substr(number, 3)::int % 10 = 0",
        "INSERT INTO payments (id, invoice_id, amount, currency, received_on, recorded_at)
         SELECT 'P4-' || number, id, 10, currency, issued_on - 3, now()
         FROM invoices WHERE substr(number, 3)::int % 17 = 0",
        "INSERT INTO payments (id, invoice_id, amount, currency, received_on, recorded_at)
         SELECT 'P' || k || '-' || number, id, 5, currency, issued_on + 5, now()
         FROM invoices, generate_series(5, 6) AS k WHERE substr(number, 3)::int % 9 = 0",
        // A quarter credited after the due date on every fifth; the rest on every 15th.
        "INSERT INTO credit_notes (id, invoice_id, amount, currency, issued_on, recorded_at)
         SELECT 'N1-' || number, id, round(amount / 4, 4), currency, due_on + (substr(number, 3)::int % 20), now()
         FROM invoices WHERE substr(number, 3)::int % 5 = 0",
        "INSERT INTO credit_notes (id, invoice_id, amount, currency, issued_on, recorded_at)
         SELECT 'N2-' || number, id, amount - round(amount / 4, 4), currency, due_on + 25, now()
         FROM invoices WHERE substr(number, 3)::int % 15 = 0",
        // Three reminders a week apart (two policies share position 1), at varying hours,
        // most sent, some on another channel than planned (a fallback), and a thanks.
        "INSERT INTO reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at,
                                     status, emitted_at, emitted_on, updated_at)
         SELECT gen_random_uuid(), i.id, s.name, s.kind, s.position,
                CASE WHEN substr(i.number, 3)::int % 4 = 1 THEN 'sms' ELSE 'email' END, 't', 'neutral', now(),
                CASE WHEN substr(i.number, 3)::int % 8 = s.position THEN 'skipped' ELSE 'sent' END,
                at, at::date, now()
         FROM invoices i
         CROSS JOIN (VALUES ('courtesy', 'reminder', 1), ('first', 'reminder', 1), ('second', 'reminder', 2),
                            ('final', 'reminder', 3), ('thanks', 'thanks', 4)) AS s(name, kind, position)
         CROSS JOIN LATERAL (SELECT (i.due_on + s.position * 7 + CASE WHEN s.name = 'courtesy' THEN 2 ELSE 0 END)
                                    + make_interval(hours => substr(i.number, 3)::int % 24) AS at) a
         WHERE NOT (s.name = 'courtesy' AND substr(i.number, 3)::int % 2 = 1)
           AND NOT (s.name = 'first' AND substr(i.number, 3)::int % 2 = 0)",
        "INSERT INTO rendered_messages (step_id, channel, message_id, recipients, subject, body_text, attach_invoice, rendered_at)
         SELECT s.id, 'letter', 'm-' || s.id, ARRAY['x@example.test'], 's', 'b', false, now()
         FROM reminder_steps s JOIN invoices i ON i.id = s.invoice_id
         WHERE substr(i.number, 3)::int % 7 = 0 AND s.status = 'sent'",
    ];
    for statement in statements {
        sqlx::query(statement).execute(&db).await.unwrap();
    }
    (url, db)
}

fn days(from: NaiveDate, to: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    from.iter_days().take_while(move |d| *d <= to)
}

#[tokio::test]
async fn figures_summed_by_day_equal_the_sql_ones_on_every_day_and_period() {
    let (url, db) = ledger().await;
    let today = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
    let by_day = FiguresByDay::compute(&db, Utc::now()).await.unwrap();
    let start = NaiveDate::from_ymd_opt(2025, 12, 20).unwrap();
    let end = NaiveDate::from_ymd_opt(2026, 8, 31).unwrap();

    let mut rows_seen = 0;
    for day in days(start, end) {
        let reference = figures::aging(&db, day, today).await.unwrap();
        assert_eq!(by_day.aging.aging(day), reference, "aging on {day}");
        rows_seen += reference.len();
        for months in [1, 12] {
            let mut reference = figures::monthly_sales(&db, day, months).await.unwrap();
            reference.sort();
            assert_eq!(
                by_day.aging.monthly_sales(day, months),
                reference,
                "sales to {day} over {months}"
            );
        }
    }
    assert!(
        rows_seen > 2000,
        "the ledger exercises many buckets ({rows_seen} rows)"
    );

    let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN));
    let mut sent_seen = 0;
    for from in days(start, end).step_by(3) {
        for length in [1, 7, 30, 90] {
            let to = from.checked_add_days(Days::new(length)).unwrap();
            let reference = figures::effectiveness(&db, midnight(from), midnight(to))
                .await
                .unwrap();
            assert_eq!(
                by_day.effectiveness.between(from, to),
                reference,
                "from {from} to {to}"
            );
            sent_seen += reference.iter().map(|r| r.sent).sum::<i64>();
        }
    }
    assert!(sent_seen > 1000, "the ledger exercises many sends ({sent_seen})");
    db.close().await;
    relance_storage::drop_database(&url).await.unwrap();
}
