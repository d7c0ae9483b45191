//! `orchestrator migrate`: bring a store's schema up to date now, rather
//! than on first use (before a release reaches many machines, say), and on
//! a shared database, give the workers' role what runs need
//! (`--grant-to`), so they can run without the right to change the schema.

use anyhow::Result;
use clap::Args;
use orchestrator_store::DEFAULT_LEASE;

use crate::commands::batch::{BatchArgs, open_at, open_postgres, postgres_url, store_name};
use crate::exit::{self, Exit};

/// The store is `--state-file` (a state file, created if missing, or a
/// PostgreSQL URL), given before or after the command or in
/// orchestrator.toml.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// On a PostgreSQL store, then grant ROLE the data rights a run needs
    /// (and not the right to change the schema); run as the schema's owner,
    /// again after each upgrade.
    #[arg(long, value_name = "ROLE", value_parser = role_name)]
    pub grant_to: Option<String>,
}

impl MigrateArgs {
    pub fn run(self, batch: &BatchArgs) -> Result<u8> {
        let url = postgres_url(&batch.state_file);
        if self.grant_to.is_some() && url.is_none() {
            return Err(Exit::new(
                exit::USAGE,
                "--grant-to is for a PostgreSQL store (--state-file postgres://…); a state file has no roles",
            )
            .into());
        }
        // Opening applies the migrations.
        let version = open_at(&batch.state_file, DEFAULT_LEASE)?.schema_version()?;
        eprintln!(
            "{} is at schema version {version}",
            store_name(&batch.state_file)
        );
        if let (Some(role), Some(url)) = (&self.grant_to, url) {
            // Connected as the flags say (TLS, password file), as the migration was.
            open_postgres(url, DEFAULT_LEASE)?.grant_worker(role)?;
            eprintln!("Granted {role} what a run needs (data, not the schema)");
        }
        Ok(exit::SUCCESS)
    }
}

/// A role's name: 1 to 63 bytes (PostgreSQL's limit), no control
/// characters.
fn role_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 63 || text.chars().any(char::is_control) {
        return Err("a role name is 1 to 63 bytes without control characters".into());
    }
    Ok(text.to_owned())
}
