use orchestrator_contract::{Category, PostFailure, Receipt, RetryScope};
use orchestrator_retry::{Decision, GiveUpReason, PassResult, RetryConfig};

use super::*;

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
        },
        decision,
        not_before_ms: None,
    }
}

fn run(store: &SqliteStore) -> RunId {
    run_with_key_window(store, 3_600_000)
}

fn run_with_key_window(store: &SqliteStore, key_window_ms: u64) -> RunId {
    store
        .begin_run(&NewRun {
            pid: 1,
            config: RetryConfig::default(),
            workers: 3,
            accounts: None,
            key_window_ms,
        })
        .unwrap()
}

#[test]
fn importing_twice_keeps_what_is_stored() {
    let (_dir, store) = store();
    let first = store
        .import(&[job("a", "x"), job("b", "y")], "jobs.jsonl")
        .unwrap();
    assert_eq!((first.added, first.kept), (2, 0));
    let again = store
        .import(&[job("a", "x"), job("c", "y")], "jobs.jsonl")
        .unwrap();
    assert_eq!((again.added, again.kept), (1, 1));
    assert_eq!(store.job_count().unwrap(), 3);
    store.clear().unwrap();
    assert_eq!(store.job_count().unwrap(), 0);
}

#[test]
fn the_idempotency_key_depends_on_account_and_id_only() {
    assert_eq!(idempotency_key("x", "a"), idempotency_key("x", "a"));
    assert_ne!(idempotency_key("x", "a"), idempotency_key("y", "a"));
    assert!(idempotency_key("x", "a").starts_with("orch-"));
}

#[test]
fn a_job_moves_through_attempts_and_passes() {
    let (_dir, store) = store();
    store.import(&[job("a", "x"), job("b", "y")], "f").unwrap();
    run(&store);
    store.begin_pass(1, 0).unwrap();
    let eligible = store.eligible_jobs(1, None).unwrap();
    assert_eq!(eligible.len(), 2);
    let a = store.begin_attempt(&eligible[0], 1).unwrap();
    let b = store.begin_attempt(&eligible[1], 1).unwrap();
    store
        .finish_attempt(
            a,
            &AttemptOutcome::Succeeded(Receipt {
                remote_id: "1".into(),
                url: None,
            }),
        )
        .unwrap();
    store
        .finish_attempt(b, &failed(Category::Retryable, Decision::Retry))
        .unwrap();
    // Attempted in pass 1: not eligible again in it.
    assert!(store.eligible_jobs(1, None).unwrap().is_empty());
    let tally = store.tally(None).unwrap();
    assert_eq!((tally.to_retry, tally.failed), (1, 0));
    store
        .end_pass(1, &PassResult::RetryableRemain { jobs: 1 }, None)
        .unwrap();

    let next = store.eligible_jobs(2, None).unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].id, "b");
    assert_eq!((next[0].attempts, next[0].passes_attempted), (1, 1));
    assert_eq!(
        store
            .eligible_jobs(2, Some(&["x".to_string()]))
            .unwrap()
            .len(),
        0
    );

    let status = store.status().unwrap();
    assert_eq!(status.jobs, 2);
    assert_eq!(status.passes.len(), 1);
    assert_eq!(status.passes[0].succeeded, 1);
    assert_eq!(
        status.passes[0].failed_by_category,
        vec![("retryable".to_string(), 1)]
    );
    assert_eq!(status.retries_total, 1);
    assert_eq!(status.next_retries[0].reason.as_deref(), Some("because"));
}

#[test]
fn giving_up_is_recorded_with_why() {
    let (_dir, store) = store();
    store.import(&[job("a", "x")], "f").unwrap();
    run(&store);
    store.begin_pass(1, 0).unwrap();
    let j = store.eligible_jobs(1, None).unwrap().remove(0);
    let id = store.begin_attempt(&j, 1).unwrap();
    store
        .finish_attempt(
            id,
            &failed(
                Category::Infrastructure,
                Decision::GiveUp(GiveUpReason::MaxPassesReached { max: 1 }),
            ),
        )
        .unwrap();
    let tally = store.tally(None).unwrap();
    assert_eq!(
        (tally.to_retry, tally.failed, tally.out_of_passes),
        (0, 1, 1)
    );
    let status = store.status().unwrap();
    let reason = &status.failure_reasons[0];
    assert_eq!((reason.jobs, reason.example.as_str()), (1, "a"));
    assert!(
        reason
            .reason
            .as_deref()
            .unwrap()
            .starts_with("tried in all 1 passes")
    );
}

