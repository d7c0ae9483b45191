//! [`Outages`]: telling a platform that is down from jobs that fail.
//!
//! When attempts to one platform instance fail in a row with no answer
//! (connection errors, timeouts at the transport, 502/503/504) across
//! several accounts, the instance is down, not the jobs: its failures stop
//! counting against the jobs' passes and budgets, the instance is paused
//! with a growing wait (1 s, 2 s, 4 s, … up to 30 s), and the attempts after
//! each wait probe it. The first answer of any kind ends the outage. An
//! outage longer than the run's limit counts again, so a platform that is
//! gone for good does not hold a run for ever.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// Failures in a row, with no answer between them, that make an outage…
pub(crate) const FAILURES_IN_A_ROW: u32 = 5;
/// …when they come from at least this many accounts: one account's broken
/// jobs are not an outage.
pub(crate) const ACCOUNTS: usize = 3;
/// The first wait of an outage, and the longest.
const FIRST_WAIT_MS: u64 = 1_000;
const LONGEST_WAIT_MS: u64 = 30_000;

/// What a failure means for its platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// An ordinary failure: it counts.
    Counted,
    /// The platform is down: the failure does not count, and the platform
    /// waits until `until_ms`. `began` is set on the failure that found
    /// the outage.
    Down { until_ms: u64, began: bool },
}

#[derive(Debug, Default)]
struct Instance {
    in_a_row: u32,
    accounts: BTreeSet<String>,
    /// When the outage began, and when the platform may be tried again.
    down_since_ms: Option<u64>,
    paused_until_ms: u64,
    next_wait_ms: u64,
}

/// The outages of a run, by platform instance.
#[derive(Debug)]
pub(crate) struct Outages {
    /// How long an outage may last before its failures count again.
    limit_ms: u64,
    instances: Mutex<HashMap<String, Instance>>,
}

impl Outages {
    pub(crate) fn new(limit_ms: u64) -> Self {
        Outages {
            limit_ms,
            instances: Mutex::default(),
        }
    }

    /// An attempt on `instance` (for `account`) got no answer at `now_ms`.
    pub(crate) fn no_answer(&self, instance: &str, account: &str, now_ms: u64) -> Seen {
        let mut instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        let i = instances.entry(instance.to_owned()).or_default();
        i.in_a_row = i.in_a_row.saturating_add(1);
        if i.accounts.len() < ACCOUNTS {
            i.accounts.insert(account.to_owned());
        }
        let began = i.down_since_ms.is_none()
            && i.in_a_row >= FAILURES_IN_A_ROW
            && i.accounts.len() >= ACCOUNTS;
        if began {
            i.down_since_ms = Some(now_ms);
            i.next_wait_ms = FIRST_WAIT_MS;
        }
        let Some(since) = i.down_since_ms else {
            return Seen::Counted;
        };
        if self.limit_ms == 0 || now_ms.saturating_sub(since) > self.limit_ms {
            return Seen::Counted;
        }
        // A probe after the wait failed: wait longer. (Attempts that began
        // before the wait and fail during it change nothing.)
        if now_ms >= i.paused_until_ms {
            i.paused_until_ms = now_ms.saturating_add(i.next_wait_ms);
            i.next_wait_ms = (i.next_wait_ms * 2).min(LONGEST_WAIT_MS);
        }
        Seen::Down {
            until_ms: i.paused_until_ms,
            began,
        }
    }

    /// An attempt on `instance` got an answer (of any kind): an outage, if
    /// there was one, is over. Returns how long it lasted.
    pub(crate) fn answered(&self, instance: &str, now_ms: u64) -> Option<u64> {
        let mut instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        let was = instances.remove(instance)?;
        was.down_since_ms.map(|since| now_ms.saturating_sub(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_across_accounts_are_an_outage_with_growing_waits() {
        let o = Outages::new(600_000);
        // Four failures, or one account's: ordinary failures.
        for t in 0..4 {
            assert_eq!(o.no_answer("p", &format!("a{}", t % 3), t), Seen::Counted);
        }
        assert_eq!(
            o.no_answer("p", "a0", 10),
            Seen::Down {
                until_ms: 1_010,
                began: true
            }
        );
        // Failures of attempts begun before the wait change nothing.
        assert_eq!(
            o.no_answer("p", "a1", 20),
            Seen::Down {
                until_ms: 1_010,
                began: false
            }
        );
        // The probe after the wait fails: a longer wait.
        assert_eq!(
            o.no_answer("p", "a2", 1_100),
            Seen::Down {
                until_ms: 3_100,
                began: false
            }
        );
        // Another platform is not down.
        assert_eq!(o.no_answer("q", "a0", 1_100), Seen::Counted);
        // An answer ends the outage.
        assert_eq!(o.answered("p", 3_200), Some(3_190));
        assert_eq!(o.answered("p", 3_300), None);
        assert_eq!(o.no_answer("p", "a0", 3_400), Seen::Counted);
    }

    #[test]
    fn one_accounts_failures_are_no_outage_and_an_answer_resets_the_count() {
        let o = Outages::new(600_000);
        for t in 0..20 {
            assert_eq!(o.no_answer("p", "broken", t), Seen::Counted);
        }
        for t in 0..4 {
            o.no_answer("p", &format!("a{t}"), t);
        }
        o.answered("p", 5);
        assert_eq!(o.no_answer("p", "a9", 6), Seen::Counted);
    }

    #[test]
    fn an_outage_past_the_limit_counts_again() {
        let o = Outages::new(10_000);
        for t in 0..5 {
            o.no_answer("p", &format!("a{t}"), t);
        }
        assert!(matches!(o.no_answer("p", "a0", 9_000), Seen::Down { .. }));
        assert_eq!(o.no_answer("p", "a0", 10_005), Seen::Counted);
        // A limit of 0 never defers.
        let never = Outages::new(0);
        for t in 0..10 {
            assert_eq!(never.no_answer("p", &format!("a{t}"), t), Seen::Counted);
        }
    }
}
