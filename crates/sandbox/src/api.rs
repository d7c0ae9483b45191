//! The HTTP handlers: routing, Mastodon's statuses API subset, the test
//! endpoints, and what every shape shares — reading bodies, bearer tokens,
//! a scripted [`Turn`] for each posting request and an [`UploadTurn`] for
//! each upload.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use dashmap::mapref::entry::Entry;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::json;

use crate::scenario::{AccountScript, Behaviour, UploadBehaviour};
use crate::{AccountState, Attachment, CreatedStatus, Shared, bluesky, media, oauth2, webhook};

/// Request bodies larger than this are refused: a status is short.
const MAX_BODY: usize = 64 * 1024;
/// How far past its limit an upload is still read (and dropped) before it
/// is refused, so that the client, still sending, reads the refusal rather
/// than a reset connection; a body declared larger still is not read at all.
const UPLOAD_DRAIN: u64 = 64 << 20;

/// Returned by the service to close the connection without answering.
#[derive(Debug)]
pub(crate) struct DroppedConnection;

impl std::fmt::Display for DroppedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("scripted dropped connection")
    }
}

impl std::error::Error for DroppedConnection {}

pub(crate) type Reply = Result<Response<Full<Bytes>>, DroppedConnection>;

pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Reply {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let reply = route(shared.clone(), req).await;
    if matches!(&reply, Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS) {
        shared.rate_limited.fetch_add(1, Ordering::Relaxed);
    }
    reply
}

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path();
    if path.starts_with("/_sandbox/echo") {
        return Ok(echo(req).await);
    }
    if req.method() == Method::POST && path.starts_with("/api/webhooks/") {
        let _answering = InFlight::enter(&shared);
        return webhook::discord(&shared, req).await;
    }
    if req.method() == Method::POST && path.starts_with("/services/") {
        let _answering = InFlight::enter(&shared);
        return webhook::slack(&shared, req).await;
    }
    if req.method() == Method::GET
        && let Some(id) = path.strip_prefix("/api/v1/media/")
    {
        return Ok(media::show(&shared, req.headers(), id));
    }
    match (req.method(), path) {
        (&Method::POST, "/api/v1/statuses") => {
            let _answering = InFlight::enter(&shared);
            post_status(&shared, req).await
        }
        (&Method::POST, "/api/v2/media") => media::upload(&shared, req).await,
        (&Method::POST, "/xrpc/com.atproto.repo.uploadBlob") => {
            bluesky::upload_blob(&shared, req).await
        }
        (&Method::POST, "/xrpc/com.atproto.server.createSession") => {
            Ok(bluesky::create_session(&shared, req).await)
        }
        (&Method::POST, "/xrpc/com.atproto.server.refreshSession") => {
            Ok(bluesky::refresh_session(&shared, req).await)
        }
        (&Method::POST, "/xrpc/com.atproto.repo.createRecord") => {
            let _answering = InFlight::enter(&shared);
            bluesky::create_record(&shared, req).await
        }
        (&Method::GET, "/xrpc/com.atproto.repo.getRecord") => {
            Ok(bluesky::get_record(&shared, &req))
        }
        (&Method::POST, "/2/oauth2/token") => Ok(oauth2::token(&shared, req).await),
        (&Method::POST, "/2/tweets") => {
            let _answering = InFlight::enter(&shared);
            oauth2::tweet(&shared, req).await
        }
        (&Method::GET, "/_sandbox/posts") => Ok(json_response(
            StatusCode::OK,
            serde_json::to_string(&crate::posts(&shared)).unwrap_or_default(),
        )),
        (&Method::GET, "/api/v1/accounts/verify_credentials") => verify_credentials(&shared, &req),
        (&Method::GET, "/_sandbox/counters") => Ok(json_response(
            StatusCode::OK,
            serde_json::to_string(&crate::counters(&shared)).unwrap_or_default(),
        )),
        (_, "/_sandbox/huge") => Ok(huge(&req)),
        (&Method::GET, "/_sandbox/statuses") => Ok(json_response(
            StatusCode::OK,
            serde_json::to_string(&crate::statuses(&shared)).unwrap_or_default(),
        )),
        _ => Ok(error(StatusCode::NOT_FOUND, "Record not found")),
    }
}

