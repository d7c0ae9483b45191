//! X API v2's OAuth 2 shape: rotating, single-use refresh tokens at
//! `POST /2/oauth2/token`, and `POST /2/tweets` with the access tokens.
//!
//! The key type is [`OAuthChain`], one per account in its `AccountState`:
//! which refresh tokens were exchanged, and the last exchange's answer. The
//! most recently used refresh token may be presented again while its
//! successor is unused — the client lost the answer, e.g. in a crash — and
//! gets the same answer (a replay). Any other reuse is what a stolen token
//! looks like: the account is locked out, every token revoked, as strict
//! platforms do. Errors have X's shapes: OAuth's `{"error",
//! "error_description"}` at the token endpoint, problem details at `/2/tweets`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use crate::api::{self, Reply, Scripted, Turn};
use crate::scenario::{AccountScript, Behaviour, Scenario};
use crate::{Platform, Post, Shared, jwt};

const SCOPE: &str = "tweet.read tweet.write users.read offline.access";
/// Twitter's epoch (2010-11-04), for snowflake ids.
const TWITTER_EPOCH_MS: u64 = 1_288_834_974_657;

/// One account's refresh-token rotation.
#[derive(Debug, Default)]
pub(crate) struct OAuthChain {
    /// Refresh tokens already exchanged. Of the tokens issued to an account,
    /// only the newest is not in here.
    used: HashSet<String>,
    /// The last exchange: the refresh token presented and the answer given.
    last: Option<(String, Arc<str>)>,
}

/// An access token the sandbox issued.
#[derive(Debug)]
struct AccessToken {
    account: usize,
    expires_ms: u64,
}

/// Every OAuth 2 token issued, and what was tweeted.
#[derive(Debug)]
pub(crate) struct OAuthState {
    /// Refresh token (the scenario's first ones and every one issued since)
    /// → account index.
    refresh: DashMap<String, usize>,
    access: DashMap<String, AccessToken>,
    client_ids: HashSet<String>,
    /// (account, text) → tweet id: X refuses duplicate content.
    texts: DashMap<(String, String), String>,
}

impl OAuthState {
    /// Every access and refresh token it knows, the scenario's included.
    pub(crate) fn issued_tokens(&self) -> Vec<String> {
        let refresh = self.refresh.iter().map(|e| e.key().clone());
        refresh
            .chain(self.access.iter().map(|e| e.key().clone()))
            .collect()
    }

    pub(crate) fn new(scenario: &Scenario) -> Self {
        let refresh = DashMap::new();
        let mut client_ids = HashSet::new();
        for (i, account) in scenario.accounts.iter().enumerate() {
            if let (Some(client_id), Some(token)) = (&account.client_id, &account.refresh_token) {
                refresh.insert(token.clone(), i);
                client_ids.insert(client_id.clone());
            }
        }
        OAuthState {
            refresh,
            access: DashMap::new(),
            client_ids,
            texts: DashMap::new(),
        }
    }
}

fn oauth_error(error: &str, description: &str) -> Response<Full<Bytes>> {
    api::json_response(
        StatusCode::BAD_REQUEST,
        json!({ "error": error, "error_description": description }).to_string(),
    )
}

fn invalid_grant() -> Response<Full<Bytes>> {
    oauth_error("invalid_grant", "Value passed for the token was invalid.")
}

/// A token no other has: the unique jti, then filler so it reads as opaque.
fn new_token(shared: &Shared, kind: &str) -> String {
    let jti = shared.jti();
    let filler = jwt::opaque(&format!("{kind} {jti}"), 36);
    jwt::base64url_encode(format!("{jti}:{filler}").as_bytes())
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
}

