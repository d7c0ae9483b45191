//! One blocking HTTP/1.1 request over a plain TCP connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::PostFailure;
pub use super::response::Response;

/// A failure with no response, named like `wasi:http`'s error codes so
/// classifiers read both backends alike.
fn transport(code: &str, detail: impl std::fmt::Display) -> PostFailure {
    PostFailure {
        message: format!("no response from the platform: {detail}"),
        http_status: None,
        error_code: None,
        retry_after_ms: None,
        rate_limit_reset: None,
        transport_error: Some(code.into()),
    }
}

fn io_failure(e: std::io::Error) -> PostFailure {
    use std::io::ErrorKind::*;
    let code = match e.kind() {
        ConnectionRefused => "connection-refused",
        ConnectionReset | ConnectionAborted | UnexpectedEof | BrokenPipe => "connection-terminated",
        TimedOut | WouldBlock => "connection-timeout",
        _ => "internal-error",
    };
    transport(code, e)
}

pub fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    max_body: usize,
) -> Result<Response, PostFailure> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        transport(
            "destination-not-found",
            format!("{url}: this example speaks plain http:// only"),
        )
    })?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let address = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut stream = TcpStream::connect(&address).map_err(io_failure)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(io_failure)?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(io_failure)?;
    stream.write_all(body).map_err(io_failure)?;

    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).map_err(io_failure)? == 0 {
        return Err(transport(
            "connection-terminated",
            "closed before answering",
        ));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| transport("http-protocol-error", format!("status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(io_failure)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().as_bytes().to_vec()));
        }
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let length = response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    let limit = length.unwrap_or(max_body).min(max_body) as u64;
    reader
        .take(limit)
        .read_to_end(&mut response.body)
        .map_err(io_failure)?;
    Ok(response)
}
