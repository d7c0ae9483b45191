//! Bluesky's XRPC subset: sessions with JWT-shaped tokens, blobs, and posts
//! as `app.bsky.feed.post` records.
//!
//! The key type is [`Directory`]: the scenario's handles and their DIDs, every
//! token the sandbox issued (with the expiry it recorded, which is what
//! counts, not the token's text), every blob uploaded and every record
//! created. Errors have XRPC's shape, `{"error": Name, "message": text}`.
//!
//! Blobs are checked where a PDS checks them: `uploadBlob` takes any type
//! up to the scenario's `blob_upload_limit` (413 `PayloadTooLarge` past
//! it), and a post's `app.bsky.embed.images` is refused if an image is not
//! a blob of the account (`BlobNotFound`), is over the lexicon's 1,000,000
//! bytes (`BlobTooLarge`) or is not `image/*` (`InvalidMimeType`), all 400.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use http::header::{HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use sha2::{Digest, Sha256};

use crate::api::{self, Reply, Scripted, Turn, UploadTurn};
use crate::jwt::{self, Claims};
use crate::scenario::{AccountScript, Behaviour, Scenario};
use crate::{Attachment, Platform, Post, Shared, media, multipart};

const POST_COLLECTION: &str = "app.bsky.feed.post";
/// Refresh JWTs live about as long as Bluesky's (90 days).
const REFRESH_LIFETIME_SECS: u64 = 90 * 24 * 3600;
/// `session_limit` counts `createSession` calls in windows this long.
const SESSION_WINDOW_SECS: u64 = 300;
/// Bluesky counts graphemes; characters are close enough for a sandbox.
const MAX_TEXT_CHARS: usize = 300;
const IMAGES_EMBED: &str = "app.bsky.embed.images";
/// `app.bsky.embed.images`' `maxSize` for an image blob, and its
/// `maxLength` for the images of a post.
const MAX_IMAGE_BYTES: u64 = 1_000_000;
const MAX_IMAGES: usize = 4;

/// The DID the sandbox gives a handle: `did:plc:` and 24 base32 characters
/// derived from the handle (case-insensitively, as handles are).
pub fn did_of(handle: &str) -> String {
    let handle = handle.to_ascii_lowercase();
    let mut bytes = Vec::with_capacity(16);
    for salt in 0..2u8 {
        let mut input = handle.as_bytes().to_vec();
        input.push(salt);
        bytes.extend_from_slice(&jwt::fnv1a(&input).to_be_bytes());
    }
    let mut did = String::from("did:plc:");
    did.push_str(&base32(&bytes, LOWER_BASE32)[..24]);
    did
}

/// A token the sandbox issued.
#[derive(Debug)]
pub(crate) struct IssuedJwt {
    account: usize,
    refresh: bool,
    /// Its `exp` claim, epoch seconds.
    exp: u64,
    /// Refresh JWTs are single-use: revoked once exchanged.
    revoked: bool,
}

/// A blob as its uploader stored it.
#[derive(Debug, Clone)]
struct Blob {
    mime_type: String,
    size: u64,
    /// Of the bytes, lowercase hex.
    sha256: String,
}

#[derive(Debug)]
struct Record {
    uri: String,
    cid: String,
    value: serde_json::Value,
}

/// Who the Bluesky accounts are, what was issued to them, and their records.
#[derive(Debug)]
pub struct Directory {
    /// Lowercase handle or DID → account index.
    by_identifier: HashMap<String, usize>,
    /// Account index → its DID (accounts without a handle have none).
    dids: Vec<Option<String>>,
    tokens: DashMap<String, IssuedJwt>,
    /// (DID, record key) → the record.
    records: DashMap<(String, String), Record>,
    /// (account index, CID) → the blob: a post may embed only its own
    /// account's blobs.
    blobs: DashMap<(usize, String), Blob>,
    /// The last record key handed out, so generated keys never repeat.
    last_tid: AtomicU64,
}

impl Directory {
    /// Every access and refresh JWT it issued.
    pub(crate) fn issued_tokens(&self) -> Vec<String> {
        self.tokens.iter().map(|e| e.key().clone()).collect()
    }

