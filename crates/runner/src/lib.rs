//! Runs a batch: the pass loop and the bounded concurrent dispatcher.
//!
//! Start from [`Runner::run`]. A run is a series of passes with its own
//! budgets: the store says which run this process works on (a new one, the
//! one cut short, or the one other processes share) and which of its
//! passes is open. A pass claims
//! the jobs the store hands out, runs them with at most `workers` attempts
//! in flight and never more than one per account, classifies every failure (classifier plugins
//! in order, then [`orchestrator_retry::builtin_classification`]), and lets
//! [`orchestrator_retry::decide`] say whether the job is retried. Between
//! passes it waits the retry delay. A retry-after hint is a minimum, and
//! holds back whom its scope names: the job, its account, or every account
//! on the same platform instance (see [`pause`]), while the others go on.
//!
//! The runner reports what happens as [`RunEvent`]s and prints nothing.

mod batch;
pub mod budget;
pub mod clock;
mod dispatch;
mod event;
pub mod input;
pub mod media;
mod outage;
mod pause;
pub mod plugins;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use orchestrator_plugin_host::Plugin;
use orchestrator_retry::{PassManager, RetryConfig};
use orchestrator_store::{
    ClaimLimit, NewProcess, ProcessId, ProcessState, RunPass, RunState, Store, StoreError,
};
use tokio::sync::watch;

pub use batch::{AssembleError, Batch, Platform, read_accounts, under_platforms};
pub use clock::{Clock, SystemClock};
pub use event::{CallKind, PluginCall, RunEnd, RunEvent, RunOutcome};
pub use input::{AccountConfig, InputError};
pub use plugins::{Classify, Post};

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "jobs refer to accounts missing from the accounts file: {0}; add them or leave their jobs out with --accounts"
    )]
    UnknownAccounts(String),
}

/// How the run works.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: RetryConfig,
    /// Attempts in flight at once.
    pub workers: u32,
    /// Only these accounts' jobs.
    pub only_accounts: Option<Vec<String>>,
    /// How long attempts in flight may take to finish after a stop.
    pub grace: Duration,
    /// Hosts every poster call may reach besides its account's own.
    pub allow_hosts: Vec<String>,
    /// How long the platform remembers idempotency keys.
    pub key_window: Duration,
    /// Stop the run when more than this percentage of its attempts failed
    /// (after at least [`HALT_MIN_ATTEMPTS`]).
    pub halt_on_failure_rate: Option<f64>,
    /// The longest wait a retry-after may impose: longer ones (a platform's
    /// mistake, a hostile plugin) are clamped to it.
    pub max_retry_after: Duration,
    /// How long a platform that is down is waited for before its failures
    /// count against the jobs again (0: they always count).
    pub outage_limit: Duration,
}

impl RunOptions {
    /// The process these options make, as the store records it on joining
    /// a run (and the dry run previews it).
    pub fn process(&self, plugins: Vec<orchestrator_store::PluginUse>) -> NewProcess {
        NewProcess {
            pid: std::process::id(),
            config: self.config,
            workers: self.workers,
            accounts: self.only_accounts.clone(),
            key_window_ms: self.key_window.as_millis() as u64,
            plugins,
        }
    }
}

/// Attempts a run makes before `--halt-on-failure-rate` may judge it: a
/// couple of early failures say little.
pub const HALT_MIN_ATTEMPTS: u64 = 10;

/// Attempts finished and failed in this run, for the halt rule.
#[derive(Debug, Default)]
pub(crate) struct RunCounters {
    pub(crate) finished: std::sync::atomic::AtomicU64,
    pub(crate) failed: std::sync::atomic::AtomicU64,
}

/// Runs batches against one store.
pub struct Runner {
    store: Arc<dyn Store>,
    /// Swapped between passes when a plugin file changes.
    batch: std::sync::Mutex<Arc<Batch>>,
    options: RunOptions,
    counters: Arc<RunCounters>,
    pauses: Arc<pause::Pauses>,
    /// The accounts' and platforms' rate budgets, kept across passes.
    budgets: Arc<budget::Budgets>,
    outages: Arc<outage::Outages>,
    clock: Arc<dyn Clock>,
}

