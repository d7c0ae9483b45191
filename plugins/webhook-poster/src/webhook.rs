//! Discord and Slack incoming webhooks, without the transport: the call a
//! job becomes and what an answer means.
//!
//! The webhook URL is the secret, so the path names it only as the literal
//! segment `{secret}`, which the host fills in for a `url-secret` account.

use crate::api::{payload, payload_text, refused, setting};
use crate::http::{Response, bounded, failure, seconds_to_ms};
use crate::orchestrator::plugin::types::{JobContext, PostFailure, Receipt};

/// Platform text kept in a failure: enough to read, not enough to flood.
const MESSAGE_BYTES: usize = 500;
const CODE_BYTES: usize = 64;
/// The rate-limit headers both platforms send.
const REMAINING_HEADER: &str = "x-ratelimit-remaining";
const RESET_HEADER: &str = "x-ratelimit-reset";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Discord,
    Slack,
}

/// One webhook call.
pub struct Attempt {
    pub url: String,
    pub body: Vec<u8>,
    pub style: Style,
}

#[derive(serde::Deserialize)]
struct Payload {
    text: Option<String>,
}

/// The call for `job`, in the shape its account's `style` setting names.
pub fn attempt(job: &JobContext) -> Result<Attempt, PostFailure> {
    let style = match setting(job, "style").map(str::trim) {
        None | Some("discord") => Style::Discord,
        Some("slack") => Style::Slack,
        Some(other) => {
            return Err(failure(format!(
                "account {} has style `{other}`; a webhook is `discord` or `slack`",
                job.account.name
            )));
        }
    };
    let payload: Payload = payload(job)?;
    let text = payload_text(payload.text)?;
    let base = job.account.base_url.trim_end_matches('/');
    let (url, body) = match style {
        Style::Discord => {
            let mut body = serde_json::json!({ "content": text });
            if let Some(name) = setting(job, "username") {
                body["username"] = name.into();
            }
            // `wait=true` makes Discord answer with the message and its id.
            (format!("{base}/api/webhooks/{{secret}}?wait=true"), body)
        }
        Style::Slack => (
            format!("{base}/services/{{secret}}"),
            serde_json::json!({ "text": text }),
        ),
    };
    Ok(Attempt {
        url,
        body: body.to_string().into_bytes(),
        style,
    })
}

/// What the webhook answered.
pub fn outcome(
    response: &Response,
    style: Style,
    idempotency_key: &str,
    now_ms: u64,
) -> Result<Receipt, PostFailure> {
    if !(200..300).contains(&response.status) {
        return Err(match style {
            Style::Discord => discord_refusal(response, now_ms),
            Style::Slack => slack_refusal(response, now_ms),
        });
    }
    let id = serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| match &v["id"] {
            serde_json::Value::String(s) if !s.is_empty() => Some(bounded(s, 64)),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    Ok(Receipt {
        // Slack's `ok` and Discord's 204 name nothing: the job's idempotency
        // key is the only stable name the message has.
        remote_id: id.unwrap_or_else(|| idempotency_key.to_owned()),
        // A Discord message's link needs its server's id, which the answer
        // does not give; Slack gives nothing.
        url: None,
    })
}

/// Discord's JSON error: `message`, a numeric `code`, and for a rate limit
/// `retry_after` (seconds, fractional) and `global`.
fn discord_refusal(response: &Response, now_ms: u64) -> PostFailure {
    let said: serde_json::Value =
        serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
    let error_code = if response.status == 429 {
        // The scope of a rate limit is what a classifier needs: one webhook,
        // or everything this client sends to Discord.
        let global = said["global"].as_bool() == Some(true)
            || response
                .header("x-ratelimit-global")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || response
                .header("x-ratelimit-scope")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("global"));
        Some(
            if global {
                "global_rate_limited"
            } else {
                "rate_limited"
            }
            .to_owned(),
        )
    } else {
        match &said["code"] {
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::String(s) => Some(bounded(s, CODE_BYTES)),
            _ => None,
        }
    };
    let detail = said["message"].as_str().map(|m| bounded(m, MESSAGE_BYTES));
    let mut message = format!("Discord refused the message ({}", response.status);
    if let Some(code) = &error_code {
        message.push_str(&format!(", {code}"));
    }
    message.push(')');
    if let Some(detail) = detail {
        message.push_str(&format!(": {detail}"));
    }
    let refusal = refused(
        response,
        message,
        error_code,
        REMAINING_HEADER,
        RESET_HEADER,
        now_ms,
    );
    // The body's `retry_after` is the same wait as the `Retry-After` header,
    // to the millisecond rather than rounded up to whole seconds.
    let retry_after_ms = said["retry_after"]
        .as_f64()
        .and_then(seconds_to_ms)
        .or(refusal.retry_after_ms);
    PostFailure {
        retry_after_ms,
        ..refusal
    }
}

