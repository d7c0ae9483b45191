//! Counting passes and judging how one ended.

use serde::{Deserialize, Serialize};

use crate::RetryConfig;

/// What happened to the jobs of one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassTally {
    /// Jobs not finished when the pass ended: they will be retried.
    pub to_retry: u32,
    /// Jobs failed for good, in this pass or before.
    pub failed: u32,
    /// Of `failed`, those that gave up only because passes ran out.
    pub out_of_passes: u32,
    /// Jobs held for a person to review (an uncertain attempt too old to
    /// retry blindly); no pass touches them.
    pub held: u32,
}

/// How a pass ended, and so what the run does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum PassResult {
    /// Every job succeeded.
    AllDone,
    /// Some jobs will be retried in the next pass.
    RetryableRemain { jobs: u32 },
    /// Jobs would be retried, but this was the last pass.
    MaxPassesReached { unfinished: u32 },
    /// Some jobs failed for good and none is left to retry.
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
            PassResult::RetryableRemain { jobs } => write!(f, "{jobs} jobs to retry"),
            PassResult::MaxPassesReached { unfinished } => {
                write!(f, "max passes reached with {unfinished} jobs unfinished")
            }
            PassResult::NothingRetryable { failed } => {
                write!(
                    f,
                    "nothing retryable remains; {failed} jobs failed for good"
                )
            }
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
    /// A manager that has already seen `completed` passes (0 for a new
    /// batch; more when a run resumes).
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

    /// Judges the pass that just ended.
    pub fn end_pass(&self, tally: PassTally) -> PassResult {
        if tally.to_retry > 0 {
            if self.current >= self.config.max_passes {
                return PassResult::MaxPassesReached {
                    unfinished: tally.to_retry,
                };
            }
            return PassResult::RetryableRemain {
                jobs: tally.to_retry,
            };
        }
        if tally.out_of_passes > 0 {
            return PassResult::MaxPassesReached {
                unfinished: tally.out_of_passes,
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
