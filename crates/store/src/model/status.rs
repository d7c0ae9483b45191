//! [`StatusReport`]: everything `--status` shows, read from the store
//! alone.

use orchestrator_retry::RetryConfig;
use serde::Serialize;

use super::read_ms;
use crate::{Pause, RunPass, RunState};

/// How a process reaches a store on a server, for `--status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreConnection {
    /// The `sslmode` it connects with (`verify-full`, …).
    pub sslmode: String,
    /// Whether its connection is encrypted (TLS).
    pub encrypted: bool,
    /// The TLS version, when it is (`TLSv1.3`).
    pub tls_version: Option<String>,
}

impl std::fmt::Display for StoreConnection {
    /// `TLS (verify-full)`, `TLSv1.3 (verify-full)` or `not encrypted
    /// (sslmode=prefer)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.encrypted, &self.tls_version) {
            (true, Some(version)) => write!(f, "{version} ({})", self.sslmode),
            (true, None) => write!(f, "TLS ({})", self.sslmode),
            (false, _) => write!(f, "not encrypted (sslmode={})", self.sslmode),
        }
    }
}

/// Everything `--status` shows, read from the store alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusReport {
    pub jobs: u64,
    /// state → jobs
    pub by_state: Vec<(String, u64)>,
    /// category of the latest failure → jobs that are failed or to retry
    pub by_category: Vec<(String, u64)>,
    /// category of the latest failure → jobs that are failed
    pub failed_by_category: Vec<(String, u64)>,
    /// The newest run.
    pub last_run: Option<RunStatus>,
    /// The newest runs (at most [`RUNS_SHOWN`]), oldest first.
    pub runs: Vec<RunStatus>,
    pub runs_total: u64,
    /// The passes of the newest run.
    pub passes: Vec<PassStatus>,
    /// Jobs to retry next, in order, with why.
    pub next_retries: Vec<RetryEntry>,
    pub retries_total: u64,
    /// Jobs held for review, with why.
    pub held: Vec<RetryEntry>,
    pub held_total: u64,
    /// Failed jobs, grouped by why, most frequent first.
    pub failure_reasons: Vec<ReasonCount>,
    pub failures_total: u64,
    /// The processes of the newest run: working on it now, or the last to
    /// (a shared store marks one that stopped renewing `lost`).
    pub processes: Vec<ProcessStatus>,
    /// The account and platform waits running now ([`crate::ReadStore::pauses`];
    /// filled in by whoever knows the longest wait the run allows).
    pub pauses: Vec<Pause>,
}

/// How many runs `--status` lists.
pub const RUNS_SHOWN: usize = 10;

#[derive(Debug, Clone, Default, Serialize)]
pub struct PassStatus {
    pub run: u32,
    pub pass: u32,
    pub attempts: u64,
    pub succeeded: u64,
    /// category → failed attempts
    pub failed_by_category: Vec<(String, u64)>,
    pub in_flight: u64,
    pub result: Option<String>,
}

impl PassStatus {
    /// A pass's line of `--status` from its attempts counted by outcome and
    /// category: (outcome, category or "", attempts).
    pub(crate) fn from_counts(
        at: RunPass,
        result: Option<String>,
        counts: impl IntoIterator<Item = (String, String, u64)>,
    ) -> Self {
        let mut status = PassStatus {
            run: at.run,
            pass: at.pass,
            result,
            ..PassStatus::default()
        };
        for (outcome, category, n) in counts {
            status.attempts += n;
            match outcome.as_str() {
                "succeeded" => status.succeeded += n,
                "failed" => status.failed_by_category.push((category, n)),
                "in-flight" => status.in_flight += n,
                _ => status.failed_by_category.push((outcome, n)),
            }
        }
        status
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RetryEntry {
    pub job: String,
    pub account: String,
    pub category: Option<String>,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    pub not_before_ms: Option<u64>,
}

/// How many jobs failed for one reason.
#[derive(Debug, Clone, Serialize)]
pub struct ReasonCount {
    pub category: Option<String>,
    pub reason: Option<String>,
    pub jobs: u64,
    /// One of them, to look at.
    pub example: String,
}

/// A run, for `--status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunStatus {
    pub run: u32,
    /// `running` (a process works on it), `stopped` (cut short: the next
    /// `--run` with the same settings resumes it), `finished`, or `closed`
    /// (cut short, then replaced by a run with other settings).
    pub state: String,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    /// Passes begun.
    pub passes: u32,
    /// Its `--max-passes`.
    pub max_passes: u32,
    /// Its accounts; `None` for every account.
    pub accounts: Option<Vec<String>>,
    pub attempts: u64,
    /// Its retry settings, as recorded when it began or was last resumed.
    pub config: RetryConfig,
}

/// A process that worked on a run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessStatus {
    pub id: i64,
    pub run: Option<u32>,
    pub pid: u32,
    /// The machine it runs on, where several may share the store.
    pub host: Option<String>,
    pub state: String,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub stop_requested: bool,
    /// The plugins it loaded.
    pub plugins: Vec<crate::PluginUse>,
    /// How it reached a store on a server (`TLSv1.3 (verify-full)`, `not
    /// encrypted (sslmode=prefer)`), as it recorded on joining; `None` for
    /// a state file, or a process from before this was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
}

/// A run as `--status` reads it, before its stored values are checked.
pub(crate) struct RunRow {
    pub(crate) run: u32,
    pub(crate) state: String,
    pub(crate) started_ms: i64,
    pub(crate) ended_ms: Option<i64>,
    pub(crate) config: String,
    pub(crate) accounts: Option<String>,
    pub(crate) passes: u32,
    pub(crate) attempts: i64,
    /// Whether a process works on it now.
    pub(crate) live: bool,
}

impl RunRow {
    pub(crate) fn status(self) -> crate::Result<RunStatus> {
        let config = crate::join::config_from(&self.config, self.run)?;
        let state = match RunState::parse(&self.state) {
            Some(RunState::Open) if self.live => "running",
            Some(RunState::Open) => "stopped",
            Some(RunState::Finished) => "finished",
            Some(RunState::Closed) => "closed",
            None => {
                return Err(crate::StoreError::Corrupt(format!(
                    "the state of run {}: {:?}",
                    self.run, self.state
                )));
            }
        };
        Ok(RunStatus {
            run: self.run,
            state: state.into(),
            started_ms: read_ms(self.started_ms),
            ended_ms: self.ended_ms.map(read_ms),
            passes: self.passes,
            max_passes: config.max_passes,
            accounts: crate::join::accounts_from(self.accounts.as_deref(), self.run)?,
            attempts: self.attempts.max(0) as u64,
            config,
        })
    }
}
