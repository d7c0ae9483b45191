//! Discord and Slack incoming webhooks: the secret is the URL path, and
//! there is no idempotency (the platforms have none), so every accepted
//! message is recorded with its text.
//!
//! The key type is [`WebhookIndex`]: which account each Discord webhook id
//! and Slack `T/B` pair belongs to, so an unknown webhook (404) and a wrong
//! secret for a known one (401/403) are told apart as the platforms do.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use crate::api::{self, Reply, Scripted, Turn};
use crate::scenario::{AccountScript, Behaviour, Scenario, Webhook};
use crate::{Platform, Post, Shared, jwt};

/// Discord's epoch (2015-01-01), for snowflake ids.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
const DISCORD_MAX_CONTENT: usize = 2000;

/// Which account each webhook belongs to.
#[derive(Debug, Default)]
pub(crate) struct WebhookIndex {
    /// Discord webhook id → account index.
    discord: HashMap<String, usize>,
    /// Slack (team, bot) → account index.
    slack: HashMap<(String, String), usize>,
}

impl WebhookIndex {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        let mut index = WebhookIndex::default();
        for (i, account) in scenario.accounts.iter().enumerate() {
            match account.webhook() {
                Some(Webhook::Discord { id, .. }) => {
                    index.discord.insert(id.to_owned(), i);
                }
                Some(Webhook::Slack { team, bot, .. }) => {
                    index.slack.insert((team.to_owned(), bot.to_owned()), i);
                }
                None => {}
            }
        }
        index
    }
}

fn discord_error(status: StatusCode, message: &str, code: u32) -> Response<Full<Bytes>> {
    api::json_response(
        status,
        json!({ "message": message, "code": code }).to_string(),
    )
}

fn unknown_webhook() -> Response<Full<Bytes>> {
    discord_error(StatusCode::NOT_FOUND, "Unknown Webhook", 10015)
}

fn invalid_webhook_token() -> Response<Full<Bytes>> {
    discord_error(StatusCode::UNAUTHORIZED, "Invalid Webhook Token", 50027)
}

/// `1712345678.250`: Discord writes rate-limit times as fractional seconds.
fn fractional_secs(ms: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("{}.{:03}", ms / 1000, ms % 1000))
        .unwrap_or_else(|_| HeaderValue::from_static("0.000"))
}

/// What a webhook execution carries that the sandbox reads; `username`,
/// `embeds` and the rest are accepted and ignored.
#[derive(Deserialize)]
struct Execute {
    content: Option<String>,
}

/// `POST /api/webhooks/{id}/{token}[?wait=true]`
pub(crate) async fn discord(shared: &Shared, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let Some(body) = api::read_body(body).await else {
        return Ok(discord_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request entity too large",
            40005,
        ));
    };
    let path = parts.uri.path().trim_start_matches("/api/webhooks/");
    let Some((id, token)) = path
        .split_once('/')
        .filter(|(id, token)| !id.is_empty() && !token.is_empty() && !token.contains('/'))
    else {
        return Ok(discord_error(StatusCode::NOT_FOUND, "404: Not Found", 0));
    };
    let Some(&i) = shared.webhooks.discord.get(id) else {
        return Ok(unknown_webhook());
    };
    let account = &shared.scenario.accounts[i];
    if !matches!(account.webhook(), Some(Webhook::Discord { token: t, .. }) if t == token) {
        return Ok(invalid_webhook_token());
    }
    let wait = parts.uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.eq_ignore_ascii_case("wait=true") || pair == "wait=1")
    });
    let scripted = api::script_turn(shared, account).await?;
    let now_ms = shared.now_ms();
    let mut response = match scripted.turn {
        Turn::Post => discord_message(shared, id, account, &scripted, &body, wait),
        Turn::RateLimited { wait_ms } => {
            let mut response = api::json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({
                    "message": "You are being rate limited.",
                    "retry_after": wait_ms as f64 / 1000.0,
                    "global": false,
                })
                .to_string(),
            );
            let headers = response.headers_mut();
            headers.insert(RETRY_AFTER, api::ceil_secs(wait_ms).into());
            headers.insert("x-ratelimit-remaining", 0u64.into());
            headers.insert("x-ratelimit-reset", fractional_secs(now_ms + wait_ms));
            headers.insert("x-ratelimit-reset-after", fractional_secs(wait_ms));
            headers.insert("x-ratelimit-scope", HeaderValue::from_static("user"));
            response
        }
        Turn::Fail(behaviour) => discord_failure(behaviour),
    };
    let reset_ms = scripted.reset.saturating_mul(1000);
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", shared.scenario.rate_limit.into());
    headers
        .entry("x-ratelimit-remaining")
        .or_insert(scripted.remaining(shared).into());
    headers
        .entry("x-ratelimit-reset")
        .or_insert(fractional_secs(reset_ms));
    headers
        .entry("x-ratelimit-reset-after")
        .or_insert(fractional_secs(reset_ms.saturating_sub(now_ms)));
    if let Ok(bucket) = HeaderValue::from_str(&format!("{:016x}", jwt::fnv1a(id.as_bytes()))) {
        headers.insert("x-ratelimit-bucket", bucket);
    }
    Ok(response)
}

fn discord_failure(behaviour: &Behaviour) -> Response<Full<Bytes>> {
    match behaviour {
        Behaviour::InvalidToken => invalid_webhook_token(),
        // A suspended account's webhook is gone, as a deleted one is.
        Behaviour::Suspended => unknown_webhook(),
        Behaviour::ValidationError { message } => {
            discord_error(StatusCode::BAD_REQUEST, message, 50035)
        }
        Behaviour::ServerError {
            status,
            retry_after_secs,
        } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let message = format!(
                "{}: {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Server Error")
            );
            let mut response = discord_error(status, &message, 0);
            if let Some(secs) = retry_after_secs {
                response.headers_mut().insert(RETRY_AFTER, (*secs).into());
            }
            response
        }
        _ => discord_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500: Internal Server Error",
            0,
        ),
    }
}