    pub(crate) fn new(scenario: &Scenario) -> Self {
        let dids: Vec<Option<String>> = scenario
            .accounts
            .iter()
            .map(|a| a.handle.as_deref().map(did_of))
            .collect();
        let mut by_identifier = HashMap::new();
        for (i, account) in scenario.accounts.iter().enumerate() {
            if let (Some(handle), Some(did)) = (&account.handle, &dids[i]) {
                by_identifier.insert(handle.to_ascii_lowercase(), i);
                by_identifier.insert(did.clone(), i);
            }
        }
        Directory {
            by_identifier,
            dids,
            tokens: DashMap::new(),
            records: DashMap::new(),
            blobs: DashMap::new(),
            last_tid: AtomicU64::new(0),
        }
    }

    /// The account a handle (with or without `@`) or DID names.
    fn lookup(&self, identifier: &str) -> Option<usize> {
        let identifier = identifier.trim().trim_start_matches('@');
        self.by_identifier
            .get(&identifier.to_ascii_lowercase())
            .copied()
    }

    /// A fresh record key in the shape of Bluesky's TIDs: 13 characters of
    /// sortable base32 over microseconds, strictly increasing.
    fn next_tid(&self, now_ms: u64) -> String {
        let candidate = now_ms.saturating_mul(1000) << 10;
        let previous = self
            .last_tid
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(candidate.max(last.saturating_add(1)))
            })
            .unwrap_or(0);
        let tid = candidate.max(previous.saturating_add(1)) & (u64::MAX >> 1);
        (0..13)
            .rev()
            .map(|i| SORTABLE_BASE32[((tid >> (5 * i)) & 31) as usize] as char)
            .collect()
    }
}

fn xrpc_error(status: StatusCode, error: &str, message: &str) -> Response<Full<Bytes>> {
    api::json_response(
        status,
        json!({ "error": error, "message": message }).to_string(),
    )
}

fn bad_request(message: &str) -> Response<Full<Bytes>> {
    xrpc_error(StatusCode::BAD_REQUEST, "InvalidRequest", message)
}

fn authentication_required() -> Response<Full<Bytes>> {
    xrpc_error(
        StatusCode::UNAUTHORIZED,
        "AuthenticationRequired",
        "Authentication Required",
    )
}

fn bad_token() -> Response<Full<Bytes>> {
    xrpc_error(StatusCode::UNAUTHORIZED, "InvalidToken", "Bad token")
}

fn too_large() -> Response<Full<Bytes>> {
    xrpc_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PayloadTooLarge",
        "request entity too large",
    )
}

/// Adds `RateLimit-*` headers unless the answer already has them.
fn rate_limit_headers(
    response: &mut Response<Full<Bytes>>,
    limit: u64,
    remaining: u64,
    reset: u64,
    window_secs: u64,
) {
    let headers = response.headers_mut();
    headers.entry("ratelimit-limit").or_insert(limit.into());
    headers
        .entry("ratelimit-remaining")
        .or_insert(remaining.into());
    headers.entry("ratelimit-reset").or_insert(reset.into());
    if let Ok(policy) = HeaderValue::from_str(&format!("{limit};w={window_secs}")) {
        headers.entry("ratelimit-policy").or_insert(policy);
    }
}

/// Mints an access and a refresh JWT for account `i` and records both.
fn issue_session(shared: &Shared, i: usize) -> Response<Full<Bytes>> {
    let account = &shared.scenario.accounts[i];
    let did = shared.bluesky.dids[i].clone().unwrap_or_default();
    // Whole seconds, rounded up, so the recorded expiry is the `exp` claim
    // and a token lives at least its full lifetime.
    let iat = shared.now_ms().div_ceil(1000);
    let mint = |scope: &str, typ: &str, lifetime: u64| {
        let claims = Claims {
            scope: scope.to_owned(),
            sub: did.clone(),
            iat,
            exp: iat.saturating_add(lifetime),
            jti: shared.jti(),
        };
        let token = jwt::mint(typ, &claims);
        shared.bluesky.tokens.insert(
            token.clone(),
            IssuedJwt {
                account: i,
                refresh: typ == "refresh+jwt",
                exp: claims.exp,
                revoked: false,
            },
        );
        token
    };
    let access = mint("com.atproto.access", "at+jwt", account.access_lifetime_secs);
    let refresh = mint("com.atproto.refresh", "refresh+jwt", REFRESH_LIFETIME_SECS);
    api::json_response(
        StatusCode::OK,
        json!({
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": account.handle,
            "did": did,
        })
        .to_string(),
    )
}

