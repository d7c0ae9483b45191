//! `orchestrator dashboard`: serves the web UI ([`crate::dashboard`]) over
//! the store of `--state-file`, until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use orchestrator_store::DEFAULT_LEASE;

use crate::commands::batch::{BatchArgs, open_at, postgres_url, store_name};
use crate::dashboard::{self, Dashboard};
use crate::exit::{self, Exit};

/// The environment variable that may hold the access token.
const TOKEN_ENV: &str = "ORCHESTRATOR_DASHBOARD_TOKEN";
/// The shortest access token taken: one a person cannot guess.
const TOKEN_MIN: usize = 16;

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Where to listen. Loopback by default; any other address needs an
    /// access token (--token-file, or ORCHESTRATOR_DASHBOARD_TOKEN).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// A file holding the access token every request must carry (at least
    /// 16 characters).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    Exit::new(exit::USAGE, message).into()
}

impl DashboardArgs {
    pub async fn run(self, batch: &BatchArgs) -> Result<u8> {
        let path = &batch.state_file;
        if postgres_url(path).is_none() && !path.exists() {
            return Err(usage(format!(
                "no state file at {}; give --state-file PATH",
                path.display()
            )));
        }
        let token = match &self.token_file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| {
                        usage(format!("cannot read --token-file {}: {e}", file.display()))
                    })?
                    .trim()
                    .to_owned(),
            ),
            None => std::env::var(TOKEN_ENV).ok().map(|t| t.trim().to_owned()),
        }
        .filter(|t| !t.is_empty());
        if let Some(token) = &token
            && token.chars().count() < TOKEN_MIN
        {
            return Err(usage(format!(
                "the access token is shorter than {TOKEN_MIN} characters; use a longer one (e.g. `openssl rand -hex 16`)"
            )));
        }
        if !dashboard::is_loopback(&self.listen) && token.is_none() {
            return Err(usage(format!(
                "--listen {} is reachable from other machines: give --token-file FILE (or {TOKEN_ENV}) so only you can open it",
                self.listen
            )));
        }
        let store = open_at(path, DEFAULT_LEASE)?;
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|e| usage(format!("cannot listen on {}: {e}", self.listen)))?;
        let local = listener.local_addr()?;
        let state = Arc::new(Dashboard::new(
            Arc::from(store),
            store_name(path),
            token.as_deref(),
            batch.retry.max_retry_after.saturating_mul(1000),
        ));
        let hint = if token.is_some() { "?token=…" } else { "" };
        eprintln!(
            "Dashboard of {} on http://{local}/{hint} (Ctrl-C stops it)",
            store_name(path)
        );
        dashboard::serve(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| anyhow::anyhow!("the dashboard stopped: {e}"))?;
        Ok(exit::SUCCESS)
    }
}
