//! `orchestrator dashboard`: [`Dashboard`], a web UI over the store —
//! SQLite or PostgreSQL — beside a running batch or after it.
//!
//! Pages are rendered on the server ([`pages`], with [`chart`]) from the
//! store's aggregate and paged reads, so no page loads more than it shows;
//! a small script ([`assets`]) refreshes the live numbers from
//! `/api/overview`. Actions (stop all, release held jobs, retry or cancel a
//! job) are the store operations the command line has, taken by `POST`
//! with a token only this server's pages carry; beyond loopback every
//! request needs the access token.

mod chart;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use orchestrator_store::{JobFilter, Store};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The files the pages use, served from the binary.
mod assets {
    pub const SCRIPT: &str = include_str!("assets/app.js");
    pub const STYLE: &str = include_str!("assets/app.css");
}

/// What every request shares.
pub struct Dashboard {
    pub(crate) store: Arc<dyn Store>,
    /// The store's name as the command line shows it (no password).
    pub(crate) store_name: String,
    /// The SHA-256 of the access token every request must carry, when the
    /// dashboard listens beyond loopback.
    token_digest: Option<[u8; 32]>,
    /// Proves an action came from one of this server's own pages.
    pub(crate) csrf: String,
    /// The longest wait a run allows, for the pauses shown.
    pub(crate) max_wait_ms: u64,
}

/// The cookie that carries the access token after `?token=` once.
const TOKEN_COOKIE: &str = "orchestrator_dashboard";

impl Dashboard {
    pub fn new(
        store: Arc<dyn Store>,
        store_name: String,
        token: Option<&str>,
        max_wait_ms: u64,
    ) -> Dashboard {
        Dashboard {
            store,
            store_name,
            token_digest: token.map(digest),
            csrf: random_hex(16),
            max_wait_ms,
        }
    }

    /// Runs a store read or write off the async threads.
    pub(crate) async fn store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&dyn Store) -> orchestrator_store::Result<T> + Send + 'static,
    ) -> Result<T, Failure> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me.store.as_ref()))
            .await
            .map_err(|e| Failure::Internal(e.to_string()))?
            .map_err(|e| Failure::Internal(e.to_string()))
    }
}

/// The routes, behind the access check and the security headers.
pub fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/accounts", get(pages::accounts))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/{id}", get(pages::job))
        .route("/jobs/{id}/retry", post(retry))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/actions/stop", post(stop_all))
        .route("/actions/release-held", post(release_held))
        .route("/api/overview", get(pages::overview_json))
        .route("/metrics", get(metrics))
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript", assets::SCRIPT) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css", assets::STYLE) }),
        )
        .layer(middleware::from_fn_with_state(dashboard.clone(), guard))
        .with_state(dashboard)
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    dashboard: Arc<Dashboard>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(dashboard))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Whether `addr` is only reachable from this machine.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Every request: the access token when one is set (a `?token=` visit
/// sets the cookie and comes back without it), then the headers that keep
/// the pages from being framed, sniffed or given scripts of others.
async fn guard(State(d): State<Arc<Dashboard>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &d.token_digest {
        let query_token = request.uri().query().and_then(|q| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .ok()?
                .into_iter()
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v)
        });
        if let Some(token) = query_token {
            if digest(&token) != *expected {
                return (StatusCode::UNAUTHORIZED, "wrong access token").into_response();
            }
            let cookie = format!("{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            let mut back = Redirect::to(request.uri().path()).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                back.headers_mut().insert(header::SET_COOKIE, value);
            }
            return back;
        }
        if !carries_token(request.headers(), expected) {
            return (
                StatusCode::UNAUTHORIZED,
                "this dashboard needs its access token: open it once with ?token=TOKEN, or send Authorization: Bearer TOKEN",
            )
                .into_response();
        }
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn carries_token(headers: &HeaderMap, expected: &[u8; 32]) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().strip_prefix(&format!("{TOKEN_COOKIE}=")))
        .next();
    bearer.or(cookie).is_some_and(|t| digest(t) == *expected)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    // The kernel's random source; a failure leaves a token nobody guesses
    // from the outside either (the process id and time), never an empty one.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        let seed = format!("{}{:?}", std::process::id(), std::time::SystemTime::now());
        buf = Sha256::digest(seed.as_bytes())[..bytes].to_vec();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a request could not do.