#[derive(Deserialize)]
struct Login {
    identifier: String,
    password: String,
}

/// `com.atproto.server.createSession`: a handle and password open a session,
/// at most `session_limit` times per account in 300 s.
pub(crate) async fn create_session(
    shared: &Shared,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let Some(body) = api::read_body(req.into_body()).await else {
        return too_large();
    };
    let Ok(login) = serde_json::from_slice::<Login>(&body) else {
        return bad_request("Input must have the properties \"identifier\" and \"password\"");
    };
    let Some(i) = shared.bluesky.lookup(&login.identifier) else {
        return invalid_login();
    };
    let account = &shared.scenario.accounts[i];
    let state = shared.account(&account.name);
    let now_ms = shared.now_ms();
    let (calls, window_start) = {
        let mut w = state.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if w.1 == 0 || now_ms >= w.0 + SESSION_WINDOW_SECS * 1000 {
            *w = (now_ms, 0);
        }
        w.1 += 1;
        (w.1, w.0)
    };
    let limit = account.session_limit;
    let mut response = if calls > limit {
        state.login_refusals.fetch_add(1, Ordering::Relaxed);
        xrpc_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimitExceeded",
            "Rate Limit Exceeded",
        )
    } else if account.password.as_deref() != Some(login.password.as_str()) {
        state.login_refusals.fetch_add(1, Ordering::Relaxed);
        invalid_login()
    } else {
        state.logins.fetch_add(1, Ordering::Relaxed);
        issue_session(shared, i)
    };
    let reset = (window_start + SESSION_WINDOW_SECS * 1000).div_ceil(1000);
    rate_limit_headers(
        &mut response,
        limit,
        limit.saturating_sub(calls),
        reset,
        SESSION_WINDOW_SECS,
    );
    response
}

fn invalid_login() -> Response<Full<Bytes>> {
    xrpc_error(
        StatusCode::UNAUTHORIZED,
        "AuthenticationRequired",
        "Invalid identifier or password",
    )
}

/// `com.atproto.server.refreshSession`: a refresh JWT buys a new pair, once.
pub(crate) async fn refresh_session(
    shared: &Shared,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    if api::read_body(body).await.is_none() {
        return too_large();
    }
    let Some(token) = api::bearer(&parts.headers) else {
        return authentication_required();
    };
    let now = shared.now_ms();
    let (account, outcome) = {
        // The entry's lock makes check-and-revoke one step: of two
        // concurrent refreshes with one token, exactly one wins.
        let Some(mut issued) = shared.bluesky.tokens.get_mut(token) else {
            return bad_token();
        };
        if !issued.refresh {
            return bad_token();
        }
        let outcome = if issued.revoked {
            Err("Token has been revoked")
        } else if now >= issued.exp.saturating_mul(1000) {
            Err("Token has expired")
        } else {
            issued.revoked = true;
            Ok(())
        };
        (issued.account, outcome)
    };
    let state = shared.account(&shared.scenario.accounts[account].name);
    match outcome {
        Ok(()) => {
            state.refreshes.fetch_add(1, Ordering::Relaxed);
            issue_session(shared, account)
        }
        Err(message) => {
            if message == "Token has been revoked" {
                state.refresh_reuses.fetch_add(1, Ordering::Relaxed);
            }
            xrpc_error(StatusCode::BAD_REQUEST, "ExpiredToken", message)
        }
    }
}

#[derive(Deserialize)]
struct CreateRecord {
    repo: String,
    collection: String,
    rkey: Option<String>,
    record: serde_json::Value,
}

