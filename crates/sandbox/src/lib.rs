//! A Mastodon-compatible platform on loopback, with scripted failures; it
//! also speaks Bluesky's XRPC, Discord and Slack webhooks and X's OAuth 2 API.
//!
//! Start from [`Sandbox::start`]: it binds (port 0 by default), serves the
//! API subsets the orchestrator's posters use, and returns a [`Sandbox`]
//! handle with the base URL and live [`Counters`] — statuses created per
//! account and per idempotency key, requests, duplicates prevented, logins
//! and token refreshes — so a test can prove that every job was posted
//! exactly once. How each account misbehaves comes from a [`Scenario`]; its
//! accounts carry `token` (Mastodon), `handle` + `password` (Bluesky),
//! `webhook` (Discord `ID/TOKEN` or Slack `T/B/SECRET`), `client_id` +
//! `refresh_token` (OAuth 2), `access_lifetime_secs` and `session_limit`.
//!
//! Served:
//! - `POST /api/v1/statuses` — Bearer token; form or JSON body; an
//!   `Idempotency-Key` is honoured per account for the scenario's window
//!   (default one hour): a repeated key replays the first created status.
//!   `media_ids` attach the account's uploads (see [`media`]).
//! - `POST /api/v2/media` (multipart) and `GET /api/v1/media/:id` — image
//!   uploads, processed over a scripted number of polls.
//! - `GET /api/v1/accounts/verify_credentials`
//! - `POST /xrpc/com.atproto.server.createSession`, `POST
//!   /xrpc/com.atproto.server.refreshSession` (refresh JWTs are single-use),
//!   `POST /xrpc/com.atproto.repo.uploadBlob`, `POST
//!   /xrpc/com.atproto.repo.createRecord` (a repeated `rkey` is refused;
//!   `app.bsky.embed.images` must embed the account's blobs) and `GET
//!   /xrpc/com.atproto.repo.getRecord` — see [`bluesky`].
//! - `POST /api/webhooks/{id}/{token}[?wait=true]` (Discord) and
//!   `POST /services/{T}/{B}/{secret}` (Slack).
//! - `POST /2/oauth2/token` (rotating single-use refresh tokens, replay of
//!   a lost answer, lock-out on reuse) and `POST /2/tweets` (X API v2).
//! - `GET /_sandbox/counters`, `GET /_sandbox/statuses` (Mastodon) and
//!   `GET /_sandbox/posts` (every shape) for tests, `/_sandbox/huge?bytes=N`
//!   (any method) for response-size limits, and `/_sandbox/echo…` (any
//!   method and path under it) answering what arrived, headers included.
//!
//! The `script`/`then` behaviours apply to each shape's posting endpoint
//! (statuses, createRecord, webhook execute, tweets), answered in that
//! platform's error shape; `upload_script`/`upload_then` apply to uploads.
//! Every 429, whichever endpoint answered it, is counted in
//! [`Counters::rate_limited`]. Every Mastodon response carries
//! `X-RateLimit-Limit`, `-Remaining` and `-Reset`; the other shapes carry
//! their platform's rate-limit headers. Token expiry is judged by the
//! sandbox's own clock, which tests may move forward
//! ([`Sandbox::advance_clock`]). Hot paths take no global lock: per-account
//! state lives in sharded maps and totals are atomics.

mod api;
pub mod bluesky;
pub mod jwt;
pub mod media;
mod multipart;
mod oauth2;
pub mod scenario;
mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use scenario::{Behaviour, Scenario, UploadBehaviour};

/// An uploaded file, as a post carries it: a Mastodon media attachment or a
/// Bluesky image blob. Tests compare `sha256` and `description` with what
/// they sent to prove each post carries its image once, with its alt text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Attachment {
    /// The Mastodon media id, or the blob's CID.
    pub id: String,
    /// The alt text: Mastodon's `description`, Bluesky's `alt`.
    pub description: Option<String>,
    /// As uploaded: the multipart part's `Content-Type`, or the blob's.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// Of the bytes, lowercase hex.
    pub sha256: String,
    /// The multipart part's file name (Mastodon only).
    pub filename: Option<String>,
}