/// `POST /2/oauth2/token` with `grant_type=refresh_token`.
pub(crate) async fn token(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(body) = api::read_body(req.into_body()).await else {
        return oauth_error("invalid_request", "Request body too large.");
    };
    let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(&body) else {
        return oauth_error("invalid_request", "The request body is not a valid form.");
    };
    if form.grant_type.as_deref() != Some("refresh_token") {
        return oauth_error(
            "unsupported_grant_type",
            "The sandbox grants refresh_token only.",
        );
    }
    let (Some(presented), Some(client_id)) = (form.refresh_token, form.client_id) else {
        return oauth_error(
            "invalid_request",
            "Missing required parameter [refresh_token] or [client_id].",
        );
    };
    let known = shared.oauth.refresh.get(&presented).map(|i| *i);
    let Some(i) = known else {
        return if shared.oauth.client_ids.contains(&client_id) {
            invalid_grant()
        } else {
            invalid_client()
        };
    };
    let account = &shared.scenario.accounts[i];
    if account.client_id.as_deref() != Some(client_id.as_str()) {
        return invalid_client();
    }
    let state = shared.account(&account.name);
    let mut chain = state.oauth.lock().unwrap_or_else(|e| e.into_inner());
    let reused = chain.used.contains(&presented);
    if state.oauth_locked.load(Ordering::Relaxed) {
        if reused {
            state.refresh_reuses.fetch_add(1, Ordering::Relaxed);
        }
        return invalid_grant();
    }
    if let Some((last, answer)) = &chain.last
        && *last == presented
    {
        state.refresh_replays.fetch_add(1, Ordering::Relaxed);
        return token_response(answer.to_string());
    }
    if reused {
        state.refresh_reuses.fetch_add(1, Ordering::Relaxed);
        state.oauth_locked.store(true, Ordering::Relaxed);
        return invalid_grant();
    }
    let access = new_token(shared, "access");
    let refresh = new_token(shared, "refresh");
    let lifetime = account.access_lifetime_secs;
    shared.oauth.access.insert(
        access.clone(),
        AccessToken {
            account: i,
            expires_ms: shared
                .now_ms()
                .saturating_add(lifetime.saturating_mul(1000)),
        },
    );
    shared.oauth.refresh.insert(refresh.clone(), i);
    let answer: Arc<str> = json!({
        "token_type": "bearer",
        "expires_in": lifetime,
        "access_token": access,
        "scope": SCOPE,
        "refresh_token": refresh,
    })
    .to_string()
    .into();
    chain.used.insert(presented.clone());
    chain.last = Some((presented, answer.clone()));
    state.refreshes.fetch_add(1, Ordering::Relaxed);
    token_response(answer.to_string())
}

fn invalid_client() -> Response<Full<Bytes>> {
    oauth_error("invalid_client", "Missing valid authorization header")
}

fn token_response(body: String) -> Response<Full<Bytes>> {
    let mut response = api::json_response(StatusCode::OK, body);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    response
}

/// X's problem-details error body.
fn problem(status: StatusCode, title: &str, detail: &str) -> Response<Full<Bytes>> {
    api::json_response(
        status,
        json!({
            "title": title,
            "type": "about:blank",
            "status": status.as_u16(),
            "detail": detail,
        })
        .to_string(),
    )
}

