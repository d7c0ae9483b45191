//! The host's outbound-HTTP policy: which hosts a poster may reach, and
//! credential injection.
//!
//! [`OutboundAccess`] is decided per attempt from the job's account. The
//! plugin never sees a token: the host adds `Authorization` to requests bound
//! for the account's own host, and refuses a plugin's own `Authorization`
//! header as forbidden.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use http::header::{AUTHORIZATION, HeaderValue};
use orchestrator_contract::HostFault;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
};

/// A secret string that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

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
    /// The account's own host and token, added as a Bearer credential to
    /// requests for that host only.
    pub credential: Option<(String, Secret)>,
}

impl OutboundAccess {
    /// Access for an account: its own base-URL host, with its token if any.
    pub fn for_account(base_url: &str, token: Option<Secret>) -> Self {
        let own = authority_of(base_url);
        OutboundAccess {
            granted: own.iter().cloned().collect(),
            credential: own.zip(token),
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

/// The `wasi:http` hooks that enforce [`OutboundAccess`].
pub(crate) struct OutboundHooks {
    pub(crate) access: OutboundAccess,
    pub(crate) faults: FaultLog,
    pub(crate) response_bytes: u64,
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

        if let Some((own, token)) = &self.access.credential
            && authority.as_deref() == Some(own.as_str())
            && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        {
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }

        let limit = self.response_bytes;
        Box::new(async move {
            use http_body_util::BodyExt;
            match wasmtime_wasi_http::default_send_request(request, options).await {
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
                    Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>))
                }
                Err(e) => {
                    Self::record(&faults, HostFault::ConnectionError(format!("{shown}: {e}")));
                    Err(e)
                }
            }
        })
    }
}