/// `?bytes=N` bytes of filler, for testing response-size limits.
fn huge(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let bytes = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("bytes="))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
        .min(256 << 20);
    Response::new(Full::new(Bytes::from(vec![b'x'; bytes])))
}

pub(crate) fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// A Mastodon-shaped error: `{"error": "..."}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(status, json!({ "error": message }).to_string())
}

/// The account a request's Bearer token belongs to, and its script.
pub(crate) fn authenticate<'a>(
    shared: &'a Shared,
    headers: &http::HeaderMap,
) -> Option<(String, Option<&'a AccountScript>)> {
    let token = headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    if token.is_empty() {
        return None;
    }
    if let Some(&i) = shared.by_token.get(token) {
        let account = &shared.scenario.accounts[i];
        return Some((account.name.clone(), Some(account)));
    }
    shared.scenario.is_open().then(|| (token.to_owned(), None))
}

fn verify_credentials(shared: &Shared, req: &Request<Incoming>) -> Reply {
    let Some((account, _)) = authenticate(shared, req.headers()) else {
        return Ok(error(
            StatusCode::UNAUTHORIZED,
            "The access token is invalid",
        ));
    };
    Ok(json_response(
        StatusCode::OK,
        json!({
            "id": account_id(&account),
            "username": account,
            "acct": account,
            "display_name": account,
            "url": format!("{}/@{account}", shared.base_url),
        })
        .to_string(),
    ))
}

fn account_id(name: &str) -> String {
    // Stable and numeric, like Mastodon's snowflake ids.
    let hash = name.bytes().fold(1_469_598_103_934_665_603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211)
    });
    (hash >> 12).to_string()
}

async fn post_status(shared: &Shared, req: Request<Incoming>) -> Reply {
    // Read the whole body before answering, as a real server does: closing a
    // connection with unread request bytes makes the kernel reset it, and
    // the client may lose the response.
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large",
            ));
        }
    };
    let Some((account, script)) = authenticate(shared, &parts.headers) else {
        return Ok(error(
            StatusCode::UNAUTHORIZED,
            "The access token is invalid",
        ));
    };
    let state = shared.account(&account);
    let n = state.requests.fetch_add(1, Ordering::Relaxed);
    let behaviour = script.map_or(&Behaviour::Ok, |s| s.behaviour_for(n));
    let delay = script.map_or(shared.scenario.open_delay_ms, |s| s.delay_ms);
    if let Some(delay) = Some(delay).filter(|d| *d > 0) {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let (limit_used, window_reset) = rate_window(shared, &state);

    let mut response = match behaviour {
        Behaviour::RateLimited { .. } => rate_limited(
            shared,
            ceil_secs(behaviour.rate_limit_wait_ms().unwrap_or(1000)),
        ),
        Behaviour::DropConnection => return Err(DroppedConnection),
        Behaviour::Slow { delay_ms } => {
            tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
            create(shared, &state, &account, &parts.headers, &body)
        }
        Behaviour::Ok => {
            if shared.scenario.enforce_rate_limit && limit_used > shared.scenario.rate_limit {
                let wait = window_reset.saturating_sub(shared.now_secs());
                rate_limited(shared, wait.max(1))
            } else {
                create(shared, &state, &account, &parts.headers, &body)
            }
        }
        other => failure(other),
    };
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", shared.scenario.rate_limit.into());
    headers
        .entry("x-ratelimit-remaining")
        .or_insert_with(|| shared.scenario.rate_limit.saturating_sub(limit_used).into());
    if !headers.contains_key("x-ratelimit-reset") {
        headers.insert("x-ratelimit-reset", timestamp(window_reset));
    }
    Ok(response)
}

