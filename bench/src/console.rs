//! `console`: each page and API of the collections console timed on a ledger loaded in bulk
//! (the pipeline's mix: every invoice open, the worst case for the tracking table's totals).
//! The console runs in-process, reading through its read-only role as in production; each
//! URL is fetched a few times after a warm-up, and the median and slowest are printed.

use crate::ledger::{self, Shape};
use anyhow::Context;
use chrono::Utc;
use relance_config::{Config, Settings};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The target for every page, median and slowest (release build, 1M invoices).
const TARGET_MS: f64 = 200.0;

/// Times of one URL, in milliseconds.
struct Timing {
    /// The first fetch (the warm-up): a figure for a new parameter is computed then.
    first: f64,
    median: f64,
    slowest: f64,
    bytes: usize,
}

async fn time(client: &reqwest::Client, url: &str, runs: usize) -> anyhow::Result<Timing> {
    let fetch = || async {
        let response = client
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.bytes().await.with_context(|| format!("reading {url}"))?;
        anyhow::ensure!(status.is_success(), "GET {url}: {status}");
        anyhow::Ok(body.len())
    };
    let start = Instant::now();
    fetch().await?;
    let first = start.elapsed().as_secs_f64() * 1000.0;
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let start = Instant::now();
        bytes = fetch().await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(Timing {
        first,
        median: times[times.len() / 2],
        slowest: times[times.len() - 1],
        bytes,
    })
}