/// `com.atproto.repo.createRecord`: posts, scripted like every posting
/// endpoint; a record key that exists already is refused.
pub(crate) async fn create_record(shared: &Shared, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let limit = shared.scenario.rate_limit;
    let window = shared.scenario.rate_limit_window_secs.max(1);
    let Some(body) = api::read_body(body).await else {
        return Ok(too_large());
    };
    let i = match authenticate(shared, &parts.headers) {
        Ok(i) => i,
        Err(refusal) => {
            let mut response = refusal.response();
            // Refused before any account's window counted it.
            rate_limit_headers(&mut response, limit, limit, api::window_end(shared), window);
            return Ok(response);
        }
    };
    let account = &shared.scenario.accounts[i];
    let scripted = api::script_turn(shared, account).await?;
    let mut response = match scripted.turn {
        Turn::Post => post_record(shared, i, account, &scripted, &body),
        Turn::RateLimited { wait_ms } => {
            let mut response = xrpc_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimitExceeded",
                "Rate Limit Exceeded",
            );
            let reset = shared.now_secs() + api::ceil_secs(wait_ms);
            rate_limit_headers(&mut response, limit, 0, reset, window);
            response
        }
        Turn::Fail(behaviour) => failure(behaviour),
    };
    let remaining = scripted.remaining(shared);
    rate_limit_headers(&mut response, limit, remaining, scripted.reset, window);
    Ok(response)
}

/// `com.atproto.repo.uploadBlob`: the raw body is the blob, its
/// `Content-Type` the blob's type. Scripted from the account's upload
/// script and limited by its upload window.
pub(crate) async fn upload_blob(shared: &Shared, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let limit = shared.scenario.upload_rate_limit;
    let window = shared.scenario.upload_rate_limit_window_secs.max(1);
    let Some(body) =
        api::read_upload(&parts.headers, body, shared.scenario.blob_upload_limit).await
    else {
        return Ok(too_large());
    };
    let i = match authenticate(shared, &parts.headers) {
        Ok(i) => i,
        Err(refusal) => {
            let mut response = refusal.response();
            // Refused before any account's window counted it.
            let reset = (shared.now_secs() / window + 1) * window;
            rate_limit_headers(&mut response, limit, limit, reset, window);
            return Ok(response);
        }
    };
    let account = &shared.scenario.accounts[i];
    let scripted = api::upload_turn(shared, &account.name, Some(account)).await?;
    let mime_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(multipart::essence)
        .filter(|m| !m.is_empty());
    let mut response = match scripted.turn {
        UploadTurn::Store { .. } => match mime_type {
            Some(mime_type) => store_blob(shared, i, &scripted.state, mime_type, &body),
            None => bad_request("Request encoding (Content-Type) required but not provided"),
        },
        UploadTurn::TooLarge => too_large(),
        UploadTurn::UnsupportedType => wrong_type(mime_type.as_deref().unwrap_or("")),
        UploadTurn::RateLimited { wait_ms } => {
            let mut response = xrpc_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimitExceeded",
                "Rate Limit Exceeded",
            );
            let reset = shared.now_secs() + api::ceil_secs(wait_ms);
            rate_limit_headers(&mut response, limit, 0, reset, window);
            response
        }
        UploadTurn::Fail(behaviour) => failure(behaviour),
    };
    let remaining = scripted.remaining(shared);
    rate_limit_headers(&mut response, limit, remaining, scripted.reset, window);
    Ok(response)
}

fn store_blob(
    shared: &Shared,
    i: usize,
    state: &crate::AccountState,
    mime_type: String,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let digest = Sha256::digest(body);
    let cid = blob_cid(&digest);
    let size = body.len() as u64;
    let blob = Blob {
        mime_type: mime_type.clone(),
        size,
        sha256: media::hex(&digest),
    };
    shared.bluesky.blobs.insert((i, cid.clone()), blob);
    state.blobs_uploaded.fetch_add(1, Ordering::Relaxed);
    api::json_response(
        StatusCode::OK,
        json!({
            "blob": {
                "$type": "blob",
                "ref": { "$link": cid },
                "mimeType": mime_type,
                "size": size,
            }
        })
        .to_string(),
    )
}

fn wrong_type(mime_type: &str) -> Response<Full<Bytes>> {
    let (error, message) = wrong_type_error(mime_type);
    xrpc_error(StatusCode::BAD_REQUEST, error, &message)
}

fn wrong_type_error(mime_type: &str) -> (&'static str, String) {
    (
        "InvalidMimeType",
        format!("Wrong type of file. It is {mime_type} but it must match image/*."),
    )
}

