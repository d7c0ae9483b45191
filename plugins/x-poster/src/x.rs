//! The X API v2 `POST /2/tweets`, without the transport: the call a job
//! becomes and what an answer means. X answers errors as problem JSON
//! (RFC 7807-like: `title`, `detail`, `type`, `status`).

use crate::api::{payload, payload_text, refused};
use crate::http::{Response, bounded, failure};
use crate::orchestrator::plugin::types::{JobContext, PostFailure, Receipt};

/// Platform text kept in a failure: enough to read, not enough to flood.
const MESSAGE_BYTES: usize = 500;
const CODE_BYTES: usize = 100;

#[derive(serde::Deserialize)]
struct Payload {
    text: Option<String>,
}

/// The URL and JSON body of the attempt for `job`.
pub fn request(job: &JobContext) -> Result<(String, Vec<u8>), PostFailure> {
    let payload: Payload = payload(job)?;
    let text = payload_text(payload.text)?;
    let url = format!("{}/2/tweets", job.account.base_url.trim_end_matches('/'));
    Ok((
        url,
        serde_json::json!({ "text": text }).to_string().into_bytes(),
    ))
}

/// What X answered.
pub fn outcome(response: &Response, now_ms: u64) -> Result<Receipt, PostFailure> {
    let said: serde_json::Value =
        serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
    if (200..300).contains(&response.status) {
        // X's ids are decimal strings; anything else is no post.
        let id = said["data"]["id"].as_str().filter(|id| {
            !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_digit())
        });
        return match id {
            Some(id) => Ok(Receipt {
                remote_id: id.to_owned(),
                url: Some(format!("https://x.com/i/web/status/{id}")),
            }),
            None => Err(PostFailure {
                http_status: Some(response.status),
                ..failure(format!(
                    "X answered {} but not with a post id",
                    response.status
                ))
            }),
        };
    }
    let title = said["title"].as_str().map(|t| bounded(t, CODE_BYTES));
    let detail = said["detail"].as_str().map(|d| bounded(d, MESSAGE_BYTES));
    // A 403 is X's answer to many things; the duplicate is the one a
    // classifier must tell apart, and only `detail` says it.
    let duplicate = response.status == 403
        && detail
            .as_deref()
            .is_some_and(|d| d.to_ascii_lowercase().contains("duplicate content"));
    let error_code = if duplicate {
        Some("DuplicateContent".to_owned())
    } else {
        title
    };
    let mut message = format!("X refused the post ({}", response.status);
    if let Some(code) = &error_code {
        message.push_str(&format!(" {code}"));
    }
    message.push(')');
    if let Some(detail) = &detail {
        message.push_str(&format!(": {detail}"));
    }
    Err(refused(
        response,
        message,
        error_code,
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
        now_ms,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tests::response;

    fn job(payload: &str) -> JobContext {
        crate::api::tests::job("x", "http://127.0.0.1:9/", "k", payload, &[])
    }

    #[test]
    fn a_job_becomes_a_tweet() {
        let (url, body) = request(&job(r#"{"text":"hello"}"#)).unwrap();
        assert_eq!(url, "http://127.0.0.1:9/2/tweets");
        assert_eq!(body, br#"{"text":"hello"}"#);
        assert!(request(&job(r#"{"status":"hello"}"#)).is_err());
        assert!(request(&job("")).is_err());
    }

    #[test]
    fn a_created_tweet_is_a_receipt() {
        let body = r#"{"data":{"id":"1445880548472328192","text":"hi","edit_history_tweet_ids":["1445880548472328192"]}}"#;
        let r = outcome(&response(201, &[], body), 0).unwrap();
        assert_eq!(r.remote_id, "1445880548472328192");
        assert_eq!(
            r.url.as_deref(),
            Some("https://x.com/i/web/status/1445880548472328192")
        );
        let f = outcome(&response(201, &[], r#"{"data":{"id":"../x"}}"#), 0).unwrap_err();
        assert_eq!(f.http_status, Some(201));
    }

    #[test]
    fn duplicates_are_named() {
        let body = r#"{"detail":"You are not allowed to create a Tweet with duplicate content.","type":"about:blank","title":"Forbidden","status":403}"#;
        let f = outcome(&response(403, &[], body), 0).unwrap_err();
        assert_eq!(f.error_code.as_deref(), Some("DuplicateContent"));
        assert!(f.message.contains("duplicate content"));
        let other = r#"{"detail":"You are not permitted","title":"Forbidden","status":403}"#;
        let f = outcome(&response(403, &[], other), 0).unwrap_err();
        assert_eq!(f.error_code.as_deref(), Some("Forbidden"));
    }

    #[test]
    fn rate_limits_wait_for_the_reset() {
        let body = r#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#;
        let headers = [
            ("x-rate-limit-limit", "200"),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", "2000"),
        ];
        let f = outcome(&response(429, &headers, body), 1_990_500).unwrap_err();
        assert_eq!(f.error_code.as_deref(), Some("Too Many Requests"));
        assert_eq!(f.retry_after_ms, Some(9_500));
        assert_eq!(f.rate_limit_reset.as_deref(), Some("2000"));
        // A reset already past asks for no wait.
        let f = outcome(&response(429, &headers, body), 3_000_000).unwrap_err();
        assert_eq!(f.retry_after_ms, Some(0));
    }

    #[test]
    fn an_expired_token_is_a_401() {
        let body =
            r#"{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}"#;
        let headers = [
            ("x-rate-limit-remaining", "10"),
            ("x-rate-limit-reset", "9"),
        ];
        let f = outcome(&response(401, &headers, body), 0).unwrap_err();
        assert_eq!(f.http_status, Some(401));
        assert_eq!(f.error_code.as_deref(), Some("Unauthorized"));
        assert_eq!(f.retry_after_ms, None);
        assert_eq!(f.rate_limit_reset, None);
    }

    #[test]
    fn hostile_answers_are_bounded() {
        let long = "x".repeat(100_000);
        let body = format!(r#"{{"title":"{long}","detail":"{long}"}}"#);
        let f = outcome(&response(400, &[], &body), 0).unwrap_err();
        assert!(f.error_code.unwrap().len() <= CODE_BYTES);
        assert!(f.message.len() < CODE_BYTES + MESSAGE_BYTES + 100);
        let f = outcome(&response(500, &[], "\u{0}\u{1b}[31m"), 0).unwrap_err();
        assert_eq!(f.error_code, None);
    }
}
