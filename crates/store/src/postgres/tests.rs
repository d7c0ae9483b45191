//! A writer's group, against a real server: one statement writes it, and
//! each write is answered as if the group's writes had been committed one
//! after another.

use std::sync::Arc;

use orchestrator_contract::{Category, PostFailure, Receipt, RetryScope};
use orchestrator_pg_cluster::Cluster;
use orchestrator_retry::{Decision, RetryConfig};

use super::{PostgresStore, writer};
use crate::prelude::*;
use crate::write::Write;
use crate::{
    AttemptId, AttemptOutcome, ClaimLimit, DEFAULT_LEASE, Decided, JobState, NewJob, NewProcess,
    Result, RunPass, StoreError, StoredJob,
};

/// Commits `writes` as one group, as the writer would.
fn group(store: &PostgresStore, writes: Vec<Write>) -> Vec<Result<AttemptId>> {
    let (inner, writes) = (store.inner.clone(), Arc::new(writes));
    store
        .block(async move { writer::commit_writes(inner, writes).await })
        .unwrap_or_else(|_| panic!("the group commits"))
}

fn begin(job: &StoredJob) -> Write {
    Write::Begin {
        job: job.clone(),
        at: RunPass { run: 1, pass: 1 },
    }
}

fn finish(attempt: AttemptId, outcome: AttemptOutcome) -> Write {
    Write::Finish { attempt, outcome }
}

fn posted() -> AttemptOutcome {
    AttemptOutcome::Succeeded(Receipt {
        remote_id: "r".into(),
        url: Some("https://example.test/r".into()),
    })
}

fn to_retry() -> AttemptOutcome {
    AttemptOutcome::Failed {
        failure: Some(PostFailure::new("busy")),
        fault: None,
        classification: Decided {
            category: Category::Retryable,
            reason: "busy".into(),
            retry_after_ms: None,
            scope: RetryScope::Job,
            decided_by: "built-in".into(),
            consulted: Vec::new(),
        },
        decision: Decision::Retry,
        not_before_ms: None,
    }
}

#[test]
fn a_group_answers_each_write_as_if_written_one_by_one() {
    let Some(cluster) = Cluster::for_test("a_group_answers_each_write") else {
        return;
    };
    let url = cluster.create_database();
    let store = PostgresStore::open(&url, DEFAULT_LEASE).unwrap();
    let jobs: Vec<NewJob> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|account| NewJob {
            id: format!("{account}1"),
            account: (*account).into(),
            payload: "{}".into(),
        })
        .collect();
    store.import(&jobs, "f").unwrap();
    let process = store
        .join_run(&NewProcess {
            pid: 1,
            config: RetryConfig::default(),
            workers: 5,
            accounts: None,
            key_window_ms: 3_600_000,
            plugins: Vec::new(),
        })
        .unwrap()
        .process;
    store.begin_pass(RunPass { run: 1, pass: 1 }, 0).unwrap();
    let limit = ClaimLimit {
        jobs: 10,
        accounts: 10,
    };
    let [a1, b1, c1, d1, e1] =
        <[StoredJob; 5]>::try_from(store.claim(process, 1, None, limit).unwrap()).unwrap();
    // Meanwhile an operator cancels c1, and another process takes b1.
    store.cancel(&["c1".to_string()]).unwrap();
    cluster.sql(
        &url,
        "UPDATE jobs SET lease_process = lease_process + 1000 WHERE id = 'b1'",
    );

    // a1 twice: the second begin finds it begun, by this process.
    let writes = vec![begin(&a1), begin(&b1), begin(&c1), begin(&a1), begin(&d1)];
    let answers = group(&store, writes.clone());
    let a = *answers[0].as_ref().unwrap();
    let d = *answers[4].as_ref().unwrap();
    assert!(matches!(&answers[1], Err(StoreError::LeaseLost(job)) if job == "b1"));
    assert!(matches!(
        &answers[2],
        Err(StoreError::NotEligible { job, state }) if job == "c1" && state == "cancelled"
    ));
    assert_eq!(*answers[3].as_ref().unwrap(), a);
    assert_ne!(a, d);
    // The same group again (its commit's answer was lost): the same
    // answers, and no attempt twice.
    let again = group(&store, writes);
    assert_eq!(
        format!("{again:?}"),
        format!("{answers:?}"),
        "a retried group answers alike"
    );
    for (job, attempts) in [("a1", 1), ("b1", 0), ("c1", 0), ("d1", 1)] {
        assert_eq!(store.attempts(job).unwrap().len(), attempts, "{job}");
    }
    assert_eq!(store.job("a1").unwrap().unwrap().state, JobState::Running);

    // Finishes and a begin together; a1's second outcome comes after its
    // first, and changes nothing.
    let answers = group(
        &store,
        vec![
            finish(a, posted()),
            begin(&e1),
            finish(a, to_retry()),
            finish(d, to_retry()),
        ],
    );
    assert_eq!(answers[0].as_ref().unwrap(), &a);
    assert_eq!(answers[2].as_ref().unwrap(), &a);
    assert_eq!(answers[3].as_ref().unwrap(), &d);
    let e = *answers[1].as_ref().unwrap();
    let a1_attempts = store.attempts("a1").unwrap();
    assert_eq!(
        (
            a1_attempts[0].outcome.as_str(),
            a1_attempts[0].remote_id.as_deref()
        ),
        ("succeeded", Some("r"))
    );
    assert_eq!(store.job("a1").unwrap().unwrap().state, JobState::Succeeded);
    assert_eq!(store.job("d1").unwrap().unwrap().state, JobState::Retry);
    assert_eq!(store.attempts("d1").unwrap()[0].outcome, "failed");
    assert_eq!(store.job("e1").unwrap().unwrap().state, JobState::Running);
    assert_eq!(store.attempts("e1").unwrap().len(), 1);
    // Released by their outcomes; e1 is still held.
    assert_eq!(store.unfinished_in_pass(1, None).unwrap(), 2);
    let _ = e;
    // The writer's connection prices a lookup by key as a cached one.
    let inner = store.inner.clone();
    let cost: String = store
        .block(async move {
            let client = inner.writers_pool.get().await?;
            Ok(client.query_one("SHOW random_page_cost", &[]).await?.get(0))
        })
        .unwrap_or_else(|_| panic!("the writer's connection answers"));
    assert_eq!(cost, "1.1");
}
