//! Which run a process works on: [`plan`] decides, the same way for every
//! store, from what the store holds about its newest open run.
//!
//! A run is a series of passes with its own budgets. A process joins the
//! open run that other processes are working on (a shared store), or
//! resumes the open run that was cut short when its settings are the
//! same, so a crash never grants a job more attempts. Otherwise the run
//! cut short is closed and a new run begins.

use orchestrator_retry::RetryConfig;

use crate::{ClosedRun, NewProcess, Result, StoreError};

/// The newest run, when it is open.
#[derive(Debug, Clone)]
pub(crate) struct OpenRun {
    pub(crate) run: u32,
    pub(crate) config: RetryConfig,
    pub(crate) accounts: Option<Vec<String>>,
    /// Processes working on it now, other than the one joining.
    pub(crate) live_processes: u64,
}

/// What a joining process does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Work on this run beside the processes already on it.
    Join { run: u32, others: u64 },
    /// Go on with this run, cut short under the same settings.
    Resume { run: u32 },
    /// Begin a new run, first closing the one cut short, if any.
    Begin { closing: Option<ClosedRun> },
}

/// Decides which run `process` works on; refuses to join a run other
/// processes work on under other settings, where two sets of budgets would
/// apply to one series of passes.
pub(crate) fn plan(open: Option<OpenRun>, process: &NewProcess) -> Result<Plan> {
    let Some(open) = open else {
        return Ok(Plan::Begin { closing: None });
    };
    let differences = differences(&open, process);
    match (open.live_processes, differences.is_empty()) {
        (0, true) => Ok(Plan::Resume { run: open.run }),
        (0, false) => Ok(Plan::Begin {
            closing: Some(ClosedRun {
                run: open.run,
                differences,
            }),
        }),
        (others, true) => Ok(Plan::Join {
            run: open.run,
            others,
        }),
        (_, false) => Err(StoreError::RunInProgress {
            run: open.run,
            differences: differences.join(", "),
        }),
    }
}

/// The settings in which `process` differs from the open run: the budgets,
/// and whose jobs.
fn differences(open: &OpenRun, process: &NewProcess) -> Vec<String> {
    let mut differ = open.config.budget_differences(&process.config);
    let (theirs, ours) = (
        normalized(open.accounts.as_deref()),
        normalized(process.accounts.as_deref()),
    );
    if theirs != ours {
        differ.push(format!(
            "{} (here {})",
            shown(theirs.as_deref()),
            shown(ours.as_deref())
        ));
    }
    differ
}

/// Accounts as a sorted set, so `b,a` is the same run as `a,b`.
pub(crate) fn normalized(accounts: Option<&[String]>) -> Option<Vec<String>> {
    accounts.map(|list| {
        let mut list = list.to_vec();
        list.sort();
        list.dedup();
        list
    })
}

fn shown(accounts: Option<&[String]>) -> String {
    match accounts {
        None => "every account".into(),
        Some(list) => format!("--accounts {}", list.join(",")),
    }
}

/// A run's settings as the store keeps them: JSON text.
pub(crate) fn config_text(config: &RetryConfig) -> Result<String> {
    serde_json::to_string(config).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A run's settings from the store's text, refused (not panicked on) when
/// unreadable.
pub(crate) fn config_from(text: &str, run: u32) -> Result<RetryConfig> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("the settings of run {run}: {e}")))
}

/// A run's accounts as the store keeps them: a JSON list, or `NULL`.
pub(crate) fn accounts_text(accounts: Option<&[String]>) -> Option<String> {
    normalized(accounts).map(|list| serde_json::Value::from(list).to_string())
}

pub(crate) fn accounts_from(text: Option<&str>, run: u32) -> Result<Option<Vec<String>>> {
    text.map(|t| {
        serde_json::from_str(t)
            .map_err(|e| StoreError::Corrupt(format!("the accounts of run {run}: {e}")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(config: RetryConfig, accounts: Option<&[&str]>) -> NewProcess {
        NewProcess {
            pid: 1,
            config,
            workers: 3,
            accounts: accounts.map(|a| a.iter().map(|s| s.to_string()).collect()),
            key_window_ms: 3_600_000,
            plugins: Vec::new(),
        }
    }

    fn open(live_processes: u64, accounts: Option<&[&str]>) -> OpenRun {
        OpenRun {
            run: 4,
            config: RetryConfig::default(),
            accounts: accounts.map(|a| a.iter().map(|s| s.to_string()).collect()),
            live_processes,
        }
    }

    #[test]
    fn the_first_run_begins() {
        let p = process(RetryConfig::default(), None);
        assert_eq!(plan(None, &p).unwrap(), Plan::Begin { closing: None });
    }

    #[test]
    fn a_run_cut_short_is_resumed_under_the_same_settings_only() {
        let same = process(RetryConfig::default(), None);
        assert_eq!(
            plan(Some(open(0, None)), &same).unwrap(),
            Plan::Resume { run: 4 }
        );
        // The order of --accounts does not matter.
        let ab = process(RetryConfig::default(), Some(&["b", "a"]));
        assert_eq!(
            plan(Some(open(0, Some(&["a", "b"]))), &ab).unwrap(),
            Plan::Resume { run: 4 }
        );
        let more = process(
            RetryConfig {
                max_passes: 5,
                ..RetryConfig::default()
            },
            Some(&["x"]),
        );
        assert_eq!(
            plan(Some(open(0, Some(&["y"]))), &more).unwrap(),
            Plan::Begin {
                closing: Some(ClosedRun {
                    run: 4,
                    differences: vec![
                        "--max-passes 3 (here 5)".into(),
                        "--accounts y (here --accounts x)".into()
                    ],
                })
            }
        );
    }

    #[test]
    fn a_run_others_work_on_is_joined_under_the_same_settings_or_refused() {
        let same = process(RetryConfig::default(), None);
        assert_eq!(
            plan(Some(open(2, None)), &same).unwrap(),
            Plan::Join { run: 4, others: 2 }
        );
        let narrower = process(RetryConfig::default(), Some(&["x"]));
        let refused = plan(Some(open(2, None)), &narrower)
            .unwrap_err()
            .to_string();
        assert!(
            refused.starts_with("run 4 is in progress on other processes with other settings: every account (here --accounts x);"),
            "{refused}"
        );
    }
}
