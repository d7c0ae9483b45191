//! The PostgreSQL store's writes, committed in groups, leave what SQLite's
//! leave one by one. (Its leases and runs are tested in
//! `crates/store/tests/postgres.rs`, against a real server too.)

use orchestrator_pg_cluster::Cluster;

use super::*;

/// What a store holds of `job`, with what may differ between two stores
/// (times, process ids) left out.
fn recorded(store: &dyn Store, job: &str) -> String {
    let stored = store.job(job).unwrap().unwrap();
    let summary = store
        .job_summaries()
        .unwrap()
        .into_iter()
        .find(|s| s.id == job)
        .unwrap();
    let attempts: Vec<String> = store
        .attempts(job)
        .unwrap()
        .into_iter()
        .map(|a| {
            format!(
                "pass {} #{} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                a.pass,
                a.number,
                a.outcome,
                a.remote_id,
                a.failure,
                a.fault,
                a.category,
                a.decided_by,
                a.reason,
                a.retry_after_ms,
                a.retry_scope,
                a.decision,
                a.consulted,
            )
        })
        .collect();
    format!(
        "{:?} attempts {} passes {} infra {} not before {:?}; {:?} {:?}; {attempts:#?}",
        stored.state,
        stored.attempts,
        stored.passes_attempted,
        stored.infrastructure_failures,
        stored.not_before_ms,
        summary.category,
        summary.remote_id,
    )
}

/// Every kind of outcome, one job each, in accounts of their own; `cancelled`
/// jobs are cancelled while their attempt is in flight.
fn outcomes() -> Vec<(&'static str, AttemptOutcome, bool)> {
    let infra = failed(Category::Infrastructure, Decision::Retry);
    let mut later = waited(RetryScope::Account, 5_000);
    if let AttemptOutcome::Failed { not_before_ms, .. } = &mut later {
        *not_before_ms = Some(1_900_000_000_000);
    }
    vec![
        ("posted", posted(), false),
        ("retry", failed(Category::Retryable, Decision::Retry), false),
        (
            "given-up",
            failed(
                Category::NonRetryable,
                Decision::GiveUp(GiveUpReason::NonRetryable),
            ),
            false,
        ),
        ("infra", infra, false),
        (
            "deferred",
            failed(Category::Retryable, Decision::Defer),
            false,
        ),
        ("later", later, false),
        (
            "cancelled-failed",
            failed(Category::Retryable, Decision::Retry),
            true,
        ),
        ("cancelled-posted", posted(), true),
    ]
}

/// Runs [`outcomes`] on `store`: every begin queued at once, then every
/// finish, so a store that commits in groups gets them together. Returns
/// the attempts, and what it holds of each job.
fn script(store: &dyn Store) -> (Vec<AttemptId>, Vec<String>) {
    let outcomes = outcomes();
    let jobs: Vec<NewJob> = outcomes
        .iter()
        .map(|(id, _, _)| job(id, &format!("account-{id}")))
        .collect();
    store.import(&jobs, "f").unwrap();
    let joined = store
        .join_run(&process(RetryConfig::default(), None, 3_600_000))
        .unwrap();
    store.begin_pass(at(1, 1), 0).unwrap();
    let claimed = store
        .claim(
            joined.process,
            1,
            None,
            ClaimLimit {
                jobs: 100,
                accounts: 100,
            },
        )
        .unwrap();
    assert_eq!(claimed.len(), outcomes.len());
    let begun: Vec<_> = claimed
        .iter()
        .map(|job| store.queue_begin_attempt(job, at(1, 1)))
        .collect();
    let attempts: Vec<AttemptId> = begun.into_iter().map(|b| b.wait().unwrap()).collect();
    let cancelled: Vec<String> = outcomes
        .iter()
        .filter(|(_, _, cancel)| *cancel)
        .map(|(id, _, _)| id.to_string())
        .collect();
    store.cancel(&cancelled).unwrap();
    let finished: Vec<_> = attempts
        .iter()
        .zip(&outcomes)
        .map(|(attempt, (_, outcome, _))| store.queue_finish_attempt(*attempt, outcome))
        .collect();
    for finish in finished {
        finish.wait().unwrap();
    }
    let held = outcomes
        .iter()
        .map(|(id, _, _)| recorded(store, id))
        .collect();
    (attempts, held)
}

#[test]
fn grouped_writes_on_postgres_leave_what_sqlite_leaves_one_by_one() {
    let Some(cluster) = Cluster::for_test("grouped_writes_on_postgres") else {
        return;
    };
    let postgres = PostgresStore::open(&cluster.create_database(), DEFAULT_LEASE).unwrap();
    let (_dir, sqlite) = store();
    let (_, expected) = script(&sqlite);
    let (attempts, got) = script(&postgres);
    for ((id, _, _), (got, expected)) in outcomes().iter().zip(got.iter().zip(&expected)) {
        assert_eq!(got, expected, "job {id}");
    }
    // The jobs the failures left to retry, with why, read alike.
    let retries = |store: &dyn Store| {
        let status = store.status().unwrap();
        format!(
            "{:?} {:?} {:?} {:?} {:?}",
            status.by_state,
            status.by_category,
            status.failed_by_category,
            status.next_retries,
            status.failure_reasons
        )
    };
    assert_eq!(retries(&postgres), retries(&sqlite));
    // What the rate budgets spent reads alike: each attempt's account.
    let spent = |store: &dyn Store| {
        let mut accounts: Vec<String> = store
            .spent_since(0)
            .unwrap()
            .into_iter()
            .map(|(account, _)| account)
            .collect();
        accounts.sort();
        accounts
    };
    assert_eq!(spent(&postgres), spent(&sqlite));
    assert_eq!(spent(&sqlite).len(), outcomes().len());
    // On a shared store an attempt, once finished, stays as it ended: a
    // second outcome (a commit retried after its answer was lost, or a
    // process that lost its lease) changes nothing.
    postgres
        .finish_attempt(attempts[0], &failed(Category::Retryable, Decision::Retry))
        .unwrap();
    assert_eq!(recorded(&postgres, "posted"), got[0]);
}
