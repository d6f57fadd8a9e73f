//! The collections gauges of `/metrics`, computed every `RELANCE_METRICS_INTERVAL_MS` (or five
//! times as long as they took, when that is longer) by one
//! scheduler copy at a time: the one holding the gauges' advisory lock on a connection of its
//! own (see [`relance_storage::gauges`]). The others try again at each interval, so another
//! copy takes over when the leader stops. With `RELANCE_READ_DATABASE_URL` set, the figures
//! are read there (a replica) on a second connection; the lock stays on the primary's.

use anyhow::Context;
use relance_config::Config;
use relance_storage::gauges::{self, Figures, AGING_BUCKETS};
use relance_telemetry::metrics::{set_collections_gauges, set_read_database_lag, CollectionsGauges};
use rust_decimal::prelude::ToPrimitive;
use sqlx::PgConnection;
use std::collections::BTreeSet;
use tokio_util::sync::CancellationToken;

/// The gauges wait at least this many times as long as they took to compute.
const SPACING: u32 = 5;

/// Computes the gauges until `shutdown`, while this copy leads.
pub(crate) async fn gauges_loop(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut lead: Option<PgConnection> = None;
    // The connection to the read database, when one is set.
    let mut reads: Option<PgConnection> = None;
    // Every currency shown once stays shown (at zero when nothing is owed in it any more).
    let mut currencies: BTreeSet<String> = BTreeSet::new();
    // Likewise every step that sent once (NaN while it sent nothing in the window).
    let mut steps: BTreeSet<(String, String)> = BTreeSet::new();
    loop {
        if lead.is_none() {
            match gauges::try_lead(&config.settings.database_url).await {
                Ok(conn) => lead = conn,
                Err(e) => tracing::warn!(error = format!("{e:#}"), "the collections gauges wait"),
            }
        }
        let mut wait = config.settings.metrics_interval;
        if let Some(conn) = lead.as_mut() {
            let now = config.clock.now();
            let started = std::time::Instant::now();
            let computed = compute(config, conn, &mut reads, now).await;
            // On a ledger so large that the figures take more than a fifth of the interval
            // (seconds at millions of invoices), they are computed less often instead of
            // keeping the database busy with them.
            wait = wait.max(started.elapsed() * SPACING);
            match computed {
                Ok((figures, lag)) => {
                    if let Some(lag) = lag {
                        set_read_database_lag(lag);
                    }
                    currencies.extend(figures.outstanding.keys().map(|(currency, _)| currency.clone()));
                    currencies.extend(figures.dso.keys().cloned());
                    steps.extend(figures.steps_paid_within_7_days.keys().cloned());
                    set_collections_gauges(&as_gauges(&figures, &currencies, &steps, now));
                }
                Err((e, lost)) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "computing the collections gauges failed"
                    );
                    match lost {
                        // Both: the read connection is opened again by whichever copy leads.
                        Lost::Lead => (lead, reads) = (None, None),
                        Lost::Reads => reads = None,
                    }
                    // Unknown now: not the last value seen, which may have been 0.
                    if config.settings.read_database_url.is_some() {
                        set_read_database_lag(f64::NAN);
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Which connection a failed computation leaves to be opened again.
enum Lost {
    Lead,
    Reads,
}

/// The figures at `now`, on the leading connection `lead`, or with `RELANCE_READ_DATABASE_URL`
/// set on the read database (`reads`, opened when there is none; the replay lag besides),
/// but for the outbox's backlog, which is the primary's now. An error says which connection
/// to open again.
async fn compute(
    config: &Config,
    lead: &mut PgConnection,
    reads: &mut Option<PgConnection>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Figures, Option<f64>), (anyhow::Error, Lost)> {
    let Some(url) = config.settings.read_database_url.as_deref() else {
        let figures = gauges::figures(lead, now).await.map_err(|e| (e, Lost::Lead))?;
        return Ok((figures, None));
    };
    let lost_lead = || {
        (
            anyhow::anyhow!("the connection holding the gauges lock lost it"),
            Lost::Lead,
        )
    };
    if !gauges::still_leads(lead).await {
        return Err(lost_lead());
    }
    let position = gauges::primary_wal_position(lead)
        .await
        .map_err(|e| (e, Lost::Lead))?;
    let (mut figures, lag) = figures_on_replica(reads, url, &position, now)
        .await
        .map_err(|e| (e, Lost::Reads))?;
    let (backlog, oldest) = gauges::outbox_figures(lead).await.map_err(|e| (e, Lost::Lead))?;
    figures.outbox_backlog = backlog;
    figures.outbox_oldest = oldest;
    // Lost while the replica was read (seconds on a large ledger): another copy may lead now.
    if !gauges::still_leads(lead).await {
        return Err(lost_lead());
    }
    Ok((figures, Some(lag)))
}

/// The figures and the replay lag read on the read database, its connection opened when
/// there is none.
async fn figures_on_replica(
    reads: &mut Option<PgConnection>,
    url: &str,
    primary_position: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(Figures, f64)> {
    if reads.is_none() {
        *reads = Some(
            gauges::connect_for_figures(url)
                .await
                .context("connecting to RELANCE_READ_DATABASE_URL for the gauges")?,
        );
    }
    let Some(conn) = reads.as_mut() else {
        anyhow::bail!("no connection to RELANCE_READ_DATABASE_URL");
    };
    let lag = gauges::replay_lag_seconds(conn, primary_position).await?;
    Ok((gauges::ledger_figures(conn, now).await?, lag))
}

fn as_gauges(
    f: &Figures,
    currencies: &BTreeSet<String>,
    steps: &BTreeSet<(String, String)>,
    now: chrono::DateTime<chrono::Utc>,
) -> CollectionsGauges {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    CollectionsGauges {
        outbox_backlog: count(f.outbox_backlog),
        outbox_oldest_age: f
            .outbox_oldest
            .and_then(|oldest| (now - oldest).to_std().ok())
            .unwrap_or_default(),
        call_tasks_open: count(f.call_tasks_open),
        replies_to_handle: count(f.replies_to_handle),
        invoices_paused: count(f.invoices_paused),
        invoices: f.invoices.iter().map(|(status, n)| (*status, *n)).collect(),
        // Amounts are computed in decimals; a gauge is a float, for display only.
        outstanding: currencies
            .iter()
            .flat_map(|currency| {
                AGING_BUCKETS.iter().map(move |bucket| {
                    let amount = f
                        .outstanding
                        .get(&(currency.clone(), *bucket))
                        .and_then(|a| a.to_f64())
                        .unwrap_or(0.0);
                    (currency.clone(), *bucket, amount)
                })
            })
            .collect(),
        // Nothing owed in a currency any more: 0 days of sales outstanding.
        dso_days: currencies
            .iter()
            .map(|currency| {
                let days = f.dso.get(currency).and_then(|d| d.days.to_f64()).unwrap_or(0.0);
                (currency.clone(), days)
            })
            .collect(),
        step_paid_within_7_days: steps
            .iter()
            .map(|key| {
                let ratio = match f.steps_paid_within_7_days.get(key) {
                    Some(s) if s.sent > 0 => s.paid_within_7_days as f64 / s.sent as f64,
                    _ => f64::NAN,
                };
                (key.0.clone(), key.1.clone(), ratio)
            })
            .collect(),
        at_unix_seconds: now.timestamp_millis() as f64 / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relance_storage::gauges::{Dso, StepSends};
    use rust_decimal::Decimal;

    #[test]
    fn a_step_without_sends_has_no_share_and_a_currency_no_longer_owed_a_dso_of_zero() {
        let mut figures = Figures::default();
        figures.dso.insert(
            "EUR".to_string(),
            Dso {
                days: Decimal::new(425, 1),
                at_least: false,
            },
        );
        let step = |name: &str| (name.to_string(), "email".to_string());
        figures.steps_paid_within_7_days.insert(
            step("J+5"),
            StepSends {
                sent: 4,
                paid_within_7_days: 1,
            },
        );
        let currencies = BTreeSet::from(["EUR".to_string(), "USD".to_string()]);
        let steps = BTreeSet::from([step("J+5"), step("J+30")]);
        let g = as_gauges(&figures, &currencies, &steps, chrono::Utc::now());
        assert_eq!(
            g.dso_days,
            vec![("EUR".to_string(), 42.5), ("USD".to_string(), 0.0)]
        );
        let share = |name: &str| {
            g.step_paid_within_7_days
                .iter()
                .find(|(s, _, _)| s == name)
                .map(|(_, _, r)| *r)
        };
        assert_eq!(share("J+5"), Some(0.25));
        assert!(share("J+30").is_some_and(f64::is_nan));
    }
}
