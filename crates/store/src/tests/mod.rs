//! The store's tests on SQLite, by theme: attempts and what they record,
//! runs and their budgets, an operator's cancel and retry, and state files
//! from older schemas. (PostgreSQL's are in `tests/postgres.rs`, against a
//! real server.) The helpers here build the batches they start from.

mod attempts;
mod browse;
mod control;
mod postgres;
mod runs;
mod schema;

use orchestrator_contract::{Category, HostFault, PostFailure, Receipt, RetryScope};
use orchestrator_retry::{Decision, GiveUpReason, PassResult, RetryConfig};

use crate::*;

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.sqlite")).unwrap();
    (dir, store)
}

fn job(id: &str, account: &str) -> NewJob {
    NewJob {
        id: id.into(),
        account: account.into(),
        payload: format!(r#"{{"status":"{id}"}}"#),
    }
}

fn failed(category: Category, decision: Decision) -> AttemptOutcome {
    AttemptOutcome::Failed {
        failure: Some(PostFailure::new("no")),
        fault: None,
        classification: Decided {
            category,
            reason: "because".into(),
            retry_after_ms: None,
            scope: RetryScope::Job,
            decided_by: "built-in".into(),
            consulted: vec![Consulted {
                classifier: "slow-classifier".into(),
                answer: Answer::Fault(HostFault::Timeout(2000)),
            }],
        },
        decision,
        not_before_ms: None,
    }
}

fn process(config: RetryConfig, accounts: Option<&[&str]>, key_window_ms: u64) -> NewProcess {
    NewProcess {
        pid: 1,
        config,
        workers: 3,
        accounts: accounts.map(|a| a.iter().map(|s| s.to_string()).collect()),
        key_window_ms,
        plugins: Vec::new(),
    }
}

/// A process joins with the default settings.
fn run(store: &SqliteStore) -> Joined {
    run_with_key_window(store, 3_600_000)
}

fn run_with_key_window(store: &SqliteStore, key_window_ms: u64) -> Joined {
    store
        .join_run(&process(RetryConfig::default(), None, key_window_ms))
        .unwrap()
}

/// Pass `pass` of run `run`.
fn at(run: u32, pass: u32) -> RunPass {
    RunPass { run, pass }
}

fn posted() -> AttemptOutcome {
    AttemptOutcome::Succeeded(Receipt {
        remote_id: "1".into(),
        url: None,
    })
}

/// One job whose attempt a process began and never finished.
fn left_in_flight(store: &SqliteStore) -> StoredJob {
    store.import(&[job("a", "x")], "f").unwrap();
    run(store);
    store.begin_pass(at(1, 1), 0).unwrap();
    let j = store.eligible_jobs(1, None).unwrap().remove(0);
    store.begin_attempt(&j, at(1, 1)).unwrap();
    j
}

fn waited(scope: RetryScope, retry_after_ms: u64) -> AttemptOutcome {
    let AttemptOutcome::Failed {
        failure,
        fault,
        mut classification,
        decision,
        ..
    } = failed(Category::Retryable, Decision::Retry)
    else {
        unreachable!()
    };
    classification.retry_after_ms = Some(retry_after_ms);
    classification.scope = scope;
    AttemptOutcome::Failed {
        failure,
        fault,
        classification,
        decision,
        not_before_ms: None,
    }
}

/// A batch whose first run ended pass 1 with `a` posted, `b` failed as
/// non-retryable and `c` to retry; pass 2 is open.
fn first_pass_ended(store: &SqliteStore) -> Joined {
    store
        .import(&[job("a", "x"), job("b", "x"), job("c", "x")], "f")
        .unwrap();
    let joined = run(store);
    store.begin_pass(at(1, 1), 0).unwrap();
    let jobs = store.eligible_jobs(1, None).unwrap();
    let outcomes = [
        posted(),
        failed(
            Category::NonRetryable,
            Decision::GiveUp(GiveUpReason::NonRetryable),
        ),
        failed(Category::Retryable, Decision::Retry),
    ];
    for (job, outcome) in jobs.iter().zip(&outcomes) {
        let attempt = store.begin_attempt(job, at(1, 1)).unwrap();
        store.finish_attempt(attempt, outcome).unwrap();
    }
    store
        .end_pass(
            at(1, 1),
            &PassResult::RetryableRemain { jobs: 1 },
            Some((2, 0)),
        )
        .unwrap();
    joined
}
