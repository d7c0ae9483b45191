//! `orchestrator migrate`: bring a store's schema up to date now, rather
//! than on first use (before a release reaches many machines, say).

use anyhow::Result;
use clap::Args;
use orchestrator_store::DEFAULT_LEASE;

use crate::commands::batch::{BatchArgs, open_at, store_name};
use crate::exit;

/// The store is `--state-file` (a state file, created if missing, or a
/// PostgreSQL URL), given before or after the command or in
/// orchestrator.toml.
#[derive(Debug, Args)]
pub struct MigrateArgs {}

impl MigrateArgs {
    pub fn run(self, batch: &BatchArgs) -> Result<u8> {
        // Opening applies the migrations.
        let version = open_at(&batch.state_file, DEFAULT_LEASE)?.schema_version()?;
        eprintln!(
            "{} is at schema version {version}",
            store_name(&batch.state_file)
        );
        Ok(exit::SUCCESS)
    }
}
