//! Scenario files: who the accounts are and how each one misbehaves.
//!
//! A [`Scenario`] is TOML. Each [`AccountScript`] has credentials for one or
//! more platform shapes, an optional `script` of responses for its first
//! posting requests (in order, each repeated `times`), and a behaviour `then`
//! for every posting request after the script (default `ok`):
//!
//! ```toml
//! # Mastodon: a bearer token.
//! [[account]]
//! name = "carol"
//! token = "carol-token"
//! script = [
//!   { respond = "server-error", status = 503, times = 2 },
//!   { respond = "rate-limited", reset_secs = 1 },
//!   { respond = "drop-connection" },
//! ]
//!
//! [[account]]
//! name = "dave"
//! token = "dave-token"
//! then = { respond = "suspended" }
//!
//! # Bluesky: a handle and password for createSession; access tokens live
//! # `access_lifetime_secs` (default 7200) and at most `session_limit`
//! # sessions (default 30) may be opened per 300 s.
//! [[account]]
//! name = "erin"
//! handle = "erin.bsky.test"
//! password = "erin-app-password"
//! access_lifetime_secs = 60
//! session_limit = 5
//!
//! # Discord: the `ID/TOKEN` of /api/webhooks/ID/TOKEN.
//! [[account]]
//! name = "frank"
//! webhook = "112233/frank-webhook-token"
//! script = [{ respond = "rate-limited", reset_ms = 1250 }]
//!
//! # Slack: the `T/B/SECRET` of /services/T/B/SECRET.
//! [[account]]
//! name = "grace"
//! webhook = "T0001/B0001/grace-secret"
//!
//! # OAuth 2 (X API v2): the client id and the first refresh token of a
//! # rotating, single-use chain.
//! [[account]]
//! name = "heidi"
//! client_id = "heidi-client"
//! refresh_token = "heidi-refresh-0"
//! access_lifetime_secs = 7200
//! ```
//!
//! An account may carry several shapes at once. Request numbers count the
//! posting requests of an account, whatever the shape, so the same scenario
//! scripts the same outcomes however requests from different accounts
//! interleave. Login and refresh endpoints are not scripted.
//!
//! Uploads (Mastodon's `POST /api/v2/media`, Bluesky's `uploadBlob`) have a
//! script of their own, `upload_script` and `upload_then`, numbered by the
//! account's uploads: a scenario written before uploads existed scripts its
//! posts the same whether or not the poster attaches images. An
//! [`UploadBehaviour`] is any [`Behaviour`] or one of the upload's own:
//!
//! ```toml
//! media_size_limit = 1048576      # Mastodon files (default 16 MiB)
//! blob_upload_limit = 2000000     # Bluesky blobs (default 5 MiB)
//! media_processing_polls = 0      # default: every upload is ready at once
//! upload_rate_limit = 30          # per window and account, enforced with
//! upload_rate_limit_window_secs = 1800  # `enforce_rate_limit`
//!
//! [[account]]
//! name = "ivan"
//! token = "ivan-token"
//! upload_script = [
//!   { respond = "too-large" },
//!   { respond = "unsupported-type" },
//!   { respond = "rate-limited", reset_secs = 30 },
//!   { respond = "processing", polls = 3, times = 2 },
//! ]
//! upload_then = { respond = "server-error", status = 500 }
//! ```

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

