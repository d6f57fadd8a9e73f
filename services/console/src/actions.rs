//! The invoice page and its actions: a promise, a dispute, its resolution, a credit note, a
//! write-off, a lifecycle status, a pause or resume by hand. A form posts one with its CSRF
//! token (`POST /invoices/{number}/actions`), a script as JSON (`POST
//! /api/invoices/{number}/actions`); both build and check the inbound message with
//! `relance_sequence::actions`, as `relance invoice ...` does (a refused action is answered
//! 422 and nothing is published), publish it on the inbound exchange, wait a bounded time
//! until the payments listener has applied it (its inbox), and show the journal entries it
//! wrote. It writes nothing to the database and owns no rule.

use crate::access::{new_nonce, nonce_of};
use crate::pages::{invoice_data, now, publish, render, url_encode};
use crate::{Failure, Shared};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use relance_domain::collections::{InvoiceState, PauseKind};
use relance_sequence::actions::{self, Instruction, InvoiceAction};
use relance_storage::console::timeline::{self, TimelineEntry};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// How long an action waits for the payments listener before answering "published, not
/// applied yet", like `relance invoice ... --wait`.
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// What became of a published action.
struct Done {
    instruction: Instruction,
    /// The invoice's latest journal entry before it was published.
    since: i64,
    applied: bool,
    /// The journal entries written since, when applied.
    entries: Vec<TimelineEntry>,
}

fn refused(reason: impl std::fmt::Display) -> Failure {
    Failure(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("refused before publishing: {reason}"),
    )
}

/// Reads an action from its plain fields (a form's, or a JSON body's), blank ones left out.
fn read_action(fields: Map<String, Value>) -> Result<InvoiceAction, Failure> {
    let fields: Map<String, Value> = fields
        .into_iter()
        .filter(|(k, v)| k != "csrf" && !v.as_str().is_some_and(|s| s.trim().is_empty()))
        .collect();
    serde_json::from_value(Value::Object(fields)).map_err(|e| refused(format!("not a valid action: {e}")))
}

/// Checks the action, publishes it and waits until it is applied (or [`APPLY_WAIT`] passed).
async fn perform(console: &Shared, number: &str, action: InvoiceAction) -> Result<Done, Failure> {
    let invoice = timeline::invoice(&console.primary, number)
        .await?
        .ok_or_else(|| Failure::not_found(format!("no invoice {number:?}")))?;
    let action = action.with_default_currency(&invoice.currency);
    let state: InvoiceState = invoice
        .status
        .parse()
        .map_err(|e: String| anyhow::anyhow!("invoice {}: {e}", invoice.number))?;
    let pauses = timeline::active_pause_kinds(&console.primary, &invoice.number)
        .await?
        .iter()
        .map(|kind| kind.parse::<PauseKind>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("invoice {}: {e}", invoice.number))?;
    if let Some(reason) = actions::refused_by_state(&action, state, &pauses) {
        return Err(refused(reason));
    }
    let event_id = format!("console-{}", Uuid::new_v4().simple());
    let instruction = actions::instruction(&invoice.number, action, event_id, now(console))
        .map_err(refused)?
        .with_source(actions::SOURCE_CONSOLE);
    let since = timeline::last_entry_id(&console.primary, &invoice.number).await?;
    publish(console, instruction.routing_key, &instruction.body).await?;
    tracing::info!(
        routing_key = instruction.routing_key,
        event_id = %instruction.event_id,
        "console action published"
    );
    let applied = crate::wait_applied(
        console,
        instruction.routing_key,
        &instruction.event_id,
        APPLY_WAIT,
    )
    .await?;
    let entries = match applied {
        true => timeline::invoice_timeline_since(&console.primary, &invoice.number, since).await?,
        false => Vec::new(),
    };
    Ok(Done {
        instruction,
        since,
        applied,
        entries,
    })
}

/// The CSRF nonce of the browser, and the cookie to set when it has none yet.
fn csrf_nonce(headers: &HeaderMap) -> (String, Option<String>) {
    match nonce_of(headers) {
        Some(nonce) => (nonce, None),
        None => {
            let (nonce, cookie) = new_nonce();
            (nonce, Some(cookie))
        }
    }
}

