//! One blocking HTTP request through `wasi:http/outgoing-handler`, its
//! body given whole or streamed, its response cut off at a bound. Shared by
//! the platform posters, which include this file by path, and by the
//! posters `orchestrator plugins new` writes: each crate generates its own
//! bindings, so the types below are each crate's own.

use crate::orchestrator::plugin::types::PostFailure;
use crate::wasi::http::outgoing_handler;
pub use crate::wasi::http::types::Method;
use crate::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::wasi::io::streams::StreamError;

/// `blocking-write-and-flush` takes at most this many bytes per call.
const WRITE_CHUNK: usize = 4096;
/// Headers kept from a response: the posters read a handful.
const MAX_HEADERS: usize = 100;

pub struct Request<'a> {
    pub method: Method,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// At most `max` bytes of `text`, cut at a character boundary: platform
/// text goes into failures and logs, which must stay small.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

pub fn failure(message: String) -> PostFailure {
    PostFailure {
        message,
        http_status: None,
        error_code: None,
        retry_after_ms: None,
        rate_limit_reset: None,
        transport_error: None,
    }
}

/// Splits `http(s)://authority/path?query` into its parts; the path
/// begins with `/` even when the URL has none.
fn split_url(url: &str) -> Result<(Scheme, &str, String), PostFailure> {
    let bad = || failure(format!("`{url}` is not an http(s) URL"));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad()),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    if authority.is_empty() {
        return Err(bad());
    }
    Ok((scheme, authority, path))
}

/// Sends `request` and reads at most `max_body` bytes of the response.
pub fn send(request: &Request<'_>, max_body: usize) -> Result<Response, PostFailure> {
    send_with(request, max_body, &mut |write| write(request.body))
}

/// What a streamed body is written through: a piece at a time.
pub type Write<'w> = dyn FnMut(&[u8]) -> Result<(), PostFailure> + 'w;

