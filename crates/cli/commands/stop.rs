//! `--stop-all`: ask every run on this state file to stop.

use anyhow::Result;
use orchestrator_store::Store;

use crate::commands::batch::BatchArgs;
use crate::exit;

pub fn run(args: &BatchArgs) -> Result<u8> {
    args.validate()?;
    let asked = if args.state_file.exists() {
        args.open_store()?.request_stop()?
    } else {
        0
    };
    if asked == 0 {
        eprintln!("No run is in progress on {}", args.state_file.display());
    } else {
        eprintln!(
            "Asked {asked} run(s) on {} to stop; attempts in flight finish first",
            args.state_file.display()
        );
    }
    Ok(exit::SUCCESS)
}
