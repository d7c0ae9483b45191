//! The Mastodon statuses API, without the transport: the request a job
//! becomes, and what a response means. Shared by the sandboxed poster and
//! the native example (`plugins/native-poster`), which include this file;
//! each brings its own HTTP client and the contract's types.

use super::response::Response;
use super::time;
use super::{JobContext, PostFailure, Receipt};

/// The fields of `payload` this poster understands.
#[derive(serde::Deserialize)]
struct Payload {
    status: Option<String>,
    visibility: Option<String>,
    spoiler_text: Option<String>,
    language: Option<String>,
}

#[derive(serde::Serialize)]
struct StatusForm<'a> {
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    visibility: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spoiler_text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    media_ids: &'a [String],
}

/// The status a job posts, read from its payload and its account's
/// settings.
pub struct Status {
    text: String,
    visibility: Option<String>,
    spoiler_text: Option<String>,
    language: Option<String>,
}

/// The status of `job`; its text may be empty only when the status
/// carries media (`with_media`), as on Mastodon.
pub fn status(job: &JobContext, with_media: bool) -> Result<Status, PostFailure> {
    let payload: Payload = serde_json::from_str(&job.payload).map_err(|e| {
        failure_without_response(format!("the job's payload is not valid JSON: {e}"))
    })?;
    let text = payload.status.unwrap_or_default();
    if text.trim().is_empty() && !with_media {
        return Err(failure_without_response(
            "the job's payload has no `status` text",
        ));
    }
    // The account's (or its platform's) settings give defaults; the
    // payload says last.
    let setting = |key: &str| {
        job.account
            .settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    Ok(Status {
        text,
        visibility: payload.visibility.or_else(|| setting("visibility")),
        spoiler_text: payload.spoiler_text,
        language: payload.language.or_else(|| setting("language")),
    })
}

impl Status {
    /// The URL and JSON body that post it, with the uploaded `media_ids`.
    pub fn request(&self, job: &JobContext, media_ids: &[String]) -> (String, Vec<u8>) {
        let body = serde_json::to_vec(&StatusForm {
            status: &self.text,
            visibility: self.visibility.as_deref(),
            spoiler_text: self.spoiler_text.as_deref(),
            language: self.language.as_deref(),
            media_ids,
        })
        .expect("a status form always serializes");
        let url = format!("{}/api/v1/statuses", base(job));
        (url, body)
    }
}

/// The account's base URL without a trailing slash.
pub fn base(job: &JobContext) -> &str {
    job.account.base_url.trim_end_matches('/')
}

/// What a response means: the created status, or a structured failure.
pub fn outcome(response: &Response) -> Result<Receipt, PostFailure> {
    if (200..300).contains(&response.status) {
        receipt_from(response)
    } else {
        Err(refusal(response, "the post"))
    }
}

pub fn failure_without_response(message: impl Into<String>) -> PostFailure {
    PostFailure {
        message: message.into(),
        http_status: None,
        error_code: None,
        retry_after_ms: None,
        rate_limit_reset: None,
        transport_error: None,
    }
}

fn receipt_from(response: &Response) -> Result<Receipt, PostFailure> {
    #[derive(serde::Deserialize)]
    struct Created {
        id: serde_json::Value,
        url: Option<String>,
        uri: Option<String>,
    }
    let created: Created = serde_json::from_slice(&response.body).map_err(|e| PostFailure {
        http_status: Some(response.status),
        ..failure_without_response(format!(
            "the platform answered {} but the body is not a status: {e}",
            response.status
        ))
    })?;
    let remote_id = match created.id {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    Ok(Receipt {
        remote_id,
        url: created.url.or(created.uri),
    })
}

/// A refusal of `what` (`the post`, an upload) as a structured failure:
/// the status, Mastodon's `error` text and the retry hints it sent.
pub fn refusal(response: &Response, what: &str) -> PostFailure {
    #[derive(serde::Deserialize)]
    struct MastodonError {
        error: String,
        error_description: Option<String>,
    }
    let error_code = serde_json::from_slice::<MastodonError>(&response.body)
        .ok()
        .map(|e| match e.error_description {
            Some(d) => format!("{}: {d}", e.error),
            None => e.error,
        });

    let retry_after_secs = response
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Every Mastodon response carries the rate-limit window; its reset is a
    // hint to wait only when the window is used up.
    let exhausted = response.status == 429
        || response
            .header("x-ratelimit-remaining")
            .is_some_and(|v| v.trim() == "0");
    let rate_limit_reset = response
        .header("x-ratelimit-reset")
        .filter(|_| exhausted)
        .map(str::to_owned);
    let until_reset_ms = rate_limit_reset
        .as_deref()
        .and_then(time::parse_rfc3339_ms)
        .map(|reset| reset.saturating_sub(time::now_ms()));
    // The later of the two hints: waiting less than either would be refused.
    // A platform's number is not to be trusted: a wait past any clock stays
    // the longest there is, for the host to clamp.
    let retry_after_ms = match (
        retry_after_secs.map(|s| s.saturating_mul(1000)),
        until_reset_ms,
    ) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };

    let message = match &error_code {
        Some(e) => format!("the platform refused {what} ({}): {e}", response.status),
        None => format!("the platform refused {what} ({})", response.status),
    };
    PostFailure {
        message,
        http_status: Some(response.status),
        error_code,
        retry_after_ms,
        rate_limit_reset,
        transport_error: None,
    }
}
