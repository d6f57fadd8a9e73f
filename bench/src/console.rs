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

/// Times of one URL, in milliseconds.
struct Timing {
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
    fetch().await?;
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let start = Instant::now();
        bytes = fetch().await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(Timing {
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
    // The totals come from a snapshot the console computes in the background: time it, and
    // time the pages once it is there (before, the first page counts live).
    let started = Instant::now();
    let first: serde_json::Value = loop {
        let page: serde_json::Value = client
            .get(format!("{base}/api/invoices?limit=50"))
            .send()
            .await?
            .json()
            .await?;
        if page["totals_source"] == "snapshot" {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "first totals snapshot ready {:.1} s after the console started",
        started.elapsed().as_secs_f64()
    );
    let next = first["next"].as_str().unwrap_or_default().to_string();
    let paused = "B-000000093";
    let customer = "C-000000093";
    let past = (now - chrono::Duration::days(20)).date_naive();
    let urls: Vec<(&str, String)> = vec![
        ("tracking table, first page (with totals)", format!("{base}/")),
        ("API first page (with totals)", format!("{base}/api/invoices")),
        (
            "API first page, segment and overdue range",
            format!("{base}/api/invoices?segment=high&overdue_min=1&overdue_max=30"),
        ),
        (
            "API next page",
            format!("{base}/api/invoices?after={}", next.replace('~', "%7E")),
        ),
        (
            "API by amount, next page",
            format!("{base}/api/invoices?sort=amount&after=a%7E5000.00%7EB-000000000"),
        ),
        (
            "API paused only, next page",
            format!(
                "{base}/api/invoices?status=paused&after={}",
                next.replace('~', "%7E")
            ),
        ),
        (
            "API one customer",
            format!("{base}/api/invoices?customer={customer}"),
        ),
        ("customer page", format!("{base}/customers/{customer}")),
        ("invoice page", format!("{base}/invoices/{paused}")),
        ("aging today", format!("{base}/aging")),
        ("aging 20 days ago", format!("{base}/aging?as_of={past}")),
        ("effectiveness", format!("{base}/effectiveness")),
        ("call tasks", format!("{base}/tasks")),
    ];
    println!(
        "\n{:<44} {:>10} {:>10} {:>10}",
        "page", "median ms", "max ms", "bytes"
    );
    for (name, url) in &urls {
        let t = time(&client, url, runs).await?;
        println!(
            "{name:<44} {:>10.1} {:>10.1} {:>10}",
            t.median, t.slowest, t.bytes
        );
    }
    shutdown.cancel();
    server.await.context("the console panicked")??;
    Ok(())
}