/// One job whose attempt a run began and never finished.
fn left_in_flight(store: &SqliteStore) -> StoredJob {
    store.import(&[job("a", "x")], "f").unwrap();
    run(store);
    store.begin_pass(1, 0).unwrap();
    let j = store.eligible_jobs(1, None).unwrap().remove(0);
    store.begin_attempt(&j, 1).unwrap();
    j
}

#[test]
fn attempts_left_in_flight_become_uncertain_and_eligible_again() {
    let (_dir, store) = store();
    let j = left_in_flight(&store);
    // The run dies here; the next one starts.
    run(&store);
    let again = store.eligible_jobs(1, None).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].idempotency_key, j.idempotency_key);
    let status = store.status().unwrap();
    assert_eq!(
        status.passes[0].failed_by_category,
        vec![("uncertain".to_string(), 1)]
    );
}

#[test]
fn stop_requests_reach_running_runs_only() {
    let (_dir, store) = store();
    let first = run(&store);
    store.finish_run(first, RunState::Finished).unwrap();
    let second = run(&store);
    assert_eq!(store.request_stop().unwrap(), 1);
    assert!(store.stop_requested(second).unwrap());
    assert!(!store.stop_requested(first).unwrap());
}

#[test]
fn an_uncertain_attempt_past_the_key_window_is_held_for_review() {
    let (_dir, store) = store();
    left_in_flight(&store);
    std::thread::sleep(std::time::Duration::from_millis(5));
    // The next run starts with a key window shorter than the attempt's age.
    run_with_key_window(&store, 1);
    assert!(store.eligible_jobs(1, None).unwrap().is_empty());
    assert_eq!(store.tally(None).unwrap().held, 1);
    let status = store.status().unwrap();
    assert_eq!(status.held_total, 1);
    assert!(
        status.held[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("--release-held")
    );
    assert_eq!(store.release_held().unwrap(), 1);
    assert_eq!(store.eligible_jobs(1, None).unwrap().len(), 1);
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

#[test]
fn account_and_platform_waits_outlive_the_run_that_saw_them() {
    let (_dir, store) = store();
    let jobs = [
        job("a1", "a"),
        job("a2", "a"),
        job("b1", "b"),
        job("c1", "c"),
    ];
    store.import(&jobs, "f").unwrap();
    run(&store);
    store.begin_pass(1, 0).unwrap();
    let eligible = store.eligible_jobs(1, None).unwrap();
    let outcomes = [
        waited(RetryScope::Account, 60_000),
        waited(RetryScope::Account, 120_000),
        waited(RetryScope::Platform, 30_000),
        waited(RetryScope::Job, 90_000),
    ];
    for (job, outcome) in eligible.iter().zip(&outcomes) {
        let attempt = store.begin_attempt(job, 1).unwrap();
        store.finish_attempt(attempt, outcome).unwrap();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let pauses = store.pauses(now).unwrap();
    // The job's own wait is not a pause; the account keeps its latest one.
    let seen: Vec<_> = pauses
        .iter()
        .map(|p| (p.scope, p.account.as_str()))
        .collect();
    assert_eq!(
        seen,
        [(RetryScope::Account, "a"), (RetryScope::Platform, "b")]
    );
    let left = |p: &Pause| p.until_ms - now;
    assert!(
        (110_000..=120_000).contains(&left(&pauses[0])),
        "{pauses:?}"
    );
    assert!((20_000..=30_000).contains(&left(&pauses[1])), "{pauses:?}");
    // Once over, they are gone.
    assert_eq!(store.pauses(now + 120_001).unwrap(), []);
    let recorded = store.attempts("a1").unwrap();
    assert_eq!(recorded[0].retry_scope, Some(RetryScope::Account));
}

/// A state file as schema 1 wrote it (no retry scopes), with one job and
/// one failed attempt.
fn schema_1_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("state.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v1 = super::sqlite::SCHEMA.replace(",\n    retry_scope      TEXT", "");
    assert_ne!(
        v1,
        super::sqlite::SCHEMA,
        "the schema 1 text is derived by removing the column"
    );
    conn.execute_batch(&format!(
        "{v1} PRAGMA user_version = 1;
         INSERT INTO jobs (id, account, payload, idempotency_key) VALUES ('j', 'a', '{{}}', 'k');
         INSERT INTO attempts (job_id, pass, number, idempotency_key, started_ms, ended_ms,
                               outcome, retry_after_ms)
         VALUES ('j', 1, 1, 'k', 1, 2, 'failed', 5000);"
    ))
    .unwrap();
    path
}

#[test]
fn a_state_file_from_schema_1_can_be_read_without_upgrading_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = schema_1_file(dir.path());
    let store = SqliteStore::open_read_only(&path).unwrap();
    let attempts = store.attempts("j").unwrap();
    assert_eq!(attempts[0].retry_after_ms, Some(5000));
    assert_eq!(attempts[0].retry_scope, None, "schema 1 had no scopes");
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1, "reading changed nothing");
}

#[test]
fn a_state_file_from_schema_1_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = schema_1_file(dir.path());
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.job_count().unwrap(), 1);
    run(&store);
    store.begin_pass(1, 0).unwrap();
    let job = store.eligible_jobs(1, None).unwrap().remove(0);
    let attempt = store.begin_attempt(&job, 1).unwrap();
    store
        .finish_attempt(attempt, &waited(RetryScope::Account, 5_000))
        .unwrap();
    let attempts = store.attempts("j").unwrap();
    // The old attempt is kept as it was; the new one records its scope.
    assert_eq!(
        (attempts[0].retry_after_ms, attempts[0].retry_scope),
        (Some(5000), None)
    );
    assert_eq!(attempts[1].retry_scope, Some(RetryScope::Account));
}

