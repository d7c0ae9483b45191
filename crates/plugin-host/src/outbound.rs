//! The host's outbound-HTTP policy: which hosts a poster may reach, and
//! credential injection.
//!
//! [`OutboundAccess`] is decided per attempt from the job's account. The
//! plugin never sees a secret: the host adds the account's [`Credential`]
//! to requests bound for the account's own host — as `Authorization`, or
//! in place of a `{secret}` path segment — refuses a plugin's own
//! `Authorization` header as forbidden, and cuts every secret of the
//! account out of what that host answers before the plugin reads it.

use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderValue};
use orchestrator_auth::{Credential, Placement};
use orchestrator_contract::HostFault;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
};

pub use orchestrator_auth::Secret;

/// The path segment a poster writes where a `url-secret` account's secret
/// goes; also taken percent-encoded (`%7Bsecret%7D`), as a JavaScript
/// `fetch` sends it.
pub const SECRET_PLACEHOLDER: &str = "{secret}";
const ENCODED_PLACEHOLDERS: [&str; 2] = ["%7Bsecret%7D", "%7bsecret%7d"];

/// `host:port` of a URL, lower-cased, with the scheme's default port filled
/// in, so `https://Example.org` and `https://example.org:443/x` compare equal.
pub fn authority_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    authority_of_uri(&uri)
}

fn authority_of_uri(uri: &http::Uri) -> Option<String> {
    let authority = uri.authority()?;
    let port = authority.port_u16().or(match uri.scheme_str() {
        Some("https") | None => Some(443),
        Some("http") => Some(80),
        Some(_) => None,
    })?;
    Some(format!("{}:{port}", authority.host().to_ascii_lowercase()))
}

/// What one attempt may reach.
#[derive(Debug, Clone, Default)]
pub struct OutboundAccess {
    /// `host:port` the poster may reach (see [`authority_of`]).
    pub granted: Vec<String>,
    /// The account's own host and its credential, added to requests for
    /// that host only.
    pub credential: Option<(String, Credential)>,
}

impl OutboundAccess {
    /// Access for an account: its own base-URL host, with its token if any.
    pub fn for_account(base_url: &str, token: Option<Secret>) -> Self {
        Self::with_credential(
            base_url,
            token.map(|secret| Credential::fixed(Placement::Bearer, secret)),
        )
    }

    /// Access for an account: its own base-URL host, with `credential`.
    pub fn with_credential(base_url: &str, credential: Option<Credential>) -> Self {
        let own = authority_of(base_url);
        OutboundAccess {
            granted: own.iter().cloned().collect(),
            credential: own.zip(credential),
        }
    }

    /// Also allow `authority` (`host:port`, or a URL).
    pub fn grant(mut self, authority: &str) -> Self {
        let normalized = authority_of(authority)
            .or_else(|| authority_of(&format!("https://{authority}")))
            .unwrap_or_else(|| authority.to_ascii_lowercase());
        self.granted.push(normalized);
        self
    }
}

/// Faults the hooks saw during an attempt, read by the host afterwards.
pub(crate) type FaultLog = Arc<Mutex<Vec<HostFault>>>;

/// Keep-alive connections shared by every attempt of a host, over HTTP or
/// HTTPS: an account's next post reuses the connection its last one opened
/// instead of paying a new TCP (and TLS) handshake.
pub(crate) type Pool = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    WasiBody,
>;

