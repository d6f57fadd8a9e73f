//! The routes: each page and its JSON twin read the same query of
//! `relance_storage::console`; the task page's forms publish `call.outcome` and
//! `reply.handled`.

use crate::access::{new_nonce, nonce_of};
use crate::{Failure, Shared};
use anyhow::Context;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Days, NaiveDate, Utc};
use relance_domain::collections::CollectionStatus;
use relance_storage::console::cents;
use relance_storage::console::figures::{self, AgingRow, AGING_BUCKETS};
use relance_storage::console::invoices::{self, Cursor, Filter, Sort};
use relance_storage::console::timeline;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use uuid::Uuid;

type Params = Query<HashMap<String, String>>;

pub fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(tracking_page))
        .route("/api/invoices", get(tracking_api))
        .route("/customers/{id}", get(customer_page))
        .route("/api/customers/{id}", get(customer_api))
        .route(
            "/customers/{id}/statement.pdf",
            get(crate::statement::statement_pdf),
        )
        .route("/invoices/{number}", get(crate::actions::invoice_page))
        .route("/invoices/{number}/actions", post(crate::actions::action_form))
        .route("/api/invoices/{number}/actions", post(crate::actions::action_api))
        .route("/api/invoices/{number}", get(invoice_api))
        .route("/messages/{step_id}", get(proof_page))
        .route("/aging", get(aging_page))
        .route("/api/aging", get(aging_api))
        .route("/effectiveness", get(effectiveness_page))
        .route("/api/effectiveness", get(effectiveness_api))
        .route("/tasks", get(tasks_page))
        .route("/api/tasks", get(tasks_api))
        .route("/tasks/outcome", post(record_outcome))
        .route("/api/replies", get(replies_api))
        .route("/tasks/replies/handled", post(reply_handled))
        .route("/approvals", get(crate::approvals::approvals_page))
        .route("/api/approvals", get(crate::approvals::approvals_api))
        .route("/approvals/decide", post(crate::approvals::decide_form))
        .route("/dead-letters", get(crate::dead_letters::list_page))
        .route("/api/dead-letters", get(crate::dead_letters::list_api))
        .route("/dead-letters/{id}", get(crate::dead_letters::show_page))
        .route("/api/dead-letters/{id}", get(crate::dead_letters::show_api))
        .route(
            "/dead-letters/{id}/replay",
            post(crate::dead_letters::replay_page),
        )
        .route(
            "/dead-letters/{id}/discard",
            post(crate::dead_letters::discard_page),
        )
        .route(
            "/api/dead-letters/{id}/replay",
            post(crate::dead_letters::replay_api),
        )
        .route(
            "/api/dead-letters/{id}/discard",
            post(crate::dead_letters::discard_api),
        )
        .with_state(console)
}

pub(crate) fn render(
    console: &Shared,
    name: &str,
    context: minijinja::Value,
) -> Result<Html<String>, Failure> {
    let page = console
        .templates
        .get_template(name)
        .and_then(|t| t.render(context))
        .with_context(|| format!("rendering {name}"))?;
    Ok(Html(page))
}

pub(crate) fn now(console: &Shared) -> DateTime<Utc> {
    console.config.clock.now()
}

/// A query parameter, absent when empty (as forms send unused fields).
fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn parsed<T: std::str::FromStr>(params: &HashMap<String, String>, name: &str) -> Result<Option<T>, Failure>
where
    T::Err: std::fmt::Display,
{
    param(params, name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|e| Failure::bad_request(format!("{name}={v:?} is not valid: {e}")))
        })
        .transpose()
}

// ---- tracking table ----

struct TableQuery {
    filter: Filter,
    sort: Sort,
    after: Option<Cursor>,
    limit: usize,
}

