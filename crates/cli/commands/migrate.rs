//! `orchestrator migrate`: bring a store's schema up to date now, rather
//! than on first use (before a release reaches many machines, say).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use orchestrator_store::DEFAULT_LEASE;

use crate::commands::batch::{DEFAULT_STATE_FILE, open_at, store_name};
use crate::exit;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The store: a state file (created if missing) or a PostgreSQL URL.
    #[arg(long, value_name = "PATH|URL", default_value = DEFAULT_STATE_FILE)]
    state_file: PathBuf,
}

impl MigrateArgs {
    pub fn run(self) -> Result<u8> {
        // Opening applies the migrations.
        let version = open_at(&self.state_file, DEFAULT_LEASE)?.schema_version()?;
        eprintln!(
            "{} is at schema version {version}",
            store_name(&self.state_file)
        );
        Ok(exit::SUCCESS)
    }
}
