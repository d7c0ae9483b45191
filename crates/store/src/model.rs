//! The values that go in and out of a [`crate::Store`].

use orchestrator_contract::{Category, HostFault, PostFailure, Receipt, RetryScope};
use orchestrator_retry::{Decision, RetryConfig};
use serde::{Deserialize, Serialize};

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
    /// Failed, and will be retried in a later pass.
    Retry,
    Succeeded,
    /// Failed for good.
    Failed,
    /// An attempt was in flight when a run died, longer ago than the
    /// platform remembers idempotency keys: retrying blindly could post
    /// twice, so a person decides (`--release-held`).
    NeedsReview,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Running,
        JobState::Retry,
        JobState::Succeeded,
        JobState::Failed,
        JobState::NeedsReview,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Retry => "retry",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::NeedsReview => "needs-review",
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
    /// Attempts so far.
    pub attempts: u32,
    /// Passes in which it was attempted.
    pub passes_attempted: u32,
    pub infrastructure_failures: u32,
    /// Not to be attempted before this time (ms since the epoch), from a
    /// retry-after hint.
    pub not_before_ms: Option<u64>,
    /// The run that claimed it, in a store that hands out leases: only that
    /// run may begin an attempt of it.
    pub claimed_by: Option<RunId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttemptId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunId(pub i64);

/// A run as it starts.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub pid: u32,
    pub config: RetryConfig,
    pub workers: u32,
    pub accounts: Option<Vec<String>>,
    /// How long the platform remembers an idempotency key: an uncertain
    /// attempt older than this is held for review instead of retried.
    pub key_window_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Running,
    /// Every job reached a final state or the passes ran out.
    Finished,
    /// Stopped by `--stop-all` or a signal before finishing.
    Stopped,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Stopped => "stopped",
        }
    }
}

/// A classification and who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub category: Category,
    pub reason: String,
    pub retry_after_ms: Option<u64>,
    /// Who waits out `retry_after_ms`.
    pub scope: RetryScope,
    /// The classifier plugin's name, or `built-in`.
    pub decided_by: String,
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
}

/// How an attempt ended, with what the job becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded(Receipt),
    Failed {
        failure: Option<PostFailure>,
        fault: Option<HostFault>,
        classification: Decided,
        decision: Decision,
        /// When the job may be tried again (ms since the epoch).
        not_before_ms: Option<u64>,
    },
}

/// The columns a failed attempt fills in, worked out the same way in every
/// store.
pub(crate) struct FailureColumns {
    /// The failure and fault records, as JSON text.
    pub(crate) failure: Option<String>,
    pub(crate) fault: Option<String>,
    /// The attempt's decision: `retry`, or `give up: why`.
    pub(crate) decision: String,
    /// The job's new state, and why it was given up if it was.
    pub(crate) state: &'static str,
    pub(crate) gave_up: Option<String>,
    /// 1 when the failure counts against the infrastructure retry limit.
    pub(crate) infra: i32,
    pub(crate) retry_after_ms: Option<i64>,
    /// Who waits out the retry-after, when there is one.
    pub(crate) retry_scope: Option<&'static str>,
}

impl FailureColumns {
    pub(crate) fn of(
        failure: Option<&PostFailure>,
        fault: Option<&HostFault>,
        classification: &Decided,
        decision: &Decision,
    ) -> Self {
        let (state, gave_up) = match decision {
            Decision::Retry => ("retry", None),
            Decision::GiveUp(reason) => ("failed", Some(reason.to_string())),
        };
        FailureColumns {
            failure: failure.map(to_json),
            fault: fault.map(to_json),
            decision: match &gave_up {
                None => "retry".to_string(),
                Some(why) => format!("give up: {why}"),
            },
            state,
            gave_up,
            infra: i32::from(classification.category == Category::Infrastructure),
            retry_after_ms: classification.retry_after_ms.map(|v| v as i64),
            retry_scope: classification
                .retry_after_ms
                .map(|_| classification.scope.as_str()),
        }
    }
}

/// A failure or fault record, kept as JSON text.
fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Everything `--status` shows, read from the store alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusReport {
    pub jobs: u64,
    /// state → jobs
    pub by_state: Vec<(String, u64)>,
    /// category of the latest failure → jobs that are failed or to retry
    pub by_category: Vec<(String, u64)>,
    pub passes: Vec<PassStatus>,
    /// Jobs to retry next, in order, with why.
    pub next_retries: Vec<RetryEntry>,
    pub retries_total: u64,
    /// Jobs held for review, with why.
    pub held: Vec<RetryEntry>,
    pub held_total: u64,
    /// Jobs failed for good, grouped by why, most frequent first.
    pub failure_reasons: Vec<ReasonCount>,
    pub failures_total: u64,
    pub last_run: Option<RunStatus>,
    /// Every run working on the batch now, where several processes share
    /// the store (a shared store marks one that stopped renewing `lost`).
    pub runs: Vec<RunStatus>,
}

/// Every job state with its count in `counts` (state, jobs), 0 where
/// absent, in [`JobState::ALL`] order.
pub(crate) fn every_state(counts: &[(String, u64)]) -> Vec<(String, u64)> {
    JobState::ALL
        .iter()
        .map(|s| {
            let n = counts
                .iter()
                .find(|(k, _)| k == s.as_str())
                .map_or(0, |(_, n)| *n);
            (s.as_str().to_owned(), n)
        })
        .collect()
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PassStatus {
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
        pass: u32,
        result: Option<String>,
        counts: impl IntoIterator<Item = (String, String, u64)>,
    ) -> Self {
        let mut status = PassStatus {
            pass,
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

#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    pub id: i64,
    pub pid: u32,
    /// The machine it runs on, where several may share the store.
    pub host: Option<String>,
    pub state: String,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub stop_requested: bool,
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

/// One attempt as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    /// The run that made it: processes sharing a store each have theirs.
    pub run: Option<i64>,
    pub pass: u32,
    pub number: u32,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    /// `in-flight`, `succeeded`, `failed` or `uncertain`.
    pub outcome: String,
    pub remote_id: Option<String>,
    pub failure: Option<PostFailure>,
    pub fault: Option<HostFault>,
    pub category: Option<String>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    pub retry_after_ms: Option<u64>,
    /// Who waits out `retry_after_ms`, when there is one.
    pub retry_scope: Option<RetryScope>,
    pub decision: Option<String>,
}

/// An attempt with the job it belongs to, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportRow {
    pub job: String,
    pub account: String,
    #[serde(flatten)]
    pub attempt: AttemptRecord,
}
