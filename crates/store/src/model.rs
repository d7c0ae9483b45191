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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttemptId(pub i64);

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
    /// Every classifier plugin asked, in order, with its answer; the last
    /// is the one that decided, unless the built-in rules did.
    pub consulted: Vec<Consulted>,
}

/// What one classifier plugin answered about a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consulted {
    pub classifier: String,
    pub answer: Answer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// It decided, with this category.
    Decided(Category),
    /// It left the failure to the next classifier.
    NoOpinion,
    /// It failed (trapped, ran past its deadline or out of memory), and
    /// the next classifier was asked.
    Fault(HostFault),
}

impl std::fmt::Display for Consulted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.answer {
            Answer::Decided(category) => write!(f, "{}: {category}", self.classifier),
            Answer::NoOpinion => write!(f, "{}: no opinion", self.classifier),
            Answer::Fault(fault) => {
                write!(f, "{}: {} ({fault})", self.classifier, fault.kind())
            }
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
}

impl Pause {
    /// A wait as a store keeps it: a scope it cannot read is refused, not
    /// guessed.
    pub(crate) fn from_stored(
        scope: String,
        account: String,
        until_ms: i64,
    ) -> crate::Result<Self> {
        let scope = RetryScope::parse(&scope)
            .ok_or_else(|| crate::StoreError::Corrupt(format!("retry scope {scope:?}")))?;
        Ok(Pause {
            scope,
            account,
            until_ms: read_ms(until_ms),
        })
    }
}

/// How an attempt ended, with what the job becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per attempt, written once: boxing would only add an allocation"
)]
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
    /// 1 when the attempt counts against no budget (its platform was down):
    /// the job gets its pass back, and is eligible again in it.
    pub(crate) uncounted: i32,
    pub(crate) retry_after_ms: Option<i64>,
    /// Who waits out the retry-after, when there is one.
    pub(crate) retry_scope: Option<&'static str>,
    /// The classifiers asked, as JSON text; none when there were none.
    pub(crate) consulted: Option<String>,
}

impl FailureColumns {
    pub(crate) fn of(
        failure: Option<&PostFailure>,
        fault: Option<&HostFault>,
        classification: &Decided,
        decision: &Decision,
    ) -> Self {
        let (state, gave_up) = match decision {
            Decision::Retry | Decision::Defer => ("retry", None),
            Decision::GiveUp(reason) => ("failed", Some(reason.to_string())),
        };
        let deferred = *decision == Decision::Defer;
        FailureColumns {
            failure: failure.map(to_json),
            fault: fault.map(to_json),
            decision: match (&gave_up, deferred) {
                (_, true) => {
                    "retry once the platform answers again (it was down: not counted)".into()
                }
                (None, false) => "retry".to_string(),
                (Some(why), false) => format!("give up: {why}"),
            },
            state,
            gave_up,
            infra: i32::from(classification.category == Category::Infrastructure && !deferred),
            uncounted: i32::from(deferred),
            retry_after_ms: classification.retry_after_ms.map(stored_ms),
            retry_scope: classification
                .retry_after_ms
                .map(|_| classification.scope.as_str()),
            consulted: (!classification.consulted.is_empty())
                .then(|| to_json(&classification.consulted)),
        }
    }
}

/// A time or a duration (ms) as the stores keep it: a value past what a
/// column holds is kept as the largest it holds, never wrapped negative.
pub(crate) fn stored_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A stored time or duration (ms) as the host uses it: a negative one
/// (written by an older or a hostile writer) reads as 0.
pub(crate) fn read_ms(ms: i64) -> u64 {
    ms.max(0) as u64
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
    /// The run it belonged to, and the pass of that run.
    pub run: Option<u32>,
    pub pass: u32,
    /// The process that made it: processes sharing a store each have theirs.
    pub process: Option<i64>,
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
    /// The classifier plugins asked about the failure, with their answers.
    pub consulted: Vec<Consulted>,
}

/// The classifiers an attempt's record lists; what cannot be read (an
/// older or foreign writer's) lists none rather than failing the reader.
fn consulted_from(text: Option<&str>) -> Vec<Consulted> {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// An attempt with the job it belongs to, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportRow {
    pub job: String,
    pub account: String,
    #[serde(flatten)]
    pub attempt: AttemptRecord,
}

/// An attempt with its job as a store reads it, before its stored values
/// are checked.
pub(crate) struct AttemptRow {
    pub(crate) job: String,
    pub(crate) account: String,
    pub(crate) run: Option<u32>,
    pub(crate) pass: u32,
    pub(crate) process: Option<i64>,
    pub(crate) number: u32,
    pub(crate) started_ms: i64,
    pub(crate) ended_ms: Option<i64>,
    pub(crate) outcome: String,
    pub(crate) remote_id: Option<String>,
    /// The failure and fault records, as JSON text.
    pub(crate) failure: Option<String>,
    pub(crate) fault: Option<String>,
    pub(crate) category: Option<String>,
    pub(crate) decided_by: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) retry_after_ms: Option<i64>,
    pub(crate) retry_scope: Option<String>,
    pub(crate) decision: Option<String>,
    /// The classifiers asked, as JSON text.
    pub(crate) consulted: Option<String>,
}

impl AttemptRow {
    /// The attempt as `report` and `explain` show it. A failure or fault
    /// record that cannot be read is refused; the classifiers asked, which
    /// only explain, are left out instead.
    pub(crate) fn report_row(self) -> crate::Result<ReportRow> {
        let parse =
            |e: serde_json::Error| crate::StoreError::Corrupt(format!("attempt record: {e}"));
        Ok(ReportRow {
            job: self.job,
            account: self.account,
            attempt: AttemptRecord {
                run: self.run,
                pass: self.pass,
                process: self.process,
                number: self.number,
                started_ms: read_ms(self.started_ms),
                ended_ms: self.ended_ms.map(read_ms),
                outcome: self.outcome,
                remote_id: self.remote_id,
                failure: self
                    .failure
                    .map(|f| serde_json::from_str(&f).map_err(parse))
                    .transpose()?,
                fault: self
                    .fault
                    .map(|f| serde_json::from_str(&f).map_err(parse))
                    .transpose()?,
                category: self.category,
                decided_by: self.decided_by,
                reason: self.reason,
                retry_after_ms: self.retry_after_ms.map(read_ms),
                retry_scope: self.retry_scope.as_deref().and_then(RetryScope::parse),
                decision: self.decision,
                consulted: consulted_from(self.consulted.as_deref()),
            },
        })
    }
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