/// A status the sandbox created.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedStatus {
    pub id: u64,
    pub account: String,
    pub text: String,
    pub visibility: Option<String>,
    pub language: Option<String>,
    pub idempotency_key: Option<String>,
    /// Its `media_ids`, in the order given.
    #[serde(default)]
    pub media: Vec<Attachment>,
    /// The JSON body that was answered, replayed for a repeated key.
    #[serde(skip)]
    pub(crate) body: Arc<str>,
    #[serde(skip)]
    pub(crate) created: Instant,
}

/// Which platform shape a post was made through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Mastodon,
    Bluesky,
    Discord,
    Slack,
    X,
}

/// A post of any shape, as `GET /_sandbox/posts` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Post {
    pub account: String,
    pub platform: Platform,
    pub text: String,
    /// The platform's id: a Mastodon status id, a Bluesky `at://` URI, a
    /// Discord message snowflake, a Slack message timestamp or a tweet id.
    pub id: String,
    /// The Mastodon `Idempotency-Key` it was created with.
    pub idempotency_key: Option<String>,
    /// The Bluesky record key.
    pub rkey: Option<String>,
    /// Mastodon media attachments or Bluesky embedded images, in order.
    #[serde(default)]
    pub media: Vec<Attachment>,
    /// Order of creation across shapes.
    #[serde(skip)]
    pub(crate) seq: u64,
}

/// Per-account live state.
#[derive(Debug, Default)]
struct AccountState {
    /// Posting requests of any shape: the script's request numbers.
    requests: AtomicU64,
    created: AtomicU64,
    /// (window start, requests in it), for the rate-limit headers.
    window: std::sync::Mutex<(u64, u64)>,
    logins: AtomicU64,
    login_refusals: AtomicU64,
    refreshes: AtomicU64,
    refresh_reuses: AtomicU64,
    refresh_replays: AtomicU64,
    records: AtomicU64,
    webhook_messages: AtomicU64,
    tweets: AtomicU64,
    /// (window start in epoch ms, `createSession` calls in it).
    sessions: std::sync::Mutex<(u64, u64)>,
    /// Uploads of any shape: the upload script's request numbers.
    upload_requests: AtomicU64,
    /// (window start, uploads in it), for the upload rate limit.
    upload_window: std::sync::Mutex<(u64, u64)>,
    media_uploads: AtomicU64,
    blobs_uploaded: AtomicU64,
    /// The account's Mastodon uploads; a lock per account, so attaching
    /// several to one status is one step.
    media: std::sync::Mutex<media::Library>,
    /// The OAuth 2 refresh-token chain; a lock per account, taken only by
    /// the token endpoint.
    oauth: std::sync::Mutex<oauth2::OAuthChain>,
    /// Set once a refresh token was reused: every token of the account is
    /// revoked. An atomic so `POST /2/tweets` need not take `oauth`.
    oauth_locked: AtomicBool,
}

/// Everything shared by the connection tasks.
struct Shared {
    scenario: Scenario,
    /// token → index of its account in the scenario.
    by_token: std::collections::HashMap<String, usize>,
    base_url: String,
    started_epoch_ms: u64,
    next_id: AtomicU64,
    requests: AtomicU64,
    created: AtomicU64,
    duplicates_prevented: AtomicU64,
    /// 429 answers, of every endpoint.
    rate_limited: AtomicU64,
    /// Connections accepted: fewer than requests when clients keep them alive.
    connections: AtomicU64,
    /// Posting requests (statuses, records, webhook messages, tweets) being
    /// answered now, and the most there ever were.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    accounts: DashMap<String, Arc<AccountState>>,
    /// (account, idempotency key) → the status it created.
    by_key: DashMap<(String, String), CreatedStatus>,
    /// (account, idempotency key) → how many statuses it created (exactly-once
    /// means every value is 1).
    created_per_key: DashMap<(String, String), u64>,
    statuses: DashMap<u64, CreatedStatus>,
    /// Added to the wall clock: how far tests moved the sandbox's time.
    clock_offset_ms: AtomicU64,
    /// Makes every minted token unique (with `started_epoch_ms`).
    next_jti: AtomicU64,
    bluesky: bluesky::Directory,
    webhooks: webhook::WebhookIndex,
    oauth: oauth2::OAuthState,
    /// Posts of the shapes other than Mastodon, by creation order.
    posts: DashMap<u64, Post>,
}

