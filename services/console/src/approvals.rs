//! The approvals page (`/approvals`) and its JSON twin (`/api/approvals`): the steps waiting
//! for the accounts team's approval, each with the preview of what it will say, and the
//! Approve and Reject forms (CSRF like the other forms). A decision is built and checked by
//! `relance_sequence::actions::approval_instruction`, as `relance approvals approve|reject`
//! does (a refused one is answered 422 and nothing is published), published on the inbound
//! exchange, and awaited a bounded time until the payments listener has applied it. It
//! writes nothing to the database and owns no rule.

use crate::access::{new_nonce, nonce_of};
use crate::pages::{now, publish, render, url_encode};
use crate::{Failure, Shared};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use relance_sequence::actions::{approval_instruction, ApprovalVerdict};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// The template of this page, registered with the others (`crate::views`).
pub(crate) const TEMPLATES: [(&str, &str); 1] =
    [("approvals.html", include_str!("../templates/approvals.html"))];

/// How long a decision waits for the payments listener before answering "published".
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// `GET /approvals`: the waiting steps with their preview and forms; after a decision,
/// `done` (the routing key) and `outcome` (`applied` or `published`) say what became of it.
pub(crate) async fn approvals_page(
    State(console): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, Failure> {
    let approvals = relance_storage::approvals::pending(&console.db).await?;
    let (nonce, cookie) = match nonce_of(&headers) {
        Some(nonce) => (nonce, None),
        None => {
            let (nonce, cookie) = new_nonce();
            (nonce, Some(cookie))
        }
    };
    let page = render(
        &console,
        "approvals.html",
        minijinja::context! {
            approvals,
            csrf => console.csrf.token(&nonce),
            done => params.get("done"),
            outcome => params.get("outcome"),
            invoice => params.get("invoice"),
        },
    )?;
    let mut response = page.into_response();
    if let Some(value) = cookie.and_then(|c| c.parse().ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `GET /api/approvals`: the waiting steps with their preview.
pub(crate) async fn approvals_api(State(console): State<Shared>) -> Result<Response, Failure> {
    let approvals = relance_storage::approvals::pending(&console.db).await?;
    Ok(Json(serde_json::json!({ "approvals": approvals })).into_response())
}

#[derive(serde::Deserialize)]
pub(crate) struct DecisionForm {
    csrf: String,
    step_id: String,
    /// `approve` or `reject`.
    decision: String,
    decided_by: String,
    reason: Option<String>,
}

/// `POST /approvals/decide`: one Approve or Reject form. Applied or not, the browser is sent
/// back to the approvals page with a notice (post, redirect, get).
pub(crate) async fn decide_form(
    State(console): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<DecisionForm>,
) -> Result<Response, Failure> {
    console
        .csrf
        .check_form(&headers, Some(&form.csrf), "the approvals page")?;
    let verdict = match form.decision.as_str() {
        "approve" => ApprovalVerdict::Grant,
        "reject" => ApprovalVerdict::Reject,
        other => {
            return Err(Failure::bad_request(format!(
                "decision={other:?} (approve or reject)"
            )))
        }
    };
    let refused = |reason: String| Failure(StatusCode::UNPROCESSABLE_ENTITY, reason);
    let step_id = Uuid::parse_str(form.step_id.trim())
        .map_err(|_| refused(format!("{:?} is not a step id", form.step_id)))?;
    let waiting = {
        let mut conn = console.primary.acquire().await.map_err(anyhow::Error::from)?;
        relance_storage::approvals::find_pending(&mut conn, step_id).await?
    }
    .ok_or_else(|| refused(format!("step {step_id} is not waiting for approval")))?;
    let event_id = format!("console-{}", Uuid::new_v4().simple());
    let instruction = approval_instruction(
        &waiting.invoice_number,
        &step_id.to_string(),
        verdict,
        &form.decided_by,
        form.reason,
        event_id,
        now(&console),
    )
    .map_err(|r| refused(format!("refused before publishing: {r}")))?
    .with_source(relance_sequence::actions::SOURCE_CONSOLE);
    publish(&console, instruction.routing_key, &instruction.body).await?;
    tracing::info!(
        routing_key = instruction.routing_key,
        event_id = %instruction.event_id,
        "console approval decision published"
    );
    let applied = crate::wait_applied(
        &console,
        instruction.routing_key,
        &instruction.event_id,
        APPLY_WAIT,
    )
    .await?;
    let target = format!(
        "/approvals?done={}&outcome={}&invoice={}",
        url_encode(instruction.routing_key),
        if applied { "applied" } else { "published" },
        url_encode(&instruction.invoice_number),
    );
    Ok(Redirect::to(&target).into_response())
}