fn table_query(params: &HashMap<String, String>) -> Result<TableQuery, Failure> {
    let segment = param(params, "segment").map(str::to_string);
    if let Some(s) = &segment {
        if !["low", "medium", "high"].contains(&s.as_str()) {
            return Err(Failure::bad_request(format!(
                "segment={s:?} is not valid: low, medium or high"
            )));
        }
    }
    let limit: usize = parsed(params, "limit")?.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Failure::bad_request("limit must be between 1 and 500"));
    }
    let sort: Sort = parsed(params, "sort")?.unwrap_or_default();
    let after = param(params, "after")
        .map(Cursor::decode)
        .transpose()
        .map_err(|e| Failure::bad_request(e.to_string()))?;
    let fits = matches!(
        (&after, sort),
        (None, _)
            | (Some(Cursor::Amount(..)), Sort::Amount)
            | (Some(Cursor::Due(..)), Sort::DueDate | Sort::DaysOverdue)
    );
    if !fits {
        return Err(Failure::bad_request(
            "after= comes from a page of another sort order: start from the first page",
        ));
    }
    Ok(TableQuery {
        filter: Filter {
            status: parsed::<CollectionStatus>(params, "status")?,
            segment,
            customer: param(params, "customer").map(str::to_string),
            overdue_min: parsed(params, "overdue_min")?,
            overdue_max: parsed(params, "overdue_max")?,
        },
        sort,
        after,
        limit,
    })
}

/// The page and, on the first page only, the totals per status of the whole filter (later
/// pages do not sum them again) and the time they were derived at (`totals_as_of`: the
/// background snapshot's, see `crate::totals`; before the first snapshot, none and
/// `totals_computing`).
async fn table(console: &Shared, q: &TableQuery) -> Result<Value, Failure> {
    let at = now(console);
    let page = crate::totals::page(console, at, &q.filter, q.sort, q.after.as_ref(), q.limit).await?;
    let totals = match q.after {
        None => crate::totals::for_filter(console, at, &q.filter).await?,
        Some(_) => None,
    };
    Ok(json!({
        "invoices": page.invoices,
        "next": page.next,
        "totals": totals.as_ref().map(|t| &t.per_status),
        "totals_as_of": totals.as_ref().map(|t| t.as_of),
        "totals_source": totals.as_ref().map(|t| t.source),
        // A first page before the console's first snapshot: its totals are still computing.
        "totals_computing": q.after.is_none() && totals.is_none(),
    }))
}

async fn tracking_api(State(console): State<Shared>, Query(params): Params) -> Result<Json<Value>, Failure> {
    let q = table_query(&params)?;
    Ok(Json(table(&console, &q).await?))
}

async fn tracking_page(
    State(console): State<Shared>,
    Query(params): Params,
) -> Result<Html<String>, Failure> {
    let q = table_query(&params)?;
    let data = table(&console, &q).await?;
    let next_href = data["next"].as_str().map(|next| {
        let mut kept: Vec<(String, String)> = params
            .iter()
            .filter(|(k, v)| k.as_str() != "after" && !v.trim().is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        kept.sort();
        kept.push(("after".into(), next.to_string()));
        let query: Vec<String> = kept
            .iter()
            .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
            .collect();
        format!("/?{}", query.join("&"))
    });
    let statuses: Vec<&str> = CollectionStatus::ALL.iter().map(|s| s.as_str()).collect();
    render(
        &console,
        "invoices.html",
        minijinja::context! {
            page => data,
            totals => data["totals"],
            next_href,
            statuses,
            filter => json!({
                "status": param(&params, "status"),
                "segment": param(&params, "segment"),
                "customer": param(&params, "customer"),
                "overdue_min": param(&params, "overdue_min"),
                "overdue_max": param(&params, "overdue_max"),
                "sort": param(&params, "sort").unwrap_or("due_date"),
            }),
        },
    )
}

// ---- customer and invoice ----

const CUSTOMER_INVOICES: usize = 200;
const CUSTOMER_TIMELINE: i64 = 500;

async fn customer_data(console: &Shared, id: &str) -> Result<Value, Failure> {
    let customer = timeline::customer(&console.db, id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("no customer {id:?}")))?;
    let filter = Filter {
        customer: Some(id.to_string()),
        ..Filter::default()
    };
    let at = now(console);
    let page = invoices::page(&console.db, at, &filter, Sort::DueDate, None, CUSTOMER_INVOICES).await?;
    let balance: BTreeMap<String, Decimal> = timeline::customer_balance(&console.db, id)
        .await?
        .into_iter()
        .map(|(c, b)| (c, cents(b)))
        .collect();
    let entries = timeline::customer_timeline(&console.db, id, CUSTOMER_TIMELINE).await?;
    // Each invoice's journal chain, verified as `relance journal verify` does.
    let mut chains = BTreeMap::new();
    for invoice in &page.invoices {
        chains.insert(
            invoice.number.clone(),
            timeline::verify(&console.db, &invoice.number).await?,
        );
    }
    Ok(json!({
        "customer": customer,
        "balance": balance,
        "invoices": page.invoices,
        "chains": chains,
        "more_invoices": page.next.is_some(),
        "timeline": entries,
    }))
}

