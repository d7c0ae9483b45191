//! [`StoredJob`]: a job as the store holds it, from its import
//! ([`NewJob`]) to where it stands ([`JobState`]).

use serde::{Deserialize, Serialize};

use crate::ProcessId;

/// A job as imported from the jobs file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub id: String,
    pub account: String,
    /// The payload as JSON text.
    pub payload: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub added: u64,
    /// Already stored under the same id and left as they were.
    pub kept: u64,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Not attempted yet.
    Pending,
    /// An attempt is in flight.
    Running,
    /// Failed, and will be retried in a later pass or run.
    Retry,
    Succeeded,
    /// The run gave up on it. The next run retries it if its settings
    /// retry the failure's category.
    Failed,
    /// An attempt was in flight when a run died, longer ago than the
    /// platform remembers idempotency keys: retrying blindly could post
    /// twice, so a person decides (`--release-held`, `retry`, `cancel`).
    NeedsReview,
    /// An operator cancelled it: never attempted again (unless `retry`).
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Pending,
        JobState::Running,
        JobState::Retry,
        JobState::Succeeded,
        JobState::Failed,
        JobState::NeedsReview,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Retry => "retry",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::NeedsReview => "needs-review",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        JobState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A job as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJob {
    pub id: String,
    pub account: String,
    pub payload: String,
    pub idempotency_key: String,
    pub state: JobState,
    /// Attempts so far, in every run.
    pub attempts: u32,
    /// Passes of its current run in which it was attempted.
    pub passes_attempted: u32,
    /// Its infrastructure failures in its current run.
    pub infrastructure_failures: u32,
    /// Not to be attempted before this time (ms since the epoch), from a
    /// retry-after hint.
    pub not_before_ms: Option<u64>,
    /// The process that claimed it, in a store that hands out leases: only
    /// that process may begin an attempt of it.
    pub claimed_by: Option<ProcessId>,
}

/// What `cancel` or `retry` did to one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "change")]
pub enum JobChange {
    /// Done as asked; the job was in state `from`.
    Changed { from: JobState },
    /// An attempt is in flight: it finishes and is recorded, and the job is
    /// cancelled then unless it posted.
    CancelledAfterAttempt,
    /// The job already was as asked.
    Already { state: JobState },
    /// Not possible in the job's state (a succeeded job is never attempted
    /// again; one in flight is retried only once its attempt ended).
    Refused { state: JobState },
}

impl JobChange {
    /// What cancelling a job in `state` does.
    pub(crate) fn cancel(state: JobState, cancel_requested: bool) -> JobChange {
        match state {
            JobState::Cancelled => JobChange::Already { state },
            JobState::Running if cancel_requested => JobChange::Already { state },
            JobState::Running => JobChange::CancelledAfterAttempt,
            JobState::Succeeded => JobChange::Refused { state },
            from => JobChange::Changed { from },
        }
    }

    /// What retrying a job in `state` does.
    pub(crate) fn retry(state: JobState) -> JobChange {
        match state {
            JobState::Pending | JobState::Retry => JobChange::Already { state },
            JobState::Running | JobState::Succeeded => JobChange::Refused { state },
            from => JobChange::Changed { from },
        }
    }
}

/// One job's standing, for listings and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobSummary {
    pub id: String,
    pub account: String,
    pub state: JobState,
    /// The category of the latest failure, if the job is not done.
    pub category: Option<String>,
    pub attempts: u32,
    pub remote_id: Option<String>,
}