fn discord_message(
    shared: &Shared,
    webhook_id: &str,
    account: &AccountScript,
    scripted: &Scripted<'_>,
    body: &[u8],
    wait: bool,
) -> Response<Full<Bytes>> {
    let Ok(input) = serde_json::from_slice::<Execute>(body) else {
        return discord_error(
            StatusCode::BAD_REQUEST,
            "The request body contains invalid JSON.",
            50109,
        );
    };
    let Some(content) = input.content.filter(|c| !c.trim().is_empty()) else {
        return discord_error(
            StatusCode::BAD_REQUEST,
            "Cannot send an empty message",
            50006,
        );
    };
    if content.chars().count() > DISCORD_MAX_CONTENT {
        return discord_error(StatusCode::BAD_REQUEST, "Invalid Form Body", 50035);
    }
    let now_ms = shared.now_ms();
    let seq = shared.next_seq();
    let id = (now_ms.saturating_sub(DISCORD_EPOCH_MS) << 22) | (seq & 0x3f_ffff);
    scripted
        .state
        .webhook_messages
        .fetch_add(1, Ordering::Relaxed);
    shared.record_post(Post {
        account: account.name.clone(),
        platform: Platform::Discord,
        text: content.clone(),
        id: id.to_string(),
        idempotency_key: None,
        rkey: None,
        media: Vec::new(),
        seq,
    });
    if !wait {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        return response;
    }
    let channel_id = jwt::fnv1a(format!("channel {webhook_id}").as_bytes()) >> 1;
    let time = SystemTime::UNIX_EPOCH + Duration::from_millis(now_ms);
    let timestamp = humantime::format_rfc3339_micros(time)
        .to_string()
        .replace('Z', "+00:00");
    api::json_response(
        StatusCode::OK,
        json!({
            "id": id.to_string(),
            "channel_id": channel_id.to_string(),
            "content": content,
            "timestamp": timestamp,
        })
        .to_string(),
    )
}

#[derive(Deserialize)]
struct SlackMessage {
    text: Option<String>,
}

#[derive(Deserialize)]
struct SlackForm {
    payload: String,
}

/// `POST /services/{T}/{B}/{secret}`
pub(crate) async fn slack(shared: &Shared, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let Some(body) = api::read_body(body).await else {
        return Ok(api::text_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_payload",
        ));
    };
    let path = parts.uri.path().trim_start_matches("/services/");
    let segments: Vec<&str> = path.split('/').collect();
    let [team, bot, secret] = segments[..] else {
        return Ok(no_service());
    };
    let Some(&i) = shared
        .webhooks
        .slack
        .get(&(team.to_owned(), bot.to_owned()))
    else {
        return Ok(no_service());
    };
    let account = &shared.scenario.accounts[i];
    if !matches!(account.webhook(), Some(Webhook::Slack { secret: s, .. }) if s == secret) {
        return Ok(api::text_response(StatusCode::FORBIDDEN, "invalid_token"));
    }
    let is_form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let scripted = api::script_turn(shared, account).await?;
    Ok(match scripted.turn {
        Turn::Post => slack_message(shared, account, &scripted, &body, is_form),
        Turn::RateLimited { wait_ms } => {
            let mut response = api::text_response(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
            response
                .headers_mut()
                .insert(RETRY_AFTER, api::ceil_secs(wait_ms).into());
            response
        }
        Turn::Fail(Behaviour::InvalidToken) => {
            api::text_response(StatusCode::FORBIDDEN, "invalid_token")
        }
        // A suspended account's webhook is gone, as a removed one is.
        Turn::Fail(Behaviour::Suspended) => no_service(),
        Turn::Fail(Behaviour::ServerError {
            status,
            retry_after_secs,
        }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = api::text_response(status, "internal_error");
            if let Some(secs) = retry_after_secs {
                response.headers_mut().insert(RETRY_AFTER, (*secs).into());
            }
            response
        }
        Turn::Fail(_) => api::text_response(StatusCode::BAD_REQUEST, "invalid_payload"),
    })
}

fn no_service() -> Response<Full<Bytes>> {
    api::text_response(StatusCode::NOT_FOUND, "no_service")
}

fn slack_message(
    shared: &Shared,
    account: &AccountScript,
    scripted: &Scripted<'_>,
    body: &[u8],
    is_form: bool,
) -> Response<Full<Bytes>> {
    // Slack takes JSON, or a form whose `payload` field is the JSON.
    let message = if is_form {
        serde_urlencoded::from_bytes::<SlackForm>(body)
            .ok()
            .and_then(|form| serde_json::from_str::<SlackMessage>(&form.payload).ok())
    } else {
        serde_json::from_slice::<SlackMessage>(body).ok()
    };
    let Some(text) = message
        .and_then(|m| m.text)
        .filter(|t| !t.trim().is_empty())
    else {
        return api::text_response(StatusCode::BAD_REQUEST, "invalid_payload");
    };
    let now_ms = shared.now_ms();
    let seq = shared.next_seq();
    // Slack names messages by timestamp: seconds, and six digits that the
    // sequence makes unique.
    let id = format!("{}.{:06}", now_ms / 1000, seq % 1_000_000);
    scripted
        .state
        .webhook_messages
        .fetch_add(1, Ordering::Relaxed);
    shared.record_post(Post {
        account: account.name.clone(),
        platform: Platform::Slack,
        text,
        id,
        idempotency_key: None,
        rkey: None,
        media: Vec::new(),
        seq,
    });
    api::text_response(StatusCode::OK, "ok")
}
