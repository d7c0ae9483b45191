//! The plugin contract's data in plain Rust.
//!
//! The WIT package in `wit/` is the contract plugins are built against; this
//! crate mirrors its data types without any WebAssembly runtime, so that the
//! retry policy, the store and the command line can speak of a [`JobContext`],
//! a [`PostFailure`], a [`HostFault`] or a [`Classification`] without
//! depending on wasmtime. The plugin host converts between these types and
//! the generated bindings.

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod auth;
pub mod limits;
pub mod text;
pub mod time;

pub use auth::{AuthSupport, OAuth2Refresh, SessionLogin};
pub use limits::RateBudget;

use text::{ID_BYTES, MESSAGE_BYTES, NAME_BYTES, URL_BYTES, bounded};

/// The WIT package plugins are built against, without a version.
pub const CONTRACT_PACKAGE: &str = "orchestrator:plugin";

/// The contract version this host was built from: what new plugins target.
pub const CONTRACT_VERSION: semver::Version = semver::Version::new(0, 4, 0);

/// Every contract version this host serves, oldest first. A plugin built
/// against an older one keeps loading and working unchanged: the host links
/// each version's interfaces side by side.
pub const SERVED_VERSIONS: [semver::Version; 3] = [
    semver::Version::new(0, 2, 0),
    semver::Version::new(0, 3, 0),
    CONTRACT_VERSION,
];

/// The contract versions this host accepts: semver-compatible with one of
/// [`SERVED_VERSIONS`] (before 1.0, the same minor).
pub fn accepted_versions() -> AcceptedVersions {
    AcceptedVersions(
        SERVED_VERSIONS
            .iter()
            .map(|v| {
                semver::VersionReq::parse(&format!("^{v}")).expect("a caret requirement parses")
            })
            .collect(),
    )
}

/// Any of several semver requirements, shown as `^0.2.0 or ^0.3.0 or ^0.4.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedVersions(Vec<semver::VersionReq>);

impl AcceptedVersions {
    pub fn matches(&self, version: &semver::Version) -> bool {
        self.0.iter().any(|req| req.matches(version))
    }
}

impl fmt::Display for AcceptedVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, req) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            write!(f, "{req}")?;
        }
        Ok(())
    }
}

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Performs one attempt of one job.
    Poster,
    /// Turns a failure into a category.
    Classifier,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Poster => "poster",
            PluginKind::Classifier => "classifier",
        }
    }

    /// The interface whose export marks a plugin as this kind.
    pub fn interface(self) -> &'static str {
        match self {
            PluginKind::Poster => "post",
            PluginKind::Classifier => "classify",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
}

impl PluginInfo {
    /// As much of it as the host keeps (see [`text`]).
    pub fn bounded(self) -> Self {
        PluginInfo {
            name: bounded(self.name, NAME_BYTES),
            version: bounded(self.version, NAME_BYTES),
            description: bounded(self.description, URL_BYTES),
        }
    }
}

/// The non-secret settings of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub base_url: String,
    #[serde(default)]
    pub settings: Vec<(String, String)>,
}

/// Everything a plugin learns about the job it works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContext {
    pub job_id: String,
    pub account: Account,
    /// The job's payload as JSON text.
    pub payload: String,
    pub attempt: u32,
    pub pass: u32,
    pub idempotency_key: String,
}

/// What a successful attempt returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub remote_id: String,
    pub url: Option<String>,
}

/// What a failed attempt returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostFailure {
    pub message: String,
    pub http_status: Option<u16>,
    pub error_code: Option<String>,
    pub retry_after_ms: Option<u64>,
    pub rate_limit_reset: Option<String>,
    pub transport_error: Option<String>,
}

impl PostFailure {
    pub fn new(message: impl Into<String>) -> Self {
        PostFailure {
            message: message.into(),
            ..PostFailure::default()
        }
    }

    /// As much of it as the host keeps (see [`text`]).
    pub fn bounded(self) -> Self {
        PostFailure {
            message: bounded(self.message, MESSAGE_BYTES),
            error_code: self.error_code.map(|c| bounded(c, NAME_BYTES)),
            rate_limit_reset: self.rate_limit_reset.map(|r| bounded(r, NAME_BYTES)),
            transport_error: self.transport_error.map(|t| bounded(t, MESSAGE_BYTES)),
            ..self
        }
    }
}

impl Receipt {
    /// As much of it as the host keeps (see [`text`]).
    pub fn bounded(self) -> Self {
        Receipt {
            remote_id: bounded(self.remote_id, ID_BYTES),
            url: self.url.map(|u| bounded(u, URL_BYTES)),
        }
    }
}

impl fmt::Display for PostFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(status) = self.http_status {
            write!(f, "HTTP {status}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A failure the host itself saw, independent of what the plugin said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "detail")]
pub enum HostFault {
    /// The plugin trapped.
    Trap(String),
    /// The attempt ran past its deadline (milliseconds).
    Timeout(u64),
    /// The plugin exceeded its memory limit.
    OutOfMemory(String),
    /// The plugin asked for a host it was not granted.
    DeniedRequest(String),
    /// The host could not reach the platform.
    ConnectionError(String),
}

impl HostFault {
    /// As much of it as the host keeps (see [`text`]).
    pub fn bounded(self) -> Self {
        match self {
            HostFault::Trap(m) => HostFault::Trap(bounded(m, MESSAGE_BYTES)),
            HostFault::OutOfMemory(m) => HostFault::OutOfMemory(bounded(m, MESSAGE_BYTES)),
            HostFault::DeniedRequest(h) => HostFault::DeniedRequest(bounded(h, URL_BYTES)),
            HostFault::ConnectionError(m) => HostFault::ConnectionError(bounded(m, MESSAGE_BYTES)),
            timeout @ HostFault::Timeout(_) => timeout,
        }
    }

    /// The fault's kind as one word, for tables and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            HostFault::Trap(_) => "trap",
            HostFault::Timeout(_) => "timeout",
            HostFault::OutOfMemory(_) => "out-of-memory",
            HostFault::DeniedRequest(_) => "denied-request",
            HostFault::ConnectionError(_) => "connection-error",
        }
    }
}