/// The images of a post's `app.bsky.embed.images` (none for any other
/// embed), each a blob of account `i` that the lexicon allows; refused as
/// a PDS refuses them, with a 400's error name and message.
fn embedded_images(
    shared: &Shared,
    i: usize,
    record: &serde_json::Value,
) -> Result<Vec<Attachment>, (&'static str, String)> {
    let invalid = |message: String| ("InvalidRequest", message);
    let Some(embed) = record.get("embed") else {
        return Ok(Vec::new());
    };
    if embed.get("$type").and_then(|t| t.as_str()) != Some(IMAGES_EMBED) {
        return Ok(Vec::new());
    }
    let Some(images) = embed.get("images").and_then(|i| i.as_array()) else {
        return Err(invalid("Record/embed/images must be an array".into()));
    };
    if images.len() > MAX_IMAGES {
        return Err(invalid(format!(
            "Record/embed/images must not have more than {MAX_IMAGES} elements"
        )));
    }
    let mut attachments = Vec::with_capacity(images.len());
    for (n, image) in images.iter().enumerate() {
        let Some(alt) = image.get("alt").and_then(|a| a.as_str()) else {
            return Err(invalid(format!(
                "Record/embed/images/{n} must have the property \"alt\""
            )));
        };
        let blob = image.get("image");
        let field = |name: &str| blob.and_then(|b| b.get(name));
        let cid = field("ref")
            .and_then(|r| r.get("$link"))
            .and_then(|l| l.as_str());
        let mime_type = field("mimeType").and_then(|m| m.as_str());
        let size = field("size").and_then(|s| s.as_u64());
        let (Some("blob"), Some(cid), Some(mime_type), Some(_)) = (
            field("$type").and_then(|t| t.as_str()),
            cid,
            mime_type,
            size,
        ) else {
            return Err(invalid(format!(
                "Record/embed/images/{n}/image should be a blob ref"
            )));
        };
        let Some(stored) = shared
            .bluesky
            .blobs
            .get(&(i, cid.to_owned()))
            .map(|b| b.clone())
        else {
            return Err(("BlobNotFound", format!("Could not find blob: {cid}")));
        };
        if stored.size > MAX_IMAGE_BYTES {
            return Err((
                "BlobTooLarge",
                format!(
                    "This file is too large. It is {} but the maximum size is {}.",
                    pretty_size(stored.size),
                    pretty_size(MAX_IMAGE_BYTES)
                ),
            ));
        }
        if stored.mime_type != mime_type {
            return Err((
                "InvalidMimeType",
                format!(
                    "Referenced Mimetype does not match stored blob. Expected: {}, Got: {mime_type}",
                    stored.mime_type
                ),
            ));
        }
        if !mime_type.starts_with("image/") {
            return Err(wrong_type_error(mime_type));
        }
        attachments.push(Attachment {
            id: cid.to_owned(),
            description: Some(alt.to_owned()),
            content_type: stored.mime_type,
            size: stored.size,
            sha256: stored.sha256,
            filename: None,
        });
    }
    Ok(attachments)
}

/// Why a request's access JWT was refused.
enum Refusal {
    Missing,
    Bad,
    Expired,
}

impl Refusal {
    fn response(&self) -> Response<Full<Bytes>> {
        match self {
            Refusal::Missing => authentication_required(),
            Refusal::Bad => bad_token(),
            Refusal::Expired => {
                xrpc_error(StatusCode::BAD_REQUEST, "ExpiredToken", "Token has expired")
            }
        }
    }
}

/// The account whose live access JWT the request carries.
fn authenticate(shared: &Shared, headers: &http::HeaderMap) -> Result<usize, Refusal> {
    let token = api::bearer(headers).ok_or(Refusal::Missing)?;
    let issued = shared.bluesky.tokens.get(token).ok_or(Refusal::Bad)?;
    if issued.refresh || issued.revoked {
        return Err(Refusal::Bad);
    }
    if shared.now_ms() >= issued.exp.saturating_mul(1000) {
        return Err(Refusal::Expired);
    }
    Ok(issued.account)
}

/// A scripted failure in XRPC's shape.
fn failure(behaviour: &Behaviour) -> Response<Full<Bytes>> {
    match behaviour {
        Behaviour::InvalidToken => bad_token(),
        Behaviour::Suspended => xrpc_error(
            StatusCode::BAD_REQUEST,
            "AccountTakedown",
            "Account has been taken down",
        ),
        Behaviour::ValidationError { message } => bad_request(message),
        Behaviour::ServerError {
            status,
            retry_after_secs,
        } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = xrpc_error(status, "InternalServerError", "Internal Server Error");
            if let Some(secs) = retry_after_secs {
                response.headers_mut().insert(RETRY_AFTER, (*secs).into());
            }
            response
        }
        // `script_turn` turns the others into `Post` or `RateLimited`.
        _ => xrpc_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal Server Error",
        ),
    }
}

