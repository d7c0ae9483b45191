//! Publishes `payload.status` to a Mastodon-compatible API, with the job's
//! attachments as media.
//!
//! One call of `post` is one attempt: each attachment uploaded (`POST
//! {base_url}/api/v2/media`, see [`upload`]), then `POST
//! {base_url}/api/v1/statuses` with their `media_ids` and the job's
//! idempotency key as `Idempotency-Key`. The token is not this plugin's
//! business: the host adds `Authorization` to requests bound for the
//! account's own host. Error responses become structured failures carrying
//! the status, Mastodon's `error` text and the retry hints the platform
//! sent.

wit_bindgen::generate!({
    world: "poster",
    path: "../../wit",
    generate_all,
});

#[path = "../../shared/media.rs"]
mod attachments;
#[allow(
    dead_code,
    reason = "shared by the platform posters; this one needs less of it"
)]
#[path = "../../shared/http.rs"]
mod http;
mod mastodon;
/// `mastodon.rs` reads responses of this shape, whichever client fetched
/// them; here it is `http.rs`'s.
mod response {
    pub use crate::http::Response;
}
mod time;
mod upload;

use exports::orchestrator::plugin::auth::{self, AuthSupport};
use exports::orchestrator::plugin::limits::{self, BudgetScope, RateBudget};
use exports::orchestrator::plugin::{metadata, post};
use orchestrator::plugin::log::{Level, log};
use orchestrator::plugin::types::{JobContext, PluginInfo, PostFailure, Receipt};

/// Responses larger than this are cut off: a status is a few kilobytes.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

struct MastodonPoster;

impl metadata::Guest for MastodonPoster {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "mastodon-poster".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Publishes statuses to a Mastodon-compatible API".into(),
        }
    }
}

impl auth::Guest for MastodonPoster {
    /// Mastodon accounts use a static access token (`auth = "bearer"`).
    fn describe_auth() -> AuthSupport {
        AuthSupport {
            session: None,
            oauth2: None,
            token_lifetime_seconds: 0,
            expired_codes: Vec::new(),
        }
    }
}

impl limits::Guest for MastodonPoster {
    /// Mastodon's default for an account: 300 API calls in 5 minutes. A
    /// post with images makes more than one call (and uploads have their
    /// own 30 in 30 minutes): such batches give their accounts a `rate`.
    fn rate_budgets() -> Vec<RateBudget> {
        vec![RateBudget {
            count: 300,
            per_ms: 5 * 60 * 1000,
            scope: BudgetScope::Account,
        }]
    }
}

impl post::Guest for MastodonPoster {
    fn post(job: JobContext) -> Result<Receipt, PostFailure> {
        let files = attachments::attachments();
        // The payload is checked before anything is uploaded.
        let status = mastodon::status(&job, !files.is_empty())?;
        let media_ids = upload::upload_all(&job, &files)?;
        let (url, body) = status.request(&job, &media_ids);
        log(
            Level::Debug,
            &format!(
                "job {} attempt {}: POST {url} with {} media",
                job.job_id,
                job.attempt,
                media_ids.len()
            ),
        );
        let request = http::Request {
            method: http::Method::Post,
            url: &url,
            headers: &[
                ("content-type", "application/json"),
                ("accept", "application/json"),
                ("idempotency-key", &job.idempotency_key),
                (
                    "user-agent",
                    concat!("orchestrator-mastodon-poster/", env!("CARGO_PKG_VERSION")),
                ),
            ],
            body: &body,
        };
        let response = http::send(&request, MAX_RESPONSE_BYTES)?;
        mastodon::outcome(&response)
    }
}

export!(MastodonPoster);