/// A scripted failure in Mastodon's shape.
pub(crate) fn failure(behaviour: &Behaviour) -> Response<Full<Bytes>> {
    match behaviour {
        Behaviour::InvalidToken => error(StatusCode::UNAUTHORIZED, "The access token is invalid"),
        Behaviour::Suspended => error(StatusCode::FORBIDDEN, "Your login is currently disabled"),
        Behaviour::ValidationError { message } => error(StatusCode::UNPROCESSABLE_ENTITY, message),
        Behaviour::ServerError {
            status,
            retry_after_secs,
        } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = error(status, "We're sorry, but something went wrong on our end.");
            if let Some(secs) = retry_after_secs {
                response.headers_mut().insert("retry-after", (*secs).into());
            }
            response
        }
        // The callers answer the others themselves.
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "We're sorry, but something went wrong on our end.",
        ),
    }
}

pub(crate) fn rate_limited(shared: &Shared, reset_secs: u64) -> Response<Full<Bytes>> {
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
    let headers = response.headers_mut();
    headers.insert(RETRY_AFTER, reset_secs.into());
    headers.insert("x-ratelimit-remaining", 0u64.into());
    headers.insert(
        "x-ratelimit-reset",
        timestamp(shared.now_secs() + reset_secs),
    );
    response
}

/// Counts the request in the account's fixed window; returns the requests
/// used in it and when it resets (epoch seconds).
fn rate_window(shared: &Shared, state: &AccountState) -> (u64, u64) {
    count_in_window(
        shared,
        &state.window,
        shared.scenario.rate_limit_window_secs,
    )
}

/// Counts a request in a fixed window `secs` long: the requests used in
/// it, and when it resets (epoch seconds).
fn count_in_window(
    shared: &Shared,
    window: &std::sync::Mutex<(u64, u64)>,
    secs: u64,
) -> (u64, u64) {
    let window_secs = secs.max(1);
    let index = shared.now_secs() / window_secs;
    let mut w = window.lock().unwrap_or_else(|e| e.into_inner());
    if w.0 != index {
        *w = (index, 0);
    }
    w.1 += 1;
    (w.1, (index + 1) * window_secs)
}

/// When the current rate-limit window ends (epoch seconds), for answers that
/// no account's window counts (refused before the account is known).
pub(crate) fn window_end(shared: &Shared) -> u64 {
    let window = shared.scenario.rate_limit_window_secs.max(1);
    (shared.now_secs() / window + 1) * window
}

/// What a scripted posting request comes to, whatever the platform; each
/// shape renders it in its own error shape.
#[derive(Debug)]
pub(crate) enum Turn<'a> {
    /// Post it.
    Post,
    /// Refuse with 429: the client should come back in this many ms.
    RateLimited { wait_ms: u64 },
    /// `invalid-token`, `suspended`, `validation-error` or `server-error`.
    Fail(&'a Behaviour),
}

/// A posting request's turn: its place in the account's script, and the
/// account's rate-limit window after counting it.
pub(crate) struct Scripted<'a> {
    pub(crate) state: Arc<AccountState>,
    pub(crate) turn: Turn<'a>,
    /// Requests used in the current window, including this one.
    pub(crate) used: u64,
    /// When the window resets, epoch seconds.
    pub(crate) reset: u64,
}

impl Scripted<'_> {
    /// What is left of the window, for `*-Remaining` headers.
    pub(crate) fn remaining(&self, shared: &Shared) -> u64 {
        shared.scenario.rate_limit.saturating_sub(self.used)
    }
}

