//! [`SqliteStore`]: the embedded default store, one SQLite file.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use orchestrator_contract::RetryScope;
use orchestrator_retry::{PassResult, PassTally};

use crate::model::FailureColumns;
use crate::sql::{self, JOB_COLUMNS};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::group::{Durable, GroupCommit, Write, Written};
use crate::{
    AttemptId, AttemptOutcome, AttemptRecord, ImportSummary, JobState, JobSummary, NewJob, NewRun,
    PassMark, PassStatus, Pause, ReasonCount, ReportRow, Result, RetryEntry, RunId, RunState,
    RunStatus, StatusReport, Store, StoreError, StoredJob, idempotency_key,
};

/// The schema version this build writes; a file with a higher one is
/// refused rather than misread, one with a lower one is brought up to date
/// by [`MIGRATIONS`].
const SCHEMA_VERSION: i64 = 2;

/// What turns schema version `n` into `n + 1`, at index `n - 1`.
const MIGRATIONS: &[&str] = &[
    // 2: who waits out a retry-after.
    "ALTER TABLE attempts ADD COLUMN retry_scope TEXT;",
];

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

/// The embedded store: one SQLite file in WAL mode, so `--status` can read
/// while a run writes.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// The attempts' writes, committed in groups (none when read-only).
    group: Option<GroupCommit>,
    /// The file's schema version: a read-only file keeps the one it has.
    schema: i64,
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
        let conn = Connection::open(path).map_err(open_err)?;
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
        let found = check_schema(&conn, &shown)?;
        // A new file gets the current schema at once; an older one is
        // migrated step by step, in one transaction, so a failure leaves it
        // as it was.
        let upgrade = if found == 0 {
            format!("{SCHEMA} PRAGMA user_version = {SCHEMA_VERSION};")
        } else {
            let steps: String = MIGRATIONS[found as usize - 1..].concat();
            format!("{steps} PRAGMA user_version = {SCHEMA_VERSION};")
        };
        if found < SCHEMA_VERSION {
            conn.execute_batch(&format!("BEGIN IMMEDIATE; {upgrade} COMMIT;"))
                .map_err(open_err)?;
        }
        let conn = Arc::new(Mutex::new(conn));
        let group = GroupCommit::start(conn.clone()).map_err(|e| StoreError::Open {
            path: shown.clone(),
            reason: format!("cannot start its writer: {e}"),
        })?;
        Ok(SqliteStore {
            conn,
            group: Some(group),
            schema: SCHEMA_VERSION,
        })
    }

    /// Opens an existing store for reading only (`--status` on a file the
    /// user made read-only).
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
        let schema = check_schema(&conn, &shown)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            group: None,
            schema,
        })
    }

    /// One write in a transaction of its own, on the caller's thread.
    fn write_now(&self, write: Write) -> Result<Written> {
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
}

