//! `--metrics-listen`: [`MetricsListener`], the address bound before
//! anything runs, and [`MetricsListener::serve`], a small HTTP/1 server
//! that answers `GET /metrics` with [`orchestrator_metrics::encode`] of
//! the run's metrics and its store, for as long as the run lasts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use orchestrator_metrics::RunMetrics;
use orchestrator_store::Store;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::exit::{self, Exit};

/// Connections served at once: a scraper or two and someone with curl.
/// More wait to be accepted, so no flood of them queues store reads.
const CONNECTIONS: usize = 8;

/// How long a client may take to send its request's headers, and a
/// connection may last: a scrape is one short request.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The metrics address, bound.
pub struct MetricsListener {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl MetricsListener {
    /// Binds `addr`. An address this host does not have, or one another
    /// program holds, is the operator's to fix: refused in one line, with
    /// exit code 2, before anything runs.
    pub async fn bind(addr: SocketAddr) -> Result<MetricsListener> {
        let refused =
            |e: std::io::Error| Exit::new(exit::USAGE, format!("--metrics-listen {addr}: {e}"));
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(refused)?;
        // Port 0 asked for any free port: this is the one chosen.
        let addr = listener.local_addr().map_err(refused)?;
        Ok(MetricsListener { listener, addr })
    }

    /// The address bound, with its real port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `metrics` and `store`'s until the returned task is aborted.
    pub fn serve(self, store: Arc<dyn Store>, metrics: Arc<RunMetrics>) -> JoinHandle<()> {
        tokio::spawn(accept(self.listener, store, metrics))
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    metrics: Arc<RunMetrics>,
) {
    let connections = Arc::new(Semaphore::new(CONNECTIONS));
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!("metrics: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (store, metrics) = (store.clone(), metrics.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                answer(request, store.clone(), metrics.clone())
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // A client gone quiet or dropped mid-request only ends its own
            // connection.
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(permit);
        });
    }
}

/// `GET /metrics` (or `HEAD`): the metrics; anything else says where they
/// are.
async fn answer(
    request: Request<Incoming>,
    store: Arc<dyn Store>,
    metrics: Arc<RunMetrics>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/metrics" {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        ));
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    // The store's reads block (a shared store's may wait out an outage):
    // off the threads the attempts run on.
    let encoded = tokio::task::spawn_blocking(move || {
        orchestrator_metrics::encode(store.as_ref(), Some(&metrics))
    })
    .await;
    Ok(match encoded {
        Ok(Ok(text)) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(orchestrator_metrics::CONTENT_TYPE),
            );
            response
        }
        Ok(Err(e)) => {
            tracing::warn!("metrics: {e}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n"))
        }
        Err(e) => {
            tracing::warn!("metrics: encoding them failed: {e}");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding the metrics failed\n",
            )
        }
    })
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
