//! State files from older schemas: read as they are, brought forward with
//! nothing lost, migrated once however many processes open them.

use super::*;

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
    assert_eq!(store.schema_version().unwrap(), 6);
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
    assert_eq!(store.schema_version().unwrap(), 6);
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
