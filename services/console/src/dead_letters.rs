//! The dead-letters page (`/dead-letters`, `/dead-letters/{id}`) and its JSON twin
//! (`/api/dead-letters`, `/api/dead-letters/{id}`), with the Replay and Discard actions.
//! Every move is `relance_messaging::dead_letters` (drain, list, get, replay, discard), the
//! same functions as `relance dead-letters ...`: before reading, the console takes what
//! waits on the dead-letter queue into the table, as the command does. These handlers write
//! through [`crate::Console::dead_letter_db`], never through the read-only pool; they decide
//! nothing about a message's content.

use crate::access::{new_nonce, nonce_of};
use crate::{Failure, Shared};
use anyhow::Context;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use lapin::Connection;
use relance_messaging::dead_letters::{self, Discard, Filter, Replay};
use relance_messaging::{declare_topology, Publisher, TopologyOptions};
use relance_storage::dead_letters::{DeadLetter, DeadLetterStatus};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The templates of this page, registered with the others (`crate::views`).
pub(crate) const TEMPLATES: [(&str, &str); 2] = [
    (
        "dead_letters.html",
        include_str!("../templates/dead_letters.html"),
    ),
    ("dead_letter.html", include_str!("../templates/dead_letter.html")),
];

/// How many rows a page lists at most (older ones: `before=` the last id).
const PAGE: i64 = 100;

type Params = Query<HashMap<String, String>>;

fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// `status` (pending by default, or `replayed`, `discarded`, `all`), `reason`, `before`, `limit`.
fn filter(params: &HashMap<String, String>) -> Result<Filter, Failure> {
    let status = match param(params, "status").unwrap_or("pending") {
        "all" | "any" => None,
        s => Some(
            s.parse::<DeadLetterStatus>()
                .map_err(|e| Failure::bad_request(format!("status: {e} (or all)")))?,
        ),
    };
    let number = |name: &str| -> Result<Option<i64>, Failure> {
        param(params, name)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| Failure::bad_request(format!("{name}={v:?} is not a number")))
            })
            .transpose()
    };
    let limit = number("limit")?.unwrap_or(PAGE);
    if !(1..=1000).contains(&limit) {
        return Err(Failure::bad_request("limit must be between 1 and 1000"));
    }
    Ok(Filter {
        status,
        reason: param(params, "reason").map(str::to_string),
        before: number("before")?,
        limit,
    })
}

/// A connection to the broker with the topology declared (the dead-letter queue may not
/// exist yet if no service ever ran). One per action: these pages are rarely used.
async fn broker(console: &Shared) -> anyhow::Result<Connection> {
    let settings = &console.config.settings;
    let connection = relance_messaging::connect(&settings.amqp_url, "console").await?;
    let declared = async {
        let channel = connection.create_channel().await.context("opening a channel")?;
        declare_topology(
            &channel,
            &console.names,
            &TopologyOptions::from_settings(settings),
        )
        .await?;
        let _ = channel.close(200, "declared".into()).await;
        anyhow::Ok(())
    }
    .await;
    match declared {
        Ok(()) => Ok(connection),
        Err(e) => {
            let _ = connection.close(200, "failed".into()).await;
            Err(e)
        }
    }
}

/// Takes what waits on the dead-letter queue into the table, as `relance dead-letters` does
/// before each command. A broker out of reach is not a reason to hide the table: the page
/// shows what is recorded, and says the queue could not be read.
async fn drain(console: &Shared) -> Option<String> {
    let drained = async {
        let connection = broker(console).await?;
        let drained = dead_letters::drain(
            &console.dead_letter_db,
            &connection,
            &console.names,
            console.config.clock.as_ref(),
        )
        .await;
        let _ = connection.close(200, "drained".into()).await;
        drained
    }
    .await;
    match drained {
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "could not drain the dead-letter queue");
            Some(format!(
                "the dead-letter queue could not be read ({e:#}): newer ones may be missing"
            ))
        }
    }
}

/// One dead letter's row, as the list shows it (`relance dead-letters list --format json`).
fn row(l: &DeadLetter) -> Value {
    json!({
        "id": l.id,
        "dead_lettered_at": l.dead_lettered_at,
        "status": l.status,
        "queue": l.queue,
        "exchange": l.exchange,
        "routing_key": l.routing_key,
        "message_id": l.message_id,
        "reason": l.reason,
        "replay_of": l.replay_of,
        "replayed_at": l.replayed_at,
        "discarded_at": l.discarded_at,
    })
}