/// How the sandbox answers one request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "respond", rename_all = "kebab-case")]
pub enum Behaviour {
    /// Create the status (200).
    Ok,
    /// 401 `The access token is invalid`.
    InvalidToken,
    /// 403 `Your login is currently disabled`.
    Suspended,
    /// 422 `Validation failed: …`.
    ValidationError {
        #[serde(default = "default_validation_message")]
        message: String,
    },
    /// 429 with `Retry-After` and `X-RateLimit-Reset` `reset_secs` from now.
    RateLimited {
        #[serde(default = "default_reset_secs")]
        reset_secs: u64,
        /// The same wait in milliseconds, overriding `reset_secs`: Discord
        /// answers a fractional `retry_after` (whole-second headers round up).
        #[serde(default)]
        reset_ms: Option<u64>,
    },
    /// An error status (`status`, default 503), with `Retry-After` when
    /// `retry_after_secs` is given.
    ServerError {
        #[serde(default = "default_server_status")]
        status: u16,
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Close the connection without answering.
    DropConnection,
    /// Wait `delay_ms`, then create the status.
    Slow { delay_ms: u64 },
}

fn default_validation_message() -> String {
    "Validation failed: Text character limit of 500 exceeded".into()
}
fn default_reset_secs() -> u64 {
    1
}
fn default_server_status() -> u16 {
    503
}

/// One scripted response, repeated `times`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Step {
    #[serde(flatten)]
    pub behaviour: Behaviour,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

impl Behaviour {
    /// How long a `rate-limited` answer asks the client to wait, in
    /// milliseconds; `None` for every other behaviour.
    pub fn rate_limit_wait_ms(&self) -> Option<u64> {
        match self {
            Behaviour::RateLimited {
                reset_secs,
                reset_ms,
            } => Some(reset_ms.unwrap_or(reset_secs.saturating_mul(1000))),
            _ => None,
        }
    }
}

/// How the sandbox answers one upload: the upload's own outcomes, or any
/// posting [`Behaviour`] (`rate-limited`, `server-error`, `drop-connection`,
/// `slow`, …), answered in the upload endpoint's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadBehaviour {
    /// Store it; a Mastodon file is processed in the scenario's
    /// `media_processing_polls`.
    Ok,
    /// Store it, and have Mastodon process it until the `polls`th
    /// `GET /api/v1/media/:id` (0: at once). Bluesky blobs are never
    /// processed, so there it is `ok`.
    Processing { polls: u32 },
    /// Refused as over the size limit, whatever its size.
    TooLarge,
    /// Refused as not an image, whatever its type.
    UnsupportedType,
    /// Everything a posting request can be scripted to do.
    Post(Behaviour),
}

/// The upload's own behaviours, as TOML spells them.
#[derive(Deserialize)]
#[serde(tag = "respond", rename_all = "kebab-case")]
enum OwnUploadBehaviour {
    Ok,
    Processing { polls: u32 },
    TooLarge,
    UnsupportedType,
}

impl<'de> Deserialize<'de> for UploadBehaviour {
    /// By hand rather than an untagged variant, whose error for a misspelt
    /// `respond` names no behaviour at all.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let table = toml::Table::deserialize(deserializer)?;
        let respond = match table.get("respond") {
            Some(toml::Value::String(respond)) => respond.clone(),
            Some(_) => return Err(D::Error::custom("`respond` must be a string")),
            None => return Err(D::Error::missing_field("respond")),
        };
        let value = toml::Value::Table(table);
        match respond.as_str() {
            "ok" | "processing" | "too-large" | "unsupported-type" => {
                Ok(match value.try_into().map_err(D::Error::custom)? {
                    OwnUploadBehaviour::Ok => UploadBehaviour::Ok,
                    OwnUploadBehaviour::Processing { polls } => {
                        UploadBehaviour::Processing { polls }
                    }
                    OwnUploadBehaviour::TooLarge => UploadBehaviour::TooLarge,
                    OwnUploadBehaviour::UnsupportedType => UploadBehaviour::UnsupportedType,
                })
            }
            _ => value.try_into().map(UploadBehaviour::Post).map_err(|e| {
                let e = one_line(&e.to_string());
                if !e.contains("unknown variant") {
                    return D::Error::custom(e);
                }
                D::Error::custom(format!(
                    "`{respond}` is no upload behaviour (`ok`, `processing`, `too-large`, \
                     `unsupported-type`) nor a posting one: {e}"
                ))
            }),
        }
    }
}

/// One scripted upload answer, repeated `times`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UploadStep {
    #[serde(flatten)]
    pub behaviour: UploadBehaviour,
    #[serde(default = "one")]
    pub times: u32,
}

