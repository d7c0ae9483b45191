use orchestrator_contract::{Category, HostFault, PostFailure, Receipt, RetryScope};
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
    assert_eq!(run(&store).run, 1);
    store.begin_pass(at(1, 1), 0).unwrap();
    let eligible = store.eligible_jobs(1, None).unwrap();
    assert_eq!(eligible.len(), 2);
    let a = store.begin_attempt(&eligible[0], at(1, 1)).unwrap();
    let b = store.begin_attempt(&eligible[1], at(1, 1)).unwrap();
    store.finish_attempt(a, &posted()).unwrap();
    store
        .finish_attempt(b, &failed(Category::Retryable, Decision::Retry))
        .unwrap();
    // Attempted in pass 1: not eligible again in it.
    assert!(store.eligible_jobs(1, None).unwrap().is_empty());
    let tally = store.tally(None).unwrap();
    assert_eq!((tally.succeeded, tally.unfinished, tally.failed), (1, 1, 0));
    store
        .end_pass(
            at(1, 1),
            &PassResult::RetryableRemain { jobs: 1 },
            Some((2, 0)),
        )
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
    assert_eq!(status.passes.len(), 2);
    assert_eq!((status.passes[0].run, status.passes[0].pass), (1, 1));
    assert_eq!(status.passes[0].succeeded, 1);
    assert_eq!(
        status.passes[0].failed_by_category,
        vec![("retryable".to_string(), 1)]
    );
    assert_eq!(status.retries_total, 1);
    assert_eq!(status.next_retries[0].reason.as_deref(), Some("because"));
    // Every classifier asked is in the record, a fault too.
    let b = store.attempts("b").unwrap().remove(0);
    assert_eq!(
        b.consulted[0].to_string(),
        "slow-classifier: timeout (attempt exceeded its 2000 ms deadline)"
    );
}

