//! The PostgreSQL store's leases, against a real server: what one process
//! claims no other gets, an account is never split between processes, and
//! the jobs of a process that stopped renewing come back as after a crash.

use std::time::Duration;

use orchestrator_contract::Receipt;
use orchestrator_pg_cluster::Cluster;
use orchestrator_retry::RetryConfig;
use orchestrator_store::prelude::*;
use orchestrator_store::{
    AttemptOutcome, ClaimLimit, DEFAULT_LEASE, JobState, Joined, JoinedHow, NewJob, NewProcess,
    PostgresStore, ProcessId, RunPass, StoreError,
};

fn job(id: &str, account: &str) -> NewJob {
    NewJob {
        id: id.into(),
        account: account.into(),
        payload: format!(r#"{{"status":"{id}"}}"#),
    }
}

/// A process joins the batch's run with the default settings.
fn run(store: &PostgresStore) -> ProcessId {
    run_with_key_window(store, 3_600_000)
}

fn run_with_key_window(store: &PostgresStore, key_window_ms: u64) -> ProcessId {
    join(store, RetryConfig::default(), key_window_ms).process
}

fn join(store: &PostgresStore, config: RetryConfig, key_window_ms: u64) -> Joined {
    store
        .join_run(&NewProcess {
            pid: std::process::id(),
            config,
            workers: 3,
            accounts: None,
            key_window_ms,
            plugins: Vec::new(),
        })
        .unwrap()
}

/// Pass `pass` of run 1.
fn pass(pass: u32) -> RunPass {
    RunPass { run: 1, pass }
}

fn posted() -> AttemptOutcome {
    AttemptOutcome::Succeeded(Receipt {
        remote_id: "1".into(),
        url: None,
    })
}

/// A claim of up to `n` jobs, of any number of accounts.
fn jobs(n: usize) -> ClaimLimit {
    ClaimLimit {
        jobs: n,
        accounts: usize::MAX >> 1,
    }
}

/// A new database on a throwaway cluster (stopped when the first value is
/// dropped), or `None` when PostgreSQL is missing (the test says so).
fn database(test: &str) -> Option<(Cluster, String)> {
    let cluster = Cluster::for_test(test)?;
    let url = cluster.create_database();
    Some((cluster, url))
}

/// Two processes' stores on one database.
fn two_processes(url: &str, lease: Duration) -> (PostgresStore, PostgresStore) {
    (
        PostgresStore::open(url, lease).unwrap(),
        PostgresStore::open(url, lease).unwrap(),
    )
}

fn ids(jobs: &[orchestrator_store::StoredJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

#[test]
fn leases_hand_each_job_and_account_to_one_process_and_expire() {
    let Some((_cluster, url)) = database("leases_hand_each_job_and_account_to_one_process") else {
        return;
    };
    let lease = Duration::from_millis(1500);
    let (one, two) = two_processes(&url, lease);
    one.import(
        &[
            job("x1", "x"),
            job("y1", "y"),
            job("x2", "x"),
            job("z1", "z"),
        ],
        "jobs.jsonl",
    )
    .unwrap();
    let (run_one, run_two) = (run(&one), run(&two));
    one.begin_pass(pass(1), 0).unwrap();

    // The first claim takes two jobs in import order; the second gets what
    // is left of the accounts nobody holds: not x2, whose account is held.
    let first = one.claim(run_one, 1, None, jobs(2)).unwrap();
    assert_eq!(ids(&first), ["x1", "y1"]);
    let second = two.claim(run_two, 1, None, jobs(10)).unwrap();
    assert_eq!(ids(&second), ["z1"]);
    assert_eq!(one.unfinished_in_pass(1, None).unwrap(), 4);

    // An outcome ends a lease; the account is free again once its last
    // held job is released.
    let attempt = one.begin_attempt(&first[0], pass(1)).unwrap();
    one.finish_attempt(attempt, &posted()).unwrap();
    // (z1 comes again: a claimed job not yet begun is handed out again to
    // the run that holds it, so a claim whose answer was lost loses nothing.)
    let x2 = two.claim(run_two, 1, None, jobs(10)).unwrap();
    assert_eq!(ids(&x2), ["x2", "z1"]);

    // The first process dies with y1 in flight and stops renewing; process
    // two keeps its own leases alive, and after the first one's expires it
    // gets y1, whose attempt is now uncertain (with its own x2 and z1).
    let stranded = one.begin_attempt(&first[1], pass(1)).unwrap();
    let _ = stranded;
    std::thread::sleep(Duration::from_millis(700));
    two.renew(run_two).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let recovered = two.claim(run_two, 1, None, jobs(10)).unwrap();
    assert_eq!(ids(&recovered), ["y1", "x2", "z1"]);
    let y1 = two.attempts("y1").unwrap();
    assert_eq!(y1[0].outcome, "uncertain");
    assert_eq!((y1[0].run, y1[0].process), (Some(1), Some(run_one.0)));
    // Same idempotency key on the retry: the job is the same job.
    assert_eq!(recovered[0].idempotency_key, first[1].idempotency_key);

    // The dead process comes back and tries to go on: its attempt's outcome
    // changes nothing, and it may not begin the job again.
    one.finish_attempt(stranded, &posted()).unwrap();
    assert_eq!(two.job("y1").unwrap().unwrap().state, JobState::Retry);
    assert!(matches!(
        one.begin_attempt(&first[1], pass(1)),
        Err(StoreError::LeaseLost(job)) if job == "y1"
    ));

    for job in &recovered {
        let attempt = two.begin_attempt(job, pass(1)).unwrap();
        two.finish_attempt(attempt, &posted()).unwrap();
    }
    assert_eq!(two.unfinished_in_pass(1, None).unwrap(), 0);
}

#[test]
fn a_pass_is_ended_once_and_the_next_opens_after_the_delay() {
    let Some((_cluster, url)) = database("a_pass_is_ended_once") else {
        return;
    };
    let lease = DEFAULT_LEASE;
    let (one, two) = two_processes(&url, lease);
    // Processes starting together agree on one run.
    let (first, second) = (
        join(&one, RetryConfig::default(), 0),
        join(&two, RetryConfig::default(), 0),
    );
    assert_eq!((first.run, second.run), (1, 1));
    assert_eq!(second.how, JoinedHow::Joined { others: 1 });
    one.begin_pass(pass(1), 1_000).unwrap();
    // Opening a pass another process opened changes nothing.
    two.begin_pass(pass(1), 5_000).unwrap();
    let mark = two.latest_pass(1).unwrap().unwrap();
    assert_eq!((mark.pass, mark.opens_ms, mark.ended), (1, 1_000, false));
    let result = orchestrator_retry::PassResult::RetryableRemain { jobs: 1 };
    assert!(one.end_pass(pass(1), &result, Some((2, 9_000))).unwrap());
    assert!(!two.end_pass(pass(1), &result, Some((2, 1))).unwrap());
    let mark = two.latest_pass(1).unwrap().unwrap();
    assert_eq!((mark.pass, mark.opens_ms, mark.ended), (2, 9_000, false));
    // The last pass ends the run, for every process.
    let last = orchestrator_retry::PassResult::AllDone;
    assert!(two.end_pass(pass(2), &last, None).unwrap());
    assert_eq!(
        one.run_state(1).unwrap(),
        orchestrator_store::RunState::Finished
    );
}

#[test]
fn the_schema_is_migrated_once_and_a_newer_one_is_refused() {
    let Some((cluster, url)) = database("the_schema_is_migrated_once") else {
        return;
    };
    let lease = DEFAULT_LEASE;
    // Processes starting together: every one opens, one migrates.
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresStore::open(&url, lease).map(|_| ()))
        })
        .collect();
    for handle in opened {
        handle.join().unwrap().unwrap();
    }
    let store = PostgresStore::open(&url, lease).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        orchestrator_store::POSTGRES_SCHEMA_VERSION
    );
    drop(store);
    // A database from a newer orchestrator is not misread.
    cluster.sql(&url, "UPDATE orchestrator_schema SET version = 99");
    let err = PostgresStore::open(&url, lease).unwrap_err().to_string();
    assert!(err.contains("newer orchestrator (schema 99"), "{err}");
}

