//! The Mastodon poster as a trusted native plugin: the same requests and the
//! same reading of responses as the sandboxed `mastodon-poster` (it includes
//! that plugin's `mastodon.rs`), sent by a small blocking HTTP/1.1 client of
//! its own. It holds the account's token and sends it itself; it runs
//! unsandboxed. Plain `http://` only: an HTTPS platform needs a TLS client
//! here (e.g. the `ureq` crate).

use orchestrator_native_plugin::contract::{JobContext, PluginInfo, PostFailure, Receipt};
use orchestrator_native_plugin::{Poster, export_poster};

mod http;
#[path = "../../mastodon-poster/src/mastodon.rs"]
mod mastodon;
#[path = "../../mastodon-poster/src/response.rs"]
mod response;
#[path = "../../mastodon-poster/src/time.rs"]
mod time;

/// Responses larger than this are cut off: a status is a few kilobytes.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

struct NativePoster;

impl Poster for NativePoster {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "native-poster".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Publishes statuses to a Mastodon-compatible API (native, unsandboxed)"
                .into(),
        }
    }

    fn post(job: JobContext, token: Option<String>) -> Result<Receipt, PostFailure> {
        // A test hook: the host must survive a plugin that panics. A field
        // `"panic": true`, not any status that mentions the word.
        let asked_to_panic = serde_json::from_str::<serde_json::Value>(&job.payload)
            .is_ok_and(|payload| payload["panic"] == serde_json::Value::Bool(true));
        if asked_to_panic {
            panic!("asked to panic by job {}", job.job_id);
        }
        // Native posters get no media (the native ABI has none): the host
        // gives them no job with attachments.
        let (url, body) = mastodon::status(&job, false)?.request(&job, &[]);
        let authorization = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("idempotency-key", job.idempotency_key.as_str()),
            (
                "user-agent",
                concat!("orchestrator-native-poster/", env!("CARGO_PKG_VERSION")),
            ),
        ];
        if let Some(value) = &authorization {
            headers.push(("authorization", value));
        }
        let response = http::post(&url, &headers, &body, MAX_RESPONSE_BYTES)?;
        mastodon::outcome(&response)
    }
}

export_poster!(NativePoster);
