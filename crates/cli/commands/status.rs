//! `--status`: where the batch stands, read from the store alone.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use orchestrator_contract::{Category, RetryScope};
use orchestrator_retry::RetryConfig;
use orchestrator_runner::budget::{Budgets, Holder, Use};
use orchestrator_store::{RetryEntry, RunStatus, StatusReport, Store, StoreConnection};
use serde::Serialize;

use crate::commands::batch::{BatchArgs, postgres_url};
use crate::exit;
use crate::output::{Table, count, print, print_json, seconds, shown};

#[derive(Serialize)]
struct StatusJson<'a> {
    state_file: String,
    /// `null` when the state file holds no batch yet.
    batch: Option<&'a StatusReport>,
    retry_configuration: RetryConfig,
    workers: u32,
    /// How this process reaches a PostgreSQL store (whether it is
    /// encrypted); absent for a state file.
    #[serde(skip_serializing_if = "Option::is_none")]
    connection: Option<StoreConnection>,
    /// The rate budgets of the accounts file given, as they stand now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    budgets: Vec<BudgetJson>,
}

#[derive(Serialize)]
struct BudgetJson {
    /// `account NAME` or `platform HOST`.
    holder: String,
    rate: String,
    used: u64,
    /// When the oldest attempt counted leaves the window (RFC 3339).
    refills_at: Option<String>,
}

pub fn run(args: &BatchArgs) -> Result<u8> {
    let config = args.validate()?;
    // Reading status must not create a state file where there is none.
    let read_only = postgres_url(&args.state_file).is_none()
        && std::fs::metadata(&args.state_file).is_ok_and(|m| m.permissions().readonly());
    let store: Option<Box<dyn Store>> = if read_only {
        let store = orchestrator_store::SqliteStore::open_read_only(&args.state_file)?;
        Some(Box::new(store))
    } else if args.store_exists() {
        Some(args.open_store()?)
    } else {
        None
    };
    let (report, budgets, connection) = match store {
        Some(store) => (
            Some(report_of(store.as_ref(), args)?).filter(|r| r.jobs > 0),
            budgets_of(store.as_ref(), args),
            store.connection()?,
        ),
        None => (None, Ok(Vec::new()), None),
    };
    if args.json {
        print_json(&StatusJson {
            state_file: args.store_name(),
            batch: report.as_ref(),
            retry_configuration: config,
            workers: args.workers,
            connection,
            budgets: budgets
                .unwrap_or_default()
                .into_iter()
                .flat_map(|(holder, uses)| {
                    uses.into_iter().map(move |u| BudgetJson {
                        holder: holder.to_string(),
                        rate: u.rate.to_string(),
                        used: u.used,
                        refills_at: u.refills_ms.map(time),
                    })
                })
                .collect(),
        })?;
        return Ok(exit::SUCCESS);
    }
    let mut out = String::new();
    match &report {
        None => out.push_str(&format!(
            "No batch in {} yet; import one with --seed-only --jobs FILE or --run --jobs FILE\n",
            args.store_name()
        )),
        Some(report) => out.push_str(&render(report, &args.store_name(), &config)),
    }
    if let Some(connection) = &connection {
        // Beneath the first line, which names the store.
        let at = out.find('\n').map_or(out.len(), |i| i + 1);
        out.insert_str(
            at,
            // The TLS version is the server's word: escaped as any.
            &format!(
                "  store:       {}, {}\n",
                args.store_name(),
                shown(&connection.to_string())
            ),
        );
    }
    out.push_str(&render_budgets(budgets));
    // The settings this command was given (the original tool prints them).
    out.push_str("\nGiven to this command:\n");
    out.push_str(&config.to_string());
    out.push('\n');
    print(&out)?;
    Ok(exit::SUCCESS)
}

/// Everything `--status` shows of `store`, the waits running now included
/// (each as long as `--max-retry-after` lets it be).
pub fn report_of(store: &dyn Store, args: &BatchArgs) -> Result<StatusReport> {
    let mut report = store.status()?;
    let max_wait_ms = args.retry.max_retry_after.saturating_mul(1000);
    report.pauses = store.pauses(orchestrator_contract::time::now_ms(), max_wait_ms)?;
    Ok(report)
}

/// What the rate budgets of the accounts file given (`--accounts-file`)
/// have spent, by holder; none without one.
fn budgets_of(store: &dyn Store, args: &BatchArgs) -> Result<Vec<(Holder, Vec<Use>)>, String> {
    let Some(file) = &args.accounts_file else {
        return Ok(Vec::new());
    };
    let mut accounts =
        orchestrator_runner::input::read_accounts(file).map_err(|e| e.to_string())?;
    orchestrator_runner::under_platforms(&mut accounts, &args.platforms);
    let budgets = Budgets::of(accounts.values());
    if budgets.is_empty() {
        return Ok(Vec::new());
    }
    let now = orchestrator_contract::time::now_ms();
    let since = now.saturating_sub(budgets.horizon().as_millis() as u64);
    let spent = store.spent_since(since).map_err(|e| e.to_string())?;
    budgets.seed(&spent, now);
    Ok(budgets.uses(now))
}