#[test]
fn an_unreachable_database_is_one_clear_error() {
    let err = PostgresStore::open("postgres://orchestrator@127.0.0.1:1/nothing", DEFAULT_LEASE)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot open the state file postgres://orchestrator@127.0.0.1:1/nothing:"),
        "{err}"
    );
}

#[test]
fn a_claim_takes_the_first_free_accounts_up_to_its_limit() {
    let Some((_cluster, url)) = database("a_claim_takes_the_first_free_accounts") else {
        return;
    };
    let store = PostgresStore::open(&url, DEFAULT_LEASE).unwrap();
    store
        .import(
            &[
                job("x1", "x"),
                job("y1", "y"),
                job("x2", "x"),
                job("z1", "z"),
            ],
            "jobs.jsonl",
        )
        .unwrap();
    let run = run(&store);
    store.begin_pass(pass(1), 0).unwrap();
    let two_accounts = ClaimLimit {
        jobs: 10,
        accounts: 2,
    };
    let claimed = store.claim(run, 1, None, two_accounts).unwrap();
    assert_eq!(ids(&claimed), ["x1", "y1", "x2"]);
    let only_z = ClaimLimit {
        jobs: 10,
        accounts: 1,
    };
    let rest = store
        .claim(run, 1, Some(&["z".to_string()]), only_z)
        .unwrap();
    assert_eq!(ids(&rest), ["z1"]);
}