#[derive(Debug)]
pub(crate) enum Failure {
    NotFound(String),
    Forbidden(&'static str),
    Internal(String),
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Failure::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Failure::Forbidden(m) => (StatusCode::FORBIDDEN, m.to_owned()),
            Failure::Internal(m) => {
                tracing::warn!("dashboard: {m}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the store could not answer: {m}"),
                )
            }
        };
        (status, pages::message_page(&message)).into_response()
    }
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
}

/// An action came from one of this server's pages: its form carries this
/// process's token, and a browser that says where the request comes from
/// says it is this site.
fn check_action(d: &Dashboard, headers: &HeaderMap, form: &ActionForm) -> Result<(), Failure> {
    if form.csrf != d.csrf {
        return Err(Failure::Forbidden(
            "this action did not come from this dashboard's page; reload the page and try again",
        ));
    }
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s != "same-origin" && s != "none") {
        return Err(Failure::Forbidden(
            "cross-site requests cannot take actions",
        ));
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if let (Some(origin), Some(host)) = (origin, host)
        && origin != "null"
        && origin.split_once("://").map(|(_, h)| h) != Some(host)
    {
        return Err(Failure::Forbidden(
            "cross-site requests cannot take actions",
        ));
    }
    Ok(())
}

fn done(to: &str, what: &str) -> Response {
    let query = serde_urlencoded::to_string([("done", what)]).unwrap_or_default();
    Redirect::to(&format!("{to}?{query}")).into_response()
}

async fn stop_all(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, Failure> {
    check_action(&d, &headers, &form)?;
    let asked = d.store(|s| s.request_stop()).await?;
    Ok(done(
        "/",
        &format!("asked {asked} running process(es) to stop"),
    ))
}

async fn release_held(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, Failure> {
    check_action(&d, &headers, &form)?;
    let released = d.store(|s| s.release_held()).await?;
    Ok(done(
        "/",
        &format!("released {released} held job(s) for retry"),
    ))
}

async fn retry(
    State(d): State<Arc<Dashboard>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, Failure> {
    job_action(d, id, headers, form, "retry").await
}

async fn cancel(
    State(d): State<Arc<Dashboard>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, Failure> {
    job_action(d, id, headers, form, "cancel").await
}

async fn job_action(
    d: Arc<Dashboard>,
    id: String,
    headers: HeaderMap,
    form: ActionForm,
    action: &'static str,
) -> Result<Response, Failure> {
    check_action(&d, &headers, &form)?;
    let ids = vec![id.clone()];
    // The store's answer per job, as `orchestrator retry`/`cancel` print it;
    // `None` for a job the store does not have.
    let said = d
        .store(move |s| {
            let changes = match action {
                "retry" => s.retry(&ids),
                _ => s.cancel(&ids),
            };
            match changes {
                Ok(changes) => Ok(changes.into_iter().next().map(|(id, change)| match action {
                    "retry" => crate::commands::retry::line(&id, change).0,
                    _ => crate::commands::cancel::line(&id, change).0,
                })),
                Err(orchestrator_store::StoreError::UnknownJobs(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await?
        .ok_or_else(|| Failure::NotFound(format!("no job {id:?}")))?;
    let path = format!("/jobs/{}", pages::url_segment(&id));
    Ok(done(&path, &said))
}

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    pub page: Option<u64>,
    pub state: Option<String>,
    pub account: Option<String>,
    pub done: Option<String>,
}

impl PageQuery {
    pub(crate) fn filter(&self) -> JobFilter {
        JobFilter {
            state: self
                .state
                .as_deref()
                .and_then(orchestrator_store::JobState::parse),
            account: self.account.clone().filter(|a| !a.is_empty()),
        }
    }
}

/// What the store says of the batch, for Prometheus: the same metrics a
/// `--run` process serves from its store (a run's own live counters are
/// on its `--metrics-listen`).
async fn metrics(State(d): State<Arc<Dashboard>>) -> Result<Response, Failure> {
    let me = d.clone();
    let text =
        tokio::task::spawn_blocking(move || orchestrator_metrics::encode(me.store.as_ref(), None))
            .await
            .map_err(|e| Failure::Internal(e.to_string()))?
            .map_err(|e| Failure::Internal(e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, orchestrator_metrics::CONTENT_TYPE)],
        text,
    )
        .into_response())
}
