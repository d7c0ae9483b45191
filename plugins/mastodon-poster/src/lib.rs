//! Publishes `payload.status` to a Mastodon-compatible API.
//!
//! One call of `post` is one attempt: `POST {base_url}/api/v1/statuses` with
//! the job's idempotency key as `Idempotency-Key`. The token is not this
//! plugin's business: the host adds `Authorization` to requests bound for the
//! account's own host. Error responses become structured failures carrying
//! the status, Mastodon's `error` text and the retry hints the platform sent.

wit_bindgen::generate!({
    world: "poster",
    path: "../../wit/0.2.0",
    generate_all,
});

mod http;
mod mastodon;
mod response;
mod time;

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

impl post::Guest for MastodonPoster {
    fn post(job: JobContext) -> Result<Receipt, PostFailure> {
        let (url, body) = mastodon::request(&job)?;
        log(
            Level::Debug,
            &format!("job {} attempt {}: POST {url}", job.job_id, job.attempt),
        );
        let request = http::Request {
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
        let response = http::post(&request, MAX_RESPONSE_BYTES)?;
        mastodon::outcome(&response)
    }
}

export!(MastodonPoster);
