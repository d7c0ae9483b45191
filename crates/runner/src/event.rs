//! [`RunEvent`]: what a run reports as it goes (the CLI turns each into a
//! log line, the progress line and metrics; an attempt's comes with the
//! time it and each of its [`PluginCall`]s took), and [`RunOutcome`]: how
//! it ended.

use std::time::Duration;

use orchestrator_retry::{PassResult, PassTally, RetryConfig};
use orchestrator_store::JoinedHow;

/// What the run reports as it goes.
#[derive(Debug, Clone)]
pub enum RunEvent {
    Started {
        config: RetryConfig,
        jobs: u64,
        /// The run's number, and how this process came to work on it.
        run: u32,
        how: JoinedHow,
        /// The run's accounts; `None` for every account.
        accounts: Option<Vec<String>>,
        /// Where the resumed or joined run stands: its newest pass.
        at_pass: Option<u32>,
    },
    PassStarted {
        run: u32,
        pass: u32,
        max: u32,
        jobs: usize,
        /// When the rate budgets let the pass's jobs all have started (ms
        /// since the epoch), when they hold any back: the ETA is no sooner.
        budget_finish_ms: Option<u64>,
    },
    /// A plugin file changed between passes and the new one was loaded.
    /// Each side: the plugin's name, version and SHA-256.
    PluginReloaded {
        path: std::path::PathBuf,
        old: (String, String, String),
        new: (String, String, String),
        /// How long loading the new file took.
        took: Duration,
    },
    /// A plugin file changed but the new one was refused: the old one stays.
    PluginReloadRefused {
        path: std::path::PathBuf,
        reason: String,
    },
    AttemptStarted {
        pass: u32,
    },
    AttemptFinished {
        job: String,
        account: String,
        pass: u32,
        /// `None` when it posted; else the failure's category.
        failed: Option<orchestrator_contract::Category>,
        summary: String,
        /// Wall time from asking for the account's credential to the
        /// failure's classification (the store's write not included).
        took: Duration,
        /// Every plugin call the attempt made, in order, each timed: the
        /// poster's (none when no credential could be had), then each
        /// classifier asked.
        calls: Vec<PluginCall>,
    },
    PassEnded {
        pass: u32,
        result: PassResult,
    },
    Waiting {
        seconds: f64,
    },
    /// A retry-after holds back an account, or every account on a
    /// platform instance, while the others go on.
    Paused {
        scope: orchestrator_contract::RetryScope,
        account: String,
        seconds: f64,
        reason: String,
    },
    Stopping {
        grace: Duration,
    },
    /// Attempts on `account`'s platform instance get no answer, across
    /// accounts: it is down, and its failures stop counting.
    PlatformDown {
        account: String,
    },
    /// `account`'s platform instance answers again after `seconds`.
    PlatformBack {
        account: String,
        seconds: f64,
    },
    /// Too many attempts failed: the run stops as if asked to.
    Halting {
        failed: u64,
        finished: u64,
        limit: f64,
    },
}

/// One call of a plugin during an attempt, and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCall {
    /// The plugin's name, as it gives it (hostile: shown escaped).
    pub plugin: String,
    pub call: CallKind,
    pub took: Duration,
}

/// Which call of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A poster's `post`.
    Post,
    /// A classifier's `classify`.
    Classify,
}

/// How this process's work on its run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOutcome {
    pub run: u32,
    pub end: RunEnd,
    /// The run's jobs as it ended, by where they stand.
    pub tally: PassTally,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The run ended and every job (not cancelled) succeeded.
    AllSucceeded,
    /// The run ended with jobs failed, unfinished or held for review.
    SomeFailed,
    /// Stopped (by `--stop-all` or a signal) before the run ended: the
    /// next `--run` resumes it.
    Stopped,
}
