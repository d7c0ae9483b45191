//! What the dashboard pages through: accounts, jobs, attempts over time,
//! and the plugins a process recorded.

use super::*;

/// Three accounts; bob's first job posted, its second failed.
fn batch() -> (tempfile::TempDir, SqliteStore) {
    let (dir, store) = store();
    let jobs = [
        job("a1", "alice"),
        job("b1", "bob"),
        job("b2", "bob"),
        job("c1", "carol"),
    ];
    store.import(&jobs, "jobs.jsonl").unwrap();
    run(&store);
    store.begin_pass(at(1, 1), 0).unwrap();
    let eligible = store.eligible_jobs(1, None).unwrap();
    let of = |id: &str| eligible.iter().find(|j| j.id == id).unwrap().clone();
    let b1 = store.begin_attempt(&of("b1"), at(1, 1)).unwrap();
    store.finish_attempt(b1, &posted()).unwrap();
    let b2 = store.begin_attempt(&of("b2"), at(1, 1)).unwrap();
    store
        .finish_attempt(
            b2,
            &failed(
                Category::NonRetryable,
                Decision::GiveUp(GiveUpReason::NonRetryable),
            ),
        )
        .unwrap();
    (dir, store)
}

#[test]
fn accounts_come_a_page_at_a_time_with_their_jobs_by_state() {
    let (_dir, store) = batch();
    let (page, total) = store.accounts_page(0, 2).unwrap();
    assert_eq!(total, 3);
    let names: Vec<&str> = page.iter().map(|a| a.account.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(page[1].jobs, 2);
    assert_eq!(page[1].in_state(JobState::Succeeded), 1);
    assert_eq!(page[1].in_state(JobState::Failed), 1);
    let (rest, _) = store.accounts_page(2, 2).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].account, "carol");
    // A page size past the bound is the bound; zero is one.
    assert_eq!(store.accounts_page(0, 0).unwrap().0.len(), 1);
    assert_eq!(store.accounts_page(0, u64::MAX).unwrap().0.len(), 3);
}

#[test]
fn jobs_are_filtered_by_state_and_account() {
    let (_dir, store) = batch();
    let failed = JobFilter {
        state: Some(JobState::Failed),
        account: None,
    };
    let (jobs, total) = store.jobs_page(&failed, 0, 10).unwrap();
    assert_eq!((total, jobs[0].id.as_str()), (1, "b2"));
    let bobs = JobFilter {
        state: None,
        account: Some("bob".into()),
    };
    let (jobs, total) = store.jobs_page(&bobs, 1, 10).unwrap();
    assert_eq!((total, jobs.len(), jobs[0].id.as_str()), (2, 1, "b2"));
}

#[test]
fn attempts_are_counted_by_the_minute_they_ended() {
    let (_dir, store) = batch();
    let buckets = store.throughput(0, 60_000).unwrap();
    let (succeeded, failed) = buckets
        .iter()
        .fold((0, 0), |(s, f), b| (s + b.succeeded, f + b.failed));
    assert_eq!((succeeded, failed), (1, 1));
    assert!(buckets.iter().all(|b| b.start_ms % 60_000 == 0));
    let future = orchestrator_contract::time::now_ms() + 3_600_000;
    assert!(store.throughput(future, 60_000).unwrap().is_empty());
}

#[test]
fn a_process_records_the_plugins_it_loaded() {
    let (_dir, store) = store();
    store.import(&[job("a1", "alice")], "jobs.jsonl").unwrap();
    let mut new = process(RetryConfig::default(), None, 3_600_000);
    new.plugins = vec![PluginUse {
        name: "mastodon-poster".into(),
        version: "0.1.0".into(),
        kind: "poster".into(),
        backend: "wasm".into(),
        sha256: "ab".repeat(32),
    }];
    store.join_run(&new).unwrap();
    let status = store.status().unwrap();
    assert_eq!(status.processes[0].plugins, new.plugins);
}