impl SqliteStore {
    /// Attempts with their jobs, filtered by `filter` (a `WHERE` clause on
    /// `attempts a`).
    fn attempt_rows(&self, filter: &str, bind: &[&dyn rusqlite::ToSql]) -> Result<Vec<ReportRow>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        // A read-only file from before schema 2 has no scopes to show.
        let scope = if self.schema >= 2 {
            "a.retry_scope"
        } else {
            "NULL"
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT a.pass, a.number, a.started_ms, a.ended_ms, a.outcome, a.remote_id, a.failure,
                    a.fault, a.category, a.decided_by, a.reason, a.retry_after_ms, a.decision,
                    a.job_id, j.account, {scope}, a.run_id
             FROM attempts a JOIN jobs j ON j.id = a.job_id {filter}
             ORDER BY j.seq, a.id"
        ))?;
        let rows = stmt
            .query_map(bind, |r| {
                Ok((
                    ReportRow {
                        job: r.get(13)?,
                        account: r.get(14)?,
                        attempt: AttemptRecord {
                            run: r.get(16)?,
                            pass: r.get(0)?,
                            number: r.get(1)?,
                            started_ms: r.get::<_, i64>(2)? as u64,
                            ended_ms: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                            outcome: r.get(4)?,
                            remote_id: r.get(5)?,
                            failure: None,
                            fault: None,
                            category: r.get(8)?,
                            decided_by: r.get(9)?,
                            reason: r.get(10)?,
                            retry_after_ms: r.get::<_, Option<i64>>(11)?.map(|v| v as u64),
                            retry_scope: r
                                .get::<_, Option<String>>(15)?
                                .as_deref()
                                .and_then(RetryScope::parse),
                            decision: r.get(12)?,
                        },
                    },
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let parse = |e: serde_json::Error| StoreError::Corrupt(format!("attempt record: {e}"));
        rows.into_iter()
            .map(|(mut row, failure, fault)| {
                row.attempt.failure = failure
                    .map(|f| serde_json::from_str(&f).map_err(parse))
                    .transpose()?;
                row.attempt.fault = fault
                    .map(|f| serde_json::from_str(&f).map_err(parse))
                    .transpose()?;
                Ok(row)
            })
            .collect()
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
        not_before_ms: row.get::<_, Option<i64>>(8)?.map(|v| v as u64),
        claimed_by: None,
    })
}

impl Store for SqliteStore {
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
                "DELETE FROM attempts; DELETE FROM jobs; DELETE FROM passes; DELETE FROM runs; DELETE FROM meta;",
            )?;
            Ok(())
        })
    }

    fn schema_version(&self) -> Result<i64> {
        Ok(self.schema)
    }

    fn job_count(&self) -> Result<u64> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        Ok(conn.query_row(sql::COUNT_JOBS, [], |r| r.get::<_, i64>(0))? as u64)
    }

    fn begin_run(&self, run: &NewRun) -> Result<RunId> {
        let config = serde_json::to_string(&serde_json::json!({
            "retry": run.config,
            "workers": run.workers,
            "accounts": run.accounts,
        }))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with_tx(|tx| {
            // An earlier run that died left attempts in flight: their outcome
            // is unknown. Within the platform's key window, retrying with the
            // same idempotency key is safe; past it, a person decides.
            let now = now_ms() as i64;
            let cutoff = now - run.key_window_ms as i64;
            tx.execute(
                "UPDATE jobs SET
                    state = CASE
                        WHEN (SELECT MIN(started_ms) FROM attempts a
                              WHERE a.job_id = jobs.id AND a.outcome = 'in-flight') < ?1
                            THEN 'needs-review'
                        WHEN attempts > 0 THEN 'retry'
                        ELSE 'pending' END,
                    reason = CASE
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
                "UPDATE runs SET state = 'stopped', ended_ms = ?1 WHERE state = 'running'",
                [now_ms() as i64],
            )?;
            tx.execute(
                "INSERT INTO runs (pid, started_ms, state, config) VALUES (?1, ?2, 'running', ?3)",
                params![run.pid, now_ms() as i64, config],
            )?;
            Ok(RunId(tx.last_insert_rowid()))
        })
    }

    fn finish_run(&self, run: RunId, state: RunState) -> Result<()> {
        self.with_tx(|tx| {
            tx.execute(
                "UPDATE runs SET state = ?1, ended_ms = ?2 WHERE id = ?3",
                params![state.as_str(), now_ms() as i64, run.0],
            )?;
            Ok(())
        })
    }

    fn request_stop(&self) -> Result<u32> {
        self.with_tx(|tx| {
            Ok(tx.execute(
                "UPDATE runs SET stop_requested = 1 WHERE state = 'running'",
                [],
            )? as u32)
        })
    }

    fn release_held(&self) -> Result<u64> {
        self.with_tx(|tx| Ok(tx.execute(sql::RELEASE_HELD, [])? as u64))
    }

    fn stop_requested(&self, run: RunId) -> Result<bool> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        Ok(conn
            .query_row(
                "SELECT stop_requested FROM runs WHERE id = ?1",
                [run.0],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0)
            != 0)
    }

    fn latest_pass(&self) -> Result<Option<PassMark>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        Ok(conn
            .query_row(sql::LATEST_PASS, [], |r| {
                Ok(PassMark {
                    pass: r.get(0)?,
                    opens_ms: r.get::<_, i64>(1)? as u64,
                    ended: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn begin_pass(&self, pass: u32, opens_ms: u64) -> Result<()> {
        self.with_tx(|tx| {
            tx.execute(
                "INSERT INTO passes (pass, started_ms) VALUES (?1, ?2) ON CONFLICT (pass) DO NOTHING",
                params![pass, opens_ms as i64],
            )?;
            Ok(())
        })
    }

    fn end_pass(&self, pass: u32, result: &PassResult, next: Option<(u32, u64)>) -> Result<bool> {
        self.with_tx(|tx| {
            let ended = tx.execute(
                "UPDATE passes SET ended_ms = ?1, result = ?2 WHERE pass = ?3 AND ended_ms IS NULL",
                params![now_ms() as i64, result.to_string(), pass],
            )? == 1;
            if let (true, Some((next, opens_ms))) = (ended, next) {
                tx.execute(
                    "INSERT INTO passes (pass, started_ms) VALUES (?1, ?2) ON CONFLICT (pass) DO NOTHING",
                    params![next, opens_ms as i64],
                )?;
            }
            Ok(ended)
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

    fn tally(&self, accounts: Option<&[String]>) -> Result<PassTally> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let (clause, values) = accounts_clause(accounts);
        let sql = format!(
            "SELECT
                COALESCE(SUM(state IN ('pending', 'retry', 'running')), 0),
                COALESCE(SUM(state = 'failed'), 0),
                COALESCE(SUM(state = 'failed' AND gave_up LIKE 'tried in all %'), 0),
                COALESCE(SUM(state = 'needs-review'), 0)
             FROM jobs WHERE 1 = 1{clause}"
        );
        let bind: Vec<&dyn rusqlite::ToSql> =
            values.iter().map(|v| v as &dyn rusqlite::ToSql).collect();
        Ok(conn.query_row(&sql, bind.as_slice(), |r| {
            Ok(PassTally {
                to_retry: r.get::<_, i64>(0)? as u32,
                failed: r.get::<_, i64>(1)? as u32,
                out_of_passes: r.get::<_, i64>(2)? as u32,
                held: r.get::<_, i64>(3)? as u32,
            })
        })?)
    }

    fn begin_attempt(&self, job: &StoredJob, pass: u32) -> Result<AttemptId> {
        let write = Write::Begin {
            job: job.clone(),
            pass,
        };
        self.write_now(write).map(attempt_id)
    }

    fn finish_attempt(&self, attempt: AttemptId, outcome: &AttemptOutcome) -> Result<()> {
        let write = Write::Finish {
            attempt,
            outcome: outcome.clone(),
        };
        self.write_now(write).map(|_| ())
    }

    fn queue_begin_attempt(&self, job: &StoredJob, pass: u32) -> Durable<AttemptId> {
        let write = Write::Begin {
            job: job.clone(),
            pass,
        };
        match &self.group {
            Some(group) => group.submit(write, attempt_id),
            None => Durable::ready(self.write_now(write).map(attempt_id)),
        }
    }

    fn queue_finish_attempt(&self, attempt: AttemptId, outcome: &AttemptOutcome) -> Durable<()> {
        let write = Write::Finish {
            attempt,
            outcome: outcome.clone(),
        };
        match &self.group {
            Some(group) => group.submit(write, |_| ()),
            None => Durable::ready(self.write_now(write).map(|_| ())),
        }
    }

    fn pauses(&self, now_ms: u64) -> Result<Vec<Pause>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare(
            "SELECT a.retry_scope, j.account, MAX(a.ended_ms + a.retry_after_ms) AS until_ms
             FROM attempts a JOIN jobs j ON j.id = a.job_id
             WHERE a.retry_scope IN ('account', 'platform') AND a.retry_after_ms IS NOT NULL
             GROUP BY a.retry_scope, j.account
             HAVING until_ms > ?1
             ORDER BY j.account, a.retry_scope",
        )?;
        let pauses = stmt
            .query_map([now_ms as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, i64>(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        pauses
            .into_iter()
            .map(|(scope, account, until)| {
                let scope = RetryScope::parse(&scope)
                    .ok_or_else(|| StoreError::Corrupt(format!("retry scope {scope:?}")))?;
                Ok(Pause {
                    scope,
                    account,
                    until_ms: until as u64,
                })
            })
            .collect()
    }

    fn status(&self) -> Result<StatusReport> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let pairs = |sql: &str| -> Result<Vec<(String, u64)>> {
            let mut stmt = conn.prepare(sql)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        };
        let mut report = StatusReport {
            jobs: conn.query_row(sql::COUNT_JOBS, [], |r| r.get::<_, i64>(0))? as u64,
            ..StatusReport::default()
        };
        let by_state = pairs(sql::BY_STATE)?;
        report.by_state = crate::model::every_state(&by_state);
        report.by_category = pairs(sql::BY_CATEGORY)?;

        let mut passes = conn.prepare(sql::PASS_RESULTS)?;
        let pass_rows = passes
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)? as u32, r.get::<_, Option<String>>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (pass, result) in pass_rows {
            let mut counts = conn.prepare(
                "SELECT outcome, COALESCE(category, ''), COUNT(*) FROM attempts WHERE pass = ?1
                 GROUP BY outcome, category ORDER BY category",
            )?;
            let rows = counts
                .query_map([pass], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)? as u64,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let status = PassStatus::from_counts(pass, result, rows);
            report.passes.push(status);
        }

        let entries = |state: &str| -> Result<(Vec<RetryEntry>, u64)> {
            let total =
                conn.query_row("SELECT COUNT(*) FROM jobs WHERE state = ?1", [state], |r| {
                    r.get::<_, i64>(0)
                })? as u64;
            let mut stmt = conn.prepare(
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
                        not_before_ms: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((list, total))
        };
        (report.next_retries, report.retries_total) = entries("retry")?;
        (_, report.failures_total) = entries("failed")?;
        (report.held, report.held_total) = entries("needs-review")?;
        let mut reasons = conn.prepare(sql::FAILURE_REASONS)?;
        report.failure_reasons = reasons
            .query_map([], |r| {
                Ok(ReasonCount {
                    category: r.get(0)?,
                    reason: r.get(1)?,
                    jobs: r.get::<_, i64>(2)? as u64,
                    example: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;

        report.last_run = conn
            .query_row(
                "SELECT id, pid, state, started_ms, ended_ms, stop_requested FROM runs ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(RunStatus {
                        id: r.get(0)?,
                        pid: r.get::<_, i64>(1)? as u32,
                        host: None,
                        state: r.get(2)?,
                        started_ms: r.get::<_, i64>(3)? as u64,
                        ended_ms: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                        stop_requested: r.get::<_, i64>(5)? != 0,
                    })
                },
            )
            .optional()?;
        Ok(report)
    }

    fn attempts(&self, job: &str) -> Result<Vec<AttemptRecord>> {
        Ok(self
            .attempt_rows("WHERE a.job_id = ?1", &[&job])?
            .into_iter()
            .map(|row| row.attempt)
            .collect())
    }

    fn report(&self) -> Result<Vec<ReportRow>> {
        self.attempt_rows("", &[])
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
}

/// Records an attempt as in flight, in `tx`.
pub(crate) fn begin_attempt_in(tx: &Connection, job: &StoredJob, pass: u32) -> Result<AttemptId> {
    {
        exec(
            tx,
            "UPDATE jobs SET state = 'running', attempts = attempts + 1,
                                 passes_attempted = passes_attempted + 1, last_pass = ?1
                 WHERE id = ?2",
            params![pass, job.id],
        )?;
        exec(
            tx,
            "INSERT INTO attempts (job_id, run_id, pass, number, idempotency_key, started_ms)
                 VALUES (?1, (SELECT MAX(id) FROM runs WHERE state = 'running'), ?2, ?3, ?4, ?5)",
            params![
                job.id,
                pass,
                job.attempts + 1,
                job.idempotency_key,
                now_ms() as i64
            ],
        )?;
        Ok(AttemptId(tx.last_insert_rowid()))
    }
}

/// Records an attempt's outcome and its job's new state, in `tx`.
pub(crate) fn finish_attempt_in(
    tx: &Connection,
    attempt: AttemptId,
    outcome: &AttemptOutcome,
) -> Result<()> {
    {
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
                                         decided_by = NULL, gave_up = NULL
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
                                             retry_after_ms = ?7, decision = ?8, retry_scope = ?9
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
                            attempt.0
                        ],
                    )?;
                exec(
                    tx,
                    "UPDATE jobs SET state = ?1, gave_up = ?2, category = ?3, reason = ?4,
                                         decided_by = ?5, not_before_ms = ?6,
                                         infra_failures = infra_failures + ?7
                         WHERE id = ?8",
                    params![
                        columns.state,
                        columns.gave_up,
                        classification.category.as_str(),
                        classification.reason,
                        classification.decided_by,
                        not_before_ms.map(|v| v as i64),
                        columns.infra,
                        job_id
                    ],
                )?;
            }
        }
        Ok(())
    }
}

/// The id a begin write is answered with.
fn attempt_id(written: Written) -> AttemptId {
    match written {
        Written::Begun(id) => id,
        Written::Finished => unreachable!("a begin is answered with its id"),
    }
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