/// A dead letter in full: its row, properties, headers and body.
fn detail(l: &DeadLetter) -> Value {
    let (encoding, body) = dead_letters::body_view(&l.body);
    let mut value = row(l);
    if let Some(map) = value.as_object_mut() {
        map.insert("recorded_at".into(), json!(l.recorded_at));
        map.insert("properties".into(), l.properties.clone());
        map.insert("headers".into(), l.headers.clone());
        map.insert("body_encoding".into(), encoding.into());
        map.insert("body".into(), body.into());
    }
    value
}

async fn listed(console: &Shared, params: &HashMap<String, String>) -> Result<Value, Failure> {
    let filter = filter(params)?;
    let drain_error = drain(console).await;
    let letters = dead_letters::list(&console.dead_letter_db, &filter).await?;
    let before = match letters.last() {
        Some(last) if letters.len() as i64 == filter.limit => Some(last.id),
        _ => None,
    };
    Ok(json!({
        "dead_letters": letters.iter().map(row).collect::<Vec<_>>(),
        "next_before": before,
        "drain_error": drain_error,
    }))
}

async fn one(console: &Shared, id: i64) -> Result<(Value, Option<String>), Failure> {
    let drain_error = drain(console).await;
    let letter = dead_letters::get(&console.dead_letter_db, id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("no dead letter {id}")))?;
    Ok((detail(&letter), drain_error))
}

pub(crate) async fn list_api(
    State(console): State<Shared>,
    Query(params): Params,
) -> Result<Json<Value>, Failure> {
    Ok(Json(listed(&console, &params).await?))
}