#[test]
fn a_dead_runs_attempt_older_than_the_key_window_is_held_for_review() {
    let Some((_cluster, url)) = database("a_dead_runs_attempt_older_than_the_key_window") else {
        return;
    };
    let lease = Duration::from_millis(300);
    let (one, two) = two_processes(&url, lease);
    one.import(&[job("x1", "x")], "jobs.jsonl").unwrap();
    let run_one = run(&one);
    // The second process's platform forgets keys at once: nothing in
    // flight when a run died may be retried blindly.
    let run_two = run_with_key_window(&two, 0);
    one.begin_pass(pass(1), 0).unwrap();
    let x1 = one.claim(run_one, 1, None, jobs(1)).unwrap().remove(0);
    one.begin_attempt(&x1, pass(1)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(two.claim(run_two, 1, None, jobs(1)).unwrap().is_empty());
    let held = two.job("x1").unwrap().unwrap();
    assert_eq!(held.state, JobState::NeedsReview);
    assert_eq!(two.attempts("x1").unwrap()[0].outcome, "uncertain");
    assert_eq!(two.unfinished_in_pass(1, None).unwrap(), 0);
}

#[test]
fn a_process_with_other_settings_may_not_join_a_run_others_work_on() {
    let Some((_cluster, url)) = database("a_process_with_other_settings_may_not_join") else {
        return;
    };
    let (one, two) = two_processes(&url, DEFAULT_LEASE);
    assert_eq!(join(&one, RetryConfig::default(), 0).run, 1);
    let five = RetryConfig {
        max_passes: 5,
        ..RetryConfig::default()
    };
    let refused = two
        .join_run(&NewProcess {
            pid: 2,
            config: five,
            workers: 3,
            accounts: None,
            key_window_ms: 0,
            plugins: Vec::new(),
        })
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::RunInProgress { run: 1, differences } if differences == "--max-passes 3 (here 5)"),
        "{refused}"
    );
}