/// The `n`th (from 0) of a script's answers, or `then` past its end.
fn nth<'a, B>(script: impl IntoIterator<Item = (&'a B, u32)>, then: &'a B, n: u64) -> &'a B {
    let mut left = n;
    for (behaviour, times) in script {
        if left < u64::from(times) {
            return behaviour;
        }
        left -= u64::from(times);
    }
    then
}

/// One account: its credentials for each platform shape it speaks, and how
/// its posting requests are answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountScript {
    pub name: String,
    /// Mastodon bearer token; empty when the account has none (see
    /// [`AccountScript::token`]). A `String` rather than an `Option` so code
    /// written for Mastodon-only scenarios keeps compiling.
    #[serde(default)]
    pub token: String,
    /// Bluesky handle, e.g. `alice.bsky.test`; needs `password`.
    pub handle: Option<String>,
    /// Bluesky (app) password for `createSession`.
    pub password: Option<String>,
    /// A Discord `ID/TOKEN` or Slack `T/B/SECRET` webhook path secret.
    pub webhook: Option<String>,
    /// OAuth 2 client id; needs `refresh_token`.
    pub client_id: Option<String>,
    /// The first refresh token of the account's OAuth 2 rotation chain.
    pub refresh_token: Option<String>,
    /// How long issued access tokens (Bluesky, OAuth 2) live.
    #[serde(default = "default_access_lifetime")]
    pub access_lifetime_secs: u64,
    /// Bluesky `createSession` calls allowed per 300 s.
    #[serde(default = "default_session_limit")]
    pub session_limit: u64,
    #[serde(default)]
    pub script: Vec<Step>,
    #[serde(default = "ok")]
    pub then: Behaviour,
    /// Answers to the account's first uploads, in order.
    #[serde(default)]
    pub upload_script: Vec<UploadStep>,
    /// The answer to every upload after `upload_script` (default `ok`).
    #[serde(default = "upload_ok")]
    pub upload_then: UploadBehaviour,
    /// Added to every response of this account.
    #[serde(default)]
    pub delay_ms: u64,
}

fn ok() -> Behaviour {
    Behaviour::Ok
}
fn upload_ok() -> UploadBehaviour {
    UploadBehaviour::Ok
}
fn default_access_lifetime() -> u64 {
    7200
}
fn default_session_limit() -> u64 {
    30
}

/// A webhook path secret, as the scenario's `webhook` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Webhook<'a> {
    /// `/api/webhooks/{id}/{token}`
    Discord { id: &'a str, token: &'a str },
    /// `/services/{team}/{bot}/{secret}`
    Slack {
        team: &'a str,
        bot: &'a str,
        secret: &'a str,
    },
}

impl<'a> Webhook<'a> {
    /// `ID/TOKEN` is Discord's, `T/B/SECRET` Slack's; anything else is not a
    /// webhook path (an empty part, a character a URL path would mangle).
    pub fn parse(path: &'a str) -> Option<Self> {
        let parts: Vec<&str> = path.split('/').collect();
        let fine = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        };
        if !parts.iter().all(fine) {
            return None;
        }
        match parts[..] {
            [id, token] => Some(Webhook::Discord { id, token }),
            [team, bot, secret] => Some(Webhook::Slack { team, bot, secret }),
            _ => None,
        }
    }
}

impl AccountScript {
    /// The Mastodon bearer token, if the account has one.
    pub fn token(&self) -> Option<&str> {
        Some(self.token.as_str()).filter(|t| !t.is_empty())
    }

