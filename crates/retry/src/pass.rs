//! Counting passes and judging how one ended.

use serde::{Deserialize, Serialize};

use orchestrator_contract::text::count;

use crate::RetryConfig;

/// Where the jobs of a run stand, counted by the words every report uses:
/// the pass results, the end-of-run line and `--status` say the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassTally {
    pub succeeded: u32,
    /// Jobs still open (pending, to retry, or in flight): a later pass of
    /// this run, or the next run, attempts them.
    pub unfinished: u32,
    /// Jobs the run gave up on, in this run or an earlier one. The next run
    /// retries those whose category its settings retry.
    pub failed: u32,
    /// Jobs held for a person to review (an uncertain attempt too old to
    /// retry blindly); no pass touches them.
    pub held: u32,
    /// Jobs an operator cancelled; never attempted again.
    pub cancelled: u32,
}

/// How a pass ended, and so what the run does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum PassResult {
    /// Every job succeeded.
    AllDone,
    /// Some jobs will be retried in the next pass.
    RetryableRemain { jobs: u32 },
    /// This was the run's last pass: what is still open is left to the
    /// next run.
    MaxPassesReached { failed: u32, unfinished: u32 },
    /// Some jobs failed and none is left to retry in this run.
    NothingRetryable { failed: u32 },
}

impl PassResult {
    /// Whether the run goes on to another pass.
    pub fn continues(&self) -> bool {
        matches!(self, PassResult::RetryableRemain { .. })
    }
}

impl std::fmt::Display for PassResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassResult::AllDone => f.write_str("all jobs done"),
            PassResult::RetryableRemain { jobs } => {
                write!(f, "{} to retry", count((*jobs).into(), "job"))
            }
            PassResult::MaxPassesReached { failed, unfinished } => write!(
                f,
                "max passes reached with {} failed and {unfinished} unfinished",
                count((*failed).into(), "job")
            ),
            PassResult::NothingRetryable { failed } => write!(
                f,
                "nothing retryable remains; {} failed",
                count((*failed).into(), "job")
            ),
        }
    }
}

/// Starts and ends passes under a [`RetryConfig`].
#[derive(Debug, Clone)]
pub struct PassManager {
    config: RetryConfig,
    current: u32,
}

impl PassManager {
    /// A manager that has already seen `completed` passes of its run (0 for
    /// a new run; more when a run resumes).
    pub fn new(config: RetryConfig, completed: u32) -> Self {
        PassManager {
            config,
            current: completed,
        }
    }

    pub fn config(&self) -> &RetryConfig {
        &self.config
    }

    /// The pass in progress or last ended; 0 before the first.
    pub fn current(&self) -> u32 {
        self.current
    }

    /// Starts the next pass and returns its number, or `None` when all
    /// `max_passes` have been used.
    pub fn start_pass(&mut self) -> Option<u32> {
        if self.current >= self.config.max_passes {
            return None;
        }
        self.current += 1;
        Some(self.current)
    }

    /// Judges the pass that just ended, from the run's tally after it.
    pub fn end_pass(&self, tally: PassTally) -> PassResult {
        if self.current >= self.config.max_passes && (tally.unfinished > 0 || tally.failed > 0) {
            return PassResult::MaxPassesReached {
                failed: tally.failed,
                unfinished: tally.unfinished,
            };
        }
        if tally.unfinished > 0 {
            return PassResult::RetryableRemain {
                jobs: tally.unfinished,
            };
        }
        if tally.failed > 0 {
            return PassResult::NothingRetryable {
                failed: tally.failed,
            };
        }
        PassResult::AllDone
    }
}
