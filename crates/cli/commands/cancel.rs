//! `orchestrator cancel JOB_ID...`: take jobs out of the batch. A cancelled
//! job is never attempted again; one in flight finishes, is recorded, and
//! is cancelled then unless it posted. Works while a run is going on.

use anyhow::Result;
use clap::Args;
use orchestrator_store::{DEFAULT_LEASE, JobChange, JobState, Store, StoreError};

use crate::commands::batch::{BatchArgs, open_at, store_name};
use crate::exit::{self, Exit};
use crate::output::{print, shown};

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The jobs' ids, as in the jobs file.
    #[arg(value_name = "JOB_ID", required = true)]
    job_ids: Vec<String>,
}

impl CancelArgs {
    /// Works on the store of `batch` (`--state-file`, before or after the
    /// command, or from orchestrator.toml).
    pub fn run(self, batch: &BatchArgs) -> Result<u8> {
        change(
            &self.job_ids,
            &batch.state_file,
            |store, ids| store.cancel(ids),
            line,
        )
    }
}

/// What `cancel` did to one job.
pub fn line(id: &str, change: JobChange) -> (String, bool) {
    let id = shown(id);
    match change {
        JobChange::Changed { from } => (format!("{id}: cancelled (was {})", from.as_str()), true),
        JobChange::CancelledAfterAttempt => (
            format!("{id}: an attempt is in flight; cancelled when it ends, unless it posts"),
            true,
        ),
        JobChange::Already {
            state: JobState::Running,
        } => (
            format!("{id}: already cancelled once its attempt in flight ends"),
            true,
        ),
        JobChange::Already { .. } => (format!("{id}: already cancelled"), true),
        JobChange::Refused { state } => (
            format!("{id}: {} already; not cancelled", state.as_str()),
            false,
        ),
    }
}

/// Applies `apply` to the jobs `ids` in the store at `state_file` and prints
/// one `line` per job. Exits 0 when every job is as asked, 1 when one could
/// not be; an unknown id changes nothing and is a usage error.
pub fn change(
    ids: &[String],
    state_file: &std::path::Path,
    apply: impl FnOnce(&dyn Store, &[String]) -> orchestrator_store::Result<Vec<(String, JobChange)>>,
    line: fn(&str, JobChange) -> (String, bool),
) -> Result<u8> {
    let name = store_name(state_file);
    if crate::commands::batch::postgres_url(state_file).is_none() && !state_file.exists() {
        return Err(Exit::new(
            exit::USAGE,
            format!("no state file at {name}; give --state-file PATH"),
        )
        .into());
    }
    // Each id once, in the order given.
    let mut unique: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.contains(id) {
            unique.push(id.clone());
        }
    }
    let store = open_at(state_file, DEFAULT_LEASE)?;
    let changes = match apply(store.as_ref(), &unique) {
        Ok(changes) => changes,
        Err(e @ StoreError::UnknownJobs(_)) => {
            return Err(
                Exit::new(exit::USAGE, format!("{e} in {name}; nothing was changed")).into(),
            );
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = String::new();
    let mut all_done = true;
    for (id, change) in changes {
        let (text, done) = line(&id, change);
        all_done &= done;
        out.push_str(&text);
        out.push('\n');
    }
    print(&out)?;
    Ok(if all_done {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}
