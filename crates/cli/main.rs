//! `orchestrator`: publish batches of posts across many accounts, with
//! classified multi-pass retries and sandboxed plugins.
//!
//! This is the edge of the program: [`Cli`] holds the clap definitions, each
//! command lives in its own module under `commands/`, and this file turns a
//! command's error into one line on stderr and a documented exit code
//! ([`exit`]). It is the only place that prints.

mod commands;
mod exit;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Publish batches of posts across many accounts, with classified multi-pass
/// retries and sandboxed plugins.
///
/// Posting and failure classification are plugins: WebAssembly components
/// that implement the `orchestrator:plugin` contract. See `orchestrator
/// plugins list` for the plugins this host can find.
#[derive(Debug, Parser)]
#[command(name = "orchestrator", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Find, list and inspect plugins.
    #[command(subcommand)]
    Plugins(commands::plugins::PluginsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Some(Command::Plugins(cmd)) => run_async(cmd.run()),
        None => {
            // No action: show what there is to do rather than doing nothing.
            let _ = Cli::command().print_help();
            return ExitCode::from(exit::USAGE);
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => exit::report(&error),
    }
}

fn run_async<F: std::future::Future<Output = anyhow::Result<u8>>>(fut: F) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(fut)
}

/// Logs go to stderr so stdout stays for results; `ORCHESTRATOR_LOG` takes
/// `tracing` filter directives (e.g. `debug`, `plugin=trace`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORCHESTRATOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
