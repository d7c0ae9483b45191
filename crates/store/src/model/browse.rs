//! What the dashboard reads beyond `--status`, a page at a time: accounts
//! ([`AccountRow`]), jobs ([`JobFilter`]), attempts over time
//! ([`Throughput`]), and the plugins a process ran with ([`PluginUse`]).

use serde::{Deserialize, Serialize};

use crate::JobState;

/// One account's jobs, by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountRow {
    pub account: String,
    pub jobs: u64,
    /// state → jobs, only the states it has.
    pub by_state: Vec<(String, u64)>,
}

impl AccountRow {
    /// Rows of (account, state, jobs), sorted by account, as accounts.
    pub(crate) fn gather(rows: Vec<(String, String, i64)>) -> Vec<AccountRow> {
        let mut accounts: Vec<AccountRow> = Vec::new();
        for (account, state, jobs) in rows {
            let jobs = jobs.max(0) as u64;
            match accounts.last_mut() {
                Some(last) if last.account == account => {
                    last.jobs += jobs;
                    last.by_state.push((state, jobs));
                }
                _ => accounts.push(AccountRow {
                    account,
                    jobs,
                    by_state: vec![(state, jobs)],
                }),
            }
        }
        accounts
    }

    pub fn in_state(&self, state: JobState) -> u64 {
        self.by_state
            .iter()
            .find(|(s, _)| s == state.as_str())
            .map_or(0, |(_, n)| *n)
    }
}

/// Which jobs a page lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub account: Option<String>,
}

/// Attempts that ended in one time bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Throughput {
    /// The bucket's start, epoch ms.
    pub start_ms: u64,
    pub succeeded: u64,
    pub failed: u64,
}

/// A plugin a process loaded, as it recorded it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginUse {
    pub name: String,
    pub version: String,
    /// `poster` or `classifier`.
    pub kind: String,
    /// `wasm` or `native`.
    pub backend: String,
    pub sha256: String,
}

impl PluginUse {
    /// The plugins in a process's stored settings; none when they are
    /// missing or unreadable (an older process, a damaged row).
    pub(crate) fn from_config(config: &str) -> Vec<PluginUse> {
        serde_json::from_str::<serde_json::Value>(config)
            .ok()
            .and_then(|v| serde_json::from_value(v.get("plugins")?.clone()).ok())
            .unwrap_or_default()
    }
}

/// The most rows a page holds, whatever is asked.
pub const PAGE_MAX: u64 = 500;

/// A page size as a query takes it: at least 1, at most [`PAGE_MAX`].
pub(crate) fn page_size(limit: u64) -> i64 {
    limit.clamp(1, PAGE_MAX) as i64
}
