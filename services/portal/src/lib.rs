//! The customer page (`relance run portal`): a page per invoice, reached by a signed,
//! expiring, revocable link (`token`) and no login, showing the customer's open invoices
//! (that customer's only), how to pay, the invoice PDFs and the statement of account, and
//! taking a promise to pay or a dispute. Each action is the same inbound message
//! `relance invoice promise|dispute` and the console publish (`relance_sequence::actions`),
//! its note or reason starting with "customer page", applied by the payments listener. It
//! reads PostgreSQL as the console's read-only role, writes nothing, loads nothing from
//! elsewhere (no third-party asset, no tracking), and answers 429 beyond
//! `RELANCE_PORTAL_RATE_PER_MINUTE` per link and per client address.

pub mod limit;

pub use relance_sequence::portal_link as token;

use anyhow::Context;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Duration as Days, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use relance_config::{Config, Settings};
use relance_contracts::names::Names;
use relance_domain::collections::{InvoiceState, PauseKind};
use relance_domain::Language;
use relance_sequence::actions::{self, InvoiceAction};
use relance_storage::console::timeline;
use serde_json::json;
use sha2::Sha256;
use sqlx::PgPool;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SERVICE: &str = "portal";

/// What the journal says an action came from (the start of its note or reason).
pub const SOURCE: &str = "customer page";
/// The `source` the page's messages carry (`payment_plan.requested`'s `source`).
pub const SOURCE_NAME: &str = "customer_page";

/// How long an action waits for the payments listener before answering "received".
const APPLY_WAIT: Duration = Duration::from_secs(5);
const APPLY_POLL: Duration = Duration::from_millis(50);
/// The cookie holding the browser's CSRF nonce.
const CSRF_COOKIE: &str = "relance_portal_csrf";
/// The longest dispute reason taken.
const MAX_REASON: usize = 2000;

struct Portal {
    db: PgPool,
    config: Config,
    names: Names,
    secret: String,
    templates: minijinja::Environment<'static>,
    limiter: limit::Limiter,
}

type Shared = Arc<Portal>;

fn secret_of(settings: &Settings) -> anyhow::Result<String> {
    settings.portal_secret.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "RELANCE_PORTAL_SECRET (or RELANCE_PORTAL_SECRET_FILE) is not set: the customer page's links \
             are signed with it (e.g. `openssl rand -hex 32`)"
        )
    })
}

/// The page's URL for `invoice_number`, made now: under `RELANCE_PORTAL_URL`, or else the
/// portal's own address.
pub fn link(config: &Config, invoice_number: &str) -> anyhow::Result<String> {
    let settings = &config.settings;
    let secret = secret_of(settings)?;
    let token = token::sign(
        &secret,
        invoice_number,
        config.clock.now(),
        settings.portal_token_days,
    )?;
    let base = settings
        .portal_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", settings.portal_addr));
    Ok(format!("{base}/p/{token}"))
}

/// Revokes every link of `invoice_number` made until now (`relance portal revoke`).
pub async fn revoke(db: &PgPool, invoice_number: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO portal_revocations (invoice_number, revoked_at) VALUES ($1, $2)
         ON CONFLICT (invoice_number) DO UPDATE SET revoked_at = EXCLUDED.revoked_at",
    )
    .bind(invoice_number)
    .bind(now)
    .execute(db)
    .await
    .context("recording the revocation")?;
    Ok(())
}

/// Connects as the console's read-only role (`relance_console`, created by `relance
/// migrate`): every session takes it and is read-only besides.
async fn connect_read_only(database_url: &str, pool_size: u32) -> anyhow::Result<PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(pool_size.max(1))
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET ROLE relance_console")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("SET default_transaction_read_only = on")
                    .execute(&mut *conn)
                    .await
                    .map(|_| ())
            })
        })
        .connect_with(relance_storage::connect_options(database_url)?)
        .await
        .context(
            "connecting the customer page to the database as the read-only role relance_console \
             (created by `relance migrate`; the database user must be allowed to SET ROLE relance_console)",
        )
}