    /// The webhook, if the account has one (validated by [`Scenario::parse`]).
    pub fn webhook(&self) -> Option<Webhook<'_>> {
        self.webhook.as_deref().and_then(Webhook::parse)
    }

    /// Checks what serde cannot: credentials that come in pairs, lifetimes.
    fn check(&self) -> Result<(), String> {
        let name = &self.name;
        let has_login = match (&self.handle, &self.password) {
            (Some(_), Some(_)) => true,
            (None, None) => false,
            (Some(_), None) => return Err(format!("account {name} has a handle but no password")),
            (None, Some(_)) => return Err(format!("account {name} has a password but no handle")),
        };
        let has_oauth = match (&self.client_id, &self.refresh_token) {
            (Some(_), Some(_)) => true,
            (None, None) => false,
            (Some(_), None) => {
                return Err(format!(
                    "account {name} has a client_id but no refresh_token"
                ));
            }
            (None, Some(_)) => {
                return Err(format!(
                    "account {name} has a refresh_token but no client_id"
                ));
            }
        };
        for (field, value) in [
            ("handle", &self.handle),
            ("password", &self.password),
            ("client_id", &self.client_id),
            ("refresh_token", &self.refresh_token),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(format!("account {name} has an empty {field}"));
            }
        }
        if let Some(webhook) = &self.webhook
            && Webhook::parse(webhook).is_none()
        {
            return Err(format!(
                "account {name}: webhook must be a Discord `ID/TOKEN` or a Slack `T/B/SECRET` path"
            ));
        }
        if self.token().is_none() && !has_login && self.webhook.is_none() && !has_oauth {
            return Err(format!(
                "account {name} has no credentials: missing field `token` \
                 (or `handle` and `password`, `webhook`, `client_id` and `refresh_token`)"
            ));
        }
        if self.access_lifetime_secs == 0 {
            return Err(format!(
                "account {name}: access_lifetime_secs must be at least 1"
            ));
        }
        Ok(())
    }

    /// The behaviour for this account's `n`th request (from 0).
    pub fn behaviour_for(&self, n: u64) -> &Behaviour {
        let script = self.script.iter().map(|s| (&s.behaviour, s.times));
        nth(script, &self.then, n)
    }

    /// The behaviour for this account's `n`th upload (from 0).
    pub fn upload_behaviour_for(&self, n: u64) -> &UploadBehaviour {
        let script = self.upload_script.iter().map(|s| (&s.behaviour, s.times));
        nth(script, &self.upload_then, n)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Accept any bearer token, naming the account after it. Scenarios that
    /// list no accounts are open.
    pub open: Option<bool>,
    /// `X-RateLimit-Limit` per window and account.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: u64,
    #[serde(default = "default_window")]
    pub rate_limit_window_secs: u64,
    /// Answer 429 once an account has used up its window, like a real
    /// instance. Off by default so benchmarks measure the sandbox, not a limit.
    #[serde(default)]
    pub enforce_rate_limit: bool,
    /// How long an `Idempotency-Key` is remembered (Mastodon: one hour).
    #[serde(default = "default_idempotency_window")]
    pub idempotency_window_secs: u64,
    /// Added to every response of an account the scenario does not list
    /// (open scenarios): a slow platform, for tests and benchmarks of many
    /// attempts in flight.
    #[serde(default)]
    pub open_delay_ms: u64,
    /// Mastodon media files larger than this are refused (422), as an
    /// instance refuses images over 16 MiB.
    #[serde(default = "default_media_size_limit")]
    pub media_size_limit: u64,
    /// Bluesky `uploadBlob` bodies larger than this are refused (413), as a
    /// PDS's `blobUploadLimit`. Images larger than 1,000,000 bytes upload
    /// but cannot be embedded in a post (the lexicon's limit).
    #[serde(default = "default_blob_upload_limit")]
    pub blob_upload_limit: u64,
    /// How many `GET /api/v1/media/:id` polls a Mastodon upload stays
    /// processing for; 0 answers the upload 200 with its URL at once.
    #[serde(default)]
    pub media_processing_polls: u32,
    /// Uploads (of either shape) per window and account: Mastodon limits
    /// media uploads apart from statuses, 30 per 30 minutes. Enforced
    /// when `enforce_rate_limit` is.
    #[serde(default = "default_upload_rate_limit")]
    pub upload_rate_limit: u64,
    #[serde(default = "default_upload_window")]
    pub upload_rate_limit_window_secs: u64,
    #[serde(default, rename = "account")]
    pub accounts: Vec<AccountScript>,
}