/// Sends `request` with the body `body` writes through the [`Write`] it
/// is handed (`request.body` is not sent), and reads at most `max_body`
/// bytes of the response: a large body — a file — goes out a piece at a
/// time instead of whole. A body of no bytes is no body.
///
/// A platform may answer before it has read the whole body (a file too
/// large for it); that answer is returned rather than the broken write.
pub fn send_with(
    request: &Request<'_>,
    max_body: usize,
    body: &mut dyn FnMut(&mut Write<'_>) -> Result<(), PostFailure>,
) -> Result<Response, PostFailure> {
    let (scheme, authority, path) = split_url(request.url)?;
    let entries: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    let headers = Fields::from_list(&entries)
        .map_err(|e| failure(format!("the host refused a request header: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let invalid = |what: &str| failure(format!("the host refused the request's {what}"));
    outgoing
        .set_method(&request.method)
        .map_err(|()| invalid("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|()| invalid("authority"))?;
    outgoing
        .set_path_with_query(Some(&path))
        .map_err(|()| invalid("path"))?;
    let outgoing_body = outgoing.body().map_err(|()| invalid("body"))?;

    // The request goes to the host before its body is written: the host
    // streams the body while it sends.
    let pending = outgoing_handler::handle(outgoing, None).map_err(transport)?;
    let written = {
        let mut stream = None;
        let mut write = |piece: &[u8]| -> Result<(), PostFailure> {
            if piece.is_empty() {
                return Ok(());
            }
            if stream.is_none() {
                stream = Some(outgoing_body.write().map_err(|()| invalid("body stream"))?);
            }
            let stream = stream.as_ref().expect("opened above");
            for chunk in piece.chunks(WRITE_CHUNK) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| failure(format!("sending the request body failed: {e:?}")))?;
            }
            Ok(())
        };
        body(&mut write)
    };
    match written {
        Ok(()) => OutgoingBody::finish(outgoing_body, None).map_err(transport)?,
        // Unfinished, the body tells the host the request is cut short;
        // the platform may have answered already.
        Err(_) => drop(outgoing_body),
    }

    pending.subscribe().block();
    let incoming = match (pending.get(), written) {
        (Some(Ok(Ok(response))), _) => response,
        (_, Err(failed)) => return Err(failed),
        (Some(Ok(Err(code))), Ok(())) => return Err(transport(code)),
        (Some(Err(())) | None, Ok(())) => {
            return Err(failure("the host lost the response".into()));
        }
    };
    let status = incoming.status();
    let mut headers = incoming.headers().entries();
    headers.truncate(MAX_HEADERS);
    let body = incoming
        .consume()
        .map_err(|()| failure("the response body was already taken".into()))?;
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
        .map_err(|()| failure("the response body stream was already taken".into()))?;
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
                return Err(PostFailure {
                    transport_error: Some("connection-terminated".into()),
                    ..failure(format!(
                        "reading the response failed: {}",
                        e.to_debug_string()
                    ))
                });
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
    PostFailure {
        transport_error: Some(name.into()),
        ..failure(format!("the request got no response: {name}"))
    }
}

/// The wait a refusal asks for, in milliseconds, and the rate-limit reset
/// as the platform sent it: the later of `Retry-After` (seconds) and the
/// reset in `reset_header` (epoch seconds), whichever are there. Platforms
/// send their rate-limit window on every answer, so the reset counts only
/// once the window is used up: a 429, or `remaining_header` at 0.
pub fn retry_hint(
    response: &Response,
    remaining_header: &str,
    reset_header: &str,
    now_ms: u64,
) -> (Option<u64>, Option<String>) {
    let retry_after = response
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000));
    let exhausted = response.status == 429
        || response
            .header(remaining_header)
            .is_some_and(|v| v.trim() == "0");
    let reset = response
        .header(reset_header)
        .filter(|_| exhausted)
        .map(|v| bounded(v, 64));
    let until_reset = reset
        .as_deref()
        .and_then(epoch_ms)
        .map(|at| at.saturating_sub(now_ms));
    // Waiting less than either would be refused again. A wait past any
    // clock stays the longest there is, for the host to clamp.
    let wait = match (retry_after, until_reset) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    (wait, reset)
}

/// Epoch seconds, whole (`1767225600`) or not (Discord's `1767225600.25`),
/// in milliseconds.
pub fn epoch_ms(text: &str) -> Option<u64> {
    seconds_to_ms(text.trim().parse::<f64>().ok()?)
}

/// Seconds as a platform writes them, rounded up to whole milliseconds;
/// nothing for a negative or non-finite number.
pub fn seconds_to_ms(seconds: f64) -> Option<u64> {
    // `as` saturates: a number past u64 is the longest wait there is.
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let (s, a, p) = split_url("https://h:8/api/x?wait=true").ok().unwrap();
        assert!(matches!(s, Scheme::Https));
        assert_eq!((a, p.as_str()), ("h:8", "/api/x?wait=true"));
        let (_, a, p) = split_url("HTTP://h?q=1").ok().unwrap();
        assert_eq!((a, p.as_str()), ("h", "/?q=1"));
        let (_, _, p) = split_url("http://h").ok().unwrap();
        assert_eq!(p, "/");
        assert!(split_url("ftp://h/").is_err());
        assert!(split_url("http:///x").is_err());
        assert!(split_url("h/x").is_err());
    }

    #[test]
    fn text_is_cut_at_a_character_boundary() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("aé", 2), "a");
        assert_eq!(bounded("ééé", 4), "éé");
    }

    #[test]
    fn seconds_become_milliseconds_rounded_up() {
        assert_eq!(epoch_ms(" 1767225600 "), Some(1_767_225_600_000));
        assert_eq!(epoch_ms("1767225600.25"), Some(1_767_225_600_250));
        assert_eq!(seconds_to_ms(1.2341), Some(1235));
        assert_eq!(seconds_to_ms(1e300), Some(u64::MAX));
        assert_eq!(seconds_to_ms(-1.0), None);
        assert_eq!(epoch_ms("inf"), None);
        assert_eq!(epoch_ms("soon"), None);
    }
}