impl fmt::Display for HostFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostFault::Trap(msg) => write!(f, "plugin trapped: {msg}"),
            HostFault::Timeout(ms) => write!(f, "attempt exceeded its {ms} ms deadline"),
            HostFault::OutOfMemory(msg) => write!(f, "plugin ran out of memory: {msg}"),
            HostFault::DeniedRequest(host) => write!(f, "request to {host} denied"),
            HostFault::ConnectionError(msg) => write!(f, "connection error: {msg}"),
        }
    }
}

/// What the classifiers look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    pub job: JobContext,
    pub failure: Option<PostFailure>,
    pub fault: Option<HostFault>,
}

/// How the host treats a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Retryable,
    Infrastructure,
    NonRetryable,
    Unknown,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Retryable,
        Category::Infrastructure,
        Category::NonRetryable,
        Category::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Retryable => "retryable",
            Category::Infrastructure => "infrastructure",
            Category::NonRetryable => "non-retryable",
            Category::Unknown => "unknown",
        }
    }

    /// The category [`Category::as_str`] names.
    pub fn parse(word: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == word)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who waits out a retry-after.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum RetryScope {
    /// Only the job that failed.
    #[default]
    Job,
    /// Every job of the job's account.
    Account,
    /// Every account on the same platform instance (host of its base URL).
    Platform,
}

impl RetryScope {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryScope::Job => "job",
            RetryScope::Account => "account",
            RetryScope::Platform => "platform",
        }
    }

    /// Reads the word [`RetryScope::as_str`] writes.
    pub fn parse(word: &str) -> Option<RetryScope> {
        [RetryScope::Job, RetryScope::Account, RetryScope::Platform]
            .into_iter()
            .find(|s| s.as_str() == word)
    }
}

impl fmt::Display for RetryScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A category plus why, and how long to wait at least, and who waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    pub category: Category,
    pub reason: String,
    pub retry_after_ms: Option<u64>,
    pub scope: RetryScope,
}

/// A classifier's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Decided(Classification),
    /// Let the next classifier in the chain decide.
    NoOpinion,
}

impl Verdict {
    /// As much of it as the host keeps (see [`text`]).
    pub fn bounded(self) -> Self {
        match self {
            Verdict::Decided(c) => Verdict::Decided(Classification {
                reason: bounded(c.reason, MESSAGE_BYTES),
                ..c
            }),
            no_opinion => no_opinion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_accepts_patch_and_rejects_minor_bumps_before_1_0() {
        let req = accepted_versions();
        assert!(req.matches(&semver::Version::new(0, 2, 0)));
        assert!(req.matches(&semver::Version::new(0, 2, 7)));
        assert!(req.matches(&semver::Version::new(0, 3, 0)));
        assert!(req.matches(&semver::Version::new(0, 4, 1)));
        assert!(!req.matches(&semver::Version::new(0, 1, 0)));
        assert!(!req.matches(&semver::Version::new(0, 5, 0)));
        assert_eq!(req.to_string(), "^0.2.0 or ^0.3.0 or ^0.4.0");
        assert!(!req.matches(&semver::Version::new(1, 0, 0)));
    }
}

/// The JSON that crosses the native-plugin C ABI (see the README's "Native
/// plugins"): what the host sends and what a native plugin answers.
pub mod native {
    use serde::{Deserialize, Serialize};

    use super::{FailureReport, JobContext, PluginInfo, PluginKind, PostFailure, Receipt, Verdict};

    /// The symbol that names the contract version, read before any other.
    pub const VERSION_SYMBOL: &str = "orchestrator_abi_version";
    /// `char *orchestrator_describe(void)`: a [`Description`].
    pub const DESCRIBE_SYMBOL: &str = "orchestrator_describe";
    /// `char *orchestrator_post(const char *)`: a [`PostRequest`] in, a
    /// [`PostResponse`] out.
    pub const POST_SYMBOL: &str = "orchestrator_post";
    /// `char *orchestrator_classify(const char *)`: a [`FailureReport`] in,
    /// a [`ClassifyResponse`] out.
    pub const CLASSIFY_SYMBOL: &str = "orchestrator_classify";
    /// `void orchestrator_free(char *)`: frees a string the plugin returned.
    pub const FREE_SYMBOL: &str = "orchestrator_free";

    /// What `orchestrator_describe` returns.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Description {
        #[serde(flatten)]
        pub info: PluginInfo,
        pub kind: PluginKind,
    }

    /// One attempt, for a native poster. Unlike a sandboxed one, a native
    /// poster holds the account's token: it sends the request itself.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PostRequest {
        pub job: JobContext,
        /// `host:port` the attempt is meant to reach.
        pub granted: Vec<String>,
        /// The bearer token for the account's own host, if it has one.
        pub token: Option<String>,
    }

    /// A native poster's answer.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum PostResponse {
        Posted(Receipt),
        Failed(PostFailure),
        /// The plugin failed itself (a caught panic): a host fault.
        Trap(String),
    }

    /// A native classifier's answer.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum ClassifyResponse {
        Verdict(Verdict),
        Trap(String),
    }

    /// What a native classifier is sent (the same report a sandboxed one gets).
    pub type ClassifyRequest = FailureReport;
}
