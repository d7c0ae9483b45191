//! Scenario files: who the accounts are and how each one misbehaves.
//!
//! A [`Scenario`] is TOML. Each account has a token, an optional `script` of
//! responses for its first requests (in order, each repeated `times`), and a
//! behaviour `then` for every request after the script (default `ok`):
//!
//! ```toml
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
//! ```
//!
//! Request numbers count per account, so the same scenario scripts the same
//! outcomes however requests from different accounts interleave.

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

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountScript {
    pub name: String,
    pub token: String,
    #[serde(default)]
    pub script: Vec<Step>,
    #[serde(default = "ok")]
    pub then: Behaviour,
    /// Added to every response of this account.
    #[serde(default)]
    pub delay_ms: u64,
}

fn ok() -> Behaviour {
    Behaviour::Ok
}

impl AccountScript {
    /// The behaviour for this account's `n`th request (from 0).
    pub fn behaviour_for(&self, n: u64) -> &Behaviour {
        let mut left = n;
        for step in &self.script {
            if left < u64::from(step.times) {
                return &step.behaviour;
            }
            left -= u64::from(step.times);
        }
        &self.then
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
        let mut seen = std::collections::HashSet::new();
        for account in &scenario.accounts {
            if !seen.insert(account.token.as_str()) {
                return Err(format!(
                    "account {} reuses a token of another account; tokens identify accounts",
                    account.name
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
            &Behaviour::RateLimited { reset_secs: 5 }
        );
        assert_eq!(carol.behaviour_for(3), &Behaviour::Suspended);
        assert_eq!(carol.behaviour_for(99), &Behaviour::Suspended);
        assert!(!scenario.is_open());
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
}