fn default_rate_limit() -> u64 {
    300
}
fn default_window() -> u64 {
    300
}
fn default_idempotency_window() -> u64 {
    3600
}
fn default_media_size_limit() -> u64 {
    16 << 20
}
fn default_blob_upload_limit() -> u64 {
    5 << 20
}
fn default_upload_rate_limit() -> u64 {
    30
}
fn default_upload_window() -> u64 {
    1800
}

impl Default for Scenario {
    fn default() -> Self {
        toml::from_str("").expect("the empty scenario parses")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario {path} is not valid: {message}")]
    Invalid { path: String, message: String },
}

impl Scenario {
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ScenarioError::Invalid {
            path: shown,
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
        // Each credential names one account: a second account with the same
        // one could never be told apart from the first.
        let mut tokens = HashSet::new();
        let mut handles = HashSet::new();
        let mut webhooks = HashSet::new();
        let mut refresh_tokens = HashSet::new();
        for account in &scenario.accounts {
            account.check()?;
            let name = &account.name;
            if let Some(token) = account.token()
                && !tokens.insert(token)
            {
                return Err(format!(
                    "account {name} reuses a token of another account; tokens identify accounts"
                ));
            }
            if let Some(handle) = &account.handle
                && !handles.insert(handle.to_ascii_lowercase())
            {
                return Err(format!(
                    "account {name} reuses the handle of another account; handles identify accounts"
                ));
            }
            let hook = match account.webhook() {
                Some(Webhook::Discord { id, .. }) => Some(format!("discord {id}")),
                Some(Webhook::Slack { team, bot, .. }) => Some(format!("slack {team}/{bot}")),
                None => None,
            };
            if let Some(hook) = hook
                && !webhooks.insert(hook)
            {
                return Err(format!(
                    "account {name} reuses the webhook of another account; webhooks identify accounts"
                ));
            }
            if let Some(refresh) = &account.refresh_token
                && !refresh_tokens.insert(refresh.as_str())
            {
                return Err(format!(
                    "account {name} reuses the refresh_token of another account; refresh tokens identify accounts"
                ));
            }
        }
        Ok(scenario)
    }

