//! An operator's cancel and retry, on jobs in every state.

use super::*;

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

#[test]
fn an_accounts_sealed_tokens_are_replaced_whole_and_kept_apart() {
    let (_dir, store) = store();
    assert_eq!(store.sealed_tokens("alice").unwrap(), None);
    store.seal_tokens("alice", b"first").unwrap();
    store.seal_tokens("bob", b"bobs").unwrap();
    store.seal_tokens("alice", b"second").unwrap();
    assert_eq!(
        store.sealed_tokens("alice").unwrap().as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(
        store.sealed_tokens("bob").unwrap().as_deref(),
        Some(&b"bobs"[..])
    );
}