/// Slack answers errors in plain text: the body is the error's name
/// (`invalid_token`, `no_service`, `rate_limited`, ...).
fn slack_refusal(response: &Response, now_ms: u64) -> PostFailure {
    let text = String::from_utf8_lossy(&response.body);
    let text = text.trim();
    let error_code = (!text.is_empty()
        && text.len() <= CODE_BYTES
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    .then(|| text.to_owned());
    let message = if text.is_empty() {
        format!("Slack refused the message ({})", response.status)
    } else {
        format!(
            "Slack refused the message ({}): {}",
            response.status,
            bounded(text, MESSAGE_BYTES)
        )
    };
    refused(
        response,
        message,
        error_code,
        REMAINING_HEADER,
        RESET_HEADER,
        now_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tests::response;

    fn job(payload: &str, settings: &[(&str, &str)]) -> JobContext {
        crate::api::tests::job("hook", "http://127.0.0.1:9", "key-1", payload, settings)
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn discord_is_the_default_style() {
        let a = attempt(&job(r#"{"text":"hi"}"#, &[("username", "bot")])).unwrap();
        assert_eq!(a.style, Style::Discord);
        assert_eq!(a.url, "http://127.0.0.1:9/api/webhooks/{secret}?wait=true");
        assert_eq!(
            json(&a.body),
            serde_json::json!({"content": "hi", "username": "bot"})
        );
    }

    #[test]
    fn slack_posts_text_to_services() {
        let a = attempt(&job(
            r#"{"text":"hi"}"#,
            &[("style", "slack"), ("username", "ignored")],
        ))
        .unwrap();
        assert_eq!(a.style, Style::Slack);
        assert_eq!(a.url, "http://127.0.0.1:9/services/{secret}");
        assert_eq!(json(&a.body), serde_json::json!({"text": "hi"}));
    }

    #[test]
    fn bad_jobs_are_refused_before_sending() {
        let style = attempt(&job(r#"{"text":"hi"}"#, &[("style", "teams")]))
            .err()
            .unwrap();
        assert!(style.message.contains("`teams`"));
        assert!(attempt(&job(r#"{"content":"hi"}"#, &[])).is_err());
        assert!(attempt(&job("{", &[])).is_err());
        // Empty text goes to the platform, whose refusal says why.
        assert!(attempt(&job(r#"{"text":""}"#, &[])).is_ok());
    }

    #[test]
    fn answers_become_receipts() {
        let r = outcome(
            &response(200, &[], r#"{"id":"1234567890","channel_id":"1"}"#),
            Style::Discord,
            "key-1",
            0,
        )
        .unwrap();
        assert_eq!(r.remote_id, "1234567890");
        assert_eq!(r.url, None);
        let r = outcome(&response(204, &[], ""), Style::Discord, "key-1", 0).unwrap();
        assert_eq!(r.remote_id, "key-1");
        let r = outcome(&response(200, &[], "ok"), Style::Slack, "key-1", 0).unwrap();
        assert_eq!(r.remote_id, "key-1");
    }

    #[test]
    fn discord_errors_carry_their_code() {
        let f = outcome(
            &response(404, &[], r#"{"message":"Unknown Webhook","code":10015}"#),
            Style::Discord,
            "k",
            0,
        )
        .unwrap_err();
        assert_eq!(f.http_status, Some(404));
        assert_eq!(f.error_code.as_deref(), Some("10015"));
        assert!(f.message.contains("Unknown Webhook"));
        assert_eq!(f.retry_after_ms, None);
        let f = outcome(&response(502, &[], "<html>"), Style::Discord, "k", 0).unwrap_err();
        assert_eq!(f.error_code, None);
    }

    #[test]
    fn discord_rate_limits_wait_as_the_body_says() {
        let body =
            r#"{"message":"You are being rate limited.","retry_after":1.2341,"global":false}"#;
        let f = outcome(
            &response(429, &[("Retry-After", "1")], body),
            Style::Discord,
            "k",
            0,
        )
        .unwrap_err();
        assert_eq!(f.error_code.as_deref(), Some("rate_limited"));
        assert_eq!(f.retry_after_ms, Some(1235));
        let global = r#"{"message":"x","retry_after":0.5,"global":true}"#;
        let f = outcome(
            &response(429, &[("Retry-After", "2")], global),
            Style::Discord,
            "k",
            0,
        )
        .unwrap_err();
        assert_eq!(f.error_code.as_deref(), Some("global_rate_limited"));
        assert_eq!(f.retry_after_ms, Some(500));
        // Without a usable body, the headers say how long.
        let hostile = r#"{"retry_after":-5,"global":"yes","code":{"x":1}}"#;
        let f = outcome(&response(429, &[], hostile), Style::Discord, "k", 0).unwrap_err();
        assert_eq!(f.retry_after_ms, None);
        let f = outcome(
            &response(
                429,
                &[("Retry-After", "3"), ("X-RateLimit-Reset", "10.5")],
                "oops",
            ),
            Style::Discord,
            "k",
            8_000,
        )
        .unwrap_err();
        assert_eq!(f.retry_after_ms, Some(3000));
        assert_eq!(f.rate_limit_reset.as_deref(), Some("10.5"));
        assert_eq!(f.error_code.as_deref(), Some("rate_limited"));
    }

    #[test]
    fn slack_errors_are_their_body() {
        let f = outcome(&response(403, &[], "invalid_token"), Style::Slack, "k", 0).unwrap_err();
        assert_eq!(f.error_code.as_deref(), Some("invalid_token"));
        assert_eq!(f.http_status, Some(403));
        let f = outcome(
            &response(429, &[("retry-after", "30")], "rate_limited\n"),
            Style::Slack,
            "k",
            0,
        )
        .unwrap_err();
        assert_eq!(f.error_code.as_deref(), Some("rate_limited"));
        assert_eq!(f.retry_after_ms, Some(30_000));
        // A page of HTML is no error name, and is cut.
        let page = format!("<html>{}</html>", "x".repeat(5000));
        let f = outcome(&response(500, &[], &page), Style::Slack, "k", 0).unwrap_err();
        assert_eq!(f.error_code, None);
        assert!(f.message.len() < MESSAGE_BYTES + 100);
    }
}
