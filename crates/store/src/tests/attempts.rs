//! Attempts: what each one records, in flight and after, and what a run
//! reads back from them.

use super::*;

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

#[test]
fn what_the_rate_budgets_spent_is_each_attempt_by_its_start() {
    let (_dir, store) = store();
    store
        .import(&[job("a1", "a"), job("a2", "a"), job("b1", "b")], "f")
        .unwrap();
    run(&store);
    store.begin_pass(at(1, 1), 0).unwrap();
    let before = orchestrator_contract::time::now_ms();
    for job in store.eligible_jobs(1, None).unwrap() {
        let attempt = store.begin_attempt(&job, at(1, 1)).unwrap();
        // In flight or ended, an attempt has spent its unit.
        if job.id != "a2" {
            store.finish_attempt(attempt, &posted()).unwrap();
        }
    }
    let spent = store.spent_since(before).unwrap();
    let accounts: Vec<&str> = spent.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(accounts, ["a", "a", "b"], "oldest first");
    assert!(spent.windows(2).all(|w| w[0].1 <= w[1].1));
    assert!(spent.iter().all(|(_, t)| *t >= before));
    // Attempts before the window are not counted.
    let later = spent.last().unwrap().1 + 1;
    assert_eq!(store.spent_since(later).unwrap(), []);
}