/// Binds `RELANCE_PORTAL_ADDR` and serves until shutdown.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let addr = config.settings.portal_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the customer page to RELANCE_PORTAL_ADDR={addr}"))?;
    let (bound, server) = serve(listener, config, shutdown).await?;
    tracing::info!(%bound, "the customer page listens");
    server.await
}

/// Serves the page on `listener` (tests pass one on a free port).
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, impl std::future::Future<Output = anyhow::Result<()>>)> {
    let bound = listener
        .local_addr()
        .context("reading the customer page's address")?;
    let secret = secret_of(&config.settings)?;
    let db = connect_read_only(&config.settings.database_url, config.settings.db_pool_size).await?;
    let mut templates = minijinja::Environment::new();
    templates.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    templates
        .add_template("page.html", include_str!("../templates/page.html"))
        .context("loading the customer page's template")?;
    templates.add_filter("urlencode", |s: String| url_encode(&s));
    let portal = Arc::new(Portal {
        db,
        names: Names::new(&config.settings.namespace),
        limiter: limit::Limiter::new(config.settings.portal_rate_per_minute),
        config,
        secret,
        templates,
    });
    let app = Router::new()
        .route("/p/{token}", get(page))
        .route("/p/{token}/statement.pdf", get(statement_pdf))
        .route("/p/{token}/invoices/{file}", get(invoice_pdf))
        .route("/p/{token}/promise", post(promise))
        .route("/p/{token}/dispute", post(dispute))
        .route("/p/{token}/receipt", post(receipt))
        .route("/p/{token}/plan", post(plan_request))
        .fallback(|| async { refusal_page(token::Refusal::Invalid) })
        .layer(axum::middleware::from_fn_with_state(portal.clone(), guard))
        .with_state(portal);
    let server = async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("the customer page's server stopped")
    };
    Ok((bound, server))
}

/// Rate limit per client address and per link, and the headers of every answer: nothing
/// loaded from elsewhere, no referrer, no cache, no indexing.
async fn guard(
    State(portal): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let now = Instant::now();
    let link = request
        .uri()
        .path()
        .strip_prefix("/p/")
        .map(|rest| rest.split('/').next().unwrap_or_default().to_string());
    let by_address = portal.limiter.allow(&format!("ip:{}", peer.ip()), now);
    let by_link = link.is_none_or(|l| portal.limiter.allow(&format!("link:{l}"), now));
    let mut response = match by_address && by_link {
        true => next.run(request).await,
        false => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "60")],
            Html("<!doctype html><meta charset=\"utf-8\"><title>429</title><p>Too many requests: please try again in a minute. / Trop de demandes : réessayez dans une minute.</p>\n"),
        )
            .into_response(),
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::HeaderName::from_static("x-robots-tag"), "noindex, nofollow"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The same page for every refused link: it says nothing of the invoice.
fn refusal_page(refusal: token::Refusal) -> Response {
    let (status, text) = match refusal {
        token::Refusal::Invalid => (
            StatusCode::NOT_FOUND,
            "This link is not valid. / Ce lien n'est pas valide.",
        ),
        token::Refusal::Gone => (
            StatusCode::GONE,
            "This link is no longer valid: ask us for a new one. / Ce lien n'est plus valide : demandez-nous-en un nouveau.",
        ),
    };
    (
        status,
        Html(format!(
            "<!doctype html><meta charset=\"utf-8\"><title>{}</title><p>{text}</p>\n",
            status.as_u16()
        )),
    )
        .into_response()
}

/// A failure inside: logged, and a page that says nothing more.
fn internal(e: anyhow::Error) -> Response {
    tracing::error!(error = format!("{e:#}"), "customer page request failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html("<!doctype html><meta charset=\"utf-8\"><title>500</title><p>Something went wrong: please try again later. / Une erreur est survenue : réessayez plus tard.</p>\n"),
    )
        .into_response()
}

/// What a valid link opens: the invoice it was made for and its customer.
struct Opened {
    invoice_number: String,
    customer_id: String,
}

