//! [`Pauses`]: waits that hold back more than the job that asked for them.
//!
//! A classification's retry-after has a scope. A job-scoped wait lives on the
//! job in the store (its `not_before`). An account-scoped wait (a used-up
//! rate limit) holds back every job of that account, and a platform-scoped
//! one (an instance answering 503) every account on the same instance; those
//! two live here, shared by every account's queue, so the other accounts go
//! on posting while one waits.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use orchestrator_contract::RetryScope;
use orchestrator_store::Pause;

use crate::AccountConfig;

/// Who a wait holds back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Holder {
    Account(String),
    /// The platform instance, by its `host:port`.
    Platform(String),
}

/// Whom an account's attempts answer to: itself and its platform instance.
/// Worked out once per account, not per attempt.
#[derive(Debug, Clone)]
pub(crate) struct Waiter {
    account: Holder,
    platform: Holder,
}

impl Waiter {
    pub(crate) fn of(account: &AccountConfig) -> Self {
        Waiter {
            account: Holder::Account(account.name.clone()),
            platform: Holder::Platform(instance_of(account)),
        }
    }

    /// The platform instance: its base URL's `host:port`.
    pub(crate) fn instance(&self) -> &str {
        match &self.platform {
            Holder::Platform(instance) | Holder::Account(instance) => instance,
        }
    }
}

/// The account and platform waits of a run, latest per holder.
#[derive(Debug, Default)]
pub(crate) struct Pauses {
    until: Mutex<HashMap<Holder, u64>>,
}

impl Pauses {
    /// Waits the account (or its platform instance, by `scope`) until
    /// `until_ms`; a job-scoped wait holds back no one else.
    pub(crate) fn hold(&self, scope: RetryScope, waiter: &Waiter, until_ms: u64) {
        let holder = match scope {
            RetryScope::Job => return,
            RetryScope::Account => waiter.account.clone(),
            RetryScope::Platform => waiter.platform.clone(),
        };
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        let entry = until.entry(holder).or_default();
        *entry = (*entry).max(until_ms);
    }

    /// Whether holding the waiter's account (or platform, by `scope`) until
    /// `until_ms` would make it wait longer than it already does.
    pub(crate) fn extends(&self, scope: RetryScope, waiter: &Waiter, until_ms: u64) -> bool {
        let holder = match scope {
            RetryScope::Job => return false,
            RetryScope::Account => &waiter.account,
            RetryScope::Platform => &waiter.platform,
        };
        let until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.get(holder).is_none_or(|t| *t < until_ms)
    }

    /// Takes over the waits earlier runs recorded, for the accounts this run
    /// knows.
    pub(crate) fn restore(&self, pauses: &[Pause], accounts: &BTreeMap<String, AccountConfig>) {
        for pause in pauses {
            if let Some(account) = accounts.get(&pause.account) {
                self.hold(pause.scope, &Waiter::of(account), pause.until_ms);
            }
        }
    }

    /// Until when the waiter's account may not post (ms since the epoch),
    /// if at all.
    pub(crate) fn until(&self, waiter: &Waiter) -> Option<u64> {
        let until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        let own = until.get(&waiter.account);
        let platform = until.get(&waiter.platform);
        own.max(platform).copied()
    }
}

/// The platform instance an account posts to: its base URL's `host:port`.
fn instance_of(account: &AccountConfig) -> String {
    orchestrator_plugin_host::outbound::authority_of(&account.base_url)
        .unwrap_or_else(|| account.base_url.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, base_url: &str) -> Waiter {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.toml");
        std::fs::write(
            &path,
            format!("[accounts.{name}]\nbase_url = \"{base_url}\"\n"),
        )
        .unwrap();
        Waiter::of(
            &crate::input::read_accounts(&path)
                .unwrap()
                .remove(name)
                .unwrap(),
        )
    }

    #[test]
    fn an_account_wait_holds_back_that_account_only() {
        let pauses = Pauses::default();
        let alice = account("alice", "https://one.example");
        let bob = account("bob", "https://one.example");
        pauses.hold(RetryScope::Account, &alice, 5_000);
        pauses.hold(RetryScope::Account, &alice, 3_000);
        assert_eq!(pauses.until(&alice), Some(5_000), "the later wait wins");
        assert_eq!(pauses.until(&bob), None);
    }

    #[test]
    fn a_platform_wait_holds_back_every_account_on_the_instance() {
        let pauses = Pauses::default();
        let alice = account("alice", "https://one.example");
        let bob = account("bob", "https://one.example:443/");
        let carol = account("carol", "https://two.example");
        pauses.hold(RetryScope::Platform, &alice, 7_000);
        assert_eq!(pauses.until(&alice), Some(7_000));
        assert_eq!(pauses.until(&bob), Some(7_000));
        assert_eq!(pauses.until(&carol), None);
    }

    #[test]
    fn a_job_wait_holds_back_no_one_else() {
        let pauses = Pauses::default();
        let alice = account("alice", "https://one.example");
        pauses.hold(RetryScope::Job, &alice, 9_000);
        assert_eq!(pauses.until(&alice), None);
    }
}
