//! `--seed-only`: import the jobs into the state and exit (also when
//! `--run` is given: the original tool's order).

use anyhow::Result;

use crate::commands::batch::BatchArgs;
use crate::exit::{self, Exit};

pub fn run(args: &BatchArgs) -> Result<u8> {
    args.validate()?;
    let Some(jobs) = &args.jobs else {
        return Err(Exit::new(exit::USAGE, "--seed-only needs --jobs FILE").into());
    };
    let parsed = args.read_jobs(jobs)?;
    let store = args.open_store()?;
    let summary = args.seed(store.as_ref(), &parsed, jobs)?;
    eprintln!(
        "Imported {} from {} into {} ({} already there, kept as they were)",
        crate::output::count(summary.added, "job"),
        jobs.display(),
        args.store_name(),
        summary.kept
    );
    if args.run {
        eprintln!(
            "--seed-only wins over --run: the jobs were imported, not run; drop --seed-only to run them"
        );
    }
    Ok(exit::SUCCESS)
}
