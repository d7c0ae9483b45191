//! {{name}}: a poster for the orchestrator. Each call is one attempt of one
//! job: send the job's payload to the account's platform, and return what
//! the platform made or why it did not.
//!
//! It never holds a secret: the host adds the account's credential to
//! requests for the account's own host (`Authorization: Bearer`, or the
//! webhook secret where the path says `{secret}`), logs in or refreshes
//! when `describe-auth` says how, and cuts secrets out of the answers.
//!
//! As written it posts `payload.text` to a Mastodon-style
//! `POST {base-url}/api/v1/statuses`; change `post` for your platform. A
//! job's attached images (its payload's `media`) are read through
//! `orchestrator::plugin::media` (`attachments`, `read`; see
//! wit/plugin.wit).
//!
//! Build: cargo build --release --target wasm32-wasip2
//! Check: orchestrator plugins inspect target/wasm32-wasip2/release/{{crate}}.wasm

wit_bindgen::generate!({ world: "poster", path: "wit", generate_all });

mod http;

use exports::orchestrator::plugin::auth::{self, AuthSupport};
use exports::orchestrator::plugin::limits::{self, RateBudget};
use exports::orchestrator::plugin::{metadata, post};
use orchestrator::plugin::types::{JobContext, PluginInfo, PostFailure, Receipt};

/// The most of an answer read; the rest is cut.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

struct Plugin;

impl metadata::Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Publishes posts to … (say where)".into(),
        }
    }
}

impl auth::Guest for Plugin {
    /// Static tokens (`auth = "bearer"`) and webhooks (`"url-secret"`) need
    /// nothing here. A platform with a login describes it: see
    /// `session-login` and `oauth2-refresh` in wit/plugin.wit.
    fn describe_auth() -> AuthSupport {
        AuthSupport {
            session: None,
            oauth2: None,
            token_lifetime_seconds: 0,
            expired_codes: Vec::new(),
        }
    }
}

impl limits::Guest for Plugin {
    /// The rate limits your platform publishes, as defaults for the
    /// accounts this poster serves (an account's own `rate` wins), e.g.
    /// `RateBudget { count: 300, per_ms: 300_000, scope: BudgetScope::Account }`.
    fn rate_budgets() -> Vec<RateBudget> {
        Vec::new()
    }
}

impl post::Guest for Plugin {
    fn post(job: JobContext) -> Result<Receipt, PostFailure> {
        let payload: serde_json::Value = serde_json::from_str(&job.payload)
            .map_err(|e| http::failure(format!("the payload is not JSON: {e}")))?;
        let Some(text) = payload.get("text").and_then(|t| t.as_str()) else {
            return Err(http::failure("the payload has no `text`".into()));
        };
        let url = format!(
            "{}/api/v1/statuses",
            job.account.base_url.trim_end_matches('/')
        );
        let body = serde_json::json!({ "status": text }).to_string();
        let response = http::send(
            &http::Request {
                method: http::Method::Post,
                url: &url,
                headers: &[
                    ("content-type", "application/json"),
                    // The same on every attempt: the platform drops repeats.
                    ("idempotency-key", &job.idempotency_key),
                ],
                body: body.as_bytes(),
            },
            MAX_RESPONSE_BYTES,
        )?;
        let answer: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
        if (200..300).contains(&response.status)
            && let Some(id) = answer.get("id").and_then(|v| v.as_str())
        {
            return Ok(Receipt {
                remote_id: id.into(),
                url: answer.get("url").and_then(|v| v.as_str()).map(Into::into),
            });
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let (retry_after_ms, rate_limit_reset) =
            http::retry_hint(&response, "x-ratelimit-remaining", "x-ratelimit-reset", now_ms);
        Err(PostFailure {
            message: http::bounded(&String::from_utf8_lossy(&response.body), 1024),
            http_status: Some(response.status),
            error_code: answer.get("error").and_then(|v| v.as_str()).map(Into::into),
            retry_after_ms,
            rate_limit_reset,
            transport_error: None,
        })
    }
}

export!(Plugin);