/// The invoice page, with its action forms and, after an action, what it did (`done`,
/// `outcome`, and the journal entries `since` < id <= `upto`) or why it was refused.
async fn invoice_page_with(
    console: &Shared,
    number: &str,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    error: Option<String>,
) -> Result<Response, Failure> {
    let mut data = invoice_data(console, number).await?;
    let (nonce, cookie) = csrf_nonce(headers);
    let param = |name: &str| params.get(name).and_then(|v| v.trim().parse::<i64>().ok());
    let notice = params.get("done").map(|done| {
        let applied = params.get("outcome").is_some_and(|o| o == "applied");
        let entries: Vec<&Value> = match (applied, param("since"), param("upto")) {
            (true, Some(since), Some(upto)) => data["timeline"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .filter(|e| e["id"].as_i64().is_some_and(|id| id > since && id <= upto))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        json!({ "action": done, "applied": applied, "entries": entries })
    });
    if let Value::Object(fields) = &mut data {
        fields.insert("csrf".into(), json!(console.csrf.token(&nonce)));
        fields.insert("notice".into(), json!(notice));
        fields.insert("error".into(), json!(error));
    }
    let page = render(console, "invoice.html", minijinja::Value::from_serialize(&data))?;
    let status = match error {
        Some(_) => StatusCode::UNPROCESSABLE_ENTITY,
        None => StatusCode::OK,
    };
    let mut response = (status, page).into_response();
    if let Some(value) = cookie.and_then(|c| c.parse().ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

pub(crate) async fn invoice_page(
    State(console): State<Shared>,
    Path(number): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, Failure> {
    invoice_page_with(&console, &number, &headers, &params, None).await
}

/// `POST /invoices/{number}/actions`: one form of the invoice page. Applied or not, the
/// browser is sent back to the invoice page with a notice (post, redirect, get); a refused
/// action shows the page again with the reason (422).
pub(crate) async fn action_form(
    State(console): State<Shared>,
    Path(number): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, Failure> {
    console
        .csrf
        .check_form(&headers, form.get("csrf").map(String::as_str), "the invoice page")?;
    let fields: Map<String, Value> = form.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    let done = match read_action(fields) {
        Ok(action) => perform(&console, &number, action).await,
        Err(e) => Err(e),
    };
    let done = match done {
        Ok(done) => done,
        Err(Failure(StatusCode::UNPROCESSABLE_ENTITY, reason)) => {
            return invoice_page_with(&console, &number, &headers, &HashMap::new(), Some(reason)).await;
        }
        Err(other) => return Err(other),
    };
    let what = done.instruction.routing_key;
    let target = match done.applied {
        true => format!(
            "/invoices/{}?done={}&outcome=applied&since={}&upto={}",
            url_encode(&done.instruction.invoice_number),
            url_encode(what),
            done.since,
            done.entries.last().map_or(done.since, |e| e.id),
        ),
        false => format!(
            "/invoices/{}?done={}&outcome=published&event={}",
            url_encode(&done.instruction.invoice_number),
            url_encode(what),
            url_encode(&done.instruction.event_id),
        ),
    };
    Ok(Redirect::to(&target).into_response())
}

/// `POST /api/invoices/{number}/actions` with the action as JSON (`{"action": "promise",
/// "date": "2026-07-15", "note": "..."}`): 200 with the journal entries it wrote once
/// applied, 202 when published but not applied within the wait, 422 when refused.
pub(crate) async fn action_api(
    State(console): State<Shared>,
    Path(number): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, Failure> {
    let Value::Object(fields) = body else {
        return Err(refused("the body must be a JSON object with an \"action\""));
    };
    let action = read_action(fields)?;
    let done = perform(&console, &number, action).await?;
    let status = match done.applied {
        true => StatusCode::OK,
        false => StatusCode::ACCEPTED,
    };
    let answer = json!({
        "invoice_number": done.instruction.invoice_number,
        "routing_key": done.instruction.routing_key,
        "event_id": done.instruction.event_id,
        "applied": done.applied,
        "message": match done.applied {
            true => "applied".to_string(),
            false => format!(
                "published, not applied yet after {} s: the payments service may be stopped or busy, \
                 or it refused the message (see the dead letters)",
                APPLY_WAIT.as_secs()
            ),
        },
        "entries": done.entries,
    });
    Ok((status, Json(answer)).into_response())
}