fn post_record(
    shared: &Shared,
    i: usize,
    account: &AccountScript,
    scripted: &Scripted<'_>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let input: CreateRecord = match serde_json::from_slice(body) {
        Ok(input) => input,
        Err(e) => return bad_request(&format!("Invalid input: {e}")),
    };
    let directory = &shared.bluesky;
    if directory.lookup(&input.repo) != Some(i) {
        return bad_request("Input/repo must be the DID or handle of the session's account");
    }
    if input.collection != POST_COLLECTION {
        return bad_request(&format!("Unsupported collection: {}", input.collection));
    }
    let record = &input.record;
    if record.get("$type").and_then(|t| t.as_str()) != Some(POST_COLLECTION) {
        return bad_request("Invalid $type: expected app.bsky.feed.post");
    }
    let images = match embedded_images(shared, i, record) {
        Ok(images) => images,
        Err((error, message)) => return xrpc_error(StatusCode::BAD_REQUEST, error, &message),
    };
    // A post of images alone may have empty text.
    let Some(text) = record
        .get("text")
        .and_then(|t| t.as_str())
        .filter(|t| !t.trim().is_empty() || !images.is_empty())
    else {
        return bad_request("Record/text must be a non-empty string");
    };
    if text.chars().count() > MAX_TEXT_CHARS {
        return bad_request("Record/text must not be longer than 300 graphemes");
    }
    if !record.get("createdAt").is_some_and(|c| c.is_string()) {
        return bad_request("Record must have the property \"createdAt\"");
    }
    let rkey = match input.rkey {
        Some(rkey) if !valid_rkey(&rkey) => return bad_request("Invalid record key"),
        Some(rkey) => rkey,
        None => directory.next_tid(shared.now_ms()),
    };
    let did = directory.dids[i].clone().unwrap_or_default();
    let uri = format!("at://{did}/{POST_COLLECTION}/{rkey}");
    let cid = cid_of(&uri, text);
    // The entry holds its shard's lock while the record is created, so two
    // concurrent requests with one key create one record.
    match directory.records.entry((did, rkey.clone())) {
        Entry::Occupied(_) => {
            shared.duplicates_prevented.fetch_add(1, Ordering::Relaxed);
            bad_request("Record already exists")
        }
        Entry::Vacant(entry) => {
            entry.insert(Record {
                uri: uri.clone(),
                cid: cid.clone(),
                value: input.record.clone(),
            });
            scripted.state.records.fetch_add(1, Ordering::Relaxed);
            shared.record_post(Post {
                account: account.name.clone(),
                platform: Platform::Bluesky,
                text: text.to_owned(),
                id: uri.clone(),
                idempotency_key: None,
                rkey: Some(rkey),
                media: images,
                seq: shared.next_seq(),
            });
            api::json_response(
                StatusCode::OK,
                json!({ "uri": uri, "cid": cid }).to_string(),
            )
        }
    }
}

/// atproto's record-key syntax: 1–512 characters of `A-Za-z0-9._:~-`, not
/// `.` or `..`.
fn valid_rkey(rkey: &str) -> bool {
    (1..=512).contains(&rkey.len())
        && rkey != "."
        && rkey != ".."
        && rkey
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:~-".contains(&b))
}

/// A CID-looking string (`bafyrei…`, 59 characters) derived from the record.
fn cid_of(uri: &str, text: &str) -> String {
    let mut bytes = Vec::with_capacity(32);
    for salt in 0..4u8 {
        let mut input = format!("{uri}\n{text}").into_bytes();
        input.push(salt);
        bytes.extend_from_slice(&jwt::fnv1a(&input).to_be_bytes());
    }
    format!("bafyrei{}", &base32(&bytes, LOWER_BASE32)[..52])
}

#[derive(Deserialize)]
struct GetRecord {
    repo: Option<String>,
    collection: Option<String>,
    rkey: Option<String>,
}

