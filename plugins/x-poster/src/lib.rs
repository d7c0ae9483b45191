//! Publishes `payload.text` to X through the API v2 (`POST /2/tweets`).
//!
//! Accounts log in with OAuth 2: `describe-auth` names the token endpoint,
//! and the host trades the account's rotating refresh token for access
//! tokens and adds the current one to this plugin's requests. A 401 means
//! the access token expired, which the host renews before the next attempt.
//! X has no idempotency key; it refuses the same text twice from one
//! account (403, reported as `DuplicateContent`), which is what keeps a
//! retry after a lost answer from posting twice. On a retry of the same
//! job that refusal means an earlier attempt landed, and the attempt
//! reports the post as made (X's answer does not say its id).

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
mod x;

use exports::orchestrator::plugin::auth::{self, AuthSupport, Oauth2Refresh};
use exports::orchestrator::plugin::{metadata, post};
use orchestrator::plugin::log::{Level, log};
use orchestrator::plugin::types::{JobContext, PluginInfo, PostFailure, Receipt};

/// A post's answer is a few hundred bytes; anything past this is cut.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

struct XPoster;

impl metadata::Guest for XPoster {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "x-poster".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Publishes posts to the X API v2".into(),
        }
    }
}

impl auth::Guest for XPoster {
    fn describe_auth() -> AuthSupport {
        AuthSupport {
            session: None,
            oauth2: Some(Oauth2Refresh {
                token_path: "/2/oauth2/token".into(),
            }),
            // X's token answer says `expires_in`; this is the fallback.
            token_lifetime_seconds: 7200,
            // X says an expired token with a 401, which the host always reads
            // as expired.
            expired_codes: Vec::new(),
        }
    }
}

impl post::Guest for XPoster {
    fn post(job: JobContext) -> Result<Receipt, PostFailure> {
        let (url, body) = x::request(&job)?;
        log(
            Level::Debug,
            &format!("job {} attempt {}: POST {url}", job.job_id, job.attempt),
        );
        let response = http::send(
            &http::Request {
                method: http::Method::Post,
                url: &url,
                headers: &[
                    ("content-type", "application/json"),
                    ("accept", "application/json"),
                    ("user-agent", api::USER_AGENT),
                ],
                body: &body,
            },
            MAX_RESPONSE_BYTES,
        )?;
        match x::outcome(&response, api::now_ms()) {
            Err(failure)
                if job.attempt > 1 && failure.error_code.as_deref() == Some("DuplicateContent") =>
            {
                log(
                    Level::Info,
                    &format!(
                        "job {}: X already has this text from an earlier attempt of the job",
                        job.job_id
                    ),
                );
                Ok(Receipt {
                    remote_id: format!("earlier-attempt:{}", job.idempotency_key),
                    url: None,
                })
            }
            outcome => outcome,
        }
    }
}

export!(XPoster);