async fn customer_api(State(console): State<Shared>, Path(id): Path<String>) -> Result<Json<Value>, Failure> {
    Ok(Json(customer_data(&console, &id).await?))
}

async fn customer_page(
    State(console): State<Shared>,
    Path(id): Path<String>,
) -> Result<Html<String>, Failure> {
    let data = customer_data(&console, &id).await?;
    render(&console, "customer.html", minijinja::Value::from_serialize(&data))
}

pub(crate) async fn invoice_data(console: &Shared, number: &str) -> Result<Value, Failure> {
    let mut invoice = timeline::invoice(&console.db, number)
        .await?
        .ok_or_else(|| Failure::not_found(format!("no invoice {number:?}")))?;
    invoice.amount = cents(invoice.amount);
    invoice.balance = cents(invoice.balance);
    invoice.credited = cents(invoice.credited);
    // Its row of the tracking table gives the status, by the same rule as everywhere.
    let tracked = invoices::one(&console.db, now(console), number).await?;
    let status = tracked.as_ref().map(|t| t.status.clone());
    let chain = timeline::verify(&console.db, number).await?;
    let entries = timeline::invoice_timeline(&console.db, number).await?;
    // Whom the invoice is owed to (the default creditor when it names none).
    let mut conn = console
        .db
        .acquire()
        .await
        .map_err(|e| anyhow::Error::new(e).context("acquiring a connection"))?;
    let creditor =
        relance_storage::creditors::for_invoice_number(&mut conn, &console.config.settings.creditor, number)
            .await?;
    drop(conn);
    Ok(json!({
        "invoice": invoice,
        "creditor": { "id": creditor.id, "name": creditor.name, "iban": creditor.iban },
        "status": status,
        "tracking": tracked,
        "credited_any": !invoice.credited.is_zero(),
        "chain": chain,
        "timeline": entries,
    }))
}

async fn invoice_api(
    State(console): State<Shared>,
    Path(number): Path<String>,
) -> Result<Json<Value>, Failure> {
    Ok(Json(invoice_data(&console, &number).await?))
}

/// The exact message stored as proof, as plain text (nothing in it is interpreted).
async fn proof_page(State(console): State<Shared>, Path(step_id): Path<String>) -> Result<Response, Failure> {
    let id = Uuid::parse_str(&step_id).map_err(|_| Failure::bad_request("not a step id"))?;
    let proof = timeline::proof(&console.db, id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("no stored message for step {id}")))?;
    let text = format!(
        "Invoice: {}\nChannel: {}\nMessage-ID: {}\nTo: {}\nRendered at: {}\nDocument SHA-256: {}\nSubject: {}\n\n{}",
        proof.invoice_number,
        proof.channel,
        proof.message_id,
        proof.recipients.join(", "),
        proof.rendered_at.to_rfc3339(),
        proof.document_sha256.as_deref().unwrap_or("-"),
        proof.subject,
        proof.body_text
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response())
}