#[test]
fn writes_from_many_threads_commit_together_and_each_gets_its_own_answer() {
    let (_dir, store) = store();
    let jobs: Vec<NewJob> = (0..64).map(|i| job(&format!("j{i}"), "x")).collect();
    store.import(&jobs, "f").unwrap();
    run(&store);
    store.begin_pass(1, 0).unwrap();
    let eligible = store.eligible_jobs(1, None).unwrap();
    let ids: Vec<AttemptId> = std::thread::scope(|s| {
        let handles: Vec<_> = eligible
            .iter()
            .map(|job| {
                let store = &store;
                s.spawn(move || {
                    let id = store.queue_begin_attempt(job, 1).wait().unwrap();
                    let outcome = if job.id.ends_with('7') {
                        failed(Category::Retryable, Decision::Retry)
                    } else {
                        AttemptOutcome::Succeeded(Receipt {
                            remote_id: job.id.clone(),
                            url: None,
                        })
                    };
                    store.queue_finish_attempt(id, &outcome).wait().unwrap();
                    id
                })
            })
            .collect();
        // A write that fails (no such attempt) fails alone.
        let bad = store
            .queue_finish_attempt(
                AttemptId(1_000_000),
                &failed(Category::Unknown, Decision::Retry),
            )
            .wait();
        assert!(bad.is_err());
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut unique = ids.clone();
    unique.sort_by_key(|id| id.0);
    unique.dedup();
    assert_eq!(unique.len(), 64, "every attempt has its own id");
    let tally = store.tally(None).unwrap();
    // j7, j17, …, j57: six to retry; the rest posted, each with its receipt.
    assert_eq!(tally.to_retry, 6);
    for summary in store.job_summaries().unwrap() {
        let posted = summary.remote_id.as_deref() == Some(summary.id.as_str());
        assert_eq!(posted, !summary.id.ends_with('7'), "{summary:?}");
        assert_eq!(summary.attempts, 1);
    }
}