/// A connection pool that trusts the Mozilla roots and `extra_roots`.
pub(crate) fn pool(extra_roots: &[Certificate]) -> Pool {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra_roots {
        // A certificate that is no CA only fails to verify what it signs.
        let _ = roots.add(cert.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(std::time::Duration::from_secs(30)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// A certificate, DER-encoded.
pub type Certificate = rustls::pki_types::CertificateDer<'static>;

/// The certificates in a PEM file, for `--ca-file`.
pub fn read_pem_certificates(path: &std::path::Path) -> Result<Vec<Certificate>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The `wasi:http` hooks that enforce [`OutboundAccess`].
pub(crate) struct OutboundHooks {
    pub(crate) access: OutboundAccess,
    pub(crate) faults: FaultLog,
    pub(crate) response_bytes: u64,
    pub(crate) pool: Pool,
}

impl OutboundHooks {
    fn record(faults: &FaultLog, fault: HostFault) {
        faults.lock().unwrap_or_else(|e| e.into_inner()).push(fault);
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for OutboundHooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        // Credentials are the host's to add; a plugin setting its own
        // `Authorization` could send a token it should never have had.
        Arc::new(|name| *name == AUTHORIZATION || DEFAULT_FORBIDDEN_HEADERS.contains(name))
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        let faults = self.faults.clone();
        let authority = authority_of_uri(request.uri());
        let shown = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "(no host)".into());

        let granted = authority
            .as_ref()
            .is_some_and(|a| self.access.granted.iter().any(|g| g == a));
        if !granted {
            Self::record(&faults, HostFault::DeniedRequest(shown.clone()));
            tracing::warn!(host = %shown, "plugin request denied: host not granted");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }

        let mut scrub = Vec::new();
        if let Some((own, credential)) = &self.access.credential
            && authority.as_deref() == Some(own.as_str())
        {
            match credential.placement {
                Placement::Bearer => {
                    if let Ok(mut value) =
                        HeaderValue::from_str(&format!("Bearer {}", credential.secret.expose()))
                    {
                        value.set_sensitive(true);
                        request.headers_mut().insert(AUTHORIZATION, value);
                    }
                }
                Placement::UrlPath => put_in_path(&mut request, &credential.secret),
            }
            // A secret too short to cut out safely is not looked for; with
            // none left, the answer streams to the plugin unbuffered.
            scrub = (credential.scrub.iter())
                .filter(|s| s.expose().len() >= orchestrator_auth::SCRUB_MIN_BYTES)
                .cloned()
                .collect();
        }
        let limit = self.response_bytes;
        let pool = self.pool.clone();
        Box::new(async move {
            use http_body_util::BodyExt;
            match pooled_send(pool, request, options).await {
                Ok((response, io)) => {
                    let message =
                        format!("{shown}: the response body is larger than the {limit}-byte limit");
                    let too_large = move |faults: &FaultLog| {
                        Self::record(faults, HostFault::ConnectionError(message.clone()));
                        wasmtime_wasi_http::Error::HttpResponseBodySize(Some(limit))
                    };
                    let declared = response
                        .headers()
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if declared.is_some_and(|n| n > limit) {
                        return Err(too_large(&faults));
                    }
                    let faults_body = faults.clone();
                    let too_large = too_large.clone();
                    let response = response.map(move |body| {
                        http_body_util::Limited::new(body, limit as usize)
                            .map_err(move |_| too_large(&faults_body))
                            .boxed_unsync()
                    });
                    if scrub.is_empty() {
                        return Ok((response, io));
                    }
                    Ok((scrubbed(response, &scrub).await?, io))
                }
                Err(e) => {
                    Self::record(&faults, HostFault::ConnectionError(format!("{shown}: {e}")));
                    Err(e)
                }
            }
        })
    }
}

/// Puts `secret` where the request's path (not its query) says
/// [`SECRET_PLACEHOLDER`].
fn put_in_path(request: &mut http::Request<WasiBody>, secret: &Secret) {
    let uri = request.uri();
    let Some(pq) = uri.path_and_query() else {
        return;
    };
    let mut path = pq.path().to_owned();
    for placeholder in std::iter::once(SECRET_PLACEHOLDER).chain(ENCODED_PLACEHOLDERS) {
        path = path.replace(placeholder, secret.expose());
    }
    if path == pq.path() {
        return;
    }
    let pq = match pq.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// The response with every one of `secrets` cut out of its headers and
/// body, read whole (it is already bounded): a platform that echoes what
/// it was sent — a URL in an error, a header in a debug endpoint — must
/// not hand the poster the secret the host added.
async fn scrubbed(
    response: http::Response<WasiBody>,
    secrets: &[Secret],
) -> wasmtime_wasi_http::Result<http::Response<WasiBody>> {
    use http_body_util::BodyExt;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut text = body.to_vec();
    let secrets = || {
        secrets
            .iter()
            .map(Secret::expose)
            .filter(|s| s.len() >= orchestrator_auth::SCRUB_MIN_BYTES)
    };
    for secret in secrets() {
        text = replace_bytes(&text, secret.as_bytes(), b"[redacted]");
    }
    for value in parts.headers.values_mut() {
        let mut bytes = value.as_bytes().to_vec();
        for secret in secrets() {
            bytes = replace_bytes(&bytes, secret.as_bytes(), b"[redacted]");
        }
        if let Ok(v) = HeaderValue::from_bytes(&bytes) {
            *value = v;
        }
    }
    // The length changed with the body.
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let body = http_body_util::Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    Ok(http::Response::from_parts(parts, body))
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

type Io = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

/// Sends one of the host's own requests (a login, a refresh) over the
/// pool, and reads at most `limit` bytes of the answer, within 30 seconds.
pub(crate) async fn exchange(
    pool: Pool,
    request: http::Request<Bytes>,
    limit: usize,
) -> Result<http::Response<Bytes>, String> {
    use http_body_util::BodyExt;
    let request = request.map(|body| {
        http_body_util::Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync()
    });
    let exchange = async {
        let response = pool.request(request).await.map_err(|e| {
            let shown = transport_error(&e).to_string();
            match std::error::Error::source(&e) {
                Some(cause) => format!("{shown}: {cause}"),
                None => shown,
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = http_body_util::Limited::new(body, limit)
            .collect()
            .await
            .map_err(|_| format!("the answer is larger than the {limit}-byte limit"))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body))
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 30 seconds".into()))
}

/// Sends a request over the host's keep-alive pool.
async fn pooled_send(
    pool: Pool,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> wasmtime_wasi_http::Result<(http::Response<WasiBody>, Io)> {
    use http_body_util::BodyExt;
    use wasmtime_wasi_http::Error;
    let first_byte = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(std::time::Duration::from_secs(600));
    let response = match tokio::time::timeout(first_byte, pool.request(request)).await {
        Err(_) => return Err(Error::ConnectionReadTimeout),
        Ok(Err(e)) => return Err(transport_error(&e)),
        Ok(Ok(response)) => response,
    };
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    // The pool drives the connection itself.
    Ok((response, Box::new(async { Ok(()) }) as Io))
}

/// The TLS error in a cause, where an I/O error keeps its cause inside
/// rather than as its source.
fn tls_error<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    cause.downcast_ref::<rustls::Error>().or_else(|| {
        let inner = cause.downcast_ref::<std::io::Error>()?.get_ref()?;
        tls_error(inner)
    })
}

/// What the guest is told when the pool could not get a response: the
/// same codes a fresh connection would have produced.
fn transport_error(e: &hyper_util::client::legacy::Error) -> wasmtime_wasi_http::Error {
    use wasmtime_wasi_http::Error;
    let chain = || {
        std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |c| {
            c.source()
        })
    };
    // A TLS failure sits under an I/O error: look for it first.
    if let Some(tls) = chain().find_map(tls_error) {
        return match tls {
            rustls::Error::InvalidCertificate(_) => Error::TlsCertificateError,
            rustls::Error::AlertReceived(_) => Error::TlsAlertReceived {
                alert_id: None,
                alert_message: Some(tls.to_string()),
            },
            _ => Error::TlsProtocolError,
        };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Error::Connect(std::io::Error::new(io.kind(), io.to_string()));
        }
        if let Some(h) = cause.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return Error::HttpResponseTimeout;
            }
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return Error::ConnectionTerminated;
            }
        }
        source = cause.source();
    }
    if e.is_connect() {
        return Error::ConnectionRefused;
    }
    Error::HttpProtocolError
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str) -> http::Request<WasiBody> {
        use http_body_util::BodyExt;
        let body = http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        http::Request::post(uri).body(body).unwrap()
    }

    #[test]
    fn the_secret_goes_where_the_path_says_and_never_into_the_query() {
        let secret = Secret::new("123/abc-def");
        for (sent, arrives) in [
            (
                "http://h/api/webhooks/{secret}?wait=true",
                "/api/webhooks/123/abc-def?wait=true",
            ),
            (
                "http://h/api/webhooks/%7Bsecret%7D",
                "/api/webhooks/123/abc-def",
            ),
            (
                "http://h/api/webhooks/%7bsecret%7d",
                "/api/webhooks/123/abc-def",
            ),
            ("http://h/x?q={secret}", "/x?q={secret}"),
            ("http://h/plain", "/plain"),
        ] {
            let mut r = request(sent);
            put_in_path(&mut r, &secret);
            assert_eq!(
                r.uri().path_and_query().unwrap().as_str(),
                arrives,
                "{sent}"
            );
        }
    }

    #[tokio::test]
    async fn an_answer_has_every_long_enough_secret_cut_out() {
        use http_body_util::BodyExt;
        let body = http_body_util::Full::new(Bytes::from_static(
            b"token=abcdefgh-1234, short d, again abcdefgh-1234",
        ))
        .map_err(|never| match never {})
        .boxed_unsync();
        let response = http::Response::builder()
            .header("x-echo", "Bearer abcdefgh-1234")
            .header("content-length", "49")
            .body(body)
            .unwrap();
        let secrets = [Secret::new("abcdefgh-1234"), Secret::new("d")];
        let response = scrubbed(response, &secrets).await.unwrap();
        assert_eq!(response.headers()["x-echo"], "Bearer [redacted]");
        assert!(response.headers().get("content-length").is_none());
        let text = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&text[..], b"token=[redacted], short d, again [redacted]");
    }
}