/// `com.atproto.repo.getRecord`, without authentication as on Bluesky.
pub(crate) fn get_record(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let query = req.uri().query().unwrap_or("");
    let Ok(params) = serde_urlencoded::from_str::<GetRecord>(query) else {
        return bad_request("Invalid query");
    };
    let (Some(repo), Some(collection), Some(rkey)) = (params.repo, params.collection, params.rkey)
    else {
        return bad_request(
            "Params must have the properties \"repo\", \"collection\" and \"rkey\"",
        );
    };
    let directory = &shared.bluesky;
    let did = directory
        .lookup(&repo)
        .and_then(|i| directory.dids[i].clone())
        .unwrap_or(repo);
    let uri = format!("at://{did}/{collection}/{rkey}");
    let found = (collection == POST_COLLECTION)
        .then(|| directory.records.get(&(did, rkey)))
        .flatten();
    match found {
        Some(record) => api::json_response(
            StatusCode::OK,
            json!({ "uri": record.uri, "cid": record.cid, "value": record.value }).to_string(),
        ),
        None => xrpc_error(
            StatusCode::BAD_REQUEST,
            "RecordNotFound",
            &format!("Could not locate record: {uri}"),
        ),
    }
}

/// A blob's CID as a PDS computes it: CIDv1, raw codec, SHA-256, in
/// multibase base32 (`bafkrei…`).
fn blob_cid(sha256: &[u8]) -> String {
    let mut bytes = vec![0x01, 0x55, 0x12, 0x20];
    bytes.extend_from_slice(sha256);
    format!("b{}", base32(&bytes, LOWER_BASE32))
}

/// A size as the PDS's `bytes` package writes it: `976.56KB`, `1.14MB`.
fn pretty_size(bytes: u64) -> String {
    let (value, unit) = match bytes {
        b if b >= 1 << 30 => (b as f64 / f64::from(1u32 << 30), "GB"),
        b if b >= 1 << 20 => (b as f64 / f64::from(1u32 << 20), "MB"),
        b if b >= 1 << 10 => (b as f64 / 1024.0, "KB"),
        b => return format!("{b}B"),
    };
    let text = format!("{value:.2}");
    format!("{}{unit}", text.trim_end_matches('0').trim_end_matches('.'))
}

/// RFC 4648 base32, lowercase: DIDs' and CIDs' alphabet.
const LOWER_BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// The alphabet of Bluesky's TIDs, in ASCII order so keys sort by time.
const SORTABLE_BASE32: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

fn base32(bytes: &[u8], alphabet: &[u8; 32]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut bits, mut count) = (0u32, 0u32);
    for &b in bytes {
        bits = (bits << 8) | u32::from(b);
        count += 8;
        while count >= 5 {
            count -= 5;
            out.push(alphabet[((bits >> count) & 31) as usize] as char);
        }
        bits &= (1 << count) - 1;
    }
    if count > 0 {
        out.push(alphabet[((bits << (5 - count)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dids_are_stable_and_case_insensitive() {
        let did = did_of("Alice.bsky.test");
        assert_eq!(did, did_of("alice.bsky.test"));
        assert_eq!(did.len(), "did:plc:".len() + 24);
        assert_ne!(did, did_of("bob.bsky.test"));
    }

    #[test]
    fn generated_record_keys_are_valid_increasing_and_unique() {
        let directory = Directory::new(&Scenario::default());
        let keys: Vec<String> = (0..100)
            .map(|_| directory.next_tid(1_700_000_000_000))
            .collect();
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        assert!(keys.iter().all(|k| k.len() == 13 && valid_rkey(k)));
        assert!(!valid_rkey("..") && !valid_rkey("a/b") && !valid_rkey(""));
    }

    #[test]
    fn blob_cids_are_real_cids() {
        // The CID of the empty blob, as any IPFS implementation computes it.
        let empty = Sha256::digest(b"");
        assert_eq!(
            blob_cid(&empty),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
    }

    #[test]
    fn sizes_read_as_a_pds_writes_them() {
        assert_eq!(pretty_size(MAX_IMAGE_BYTES), "976.56KB");
        assert_eq!(pretty_size(1_200_000), "1.14MB");
        assert_eq!(pretty_size(1 << 20), "1MB");
        assert_eq!(pretty_size(12), "12B");
    }

    #[test]
    fn cids_look_like_cids() {
        let cid = cid_of("at://did:plc:x/app.bsky.feed.post/1", "hi");
        assert!(cid.starts_with("bafyrei") && cid.len() == 59, "{cid}");
    }
}