/// Numbers a posting request of `account` (any shape), waits its delays,
/// and says what to answer. Mirrors `post_status`, which Mastodon keeps.
pub(crate) async fn script_turn<'a>(
    shared: &Shared,
    account: &'a AccountScript,
) -> Result<Scripted<'a>, DroppedConnection> {
    let state = shared.account(&account.name);
    let n = state.requests.fetch_add(1, Ordering::Relaxed);
    let behaviour = account.behaviour_for(n);
    if account.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(account.delay_ms)).await;
    }
    let (used, reset) = rate_window(shared, &state);
    let turn = match behaviour {
        Behaviour::DropConnection => return Err(DroppedConnection),
        Behaviour::Slow { delay_ms } => {
            tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
            Turn::Post
        }
        Behaviour::Ok => {
            if shared.scenario.enforce_rate_limit && used > shared.scenario.rate_limit {
                let wait = reset.saturating_sub(shared.now_secs()).max(1);
                Turn::RateLimited {
                    wait_ms: wait * 1000,
                }
            } else {
                Turn::Post
            }
        }
        Behaviour::RateLimited { .. } => Turn::RateLimited {
            wait_ms: behaviour.rate_limit_wait_ms().unwrap_or(1000),
        },
        other => Turn::Fail(other),
    };
    Ok(Scripted {
        state,
        turn,
        used,
        reset,
    })
}

/// What a scripted upload comes to, whatever the shape.
#[derive(Debug)]
pub(crate) enum UploadTurn<'a> {
    /// Store it; a Mastodon file is processed until the `polls`th poll.
    Store { polls: u32 },
    /// Refuse it as over the size limit.
    TooLarge,
    /// Refuse it as not an image.
    UnsupportedType,
    /// Refuse with 429: the client should come back in this many ms.
    RateLimited { wait_ms: u64 },
    /// `invalid-token`, `suspended`, `validation-error` or `server-error`.
    Fail(&'a Behaviour),
}

/// An upload's turn: its place in the account's upload script, and the
/// account's upload window after counting it.
pub(crate) struct ScriptedUpload<'a> {
    pub(crate) state: Arc<AccountState>,
    pub(crate) turn: UploadTurn<'a>,
    /// Uploads in the current window, including this one.
    pub(crate) used: u64,
    /// When the window resets, epoch seconds.
    pub(crate) reset: u64,
}

impl ScriptedUpload<'_> {
    /// What is left of the window, for `*-Remaining` headers.
    pub(crate) fn remaining(&self, shared: &Shared) -> u64 {
        shared.scenario.upload_rate_limit.saturating_sub(self.used)
    }
}

/// Numbers an upload of `account` (either shape; `script` is `None` for an
/// open scenario's accounts), waits its delays, and says what to answer.
/// Uploads have their own numbers and window, apart from posting requests.
pub(crate) async fn upload_turn<'a>(
    shared: &Shared,
    account: &str,
    script: Option<&'a AccountScript>,
) -> Result<ScriptedUpload<'a>, DroppedConnection> {
    let state = shared.account(account);
    let n = state.upload_requests.fetch_add(1, Ordering::Relaxed);
    let behaviour = script.map_or(&UploadBehaviour::Ok, |s| s.upload_behaviour_for(n));
    let delay = script.map_or(shared.scenario.open_delay_ms, |s| s.delay_ms);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let (used, reset) = count_in_window(
        shared,
        &state.upload_window,
        shared.scenario.upload_rate_limit_window_secs,
    );
    let default_polls = shared.scenario.media_processing_polls;
    let store = |polls| {
        if shared.scenario.enforce_rate_limit && used > shared.scenario.upload_rate_limit {
            let wait = reset.saturating_sub(shared.now_secs()).max(1);
            UploadTurn::RateLimited {
                wait_ms: wait * 1000,
            }
        } else {
            UploadTurn::Store { polls }
        }
    };
    let turn = match behaviour {
        UploadBehaviour::Ok | UploadBehaviour::Post(Behaviour::Ok) => store(default_polls),
        UploadBehaviour::Processing { polls } => store(*polls),
        UploadBehaviour::TooLarge => UploadTurn::TooLarge,
        UploadBehaviour::UnsupportedType => UploadTurn::UnsupportedType,
        UploadBehaviour::Post(Behaviour::DropConnection) => return Err(DroppedConnection),
        UploadBehaviour::Post(Behaviour::Slow { delay_ms }) => {
            tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
            store(default_polls)
        }
        UploadBehaviour::Post(limited @ Behaviour::RateLimited { .. }) => UploadTurn::RateLimited {
            wait_ms: limited.rate_limit_wait_ms().unwrap_or(1000),
        },
        UploadBehaviour::Post(other) => UploadTurn::Fail(other),
    };
    Ok(ScriptedUpload {
        state,
        turn,
        used,
        reset,
    })
}

