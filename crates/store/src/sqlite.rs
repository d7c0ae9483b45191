//! [`SqliteStore`]: the embedded default store, one SQLite file.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use orchestrator_contract::Category;
use orchestrator_retry::{PassResult, PassTally};

use crate::join::{self, OpenRun, Plan};
use crate::model::{AttemptRow, FailureColumns, RunRow, read_ms, stored_ms};
use crate::sql::{self, JOB_COLUMNS};
use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};

use crate::group::GroupCommit;
use crate::status::StatusQueries;
use crate::write::{Reply, Write};
use crate::{
    AttemptId, AttemptOutcome, AttemptRecord, Durable, ImportSummary, JobChange, JobState,
    JobSummary, Joined, JoinedHow, NewJob, NewProcess, PassMark, Pause, ProcessId, ProcessState,
    ProcessStatus, RUNS_SHOWN, ReadStore, ReasonCount, ReportRow, Result, RetryEntry, RunPass,
    RunState, RunStore, Skipped, StatusReport, StoreError, StoredJob, idempotency_key,
};

/// The schema version this build writes; a file with a higher one is
/// refused rather than misread, one with a lower one is brought up to date
/// by [`MIGRATIONS`].
const SCHEMA_VERSION: i64 = 4;

/// What turns schema version `n` into `n + 1`, at index `n - 1`.
const MIGRATIONS: &[&str] = &[
    // 2: who waits out a retry-after.
    "ALTER TABLE attempts ADD COLUMN retry_scope TEXT;",
    // 3: runs, each a series of passes with its own budgets.
    TO_RUNS,
    // 4: the classifiers asked about a failed attempt, with their answers.
    "ALTER TABLE attempts ADD COLUMN consulted TEXT;",
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

/// The embedded store: one SQLite file in WAL mode, so `--status` can read
/// while a run writes.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// The attempts' writes, committed in groups (none when read-only).
    group: Option<GroupCommit>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Brings the schema up to date, in one transaction, so a failure leaves
/// it as it was. The version is read again under the write lock: another
/// process (a `--status` beside a first `--run`) may have migrated the file
/// since this one looked. A new file (0) gets [`SCHEMA`] first.
fn migrate(conn: &mut Connection, path: &str) -> Result<()> {
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

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    ///
    /// A file without write permission is refused even for root, who could
    /// write it anyway: the user marked it read-only for a reason.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().readonly()) {
            return Err(StoreError::ReadOnly { path: shown });
        }
        let open_err = |e: rusqlite::Error| StoreError::Open {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // Another process (a run, a status) may hold the write lock briefly.
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(open_err)?;
        // WAL lets readers (`--status`) work beside the writer. FULL sync
        // makes each commit durable before it returns: an attempt recorded
        // as in flight is on disk before its plugin runs, and an outcome is
        // on disk before anything reports it, even if the machine loses
        // power (NORMAL would only survive a process crash). The price is
        // one fsync per commit.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(open_err)?;
        if check_schema(&conn, &shown)? < SCHEMA_VERSION {
            migrate(&mut conn, &shown).map_err(|e| match e {
                StoreError::Database(e) => open_err(e),
                other => other,
            })?;
        }
        let conn = Arc::new(Mutex::new(conn));
        let group = GroupCommit::start(conn.clone()).map_err(|e| StoreError::Open {
            path: shown.clone(),
            reason: format!("cannot start its writer: {e}"),
        })?;
        Ok(SqliteStore {
            conn,
            group: Some(group),
        })
    }

    /// Opens an existing store for reading only (`--status` on a file the
    /// user made read-only). A file from an older schema is brought up to
    /// date in a copy in memory; the file stays as it is.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let open_err = |e: rusqlite::Error| StoreError::Open {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(open_err)?;
        let found = check_schema(&conn, &shown)?;
        let conn = if found < SCHEMA_VERSION {
            let mut copy = Connection::open_in_memory().map_err(open_err)?;
            rusqlite::backup::Backup::new(&conn, &mut copy)
                .and_then(|b| b.run_to_completion(4096, Duration::ZERO, None))
                .map_err(open_err)?;
            migrate(&mut copy, &shown).map_err(|e| match e {
                StoreError::Database(e) => open_err(e),
                other => other,
            })?;
            copy
        } else {
            conn
        };
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            group: None,
        })
    }

    /// One write in a transaction of its own, on the caller's thread.
    fn write_now(&self, write: Write) -> Result<AttemptId> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        crate::group::commit(&mut conn, std::slice::from_ref(&write))
            .pop()
            .expect("one result per write")
    }

    fn with_tx<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Changes the jobs `ids` as `change` decides from each one's state (and
    /// whether its cancellation waits for its attempt): runs `changed` (SQL
    /// with the id as `$1`) where it says so, `after` where the job's
    /// attempt must end first. An unknown id changes nothing.
    fn control(
        &self,
        ids: &[String],
        change: impl Fn(JobState, bool) -> JobChange,
        changed: &str,
        after: Option<&str>,
    ) -> Result<Vec<(String, JobChange)>> {
        self.with_tx(|tx| {
            let mut found = Vec::with_capacity(ids.len());
            let mut unknown = Vec::new();
            for id in ids {
                let row = tx
                    .prepare_cached(sql::JOB_CONTROL)?
                    .query_row([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                    .optional()?;
                match row {
                    Some((state, requested)) => found.push((id, state, requested != 0)),
                    None => unknown.push(id.clone()),
                }
            }
            if !unknown.is_empty() {
                return Err(StoreError::UnknownJobs(unknown));
            }
            let mut changes = Vec::with_capacity(found.len());
            for (id, state, requested) in found {
                let state = parse_state(&state)?;
                let what = change(state, requested);
                let statement = match what {
                    JobChange::Changed { .. } => Some(changed),
                    JobChange::CancelledAfterAttempt => after,
                    JobChange::Already { .. } | JobChange::Refused { .. } => None,
                };
                if let Some(statement) = statement {
                    exec(tx, statement, [id])?;
                }
                changes.push((id.clone(), what));
            }
            Ok(changes)
        })
    }
}

/// A job state as stored, refused (not guessed) when unreadable.
fn parse_state(text: &str) -> Result<JobState> {
    JobState::parse(text).ok_or_else(|| StoreError::Corrupt(format!("job state {text:?}")))
}

impl SqliteStore {
    /// Attempts with their jobs, filtered by `filter` (a `WHERE` clause on
    /// `attempts a`).
    fn attempt_rows(&self, filter: &str, bind: &[&dyn rusqlite::ToSql]) -> Result<Vec<ReportRow>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare(&format!(
            "SELECT a.pass, a.number, a.started_ms, a.ended_ms, a.outcome, a.remote_id, a.failure,
                    a.fault, a.category, a.decided_by, a.reason, a.retry_after_ms, a.decision,
                    a.job_id, j.account, a.retry_scope, a.run, a.process_id, a.consulted
             FROM attempts a JOIN jobs j ON j.id = a.job_id {filter}
             ORDER BY j.seq, a.id"
        ))?;
        let rows = stmt
            .query_map(bind, |r| {
                Ok(AttemptRow {
                    pass: r.get(0)?,
                    number: r.get(1)?,
                    started_ms: r.get(2)?,
                    ended_ms: r.get(3)?,
                    outcome: r.get(4)?,
                    remote_id: r.get(5)?,
                    failure: r.get(6)?,
                    fault: r.get(7)?,
                    category: r.get(8)?,
                    decided_by: r.get(9)?,
                    reason: r.get(10)?,
                    retry_after_ms: r.get(11)?,
                    decision: r.get(12)?,
                    job: r.get(13)?,
                    account: r.get(14)?,
                    retry_scope: r.get(15)?,
                    run: r.get(16)?,
                    process: r.get(17)?,
                    consulted: r.get(18)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(AttemptRow::report_row).collect()
    }
}

impl SqliteStore {
    /// Jobs matching `condition` (with one `?` for `pass`), optionally only
    /// of some accounts.
    fn count_jobs(&self, condition: &str, pass: u32, accounts: Option<&[String]>) -> Result<u64> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let (clause, values) = accounts_clause(accounts);
        let sql = format!("SELECT COUNT(*) FROM jobs WHERE ({condition}){clause}");
        let mut bind: Vec<&dyn rusqlite::ToSql> = vec![&pass];
        for v in &values {
            bind.push(v);
        }
        Ok(conn.query_row(&sql, bind.as_slice(), |r| r.get::<_, i64>(0))? as u64)
    }
}

/// Refuses a file whose schema is newer than this build's, rather than
/// misreading it; returns the file's version (0 for a new file).
fn check_schema(conn: &Connection, path: &str) -> Result<i64> {
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

fn accounts_clause(accounts: Option<&[String]>) -> (String, Vec<String>) {
    match accounts {
        None => (String::new(), Vec::new()),
        Some(list) => {
            let marks = vec!["?"; list.len()].join(", ");
            (format!(" AND account IN ({marks})"), list.to_vec())
        }
    }
}

fn job_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredJob> {
    let state: String = row.get(4)?;
    Ok(StoredJob {
        id: row.get(0)?,
        account: row.get(1)?,
        payload: row.get(2)?,
        idempotency_key: row.get(3)?,
        state: JobState::parse(&state).unwrap_or(JobState::Pending),
        attempts: row.get(5)?,
        passes_attempted: row.get(6)?,
        infrastructure_failures: row.get(7)?,
        not_before_ms: row.get::<_, Option<i64>>(8)?.map(read_ms),
        claimed_by: None,
    })
}

/// The newest run, when it is open. One process at a time works on a
/// SQLite store, so nobody else is working on it.
fn open_run(tx: &Connection) -> Result<Option<OpenRun>> {
    let newest = tx
        .query_row(
            "SELECT run, state, config, accounts FROM runs ORDER BY run DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((run, state, config, accounts)) = newest else {
        return Ok(None);
    };
    if state != RunState::Open.as_str() {
        return Ok(None);
    }
    Ok(Some(OpenRun {
        run,
        config: join::config_from(&config, run)?,
        accounts: join::accounts_from(accounts.as_deref(), run)?,
        live_processes: 0,
    }))
}

/// A new run's budgets: failed jobs of `accounts` whose category `config`
/// retries are reopened, and every open job starts with none of the run's
/// passes used. Returns how many were reopened, and the failed jobs left
/// as they are, by category. Rows already at zero are not written: a new
/// batch's first run rewrites nothing (on PostgreSQL, every rewritten row
/// would leave a dead one and index entries behind for the claims to wade
/// through).
fn fresh_budgets(
    tx: &Connection,
    config: &orchestrator_retry::RetryConfig,
    accounts: Option<&[String]>,
) -> Result<(u64, Vec<Skipped>)> {
    let (clause, values) = accounts_clause(accounts);
    let categories: Vec<String> = config
        .retried_categories()
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    let marks = vec!["?"; categories.len()].join(", ");
    let reopened = tx.execute(
        &format!(
            "UPDATE jobs SET state = 'retry', gave_up = NULL
             WHERE state = 'failed' AND (category IS NULL OR category IN ({marks})){clause}"
        ),
        params_from_iter(categories.iter().chain(&values)),
    )? as u64;
    tx.execute(
        &format!(
            "UPDATE jobs SET passes_attempted = 0, last_pass = 0, infra_failures = 0
             WHERE state IN ('pending', 'retry'){clause}
               AND (passes_attempted <> 0 OR last_pass <> 0 OR infra_failures <> 0)"
        ),
        params_from_iter(&values),
    )?;
    let mut skipped = tx.prepare(&format!(
        "SELECT category, COUNT(*), MIN(id) FROM jobs WHERE state = 'failed'{clause}
         GROUP BY category ORDER BY category"
    ))?;
    let skipped = skipped
        .query_map(params_from_iter(&values), |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let skipped = skipped
        .into_iter()
        .map(|(category, jobs, example)| Skipped {
            category: category
                .as_deref()
                .and_then(Category::parse)
                .unwrap_or(Category::Unknown),
            jobs,
            example,
        })
        .collect();
    Ok((reopened, skipped))
}

impl RunStore for SqliteStore {
    fn import(&self, jobs: &[NewJob], source: &str) -> Result<ImportSummary> {
        self.with_tx(|tx| {
            let mut summary = ImportSummary::default();
            let mut insert = tx.prepare(
                "INSERT INTO jobs (id, account, payload, idempotency_key) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO NOTHING",
            )?;
            for job in jobs {
                let added = insert.execute(params![
                    job.id,
                    job.account,
                    job.payload,
                    idempotency_key(&job.account, &job.id)
                ])?;
                if added == 1 {
                    summary.added += 1;
                } else {
                    summary.kept += 1;
                }
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('jobs_source', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [source],
            )?;
            Ok(summary)
        })
    }

    fn clear(&self) -> Result<()> {
        self.with_tx(|tx| {
            tx.execute_batch(
                "DELETE FROM attempts; DELETE FROM jobs; DELETE FROM passes; DELETE FROM runs;
                 DELETE FROM processes; DELETE FROM meta;",
            )?;
            Ok(())
        })
    }

    fn join_run(&self, process: &NewProcess) -> Result<Joined> {
        let process_config = serde_json::to_string(&serde_json::json!({
            "retry": process.config,
            "workers": process.workers,
            "accounts": process.accounts,
        }))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let config = join::config_text(&process.config)?;
        let accounts = join::normalized(process.accounts.as_deref());
        self.with_tx(|tx| {
            // A process that died left attempts in flight: their outcome is
            // unknown. Within the platform's key window, retrying with the
            // same idempotency key is safe; past it, a person decides. A job
            // cancelled meanwhile stays cancelled.
            let now = now_ms() as i64;
            let cutoff = now - process.key_window_ms as i64;
            tx.execute(
                "UPDATE jobs SET
                    state = CASE
                        WHEN cancel_requested = 1 THEN 'cancelled'
                        WHEN (SELECT MIN(started_ms) FROM attempts a
                              WHERE a.job_id = jobs.id AND a.outcome = 'in-flight') < ?1
                            THEN 'needs-review'
                        WHEN attempts > 0 THEN 'retry'
                        ELSE 'pending' END,
                    reason = CASE
                        WHEN cancel_requested = 1 THEN reason
                        WHEN (SELECT MIN(started_ms) FROM attempts a
                              WHERE a.job_id = jobs.id AND a.outcome = 'in-flight') < ?1
                            THEN 'an attempt was in flight when a run died, longer ago than the platform remembers idempotency keys; check whether it was posted, then --run --release-held'
                        ELSE reason END,
                    last_pass = last_pass - 1, passes_attempted = passes_attempted - 1
                 WHERE state = 'running'",
                [cutoff],
            )?;
            tx.execute(
                "UPDATE attempts SET outcome = 'uncertain', ended_ms = ?1 WHERE outcome = 'in-flight'",
                [now],
            )?;
            tx.execute(
                "UPDATE processes SET state = 'stopped', ended_ms = ?1 WHERE state = 'running'",
                [now],
            )?;
            let (run, how) = match join::plan(open_run(tx)?, process)? {
                Plan::Join { run, others } => (run, JoinedHow::Joined { others }),
                Plan::Resume { run } => {
                    // The same budgets; the delays are this process's.
                    tx.execute(
                        "UPDATE runs SET config = ?1 WHERE run = ?2",
                        params![config, run],
                    )?;
                    (run, JoinedHow::Resumed)
                }
                Plan::Begin { closing } => {
                    if let Some(closed) = &closing {
                        tx.execute(
                            "UPDATE runs SET state = 'closed', ended_ms = ?1 WHERE run = ?2",
                            params![now, closed.run],
                        )?;
                    }
                    let run: u32 =
                        tx.query_row("SELECT COALESCE(MAX(run), 0) + 1 FROM runs", [], |r| {
                            r.get(0)
                        })?;
                    tx.execute(
                        "INSERT INTO runs (run, started_ms, state, config, accounts)
                         VALUES (?1, ?2, 'open', ?3, ?4)",
                        params![
                            run,
                            now,
                            config,
                            join::accounts_text(accounts.as_deref())
                        ],
                    )?;
                    let (reopened, skipped) =
                        fresh_budgets(tx, &process.config, accounts.as_deref())?;
                    (
                        run,
                        JoinedHow::Began {
                            reopened,
                            skipped,
                            closed: closing,
                        },
                    )
                }
            };
            tx.execute(
                "INSERT INTO processes (run, pid, started_ms, state, config)
                 VALUES (?1, ?2, ?3, 'running', ?4)",
                params![run, process.pid, now, process_config],
            )?;
            Ok(Joined {
                process: ProcessId(tx.last_insert_rowid()),
                run,
                accounts: accounts.clone(),
                how,
            })
        })
    }

    fn leave_run(&self, process: ProcessId, state: ProcessState) -> Result<()> {
        self.with_tx(|tx| {
            tx.execute(
                "UPDATE processes SET state = ?1, ended_ms = ?2 WHERE id = ?3",
                params![state.as_str(), now_ms() as i64, process.0],
            )?;
            Ok(())
        })
    }

    fn request_stop(&self) -> Result<u32> {
        self.with_tx(|tx| {
            Ok(tx.execute(
                "UPDATE processes SET stop_requested = 1 WHERE state = 'running'",
                [],
            )? as u32)
        })
    }

    fn release_held(&self) -> Result<u64> {
        self.with_tx(|tx| Ok(tx.execute(sql::RELEASE_HELD, [])? as u64))
    }

    fn stop_requested(&self, process: ProcessId) -> Result<bool> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        Ok(conn
            .query_row(
                "SELECT stop_requested FROM processes WHERE id = ?1",
                [process.0],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0)
            != 0)
    }

    fn cancel(&self, jobs: &[String]) -> Result<Vec<(String, JobChange)>> {
        self.control(
            jobs,
            JobChange::cancel,
            &format!("UPDATE jobs SET {} WHERE id = $1", sql::CANCELLED),
            Some(sql::CANCEL_AFTER_ATTEMPT),
        )
    }

    fn retry(&self, jobs: &[String]) -> Result<Vec<(String, JobChange)>> {
        self.control(
            jobs,
            |state, _| JobChange::retry(state),
            &format!("UPDATE jobs SET {} WHERE id = $1", sql::RETRIED),
            None,
        )
    }

    fn run_state(&self, run: u32) -> Result<RunState> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let state: Option<String> = conn
            .query_row(sql::RUN_STATE, [run], |r| r.get(0))
            .optional()?;
        let state = state.ok_or_else(|| StoreError::Corrupt(format!("run {run} is missing")))?;
        RunState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("the state of run {run}: {state:?}")))
    }

    fn latest_pass(&self, run: u32) -> Result<Option<PassMark>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        Ok(conn
            .query_row(sql::LATEST_PASS, [run], |r| {
                Ok(PassMark {
                    pass: r.get(0)?,
                    opens_ms: read_ms(r.get::<_, i64>(1)?),
                    ended: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn begin_pass(&self, at: RunPass, opens_ms: u64) -> Result<()> {
        self.with_tx(|tx| {
            tx.execute(
                "INSERT INTO passes (run, pass, started_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run, pass) DO NOTHING",
                params![at.run, at.pass, stored_ms(opens_ms)],
            )?;
            Ok(())
        })
    }

    fn end_pass(&self, at: RunPass, result: &PassResult, next: Option<(u32, u64)>) -> Result<bool> {
        self.with_tx(|tx| {
            let now = now_ms() as i64;
            let ended = tx.execute(
                "UPDATE passes SET ended_ms = ?1, result = ?2
                 WHERE run = ?3 AND pass = ?4 AND ended_ms IS NULL",
                params![now, result.to_string(), at.run, at.pass],
            )? == 1;
            match (ended, next) {
                (false, _) => {}
                (true, Some((next, opens_ms))) => {
                    tx.execute(
                        "INSERT INTO passes (run, pass, started_ms) VALUES (?1, ?2, ?3)
                         ON CONFLICT (run, pass) DO NOTHING",
                        params![at.run, next, stored_ms(opens_ms)],
                    )?;
                }
                (true, None) => {
                    tx.execute(sql::FINISH_RUN, params![now, at.run])?;
                }
            }
            Ok(ended)
        })
    }

    fn end_run(&self, run: u32) -> Result<()> {
        self.with_tx(|tx| {
            tx.execute(sql::FINISH_RUN, params![now_ms() as i64, run])?;
            Ok(())
        })
    }

    fn eligible_count(&self, pass: u32, accounts: Option<&[String]>) -> Result<u64> {
        self.count_jobs(
            "state IN ('pending', 'retry') AND last_pass < ?",
            pass,
            accounts,
        )
    }

    fn unfinished_in_pass(&self, pass: u32, accounts: Option<&[String]>) -> Result<u64> {
        self.count_jobs(
            "(state IN ('pending', 'retry') AND last_pass < ?) OR state = 'running'",
            pass,
            accounts,
        )
    }

    fn eligible_jobs(&self, pass: u32, accounts: Option<&[String]>) -> Result<Vec<StoredJob>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let (clause, values) = accounts_clause(accounts);
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('pending', 'retry') AND last_pass < ?{clause} ORDER BY seq"
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut bind: Vec<&dyn rusqlite::ToSql> = vec![&pass];
        for v in &values {
            bind.push(v);
        }
        let jobs = stmt
            .query_map(bind.as_slice(), job_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(jobs)
    }

    fn accounts_with_work(&self) -> Result<Vec<String>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare(sql::ACCOUNTS_WITH_WORK)?;
        let accounts = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(accounts)
    }

    fn begin_attempt(&self, job: &StoredJob, at: RunPass) -> Result<AttemptId> {
        let write = Write::Begin {
            job: job.clone(),
            at,
        };
        self.write_now(write)
    }

    fn finish_attempt(&self, attempt: AttemptId, outcome: &AttemptOutcome) -> Result<()> {
        let write = Write::Finish {
            attempt,
            outcome: outcome.clone(),
        };
        self.write_now(write).map(drop)
    }

    fn queue_begin_attempt(&self, job: &StoredJob, at: RunPass) -> Durable<AttemptId> {
        let write = Write::Begin {
            job: job.clone(),
            at,
        };
        match &self.group {
            Some(group) => group.submit(write, Reply::begun()),
            None => Durable::ready(self.write_now(write)),
        }
    }

    fn queue_finish_attempt(&self, attempt: AttemptId, outcome: &AttemptOutcome) -> Durable<()> {
        let write = Write::Finish {
            attempt,
            outcome: outcome.clone(),
        };
        match &self.group {
            Some(group) => group.submit(write, Reply::finished()),
            None => Durable::ready(self.write_now(write).map(drop)),
        }
    }
}

impl ReadStore for SqliteStore {
    fn job_count(&self) -> Result<u64> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        Ok(conn.query_row(sql::COUNT_JOBS, [], |r| r.get::<_, i64>(0))? as u64)
    }

    fn schema_version(&self) -> Result<i64> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn tally(&self, accounts: Option<&[String]>) -> Result<PassTally> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let (clause, values) = accounts_clause(accounts);
        let sql = format!(
            "SELECT
                COALESCE(SUM(state = 'succeeded'), 0),
                COALESCE(SUM(state IN ('pending', 'retry', 'running')), 0),
                COALESCE(SUM(state = 'failed'), 0),
                COALESCE(SUM(state = 'needs-review'), 0),
                COALESCE(SUM(state = 'cancelled'), 0)
             FROM jobs WHERE 1 = 1{clause}"
        );
        Ok(conn.query_row(&sql, params_from_iter(&values), |r| {
            Ok(PassTally {
                succeeded: r.get::<_, i64>(0)? as u32,
                unfinished: r.get::<_, i64>(1)? as u32,
                failed: r.get::<_, i64>(2)? as u32,
                held: r.get::<_, i64>(3)? as u32,
                cancelled: r.get::<_, i64>(4)? as u32,
            })
        })?)
    }

    fn pauses(&self, now_ms: u64, max_wait_ms: u64) -> Result<Vec<Pause>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare(
            "SELECT a.retry_scope, j.account,
                    MAX(MIN(a.ended_ms, ?1) + MIN(a.retry_after_ms, ?2)) AS until_ms
             FROM attempts a JOIN jobs j ON j.id = a.job_id
             WHERE a.retry_scope IN ('account', 'platform') AND a.retry_after_ms IS NOT NULL
             GROUP BY a.retry_scope, j.account
             HAVING until_ms > ?1
             ORDER BY j.account, a.retry_scope",
        )?;
        let pauses = stmt
            .query_map([stored_ms(now_ms), stored_ms(max_wait_ms)], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, i64>(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        pauses
            .into_iter()
            .map(|(scope, account, until)| Pause::from_stored(scope, account, until))
            .collect()
    }

    fn status(&self) -> Result<StatusReport> {
        // One lock for the whole report: this process's writes wait for it.
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        crate::status::assemble(&StatusReads(&conn))
    }

    fn job_summaries(&self) -> Result<Vec<JobSummary>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare(sql::JOB_SUMMARIES)?;
        let jobs = stmt
            .query_map([], |r| {
                let state: String = r.get(2)?;
                Ok(JobSummary {
                    id: r.get(0)?,
                    account: r.get(1)?,
                    state: JobState::parse(&state).unwrap_or(JobState::Pending),
                    category: r.get(3)?,
                    attempts: r.get(4)?,
                    remote_id: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(jobs)
    }

    fn attempts(&self, job: &str) -> Result<Vec<AttemptRecord>> {
        Ok(self
            .attempt_rows("WHERE a.job_id = ?1", &[&job])?
            .into_iter()
            .map(|row| row.attempt)
            .collect())
    }

    fn job(&self, id: &str) -> Result<Option<StoredJob>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        Ok(conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                job_from_row,
            )
            .optional()?)
    }

    fn report(&self) -> Result<Vec<ReportRow>> {
        self.attempt_rows("", &[])
    }
}

/// Records an attempt as in flight, in `tx`: only a job still pending or to
/// retry may begin (one cancelled since it was handed out may not). Its
/// number follows the job's attempts as stored.
pub(crate) fn begin_attempt_in(tx: &Connection, job: &StoredJob, at: RunPass) -> Result<AttemptId> {
    let number: Option<u32> = tx
        .prepare_cached(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1,
                             passes_attempted = passes_attempted + 1, last_pass = ?1
             WHERE id = ?2 AND state IN ('pending', 'retry')
             RETURNING attempts",
        )?
        .query_row(params![at.pass, job.id], |r| r.get(0))
        .optional()?;
    let Some(number) = number else {
        let state: Option<String> = tx
            .prepare_cached("SELECT state FROM jobs WHERE id = ?1")?
            .query_row([&job.id], |r| r.get(0))
            .optional()?;
        return Err(StoreError::NotEligible {
            job: job.id.clone(),
            state: state.unwrap_or_else(|| "missing".into()),
        });
    };
    exec(
        tx,
        "INSERT INTO attempts (job_id, run, process_id, pass, number, idempotency_key, started_ms)
         VALUES (?1, ?2, (SELECT MAX(id) FROM processes WHERE state = 'running'), ?3, ?4, ?5, ?6)",
        params![
            job.id,
            at.run,
            at.pass,
            number,
            job.idempotency_key,
            now_ms() as i64
        ],
    )?;
    Ok(AttemptId(tx.last_insert_rowid()))
}

/// Records an attempt's outcome and its job's new state, in `tx`. A job
/// cancelled while the attempt was in flight ends cancelled, unless it
/// posted.
pub(crate) fn finish_attempt_in(
    tx: &Connection,
    attempt: AttemptId,
    outcome: &AttemptOutcome,
) -> Result<()> {
    let job_id: String = one(
        tx,
        "SELECT job_id FROM attempts WHERE id = ?1",
        [attempt.0],
        |r| r.get(0),
    )?;
    let ended = now_ms() as i64;
    match outcome {
        AttemptOutcome::Succeeded(receipt) => {
            exec(
                tx,
                "UPDATE attempts SET outcome = 'succeeded', ended_ms = ?1, remote_id = ?2, url = ?3
                 WHERE id = ?4",
                params![ended, receipt.remote_id, receipt.url, attempt.0],
            )?;
            exec(
                tx,
                "UPDATE jobs SET state = 'succeeded', remote_id = ?1, url = ?2,
                                 not_before_ms = NULL, category = NULL, reason = NULL,
                                 decided_by = NULL, gave_up = NULL, cancel_requested = 0
                 WHERE id = ?3",
                params![receipt.remote_id, receipt.url, job_id],
            )?;
        }
        AttemptOutcome::Failed {
            failure,
            fault,
            classification,
            decision,
            not_before_ms,
        } => {
            let columns =
                FailureColumns::of(failure.as_ref(), fault.as_ref(), classification, decision);
            exec(
                tx,
                "UPDATE attempts SET outcome = 'failed', ended_ms = ?1, failure = ?2, fault = ?3,
                                     category = ?4, reason = ?5, decided_by = ?6,
                                     retry_after_ms = ?7, decision = ?8, retry_scope = ?9,
                                     consulted = ?11
                 WHERE id = ?10",
                params![
                    ended,
                    columns.failure,
                    columns.fault,
                    classification.category.as_str(),
                    classification.reason,
                    classification.decided_by,
                    columns.retry_after_ms,
                    columns.decision,
                    columns.retry_scope,
                    attempt.0,
                    columns.consulted
                ],
            )?;
            exec(
                tx,
                "UPDATE jobs SET state = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE ?1 END,
                                 gave_up = ?2, category = ?3,
                                 reason = CASE WHEN cancel_requested = 1 THEN ?9 ELSE ?4 END,
                                 decided_by = ?5, not_before_ms = ?6,
                                 infra_failures = infra_failures + ?7,
                                 passes_attempted = passes_attempted - ?10,
                                 last_pass = last_pass - ?10
                 WHERE id = ?8",
                params![
                    columns.state,
                    columns.gave_up,
                    classification.category.as_str(),
                    classification.reason,
                    classification.decided_by,
                    not_before_ms.map(stored_ms),
                    columns.infra,
                    job_id,
                    sql::CANCELLED_REASON,
                    columns.uncounted,
                ],
            )?;
        }
    }
    Ok(())
}

/// Runs a statement from the connection's statement cache.
fn exec(tx: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    Ok(tx.prepare_cached(sql)?.execute(params)?)
}

/// Reads one row with a statement from the connection's statement cache.
fn one<T>(
    tx: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<T> {
    Ok(tx.prepare_cached(sql)?.query_row(params, f)?)
}

/// `--status`'s queries, on a connection held for the whole report.
struct StatusReads<'c>(&'c Connection);

impl StatusQueries for StatusReads<'_> {
    fn count(&self, sql: &str) -> Result<u64> {
        Ok(self.0.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
    }

    fn counts(&self, sql: &str) -> Result<Vec<(String, u64)>> {
        let mut stmt = self.0.prepare(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn newest_runs(&self) -> Result<Vec<RunRow>> {
        let mut runs = self.0.prepare(&format!(
            "SELECT r.run, r.state, r.started_ms, r.ended_ms, r.config, r.accounts,
                    (SELECT COALESCE(MAX(pass), 0) FROM passes p WHERE p.run = r.run),
                    (SELECT COUNT(*) FROM attempts a WHERE a.run = r.run),
                    EXISTS (SELECT 1 FROM processes x WHERE x.run = r.run AND x.state = 'running')
             FROM runs r ORDER BY r.run DESC LIMIT {RUNS_SHOWN}"
        ))?;
        let rows = runs
            .query_map([], |r| {
                Ok(RunRow {
                    run: r.get(0)?,
                    state: r.get(1)?,
                    started_ms: r.get(2)?,
                    ended_ms: r.get(3)?,
                    config: r.get(4)?,
                    accounts: r.get(5)?,
                    passes: r.get(6)?,
                    attempts: r.get(7)?,
                    live: r.get(8)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn passes(&self, run: u32) -> Result<Vec<(u32, Option<String>)>> {
        let mut passes = self.0.prepare(sql::PASS_RESULTS)?;
        let rows = passes
            .query_map([run], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, Option<String>>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn pass_counts(&self, at: RunPass) -> Result<Vec<(String, String, u64)>> {
        let mut counts = self.0.prepare(
            "SELECT outcome, COALESCE(category, ''), COUNT(*) FROM attempts
             WHERE run = ?1 AND pass = ?2
             GROUP BY outcome, category ORDER BY category",
        )?;
        let rows = counts
            .query_map([at.run, at.pass], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)? as u64,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The newest ten: one process at a time works on a SQLite store.
    fn processes(&self, run: u32) -> Result<Vec<ProcessStatus>> {
        let mut processes = self.0.prepare(
            "SELECT id, run, pid, state, started_ms, ended_ms, stop_requested FROM processes
             WHERE run = ?1 ORDER BY id DESC LIMIT 10",
        )?;
        let rows = processes
            .query_map([run], |r| {
                Ok(ProcessStatus {
                    id: r.get(0)?,
                    run: r.get(1)?,
                    pid: r.get::<_, i64>(2)? as u32,
                    host: None,
                    state: r.get(3)?,
                    started_ms: read_ms(r.get::<_, i64>(4)?),
                    ended_ms: r.get::<_, Option<i64>>(5)?.map(read_ms),
                    stop_requested: r.get::<_, i64>(6)? != 0,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn jobs_in_state(&self, state: JobState) -> Result<(Vec<RetryEntry>, u64)> {
        let state = state.as_str();
        let total =
            self.0
                .query_row("SELECT COUNT(*) FROM jobs WHERE state = ?1", [state], |r| {
                    r.get::<_, i64>(0)
                })? as u64;
        let mut stmt = self.0.prepare(
            "SELECT id, account, category, COALESCE(gave_up || ': ' || reason, reason), decided_by, not_before_ms
             FROM jobs WHERE state = ?1 ORDER BY seq LIMIT 10",
        )?;
        let list = stmt
            .query_map([state], |r| {
                Ok(RetryEntry {
                    job: r.get(0)?,
                    account: r.get(1)?,
                    category: r.get(2)?,
                    reason: r.get(3)?,
                    decided_by: r.get(4)?,
                    not_before_ms: r.get::<_, Option<i64>>(5)?.map(read_ms),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((list, total))
    }

    fn failure_reasons(&self) -> Result<Vec<ReasonCount>> {
        let mut reasons = self.0.prepare(sql::FAILURE_REASONS)?;
        let rows = reasons
            .query_map([], |r| {
                Ok(ReasonCount {
                    category: r.get(0)?,
                    reason: r.get(1)?,
                    jobs: r.get::<_, i64>(2)? as u64,
                    example: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}
