//! `--stop-all`: ask every run on this store to stop, on every machine.

use anyhow::Result;

use crate::commands::batch::BatchArgs;
use crate::exit;

pub fn run(args: &BatchArgs) -> Result<u8> {
    args.validate()?;
    let asked = if args.store_exists() {
        args.open_store()?.request_stop()?
    } else {
        0
    };
    if asked == 0 {
        eprintln!("No run is in progress on {}", args.store_name());
    } else {
        eprintln!(
            "Asked {asked} run(s) on {} to stop; attempts in flight finish first",
            args.store_name()
        );
    }
    Ok(exit::SUCCESS)
}
