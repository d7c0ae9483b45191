//! `orchestrator explain JOB_ID`: a job's whole attempt history, and what
//! happens to it next.

use anyhow::Result;
use clap::Args;
use orchestrator_contract::{Category, RetryScope};
use orchestrator_store::{AttemptRecord, JobState, StoredJob};

use crate::commands::batch::{BatchArgs, open_existing};
use crate::commands::status::time;
use crate::exit::{self, Exit};
use crate::output::{print, shown};
use orchestrator_contract::time::now_ms;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The job's id, as in the jobs file.
    job: String,
}

impl ExplainArgs {
    /// Reads the store of `batch` (`--state-file`, before or after the
    /// command, or from orchestrator.toml).
    pub fn run(self, batch: &BatchArgs) -> Result<u8> {
        let store = open_existing(&batch.state_file)?;
        let Some(job) = store.job(&self.job)? else {
            return Err(Exit::new(
                exit::USAGE,
                format!(
                    "no job {:?} in {}",
                    self.job,
                    crate::commands::batch::store_name(&batch.state_file)
                ),
            )
            .into());
        };
        let attempts = store.attempts(&job.id)?;
        print(&render(&job, &attempts))?;
        Ok(exit::SUCCESS)
    }
}

/// A job's whole attempt history and what happens to it next, as `explain`
/// prints it and the dashboard's job page shows it. Everything from the
/// jobs file, a plugin or the platform is shown escaped: a line of it can
/// neither forge another line nor drive the terminal.
pub fn render(job: &StoredJob, attempts: &[AttemptRecord]) -> String {
    let mut out = format!(
        "Job {} (account {}): {}\nIdempotency key: {}\n",
        shown(&job.id),
        shown(&job.account),
        job.state.as_str(),
        job.idempotency_key
    );
    if attempts.is_empty() {
        out.push_str("No attempts yet.\n");
    }
    for a in attempts {
        let took = match a.ended_ms {
            Some(end) => format!(
                "{} → {} ({} ms)",
                time(a.started_ms),
                time(end),
                end.saturating_sub(a.started_ms)
            ),
            None => format!("{} → (no end recorded)", time(a.started_ms)),
        };
        let at = match a.run {
            Some(run) => format!("run {run}, pass {}", a.pass),
            None => format!("pass {}", a.pass),
        };
        out.push_str(&format!(
            "\nAttempt {} ({at}): {}\n  when:        {took}\n",
            a.number,
            shown(&a.outcome)
        ));
        if let Some(id) = &a.remote_id {
            out.push_str(&format!("  posted:      {}\n", shown(id)));
        }
        if let Some(f) = &a.failure {
            out.push_str(&format!("  failure:     {}\n", shown(&f.to_string())));
            if let Some(t) = &f.transport_error {
                out.push_str(&format!("  transport:   {}\n", shown(t)));
            }
        }
        if let Some(fault) = &a.fault {
            out.push_str(&format!(
                "  host fault:  {} ({})\n",
                fault.kind(),
                shown(&fault.to_string())
            ));
        }
        if !a.consulted.is_empty() {
            let asked: Vec<String> = a.consulted.iter().map(ToString::to_string).collect();
            out.push_str(&format!("  asked:       {}\n", shown(&asked.join("; "))));
        }
        if let Some(category) = &a.category {
            out.push_str(&format!(
                "  decided:     {} by {}: {}\n",
                shown(category),
                shown(a.decided_by.as_deref().unwrap_or("?")),
                shown(a.reason.as_deref().unwrap_or(""))
            ));
        }
        if let Some(ms) = a.retry_after_ms {
            let whom = match a.retry_scope {
                Some(RetryScope::Account) => {
                    format!("account {} waits", shown(&job.account))
                }
                Some(RetryScope::Platform) => "every account on its platform waits".into(),
                Some(RetryScope::Job) | None => "this job waits".into(),
            };
            out.push_str(&format!("  retry after: {ms} ms ({whom})\n"));
        }
        if let Some(decision) = &a.decision {
            out.push_str(&format!("  then:        {}\n", shown(decision)));
        }
        if a.outcome == "uncertain" {
            out.push_str(
                    "  then:        a run died with this attempt in flight; retried with the same key\n",
                );
        }
    }
    let id = &shown(&job.id);
    let next = match job.state {
        JobState::Succeeded => "Done: posted.".to_string(),
        JobState::Failed => {
            let last = attempts.iter().rev().find(|a| a.category.is_some());
            let failed = match last.and_then(|a| a.run) {
                Some(run) => format!("Failed in run {run}"),
                None => "Failed".to_string(),
            };
            match last
                .and_then(|a| a.category.as_deref())
                .and_then(Category::parse)
            {
                Some(Category::NonRetryable) => format!(
                    "{failed}: the next --run skips it (non-retryable) unless given --retry-include-non-retryable; `orchestrator retry {id}` makes it eligible regardless."
                ),
                Some(Category::Unknown) => {
                    format!("{failed}: the next --run retries it, unless given --no-retry-unknown.")
                }
                _ => format!("{failed}: the next --run retries it."),
            }
        }
        JobState::Cancelled => format!(
            "Cancelled: it will not be attempted again; `orchestrator retry {id}` makes it eligible."
        ),
        JobState::Pending => "Not attempted yet: the next --run tries it.".to_string(),
        JobState::Running => "An attempt is in flight now.".to_string(),
        JobState::NeedsReview => format!(
            "Held for review: check the platform, then --run --release-held (or `orchestrator retry {id}`; `orchestrator cancel {id}` if it was posted)."
        ),
        JobState::Retry => match job.not_before_ms.filter(|t| *t > now_ms()) {
            Some(t) => format!(
                "Will be retried in the next pass or run, not before {}.",
                time(t)
            ),
            None => "Will be retried in the next pass or run.".to_string(),
        },
    };
    out.push_str(&format!("\n{next}\n"));
    out
}
