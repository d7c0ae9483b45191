//! Credentials the host holds for its accounts, so that no plugin ever
//! does.
//!
//! Start from [`AccountAuth`] ([`keeper`]): one per account, built from the
//! account's [`Scheme`] (the accounts file's `auth`), its secret, and what
//! its poster says of the platform's login ([`AuthSupport`]). Before every
//! attempt the runner asks it for a [`Credential`] — the secret to send
//! and where it goes — and it logs in or refreshes as needed: once per
//! account however many jobs are in flight, with the tokens the platform
//! issued kept across jobs and runs in the store, sealed ([`seal`]) under
//! a key derived from the account's own secret. A rotated refresh token is
//! stored, durably, before the access token that came with it is used.
//! The requests that carry a password or a refresh token are the host's
//! own ([`flow`]), sent through a [`Transport`] the plugin host provides.

pub mod flow;
pub mod keeper;
pub mod seal;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use keeper::AccountAuth;
pub use orchestrator_contract::AuthSupport;

/// How an account authenticates: the accounts file's `auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// A static token, sent as `Authorization: Bearer`.
    #[default]
    Bearer,
    /// The secret is part of the URL (a webhook): the host puts it where
    /// the poster wrote `{secret}` in the path.
    UrlSecret,
    /// A password traded for an access and a refresh token (Bluesky).
    Session,
    /// A rotating OAuth 2 refresh token traded for access tokens.
    OAuth2,
}

impl Scheme {
    /// Every scheme, as the accounts file spells it.
    pub const NAMES: &[&str] = &["bearer", "url-secret", "session", "oauth2"];

    pub fn parse(text: &str) -> Option<Scheme> {
        Some(match text {
            "bearer" => Scheme::Bearer,
            "url-secret" => Scheme::UrlSecret,
            "session" => Scheme::Session,
            "oauth2" => Scheme::OAuth2,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Bearer => "bearer",
            Scheme::UrlSecret => "url-secret",
            Scheme::Session => "session",
            Scheme::OAuth2 => "oauth2",
        }
    }

    /// What the account's secret is under this scheme, for messages.
    pub fn secret_is(self) -> &'static str {
        match self {
            Scheme::Bearer => "its access token",
            Scheme::UrlSecret => "the secret part of its URL",
            Scheme::Session => "its password",
            Scheme::OAuth2 => "its first refresh token",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret string that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where a credential goes in the poster's requests to the account's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// In place of the path segment `{secret}`.
    UrlPath,
}

/// What one attempt sends, and what must never come back to the poster.
#[derive(Debug, Clone)]
pub struct Credential {
    pub placement: Placement,
    pub secret: Secret,
    /// Which renewal of the account's tokens this is, so that an
    /// expired-token answer renews it once, not once per job.
    pub generation: u64,
    /// Every secret of the account the host knows (password, tokens): cut
    /// out of whatever the account's host answers, before the poster reads
    /// it.
    pub scrub: Vec<Secret>,
}

impl Credential {
    /// A secret sent as it is (a static token, a webhook's URL secret),
    /// which is also the one secret to cut out of answers.
    pub fn fixed(placement: Placement, secret: Secret) -> Credential {
        Credential {
            placement,
            scrub: vec![secret.clone()],
            secret,
            generation: 0,
        }
    }
}

/// Secrets shorter than this are not cut out of texts: cutting every `d`
/// out of a page because a test account's token is `d` would garble it,
/// and no real credential is that short.
pub const SCRUB_MIN_BYTES: usize = 8;

/// Why no credential could be had for an attempt. Every text in it came
/// from the platform or the host, never holds a secret, and is bounded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The platform answered the login or refresh with an error.
    #[error("{what} was refused ({status}{}): {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Platform {
        what: &'static str,
        status: u16,
        code: Option<String>,
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// The platform could not be reached.
    #[error("{what} could not reach the platform: {reason}")]
    Unreachable { what: &'static str, reason: String },
    /// The store could not keep the tokens: nothing was used.
    #[error("the tokens could not be stored: {0}")]
    Store(String),
}

/// An HTTP exchange the host performs itself: a login or a refresh.
pub type Exchange<'a> =
    Pin<Box<dyn Future<Output = Result<http::Response<bytes::Bytes>, String>> + Send + 'a>>;

/// How the host sends its own requests (the plugin host's connection pool,
/// with its trusted roots): an answer of at most `limit` bytes, or why
/// none came.
pub trait Transport: Send + Sync {
    fn send(&self, request: http::Request<bytes::Bytes>, limit: usize) -> Exchange<'_>;
}