// ---- aging and DSO ----

#[derive(Serialize)]
struct AgingGridRow {
    currency: String,
    segment: String,
    amounts: Vec<Decimal>,
    total: Decimal,
}

struct Aging {
    as_of: NaiveDate,
    months: u32,
    rows: Vec<AgingRow>,
    dso: Vec<figures::Dso>,
    /// When the figures were computed (kept and refreshed in the background: `crate::figures`).
    computed_at: DateTime<Utc>,
    /// How (`crate::figures::Computed::source`).
    source: &'static str,
}

async fn aging_data(console: &Shared, params: &HashMap<String, String>) -> Result<Aging, Failure> {
    let today = now(console).date_naive();
    let as_of: NaiveDate = parsed(params, "as_of")?.unwrap_or(today);
    let months: u32 = parsed(params, "months")?.unwrap_or(figures::DSO_MONTHS);
    if !(1..=figures::DSO_MAX_MONTHS).contains(&months) {
        return Err(Failure::bad_request(format!(
            "months must be between 1 and {}",
            figures::DSO_MAX_MONTHS
        )));
    }
    let kept = crate::figures::get(console, crate::figures::Key::aging(as_of, today)).await?;
    let crate::figures::Figure::Aging { rows, sales } = &kept.figure else {
        return Err(anyhow::anyhow!("the aging's kept figure is of another kind").into());
    };
    Ok(Aging {
        as_of,
        months,
        rows: rows.clone(),
        dso: figures::dso_of_sales(as_of, rows, sales, months),
        computed_at: kept.at,
        source: kept.source,
    })
}

fn aging_grid(rows: &[AgingRow]) -> Vec<AgingGridRow> {
    let mut grid: BTreeMap<(String, String), Vec<Decimal>> = BTreeMap::new();
    for row in rows {
        let amounts = grid
            .entry((row.currency.clone(), row.segment.clone()))
            .or_insert_with(|| vec![Decimal::ZERO; AGING_BUCKETS.len()]);
        if let Some(i) = AGING_BUCKETS.iter().position(|b| *b == row.bucket) {
            amounts[i] += row.outstanding;
        }
    }
    grid.into_iter()
        .map(|((currency, segment), amounts)| AgingGridRow {
            total: amounts.iter().sum(),
            currency,
            segment,
            amounts,
        })
        .collect()
}

async fn aging_api(State(console): State<Shared>, Query(params): Params) -> Result<Json<Value>, Failure> {
    let a = aging_data(&console, &params).await?;
    Ok(Json(json!({
        "as_of": a.as_of,
        "months": a.months,
        "buckets": AGING_BUCKETS,
        "rows": a.rows,
        "dso": a.dso,
        "computed_at": a.computed_at,
        "source": a.source,
    })))
}

async fn aging_page(State(console): State<Shared>, Query(params): Params) -> Result<Html<String>, Failure> {
    let a = aging_data(&console, &params).await?;
    render(
        &console,
        "aging.html",
        minijinja::context! {
            as_of => a.as_of.to_string(),
            months => a.months,
            buckets => AGING_BUCKETS,
            grid => aging_grid(&a.rows),
            dso => a.dso,
            computed_at => a.computed_at.to_rfc3339(),
        },
    )
}

// ---- effectiveness ----

async fn effectiveness_data(console: &Shared, params: &HashMap<String, String>) -> Result<Value, Failure> {
    let today = now(console).date_naive();
    let (default_from, default_to) = figures::effectiveness_window(today);
    let to: NaiveDate = parsed(params, "to")?.unwrap_or(default_to);
    let from: NaiveDate = match parsed(params, "from")? {
        Some(from) => from,
        None => to
            .checked_sub_days(Days::new(figures::EFFECTIVENESS_DAYS))
            .unwrap_or(default_from),
    };
    let kept = crate::figures::get(console, crate::figures::Key::Effectiveness { from, to }).await?;
    let crate::figures::Figure::Effectiveness(rows) = &kept.figure else {
        return Err(anyhow::anyhow!("the effectiveness's kept figure is of another kind").into());
    };
    Ok(json!({ "from": from, "to": to, "rows": rows, "computed_at": kept.at, "source": kept.source }))
}