async fn open(portal: &Shared, raw: &str) -> Result<Opened, Response> {
    let claims = token::verify(&portal.secret, raw, portal.config.clock.now()).map_err(refusal_page)?;
    let revoked_at: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT revoked_at FROM portal_revocations WHERE invoice_number = $1")
            .bind(&claims.invoice_number)
            .fetch_optional(&portal.db)
            .await
            .context("reading the link's revocation")
            .map_err(internal)?;
    if token::revoked(claims.made_at, revoked_at) {
        return Err(refusal_page(token::Refusal::Gone));
    }
    let invoice = timeline::invoice(&portal.db, &claims.invoice_number)
        .await
        .map_err(internal)?
        .ok_or_else(|| refusal_page(token::Refusal::Invalid))?;
    Ok(Opened {
        invoice_number: invoice.number,
        customer_id: invoice.customer_id,
    })
}

fn csrf_token(portal: &Shared, nonce: &str) -> String {
    <Hmac<Sha256> as Mac>::new_from_slice(format!("csrf|{}", portal.secret).as_bytes())
        .map(|mut mac| {
            mac.update(nonce.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        })
        .unwrap_or_default()
}

fn nonce_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == CSRF_COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit()))
}

fn csrf_ok(portal: &Shared, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    match (nonce_of(headers), form.get("csrf")) {
        (Some(nonce), Some(given)) => {
            let expected = csrf_token(portal, &nonce);
            use sha2::Digest;
            // Compared through digests, so the time taken says nothing about the token.
            !expected.is_empty()
                && Sha256::digest(expected.as_bytes()) == Sha256::digest(given.trim().as_bytes())
        }
        _ => false,
    }
}

async fn page(
    State(portal): State<Shared>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let opened = match open(&portal, &raw).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    render_page(&portal, &raw, &opened, &headers, &params, None).await
}