    pub fn is_open(&self) -> bool {
        self.open.unwrap_or(self.accounts.is_empty())
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_plays_in_order_then_falls_back() {
        let scenario = Scenario::parse(
            r#"
            [[account]]
            name = "carol"
            token = "t"
            script = [
              { respond = "server-error", status = 500, times = 2 },
              { respond = "rate-limited", reset_secs = 5 },
            ]
            then = { respond = "suspended" }
            "#,
        )
        .unwrap();
        let carol = &scenario.accounts[0];
        assert_eq!(
            carol.behaviour_for(0),
            &Behaviour::ServerError {
                status: 500,
                retry_after_secs: None
            }
        );
        assert_eq!(
            carol.behaviour_for(1),
            &Behaviour::ServerError {
                status: 500,
                retry_after_secs: None
            }
        );
        assert_eq!(
            carol.behaviour_for(2),
            &Behaviour::RateLimited {
                reset_secs: 5,
                reset_ms: None
            }
        );
        assert_eq!(carol.behaviour_for(3), &Behaviour::Suspended);
        assert_eq!(carol.behaviour_for(99), &Behaviour::Suspended);
        assert!(!scenario.is_open());
    }

    #[test]
    fn an_upload_script_plays_apart_from_the_posting_script() {
        let scenario = Scenario::parse(
            r#"
            media_processing_polls = 2
            [[account]]
            name = "ivan"
            token = "t"
            script = [{ respond = "server-error", times = 3 }]
            upload_script = [
              { respond = "too-large" },
              { respond = "unsupported-type" },
              { respond = "processing", polls = 3, times = 2 },
              { respond = "rate-limited", reset_secs = 30 },
              { respond = "slow", delay_ms = 5 },
            ]
            upload_then = { respond = "server-error", status = 500 }
            "#,
        )
        .unwrap();
        assert_eq!(scenario.media_processing_polls, 2);
        let ivan = &scenario.accounts[0];
        let expected = [
            UploadBehaviour::TooLarge,
            UploadBehaviour::UnsupportedType,
            UploadBehaviour::Processing { polls: 3 },
            UploadBehaviour::Processing { polls: 3 },
            UploadBehaviour::Post(Behaviour::RateLimited {
                reset_secs: 30,
                reset_ms: None,
            }),
            UploadBehaviour::Post(Behaviour::Slow { delay_ms: 5 }),
            UploadBehaviour::Post(Behaviour::ServerError {
                status: 500,
                retry_after_secs: None,
            }),
        ];
        for (n, behaviour) in expected.iter().enumerate() {
            assert_eq!(ivan.upload_behaviour_for(n as u64), behaviour, "upload {n}");
        }
        assert!(matches!(
            ivan.behaviour_for(0),
            Behaviour::ServerError { status: 503, .. }
        ));
        assert_eq!(ivan.behaviour_for(3), &Behaviour::Ok);
    }

    #[test]
    fn uploads_default_to_ok_with_mastodon_limits() {
        let scenario = Scenario::parse("[[account]]\nname='a'\ntoken='t'").unwrap();
        assert_eq!(
            scenario.accounts[0].upload_behaviour_for(0),
            &UploadBehaviour::Ok
        );
        assert_eq!(scenario.media_size_limit, 16 * 1024 * 1024);
        assert_eq!(scenario.blob_upload_limit, 5 * 1024 * 1024);
        assert_eq!(scenario.media_processing_polls, 0);
        assert_eq!(
            (
                scenario.upload_rate_limit,
                scenario.upload_rate_limit_window_secs
            ),
            (30, 1800)
        );
    }

    #[test]
    fn an_unknown_upload_behaviour_is_an_error() {
        let err = Scenario::parse(
            "[[account]]\nname='a'\ntoken='t'\nupload_then = { respond = 'explode' }",
        )
        .unwrap_err();
        assert!(
            err.contains("upload_then") && err.contains("`explode`"),
            "{err}"
        );
        assert!(
            err.contains("too-large") && err.contains("invalid-token"),
            "{err}"
        );
        let err = Scenario::parse(
            "[[account]]\nname='a'\ntoken='t'\nupload_script = [{ respond = 'processing' }]",
        )
        .unwrap_err();
        assert!(
            err.contains("upload_script") && err.contains("polls"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_scenario_is_open_and_always_ok() {
        let scenario = Scenario::default();
        assert!(scenario.is_open());
        assert_eq!(scenario.idempotency_window_secs, 3600);
    }

    #[test]
    fn unknown_behaviours_and_keys_are_errors() {
        let err =
            Scenario::parse("[[account]]\nname='a'\ntoken='t'\nthen = { respond = 'explode' }")
                .unwrap_err();
        assert!(err.contains("explode"), "{err}");
        let err = Scenario::parse("[[account]]\nname='a'\ntoken='t'\ncolour='red'").unwrap_err();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn the_demo_scenario_still_parses() {
        let scenario = Scenario::parse(include_str!("../scenarios/demo.toml")).unwrap();
        assert_eq!(scenario.accounts.len(), 12);
        // Mastodon accounts beside one of each other platform.
        let tokens = scenario
            .accounts
            .iter()
            .filter(|a| a.token().is_some())
            .count();
        let webhooks = scenario
            .accounts
            .iter()
            .filter(|a| a.webhook.is_some())
            .count();
        let logins = scenario
            .accounts
            .iter()
            .filter(|a| a.handle.is_some())
            .count();
        let oauth = scenario
            .accounts
            .iter()
            .filter(|a| a.client_id.is_some())
            .count();
        assert_eq!((tokens, webhooks, logins, oauth), (8, 2, 1, 1));
    }

    #[test]
    fn accounts_of_every_shape_parse_without_a_token() {
        let scenario = Scenario::parse(
            r#"
            [[account]]
            name = "sky"
            handle = "sky.bsky.test"
            password = "pw"
            access_lifetime_secs = 1
            session_limit = 2
            [[account]]
            name = "disco"
            webhook = "123/tok"
            [[account]]
            name = "slack"
            webhook = "T1/B1/secret"
            [[account]]
            name = "bird"
            client_id = "c"
            refresh_token = "r0"
            [[account]]
            name = "both"
            token = "t"
            webhook = "124/tok"
            "#,
        )
        .unwrap();
        let [sky, disco, slack, bird, both] = &scenario.accounts[..] else {
            panic!("five accounts");
        };
        assert_eq!(sky.token(), None);
        assert_eq!((sky.access_lifetime_secs, sky.session_limit), (1, 2));
        assert_eq!((bird.access_lifetime_secs, bird.session_limit), (7200, 30));
        assert_eq!(
            disco.webhook(),
            Some(Webhook::Discord {
                id: "123",
                token: "tok"
            })
        );
        assert_eq!(
            slack.webhook(),
            Some(Webhook::Slack {
                team: "T1",
                bot: "B1",
                secret: "secret"
            })
        );
        assert_eq!(both.token(), Some("t"));
    }

    #[test]
    fn malformed_accounts_are_refused_in_one_line() {
        for (scenario, expected) in [
            ("name='a'", "missing field `token`"),
            ("name='a'\ntoken=''", "missing field `token`"),
            ("name='a'\nhandle='h'", "a handle but no password"),
            ("name='a'\npassword='p'", "a password but no handle"),
            (
                "name='a'\nclient_id='c'",
                "a client_id but no refresh_token",
            ),
            (
                "name='a'\nrefresh_token='r'",
                "a refresh_token but no client_id",
            ),
            ("name='a'\nhandle=' '\npassword='p'", "an empty handle"),
            ("name='a'\nwebhook='1'", "webhook must be"),
            ("name='a'\nwebhook='1/2/3/4'", "webhook must be"),
            ("name='a'\nwebhook='1//2'", "webhook must be"),
            ("name='a'\nwebhook='1/to ken'", "webhook must be"),
            (
                "name='a'\nhandle='h'\npassword='p'\naccess_lifetime_secs=0",
                "at least 1",
            ),
        ] {
            let err = Scenario::parse(&format!("[[account]]\n{scenario}\n")).unwrap_err();
            assert!(err.contains(expected), "{scenario}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn credentials_identify_one_account_each() {
        for (first, second, expected) in [
            ("token='t'", "token='t'", "reuses a token"),
            (
                "handle='A.test'\npassword='p'",
                "handle='a.TEST'\npassword='q'",
                "reuses the handle",
            ),
            ("webhook='1/x'", "webhook='1/y'", "reuses the webhook"),
            ("webhook='T/B/x'", "webhook='T/B/y'", "reuses the webhook"),
            (
                "client_id='c'\nrefresh_token='r'",
                "client_id='c'\nrefresh_token='r'",
                "reuses the refresh_token",
            ),
        ] {
            let text = format!("[[account]]\nname='a'\n{first}\n[[account]]\nname='b'\n{second}\n");
            let err = Scenario::parse(&text).unwrap_err();
            assert!(err.contains(expected) && err.contains("account b"), "{err}");
        }
        // One client with many users is fine, and so are a Discord id and a
        // Slack team that happen to be spelt alike.
        Scenario::parse(
            "[[account]]\nname='a'\nclient_id='c'\nrefresh_token='r1'\nwebhook='T/x'\n\
             [[account]]\nname='b'\nclient_id='c'\nrefresh_token='r2'\nwebhook='T/x/y'\n",
        )
        .unwrap();
    }
}
