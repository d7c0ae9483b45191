//! Runs: resumed under the same settings, replaced under others, each with
//! budgets of its own.

use super::*;

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