impl Runner {
    pub fn new(store: Arc<dyn Store>, batch: Batch, options: RunOptions) -> Self {
        let outage_limit_ms = options.outage_limit.as_millis() as u64;
        let budgets = Arc::new(budget::Budgets::of(batch.accounts.values()));
        Runner {
            budgets,
            store,
            batch: std::sync::Mutex::new(Arc::new(batch)),
            options,
            counters: Arc::default(),
            pauses: Arc::default(),
            outages: Arc::new(outage::Outages::new(outage_limit_ms)),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same runner reading the time from `clock` (tests: tokio's
    /// paused clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Works on a run until it ends (nothing is left to do in it, or its
    /// passes run out) or a stop is requested. `stop` may be set by the
    /// caller (a signal); `--stop-all` from another process is seen through
    /// the store.
    pub async fn run(
        &self,
        report: Arc<dyn Fn(RunEvent) + Send + Sync>,
        stop: watch::Sender<bool>,
    ) -> Result<RunOutcome, RunError> {
        let store = &self.store;
        self.check_accounts().await?;
        let new = self.options.process(self.batch().plugins_in_use());
        let joined = self.call(move |s| s.join_run(&new)).await?;
        let (process, run) = (joined.process, joined.run);
        report(RunEvent::Started {
            config: self.options.config,
            jobs: self.call(|s| s.job_count()).await?,
            run,
            how: joined.how,
            accounts: joined.accounts.clone(),
            at_pass: self
                .call(move |s| s.latest_pass(run))
                .await?
                .map(|m| m.pass),
        });
        // The platform's waits outlast the run that was told of them (as
        // long as this run lets any wait last).
        let max_wait = self.options.max_retry_after.as_millis() as u64;
        let now = self.clock.now_ms();
        self.pauses.restore(
            &self.call(move |s| s.pauses(now, max_wait)).await?,
            &self.batch().accounts,
        );
        self.spent().await?;

        // Another process asks through the store; poll it. A shared store's
        // leases live as long as the process renews them, on the same beat.
        let keeper = {
            let store = store.clone();
            let stop = stop.clone();
            let renew_every = store.lease().map(|lease| lease / 3);
            tokio::spawn(async move {
                let mut renewed = tokio::time::Instant::now();
                loop {
                    tokio::time::sleep(STOP_POLL).await;
                    let renew = renew_every.is_some_and(|every| renewed.elapsed() >= every);
                    if renew {
                        renewed = tokio::time::Instant::now();
                    }
                    // Off the runtime's threads: a shared store's call may
                    // wait out a database outage.
                    let store = store.clone();
                    let asked = tokio::task::spawn_blocking(move || {
                        if renew && let Err(e) = store.renew(process) {
                            tracing::warn!("cannot renew this process's leases: {e}");
                        }
                        store.stop_requested(process)
                    })
                    .await;
                    match asked {
                        // Leases are still renewed while attempts in flight
                        // finish after a stop.
                        Ok(Ok(true)) => {
                            stop.send_if_modified(|s| !std::mem::replace(s, true));
                        }
                        Ok(Ok(false)) | Err(_) => {}
                        Ok(Err(e)) => tracing::warn!("cannot read stop requests: {e}"),
                    }
                }
            })
        };
        // The run's accounts: a process works on exactly those.
        let scope = joined.accounts;
        let result = self
            .passes(process, run, scope.as_deref(), &report, &stop)
            .await;
        keeper.abort();
        let end = match result {
            Ok(end) => end,
            Err(e) => {
                let _ = self
                    .call(move |s| s.leave_run(process, ProcessState::Stopped))
                    .await;
                return Err(e);
            }
        };
        let state = match end {
            RunEnd::Stopped => ProcessState::Stopped,
            _ => ProcessState::Finished,
        };
        self.call(move |s| s.leave_run(process, state)).await?;
        Ok(RunOutcome {
            run,
            end,
            tally: self.call(move |s| s.tally(scope.as_deref())).await?,
        })
    }

    pub(crate) fn batch(&self) -> Arc<Batch> {
        self.batch.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Loads the new version of any plugin whose file changed since it was
    /// loaded, so a fixed poster serves the next pass without a restart.
    async fn reload_changed(&self, report: &Arc<dyn Fn(RunEvent) + Send + Sync>) {
        let current = self.batch();
        let Some(host) = &current.reload_with else {
            return;
        };
        let mut next = (*current).clone();
        let mut changed = false;
        for poster in &mut next.posters {
            if let Some(Plugin::Poster(new)) = reloaded(host, poster.loaded_from(), report).await {
                *poster = Arc::new(new);
                changed = true;
            }
        }
        for classifier in &mut next.classifiers {
            if let Some(Plugin::Classifier(new)) =
                reloaded(host, classifier.loaded_from(), report).await
            {
                *classifier = Arc::new(new);
                changed = true;
            }
        }
        if changed {
            *self.batch.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        }
    }

    /// Every job a run may attempt must belong to an account in the
    /// accounts file.
    async fn check_accounts(&self) -> Result<(), RunError> {
        let only = self.options.only_accounts.as_deref();
        let used = self.call(|s| s.accounts_with_work()).await?;
        match input::missing_accounts(
            used.iter().map(String::as_str),
            &self.batch().accounts,
            only,
        ) {
            Some(missing) => Err(RunError::UnknownAccounts(missing)),
            None => Ok(()),
        }
    }

    /// Works pass after pass of `run`. The store says which pass is open, so
    /// every process on the run works on the same one: each claims jobs of
    /// the open pass until none are left anywhere, the first to see that
    /// ends the pass and opens the next one after the retry delay (or ends
    /// the run), and all of them wait for it to open.
    async fn passes(
        &self,
        process: ProcessId,
        run: u32,
        scope: Option<&[String]>,
        report: &Arc<dyn Fn(RunEvent) + Send + Sync>,
        stop: &watch::Sender<bool>,
    ) -> Result<RunEnd, RunError> {
        let config = self.options.config;
        let owned = scope.map(<[String]>::to_vec);
        let tally = || {
            let scope = owned.clone();
            self.call(move |s| s.tally(scope.as_deref()))
        };
        let mut worked = false;
        let mut planned: Option<Duration> = None;
        loop {
            if *stop.borrow() {
                return Ok(RunEnd::Stopped);
            }
            let latest = self.call(move |s| s.latest_pass(run)).await?;
            let pass = match latest {
                Some(mark) if !mark.ended => mark,
                _ => {
                    // No pass open: the run ended, or its next pass is due,
                    // or nothing is left to do in it.
                    if self.call(move |s| s.run_state(run)).await? != RunState::Open {
                        break;
                    }
                    let done = latest.map_or(0, |mark| mark.pass);
                    let next = PassManager::new(config, done).start_pass();
                    match next {
                        Some(next) if tally().await?.unfinished > 0 => {
                            let now = self.clock.now_ms();
                            self.call(move |s| s.begin_pass(RunPass { run, pass: next }, now))
                                .await?;
                        }
                        _ => self.call(move |s| s.end_run(run)).await?,
                    }
                    continue;
                }
            };
            let wait = pass.opens_ms.saturating_sub(self.clock.now_ms());
            if worked || wait > 0 {
                // The delay this process chose, as configured (10 s reads
                // "10s"), when it opened this pass; else what is left of
                // another's.
                let seconds = match planned.take() {
                    Some(delay) => delay.as_secs_f64(),
                    None => wait as f64 / 1000.0,
                };
                report(RunEvent::Waiting { seconds });
                if self.sleep(Duration::from_millis(wait), stop).await {
                    return Ok(RunEnd::Stopped);
                }
            }
            worked = true;
            let at = RunPass {
                run,
                pass: pass.pass,
            };
            if self.work_on(process, at, scope, report, stop).await? {
                return Ok(RunEnd::Stopped);
            }
            let result = PassManager::new(config, pass.pass).end_pass(tally().await?);
            let delay = config.delay_before(pass.pass + 1, jitter());
            let next = result.continues().then(|| {
                (
                    pass.pass + 1,
                    self.clock.now_ms() + delay.as_millis() as u64,
                )
            });
            let ended = self.call(move |s| s.end_pass(at, &result, next));
            if ended.await? && next.is_some() {
                planned = Some(delay);
            }
            report(RunEvent::PassEnded {
                pass: pass.pass,
                result,
            });
        }
        let tally = tally().await?;
        if tally.failed == 0 && tally.unfinished == 0 && tally.held == 0 {
            Ok(RunEnd::AllSucceeded)
        } else {
            Ok(RunEnd::SomeFailed)
        }
    }

    /// Claims and runs jobs of pass `at` until none is left unfinished, here
    /// or in another process. Returns whether a stop cut it short.
    async fn work_on(
        &self,
        process: ProcessId,
        at: RunPass,
        scope: Option<&[String]>,
        report: &Arc<dyn Fn(RunEvent) + Send + Sync>,
        stop: &watch::Sender<bool>,
    ) -> Result<bool, RunError> {
        let owned = scope.map(<[String]>::to_vec);
        self.reload_changed(report).await;
        report(RunEvent::PassStarted {
            run: at.run,
            pass: at.pass,
            max: self.options.config.max_passes,
            budget_finish_ms: self.budget_finish(scope).await?,
            jobs: {
                let scope = owned.clone();
                self.call(move |s| s.eligible_count(at.pass, scope.as_deref()))
                    .await? as usize
            },
        });
        // An account has one attempt in flight at a time, so `workers`
        // accounts keep every worker busy; a few jobs of each last until the
        // next claim.
        let workers = self.options.workers.max(1) as usize;
        let limit = ClaimLimit {
            jobs: workers.saturating_mul(4).max(64),
            accounts: workers,
        };
        loop {
            let scope = owned.clone();
            let jobs = self
                .call(move |s| s.claim(process, at.pass, scope.as_deref(), limit))
                .await?;
            if !jobs.is_empty() {
                // No attempt of this process is in flight: what the budgets
                // spent is all in the store, with what other processes
                // spent — read after the claim, which finds an account
                // free only once the starts of whoever held it last are
                // stored.
                self.spent().await?;
                if dispatch::run_pass(self, at, jobs, report.clone(), stop.clone()).await? {
                    return Ok(true);
                }
                continue;
            }
            let scope = owned.clone();
            let unfinished = self.call(move |s| s.unfinished_in_pass(at.pass, scope.as_deref()));
            if unfinished.await? == 0 {
                return Ok(false);
            }
            // Other processes hold the rest; theirs may yet come back to us
            // when a lease expires.
            if self.sleep(CLAIM_POLL, stop).await {
                return Ok(true);
            }
        }
    }

    /// Takes up the rate budgets where the store says they stand.
    async fn spent(&self) -> Result<(), StoreError> {
        if self.budgets.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let since = now.saturating_sub(self.budgets.horizon().as_millis() as u64);
        let spent = self.call(move |s| s.spent_since(since)).await?;
        self.budgets.seed(&spent, self.clock.now_ms());
        Ok(())
    }

    /// When the budgets let the open jobs of `scope` all have started, if
    /// they hold any back.
    async fn budget_finish(&self, scope: Option<&[String]>) -> Result<Option<u64>, StoreError> {
        if self.budgets.is_empty() {
            return Ok(None);
        }
        let mut open = Vec::new();
        let mut offset = 0;
        loop {
            let page = self
                .call(move |s| s.accounts_page(offset, orchestrator_store::PAGE_MAX))
                .await?;
            let (rows, total) = page;
            offset += rows.len() as u64;
            for row in rows {
                if scope.is_some_and(|only| !only.contains(&row.account)) {
                    continue;
                }
                let jobs: u64 = row
                    .by_state
                    .iter()
                    .filter(|(state, _)| matches!(state.as_str(), "pending" | "retry" | "running"))
                    .map(|(_, n)| n)
                    .sum();
                open.push((row.account, jobs));
            }
            if offset >= total || offset == 0 {
                break;
            }
        }
        Ok(self.budgets.earliest_finish(&open, self.clock.now_ms()))
    }

    /// Runs one store call on tokio's blocking threads: a shared store may
    /// wait out a database outage for minutes, which must not park a thread
    /// the attempts run on.
    async fn call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || call(store.as_ref())).await {
            Ok(answer) => answer,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Sleeps for `duration`; returns whether a stop came first.
    async fn sleep(&self, duration: Duration, stop: &watch::Sender<bool>) -> bool {
        let mut stopped = stop.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(duration) => false,
            _ = stopped.wait_for(|s| *s) => true,
        }
    }
}

/// The new version of the plugin loaded as `old`, if its file changed and
/// the new file loads as a plugin of the same kind; a refusal is reported
/// and the old one stays.
async fn reloaded(
    host: &orchestrator_plugin_host::PluginHost,
    old: Option<&orchestrator_plugin_host::PluginMeta>,
    report: &Arc<dyn Fn(RunEvent) + Send + Sync>,
) -> Option<Plugin> {
    let old = old?;
    let sha = host.file_sha256(&old.path).ok()?;
    if sha == old.sha256 {
        return None;
    }
    let side = |m: &orchestrator_plugin_host::PluginMeta| {
        (
            m.info.name.clone(),
            m.info.version.clone(),
            m.sha256.clone(),
        )
    };
    let loading = std::time::Instant::now();
    match host.load(&old.path).await {
        Ok(new) if new.kind() == old.kind => {
            report(RunEvent::PluginReloaded {
                path: old.path.clone(),
                old: side(old),
                new: side(new.meta()),
                took: loading.elapsed(),
            });
            Some(new)
        }
        Ok(new) => {
            report(RunEvent::PluginReloadRefused {
                path: old.path.clone(),
                reason: format!("it is now a {}, not a {}", new.kind(), old.kind),
            });
            None
        }
        Err(e) => {
            report(RunEvent::PluginReloadRefused {
                path: old.path.clone(),
                reason: e.reason(),
            });
            None
        }
    }
}

/// How often a run looks for a stop asked through the store.
const STOP_POLL: Duration = Duration::from_millis(200);

/// How often a process with nothing to claim looks again, while other
/// processes finish the pass.
const CLAIM_POLL: Duration = Duration::from_millis(250);

/// A jitter sample in `[0, 1)`; the clock's nanoseconds are random enough to
/// keep batches started together out of step.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1_000_000) / 1_000_000.0
}
