//! Publishes `payload.text` to Bluesky, speaking AT Protocol XRPC:
//! `com.atproto.repo.uploadBlob` stores each of the job's attachments,
//! `com.atproto.repo.createRecord` makes an `app.bsky.feed.post` in the repo
//! the account's `identifier` setting names (the images embedded with their
//! alt text), and `com.atproto.repo.getRecord` finds a post an earlier
//! attempt made.
//!
//! Logging in is the host's: `describe-auth` tells it how (createSession,
//! then refreshSession), and it adds the session's access token to this
//! plugin's requests. Posting is exactly once across retries: the record key
//! comes from the job's idempotency key, so a retry of a post that landed is
//! refused as "Record already exists", and the post it found is the receipt.
//! (A retry uploads its images again; a blob no record takes is the
//! platform's to clean up.)

wit_bindgen::generate!({
    world: "poster",
    path: "../../wit",
    generate_all,
});

#[path = "../../shared/api.rs"]
mod api;
#[path = "../../shared/media.rs"]
mod attachments;
#[path = "../../shared/http.rs"]
mod http;
mod xrpc;

use exports::orchestrator::plugin::auth::{self, AuthSupport, SessionLogin};
use exports::orchestrator::plugin::limits::{self, BudgetScope, RateBudget};
use exports::orchestrator::plugin::{metadata, post};
use orchestrator::plugin::log::{Level, log};
use orchestrator::plugin::types::{JobContext, PluginInfo, PostFailure, Receipt};
use std::time::SystemTime;

/// XRPC answers here are a few hundred bytes; anything past this is cut.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

struct BlueskyPoster;

impl metadata::Guest for BlueskyPoster {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "bluesky-poster".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Publishes posts to Bluesky over AT Protocol XRPC".into(),
        }
    }
}

impl auth::Guest for BlueskyPoster {
    fn describe_auth() -> AuthSupport {
        AuthSupport {
            session: Some(SessionLogin {
                login_path: "/xrpc/com.atproto.server.createSession".into(),
                identifier_field: "identifier".into(),
                password_field: "password".into(),
                refresh_path: "/xrpc/com.atproto.server.refreshSession".into(),
                access_token_field: "accessJwt".into(),
                refresh_token_field: "refreshJwt".into(),
            }),
            oauth2: None,
            // Bluesky's access JWTs carry `exp`; this is the fallback.
            token_lifetime_seconds: 7200,
            // Bluesky answers an expired access token with a 400, not a 401.
            expired_codes: vec!["ExpiredToken".into()],
        }
    }
}

impl limits::Guest for BlueskyPoster {
    /// Bluesky's write budget per account: 5,000 points an hour and
    /// 35,000 a day, a created record costing 3.
    fn rate_budgets() -> Vec<RateBudget> {
        let posts = |points: u32, per_ms: u64| RateBudget {
            count: points / 3,
            per_ms,
            scope: BudgetScope::Account,
        };
        vec![posts(5_000, 3_600_000), posts(35_000, 86_400_000)]
    }
}

impl post::Guest for BlueskyPoster {
    fn post(job: JobContext) -> Result<Receipt, PostFailure> {
        let created_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        // The job is checked before anything is uploaded.
        let mut attempt = xrpc::attempt(&job, &created_at, &[])?;
        let images = upload_all(&job)?;
        if !images.is_empty() {
            attempt = xrpc::attempt(&job, &created_at, &images)?;
        }
        log(
            Level::Debug,
            &format!(
                "job {} attempt {}: createRecord in {} with rkey {}",
                job.job_id, job.attempt, attempt.repo, attempt.rkey
            ),
        );
        let response = http::send(
            &http::Request {
                method: http::Method::Post,
                url: &attempt.url,
                headers: &[
                    ("content-type", "application/json"),
                    ("accept", "application/json"),
                    ("user-agent", api::USER_AGENT),
                ],
                body: &attempt.body,
            },
            MAX_RESPONSE_BYTES,
        )?;
        match xrpc::outcome(&response, &attempt, api::now_ms()) {
            xrpc::Outcome::Posted(receipt) => Ok(receipt),
            xrpc::Outcome::Failed(failure) => Err(failure),
            xrpc::Outcome::AlreadyExists(failure) => earlier(&job, &attempt, failure),
        }
    }
}

/// Uploads each of the job's attachments as a blob, streamed from the
/// host; the images to embed, in the payload's order.
fn upload_all(job: &JobContext) -> Result<Vec<xrpc::Image>, PostFailure> {
    let url = xrpc::upload_url(job);
    let mut images = Vec::new();
    for file in attachments::attachments() {
        let what = attachments::named(&file);
        let length = file.size.to_string();
        let response = http::send_with(
            &http::Request {
                method: http::Method::Post,
                url: &url,
                headers: &[
                    ("content-type", &file.media_type),
                    ("content-length", &length),
                    ("accept", "application/json"),
                    ("user-agent", api::USER_AGENT),
                ],
                body: &[],
            },
            MAX_RESPONSE_BYTES,
            &mut |write| attachments::stream(&file, write),
        )
        .map_err(|f| PostFailure {
            message: format!("uploading {what}: {}", f.message),
            ..f
        })?;
        let blob = xrpc::uploaded(&response, &what, api::now_ms())?;
        images.push(xrpc::Image {
            alt: file.description.clone().unwrap_or_default(),
            blob,
        });
    }
    Ok(images)
}

/// The post an earlier attempt of this job made, found by its record key;
/// without it, `refusal` stands.
fn earlier(
    job: &JobContext,
    attempt: &xrpc::Attempt,
    refusal: PostFailure,
) -> Result<Receipt, PostFailure> {
    let url = xrpc::lookup_url(job, attempt);
    let response = http::send(
        &http::Request {
            method: http::Method::Get,
            url: &url,
            headers: &[
                ("accept", "application/json"),
                ("user-agent", api::USER_AGENT),
            ],
            body: &[],
        },
        MAX_RESPONSE_BYTES,
    );
    let missing = match response {
        Ok(response) => match xrpc::found(&response, attempt) {
            Some(receipt) => {
                log(
                    Level::Info,
                    &format!(
                        "job {}: an earlier attempt already posted {}",
                        job.job_id, receipt.remote_id
                    ),
                );
                return Ok(receipt);
            }
            None => format!("getRecord answered {}", response.status),
        },
        Err(failure) => failure.message,
    };
    Err(PostFailure {
        message: format!(
            "{}, but the record with key {} in {} was not found ({missing})",
            refusal.message, attempt.rkey, attempt.repo
        ),
        ..refusal
    })
}

export!(BlueskyPoster);
