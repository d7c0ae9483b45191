//! The PostgreSQL store's leases, against a real server: what one process
//! claims no other gets, an account is never split between processes, and
//! the jobs of a process that stopped renewing come back as after a crash.

use std::time::Duration;

use orchestrator_contract::Receipt;
use orchestrator_pg_cluster::Cluster;
use orchestrator_retry::RetryConfig;
use orchestrator_store::{
    AttemptOutcome, ClaimLimit, DEFAULT_LEASE, JobState, NewJob, NewRun, PostgresStore, RunId,
    Store, StoreError,
};

fn job(id: &str, account: &str) -> NewJob {
    NewJob {
        id: id.into(),
        account: account.into(),
        payload: format!(r#"{{"status":"{id}"}}"#),
    }
}

fn run(store: &PostgresStore) -> RunId {
    run_with_key_window(store, 3_600_000)
}

fn run_with_key_window(store: &PostgresStore, key_window_ms: u64) -> RunId {
    store
        .begin_run(&NewRun {
            pid: std::process::id(),
            config: RetryConfig::default(),
            workers: 3,
            accounts: None,
            key_window_ms,
        })
        .unwrap()
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
    one.begin_pass(1, 0).unwrap();

    // The first claim takes two jobs in import order; the second gets what
    // is left of the accounts nobody holds: not x2, whose account is held.
    let first = one.claim(run_one, 1, None, jobs(2)).unwrap();
    assert_eq!(ids(&first), ["x1", "y1"]);
    let second = two.claim(run_two, 1, None, jobs(10)).unwrap();
    assert_eq!(ids(&second), ["z1"]);
    assert_eq!(one.unfinished_in_pass(1, None).unwrap(), 4);

    // An outcome ends a lease; the account is free again once its last
    // held job is released.
    let attempt = one.begin_attempt(&first[0], 1).unwrap();
    one.finish_attempt(attempt, &posted()).unwrap();
    // (z1 comes again: a claimed job not yet begun is handed out again to
    // the run that holds it, so a claim whose answer was lost loses nothing.)
    let x2 = two.claim(run_two, 1, None, jobs(10)).unwrap();
    assert_eq!(ids(&x2), ["x2", "z1"]);

    // The first process dies with y1 in flight and stops renewing; process
    // two keeps its own leases alive, and after the first one's expires it
    // gets y1, whose attempt is now uncertain (with its own x2 and z1).
    let stranded = one.begin_attempt(&first[1], 1).unwrap();
    let _ = stranded;
    std::thread::sleep(Duration::from_millis(700));
    two.renew(run_two).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let recovered = two.claim(run_two, 1, None, jobs(10)).unwrap();
    assert_eq!(ids(&recovered), ["y1", "x2", "z1"]);
    let y1 = two.attempts("y1").unwrap();
    assert_eq!(y1[0].outcome, "uncertain");
    assert_eq!(y1[0].run, Some(run_one.0));
    // Same idempotency key on the retry: the job is the same job.
    assert_eq!(recovered[0].idempotency_key, first[1].idempotency_key);

    // The dead process comes back and tries to go on: its attempt's outcome
    // changes nothing, and it may not begin the job again.
    one.finish_attempt(stranded, &posted()).unwrap();
    assert_eq!(two.job("y1").unwrap().unwrap().state, JobState::Retry);
    assert!(matches!(
        one.begin_attempt(&first[1], 1),
        Err(StoreError::LeaseLost(job)) if job == "y1"
    ));

    for job in &recovered {
        let attempt = two.begin_attempt(job, 1).unwrap();
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
    one.begin_pass(1, 1_000).unwrap();
    // Opening a pass another process opened changes nothing.
    two.begin_pass(1, 5_000).unwrap();
    let mark = two.latest_pass().unwrap().unwrap();
    assert_eq!((mark.pass, mark.opens_ms, mark.ended), (1, 1_000, false));
    let result = orchestrator_retry::PassResult::RetryableRemain { jobs: 1 };
    assert!(one.end_pass(1, &result, Some((2, 9_000))).unwrap());
    assert!(!two.end_pass(1, &result, Some((2, 1))).unwrap());
    let mark = two.latest_pass().unwrap().unwrap();
    assert_eq!((mark.pass, mark.opens_ms, mark.ended), (2, 9_000, false));
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
    store.begin_pass(1, 0).unwrap();
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
    one.begin_pass(1, 0).unwrap();
    let x1 = one.claim(run_one, 1, None, jobs(1)).unwrap().remove(0);
    one.begin_attempt(&x1, 1).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(two.claim(run_two, 1, None, jobs(1)).unwrap().is_empty());
    let held = two.job("x1").unwrap().unwrap();
    assert_eq!(held.state, JobState::NeedsReview);
    assert_eq!(two.attempts("x1").unwrap()[0].outcome, "uncertain");
    assert_eq!(two.unfinished_in_pass(1, None).unwrap(), 0);
}