impl Shared {
    fn account(&self, name: &str) -> Arc<AccountState> {
        if let Some(state) = self.accounts.get(name) {
            return state.clone();
        }
        self.accounts.entry(name.to_owned()).or_default().clone()
    }

    /// Milliseconds since the epoch by the sandbox's clock, which tests may
    /// have moved forward.
    fn now_ms(&self) -> u64 {
        epoch_ms(SystemTime::now()).saturating_add(self.clock_offset_ms.load(Ordering::Relaxed))
    }

    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// A token id no other token of this sandbox (or of an earlier run) has.
    fn jti(&self) -> String {
        let n = self.next_jti.fetch_add(1, Ordering::Relaxed);
        format!("{:x}-{n:x}", self.started_epoch_ms)
    }

    /// The next creation number, shared with Mastodon status ids.
    fn next_seq(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn record_post(&self, post: Post) {
        self.posts.insert(post.seq, post);
    }
}

/// One account's counters for the shapes beyond Mastodon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AccountCounters {
    /// Bluesky sessions opened.
    pub logins: u64,
    /// `createSession` calls refused: wrong password or over the limit.
    pub login_refusals: u64,
    /// Refresh tokens exchanged (Bluesky and OAuth 2).
    pub refreshes: u64,
    /// Refresh tokens presented again after use (refused).
    pub refresh_reuses: u64,
    /// OAuth 2 refresh tokens presented again while their successor was
    /// unused, answered with the same tokens.
    pub refresh_replays: u64,
    /// Bluesky records created.
    pub records: u64,
    /// Discord and Slack webhook messages.
    pub webhook_messages: u64,
    /// Tweets created.
    pub tweets: u64,
    /// Upload requests of either shape, refused ones included.
    pub upload_requests: u64,
    /// Mastodon media attachments stored.
    pub media_uploads: u64,
    /// Bluesky blobs stored.
    pub blobs_uploaded: u64,
}

impl AccountCounters {
    fn add(&mut self, other: &AccountCounters) {
        self.logins += other.logins;
        self.login_refusals += other.login_refusals;
        self.refreshes += other.refreshes;
        self.refresh_reuses += other.refresh_reuses;
        self.refresh_replays += other.refresh_replays;
        self.records += other.records;
        self.webhook_messages += other.webhook_messages;
        self.tweets += other.tweets;
        self.upload_requests += other.upload_requests;
        self.media_uploads += other.media_uploads;
        self.blobs_uploaded += other.blobs_uploaded;
    }
}

/// A snapshot of the sandbox's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counters {
    pub requests: u64,
    pub statuses_created: u64,
    pub duplicates_prevented: u64,
    /// 429 answers of every endpoint: scripted, enforced limits, session
    /// limits and uploads alike.
    #[serde(default)]
    pub rate_limited: u64,
    /// The most posting requests (of any shape) the sandbox was answering
    /// at once.
    #[serde(default)]
    pub max_in_flight: u64,
    /// TCP connections accepted.
    #[serde(default)]
    pub connections: u64,
    /// account → requests it made
    pub requests_by_account: std::collections::BTreeMap<String, u64>,
    /// account → statuses created
    pub created_by_account: std::collections::BTreeMap<String, u64>,
    /// `account/idempotency-key` → statuses created with that key
    pub created_by_idempotency_key: std::collections::BTreeMap<String, u64>,
    /// Totals across accounts of the per-account counters below.
    #[serde(default)]
    pub logins: u64,
    #[serde(default)]
    pub login_refusals: u64,
    #[serde(default)]
    pub refreshes: u64,
    #[serde(default)]
    pub refresh_reuses: u64,
    #[serde(default)]
    pub refresh_replays: u64,
    #[serde(default)]
    pub records: u64,
    #[serde(default)]
    pub webhook_messages: u64,
    #[serde(default)]
    pub tweets: u64,
    #[serde(default)]
    pub upload_requests: u64,
    #[serde(default)]
    pub media_uploads: u64,
    #[serde(default)]
    pub blobs_uploaded: u64,
    /// account → its logins, refreshes, records, webhook messages, tweets,
    /// uploads
    #[serde(default)]
    pub accounts: std::collections::BTreeMap<String, AccountCounters>,
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    addr: SocketAddr,
    url: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("url", &self.url).finish()
    }
}