async fn effectiveness_api(
    State(console): State<Shared>,
    Query(params): Params,
) -> Result<Json<Value>, Failure> {
    Ok(Json(effectiveness_data(&console, &params).await?))
}

async fn effectiveness_page(
    State(console): State<Shared>,
    Query(params): Params,
) -> Result<Html<String>, Failure> {
    let data = effectiveness_data(&console, &params).await?;
    render(
        &console,
        "effectiveness.html",
        minijinja::Value::from_serialize(&data),
    )
}

// ---- call tasks ----

async fn tasks_api(State(console): State<Shared>) -> Result<Json<Value>, Failure> {
    let tasks = relance_storage::calls::list(&console.db, false).await?;
    Ok(Json(json!({ "tasks": tasks })))
}

/// The customers' replies to handle, oldest first (`?all=true`: every reply, handled ones
/// with their note), as `relance tasks` lists them.
async fn replies_api(State(console): State<Shared>, Query(params): Params) -> Result<Json<Value>, Failure> {
    let all = match params.get("all").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(Failure::bad_request(format!("all={other:?}: true or false"))),
    };
    let replies = relance_storage::replies::list(&console.db, all).await?;
    Ok(Json(json!({ "replies": replies })))
}

async fn tasks_page(State(console): State<Shared>, headers: HeaderMap) -> Result<Response, Failure> {
    let tasks = relance_storage::calls::list(&console.db, false).await?;
    let replies = relance_storage::replies::list(&console.db, false).await?;
    // The form's token is tied to this browser's nonce cookie (set here when missing).
    let (nonce, cookie) = match nonce_of(&headers) {
        Some(nonce) => (nonce, None),
        None => {
            let (nonce, cookie) = new_nonce();
            (nonce, Some(cookie))
        }
    };
    let page = render(
        &console,
        "tasks.html",
        minijinja::context! { tasks, replies, csrf => console.csrf.token(&nonce) },
    )?;
    let mut response = page.into_response();
    if let Some(cookie) = cookie {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

#[derive(serde::Deserialize)]
struct OutcomeForm {
    csrf: String,
    invoice_number: String,
    step_id: Option<String>,
    outcome: String,
    promised_on: Option<String>,
    reason: Option<String>,
    note: Option<String>,
}

/// How long the form waits for the payments listener to apply the outcome before showing
/// the invoice (its journal then has the entry), like `relance tasks outcome --wait`.
const APPLY_WAIT: Duration = Duration::from_secs(10);

async fn record_outcome(
    State(console): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<OutcomeForm>,
) -> Result<Response, Failure> {
    console
        .csrf
        .check_form(&headers, Some(&form.csrf), "the task page")?;
    let promised_on =
        match form
            .promised_on
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(day) => Some(day.parse::<NaiveDate>().map_err(|_| {
                Failure::bad_request(format!("promised_on={day:?} is not a date (YYYY-MM-DD)"))
            })?),
        };
    let event_id = format!("console-{}", Uuid::new_v4().simple());
    let call = relance_sequence::call_outcome::RecordedCall {
        invoice_number: form.invoice_number.clone(),
        step_id: form.step_id,
        outcome: form.outcome,
        promised_on,
        reason: form.reason,
        note: form.note,
    };
    let message = relance_sequence::call_outcome::call_outcome_message(call, event_id.clone(), now(&console))
        .map_err(|r| {
            Failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("refused before publishing: {r}"),
            )
        })?;
    let body = serde_json::to_value(&message).context("encoding call.outcome")?;
    publish(&console, relance_contracts::names::CALL_OUTCOME, &body).await?;
    let number = message.call.invoice_number;
    show_when_applied(
        &console,
        relance_contracts::names::CALL_OUTCOME,
        &number,
        &event_id,
    )
    .await
}

