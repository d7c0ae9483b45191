//! `--run --dry-run`: checks everything a run needs — the jobs and the
//! files they attach, the accounts and every token reference, the plugins
//! and each account's poster and grants — and says, per account, what a
//! run would attempt, what it would skip and why, and the earliest finish
//! the rate budgets allow. Every problem is listed at once ([`Problems`]);
//! no platform is contacted, nothing stored changes.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::Result;
use orchestrator_retry::RetryConfig;
use orchestrator_runner::budget::Budgets;
use orchestrator_runner::{AccountConfig, Batch, input};
use orchestrator_store::{JobState, JobSummary, JoinPreview, JoinedHow, Store, StoreError};

use crate::commands::batch::{BatchArgs, open_postgres_unchanged, postgres_url};
use crate::commands::{run, status};
use crate::exit;
use crate::output::{Table, print, seconds, shown};

/// What stops a run, in the order found.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, problem: impl std::fmt::Display) {
        self.0.push(format!("{problem:#}"));
    }
}

/// What a run would do with one account's jobs.
#[derive(Default)]
struct Plan {
    poster: Option<String>,
    attempt: u64,
    /// Why the others would not be attempted, with how many.
    skip: BTreeMap<String, u64>,
}

pub async fn run(args: &BatchArgs) -> Result<u8> {
    let config = args.validate()?;
    let mut problems = Problems::default();
    let accounts = accounts(args, &mut problems);
    let jobs = match &args.jobs {
        Some(path) => match args.read_jobs(path) {
            Ok(jobs) => Some(jobs),
            Err(e) => {
                problems.add(e);
                None
            }
        },
        None => None,
    };
    if let (Some(jobs), Some(accounts)) = (&jobs, &accounts)
        && let Some(missing) = input::missing_accounts(
            jobs.iter().map(|j| j.account.as_str()),
            accounts,
            args.accounts.as_deref(),
        )
    {
        problems.add(format!(
            "jobs refer to accounts missing from the accounts file: {missing}; add them or leave their jobs out with --accounts"
        ));
    }
    let batch = batch(args, accounts.clone(), &mut problems).await;
    if let (Some(batch), Some(jobs)) = (&batch, &jobs)
        && let Err(e) = batch.check_media(jobs)
    {
        problems.add(e);
    }

    // What the store holds, and what joining a run would make of it:
    // worked out, never written.
    let stored = match stored(args, &config) {
        Ok(stored) => stored,
        Err(e) => {
            problems.add(e);
            None
        }
    };
    if stored.as_ref().is_none_or(|s| s.jobs.is_empty()) && args.jobs.is_none() {
        problems.add(format!(
            "no batch in {} yet; give --jobs FILE to import one",
            args.store_name()
        ));
    }
    let mut plans: BTreeMap<String, Plan> = BTreeMap::new();
    let Stored {
        jobs: known,
        preview,
        spent,
    } = stored.unwrap_or_default();
    let preview = match preview {
        Some(Ok(preview)) => Some(preview),
        Some(Err(e)) => {
            problems.add(e);
            None
        }
        None => None,
    };
    let ids: HashSet<&str> = known.iter().map(|j| j.id.as_str()).collect();
    for job in jobs
        .iter()
        .flatten()
        .filter(|j| !ids.contains(j.id.as_str()))
    {
        plans.entry(job.account.clone()).or_default().attempt += 1;
    }
    // The jobs as the run would find them once it has joined (the same
    // jobs in the same order: joining adds none); as stored when it could
    // not.
    let after = preview.as_ref().map(|(p, _)| &p.after);
    let began = preview
        .as_ref()
        .is_some_and(|(p, _)| matches!(p.joined.how, JoinedHow::Began { .. }));
    for (i, job) in known.iter().enumerate() {
        let plan = plans.entry(job.account.clone()).or_default();
        let then = after
            .and_then(|a| a.get(i))
            .filter(|then| then.id == job.id)
            .unwrap_or(job);
        match skipped(job.state, then, &config, args.release_held, began) {
            None => plan.attempt += 1,
            Some(why) => *plan.skip.entry(why).or_default() += 1,
        }
    }
    if let Some(only) = &args.accounts {
        for (_, plan) in plans.iter_mut().filter(|(a, _)| !only.contains(a)) {
            let all = std::mem::take(&mut plan.attempt) + plan.skip.values().sum::<u64>();
            plan.skip = BTreeMap::from([("not in --accounts".to_owned(), all)]);
        }
    }
    // Stored jobs a run would attempt need their accounts too (those of
    // the jobs file were checked above).
    if let Some(accounts) = &accounts {
        let in_file: HashSet<&str> = jobs.iter().flatten().map(|j| j.account.as_str()).collect();
        let stored_work = plans
            .iter()
            .filter(|(account, plan)| plan.attempt > 0 && !in_file.contains(account.as_str()))
            .map(|(account, _)| account.as_str());
        if let Some(missing) =
            input::missing_accounts(stored_work, accounts, args.accounts.as_deref())
        {
            problems.add(format!(
                "stored jobs a run would attempt belong to accounts missing from the accounts file: {missing}; add them, or leave their jobs out with --accounts or cancel them"
            ));
        }
    }
    if let Some(batch) = &batch {
        for (account, plan) in plans.iter_mut() {
            if batch.accounts.contains_key(account) {
                plan.poster = Some(batch.poster_for(account).info().name.clone());
            }
        }
    }

    let now = orchestrator_contract::time::now_ms();
    // As the run would have them: with the budgets posters declare.
    let accounts = batch.as_ref().map(|b| b.accounts.clone()).or(accounts);
    let budgets = accounts.as_ref().map(|a| Budgets::of(a.values()));
    if let Some(budgets) = &budgets {
        budgets.seed(&spent, now);
    }
    let finish = |account: &str, jobs: u64| {
        budgets
            .as_ref()
            .and_then(|b| b.earliest_finish(&[(account.to_owned(), jobs)], now))
    };

    let mut out =
        String::from("Dry run: no platform was contacted, and nothing stored changed.\n\n");
    if let Some((JoinPreview { joined, .. }, at_pass)) = &preview {
        for line in run::run_lines(
            joined.run,
            &joined.how,
            joined.accounts.as_deref(),
            *at_pass,
            &config,
        )
        .lines()
        {
            out.push_str(&format!("  {line}\n"));
        }
        out.push('\n');
    }
    let mut table = Table::new(vec![
        "  ACCOUNT",
        "POSTER",
        "ATTEMPT",
        "SKIP",
        "EARLIEST FINISH",
        "REACHES",
    ]);
    for (account, plan) in &plans {
        let skip: Vec<String> = plan
            .skip
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect();
        let config = accounts.as_ref().and_then(|a| a.get(account));
        table.row(vec![
            format!("  {}", shown(account)),
            plan.poster.clone().unwrap_or_else(|| "-".into()),
            plan.attempt.to_string(),
            if skip.is_empty() {
                "-".into()
            } else {
                skip.join(", ")
            },
            match finish(account, plan.attempt) {
                Some(t) => format!(
                    "in {} ({})",
                    seconds((t - now) as f64 / 1000.0),
                    rates_of(config)
                ),
                None => "-".into(),
            },
            config.map_or_else(|| "-".into(), |c| reaches(c, args)),
        ]);
    }
    out.push_str(&table.render());
    let all: Vec<(String, u64)> = plans.iter().map(|(a, p)| (a.clone(), p.attempt)).collect();
    let attempts: u64 = all.iter().map(|(_, n)| n).sum();
    out.push_str(&format!("\nA run would attempt {attempts}"));
    match budgets.as_ref().and_then(|b| b.earliest_finish(&all, now)) {
        Some(t) => out.push_str(&format!(
            "; the rate budgets let the last start no sooner than {} from now.\n",
            seconds((t - now) as f64 / 1000.0)
        )),
        None => out.push_str(".\n"),
    }
    if problems.0.is_empty() {
        out.push_str("No problems found: --run without --dry-run would start.\n");
        print(&out)?;
        return Ok(exit::SUCCESS);
    }
    out.push_str(&format!("\nProblems ({}):\n", problems.0.len()));
    for problem in &problems.0 {
        out.push_str(&format!("  - {}\n", shown(problem)));
    }
    out.push_str("A run would refuse to start; fix these and try again.\n");
    print(&out)?;
    Ok(exit::USAGE)
}

