//! `--seed-only`: import the jobs into the state and exit.

use anyhow::Result;

use crate::commands::batch::BatchArgs;
use crate::exit::{self, Exit};

pub fn run(args: &BatchArgs) -> Result<u8> {
    args.validate()?;
    let Some(jobs) = &args.jobs else {
        return Err(Exit::new(exit::USAGE, "--seed-only needs --jobs FILE").into());
    };
    let parsed = BatchArgs::read_jobs(jobs)?;
    let store = args.open_store()?;
    let summary = args.seed(store.as_ref(), &parsed, jobs)?;
    eprintln!(
        "Imported {} jobs from {} into {} ({} already there, kept as they were)",
        summary.added,
        jobs.display(),
        args.store_name(),
        summary.kept
    );
    Ok(exit::SUCCESS)
}
