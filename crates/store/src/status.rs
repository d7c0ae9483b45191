//! [`StatusQueries`]: the queries `--status` is built from, and [`assemble`],
//! which builds the [`StatusReport`] from them the same way for every store.
//!
//! A store answers each query in its own dialect (and decides, for one,
//! which processes are worth listing); what the report holds, and in which
//! order, is decided here once.

use crate::model::RunRow;
use crate::{
    JobState, ProcessStatus, ReasonCount, Result, RetryEntry, RunPass, RunStatus, StatusReport,
};

/// The primitive reads of `--status`, as one store answers them.
pub(crate) trait StatusQueries {
    /// The number a `SELECT COUNT(*)` from [`crate::sql`] answers.
    fn count(&self, sql: &str) -> Result<u64>;
    /// The (key, jobs) pairs a grouped count from [`crate::sql`] answers.
    fn counts(&self, sql: &str) -> Result<Vec<(String, u64)>>;
    /// The newest runs, at most [`crate::RUNS_SHOWN`], newest first.
    fn newest_runs(&self) -> Result<Vec<RunRow>>;
    /// Every pass of `run` and how it ended, in order.
    fn passes(&self, run: u32) -> Result<Vec<(u32, Option<String>)>>;
    /// The attempts of a pass counted by outcome and category: (outcome,
    /// category or "", attempts).
    fn pass_counts(&self, at: RunPass) -> Result<Vec<(String, String, u64)>>;
    /// The processes of `run` worth listing (at most ten), in any order.
    fn processes(&self, run: u32) -> Result<Vec<ProcessStatus>>;
    /// The first ten jobs in `state`, in import order, with why they are
    /// there; and how many there are.
    fn jobs_in_state(&self, state: JobState) -> Result<(Vec<RetryEntry>, u64)>;
    /// Failed jobs, grouped by why, most frequent first.
    fn failure_reasons(&self) -> Result<Vec<ReasonCount>>;
}

/// Everything `--status` shows, from `queries`. (Its `pauses` are left to
/// whoever knows the longest wait the run allows.)
pub(crate) fn assemble(queries: &impl StatusQueries) -> Result<StatusReport> {
    use crate::sql;
    let mut report = StatusReport {
        jobs: queries.count(sql::COUNT_JOBS)?,
        runs_total: queries.count(sql::COUNT_RUNS)?,
        ..StatusReport::default()
    };
    report.by_state = every_state(&queries.counts(sql::BY_STATE)?);
    report.by_category = queries.counts(sql::BY_CATEGORY)?;
    report.failed_by_category = queries.counts(sql::FAILED_BY_CATEGORY)?;

    report.runs = queries
        .newest_runs()?
        .into_iter()
        .rev()
        .map(RunRow::status)
        .collect::<Result<Vec<RunStatus>>>()?;
    report.last_run = report.runs.last().cloned();
    if let Some(last) = &report.last_run {
        for (pass, result) in queries.passes(last.run)? {
            let at = RunPass {
                run: last.run,
                pass,
            };
            let counts = queries.pass_counts(at)?;
            report
                .passes
                .push(crate::PassStatus::from_counts(at, result, counts));
        }
        report.processes = queries.processes(last.run)?;
        report.processes.sort_by_key(|p| p.id);
    }

    (report.next_retries, report.retries_total) = queries.jobs_in_state(JobState::Retry)?;
    (_, report.failures_total) = queries.jobs_in_state(JobState::Failed)?;
    (report.held, report.held_total) = queries.jobs_in_state(JobState::NeedsReview)?;
    report.failure_reasons = queries.failure_reasons()?;
    Ok(report)
}

/// Every job state with its count in `counts` (state, jobs), 0 where
/// absent, in [`JobState::ALL`] order.
fn every_state(counts: &[(String, u64)]) -> Vec<(String, u64)> {
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
