//! `--run`: import the jobs (if given) and work on a run: a new one, which
//! retries every job still open (the one cut short by a crash or a stop is
//! resumed instead, under the same settings), in passes. What happens is
//! logged, shown as progress and measured ([`RunMetrics`], served with
//! `--metrics-listen` by [`metrics_server`]).

mod metrics_server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use orchestrator_contract::RetryScope;
use orchestrator_metrics::RunMetrics;
use orchestrator_plugin_host::PluginHost;
use orchestrator_retry::{PassTally, RetryConfig};
use orchestrator_runner::{
    AssembleError, Batch, CallKind, RunEnd, RunError, RunEvent, RunOptions, RunOutcome, Runner,
    input,
};
use orchestrator_store::{Acquired, JoinedHow, NewJob, RunLock, Store};

use crate::commands::batch::{BatchArgs, postgres_url};
use crate::commands::{progress, status, takeover};
use crate::exit::{self, Exit};
use crate::output::{count, print, seconds, shown};

fn usage(message: impl Into<String>) -> anyhow::Error {
    Exit::new(exit::USAGE, message).into()
}

pub async fn run(args: &BatchArgs) -> Result<u8> {
    let config = args.validate()?;
    // Bound first: an address that cannot be had is refused before
    // anything runs.
    let listener = match args.metrics_listen {
        Some(addr) => Some(metrics_server::MetricsListener::bind(addr).await?),
        None => None,
    };
    // Measured whether served or not: a few atomics per attempt.
    let metrics = Arc::new(RunMetrics::new(Duration::from_secs(
        args.retry.max_retry_after,
    )));
    let (mut batch, jobs) = prepare(args, &metrics).await?;
    let _lock = lock(args).await?;
    let store: Arc<dyn Store> = Arc::from(args.open_store()?);
    let server = listener.map(|listener| {
        eprintln!("Metrics on http://{}/metrics", listener.addr());
        listener.serve(store.clone(), metrics.clone())
    });
    if let Some(host) = batch.reload_with.clone() {
        batch.authenticate(store.clone(), Arc::new(host))?;
    }
    if let Some((path, parsed)) = &jobs {
        let summary = args.seed(store.as_ref(), parsed, path)?;
        eprintln!(
            "Imported {} from {} ({} already there)",
            count(summary.added, "job"),
            path.display(),
            summary.kept
        );
    } else if store.job_count()? == 0 {
        return Err(usage(format!(
            "no batch in {} yet; give --jobs FILE to import one",
            args.store_name()
        )));
    }
    if args.release_held {
        let released = store.release_held()?;
        eprintln!("Released {} held for review", count(released, "job"));
    }
    let runner = Runner::new(store.clone(), batch, options(args, config));
    let (stop, _) = tokio::sync::watch::channel(false);
    watch_signals(stop.clone())?;
    let display = progress::Display::for_stderr(args.progress_interval == 0);
    let (on_event, ticker) = observe(args, &display, metrics);
    // Stored jobs of an account the accounts file lacks, or a run other
    // processes share under other settings, are the operator's to fix:
    // `exit::code_of` knows them by type.
    let outcome = runner.run(on_event, stop).await?;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(server) = server {
        server.abort();
    }
    display.finish();
    let summary = status::render(
        &status::report_of(store.as_ref(), args)?,
        &args.store_name(),
        &config,
    );
    print(&format!("\n{summary}"))?;
    Ok(end_line(&outcome))
}

