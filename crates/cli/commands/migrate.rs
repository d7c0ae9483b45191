//! `orchestrator migrate`: bring a store's schema up to date now, rather
//! than on first use (before a release reaches many machines, say).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use orchestrator_store::{PostgresStore, SqliteStore};

use crate::commands::batch::{DEFAULT_STATE_FILE, postgres_url, store_name};
use crate::exit::{self, Exit};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The store: a state file (created if missing) or a PostgreSQL URL.
    #[arg(long, value_name = "PATH|URL", default_value = DEFAULT_STATE_FILE)]
    state_file: PathBuf,
}

impl MigrateArgs {
    pub fn run(self) -> Result<u8> {
        let usage = |e: orchestrator_store::StoreError| Exit::new(exit::USAGE, e.to_string());
        let version = match postgres_url(&self.state_file) {
            Some(url) => PostgresStore::open(url, Duration::from_secs(30))
                .map_err(usage)?
                .schema_version()?,
            None => SqliteStore::open(&self.state_file)
                .map_err(usage)?
                .schema_version(),
        };
        eprintln!(
            "{} is at schema version {version}",
            store_name(&self.state_file)
        );
        Ok(exit::SUCCESS)
    }
}