#[test]
fn a_process_whose_run_was_closed_while_it_was_away_stops_claiming() {
    let Some((_cluster, url)) = database("a_process_whose_run_was_closed") else {
        return;
    };
    let lease = Duration::from_millis(300);
    let (one, two) = two_processes(&url, lease);
    one.import(&[job("x1", "x"), job("y1", "y")], "jobs.jsonl")
        .unwrap();
    let away = run(&one);
    one.begin_pass(pass(1), 0).unwrap();
    let x1 = one.claim(away, 1, None, jobs(1)).unwrap().remove(0);
    one.begin_attempt(&x1, pass(1)).unwrap();
    // It stops renewing; a process with other settings finds nobody on run
    // 1, closes it and begins run 2, taking back x1 at once.
    std::thread::sleep(Duration::from_millis(500));
    let five = RetryConfig {
        max_passes: 5,
        ..RetryConfig::default()
    };
    let second = join(&two, five, 3_600_000);
    assert_eq!(second.run, 2);
    assert!(matches!(
        second.how,
        JoinedHow::Began {
            closed: Some(_),
            ..
        }
    ));
    assert_eq!(two.attempts("x1").unwrap()[0].outcome, "uncertain");
    let x1 = two.job("x1").unwrap().unwrap();
    assert_eq!((x1.state, x1.passes_attempted), (JobState::Retry, 0));
    // The first process comes back: its run is gone.
    one.renew(away).unwrap();
    assert!(matches!(
        one.claim(away, 1, None, jobs(1)),
        Err(StoreError::RunClosed(1))
    ));
}

#[test]
fn cancel_and_retry_work_while_a_process_holds_the_jobs() {
    let Some((_cluster, url)) = database("cancel_and_retry_work_while_a_process_holds") else {
        return;
    };
    let store = PostgresStore::open(&url, DEFAULT_LEASE).unwrap();
    store
        .import(&[job("x1", "x"), job("y1", "y")], "jobs.jsonl")
        .unwrap();
    let process = run(&store);
    store.begin_pass(pass(1), 0).unwrap();
    let claimed = store.claim(process, 1, None, jobs(2)).unwrap();
    let x1 = store.begin_attempt(&claimed[0], pass(1)).unwrap();
    assert!(matches!(
        store.cancel(&["x1".into(), "zz".into()]),
        Err(StoreError::UnknownJobs(ids)) if ids == ["zz"]
    ));
    let changes = store.cancel(&["x1".into(), "y1".into()]).unwrap();
    assert_eq!(
        changes.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
        [
            orchestrator_store::JobChange::CancelledAfterAttempt,
            orchestrator_store::JobChange::Changed {
                from: JobState::Pending
            }
        ]
    );
    // y1 was claimed before it was cancelled: it is not begun.
    assert!(matches!(
        store.begin_attempt(&claimed[1], pass(1)),
        Err(StoreError::NotEligible { job, .. }) if job == "y1"
    ));
    // x1's attempt posts: it is posted, whatever the cancel said.
    store.finish_attempt(x1, &posted()).unwrap();
    assert_eq!(store.job("x1").unwrap().unwrap().state, JobState::Succeeded);
    // Retried, y1 is eligible again at once.
    store.retry(&["y1".into()]).unwrap();
    let again = store.claim(process, 1, None, jobs(2)).unwrap();
    assert_eq!(ids(&again), ["y1"]);
    assert_eq!(store.tally(None).unwrap().unfinished, 1);
}