/// Everything the files and plugins say, checked before anything is
/// imported: the batch to run, and the jobs to import (if given). How
/// long each plugin took to load goes to `metrics`.
async fn prepare<'a>(
    args: &'a BatchArgs,
    metrics: &RunMetrics,
) -> Result<(Batch, Option<(&'a PathBuf, Vec<NewJob>)>)> {
    if args.plugins.is_empty() {
        return Err(AssembleError::NoPlugins.into());
    }
    let Some(accounts_file) = &args.accounts_file else {
        return Err(usage(
            "--run needs --accounts-file FILE (base URL and token per account)",
        ));
    };
    let accounts = orchestrator_runner::read_accounts(
        accounts_file,
        &args.platforms,
        args.accounts.as_deref(),
    )?;
    let jobs = match &args.jobs {
        Some(path) => {
            let parsed = args.read_jobs(path)?;
            let used = parsed.iter().map(|j| j.account.as_str());
            if let Some(missing) =
                input::missing_accounts(used, &accounts, args.accounts.as_deref())
            {
                return Err(RunError::UnknownAccounts(missing).into());
            }
            Some((path, parsed))
        }
        None => None,
    };
    let host = plugin_host(args)?;
    let mut plugins = Vec::new();
    for path in &args.plugins {
        let loading = std::time::Instant::now();
        let plugin = host.load(path).await?;
        metrics.plugin_loaded(&plugin.info().name, loading.elapsed());
        plugins.push(plugin);
    }
    let batch = Batch::assemble(plugins, accounts, Some(host))?;
    batch.check_auth()?;
    if let Some((_, jobs)) = &jobs {
        batch.check_media(jobs)?;
    }
    Ok((batch, jobs))
}

/// The plugin host a run loads its plugins into, under the limits given.
pub(crate) fn plugin_host(args: &BatchArgs) -> Result<PluginHost> {
    let limits = orchestrator_plugin_host::Limits {
        // One call per worker at a time, and a reload's describe.
        concurrency: args.workers.saturating_add(1),
        ..args.limits.limits()?
    };
    Ok(PluginHost::with_limits(limits)?
        .with_trusted_certificates(&args.limits.trusted_certificates()?)
        .with_cache(args.limits.cache.cache())
        .with_native(args.limits.native.policy()))
}

/// One run per state file; the lock goes with this process, however it
/// ends. A PostgreSQL store is shared: its runs coordinate by leases.
async fn lock(args: &BatchArgs) -> Result<Option<RunLock>> {
    if postgres_url(&args.state_file).is_some() {
        if args.take_over {
            eprintln!(
                "Nothing to take over: the processes on a PostgreSQL store work side by side (--stop-all stops them)"
            );
        }
        return Ok(None);
    }
    let (lock, acquired) = takeover::acquire(args).await?;
    if let Acquired::TakenOver(pid) = acquired {
        eprintln!(
            "Taking over {} from a run (pid {pid}) that is no longer running",
            args.state_file.display()
        );
    }
    Ok(Some(lock))
}

/// How the runner works, from the flags.
pub(crate) fn options(args: &BatchArgs, config: RetryConfig) -> RunOptions {
    RunOptions {
        config,
        workers: args.workers,
        only_accounts: args.accounts.clone(),
        grace: Duration::from_secs(args.grace_period),
        allow_hosts: args.limits.allow_hosts.clone(),
        key_window: Duration::from_secs(args.key_window),
        halt_on_failure_rate: args.retry.halt_on_failure_rate,
        max_retry_after: Duration::from_secs(args.retry.max_retry_after),
        outage_limit: Duration::from_secs(args.retry.outage_limit),
    }
}

type Observer = Arc<dyn Fn(RunEvent) + Send + Sync>;

/// What the run reports goes to the log (one line per event worth one),
/// to the progress line, printed every --progress-interval, and to the
/// metrics.
fn observe(
    args: &BatchArgs,
    display: &progress::Display,
    metrics: Arc<RunMetrics>,
) -> (Observer, Option<tokio::task::JoinHandle<()>>) {
    let progress = Arc::new(std::sync::Mutex::new(progress::Progress::default()));
    let ticker = (args.progress_interval > 0).then(|| {
        progress::every(
            Duration::from_secs(args.progress_interval),
            progress.clone(),
            display.clone(),
        )
    });
    let shown = display.clone();
    let on_event = move |event: RunEvent| {
        measure(&metrics, &event);
        progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(&event);
        if let Some(line) = log_line(event) {
            shown.say(&line);
        }
    };
    (Arc::new(on_event), ticker)
}

/// What `event` tells the metrics.
fn measure(metrics: &RunMetrics, event: &RunEvent) {
    match event {
        RunEvent::Started { run, at_pass, .. } => metrics.run_started(*run, *at_pass),
        RunEvent::PassStarted { pass, .. } => metrics.pass_started(*pass),
        RunEvent::AttemptStarted { .. } => metrics.attempt_started(),
        RunEvent::AttemptFinished {
            failed,
            took,
            calls,
            ..
        } => {
            for call in calls {
                let kind = match call.call {
                    CallKind::Post => orchestrator_metrics::Call::Post,
                    CallKind::Classify => orchestrator_metrics::Call::Classify,
                };
                metrics.plugin_called(&call.plugin, kind, call.took);
            }
            metrics.attempt_finished(*failed, *took);
        }
        RunEvent::PluginReloaded { new, took, .. } => metrics.plugin_loaded(&new.0, *took),
        _ => {}
    }
}

/// The run's last line, and the exit code that goes with it.
fn end_line(outcome: &RunOutcome) -> u8 {
    let (run, tally) = (outcome.run, outcome.tally);
    match outcome.end {
        RunEnd::AllSucceeded => {
            eprintln!("{}", all_succeeded(&tally));
            exit::SUCCESS
        }
        RunEnd::SomeFailed => {
            eprintln!(
                "Run {run} finished with {} failed, {} unfinished and {} held for review; the next --run retries what its settings allow; see --status for why.",
                count(tally.failed.into(), "job"),
                tally.unfinished,
                tally.held
            );
            exit::FAILURE
        }
        RunEnd::Stopped => {
            eprintln!("Stopped before finishing run {run}; --run again to resume it.");
            exit::STOPPED
        }
    }
}

/// The last line of a run in which every job posted (the summary above it
/// names the run).
fn all_succeeded(tally: &PassTally) -> String {
    match tally.cancelled {
        0 => "All jobs succeeded.".to_string(),
        n => format!("All jobs succeeded, but {n} that were cancelled."),
    }
}

/// SIGINT or SIGTERM stops the run the way `--stop-all` does; a second one
/// aborts at once, leaving attempts in flight to the next run, which treats
/// them as uncertain and retries them under the same idempotency key.
fn watch_signals(stop: tokio::sync::watch::Sender<bool>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            seen += 1;
            if seen == 1 {
                eprintln!("Signal received: stopping; send another to abort at once");
                let _ = stop.send(true);
            } else {
                eprintln!(
                    "Second signal: aborting; attempts in flight are resumed by the next run"
                );
                std::process::exit(i32::from(exit::STOPPED));
            }
        }
    });
    Ok(())
}

