//! One blocking POST through `wasi:http/outgoing-handler` (contract
//! 0.2.0's bindings; the other posters share `plugins/shared/http.rs`).

use crate::orchestrator::plugin::types::PostFailure;
pub use crate::response::Response;
use crate::wasi::http::outgoing_handler;
use crate::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::wasi::io::streams::StreamError;

/// `blocking-write-and-flush` takes at most this many bytes per call.
const WRITE_CHUNK: usize = 4096;

pub struct Request<'a> {
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

fn failure(message: String, transport_error: Option<String>) -> PostFailure {
    PostFailure {
        message,
        http_status: None,
        error_code: None,
        retry_after_ms: None,
        rate_limit_reset: None,
        transport_error,
    }
}

/// Splits `http(s)://authority/path` into its parts.
fn split_url(url: &str) -> Result<(Scheme, &str, &str), PostFailure> {
    let bad = || {
        failure(
            format!("the account's base URL gives `{url}`, which is not an http(s) URL"),
            None,
        )
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad());
    }
    Ok((scheme, authority, path))
}

/// POSTs `request` and reads at most `max_body` bytes of the response.
pub fn post(request: &Request<'_>, max_body: usize) -> Result<Response, PostFailure> {
    let (scheme, authority, path) = split_url(request.url)?;
    let entries: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    let headers = Fields::from_list(&entries)
        .map_err(|e| failure(format!("the host refused a request header: {e:?}"), None))?;
    let outgoing = OutgoingRequest::new(headers);
    let invalid = |what: &str| failure(format!("the host refused the request's {what}"), None);
    outgoing
        .set_method(&Method::Post)
        .map_err(|()| invalid("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|()| invalid("authority"))?;
    outgoing
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;
    let body = outgoing.body().map_err(|()| invalid("body"))?;

    // The request must be handed to the host before its body is written: the
    // host streams the body while it sends.
    let pending = outgoing_handler::handle(outgoing, None).map_err(transport)?;
    {
        let stream = body.write().map_err(|()| invalid("body stream"))?;
        for chunk in request.body.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| failure(format!("sending the request body failed: {e:?}"), None))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(transport)?;

    pending.subscribe().block();
    let incoming = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(transport(code)),
        Some(Err(())) | None => {
            return Err(failure("the host lost the response".into(), None));
        }
    };
    let status = incoming.status();
    let headers = incoming.headers().entries();
    let body = incoming
        .consume()
        .map_err(|()| failure("the response body was already taken".into(), None))?;
    let bytes = read_body(&body, max_body)?;
    IncomingBody::finish(body);
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

fn read_body(body: &IncomingBody, max_body: usize) -> Result<Vec<u8>, PostFailure> {
    let stream = body
        .stream()
        .map_err(|()| failure("the response body stream was already taken".into(), None))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > max_body {
                    bytes.truncate(max_body);
                    break;
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(failure(
                    format!("reading the response failed: {}", e.to_debug_string()),
                    Some("connection-terminated".into()),
                ));
            }
        }
    }
    Ok(bytes)
}

/// A request that got no response: the wasi:http error code names why.
fn transport(code: ErrorCode) -> PostFailure {
    let name = match &code {
        ErrorCode::DnsTimeout => "dns-timeout",
        ErrorCode::DnsError(_) => "dns-error",
        ErrorCode::DestinationNotFound => "destination-not-found",
        ErrorCode::DestinationUnavailable => "destination-unavailable",
        ErrorCode::DestinationIpProhibited => "destination-ip-prohibited",
        ErrorCode::DestinationIpUnroutable => "destination-ip-unroutable",
        ErrorCode::ConnectionRefused => "connection-refused",
        ErrorCode::ConnectionTerminated => "connection-terminated",
        ErrorCode::ConnectionTimeout => "connection-timeout",
        ErrorCode::ConnectionReadTimeout => "connection-read-timeout",
        ErrorCode::ConnectionWriteTimeout => "connection-write-timeout",
        ErrorCode::ConnectionLimitReached => "connection-limit-reached",
        ErrorCode::TlsProtocolError => "tls-protocol-error",
        ErrorCode::HttpRequestDenied => "http-request-denied",
        ErrorCode::HttpProtocolError => "http-protocol-error",
        ErrorCode::HttpResponseIncomplete => "http-response-incomplete",
        ErrorCode::HttpResponseTimeout => "http-response-timeout",
        _ => "other",
    };
    failure(
        format!("the request got no response: {name}"),
        Some(name.into()),
    )
}
