//! Posts `payload.text` to a Discord or Slack incoming webhook (the
//! account's `style` setting: `discord`, the default, or `slack`).
//!
//! A webhook's URL is its secret: accounts use the `url-secret` scheme, and
//! this plugin writes the literal path segment `{secret}` where the host puts
//! the webhook. Neither platform has idempotency keys, so a retry after a
//! lost answer may post twice; nothing here can prevent that.

// Contract 0.3.0, frozen in wit/0.3.0: it attaches no media, and the
// tests keep a 0.3.0 poster in use.
wit_bindgen::generate!({
    world: "poster",
    path: "../../wit/0.3.0",
    generate_all,
});

#[path = "../../shared/api.rs"]
mod api;
#[path = "../../shared/http.rs"]
mod http;
mod webhook;

use exports::orchestrator::plugin::auth::{self, AuthSupport};
use exports::orchestrator::plugin::{metadata, post};
use orchestrator::plugin::log::{Level, log};
use orchestrator::plugin::types::{JobContext, PluginInfo, PostFailure, Receipt};

/// Webhook answers are a message object or a word; anything past this is cut.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

struct WebhookPoster;

impl metadata::Guest for WebhookPoster {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "webhook-poster".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Posts messages to Discord or Slack incoming webhooks".into(),
        }
    }
}

impl auth::Guest for WebhookPoster {
    /// Webhooks need no login: the secret is the URL (`url-secret`).
    fn describe_auth() -> AuthSupport {
        AuthSupport {
            session: None,
            oauth2: None,
            token_lifetime_seconds: 0,
            expired_codes: Vec::new(),
        }
    }
}

impl post::Guest for WebhookPoster {
    fn post(job: JobContext) -> Result<Receipt, PostFailure> {
        let attempt = webhook::attempt(&job)?;
        log(
            Level::Debug,
            &format!(
                "job {} attempt {}: {:?} webhook",
                job.job_id, job.attempt, attempt.style
            ),
        );
        let response = http::send(
            &http::Request {
                method: http::Method::Post,
                url: &attempt.url,
                headers: &[
                    ("content-type", "application/json"),
                    ("user-agent", api::USER_AGENT),
                ],
                body: &attempt.body,
            },
            MAX_RESPONSE_BYTES,
        )?;
        webhook::outcome(
            &response,
            attempt.style,
            &job.idempotency_key,
            api::now_ms(),
        )
    }
}

export!(WebhookPoster);