pub(crate) async fn show_api(
    State(console): State<Shared>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, Failure> {
    let (letter, _) = one(&console, id).await?;
    Ok(Json(letter))
}

/// The page with its form token (the browser's nonce cookie is set here when missing).
fn with_csrf(
    console: &Shared,
    headers: &HeaderMap,
    name: &str,
    context: impl FnOnce(String) -> minijinja::Value,
) -> Result<Response, Failure> {
    let (nonce, cookie) = match nonce_of(headers) {
        Some(nonce) => (nonce, None),
        None => {
            let (nonce, cookie) = new_nonce();
            (nonce, Some(cookie))
        }
    };
    let page = console
        .templates
        .get_template(name)
        .and_then(|t| t.render(context(console.csrf.token(&nonce))))
        .with_context(|| format!("rendering {name}"))?;
    let mut response = Html(page).into_response();
    if let Some(cookie) = cookie {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

pub(crate) async fn list_page(
    State(console): State<Shared>,
    headers: HeaderMap,
    Query(params): Params,
) -> Result<Response, Failure> {
    let data = listed(&console, &params).await?;
    let status = param(&params, "status").unwrap_or("pending").to_string();
    let reason = param(&params, "reason").unwrap_or_default().to_string();
    with_csrf(&console, &headers, "dead_letters.html", |csrf| {
        minijinja::context! {
            letters => data["dead_letters"],
            next_before => data["next_before"],
            drain_error => data["drain_error"],
            status,
            reason,
            statuses => ["pending", "replayed", "discarded", "all"],
            csrf,
        }
    })
}

pub(crate) async fn show_page(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(params): Params,
) -> Result<Response, Failure> {
    let (letter, drain_error) = one(&console, id).await?;
    let done = param(&params, "done").map(str::to_string);
    with_csrf(&console, &headers, "dead_letter.html", |csrf| {
        minijinja::context! {
            letter,
            headers_pretty => serde_json::to_string_pretty(&letter["headers"]).unwrap_or_default(),
            properties_pretty => serde_json::to_string_pretty(&letter["properties"]).unwrap_or_default(),
            done,
            drain_error,
            csrf,
        }
    })
}

/// What an operator asked for.
#[derive(Clone, Copy)]
enum Action {
    Replay,
    Discard,
}

impl Action {
    fn done(self) -> &'static str {
        match self {
            Self::Replay => "replayed",
            Self::Discard => "discarded",
        }
    }
}

/// Replays or discards dead letter `id` with the same functions as the command; the
/// letter as it now is, or why nothing was done (404, 409).
async fn act(console: &Shared, id: i64, action: Action) -> Result<DeadLetter, Failure> {
    let clock = console.config.clock.as_ref();
    let db = &console.dead_letter_db;
    let refused = |id: i64, status: DeadLetterStatus| {
        Failure(
            StatusCode::CONFLICT,
            format!("dead letter {id} is {status}, not pending: nothing done"),
        )
    };
    match action {
        Action::Discard => match dead_letters::discard(db, id, clock).await? {
            Discard::Discarded(letter) => Ok(*letter),
            Discard::NotPending(id, status) => Err(refused(id, status)),
            Discard::NotFound(id) => Err(Failure::not_found(format!("no dead letter {id}"))),
        },
        Action::Replay => {
            let connection = broker(console).await?;
            let replayed = async {
                let publisher = Publisher::open(&connection).await?;
                let replayed = dead_letters::replay(db, &publisher, id, clock).await;
                publisher.close().await;
                replayed
            }
            .await;
            let _ = connection.close(200, "replayed".into()).await;
            match replayed? {
                Replay::Replayed(_) => dead_letters::get(db, id)
                    .await?
                    .ok_or_else(|| Failure::not_found(format!("no dead letter {id}"))),
                Replay::NotPending(id, status) => Err(refused(id, status)),
                Replay::NotFound(id) => Err(Failure::not_found(format!("no dead letter {id}"))),
            }
        }
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct ActionForm {
    csrf: String,
}

async fn act_from_page(
    console: Shared,
    headers: HeaderMap,
    id: i64,
    form: ActionForm,
    action: Action,
) -> Result<Response, Failure> {
    console.csrf.check_form(&headers, Some(&form.csrf), "the page")?;
    act(&console, id, action).await?;
    Ok(Redirect::to(&format!("/dead-letters/{id}?done={}", action.done())).into_response())
}

pub(crate) async fn replay_page(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<ActionForm>,
) -> Result<Response, Failure> {
    act_from_page(console, headers, id, form, Action::Replay).await
}

pub(crate) async fn discard_page(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<ActionForm>,
) -> Result<Response, Failure> {
    act_from_page(console, headers, id, form, Action::Discard).await
}

/// The API's actions carry no form token; a browser must not be able to send one from
/// another site's page (a form posting to a console on localhost, which needs no token): a
/// request a browser marks as cross-site, or whose `Origin` is not this console, is refused.
/// Scripts (curl, the CLI's users) send neither header.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|site| site != "same-origin" && site != "none") {
        return true;
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            origin_host != host
        }
        (Some(_), None) => true,
        _ => false,
    }
}

async fn act_from_api(
    console: Shared,
    headers: HeaderMap,
    id: i64,
    action: Action,
) -> Result<Json<Value>, Failure> {
    if cross_site(&headers) {
        return Err(Failure(
            StatusCode::FORBIDDEN,
            "a cross-site request may not act on dead letters: use the page's buttons".into(),
        ));
    }
    let letter = act(&console, id, action).await?;
    Ok(Json(row(&letter)))
}

pub(crate) async fn replay_api(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, Failure> {
    act_from_api(console, headers, id, Action::Replay).await
}

pub(crate) async fn discard_api(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, Failure> {
    act_from_api(console, headers, id, Action::Discard).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_status_filter_defaults_to_pending_and_takes_all() {
        let params = |q: &[(&str, &str)]| -> HashMap<String, String> {
            q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(
            filter(&params(&[])).unwrap().status,
            Some(DeadLetterStatus::Pending)
        );
        assert_eq!(filter(&params(&[("status", "all")])).unwrap().status, None);
        assert_eq!(
            filter(&params(&[("status", "replayed")])).unwrap().status,
            Some(DeadLetterStatus::Replayed)
        );
        assert!(filter(&params(&[("status", "late")])).is_err());
    }

    #[test]
    fn another_sites_page_may_not_act_through_the_api() {
        let mut h = HeaderMap::new();
        assert!(!cross_site(&h), "a script sends neither header");
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(!cross_site(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(cross_site(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
    }
}
