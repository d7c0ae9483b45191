//! [`AttemptOutcome`]: how an attempt ended, as the runner hands it in,
//! and [`AttemptRecord`]: an attempt as `report` and `explain` read it.

use orchestrator_contract::{Category, HostFault, PostFailure, Receipt, RetryScope};
use orchestrator_retry::Decision;
use serde::{Deserialize, Serialize};

use super::{read_ms, stored_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttemptId(pub i64);

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

/// A failure or fault record, kept as JSON text.
fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
