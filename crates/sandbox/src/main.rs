//! `orchestrator-sandbox`: serve a Mastodon-compatible platform on loopback,
//! which also speaks Bluesky, Discord and Slack webhooks and X's OAuth 2.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use orchestrator_sandbox::{Sandbox, Scenario};

/// A Mastodon-compatible platform with scripted failures, for demos, tests
/// and benchmarks. Prints the URL it listens on, then serves until stopped.
#[derive(Debug, Parser)]
#[command(name = "orchestrator-sandbox", version)]
struct Args {
    /// Scenario file (TOML) scripting accounts and failures; without one,
    /// any bearer token is accepted and every post succeeds.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()).await {
        eprintln!("orchestrator-sandbox: {e:#}");
        std::process::exit(2);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let scenario = match &args.scenario {
        Some(path) => Scenario::from_file(path)?,
        None => Scenario::default(),
    };
    let sandbox = Sandbox::start(scenario, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // The first line of stdout is the URL, so scripts can read it.
    println!("{}", sandbox.url());
    eprintln!("sandbox listening on {}; Ctrl-C stops it", sandbox.url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    let counters = sandbox.counters();
    eprintln!(
        "sandbox stopped: {} requests, {} statuses created, {} records, {} webhook messages, \
         {} tweets, {} duplicates prevented",
        counters.requests,
        counters.statuses_created,
        counters.records,
        counters.webhook_messages,
        counters.tweets,
        counters.duplicates_prevented
    );
    sandbox.shutdown().await;
    Ok(())
}