/// Whole seconds to wait for `ms`, rounded up: `Retry-After` has no fractions.
pub(crate) fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// Reads a whole request body (as a real server does before answering: a
/// connection closed on unread bytes is reset and the client may lose the
/// answer); `None` if it is larger than a post can be.
pub(crate) async fn read_body(body: Incoming) -> Option<Bytes> {
    Limited::new(body, MAX_BODY)
        .collect()
        .await
        .ok()
        .map(|b| b.to_bytes())
}

/// Reads an upload's body whole if it is at most `limit` bytes; `None` if
/// it is larger. A larger body is read on without being kept, up to
/// [`UPLOAD_DRAIN`] past the limit, so the refusal reaches a client that
/// is still sending; one declared larger than that is not read at all.
pub(crate) async fn read_upload(
    headers: &http::HeaderMap,
    mut body: Incoming,
    limit: u64,
) -> Option<Bytes> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let give_up = limit.saturating_add(UPLOAD_DRAIN);
    if declared.is_some_and(|n| n > give_up) {
        return None;
    }
    let keep = declared.is_none_or(|n| n <= limit);
    let capacity = declared.unwrap_or(0).min(limit);
    let mut kept = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut read = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.ok()?.into_data() else {
            continue; // trailers
        };
        read = read.saturating_add(data.len() as u64);
        if read > give_up {
            return None;
        }
        if keep && read <= limit {
            kept.extend_from_slice(&data);
        }
    }
    (keep && read <= limit).then(|| Bytes::from(kept))
}

/// The token of an `Authorization: Bearer` header: `None` without one,
/// `Some("")` for a header that is not a bearer token.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map_or("", str::trim),
    )
}

pub(crate) fn text_response(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// What arrived, headers included: tests read it back to prove the host
/// scrubs secrets out of what a poster sees.
async fn echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let Some(body) = read_body(body).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
    };
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_owned(), values.join(", ").into());
    }
    json_response(
        StatusCode::OK,
        json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query().unwrap_or(""),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        })
        .to_string(),
    )
}

pub(crate) fn timestamp(epoch_secs: u64) -> HeaderValue {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch_secs);
    HeaderValue::from_str(&humantime::format_rfc3339_millis(t).to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("1970-01-01T00:00:00.000Z"))
}

#[derive(serde::Deserialize)]
struct StatusParams {
    status: Option<String>,
    visibility: Option<String>,
    spoiler_text: Option<String>,
    language: Option<String>,
    /// JSON's `media_ids: ["1", 2]`; a form's repeated `media_ids[]` is
    /// read apart (see [`form_media_ids`]).
    #[serde(default, deserialize_with = "ids")]
    media_ids: Vec<String>,
}

/// Media ids as strings, as Mastodon gives them; numbers are taken too,
/// and so is one id alone.
fn ids<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Ids {
        Many(Vec<Id>),
        One(Id),
    }
    let text = |id| match id {
        Id::Text(text) => text,
        Id::Number(n) => n.to_string(),
    };
    Ok(
        match <Option<Ids> as serde::Deserialize>::deserialize(deserializer)? {
            None => Vec::new(),
            Some(Ids::Many(ids)) => ids.into_iter().map(text).collect(),
            Some(Ids::One(id)) => vec![text(id)],
        },
    )
}

/// A form's `media_ids[]=1&media_ids[]=2`, which Rails reads as an array.
fn form_media_ids(body: &[u8]) -> Vec<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .unwrap_or_default()
        .into_iter()
        .filter(|(key, _)| key == "media_ids[]")
        .map(|(_, id)| id)
        .collect()
}

