//! `orchestrator retry JOB_ID...`: make failed, cancelled or held jobs
//! eligible again, whatever their category, with a fresh budget. A run going
//! on takes them in its current or next pass; otherwise the next `--run`.

use anyhow::Result;
use clap::Args;
use orchestrator_store::{JobChange, JobState};

use crate::commands::batch::BatchArgs;
use crate::commands::cancel::change;
use crate::output::shown;

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The jobs' ids, as in the jobs file.
    #[arg(value_name = "JOB_ID", required = true)]
    job_ids: Vec<String>,
}

impl RetryArgs {
    /// Works on the store of `batch` (`--state-file`, before or after the
    /// command, or from orchestrator.toml).
    pub fn run(self, batch: &BatchArgs) -> Result<u8> {
        change(
            &self.job_ids,
            &batch.state_file,
            |store, ids| store.retry(ids),
            line,
        )
    }
}

/// What `retry` did to one job.
pub fn line(id: &str, change: JobChange) -> (String, bool) {
    let id = shown(id);
    match change {
        JobChange::Changed { from } => (
            format!(
                "{id}: will be retried (was {}); a run going on takes it, otherwise the next --run",
                from.as_str()
            ),
            true,
        ),
        JobChange::Already { state } => (
            format!("{id}: already waiting to be attempted ({})", state.as_str()),
            true,
        ),
        JobChange::Refused {
            state: JobState::Running,
        } => (
            format!("{id}: an attempt is in flight; retry it once it has ended, if it fails"),
            false,
        ),
        JobChange::Refused { state } => (
            format!(
                "{id}: {}; a posted job is never attempted again",
                state.as_str()
            ),
            false,
        ),
        JobChange::CancelledAfterAttempt => (format!("{id}: unchanged"), false),
    }
}