#[test]
fn a_database_from_schema_1_is_brought_forward_with_nothing_lost() {
    let Some(cluster) = Cluster::for_test("a_database_from_schema_1_is_brought_forward") else {
        return;
    };
    let url = cluster.create_database();
    // Schema 1 as it was, with a batch whose pass 1 ended (a posted, b to
    // retry) and whose pass 2 was open when its process stopped.
    cluster.sql(
        &url,
        &format!(
            "CREATE TABLE orchestrator_schema (version BIGINT NOT NULL);
             INSERT INTO orchestrator_schema (version) VALUES (1); {}",
            include_str!("../migrations/postgres/1-batch.sql")
        ),
    );
    let config = serde_json::json!({
        "retry": orchestrator_retry::RetryConfig::default(),
        "workers": 3,
        "accounts": null,
        "key_window_ms": 3_600_000,
    });
    cluster.sql(
        &url,
        &format!(
            "INSERT INTO jobs (id, account, payload, idempotency_key, state, attempts,
                               passes_attempted, last_pass, remote_id, category)
             VALUES ('a', 'x', '{{}}', 'ka', 'succeeded', 1, 1, 1, 'r-1', NULL),
                    ('b', 'x', '{{}}', 'kb', 'retry', 1, 1, 1, NULL, 'retryable'),
                    ('c', 'y', '{{}}', 'kc', 'pending', 0, 0, 0, NULL, NULL);
             INSERT INTO runs (pid, host, started_ms, heartbeat_ms, ended_ms, state, config)
             VALUES (4242, 'old-host', 100, 300, 300, 'stopped', '{config}');
             INSERT INTO passes (pass, started_ms, ended_ms, result)
             VALUES (1, 100, 200, '1 jobs to retry'), (2, 250, NULL, NULL);
             INSERT INTO attempts (job_id, run_id, pass, number, idempotency_key, started_ms,
                                   ended_ms, outcome, remote_id, category)
             VALUES ('a', 1, 1, 1, 'ka', 110, 120, 'succeeded', 'r-1', NULL),
                    ('b', 1, 1, 1, 'kb', 110, 130, 'failed', NULL, 'retryable');"
        ),
    );
    let store = PostgresStore::open(&url, DEFAULT_LEASE).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        orchestrator_store::POSTGRES_SCHEMA_VERSION
    );
    // The tokens table came with the migration.
    store.seal_tokens("alice", b"sealed").unwrap();
    assert_eq!(
        store.sealed_tokens("alice").unwrap().as_deref(),
        Some(&b"sealed"[..])
    );
    let status = store.status().unwrap();
    let last = status.last_run.clone().unwrap();
    assert_eq!(
        (last.run, last.state.as_str(), last.passes, last.attempts),
        (1, "stopped", 2, 2)
    );
    assert_eq!(status.processes[0].host.as_deref(), Some("old-host"));
    let report = store.report().unwrap();
    assert!(
        report
            .iter()
            .all(|r| r.attempt.run == Some(1) && r.attempt.process == Some(1))
    );
    assert_eq!(report[0].attempt.remote_id.as_deref(), Some("r-1"));
    // The same settings resume it where it stood.
    let joined = store
        .join_run(&NewProcess {
            pid: 1,
            config: orchestrator_retry::RetryConfig::default(),
            workers: 3,
            accounts: None,
            key_window_ms: 3_600_000,
            plugins: Vec::new(),
        })
        .unwrap();
    assert_eq!((joined.run, joined.how), (1, JoinedHow::Resumed));
    let eligible: Vec<(String, u32)> = store
        .eligible_jobs(2, None)
        .unwrap()
        .into_iter()
        .map(|j| (j.id, j.passes_attempted))
        .collect();
    assert_eq!(eligible, [("b".into(), 1), ("c".into(), 0)]);
}

#[test]
fn a_claim_takes_whole_accounts_of_a_batch_grouped_by_account() {
    let Some((_cluster, url)) = database("a_claim_takes_whole_accounts_of_a_grouped_batch") else {
        return;
    };
    let (one, two) = two_processes(&url, DEFAULT_LEASE);
    // Each account's 50 jobs together: a claim's first look, at the first
    // few eligible jobs, sees too few accounts, and it looks at them all.
    let jobs: Vec<NewJob> = (0..20)
        .flat_map(|a| (0..50).map(move |j| job(&format!("a{a}-{j}"), &format!("a{a}"))))
        .collect();
    one.import(&jobs, "jobs.jsonl").unwrap();
    let (run_one, run_two) = (run(&one), run(&two));
    one.begin_pass(pass(1), 0).unwrap();
    let limit = ClaimLimit {
        jobs: 64,
        accounts: 8,
    };
    let expected = |accounts: std::ops::Range<usize>| -> Vec<String> {
        accounts
            .flat_map(|a| (0..8).map(move |j| format!("a{a}-{j}")))
            .collect()
    };
    let first = one.claim(run_one, 1, None, limit).unwrap();
    assert_eq!(ids(&first), expected(0..8));
    // The second process gets the next eight accounts: not one of the
    // first's.
    let second = two.claim(run_two, 1, None, limit).unwrap();
    assert_eq!(ids(&second), expected(8..16));
}
