//! [`SCHEMA_VERSION`]: the state file's schema, and the migrations that
//! bring an older file up to date as it opens.

use rusqlite::Connection;

use crate::{Result, StoreError};

/// The schema version this build writes; a file with a higher one is
/// refused rather than misread, one with a lower one is brought up to date
/// by [`MIGRATIONS`].
pub(super) const SCHEMA_VERSION: i64 = 6;

/// What turns schema version `n` into `n + 1`, at index `n - 1`.
const MIGRATIONS: &[&str] = &[
    // 2: who waits out a retry-after.
    "ALTER TABLE attempts ADD COLUMN retry_scope TEXT;",
    // 3: runs, each a series of passes with its own budgets.
    TO_RUNS,
    // 4: the classifiers asked about a failed attempt, with their answers.
    "ALTER TABLE attempts ADD COLUMN consulted TEXT;",
    // 5: the tokens platforms issued, sealed by the host.
    "CREATE TABLE tokens (
        account      TEXT PRIMARY KEY,
        sealed       BLOB NOT NULL,
        updated_ms   INTEGER NOT NULL
    );",
    // 6: attempts by when they ended, for the dashboard's throughput. (Not
    // jobs by account: that index doubled the time to seed a million jobs,
    // for an accounts page that takes 0.3 s without it.)
    "CREATE INDEX attempts_by_end ON attempts (ended_ms);",
];

/// The schema as version 2 left it. A new file gets it and then the
/// migrations after it, so every file reaches the same schema the same
/// way.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    account          TEXT NOT NULL,
    payload          TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    passes_attempted INTEGER NOT NULL DEFAULT 0,
    last_pass        INTEGER NOT NULL DEFAULT 0,
    infra_failures   INTEGER NOT NULL DEFAULT 0,
    not_before_ms    INTEGER,
    category         TEXT,
    reason           TEXT,
    decided_by       TEXT,
    gave_up          TEXT,
    remote_id        TEXT,
    url              TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, account);
CREATE TABLE IF NOT EXISTS attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id           TEXT NOT NULL REFERENCES jobs (id),
    run_id           INTEGER,
    pass             INTEGER NOT NULL,
    number           INTEGER NOT NULL,
    idempotency_key  TEXT NOT NULL,
    started_ms       INTEGER NOT NULL,
    ended_ms         INTEGER,
    outcome          TEXT NOT NULL DEFAULT 'in-flight',
    remote_id        TEXT,
    url              TEXT,
    failure          TEXT,
    fault            TEXT,
    category         TEXT,
    reason           TEXT,
    decided_by       TEXT,
    retry_after_ms   INTEGER,
    decision         TEXT,
    retry_scope      TEXT
);
CREATE INDEX IF NOT EXISTS attempts_by_job ON attempts (job_id);
CREATE INDEX IF NOT EXISTS attempts_by_pass ON attempts (pass, outcome);
CREATE TABLE IF NOT EXISTS passes (
    pass             INTEGER PRIMARY KEY,
    started_ms       INTEGER NOT NULL,
    ended_ms         INTEGER,
    result           TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    pid              INTEGER NOT NULL,
    started_ms       INTEGER NOT NULL,
    ended_ms         INTEGER,
    state            TEXT NOT NULL,
    stop_requested   INTEGER NOT NULL DEFAULT 0,
    config           TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key              TEXT PRIMARY KEY,
    value            TEXT NOT NULL
);
";

/// Schema 3. What schema 2 called runs were processes; they keep their ids
/// (attempts keep theirs in `process_id`). The passes of a batch were one
/// series: they become run 1, open unless its last pass ended it, with the
/// settings of the last process that worked on it. Per-job budgets so far
/// are run 1's. Jobs may be cancelled.
const TO_RUNS: &str = "
ALTER TABLE runs RENAME TO processes;
ALTER TABLE processes ADD COLUMN run INTEGER;
ALTER TABLE attempts RENAME COLUMN run_id TO process_id;
ALTER TABLE attempts ADD COLUMN run INTEGER;
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
CREATE TABLE runs (
    run              INTEGER PRIMARY KEY,
    started_ms       INTEGER NOT NULL,
    ended_ms         INTEGER,
    state            TEXT NOT NULL,
    config           TEXT NOT NULL,
    accounts         TEXT
);
INSERT INTO runs (run, started_ms, ended_ms, state, config, accounts)
SELECT 1,
       COALESCE((SELECT MIN(started_ms) FROM processes), (SELECT MIN(started_ms) FROM passes), 0),
       CASE WHEN ended THEN (SELECT MAX(ended_ms) FROM passes) END,
       CASE WHEN ended THEN 'finished' ELSE 'open' END,
       COALESCE((SELECT json_extract(config, '$.retry') FROM processes ORDER BY id DESC LIMIT 1),
                '{\"max_passes\":3,\"retry_delay_seconds\":30,\"infrastructure_retry_limit\":3,\"retry_unknown_errors\":true,\"retry_non_retryable\":false}'),
       (SELECT json_extract(config, '$.accounts') FROM processes ORDER BY id DESC LIMIT 1)
FROM (SELECT (SELECT ended_ms IS NOT NULL AND COALESCE(result, '') NOT LIKE '% jobs to retry'
              FROM passes ORDER BY pass DESC LIMIT 1) AS ended)
WHERE EXISTS (SELECT 1 FROM processes) OR EXISTS (SELECT 1 FROM passes);
UPDATE processes SET run = 1;
UPDATE attempts SET run = 1;
CREATE TABLE passes_of_runs (
    run              INTEGER NOT NULL,
    pass             INTEGER NOT NULL,
    started_ms       INTEGER NOT NULL,
    ended_ms         INTEGER,
    result           TEXT,
    PRIMARY KEY (run, pass)
);
INSERT INTO passes_of_runs SELECT 1, pass, started_ms, ended_ms, result FROM passes;
DROP TABLE passes;
ALTER TABLE passes_of_runs RENAME TO passes;
DROP INDEX attempts_by_pass;
CREATE INDEX attempts_by_pass ON attempts (run, pass, outcome);
";

/// Brings the schema up to date, in one transaction, so a failure leaves
/// it as it was. The version is read again under the write lock: another
/// process (a `--status` beside a first `--run`) may have migrated the file
/// since this one looked. A new file (0) gets [`SCHEMA`] first.
pub(super) fn migrate(conn: &mut Connection, path: &str) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found = check_schema(&tx, path)?;
    if found < SCHEMA_VERSION {
        let (base, from) = if found == 0 { (SCHEMA, 2) } else { ("", found) };
        let steps: String = MIGRATIONS[from as usize - 1..].concat();
        tx.execute_batch(&format!(
            "{base} {steps} PRAGMA user_version = {SCHEMA_VERSION};"
        ))?;
    }
    tx.commit()?;
    Ok(())
}

/// Refuses a file whose schema is newer than this build's, rather than
/// misreading it; returns the file's version (0 for a new file).
pub(super) fn check_schema(conn: &Connection, path: &str) -> Result<i64> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(found)
}
