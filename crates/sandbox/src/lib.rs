//! A Mastodon-compatible platform on loopback, with scripted failures.
//!
//! Start from [`Sandbox::start`]: it binds (port 0 by default), serves the
//! statuses API subset the orchestrator's posters use, and returns a
//! [`Sandbox`] handle with the base URL and live [`Counters`] — statuses
//! created per account and per idempotency key, requests, duplicates
//! prevented — so a test can prove that every job was posted exactly once.
//! How each account misbehaves comes from a [`Scenario`].
//!
//! Served:
//! - `POST /api/v1/statuses` — Bearer token; form or JSON body; an
//!   `Idempotency-Key` is honoured per account for the scenario's window
//!   (default one hour): a repeated key replays the first created status.
//! - `GET /api/v1/accounts/verify_credentials`
//! - `GET /_sandbox/counters` and `GET /_sandbox/statuses` for tests, and
//!   `/_sandbox/huge?bytes=N` (any method) for response-size limits.
//!
//! Every response carries `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
//! Hot paths take no global lock: per-account state lives in sharded maps
//! and totals are atomics.

mod api;
pub mod scenario;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use scenario::{Behaviour, Scenario};

/// A status the sandbox created.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedStatus {
    pub id: u64,
    pub account: String,
    pub text: String,
    pub visibility: Option<String>,
    pub language: Option<String>,
    pub idempotency_key: Option<String>,
    /// The JSON body that was answered, replayed for a repeated key.
    #[serde(skip)]
    pub(crate) body: Arc<str>,
    #[serde(skip)]
    pub(crate) created: Instant,
}

/// Per-account live state.
#[derive(Debug, Default)]
struct AccountState {
    requests: AtomicU64,
    created: AtomicU64,
    /// (window start, requests in it), for the rate-limit headers.
    window: std::sync::Mutex<(u64, u64)>,
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
    /// Connections accepted: fewer than requests when clients keep them alive.
    connections: AtomicU64,
    /// `POST /statuses` being answered now, and the most there ever were.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    accounts: DashMap<String, Arc<AccountState>>,
    /// (account, idempotency key) → the status it created.
    by_key: DashMap<(String, String), CreatedStatus>,
    /// (account, idempotency key) → how many statuses it created (exactly-once
    /// means every value is 1).
    created_per_key: DashMap<(String, String), u64>,
    statuses: DashMap<u64, CreatedStatus>,
}

impl Shared {
    fn account(&self, name: &str) -> Arc<AccountState> {
        if let Some(state) = self.accounts.get(name) {
            return state.clone();
        }
        self.accounts.entry(name.to_owned()).or_default().clone()
    }
}

/// A snapshot of the sandbox's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counters {
    pub requests: u64,
    pub statuses_created: u64,
    pub duplicates_prevented: u64,
    /// The most `POST /statuses` requests the sandbox was answering at once.
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
            .map(|(i, a)| (a.token.clone(), i))
            .collect();
        let shared = Arc::new(Shared {
            scenario,
            by_token,
            base_url: url.clone(),
            started_epoch_ms: epoch_ms(SystemTime::now()),
            next_id: AtomicU64::new(1),
            requests: AtomicU64::new(0),
            created: AtomicU64::new(0),
            duplicates_prevented: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            accounts: DashMap::new(),
            by_key: DashMap::new(),
            created_per_key: DashMap::new(),
            statuses: DashMap::new(),
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
    Counters {
        requests: shared.requests.load(Ordering::Relaxed),
        statuses_created: shared.created.load(Ordering::Relaxed),
        duplicates_prevented: shared.duplicates_prevented.load(Ordering::Relaxed),
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
    }
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