pub async fn run(db: PgPool, database_url: String, invoices: i64, runs: usize) -> anyhow::Result<()> {
    let now = Utc::now();
    let loaded = ledger::load(&db, invoices, Shape::Pipeline, now).await?;
    println!(
        "ledger: {} invoices, {} steps, loaded in {:.1} s",
        loaded.invoices, loaded.steps, loaded.seconds
    );
    let settings = Settings::from_vars(BTreeMap::from([
        ("DATABASE_URL".to_string(), database_url),
        ("RELANCE_DB_POOL_SIZE".to_string(), "4".to_string()),
    ]))?;
    let config = Config::from_settings(settings)?;
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (addr, server) = relance_console::serve(listener, config, shutdown.clone()).await?;
    let server = tokio::spawn(server);
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    // Until its first snapshot the console serves pages without totals (and pages filtered
    // on a status or a segment by reading in order): time the first ones then.
    let started = Instant::now();
    let early = time(&client, &format!("{base}/api/invoices?limit=50"), 1).await?;
    let early_status = time(&client, &format!("{base}/api/invoices?status=to_remind"), 1).await?;
    println!(
        "before the first snapshot: first page {:.1} ms, then {:.1} ms; status to_remind {:.1} ms, then {:.1} ms",
        early.first, early.median, early_status.first, early_status.median
    );
    // The totals come from a snapshot the console computes in the background: time it, and
    // time the pages once it is there.
    loop {
        let page: serde_json::Value = client
            .get(format!("{base}/api/invoices?limit=50"))
            .send()
            .await?
            .json()
            .await?;
        if page["totals_source"] == "snapshot" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "first totals snapshot ready {:.1} s after the console started",
        started.elapsed().as_secs_f64()
    );
    // Then the ledger by day, from which a past day's aging and any period's effectiveness
    // are summed (the first poll may compute the default effectiveness by its query).
    loop {
        let figure: serde_json::Value = client
            .get(format!("{base}/api/effectiveness"))
            .send()
            .await?
            .json()
            .await?;
        if figure["source"] == "ledger_by_day" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "ledger by day ready {:.1} s after the console started",
        started.elapsed().as_secs_f64()
    );
    let api = |query: &str| format!("{base}/api/invoices?{query}");
    // A next page: the second page of `query`, from its first page's cursor.
    let next_of = |query: String| {
        let client = client.clone();
        async move {
            let first: serde_json::Value = client.get(&query).send().await?.json().await?;
            let next = first["next"].as_str().unwrap_or_default();
            let sep = if query.contains('?') { '&' } else { '?' };
            anyhow::Ok(format!("{query}{sep}after={}", next.replace('~', "%7E")))
        }
    };
    let paused = "B-000000093";
    let customer = "C-000000093";
    let past = (now - chrono::Duration::days(20)).date_naive();
    let past_45 = (now - chrono::Duration::days(45)).date_naive();
    let mut urls: Vec<(String, String)> = vec![
        (
            "tracking table, first page (with totals)".into(),
            format!("{base}/"),
        ),
        ("API first page (with totals)".into(), api("")),
        ("API next page".into(), next_of(api("")).await?),
        ("API by amount".into(), api("sort=amount")),
        (
            "API by amount, next page".into(),
            next_of(api("sort=amount")).await?,
        ),
        (
            "API by days overdue, next page".into(),
            next_of(api("sort=days_overdue")).await?,
        ),
    ];
    for status in relance_domain::collections::CollectionStatus::ALL {
        let s = status.as_str();
        urls.push((format!("API status {s}"), api(&format!("status={s}"))));
        urls.push((
            format!("API status {s}, next page"),
            next_of(api(&format!("status={s}"))).await?,
        ));
    }
    for (min, max) in [(0, 0), (1, 15), (16, 30), (31, 60), (61, 90)] {
        let q = format!("overdue_min={min}&overdue_max={max}");
        urls.push((
            format!("API overdue {min}-{max}, next page"),
            next_of(api(&q)).await?,
        ));
    }
    urls.push(("API overdue over 90".into(), api("overdue_min=91")));
    urls.extend([
        (
            "API segment high (none), overdue 1-30".into(),
            api("segment=high&overdue_min=1&overdue_max=30"),
        ),
        (
            "API segment medium, to_remind, by amount".into(),
            next_of(api("segment=medium&status=to_remind&sort=amount")).await?,
        ),
        (
            "API to_formalise, overdue 31-60, next page".into(),
            next_of(api("status=to_formalise&overdue_min=31&overdue_max=60")).await?,
        ),
        ("API one customer".into(), api(&format!("customer={customer}"))),
        ("customer page".into(), format!("{base}/customers/{customer}")),
        ("invoice page".into(), format!("{base}/invoices/{paused}")),
        ("aging and DSO today".into(), format!("{base}/aging")),
        ("API aging and DSO today".into(), format!("{base}/api/aging")),
        ("aging 20 days ago".into(), format!("{base}/aging?as_of={past}")),
        (
            "aging 45 days ago".into(),
            format!("{base}/aging?as_of={past_45}"),
        ),
        ("DSO over 3 months".into(), format!("{base}/aging?months=3")),
        ("effectiveness".into(), format!("{base}/effectiveness")),
        (
            "effectiveness, another period".into(),
            format!("{base}/api/effectiveness?from={past}"),
        ),
        (
            "effectiveness, a third period".into(),
            format!("{base}/api/effectiveness?from={past_45}&to={past}"),
        ),
        ("call tasks".into(), format!("{base}/tasks")),
    ]);
    println!(
        "\n{:<46} {:>9} {:>9} {:>9} {:>9}  (target {TARGET_MS} ms)",
        "page", "first ms", "median ms", "max ms", "bytes"
    );
    let mut failed = Vec::new();
    for (name, url) in &urls {
        let t = time(&client, url, runs).await?;
        let pass = t.median < TARGET_MS && t.slowest < TARGET_MS;
        if !pass {
            failed.push(name.clone());
        }
        println!(
            "{name:<46} {:>9.1} {:>9.1} {:>9.1} {:>9}  {}",
            t.first,
            t.median,
            t.slowest,
            t.bytes,
            if pass { "pass" } else { "FAIL" }
        );
    }
    println!(
        "\n{} of {} pages under {TARGET_MS} ms (median and slowest){}",
        urls.len() - failed.len(),
        urls.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; over: {}", failed.join(", "))
        }
    );
    shutdown.cancel();
    server.await.context("the console panicked")??;
    Ok(())
}
