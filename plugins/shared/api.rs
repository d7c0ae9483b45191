//! What the platform posters (`bluesky-poster`, `webhook-poster`,
//! `x-poster`) share above the transport in `http.rs`: reading a job's
//! settings and text, the clock and user agent of a request, and a
//! platform's refusal as the failure an attempt returns. Each poster
//! includes this file by path next to `http.rs` and generates its own
//! bindings, so the types below are each crate's own.

use crate::http::{Response, failure, retry_hint};
use crate::orchestrator::plugin::types::{JobContext, PostFailure};
use std::time::{SystemTime, UNIX_EPOCH};

/// Names this plugin and its version to the platform, as
/// `orchestrator-{crate}/{version}`.
pub const USER_AGENT: &str = concat!(
    "orchestrator-",
    env!("CARGO_PKG_NAME"),
    "/",
    env!("CARGO_PKG_VERSION")
);

/// The time now in epoch milliseconds, which a rate-limit reset is waited
/// out from.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The account's setting `key`, if it has one.
#[allow(dead_code, reason = "x-poster's accounts have no settings")]
pub fn setting<'a>(job: &'a JobContext, key: &str) -> Option<&'a str> {
    job.account
        .settings
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The job's payload, read as the platform's poster reads it.
pub fn payload<P: serde::de::DeserializeOwned>(job: &JobContext) -> Result<P, PostFailure> {
    serde_json::from_str(&job.payload)
        .map_err(|e| failure(format!("the job's payload is not valid JSON: {e}")))
}

/// The payload's `text`, which every platform here posts.
pub fn payload_text(text: Option<String>) -> Result<String, PostFailure> {
    // An empty text is sent: the platform's refusal is the record of it.
    text.ok_or_else(|| failure("the job's payload has no `text`".into()))
}

/// The failure for a refusal: `message` and `error_code` as the platform's
/// answer gives them, and the wait its rate-limit headers
/// (`remaining_header`, `reset_header`) ask for.
pub fn refused(
    response: &Response,
    message: String,
    error_code: Option<String>,
    remaining_header: &str,
    reset_header: &str,
    now_ms: u64,
) -> PostFailure {
    let (retry_after_ms, rate_limit_reset) =
        retry_hint(response, remaining_header, reset_header, now_ms);
    PostFailure {
        message,
        http_status: Some(response.status),
        error_code,
        retry_after_ms,
        rate_limit_reset,
        transport_error: None,
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::orchestrator::plugin::types::Account;

    /// An attempt of job `j1` for account `account`.
    pub fn job(
        account: &str,
        base_url: &str,
        idempotency_key: &str,
        payload: &str,
        settings: &[(&str, &str)],
    ) -> JobContext {
        JobContext {
            job_id: "j1".into(),
            account: Account {
                name: account.into(),
                base_url: base_url.into(),
                settings: settings
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            payload: payload.into(),
            attempt: 1,
            pass: 1,
            idempotency_key: idempotency_key.into(),
        }
    }

    /// A platform's answer, as `http::send` returns it.
    pub fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }
}