/// The run's log line for an event: the configuration, the run, pass
/// boundaries, waits, reloads and stops.
fn log_line(event: RunEvent) -> Option<String> {
    Some(match event {
        RunEvent::Started {
            config,
            jobs,
            run,
            how,
            accounts,
            at_pass,
        } => format!(
            "{config}\nBatch of {}\n{}",
            count(jobs, "job"),
            run_lines(run, &how, accounts.as_deref(), at_pass, &config)
        ),
        RunEvent::PassStarted {
            run,
            pass,
            max,
            jobs,
            budget_finish_ms,
        } => {
            let spread = budget_finish_ms
                .map(|t| (t.saturating_sub(orchestrator_contract::time::now_ms()) + 500) / 1000)
                .filter(|s| *s > 0)
                .map(|s| {
                    format!(
                        "; the rate budgets spread it over at least {}",
                        humantime::format_duration(std::time::Duration::from_secs(s))
                    )
                })
                .unwrap_or_default();
            format!(
                "Starting pass {pass}/{max} of run {run} ({}){spread}",
                count(jobs as u64, "job")
            )
        }
        RunEvent::PassEnded { pass, result } => format!("Pass {pass} ended: {result}"),
        // Whole seconds read as the flag was given (the original tool's
        // line); backoff's jittered waits show a tenth.
        RunEvent::Waiting { seconds: s } => format!("Waiting {} before next pass...", seconds(s)),
        RunEvent::Halting {
            failed,
            finished,
            limit,
        } => format!(
            "Halting: {failed} of {finished} attempts failed, more than --halt-on-failure-rate {limit}%; stopping"
        ),
        RunEvent::Stopping { grace } => format!(
            "Stopping: no new attempts; waiting up to {} for attempts in flight",
            seconds(grace.as_secs_f64())
        ),
        RunEvent::PluginReloaded { path, old, new, .. } => format!(
            "Plugin {} changed: loaded {} {} (sha256 {}), was {} {} (sha256 {})",
            shown(&path.display().to_string()),
            shown(&new.0),
            shown(&new.1),
            new.2.get(..12).unwrap_or(&new.2),
            shown(&old.0),
            shown(&old.1),
            old.2.get(..12).unwrap_or(&old.2)
        ),
        RunEvent::PluginReloadRefused { path, reason } => format!(
            "Plugin {} changed but the new file is refused ({}); keeping the loaded one",
            shown(&path.display().to_string()),
            shown(&reason)
        ),
        RunEvent::Paused {
            scope,
            account,
            seconds: s,
            reason,
        } => match (scope, shown(&account), shown(&reason), seconds(s)) {
            (RetryScope::Platform, account, reason, wait) => format!(
                "Pausing every account on {account}'s platform for {wait} ({reason}); others go on"
            ),
            (_, account, reason, wait) => {
                format!("Pausing account {account} for {wait} ({reason}); others go on")
            }
        },
        RunEvent::PlatformDown { account } => format!(
            "The platform of account {} gives no answer, across accounts: waiting for it; its failures do not count against the jobs",
            shown(&account)
        ),
        RunEvent::PlatformBack {
            account,
            seconds: s,
        } => format!(
            "The platform of account {} answers again, after {}",
            shown(&account),
            seconds(s)
        ),
        RunEvent::AttemptStarted { .. } | RunEvent::AttemptFinished { .. } => return None,
    })
}