async fn render_page(
    portal: &Shared,
    raw: &str,
    opened: &Opened,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    error: Option<String>,
) -> Response {
    let (source, creditor) = match load(portal, opened).await {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return refusal_page(token::Refusal::Invalid),
        Err(e) => return internal(e),
    };
    let mut invoices = Vec::new();
    for line in &source.invoices {
        let i = &line.invoice;
        let paused = match timeline::active_pause_kinds(&portal.db, &i.number).await {
            Ok(kinds) => !kinds.is_empty(),
            Err(e) => return internal(e),
        };
        invoices.push(json!({
            "number": i.number,
            "due_on": i.due_on.format("%Y-%m-%d").to_string(),
            "amount": (i.amount - i.credited).round_dp(2).to_string(),
            "balance": i.balance.round_dp(2).to_string(),
            "currency": i.currency.trim(),
            "payment_link": i.payment_link.as_deref().filter(|l| l.starts_with("https://") || l.starts_with("http://")),
            "has_pdf": i.has_pdf,
            "paused": paused,
        }));
    }
    let (nonce, cookie) = match nonce_of(headers) {
        Some(n) => (n, None),
        None => {
            let n = hex::encode(rand::random::<[u8; 16]>());
            let cookie = format!("{CSRF_COOKIE}={n}; Path=/p/; HttpOnly; SameSite=Strict");
            (n, Some(cookie))
        }
    };
    let fr = source.customer.language == Language::Fr;
    let today = today_of(portal, &source.customer.timezone);
    let notice = params.get("done").map(|done| {
        let applied = params.get("outcome").is_some_and(|o| o == "applied");
        match (done.as_str(), fr, applied) {
            ("promise", true, true) => {
                "Merci : votre promesse est enregistrée, les relances sont suspendues jusqu'à cette date."
            }
            ("promise", false, true) => {
                "Thank you: your promise is recorded; reminders are paused until that date."
            }
            ("dispute", true, true) => "Votre litige est enregistré : notre service comptable vous répondra.",
            ("dispute", false, true) => "Your dispute is recorded: our accounts team will answer you.",
            ("receipt", true, _) => "Merci : votre accusé de réception est enregistré.",
            ("receipt", false, _) => "Thank you: your acknowledgement of receipt is recorded.",
            ("plan", true, true) => {
                "Votre demande d'échéancier est transmise : les relances sont suspendues, notre service comptable vous répondra."
            }
            ("plan", false, true) => {
                "Your request for a payment plan is sent: reminders are paused until our accounts team answers you."
            }
            (_, true, _) => "Votre demande est reçue : elle sera traitée sous peu.",
            (_, false, _) => "Your request is received: it will be handled shortly.",
        }
    });
    let receipt_acknowledged =
        match relance_storage::replies::acknowledged_at(&portal.db, &opened.invoice_number).await {
            Ok(at) => at.is_some(),
            Err(e) => return internal(e),
        };
    let context = json!({
        "receipt_acknowledged": receipt_acknowledged,
        "lang": if fr { "fr" } else { "en" },
        "fr": fr,
        "customer": source.customer.name,
        "creditor": {
            "name": creditor.name, "iban": creditor.iban, "bic": creditor.bic,
            "email": creditor.email, "phone": creditor.phone,
        },
        "invoices": invoices,
        "token_invoice": opened.invoice_number,
        "base": format!("/p/{raw}"),
        "csrf": csrf_token(portal, &nonce),
        "today": today.to_string(),
        "latest_promise": (today + Days::days(i64::from(portal.config.settings.portal_max_promise_days))).to_string(),
        "notice": notice,
        "error": error,
    });
    let page = portal
        .templates
        .get_template("page.html")
        .and_then(|t| t.render(minijinja::Value::from_serialize(&context)))
        .context("rendering the customer page");
    let page = match page {
        Ok(p) => p,
        Err(e) => return internal(e),
    };
    let status = match error {
        Some(_) => StatusCode::UNPROCESSABLE_ENTITY,
        None => StatusCode::OK,
    };
    let mut response = (status, Html(page)).into_response();
    if let Some(value) = cookie.and_then(|c| c.parse().ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn today_of(portal: &Shared, tz: &chrono_tz::Tz) -> NaiveDate {
    portal.config.clock.now().with_timezone(tz).date_naive()
}

/// The link's customer's invoices of the link's invoice's creditor, and that creditor: the
/// page and the statement speak for one creditor (`relance_storage::creditors`).
async fn load(
    portal: &Shared,
    opened: &Opened,
) -> anyhow::Result<
    Option<(
        relance_storage::statements::StatementSource,
        relance_config::Creditor,
    )>,
> {
    let mut conn = portal.db.acquire().await.context("acquiring a connection")?;
    let Some(mut source) = relance_storage::statements::load(&mut conn, &opened.customer_id).await? else {
        return Ok(None);
    };
    let default = &portal.config.settings.creditor;
    let creditor = relance_storage::creditors::statement_creditor(
        &mut conn,
        default,
        &mut source,
        Some(&opened.invoice_number),
    )
    .await?;
    Ok(Some((source, creditor)))
}

async fn statement_pdf(State(portal): State<Shared>, Path(raw): Path<String>) -> Response {
    let opened = match open(&portal, &raw).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let made = async {
        let (source, creditor) = load(&portal, &opened)
            .await?
            .context("the link's customer is gone")?;
        let today = today_of(&portal, &source.customer.timezone);
        let config = portal.config.for_creditor(creditor);
        let figures = relance_documents::statement::figures(&config, &source, today, None)?;
        relance_documents::statement::document(&config, &figures)
    }
    .await;
    match made {
        Ok(document) => pdf(document.name, document.pdf),
        Err(e) => internal(e),
    }
}

fn pdf(name: String, bytes: Vec<u8>) -> Response {
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    (
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// `GET /p/{token}/invoices/{number}.pdf`: the stored PDF of one of the customer's open
/// invoices.
async fn invoice_pdf(State(portal): State<Shared>, Path((raw, file)): Path<(String, String)>) -> Response {
    let opened = match open(&portal, &raw).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some(number) = file.strip_suffix(".pdf") else {
        return refusal_page(token::Refusal::Invalid);
    };
    let found = async {
        let mut conn = portal.db.acquire().await.context("acquiring a connection")?;
        let Some(invoice) = relance_storage::invoices::find_by_number(&mut conn, number).await? else {
            return Ok(None);
        };
        if invoice.customer_id != opened.customer_id {
            return Ok(None);
        }
        relance_storage::invoices::invoice_pdf(&mut conn, invoice.id).await
    }
    .await;
    match found {
        Ok(Some(bytes)) => pdf(format!("{number}.pdf"), bytes),
        Ok(None) => refusal_page(token::Refusal::Invalid),
        Err(e) => internal(e),
    }
}

async fn promise(
    State(portal): State<Shared>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    act(&portal, &raw, &headers, &form, "promise").await
}

async fn dispute(
    State(portal): State<Shared>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    act(&portal, &raw, &headers, &form, "dispute").await
}

/// The one-click acknowledgement of receipt ("I have received this invoice"): a POST, as
/// every action of the page (a link that changes something by GET would be followed by mail
/// scanners and previews).
async fn receipt(
    State(portal): State<Shared>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    act(&portal, &raw, &headers, &form, "receipt").await
}

/// The customer asks for a payment plan: a number of months and a note
/// (`payment_plan.requested`).
async fn plan_request(
    State(portal): State<Shared>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    act(&portal, &raw, &headers, &form, "plan").await
}

/// One form: checks the link, the CSRF token, that the invoice is one of the customer's
/// open invoices and the action itself; publishes it, waits a bounded time for the payments
/// listener, and sends the browser back to the page with a notice (post, redirect, get).
async fn act(
    portal: &Shared,
    raw: &str,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    what: &str,
) -> Response {
    let opened = match open(portal, raw).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if !csrf_ok(portal, headers, form) {
        return (
            StatusCode::FORBIDDEN,
            Html("<!doctype html><meta charset=\"utf-8\"><title>403</title><p>This form has expired: reload the page and try again. / Ce formulaire a expiré : rechargez la page.</p>\n"),
        )
            .into_response();
    }
    match perform(portal, &opened, form, what).await {
        Ok(applied) => {
            let outcome = if applied { "applied" } else { "received" };
            Redirect::to(&format!("/p/{raw}?done={what}&outcome={outcome}")).into_response()
        }
        Err(Action::Refused(reason)) => {
            render_page(portal, raw, &opened, headers, &HashMap::new(), Some(reason)).await
        }
        Err(Action::Failed(e)) => internal(e),
    }
}

enum Action {
    Refused(String),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Action {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

async fn perform(
    portal: &Shared,
    opened: &Opened,
    form: &HashMap<String, String>,
    what: &str,
) -> Result<bool, Action> {
    let field = |name: &str| form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let number = field("invoice").unwrap_or(&opened.invoice_number);
    let invoice = timeline::invoice(&portal.db, number)
        .await?
        .filter(|i| i.customer_id == opened.customer_id)
        .ok_or_else(|| Action::Refused(format!("{number}: not one of your open invoices")))?;
    let tz = relance_storage::statements::load(
        &mut *portal.db.acquire().await.context("acquiring a connection")?,
        &opened.customer_id,
    )
    .await?
    .map(|s| s.customer.timezone)
    .unwrap_or(chrono_tz::UTC);
    let today = today_of(portal, &tz);
    if what == "receipt" {
        return acknowledge(portal, &invoice.number).await;
    }
    if what == "plan" {
        let months: u32 = field("months")
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| Action::Refused("say over how many months you propose to pay".into()))?;
        let note = field("note").map(|n| n.chars().take(MAX_REASON).collect::<String>());
        if invoice.status != "open" {
            return Err(Action::Refused("this invoice is no longer open".into()));
        }
        let event_id = format!("portal-{}", Uuid::new_v4().simple());
        let instruction = actions::plan_request_instruction(
            &invoice.number,
            Some(months),
            note,
            Some(SOURCE_NAME),
            event_id,
            portal.config.clock.now(),
        )
        .map_err(|r| Action::Refused(r.to_string()))?;
        return publish_and_wait(portal, &instruction).await;
    }
    let action = match what {
        "promise" => {
            let date: NaiveDate = field("date")
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| Action::Refused("give the date you will pay by (YYYY-MM-DD)".into()))?;
            let latest = today + Days::days(i64::from(portal.config.settings.portal_max_promise_days));
            if date < today || date > latest {
                return Err(Action::Refused(format!(
                    "the date must be between {today} and {latest}; for a later date, ask us for a payment plan"
                )));
            }
            InvoiceAction::Promise {
                date: Some(date),
                note: Some(format!("{SOURCE}: promise to pay by {date}")),
            }
        }
        _ => {
            let reason = field("reason")
                .ok_or_else(|| Action::Refused("say what is wrong with the invoice".into()))?;
            let reason: String = reason.chars().take(MAX_REASON).collect();
            InvoiceAction::Dispute {
                reason: format!("{SOURCE}: {reason}"),
            }
        }
    };
    let state: InvoiceState = invoice
        .status
        .parse()
        .map_err(|e: String| anyhow::anyhow!("invoice {}: {e}", invoice.number))?;
    let pauses = timeline::active_pause_kinds(&portal.db, &invoice.number)
        .await?
        .iter()
        .map(|kind| kind.parse::<PauseKind>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("invoice {}: {e}", invoice.number))?;
    if let Some(reason) = actions::refused_by_state(&action, state, &pauses) {
        return Err(Action::Refused(reason.to_string()));
    }
    let event_id = format!("portal-{}", Uuid::new_v4().simple());
    let instruction = actions::instruction(&invoice.number, action, event_id, portal.config.clock.now())
        .map_err(|r| Action::Refused(r.to_string()))?
        .with_source(actions::SOURCE_CUSTOMER_PAGE);
    publish_and_wait(portal, &instruction).await
}

/// Publishes the action and waits a bounded time for the payments listener to apply it.
async fn publish_and_wait(portal: &Shared, instruction: &actions::Instruction) -> Result<bool, Action> {
    publish(portal, instruction.routing_key, &instruction.body).await?;
    tracing::info!(
        routing_key = instruction.routing_key,
        event_id = %instruction.event_id,
        invoice = %instruction.invoice_number,
        "customer page action published"
    );
    let inbox = format!("payments.{}", instruction.routing_key);
    let deadline = Instant::now() + APPLY_WAIT;
    loop {
        if timeline::applied(&portal.db, &inbox, &instruction.event_id).await? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(APPLY_POLL).await;
    }
}

/// Publishes `receipt.acknowledged` (source "customer page") and waits a bounded time for the
/// payments listener.
async fn acknowledge(portal: &Shared, invoice_number: &str) -> Result<bool, Action> {
    let event_id = format!("portal-{}", Uuid::new_v4().simple());
    let message = relance_contracts::ReceiptAcknowledgedV1 {
        version: relance_contracts::VERSION_1,
        event_id: event_id.clone(),
        occurred_at: portal.config.clock.now(),
        receipt: relance_contracts::ReceiptV1 {
            invoice_number: invoice_number.to_string(),
            source: SOURCE.to_string(),
        },
    };
    let body = serde_json::to_value(&message).context("encoding the acknowledgement")?;
    let routing_key = relance_contracts::names::RECEIPT_ACKNOWLEDGED;
    publish(portal, routing_key, &body).await?;
    tracing::info!(
        routing_key,
        event_id,
        invoice = invoice_number,
        "customer page action published"
    );
    wait_applied(portal, &format!("payments.{routing_key}"), &event_id).await
}

async fn wait_applied(portal: &Shared, inbox: &str, event_id: &str) -> Result<bool, Action> {
    let deadline = Instant::now() + APPLY_WAIT;
    loop {
        if timeline::applied(&portal.db, inbox, event_id).await? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(APPLY_POLL).await;
    }
}

async fn publish(portal: &Shared, routing_key: &str, body: &serde_json::Value) -> anyhow::Result<()> {
    let settings = &portal.config.settings;
    let connection = relance_messaging::connect(&settings.amqp_url, "portal").await?;
    let outcome = async {
        let channel = connection.create_channel().await.context("opening a channel")?;
        relance_messaging::declare_topology(
            &channel,
            &portal.names,
            &relance_messaging::TopologyOptions::from_settings(settings),
        )
        .await?;
        let _ = channel.close(200, "declared".into()).await;
        let publisher = relance_messaging::Publisher::open(&connection).await?;
        relance_messaging::publish_inbound(&publisher, &portal.names, routing_key, body).await?;
        publisher.close().await;
        anyhow::Ok(())
    }
    .await;
    let _ = connection.close(200, "published".into()).await;
    outcome.with_context(|| format!("publishing {routing_key}"))
}

fn url_encode(s: &str) -> String {
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