/// The accounts file under its platforms, every token reference resolved
/// (each one that cannot be is a problem); `None` when the file itself is.
fn accounts(args: &BatchArgs, problems: &mut Problems) -> Option<BTreeMap<String, AccountConfig>> {
    let Some(file) = &args.accounts_file else {
        problems.add("--run needs --accounts-file FILE (base URL and token per account)");
        return None;
    };
    let mut accounts = match input::read_accounts(file) {
        Ok(accounts) => accounts,
        Err(e) => {
            problems.add(e);
            return None;
        }
    };
    orchestrator_runner::under_platforms(&mut accounts, &args.platforms);
    for only in args.accounts.iter().flatten() {
        if !accounts.contains_key(only) {
            problems.add(format!(
                "--accounts names {only}, which {} does not define",
                file.display()
            ));
        }
    }
    for account in accounts.values_mut() {
        if let Err(e) = account.resolve_token() {
            problems.add(e);
        }
    }
    Some(accounts)
}

/// Every plugin loaded and the batch put together as a run would; each
/// plugin refused, and a batch that cannot be, is a problem.
async fn batch(
    args: &BatchArgs,
    accounts: Option<BTreeMap<String, AccountConfig>>,
    problems: &mut Problems,
) -> Option<Batch> {
    if args.plugins.is_empty() {
        problems.add(orchestrator_runner::AssembleError::NoPlugins);
        return None;
    }
    let host = match run::plugin_host(args) {
        Ok(host) => host,
        Err(e) => {
            problems.add(e);
            return None;
        }
    };
    let mut plugins = Vec::new();
    for path in &args.plugins {
        match host.load(path).await {
            Ok(plugin) => plugins.push(plugin),
            Err(e) => problems.add(format!("plugin {}: {e}", path.display())),
        }
    }
    if plugins.len() < args.plugins.len() {
        return None;
    }
    let batch = match Batch::assemble(plugins, accounts?, None) {
        Ok(batch) => batch,
        Err(e) => {
            problems.add(e);
            return None;
        }
    };
    if let Err(e) = batch.check_auth() {
        problems.add(e);
    }
    Some(batch)
}