/// What the run is: new (and what it retries and skips), resumed, or
/// joined.
pub(crate) fn run_lines(
    run: u32,
    how: &JoinedHow,
    accounts: Option<&[String]>,
    at_pass: Option<u32>,
    config: &RetryConfig,
) -> String {
    let whose = match accounts {
        None => "every account".to_string(),
        Some(list) => format!("accounts {}", shown(&list.join(", "))),
    };
    let max = config.max_passes;
    match how {
        JoinedHow::Began {
            reopened,
            skipped,
            closed,
        } => {
            let mut lines = Vec::new();
            if let Some(closed) = closed {
                lines.push(format!(
                    "Run {} was cut short under other settings ({}): closed, and a new run begins",
                    closed.run,
                    shown(&closed.differences.join(", "))
                ));
            }
            let retrying = match reopened {
                0 => String::new(),
                n => format!(
                    ", retrying {} that failed in earlier runs",
                    count(*n, "job")
                ),
            };
            lines.push(format!("Run {run}: a new run for {whose}{retrying}"));
            for skip in skipped {
                lines.push(format!(
                    "Skipping {} that failed as {} (e.g. {}): {}",
                    count(skip.jobs, "job"),
                    skip.category,
                    shown(&skip.example),
                    status::not_retried_because(skip.category)
                ));
            }
            lines.join("\n")
        }
        JoinedHow::Resumed => match at_pass {
            Some(pass) => format!(
                "Resuming run {run} for {whose}, cut short in pass {pass}/{max}: its passes and every job's budget go on"
            ),
            None => format!("Resuming run {run} for {whose}, cut short before its first pass"),
        },
        JoinedHow::Joined { others } => format!(
            "Joining run {run} for {whose} (pass {}/{max}) beside {others} other processes",
            at_pass.unwrap_or(1)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_store::ClosedRun;

    #[test]
    fn a_stored_run_s_account_names_reach_the_terminal_escaped() {
        // The closed run's accounts come from the store, which took them
        // from an accounts file: a control sequence among them is shown,
        // not sent to the terminal.
        let how = JoinedHow::Began {
            reopened: 0,
            skipped: Vec::new(),
            closed: Some(ClosedRun {
                run: 1,
                differences: vec!["accounts evil\u{1b}[2J (here every account)".into()],
            }),
        };
        let lines = run_lines(2, &how, None, None, &RetryConfig::default());
        assert!(!lines.contains('\u{1b}'), "{lines:?}");
        assert!(lines.starts_with("Run 1 was cut short under other settings (accounts evil"));
    }
}
