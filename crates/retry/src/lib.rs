//! The retry policy, as plain data and pure functions.
//!
//! Start from [`RetryConfig`]: built from the command line with
//! [`RetryConfig::from_flags`], which validates it. [`decide`] says what
//! happens to a job after a failed attempt, and [`PassManager`] counts passes
//! and turns a finished pass's [`PassTally`] into a [`PassResult`].
//! [`builtin_classification`] is the host's own rule set, consulted after
//! every classifier plugin. Nothing here does I/O or knows about wasmtime,
//! so every rule is tested without a runtime or a clock.

mod builtin;
mod pass;

use std::fmt;
use std::time::Duration;

use orchestrator_contract::Category;
use serde::{Deserialize, Serialize};

pub use builtin::builtin_classification;
pub use pass::{PassManager, PassResult, PassTally};

/// How failed jobs are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryConfig {
    /// A job is tried in at most this many passes.
    pub max_passes: u32,
    /// The pause between passes.
    pub retry_delay_seconds: u64,
    /// `infrastructure` failures are retried at most this many times per job.
    pub infrastructure_retry_limit: u32,
    /// Retry `unknown` failures.
    pub retry_unknown_errors: bool,
    /// Retry `non-retryable` failures too.
    pub retry_non_retryable: bool,
    /// Exponential backoff between passes, capped at this many seconds;
    /// `None` waits `retry_delay_seconds` every time.
    #[serde(default)]
    pub backoff_cap_seconds: Option<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_passes: 3,
            retry_delay_seconds: 30,
            infrastructure_retry_limit: 3,
            retry_unknown_errors: true,
            retry_non_retryable: false,
            backoff_cap_seconds: None,
        }
    }
}

/// A retry setting that cannot work. The messages name the flags because
/// that is where the values come from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--max-passes must be at least 1")]
    MaxPasses,
    #[error("--retry-delay cannot be negative")]
    RetryDelay,
    #[error("--infra-retry-limit must be at least 1")]
    InfraRetryLimit,
}

impl RetryConfig {
    /// Builds and validates a configuration from the flags' raw values,
    /// which are signed so that `--retry-delay -1` reaches this check.
    pub fn from_flags(
        max_passes: i64,
        retry_delay_seconds: i64,
        infrastructure_retry_limit: i64,
        retry_unknown_errors: bool,
        retry_non_retryable: bool,
    ) -> Result<Self, ConfigError> {
        if max_passes < 1 {
            return Err(ConfigError::MaxPasses);
        }
        if retry_delay_seconds < 0 {
            return Err(ConfigError::RetryDelay);
        }
        if infrastructure_retry_limit < 1 {
            return Err(ConfigError::InfraRetryLimit);
        }
        Ok(RetryConfig {
            max_passes: u32::try_from(max_passes).unwrap_or(u32::MAX),
            retry_delay_seconds: retry_delay_seconds as u64,
            infrastructure_retry_limit: u32::try_from(infrastructure_retry_limit)
                .unwrap_or(u32::MAX),
            retry_unknown_errors,
            retry_non_retryable,
            backoff_cap_seconds: None,
        })
    }

    /// Turns on exponential backoff between passes, capped at `cap_seconds`.
    pub fn with_backoff(mut self, cap_seconds: u64) -> Self {
        self.backoff_cap_seconds = Some(cap_seconds);
        self
    }

    /// The wait before pass `next_pass` (2 or later). Without backoff it is
    /// the retry delay. With backoff it doubles each pass from the retry
    /// delay up to the cap, and `jitter` (a sample in `[0, 1)`) spreads it
    /// over its upper half, so many batches started together do not retry
    /// in step ("equal jitter").
    pub fn delay_before(&self, next_pass: u32, jitter: f64) -> Duration {
        let base = self.retry_delay_seconds as f64;
        let Some(cap) = self.backoff_cap_seconds else {
            return Duration::from_secs(self.retry_delay_seconds);
        };
        let doublings = next_pass.saturating_sub(2).min(62);
        let full = (base * f64::from(2u32).powi(doublings as i32)).min(cap as f64);
        let jitter = jitter.clamp(0.0, 1.0);
        Duration::from_secs_f64(full / 2.0 + full / 2.0 * jitter)
    }

    pub fn retry_delay(&self) -> Duration {
        Duration::from_secs(self.retry_delay_seconds)
    }