/// What joining a run would do, and the pass that run is in.
type Preview = (JoinPreview, Option<u32>);

/// What the store holds, for the dry run.
#[derive(Default)]
struct Stored {
    /// The jobs as stored (with a preview, as it read them).
    jobs: Vec<JobSummary>,
    /// What joining a run would do; why a run could not join, when it
    /// could not.
    preview: Option<Result<Preview, anyhow::Error>>,
    /// What the rate budgets spent lately.
    spent: Vec<(String, u64)>,
}

/// What the store holds; `None` when there is no store yet, or when the
/// run would clear it (`--force-reseed`). A state file is opened
/// read-only, and what joining a run would do is worked out in a copy
/// (SQLite) or a transaction rolled back (PostgreSQL).
fn stored(args: &BatchArgs, config: &RetryConfig) -> Result<Option<Stored>> {
    if !args.store_exists() || args.force_reseed {
        return Ok(None);
    }
    let Some(store) = open_unchanged(args)? else {
        return Ok(None);
    };
    let horizon = orchestrator_runner::budget::MAX_HORIZON.as_millis() as u64;
    let since = orchestrator_contract::time::now_ms().saturating_sub(horizon);
    // A run working on a state file refuses another: there is nothing to
    // join, and what it has in flight is its own.
    let locked = match postgres_url(&args.state_file) {
        Some(_) => None,
        None => {
            orchestrator_store::run_lock_holder(&args.state_file)?.map(|pid| StoreError::Locked {
                path: args.state_file.display().to_string(),
                pid,
            })
        }
    };
    let preview = match locked {
        Some(locked) => Err(locked.into()),
        None => {
            let process = run::options(args, *config).process(Vec::new());
            // The pass a resumed or joined run is in, as the run's first
            // line names it (a new run has none yet).
            store
                .preview_join(&process)
                .and_then(|preview| {
                    let at_pass = store.latest_pass(preview.joined.run)?.map(|m| m.pass);
                    Ok((preview, at_pass))
                })
                .map_err(anyhow::Error::from)
        }
    };
    let (jobs, preview) = match preview {
        Ok((mut preview, at_pass)) => (std::mem::take(&mut preview.before), Ok((preview, at_pass))),
        Err(e) => (store.job_summaries()?, Err(e)),
    };
    Ok(Some(Stored {
        jobs,
        preview: Some(preview),
        spent: store.spent_since(since)?,
    }))
}

/// The store, opened so that nothing in it changes; `None` for a
/// database without the schema (no batch yet).
fn open_unchanged(args: &BatchArgs) -> Result<Option<Box<dyn Store>>> {
    let store: Box<dyn Store> = if let Some(url) = postgres_url(&args.state_file) {
        // Opened without migrating: a dry run changes nothing, schema
        // included. A database without the schema has no batch yet.
        match open_postgres_unchanged(url, Duration::from_secs(args.lease)) {
            Ok(store) => Box::new(store),
            Err(e) => {
                return match e.downcast_ref::<StoreError>() {
                    Some(StoreError::NotMigrated { found: 0, .. }) => Ok(None),
                    _ => Err(e),
                };
            }
        }
    } else {
        Box::new(orchestrator_store::SqliteStore::open_read_only(
            &args.state_file,
        )?)
    };
    Ok(Some(store))
}