fn unauthorized() -> Response<Full<Bytes>> {
    problem(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
}

fn invalid_request(message: &str) -> Response<Full<Bytes>> {
    api::json_response(
        StatusCode::BAD_REQUEST,
        json!({
            "errors": [{ "parameters": {}, "message": message }],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        })
        .to_string(),
    )
}

/// Sets the `x-rate-limit-*` headers an answer does not have yet.
fn rate_limit_headers(
    response: &mut Response<Full<Bytes>>,
    limit: u64,
    remaining: u64,
    reset: u64,
) {
    let headers = response.headers_mut();
    headers.entry("x-rate-limit-limit").or_insert(limit.into());
    headers
        .entry("x-rate-limit-remaining")
        .or_insert(remaining.into());
    headers.entry("x-rate-limit-reset").or_insert(reset.into());
}

#[derive(Deserialize)]
struct TweetInput {
    text: Option<String>,
}

/// `POST /2/tweets`
pub(crate) async fn tweet(shared: &Shared, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let limit = shared.scenario.rate_limit;
    let Some(body) = api::read_body(body).await else {
        return Ok(problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            "Request body too large",
        ));
    };
    let Some(i) = authenticate(shared, &parts.headers) else {
        // Refused before any account's window counted it.
        let mut response = unauthorized();
        rate_limit_headers(&mut response, limit, limit, api::window_end(shared));
        return Ok(response);
    };
    let account = &shared.scenario.accounts[i];
    let scripted = api::script_turn(shared, account).await?;
    let mut response = match scripted.turn {
        Turn::Post => create_tweet(shared, account, &scripted, &body),
        Turn::RateLimited { wait_ms } => {
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                "Too Many Requests",
            );
            let reset = shared.now_secs() + api::ceil_secs(wait_ms);
            rate_limit_headers(&mut response, limit, 0, reset);
            response
        }
        Turn::Fail(behaviour) => failure(behaviour),
    };
    rate_limit_headers(
        &mut response,
        limit,
        scripted.remaining(shared),
        scripted.reset,
    );
    Ok(response)
}

/// The account of a live (unexpired, unrevoked) access token.
fn authenticate(shared: &Shared, headers: &http::HeaderMap) -> Option<usize> {
    let token = api::bearer(headers)?;
    let (account, expires_ms) = {
        let issued = shared.oauth.access.get(token)?;
        (issued.account, issued.expires_ms)
    };
    let state = shared.account(&shared.scenario.accounts[account].name);
    let live = shared.now_ms() < expires_ms && !state.oauth_locked.load(Ordering::Relaxed);
    live.then_some(account)
}

fn failure(behaviour: &Behaviour) -> Response<Full<Bytes>> {
    match behaviour {
        Behaviour::InvalidToken => unauthorized(),
        Behaviour::Suspended => problem(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Your account is suspended and is not permitted to access this feature.",
        ),
        Behaviour::ValidationError { message } => invalid_request(message),
        Behaviour::ServerError {
            status,
            retry_after_secs,
        } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let title = status.canonical_reason().unwrap_or("Server Error");
            let mut response = problem(status, title, title);
            if let Some(secs) = retry_after_secs {
                response.headers_mut().insert(RETRY_AFTER, (*secs).into());
            }
            response
        }
        _ => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "Internal Server Error",
        ),
    }
}

fn create_tweet(
    shared: &Shared,
    account: &AccountScript,
    scripted: &Scripted<'_>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let Ok(input) = serde_json::from_slice::<TweetInput>(body) else {
        return invalid_request("The request body is not valid JSON.");
    };
    let Some(text) = input.text.filter(|t| !t.trim().is_empty()) else {
        return invalid_request("The `text` field must be a non-empty string.");
    };
    // The entry holds its shard's lock while the tweet is created, so two
    // concurrent requests with one text create one tweet.
    let id = match shared
        .oauth
        .texts
        .entry((account.name.clone(), text.clone()))
    {
        Entry::Occupied(_) => {
            shared.duplicates_prevented.fetch_add(1, Ordering::Relaxed);
            return problem(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "You are not allowed to create a Tweet with duplicate content.",
            );
        }
        Entry::Vacant(entry) => {
            let seq = shared.next_seq();
            let id = (shared.now_ms().saturating_sub(TWITTER_EPOCH_MS) << 22) | (seq & 0x3f_ffff);
            let id = id.to_string();
            entry.insert(id.clone());
            scripted.state.tweets.fetch_add(1, Ordering::Relaxed);
            shared.record_post(Post {
                account: account.name.clone(),
                platform: Platform::X,
                text: text.clone(),
                id: id.clone(),
                idempotency_key: None,
                rkey: None,
                media: Vec::new(),
                seq,
            });
            id
        }
    };
    api::json_response(
        StatusCode::CREATED,
        json!({ "data": { "id": id, "text": text, "edit_history_tweet_ids": [id] } }).to_string(),
    )
}
