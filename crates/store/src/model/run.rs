//! [`Joined`]: the run a process works on, and the values of runs, passes
//! and processes around it.

use orchestrator_contract::{Category, RetryScope};
use orchestrator_retry::RetryConfig;
use serde::{Deserialize, Serialize};

use super::read_ms;

/// One orchestrator process working on a run. A SQLite store has one at a
/// time; a PostgreSQL store may have many, on many machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId(pub i64);

/// A pass of a run: passes are numbered from 1 in every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunPass {
    pub run: u32,
    pub pass: u32,
}

/// A process as it joins a run.
#[derive(Debug, Clone)]
pub struct NewProcess {
    pub pid: u32,
    /// The retry settings it was started with.
    pub config: RetryConfig,
    pub workers: u32,
    /// Only these accounts' jobs; `None` for every account.
    pub accounts: Option<Vec<String>>,
    /// How long the platform remembers an idempotency key: an uncertain
    /// attempt older than this is held for review instead of retried.
    pub key_window_ms: u64,
    /// The plugins it loaded, for whoever looks at the run.
    pub plugins: Vec<crate::PluginUse>,
}

/// The run a process works on, as [`crate::RunStore::join_run`] found or
/// began it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub process: ProcessId,
    /// The run's number: 1 for a batch's first.
    pub run: u32,
    /// The run's accounts: `None` for every account.
    pub accounts: Option<Vec<String>>,
    pub how: JoinedHow,
}

/// What joining a run would do, worked out without changing the store
/// ([`crate::ReadStore::preview_join`]).
#[derive(Debug, Clone)]
pub struct JoinPreview {
    /// The run it would work on, and how (the process id was never
    /// stored).
    pub joined: Joined,
    /// The jobs as stored, read at the same moment as the rest.
    pub before: Vec<crate::JobSummary>,
    /// The jobs as the process would find them once it had joined and
    /// taken back what nobody holds: in flight from a dead process made
    /// eligible (or held for review), failures reopened by a new run.
    pub after: Vec<crate::JobSummary>,
}

/// How a process came to work on its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinedHow {
    /// A new run. Jobs that failed in earlier runs with a category its
    /// settings retry were reopened (`reopened`); the other failed ones are
    /// `skipped`. `closed` is a run that was cut short under other
    /// settings, closed now.
    Began {
        reopened: u64,
        skipped: Vec<Skipped>,
        closed: Option<ClosedRun>,
    },
    /// The run that was cut short (a crash, a stop, a signal), under the
    /// same settings: its passes and every job's budget go on.
    Resumed,
    /// A run that other processes are working on now (a shared store).
    Joined { others: u64 },
}

/// A run cut short and not resumed, because the new one's settings differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedRun {
    pub run: u32,
    /// The settings that differ, as flags with both values.
    pub differences: Vec<String>,
}

/// Jobs that failed in an earlier run and that a new run does not retry,
/// by the category of their last failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub category: Category,
    pub jobs: u64,
    /// One of them, to look at.
    pub example: String,
}

/// Where a run stands, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Begun and not ended: being worked on, or cut short and waiting for
    /// the next `--run` to resume it.
    Open,
    /// Its passes ended: nothing left to retry in it, or passes ran out.
    Finished,
    /// Cut short, and replaced by a run with other settings.
    Closed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Open => "open",
            RunState::Finished => "finished",
            RunState::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [RunState::Open, RunState::Finished, RunState::Closed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// How a process stopped working on its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessState {
    Running,
    /// Its run ended.
    Finished,
    /// Stopped by `--stop-all`, a signal or an error before its run ended.
    Stopped,
}

impl ProcessState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessState::Running => "running",
            ProcessState::Finished => "finished",
            ProcessState::Stopped => "stopped",
        }
    }
}

/// How much one claim of a shared store takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimLimit {
    pub jobs: usize,
    /// Accounts, whose jobs go to one run at a time: enough to keep the
    /// run's workers busy (one attempt per account in flight), few enough
    /// to leave the rest to the other processes.
    pub accounts: usize,
}

/// Where the newest pass stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassMark {
    pub pass: u32,
    /// When it opens (ms since the epoch): the process that ended the pass
    /// before it adds the retry delay.
    pub opens_ms: u64,
    pub ended: bool,
}

/// A wait that holds back more than one job: an account's, or every account
/// on the platform instance the account posts to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pause {
    /// [`RetryScope::Account`] or [`RetryScope::Platform`].
    pub scope: RetryScope,
    /// The account whose attempt asked for the wait.
    pub account: String,
    /// Until when (ms since the epoch).
    pub until_ms: u64,
    /// Why, as the attempt that asked for the longest of these waits was
    /// classified.
    pub reason: Option<String>,
}

impl Pause {
    /// A wait as a store keeps it: a scope it cannot read is refused, not
    /// guessed.
    pub(crate) fn from_stored(
        scope: String,
        account: String,
        until_ms: i64,
        reason: Option<String>,
    ) -> crate::Result<Self> {
        let scope = RetryScope::parse(&scope)
            .ok_or_else(|| crate::StoreError::Corrupt(format!("retry scope {scope:?}")))?;
        Ok(Pause {
            scope,
            account,
            until_ms: read_ms(until_ms),
            reason,
        })
    }
}
