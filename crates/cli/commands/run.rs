//! `--run`: import the jobs (if given) and run the batch in passes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use orchestrator_contract::PluginKind;
use orchestrator_plugin_host::PluginHost;
use orchestrator_runner::{Batch, RunEvent, RunOptions, RunOutcome, Runner, input};
use orchestrator_store::Store;

use crate::commands::batch::BatchArgs;
use crate::commands::status;
use crate::exit::{self, Exit};
use crate::output::print;

/// How long attempts in flight may take to finish after a stop.
const GRACE: Duration = Duration::from_secs(30);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    Exit::new(exit::USAGE, message).into()
}

pub async fn run(args: &BatchArgs) -> Result<u8> {
    let config = args.validate()?;
    if args.plugins.is_empty() {
        return Err(usage(
            "--run needs a poster plugin: add --plugin POSTER.wasm (see `orchestrator plugins list`)",
        ));
    }
    let Some(accounts_file) = &args.accounts_file else {
        return Err(usage(
            "--run needs --accounts-file FILE (base URL and token per account)",
        ));
    };
    let accounts = input::read_accounts(accounts_file).map_err(|e| usage(e.to_string()))?;
    if let Some(only) = &args.accounts
        && let Some(unknown) = only.iter().find(|a| !accounts.contains_key(*a))
    {
        return Err(usage(format!(
            "--accounts names {unknown}, which {} does not define",
            accounts_file.display()
        )));
    }

    // A missing token is found now, not in the middle of a pass.
    for account in accounts.values() {
        account.token().map_err(|e| usage(e.to_string()))?;
    }
    // Everything the files say is checked before anything is imported.
    let jobs = match &args.jobs {
        Some(path) => {
            let parsed = BatchArgs::read_jobs(path)?;
            let mut missing: Vec<&str> = parsed
                .iter()
                .map(|j| j.account.as_str())
                .filter(|a| !accounts.contains_key(*a))
                .filter(|a| {
                    args.accounts
                        .as_ref()
                        .is_none_or(|only| only.iter().any(|o| o == a))
                })
                .collect();
            missing.sort_unstable();
            missing.dedup();
            if !missing.is_empty() {
                return Err(usage(
                    orchestrator_runner::RunError::UnknownAccounts(missing.join(", ")).to_string(),
                ));
            }
            Some((path, parsed))
        }
        None => None,
    };

    let host = PluginHost::with_limits(args.limits.limits()?)?;
    let mut posters = Vec::new();
    let mut classifiers = Vec::new();
    for path in &args.plugins {
        let plugin = host
            .load(path)
            .await
            .map_err(|e| Exit::new(exit::USAGE, e.to_string()))?;
        match plugin.kind() {
            PluginKind::Poster => posters.push(Arc::new(plugin)),
            PluginKind::Classifier => classifiers.push(Arc::new(plugin)),
        }
    }
    let poster = match posters.len() {
        1 => posters.remove(0),
        0 => {
            return Err(usage(
                "--run needs exactly one poster plugin, and every --plugin given is a classifier",
            ));
        }
        _ => {
            let names: Vec<String> = posters.iter().map(|p| p.info().name.clone()).collect();
            return Err(usage(format!(
                "--run takes exactly one poster plugin; got {}",
                names.join(" and ")
            )));
        }
    };

    let store = Arc::new(args.open_store()?);
    if let Some((path, parsed)) = &jobs {
        let summary = args.seed(store.as_ref(), parsed, path)?;
        eprintln!(
            "Imported {} jobs from {} ({} already there)",
            summary.added,
            path.display(),
            summary.kept
        );
    } else if store.job_count()? == 0 {
        return Err(usage(format!(
            "no batch in {} yet; give --jobs FILE to import one",
            args.state_file.display()
        )));
    }

    let runner = Runner::new(
        store.clone(),
        Batch {
            poster,
            classifiers,
            accounts,
        },
        RunOptions {
            config,
            workers: u32::try_from(args.workers).unwrap_or(u32::MAX),
            only_accounts: args.accounts.clone(),
            grace: GRACE,
            allow_hosts: args.limits.allow_hosts.clone(),
        },
    );
    let (stop, _) = tokio::sync::watch::channel(false);
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("Interrupted: stopping");
            let _ = on_signal.send(true);
        }
    });
    let outcome = runner
        .run(Arc::new(log_event), stop)
        .await
        .map_err(|e| match e {
            // Stored jobs of an account the accounts file lacks: the
            // operator's to fix.
            orchestrator_runner::RunError::UnknownAccounts(_)
            | orchestrator_runner::RunError::Input(_) => usage(e.to_string()),
            other => other.into(),
        })?;

    let summary = status::render(&store.status()?, &args.state_file.display().to_string());
    print(&format!("\n{summary}"))?;
    Ok(match outcome {
        RunOutcome::AllSucceeded => {
            eprintln!("All jobs succeeded.");
            exit::SUCCESS
        }
        RunOutcome::SomeFailed(tally) => {
            eprintln!(
                "Finished with {} jobs failed for good and {} unfinished; see --status for why.",
                tally.failed, tally.to_retry
            );
            exit::FAILURE
        }
        RunOutcome::Stopped => {
            eprintln!("Stopped before finishing; --run again to continue.");
            exit::STOPPED
        }
    })
}

/// The run's log: the configuration, pass boundaries and waits.
fn log_event(event: RunEvent) {
    match event {
        RunEvent::Started { config, jobs } => {
            eprintln!("{config}");
            eprintln!("Batch of {jobs} jobs");
        }
        RunEvent::PassStarted { pass, max, jobs } => {
            eprintln!("Starting pass {pass}/{max} ({jobs} jobs)");
        }
        RunEvent::PassEnded { pass, result } => eprintln!("Pass {pass} ended: {result}"),
        RunEvent::Waiting { seconds } => eprintln!("Waiting {seconds}s before next pass..."),
        RunEvent::Stopping { grace } => eprintln!(
            "Stopping: no new attempts; waiting up to {}s for attempts in flight",
            grace.as_secs()
        ),
        RunEvent::AttemptFinished { .. } => {}
    }
}