/// Why a run would not attempt a job stored as `before`, `then` as it
/// would stand once the run joined, if it would not.
fn skipped(
    before: JobState,
    then: &JobSummary,
    config: &RetryConfig,
    release_held: bool,
    began: bool,
) -> Option<String> {
    let why = match then.state {
        JobState::Pending | JobState::Retry => return None,
        JobState::Succeeded => "already posted",
        JobState::Cancelled => "cancelled",
        JobState::Running => "in flight in another process",
        // --release-held lets go of what was held before the run joins,
        // not of what joining holds.
        JobState::NeedsReview if before != JobState::NeedsReview => {
            "held for review: in flight when a run died, longer ago than the platform remembers idempotency keys"
        }
        JobState::NeedsReview if release_held => return None,
        JobState::NeedsReview => "held for review (--release-held)",
        JobState::Failed => {
            let category = then
                .category
                .as_deref()
                .and_then(orchestrator_contract::Category::parse)
                .unwrap_or(orchestrator_contract::Category::Unknown);
            let why = if config.retries(category) && !began {
                // Only a new run reopens what failed in an earlier one.
                "failed in the run a run would go on with; `retry` reopens it".to_owned()
            } else {
                status::not_retried_because(category).to_string()
            };
            return Some(format!("failed {category} ({why})"));
        }
    };
    Some(why.to_owned())
}

/// The budgets that hold back an account: its own and its platform's.
fn rates_of(account: Option<&AccountConfig>) -> String {
    let Some(account) = account else {
        return String::new();
    };
    let mut parts = Vec::new();
    if !account.rates.is_empty() {
        parts.push(format!("rate {}", account.rates));
    }
    if let Some((host, rates)) = &account.platform_rates {
        parts.push(format!("{host} {rates}"));
    }
    parts.join("; ")
}

/// The hosts an account's posts may reach: its own, and those granted.
fn reaches(account: &AccountConfig, args: &BatchArgs) -> String {
    account
        .access(&args.limits.allow_hosts)
        .granted
        .iter()
        .map(|h| shown(h).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: JobState, category: Option<&str>) -> JobSummary {
        JobSummary {
            id: "j".into(),
            account: "a".into(),
            state,
            category: category.map(str::to_owned),
            attempts: 1,
            remote_id: None,
        }
    }

    #[test]
    fn a_job_is_skipped_for_what_it_would_be_once_the_run_joined() {
        let config = RetryConfig::default();
        let skip =
            |before, then: &JobSummary, release| skipped(before, then, &config, release, false);
        // Taken back from a run that died: attempted again.
        assert_eq!(
            skip(JobState::Running, &job(JobState::Retry, None), false),
            None
        );
        // Held by joining: --release-held does not release it.
        let held = job(JobState::NeedsReview, None);
        assert!(
            skip(JobState::Running, &held, true)
                .unwrap()
                .starts_with("held for review: in flight when a run died")
        );
        // Held before: released by --release-held.
        assert_eq!(skip(JobState::NeedsReview, &held, true), None);
        assert_eq!(
            skip(JobState::NeedsReview, &held, false).unwrap(),
            "held for review (--release-held)"
        );
        // Still in flight after joining: another process holds it.
        let running = job(JobState::Running, None);
        assert_eq!(
            skip(JobState::Running, &running, false).unwrap(),
            "in flight in another process"
        );
        // Failed with a category the settings retry, yet not reopened: the
        // run goes on rather than beginning anew.
        let failed = job(JobState::Failed, Some("retryable"));
        assert_eq!(
            skip(JobState::Failed, &failed, false).unwrap(),
            "failed retryable (failed in the run a run would go on with; `retry` reopens it)"
        );
        // A new run reopens every failure it retries: one still failed
        // after it is one it does not (here, a category it cannot read).
        let odd = job(JobState::Failed, Some("from-a-newer-version"));
        assert!(
            !skipped(JobState::Failed, &odd, &config, false, true)
                .unwrap()
                .contains("a run would go on with")
        );
        let refused = job(JobState::Failed, Some("non-retryable"));
        assert!(
            skip(JobState::Failed, &refused, false)
                .unwrap()
                .starts_with("failed non-retryable (")
        );
    }
}