/// The "Rate budgets" section: each budget's use and when it refills.
fn render_budgets(budgets: Result<Vec<(Holder, Vec<Use>)>, String>) -> String {
    let budgets = match budgets {
        Ok(budgets) if budgets.is_empty() => return String::new(),
        Ok(budgets) => budgets,
        Err(e) => return format!("\nRate budgets: not shown ({})\n", shown(&e)),
    };
    let mut table = Table::new(vec!["  WHO", "RATE", "USED", "REFILLS"]);
    for (holder, uses) in budgets {
        for u in uses {
            table.row(vec![
                format!("  {}", shown(&holder.to_string())),
                u.rate.to_string(),
                format!("{}/{}", u.used, u.rate.count),
                u.refills_ms.map_or_else(|| "-".into(), time),
            ]);
        }
    }
    format!(
        "\nRate budgets (attempts started in each window):\n{}",
        table.render()
    )
}

/// A stored time (ms since the epoch) as RFC 3339. A time past the year
/// 9999 is no real one (an older or hostile writer's): it is shown as such,
/// never a panic.
pub fn time(ms: u64) -> String {
    const LAST_SECOND: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if ms / 1000 > LAST_SECOND {
        return format!("(a time past the year 9999: {ms} ms)");
    }
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn counts(pairs: &[(String, u64)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn entries(title: &str, list: &[RetryEntry], total: u64, out: &mut String) {
    if total == 0 {
        return;
    }
    out.push_str(&format!("\n{title} ({total}):\n"));
    let mut table = Table::new(vec!["  JOB", "ACCOUNT", "CATEGORY", "BY", "WHY"]);
    for e in list {
        let mut why = e.reason.clone().unwrap_or_default();
        if let Some(t) = e
            .not_before_ms
            .filter(|t| *t > orchestrator_contract::time::now_ms())
        {
            why.push_str(&format!(" (not before {})", time(t)));
        }
        table.row(vec![
            format!("  {}", e.job),
            e.account.clone(),
            e.category.clone().unwrap_or_default(),
            e.decided_by.clone().unwrap_or_default(),
            why,
        ]);
    }
    out.push_str(&table.render());
    if total > list.len() as u64 {
        out.push_str(&format!("  … and {} more\n", total - list.len() as u64));
    }
}

/// What to do about failed jobs of `category` that a run does not retry.
pub fn not_retried_because(category: Category) -> &'static str {
    match category {
        Category::NonRetryable => {
            "--retry-include-non-retryable retries them, `orchestrator retry JOB_ID` one"
        }
        Category::Unknown => "--no-retry-unknown is set",
        Category::Retryable | Category::Infrastructure => "its settings retry them",
    }
}

/// "run #2 finished, pass 3/3 of every account, started …".
fn run_line(run: &RunStatus) -> String {
    let mut line = format!(
        "#{} {}, pass {}/{}",
        run.run, run.state, run.passes, run.max_passes
    );
    if let Some(accounts) = &run.accounts {
        line.push_str(&format!(", accounts {}", shown(&accounts.join(","))));
    }
    line.push_str(&format!(", started {}", time(run.started_ms)));
    if let Some(ended) = run.ended_ms {
        line.push_str(&format!(", ended {}", time(ended)));
    }
    line
}

/// The status text, also printed as the end-of-run summary; `config` says
/// what the next run does with the failed jobs.
pub fn render(report: &StatusReport, state_file: &str, config: &RetryConfig) -> String {
    let mut out = format!("Batch in {state_file}: {}\n", count(report.jobs, "job"));
    out.push_str(&format!("  by state:    {}\n", counts(&report.by_state)));
    out.push_str(&format!("  by category: {}\n", counts(&report.by_category)));
    if let Some(run) = &report.last_run {
        out.push_str(&format!("  last run:    {}\n", run_line(run)));
        let c = &run.config;
        let mut settings = format!(
            "  its settings (as recorded): max passes {}, retry delay {}, infra retry limit {}, retry unknown errors {}",
            c.max_passes,
            seconds(c.retry_delay_seconds as f64),
            c.infrastructure_retry_limit,
            c.retry_unknown_errors
        );
        if c.retry_non_retryable {
            settings.push_str(", retry non-retryable errors true");
        }
        if let Some(cap) = c.backoff_cap_seconds {
            settings.push_str(&format!(", backoff capped at {}", seconds(cap as f64)));
        }
        out.push_str(&settings);
        out.push('\n');
    }
    // The processes on it now; or the last one that was.
    let working: Vec<_> = report
        .processes
        .iter()
        .filter(|p| p.state == "running" || p.state == "lost")
        .collect();
    let listed = if working.is_empty() {
        report.processes.last().into_iter().collect()
    } else {
        working
    };
    for process in listed {
        let at = match &process.host {
            Some(host) => format!("pid {} on {}", process.pid, shown(host)),
            None => format!("pid {}", process.pid),
        };
        let mut line = format!(
            "  process:     #{} ({at}) {}, started {}",
            process.id,
            process.state,
            time(process.started_ms)
        );
        if let Some(connection) = &process.connection {
            line.push_str(&format!(", store {}", shown(connection)));
        }
        if process.stop_requested && process.state == "running" {
            line.push_str(", stop requested");
        }
        out.push_str(&line);
        out.push('\n');
    }
    if report.runs.len() > 1 {
        out.push_str("\nRuns:\n");
        let mut table = Table::new(vec!["  RUN", "STATE", "PASSES", "ATTEMPTS", "ACCOUNTS"]);
        if report.runs_total > report.runs.len() as u64 {
            out.push_str(&format!(
                "  ({} earlier runs not shown)\n",
                report.runs_total - report.runs.len() as u64
            ));
        }
        for run in &report.runs {
            table.row(vec![
                format!("  {}", run.run),
                run.state.clone(),
                format!("{}/{}", run.passes, run.max_passes),
                run.attempts.to_string(),
                run.accounts
                    .as_ref()
                    .map_or_else(|| "all".to_string(), |a| a.join(",")),
            ]);
        }
        out.push_str(&table.render());
    }
    if let (false, Some(run)) = (report.passes.is_empty(), &report.last_run) {
        out.push_str(&format!("\nPasses of run {}:\n", run.run));
        let mut table = Table::new(vec!["  PASS", "ATTEMPTS", "SUCCEEDED", "FAILED", "RESULT"]);
        for p in &report.passes {
            let mut failed = counts(&p.failed_by_category);
            if p.in_flight > 0 {
                failed.push_str(&format!(" ({} in flight)", p.in_flight));
            }
            table.row(vec![
                format!("  {}/{}", p.pass, run.max_passes),
                p.attempts.to_string(),
                p.succeeded.to_string(),
                failed,
                p.result.clone().unwrap_or_else(|| "in progress".into()),
            ]);
        }
        out.push_str(&table.render());
    }
    if !report.pauses.is_empty() {
        out.push_str("\nWaiting now (the platform asked, or is down):\n");
        for pause in &report.pauses {
            let whom = match pause.scope {
                RetryScope::Platform => {
                    format!("every account on {}'s platform", shown(&pause.account))
                }
                _ => format!("account {}", shown(&pause.account)),
            };
            out.push_str(&format!("  {whom} until {}\n", time(pause.until_ms)));
        }
    }
    entries(
        "Retried next",
        &report.next_retries,
        report.retries_total,
        &mut out,
    );
    entries("Held for review", &report.held, report.held_total, &mut out);
    if report.failures_total > 0 {
        out.push_str(&format!(
            "\nFailed ({}), by reason:\n",
            report.failures_total
        ));
        let mut table = Table::new(vec!["  JOBS", "CATEGORY", "E.G.", "WHY"]);
        for r in &report.failure_reasons {
            table.row(vec![
                format!("  {}", r.jobs),
                r.category.clone().unwrap_or_default(),
                r.example.clone(),
                r.reason.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&table.render());
        out.push_str(&next_run(&report.failed_by_category, config));
    }
    let example = report
        .failure_reasons
        .first()
        .map(|r| r.example.clone())
        .or_else(|| report.next_retries.first().map(|e| e.job.clone()))
        .or_else(|| report.held.first().map(|e| e.job.clone()));
    if let Some(job) = example {
        out.push_str(&format!(
            "\nNext: `orchestrator explain {}` shows a job's attempts; `orchestrator report --format csv` exports them all.\n",
            shown(&job)
        ));
    }
    out
}

/// What the next `--run`, with `config`, does with the failed jobs.
fn next_run(failed_by_category: &[(String, u64)], config: &RetryConfig) -> String {
    let mut retried = 0;
    let mut skipped = Vec::new();
    for (category, jobs) in failed_by_category {
        let category = Category::parse(category).unwrap_or(Category::Unknown);
        if config.retries(category) {
            retried += jobs;
        } else {
            skipped.push(format!(
                "{jobs} {category} ({})",
                not_retried_because(category)
            ));
        }
    }
    if skipped.is_empty() {
        return "  The next --run retries them all.\n".into();
    }
    format!(
        "  The next --run retries {retried} of them and skips {}.\n",
        skipped.join(", ")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_stored_time_can_be_shown() {
        assert_eq!(super::time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::time(253_402_300_799_999), "9999-12-31T23:59:59Z");
        assert_eq!(
            super::time(u64::MAX),
            "(a time past the year 9999: 18446744073709551615 ms)"
        );
    }
}