    /// The settings that decide which jobs a run retries and how often,
    /// where `self` differs from `other`, each as the flag and both values
    /// (`--max-passes 3 (here 5)`). A run cut short is resumed only under
    /// the same ones, so resuming never grants a job more attempts.
    pub fn budget_differences(&self, other: &RetryConfig) -> Vec<String> {
        let mut differ = Vec::new();
        if self.max_passes != other.max_passes {
            differ.push(format!(
                "--max-passes {} (here {})",
                self.max_passes, other.max_passes
            ));
        }
        if self.infrastructure_retry_limit != other.infrastructure_retry_limit {
            differ.push(format!(
                "--infra-retry-limit {} (here {})",
                self.infrastructure_retry_limit, other.infrastructure_retry_limit
            ));
        }
        let flag = |on: bool| if on { "set" } else { "not set" };
        if self.retry_unknown_errors != other.retry_unknown_errors {
            differ.push(format!(
                "--no-retry-unknown {} (here {})",
                flag(!self.retry_unknown_errors),
                flag(!other.retry_unknown_errors)
            ));
        }
        if self.retry_non_retryable != other.retry_non_retryable {
            differ.push(format!(
                "--retry-include-non-retryable {} (here {})",
                flag(self.retry_non_retryable),
                flag(other.retry_non_retryable)
            ));
        }
        differ
    }

    /// The categories whose failures a new run retries: a job that failed
    /// in an earlier run with one of these is attempted again.
    pub fn retried_categories(&self) -> Vec<Category> {
        Category::ALL
            .into_iter()
            .filter(|c| self.retries(*c))
            .collect()
    }

    /// Whether failures of `category` are retried at all under this
    /// configuration (limits aside).
    pub fn retries(&self, category: Category) -> bool {
        self.not_retried(category).is_none()
    }

    /// Why failures of `category` are not retried under this
    /// configuration, when they are not.
    pub fn not_retried(&self, category: Category) -> Option<GiveUpReason> {
        match category {
            Category::Retryable | Category::Infrastructure => None,
            Category::Unknown => {
                (!self.retry_unknown_errors).then_some(GiveUpReason::UnknownNotRetried)
            }
            Category::NonRetryable => {
                (!self.retry_non_retryable).then_some(GiveUpReason::NonRetryable)
            }
        }
    }
}

/// The block a run logs at its start.
impl fmt::Display for RetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Retry Configuration:")?;
        writeln!(f, "  Max passes: {}", self.max_passes)?;
        writeln!(f, "  Retry delay: {}s", self.retry_delay_seconds)?;
        writeln!(
            f,
            "  Infra retry limit: {}",
            self.infrastructure_retry_limit
        )?;
        write!(f, "  Retry unknown errors: {}", self.retry_unknown_errors)?;
        if self.retry_non_retryable {
            write!(f, "\n  Retry non-retryable errors: true")?;
        }
        if let Some(cap) = self.backoff_cap_seconds {
            write!(f, "\n  Backoff: exponential with jitter, capped at {cap}s")?;
        }
        Ok(())
    }
}

/// What a job has been through in this run, counting the attempt just
/// classified. Budgets are per run: each run counts afresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobHistory {
    /// Passes of this run in which the job was attempted.
    pub passes_attempted: u32,
    /// Its attempts in this run that failed as `infrastructure`.
    pub infrastructure_failures: u32,
}

/// What happens to a job after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "decision")]
pub enum Decision {
    /// Try again in the next pass.
    Retry,
    /// The job's platform is down: try again in this pass once it answers,
    /// and count the attempt against none of the job's budgets. (The
    /// runner decides this, not [`decide`]: it sees the platform.)
    Defer,
    /// Failed for good.
    GiveUp(GiveUpReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum GiveUpReason {
    /// `non-retryable`, and `--retry-include-non-retryable` is off.
    NonRetryable,
    /// `unknown`, and `--no-retry-unknown` is on.
    UnknownNotRetried,
    /// `infrastructure` failures used up `--infra-retry-limit`.
    InfraLimitReached { limit: u32 },
    /// The job was tried in `--max-passes` passes of this run.
    MaxPassesReached { max: u32 },
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GiveUpReason::NonRetryable => {
                f.write_str("non-retryable (retry anyway with --retry-include-non-retryable)")
            }
            GiveUpReason::UnknownNotRetried => {
                f.write_str("unknown, and --no-retry-unknown is set")
            }
            GiveUpReason::InfraLimitReached { limit } => write!(
                f,
                "infrastructure failures used up --infra-retry-limit {limit}"
            ),
            GiveUpReason::MaxPassesReached { max } => {
                write!(f, "tried in every pass of the run (--max-passes {max})")
            }
        }
    }
}

/// Decides a job's fate after a failed attempt of `category`.
///
/// The category's own rule comes first, so a job that fails for good says
/// why (non-retryable, limit) rather than only "out of passes".
pub fn decide(config: &RetryConfig, category: Category, history: JobHistory) -> Decision {
    if let Some(reason) = config.not_retried(category) {
        return Decision::GiveUp(reason);
    }
    // The limit counts retries: the first infrastructure failure is not a
    // retry, each one after it is.
    if category == Category::Infrastructure
        && history.infrastructure_failures > config.infrastructure_retry_limit
    {
        return Decision::GiveUp(GiveUpReason::InfraLimitReached {
            limit: config.infrastructure_retry_limit,
        });
    }
    if history.passes_attempted >= config.max_passes {
        return Decision::GiveUp(GiveUpReason::MaxPassesReached {
            max: config.max_passes,
        });
    }
    Decision::Retry
}

#[cfg(test)]
mod tests;
