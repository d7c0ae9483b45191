//! A poster for tests: it posts like `mastodon-poster`, unless the job's
//! payload has `"misbehave"`, in which case it does what a hostile or buggy
//! plugin would do: `loop`, `alloc` (without bound), `trap`, `snoop` (read a
//! file and the environment), `stray` (call `payload.url`, a host it was not
//! granted), `forge` (set its own `Authorization`), `glutton` (download
//! `payload.bytes` bytes from the sandbox), `wait` (fail with a 503 that
//! asks for a wait of `payload.ms`, u64::MAX by default), `shout` (log,
//! and fail with, a message of escape sequences and line breaks, and
//! `payload.bytes` more), or `remember` (fail if an earlier call left its
//! job behind in the instance's memory, then leave this one behind, in a
//! static and in a megabyte of heap, and post).

wit_bindgen::generate!({
    world: "poster",
    path: "../../wit/0.2.0",
    generate_all,
});

mod http;
#[allow(
    dead_code,
    reason = "shared with mastodon-poster, which uses all of it"
)]
#[path = "../../mastodon-poster/src/response.rs"]
mod response;

use exports::orchestrator::plugin::{metadata, post};
use orchestrator::plugin::log::{Level, log};
use orchestrator::plugin::types::{JobContext, PluginInfo, PostFailure, Receipt};

struct MisbehavingPoster;

/// The job a `remember` call saw: in a fresh instance, always `None`.
static LEFT_BEHIND: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

impl metadata::Guest for MisbehavingPoster {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "misbehaving-poster".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test plugin: misbehaves on request".into(),
        }
    }
}

fn failure(message: String) -> PostFailure {
    PostFailure {
        message,
        http_status: None,
        error_code: None,
        retry_after_ms: None,
        rate_limit_reset: None,
        transport_error: None,
    }
}

impl post::Guest for MisbehavingPoster {
    fn post(job: JobContext) -> Result<Receipt, PostFailure> {
        let payload: serde_json::Value =
            serde_json::from_str(&job.payload).map_err(|e| failure(e.to_string()))?;
        let base = job.account.base_url.trim_end_matches('/');
        let text = payload["status"].as_str().unwrap_or("x").to_owned();
        let body = serde_json::json!({ "status": text }).to_string();
        let mut headers = vec![
            ("content-type", "application/json"),
            ("idempotency-key", job.idempotency_key.as_str()),
        ];
        let mut url = format!("{base}/api/v1/statuses");
        match payload["misbehave"].as_str() {
            None => {}
            Some("loop") => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some("alloc") => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            Some("trap") => panic!("deliberate panic in job {}", job.job_id),
            Some("snoop") => {
                let file = std::fs::read_to_string("/etc/passwd").map(|s| s.len());
                let vars = std::env::vars().count();
                let cwd = std::env::current_dir().is_ok();
                return Err(failure(format!(
                    "snooped: file {file:?}; {vars} environment variables; cwd readable {cwd}"
                )));
            }
            Some("stray") => url = payload["url"].as_str().unwrap_or_default().to_owned(),
            Some("forge") => headers.push(("authorization", "Bearer forged-by-plugin")),
            Some("glutton") => {
                url = format!(
                    "{base}/_sandbox/huge?bytes={}",
                    payload["bytes"].as_u64().unwrap_or(0)
                );
            }
            Some("shout") => {
                // A message of `payload.bytes` bytes that tries to forge a
                // line of `explain` and to turn the terminal red.
                let filler = "x".repeat(payload["bytes"].as_u64().unwrap_or(0) as usize);
                log(
                    Level::Warn,
                    &format!("\u{1b}[31mred\nERROR forged: a line of the host's\r{filler}"),
                );
                return Err(failure(format!(
                    "\u{1b}[31mred\n  then:        retry\r{filler}"
                )));
            }
            Some("remember") => {
                let mut left = LEFT_BEHIND.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(earlier) = left.replace(job.job_id.clone()) {
                    return Err(failure(format!(
                        "job {earlier} left itself behind in this instance"
                    )));
                }
                // Dirty a megabyte of heap as well, past the pages the host
                // resets in place, so every way a slot is reset is used.
                let heap: Vec<u8> = job.job_id.bytes().cycle().take(1 << 20).collect();
                std::mem::forget(std::hint::black_box(heap));
            }
            Some("wait") => {
                return Err(PostFailure {
                    http_status: Some(503),
                    retry_after_ms: Some(payload["ms"].as_u64().unwrap_or(u64::MAX)),
                    ..failure("come back much later".into())
                });
            }
            Some(other) => return Err(failure(format!("unknown misbehaviour {other}"))),
        }
        let response = http::post(
            &http::Request {
                url: &url,
                headers: &headers,
                body: body.as_bytes(),
            },
            usize::MAX,
        )?;
        if response.status != 200 {
            return Err(PostFailure {
                http_status: Some(response.status),
                ..failure(format!("HTTP {}", response.status))
            });
        }
        let created: serde_json::Value =
            serde_json::from_slice(&response.body).map_err(|e| failure(e.to_string()))?;
        Ok(Receipt {
            remote_id: created["id"].as_str().unwrap_or_default().to_owned(),
            url: created["url"].as_str().map(str::to_owned),
        })
    }
}

export!(MisbehavingPoster);