fn create(
    shared: &Shared,
    state: &AccountState,
    account: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut params: StatusParams = if is_json {
        match serde_json::from_slice(body) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("Invalid JSON: {e}")),
        }
    } else {
        match serde_urlencoded::from_bytes(body) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("Invalid form: {e}")),
        }
    };
    if !is_json {
        params.media_ids.extend(form_media_ids(body));
    }
    // Mastodon: a status needs text unless it carries media.
    let text = params.status.clone().unwrap_or_default();
    if text.trim().is_empty() && params.media_ids.is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation failed: Text can't be blank",
        );
    }

    // Attaches the media and records the status; a media id that cannot
    // be attached refuses the whole status, attaching nothing.
    // Err is Mastodon's 422 message.
    let new_status = || -> Result<CreatedStatus, String> {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + shared.started_epoch_ms * 1000;
        let media = media::attach(state, &params.media_ids, id)?;
        let body = status_json(shared, account, id, &text, &params, &media);
        let status = CreatedStatus {
            id,
            account: account.to_owned(),
            text: text.clone(),
            visibility: params.visibility.clone(),
            language: params.language.clone(),
            idempotency_key: key.clone(),
            media,
            body: Arc::from(body),
            created: Instant::now(),
        };
        shared.created.fetch_add(1, Ordering::Relaxed);
        state.created.fetch_add(1, Ordering::Relaxed);
        shared.statuses.insert(id, status.clone());
        Ok(status)
    };

    let created = match &key {
        None => new_status(),
        Some(key) => {
            let window = Duration::from_secs(shared.scenario.idempotency_window_secs);
            let map_key = (account.to_owned(), key.clone());
            // The entry holds its shard's lock while the status is created, so
            // two concurrent requests with one key create one status. A
            // replay is answered before the media are looked at: they are
            // attached to the status it replays.
            let status = match shared.by_key.entry(map_key.clone()) {
                Entry::Occupied(e) if e.get().created.elapsed() < window => {
                    shared.duplicates_prevented.fetch_add(1, Ordering::Relaxed);
                    return json_response(StatusCode::OK, e.get().body.to_string());
                }
                Entry::Occupied(mut e) => match new_status() {
                    Ok(status) => {
                        e.insert(status.clone());
                        status
                    }
                    Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, &message),
                },
                Entry::Vacant(e) => match new_status() {
                    Ok(status) => e.insert(status).clone(),
                    Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, &message),
                },
            };
            *shared.created_per_key.entry(map_key).or_insert(0) += 1;
            Ok(status)
        }
    };
    match created {
        Ok(status) => json_response(StatusCode::OK, status.body.to_string()),
        Err(message) => error(StatusCode::UNPROCESSABLE_ENTITY, &message),
    }
}

fn status_json(
    shared: &Shared,
    account: &str,
    id: u64,
    text: &str,
    params: &StatusParams,
    media: &[Attachment],
) -> String {
    let base = &shared.base_url;
    let (visibility, spoiler_text, language) =
        (&params.visibility, &params.spoiler_text, &params.language);
    let media: Vec<serde_json::Value> = media
        .iter()
        .map(|m| media::attachment_json(shared, account, m, true))
        .collect();
    json!({
        "id": id.to_string(),
        "created_at": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "content": format!("<p>{}</p>", escape_html(text)),
        "visibility": visibility.as_deref().unwrap_or("public"),
        "spoiler_text": spoiler_text.as_deref().unwrap_or(""),
        "sensitive": spoiler_text.as_deref().is_some_and(|s| !s.is_empty()),
        "language": language,
        "media_attachments": media,
        "uri": format!("{base}/users/{account}/statuses/{id}"),
        "url": format!("{base}/@{account}/{id}"),
        "account": {
            "id": account_id(account),
            "username": account,
            "acct": account,
        },
    })
    .to_string()
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Counts a posting request being answered, until dropped (also when the
/// client goes away mid-answer).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