impl Sandbox {
    /// Binds `addr` (use port 0 for a free port) and starts serving.
    pub async fn start(scenario: Scenario, addr: SocketAddr) -> std::io::Result<Sandbox> {
        Self::start_with(scenario, addr, None).await
    }

    /// Starts on `127.0.0.1` with a free port, speaking HTTPS with a fresh
    /// self-signed certificate for `localhost`; returns the certificate (PEM)
    /// for clients to trust. The URL is `https://localhost:PORT`.
    pub async fn start_local_tls(scenario: Scenario) -> std::io::Result<(Sandbox, String)> {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let certified = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
        let cert_pem = certified.cert.pem();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .map_err(std::io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let sandbox = Self::start_with(scenario, addr, Some(acceptor)).await?;
        Ok((sandbox, cert_pem))
    }

    async fn start_with(
        scenario: Scenario,
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let url = match tls {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let by_token = scenario
            .accounts
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((a.token()?.to_owned(), i)))
            .collect();
        let started_epoch_ms = epoch_ms(SystemTime::now());
        let shared = Arc::new(Shared {
            bluesky: bluesky::Directory::new(&scenario),
            webhooks: webhook::WebhookIndex::new(&scenario),
            oauth: oauth2::OAuthState::new(&scenario),
            scenario,
            by_token,
            base_url: url.clone(),
            started_epoch_ms,
            next_id: AtomicU64::new(1),
            requests: AtomicU64::new(0),
            created: AtomicU64::new(0),
            duplicates_prevented: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            accounts: DashMap::new(),
            by_key: DashMap::new(),
            created_per_key: DashMap::new(),
            statuses: DashMap::new(),
            clock_offset_ms: AtomicU64::new(0),
            next_jti: AtomicU64::new(0),
            posts: DashMap::new(),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, shared.clone(), stopped, tls));
        Ok(Sandbox {
            addr,
            url,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// Starts on `127.0.0.1` with a free port.
    pub async fn start_local(scenario: Scenario) -> std::io::Result<Sandbox> {
        Self::start(scenario, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// The scenario it serves.
    pub fn scenario(&self) -> &Scenario {
        &self.shared.scenario
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn counters(&self) -> Counters {
        counters(&self.shared)
    }

    /// Every status created so far, by id.
    pub fn statuses(&self) -> Vec<CreatedStatus> {
        statuses(&self.shared)
    }

    /// Every post of every shape so far, in the order they were created.
    pub fn posts(&self) -> Vec<Post> {
        posts(&self.shared)
    }

    /// Every access and refresh token the sandbox issued (Bluesky sessions
    /// and OAuth 2), so a test can look for them where they must not be.
    pub fn issued_tokens(&self) -> Vec<String> {
        let mut tokens = self.shared.bluesky.issued_tokens();
        tokens.extend(self.shared.oauth.issued_tokens());
        tokens
    }

    /// Moves the sandbox's clock forward: tokens expire and session windows
    /// pass without a test having to sleep.
    pub fn advance_clock(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.shared.clock_offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Goes down as a platform does: open connections are cut and new ones
    /// refused (the port is closed). What it remembers (statuses,
    /// idempotency keys, counters) stays for [`Sandbox::come_back`].
    pub async fn go_down(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves again on the same address (plain HTTP), remembering what it
    /// did before it went down.
    pub async fn come_back(&mut self) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        let (stop, stopped) = watch::channel(false);
        self.stop = stop;
        self.task = Some(tokio::spawn(serve(
            listener,
            self.shared.clone(),
            stopped,
            None,
        )));
        Ok(())
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn counters(shared: &Shared) -> Counters {
    let accounts: std::collections::BTreeMap<String, AccountCounters> = shared
        .accounts
        .iter()
        .map(|e| {
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            let counters = AccountCounters {
                logins: load(&e.logins),
                login_refusals: load(&e.login_refusals),
                refreshes: load(&e.refreshes),
                refresh_reuses: load(&e.refresh_reuses),
                refresh_replays: load(&e.refresh_replays),
                records: load(&e.records),
                webhook_messages: load(&e.webhook_messages),
                tweets: load(&e.tweets),
                upload_requests: load(&e.upload_requests),
                media_uploads: load(&e.media_uploads),
                blobs_uploaded: load(&e.blobs_uploaded),
            };
            (e.key().clone(), counters)
        })
        .collect();
    let mut total = AccountCounters::default();
    for counters in accounts.values() {
        total.add(counters);
    }
    Counters {
        requests: shared.requests.load(Ordering::Relaxed),
        statuses_created: shared.created.load(Ordering::Relaxed),
        duplicates_prevented: shared.duplicates_prevented.load(Ordering::Relaxed),
        rate_limited: shared.rate_limited.load(Ordering::Relaxed),
        max_in_flight: shared.max_in_flight.load(Ordering::Relaxed),
        connections: shared.connections.load(Ordering::Relaxed),
        requests_by_account: shared
            .accounts
            .iter()
            .map(|e| (e.key().clone(), e.requests.load(Ordering::Relaxed)))
            .collect(),
        created_by_account: shared
            .accounts
            .iter()
            .map(|e| (e.key().clone(), e.created.load(Ordering::Relaxed)))
            .collect(),
        created_by_idempotency_key: shared
            .created_per_key
            .iter()
            .map(|e| (format!("{}/{}", e.key().0, e.key().1), *e.value()))
            .collect(),
        logins: total.logins,
        login_refusals: total.login_refusals,
        refreshes: total.refreshes,
        refresh_reuses: total.refresh_reuses,
        refresh_replays: total.refresh_replays,
        records: total.records,
        webhook_messages: total.webhook_messages,
        tweets: total.tweets,
        upload_requests: total.upload_requests,
        media_uploads: total.media_uploads,
        blobs_uploaded: total.blobs_uploaded,
        accounts,
    }
}

fn posts(shared: &Shared) -> Vec<Post> {
    let mastodon = shared.statuses.iter().map(|e| {
        let status = e.value();
        Post {
            account: status.account.clone(),
            platform: Platform::Mastodon,
            text: status.text.clone(),
            id: status.id.to_string(),
            idempotency_key: status.idempotency_key.clone(),
            rkey: None,
            media: status.media.clone(),
            seq: status.id - shared.started_epoch_ms * 1000,
        }
    });
    let mut all: Vec<Post> = mastodon
        .chain(shared.posts.iter().map(|e| e.value().clone()))
        .collect();
    all.sort_by_key(|p| p.seq);
    all
}

fn statuses(shared: &Shared) -> Vec<CreatedStatus> {
    let mut all: Vec<CreatedStatus> = shared.statuses.iter().map(|e| e.value().clone()).collect();
    all.sort_by_key(|s| s.id);
    all
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let (stream, _) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let stopped = stopped.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, shared, stopped).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => serve_connection(stream, shared, stopped).await,
                    Err(e) => tracing::debug!("TLS handshake failed: {e}"),
                },
            }
        });
    }
}

async fn serve_connection<IO>(io: IO, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| api::handle(shared.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::select! {
        // A service error (scripted `drop-connection`) closes the
        // connection without a response, which is the point.
        _ = conn => {}
        _ = stopped.changed() => {}
    }
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