/// Waits (up to [`APPLY_WAIT`]) for the payments listener to apply the message published,
/// then shows the invoice, saying whether it was applied or only published.
async fn show_when_applied(
    console: &Shared,
    routing_key: &str,
    invoice_number: &str,
    event_id: &str,
) -> Result<Response, Failure> {
    let applied = crate::wait_applied(console, routing_key, event_id, APPLY_WAIT).await?;
    let target = format!(
        "/invoices/{}?{}={event_id}",
        url_encode(invoice_number),
        if applied { "applied" } else { "published" }
    );
    Ok(Redirect::to(&target).into_response())
}

#[derive(serde::Deserialize)]
struct HandledForm {
    csrf: String,
    reply_id: String,
    note: Option<String>,
}

/// The task page's reply form: publishes `reply.handled`, exactly as `relance tasks handled`
/// does (the payments listener marks the reply handled and ends the pause it opened).
async fn reply_handled(
    State(console): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HandledForm>,
) -> Result<Response, Failure> {
    console
        .csrf
        .check_form(&headers, Some(&form.csrf), "the task page")?;
    let reply = Uuid::parse_str(form.reply_id.trim())
        .map_err(|_| Failure::bad_request(format!("reply_id={:?} is not a reply id", form.reply_id)))?;
    let Some(found) = relance_storage::replies::find_reply(&console.primary, reply).await? else {
        return Err(Failure(StatusCode::NOT_FOUND, format!("no reply {reply}")));
    };
    // Handled already (a second tab, a double submit): nothing to publish.
    if let Some(at) = found.handled_at {
        return Err(Failure(
            StatusCode::CONFLICT,
            format!("reply {reply} was handled on {}", at.format("%Y-%m-%d %H:%M UTC")),
        ));
    }
    let invoice_number = found.invoice_number;
    let event_id = format!("console-{}", Uuid::new_v4().simple());
    let message = relance_sequence::reply_handled::reply_handled_message(
        &invoice_number,
        reply,
        form.note.as_deref(),
        event_id.clone(),
        now(&console),
    )
    .map_err(|r| {
        Failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("refused before publishing: {} {}", r.field, r.reason),
        )
    })?;
    let body = serde_json::to_value(&message).context("encoding reply.handled")?;
    publish(&console, relance_contracts::names::REPLY_HANDLED, &body).await?;
    show_when_applied(
        &console,
        relance_contracts::names::REPLY_HANDLED,
        &invoice_number,
        &event_id,
    )
    .await
}

/// Publishes on the inbound exchange with confirms, on a connection of its own (a rare action).
pub(crate) async fn publish(console: &Shared, routing_key: &str, body: &Value) -> anyhow::Result<()> {
    let settings = &console.config.settings;
    let connection = relance_messaging::connect(&settings.amqp_url, "console").await?;
    let outcome = async {
        let channel = connection.create_channel().await.context("opening a channel")?;
        relance_messaging::declare_topology(
            &channel,
            &console.names,
            &relance_messaging::TopologyOptions::from_settings(settings),
        )
        .await?;
        // Closed now: a channel only dropped closes in the background, racing with the
        // connection's close (lapin then logs a connection error).
        let _ = channel.close(200, "declared".into()).await;
        let publisher = relance_messaging::Publisher::open(&connection).await?;
        relance_messaging::publish_inbound(&publisher, &console.names, routing_key, body).await?;
        publisher.close().await;
        anyhow::Ok(())
    }
    .await;
    let _ = connection.close(200, "published".into()).await;
    outcome.with_context(|| format!("publishing {routing_key}"))
}

/// Percent-encodes a path segment or query value.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