#[test]
fn giving_up_is_recorded_with_why() {
    let (_dir, store) = store();
    store.import(&[job("a", "x")], "f").unwrap();
    run(&store);
    store.begin_pass(at(1, 1), 0).unwrap();
    let j = store.eligible_jobs(1, None).unwrap().remove(0);
    let id = store.begin_attempt(&j, at(1, 1)).unwrap();
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
    assert_eq!((tally.unfinished, tally.failed), (0, 1));
    let status = store.status().unwrap();
    let reason = &status.failure_reasons[0];
    assert_eq!((reason.jobs, reason.example.as_str()), (1, "a"));
    assert!(
        reason
            .reason
            .as_deref()
            .unwrap()
            .starts_with("tried in every pass of the run (--max-passes 1)")
    );
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

#[test]
fn attempts_left_in_flight_become_uncertain_and_eligible_again() {
    let (_dir, store) = store();
    let j = left_in_flight(&store);
    // The process dies here; the next one resumes the run.
    let resumed = run(&store);
    assert_eq!((resumed.run, resumed.how), (1, JoinedHow::Resumed));
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
fn stop_requests_reach_running_processes_only() {
    let (_dir, store) = store();
    let first = run(&store).process;
    store.leave_run(first, ProcessState::Finished).unwrap();
    let second = run(&store).process;
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
    store.begin_pass(at(1, 1), 0).unwrap();
    let eligible = store.eligible_jobs(1, None).unwrap();
    let outcomes = [
        waited(RetryScope::Account, 60_000),
        waited(RetryScope::Account, 120_000),
        waited(RetryScope::Platform, 30_000),
        waited(RetryScope::Job, 90_000),
    ];
    for (job, outcome) in eligible.iter().zip(&outcomes) {
        let attempt = store.begin_attempt(job, at(1, 1)).unwrap();
        store.finish_attempt(attempt, outcome).unwrap();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let pauses = store.pauses(now, 3_600_000).unwrap();
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
    assert_eq!(store.pauses(now + 120_001, 3_600_000).unwrap(), []);
    let recorded = store.attempts("a1").unwrap();
    assert_eq!(recorded[0].retry_scope, Some(RetryScope::Account));
}

/// A state file as schema 1 wrote it (no retry scopes), with one job and
/// one failed attempt.
fn schema_1_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("state.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v1 = crate::sqlite::schema::SCHEMA.replace(",\n    retry_scope      TEXT", "");
    assert_ne!(
        v1,
        crate::sqlite::schema::SCHEMA,
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
    assert_eq!(store.schema_version().unwrap(), 4);
    run(&store);
    store.begin_pass(at(1, 1), 0).unwrap();
    let job = store.eligible_jobs(1, None).unwrap().remove(0);
    let attempt = store.begin_attempt(&job, at(1, 1)).unwrap();
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
    store.begin_pass(at(1, 1), 0).unwrap();
    let eligible = store.eligible_jobs(1, None).unwrap();
    let ids: Vec<AttemptId> = std::thread::scope(|s| {
        let handles: Vec<_> = eligible
            .iter()
            .map(|job| {
                let store = &store;
                s.spawn(move || {
                    let id = store.queue_begin_attempt(job, at(1, 1)).wait().unwrap();
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
    assert_eq!(tally.unfinished, 6);
    for summary in store.job_summaries().unwrap() {
        let posted = summary.remote_id.as_deref() == Some(summary.id.as_str());
        assert_eq!(posted, !summary.id.ends_with('7'), "{summary:?}");
        assert_eq!(summary.attempts, 1);
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

#[test]
fn a_run_cut_short_is_resumed_under_the_same_settings() {
    let (_dir, store) = store();
    let first = first_pass_ended(&store);
    assert_eq!(first.run, 1);
    assert!(matches!(first.how, JoinedHow::Began { .. }));
    // The process dies; the next one, with the same settings, goes on with
    // run 1 at pass 2, and c keeps the pass it used.
    let resumed = run(&store);
    assert_eq!((resumed.run, resumed.how), (1, JoinedHow::Resumed));
    let open = store.latest_pass(1).unwrap().unwrap();
    assert_eq!((open.pass, open.ended), (2, false));
    let c = store.job("c").unwrap().unwrap();
    assert_eq!((c.state, c.passes_attempted), (JobState::Retry, 1));
    let status = store.status().unwrap();
    assert_eq!(status.runs_total, 1);
    let last = status.last_run.unwrap();
    assert_eq!(
        (last.run, last.state.as_str(), last.passes),
        (1, "running", 2)
    );
}

#[test]
fn other_settings_close_the_run_cut_short_and_begin_a_new_one() {
    let (_dir, store) = store();
    first_pass_ended(&store);
    let five = RetryConfig {
        max_passes: 5,
        ..RetryConfig::default()
    };
    let second = store.join_run(&process(five, None, 3_600_000)).unwrap();
    assert_eq!(second.run, 2);
    assert_eq!(
        second.how,
        JoinedHow::Began {
            reopened: 0,
            skipped: vec![Skipped {
                category: Category::NonRetryable,
                jobs: 1,
                example: "b".into()
            }],
            closed: Some(ClosedRun {
                run: 1,
                differences: vec!["--max-passes 3 (here 5)".into()]
            }),
        }
    );
    // A fresh budget: c has used none of run 2's passes.
    let c = store.job("c").unwrap().unwrap();
    assert_eq!((c.state, c.passes_attempted), (JobState::Retry, 0));
    assert_eq!(store.latest_pass(2).unwrap(), None);
    let status = store.status().unwrap();
    let states: Vec<(u32, &str)> = status
        .runs
        .iter()
        .map(|r| (r.run, r.state.as_str()))
        .collect();
    assert_eq!(states, [(1, "closed"), (2, "running")]);
    assert_eq!(status.last_run.unwrap().max_passes, 5);
}

#[test]
fn a_new_run_retries_what_failed_before_if_its_settings_retry_it() {
    let (_dir, store) = store();
    let first = first_pass_ended(&store);
    store.end_run(1).unwrap();
    store
        .leave_run(first.process, ProcessState::Finished)
        .unwrap();
    assert_eq!(store.run_state(1).unwrap(), RunState::Finished);
    // With the default settings, b (non-retryable) is skipped.
    let second = run(&store);
    assert!(
        matches!(&second.how, JoinedHow::Began { reopened: 0, skipped, closed: None } if skipped.len() == 1)
    );
    store.end_run(2).unwrap();
    // Told to retry non-retryable failures, the next run reopens b.
    let everything = RetryConfig {
        retry_non_retryable: true,
        ..RetryConfig::default()
    };
    let third = store
        .join_run(&process(everything, None, 3_600_000))
        .unwrap();
    assert_eq!(third.run, 3);
    assert_eq!(
        third.how,
        JoinedHow::Began {
            reopened: 1,
            skipped: vec![],
            closed: None
        }
    );
    let b = store.job("b").unwrap().unwrap();
    assert_eq!((b.state, b.passes_attempted), (JobState::Retry, 0));
    // a posted: never attempted again.
    let eligible: Vec<String> = store
        .eligible_jobs(1, None)
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(eligible, ["b", "c"]);
}

#[test]
fn a_run_of_some_accounts_touches_no_other_accounts_jobs() {
    let (_dir, store) = store();
    store
        .import(&[job("x1", "x"), job("y1", "y")], "f")
        .unwrap();
    let first = run(&store);
    store.begin_pass(at(1, 1), 0).unwrap();
    for job in store.eligible_jobs(1, None).unwrap() {
        let attempt = store.begin_attempt(&job, at(1, 1)).unwrap();
        let out_of_passes = Decision::GiveUp(GiveUpReason::MaxPassesReached { max: 1 });
        store
            .finish_attempt(attempt, &failed(Category::Retryable, out_of_passes))
            .unwrap();
    }
    store.end_run(1).unwrap();
    store
        .leave_run(first.process, ProcessState::Finished)
        .unwrap();
    let only_x = store
        .join_run(&process(RetryConfig::default(), Some(&["x"]), 3_600_000))
        .unwrap();
    assert_eq!(only_x.accounts, Some(vec!["x".to_string()]));
    assert!(matches!(only_x.how, JoinedHow::Began { reopened: 1, .. }));
    assert_eq!(store.job("x1").unwrap().unwrap().state, JobState::Retry);
    assert_eq!(store.job("y1").unwrap().unwrap().state, JobState::Failed);
    let tally = store.tally(Some(&["x".to_string()])).unwrap();
    assert_eq!((tally.unfinished, tally.failed), (1, 0));
}

#[test]
fn cancel_and_retry_say_what_they_did_to_each_job() {
    let (_dir, store) = store();
    first_pass_ended(&store);
    store.import(&[job("d", "x")], "f").unwrap();
    // An unknown id: nothing changes.
    let unknown = store
        .cancel(&["d".into(), "nope".into()])
        .unwrap_err()
        .to_string();
    assert_eq!(unknown, r#"no job "nope" in the batch"#);
    assert_eq!(store.job("d").unwrap().unwrap().state, JobState::Pending);

    // c is handed out for pass 2 and begun; d is handed out too.
    let handed = store.eligible_jobs(2, None).unwrap();
    assert_eq!(handed.len(), 2);
    let c_attempt = store.begin_attempt(&handed[0], at(1, 2)).unwrap();
    let changes = store.cancel(&["a".into(), "c".into(), "d".into()]).unwrap();
    assert_eq!(
        changes,
        [
            (
                "a".into(),
                JobChange::Refused {
                    state: JobState::Succeeded
                }
            ),
            ("c".into(), JobChange::CancelledAfterAttempt),
            (
                "d".into(),
                JobChange::Changed {
                    from: JobState::Pending
                }
            ),
        ]
    );
    // d was cancelled after it was handed out: it is not begun.
    assert!(matches!(
        store.begin_attempt(&handed[1], at(1, 2)),
        Err(StoreError::NotEligible { job, state }) if job == "d" && state == "cancelled"
    ));
    // c's attempt ends failed: recorded, and the job is cancelled.
    store
        .finish_attempt(c_attempt, &failed(Category::Retryable, Decision::Retry))
        .unwrap();
    let c = store.job("c").unwrap().unwrap();
    assert_eq!(c.state, JobState::Cancelled);
    assert_eq!(store.attempts("c").unwrap()[1].outcome, "failed");
    assert_eq!(store.tally(None).unwrap().cancelled, 2);

    // Retry: cancelled and failed jobs (b is non-retryable) become eligible
    // with a fresh budget; a posted job is not posted again.
    let changes = store.retry(&["b".into(), "c".into(), "a".into()]).unwrap();
    let kinds: Vec<JobChange> = changes.into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        kinds,
        [
            JobChange::Changed {
                from: JobState::Failed
            },
            JobChange::Changed {
                from: JobState::Cancelled
            },
            JobChange::Refused {
                state: JobState::Succeeded
            },
        ]
    );
    let c = store.job("c").unwrap().unwrap();
    assert_eq!((c.state, c.passes_attempted), (JobState::Retry, 0));
    // Eligible at once, in the pass going on.
    let eligible: Vec<String> = store
        .eligible_jobs(2, None)
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(eligible, ["b", "c"]);
    // Cancelled while in flight, a job that posts is posted.
    let b = store.eligible_jobs(2, None).unwrap().remove(0);
    let b_attempt = store.begin_attempt(&b, at(1, 2)).unwrap();
    store.cancel(&["b".into()]).unwrap();
    store.finish_attempt(b_attempt, &posted()).unwrap();
    assert_eq!(store.job("b").unwrap().unwrap().state, JobState::Succeeded);
}

#[test]
fn a_job_cancelled_while_its_process_died_stays_cancelled() {
    let (_dir, store) = store();
    left_in_flight(&store);
    assert_eq!(
        store.cancel(&["a".into()]).unwrap()[0].1,
        JobChange::CancelledAfterAttempt
    );
    run(&store);
    assert_eq!(store.job("a").unwrap().unwrap().state, JobState::Cancelled);
    assert_eq!(store.attempts("a").unwrap()[0].outcome, "uncertain");
}

/// A state file as schema 2 wrote it: pass 1 of the batch ended with `a`
/// posted and `b` to retry, pass 2 open; `c` pending. The process working
/// on it was stopped.
fn schema_2_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("state.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let config = serde_json::json!({
        "retry": RetryConfig::default(),
        "workers": 3,
        "accounts": null,
    });
    conn.execute_batch(&format!(
        "{} PRAGMA user_version = 2;
         INSERT INTO jobs (id, account, payload, idempotency_key, state, attempts,
                           passes_attempted, last_pass, remote_id, category, reason)
         VALUES ('a', 'x', '{{}}', 'ka', 'succeeded', 1, 1, 1, 'r-1', NULL, NULL),
                ('b', 'x', '{{}}', 'kb', 'retry', 1, 1, 1, NULL, 'retryable', 'HTTP 503'),
                ('c', 'y', '{{}}', 'kc', 'pending', 0, 0, 0, NULL, NULL, NULL);
         INSERT INTO runs (pid, started_ms, ended_ms, state, config)
         VALUES (4242, 100, 300, 'stopped', '{config}');
         INSERT INTO passes (pass, started_ms, ended_ms, result)
         VALUES (1, 100, 200, '1 jobs to retry'), (2, 250, NULL, NULL);
         INSERT INTO attempts (job_id, run_id, pass, number, idempotency_key, started_ms,
                               ended_ms, outcome, remote_id, category, retry_scope)
         VALUES ('a', 1, 1, 1, 'ka', 110, 120, 'succeeded', 'r-1', NULL, NULL),
                ('b', 1, 1, 1, 'kb', 110, 130, 'failed', NULL, 'retryable', 'job');",
        crate::sqlite::schema::SCHEMA
    ))
    .unwrap();
    path
}

#[test]
fn a_state_file_from_schema_2_is_brought_forward_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = schema_2_file(dir.path());
    // Read-only, it is read as it will be, and left as it is.
    let read = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(read.status().unwrap().last_run.unwrap().state, "stopped");
    drop(read);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2, "reading changed nothing");
    drop(conn);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 4);
    let summaries = store.job_summaries().unwrap();
    let states: Vec<(&str, JobState)> =
        summaries.iter().map(|j| (j.id.as_str(), j.state)).collect();
    assert_eq!(
        states,
        [
            ("a", JobState::Succeeded),
            ("b", JobState::Retry),
            ("c", JobState::Pending)
        ]
    );
    assert_eq!(summaries[0].remote_id.as_deref(), Some("r-1"));
    // The batch's passes were one series: run 1, cut short in pass 2.
    let status = store.status().unwrap();
    let last = status.last_run.clone().unwrap();
    assert_eq!(
        (last.run, last.state.as_str(), last.passes, last.max_passes),
        (1, "stopped", 2, 3)
    );
    assert_eq!(last.attempts, 2);
    assert_eq!(status.passes.len(), 2);
    assert_eq!(status.processes[0].pid, 4242);
    let report = store.report().unwrap();
    assert_eq!(report.len(), 2);
    assert!(
        report
            .iter()
            .all(|r| r.attempt.run == Some(1) && r.attempt.process == Some(1))
    );
    assert_eq!(report[1].attempt.retry_scope, Some(RetryScope::Job));
    // The same settings resume it where it stood.
    let resumed = run(&store);
    assert_eq!((resumed.run, resumed.how), (1, JoinedHow::Resumed));
    assert_eq!(store.latest_pass(1).unwrap().unwrap().pass, 2);
    let eligible: Vec<(String, u32)> = store
        .eligible_jobs(2, None)
        .unwrap()
        .into_iter()
        .map(|j| (j.id, j.passes_attempted))
        .collect();
    assert_eq!(eligible, [("b".into(), 1), ("c".into(), 0)]);
}

#[test]
fn a_finished_batch_from_schema_2_gets_a_new_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = schema_2_file(dir.path());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "UPDATE passes SET ended_ms = 400, result = 'max passes reached with 1 jobs unfinished' WHERE pass = 2",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.run_state(1).unwrap(), RunState::Finished);
    let next = run(&store);
    assert_eq!(next.run, 2);
    assert!(matches!(next.how, JoinedHow::Began { closed: None, .. }));
}

#[test]
fn processes_opening_a_file_together_migrate_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.sqlite");
    let old = schema_2_file(dir.path());
    let opened: Vec<_> = (0..8)
        .map(|i| {
            let path = if i % 2 == 0 { new.clone() } else { old.clone() };
            std::thread::spawn(move || SqliteStore::open(&path).map(drop))
        })
        .collect();
    for handle in opened {
        handle.join().unwrap().unwrap();
    }
    let store = SqliteStore::open(&old).unwrap();
    assert_eq!(store.status().unwrap().runs_total, 1);
}

#[test]
fn times_no_host_writes_are_read_without_overflow() {
    let (dir, store) = store();
    first_pass_ended(&store);
    drop(store);
    // What an older build could store from a platform's absurd Retry-After.
    let conn = rusqlite::Connection::open(dir.path().join("state.sqlite")).unwrap();
    conn.execute_batch(
        "UPDATE attempts SET retry_after_ms = 9223372036854775807, retry_scope = 'platform',
                            ended_ms = 9223372036854775807;
         UPDATE jobs SET not_before_ms = -5;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&dir.path().join("state.sqlite")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // A wait lasts no longer than the run allows.
    let pauses = store.pauses(now, 60_000).unwrap();
    assert!(!pauses.is_empty());
    assert!(
        pauses.iter().all(|p| p.until_ms <= now + 60_000),
        "{pauses:?}"
    );
    assert_eq!(store.job("c").unwrap().unwrap().not_before_ms, Some(0));
    let attempts = store.attempts("c").unwrap();
    assert_eq!(attempts[0].retry_after_ms, Some(i64::MAX as u64));
    store.status().unwrap();
}
