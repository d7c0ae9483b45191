//! [`SqliteStore`]: the embedded default store, one SQLite file.
//!
//! The parts: [`schema`] (the schema and its migrations), [`group`] (the
//! attempts' writes, committed in groups by a writer thread) and
//! [`attempts`] (their SQL), [`runs`] (which run a process works on),
//! [`writes`] and [`reads`] (the two halves of the store).

mod attempts;
mod group;
mod reads;
mod runs;
// The tests build files of older schemas from its text.
pub(crate) mod schema;
mod writes;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_contract::time::now_ms;
use rusqlite::{Connection, Transaction};

use crate::model::read_ms;
use crate::write::Write;
use crate::{
    AttemptId, JobState, JoinPreview, NewProcess, ReadStore, Result, StoreError, StoredJob,
};
use group::GroupCommit;
use schema::{SCHEMA_VERSION, check_schema, migrate};

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
            let mut copy = in_memory(&conn).map_err(open_err)?;
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

    /// [`crate::ReadStore::preview_join`]: the join, in a copy of the
    /// store in memory (the store itself may be open read-only, and stays
    /// as it is).
    fn preview(&self, process: &NewProcess) -> Result<JoinPreview> {
        let copy = {
            let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
            in_memory(&conn)?
        };
        let copy = SqliteStore {
            conn: Arc::new(Mutex::new(copy)),
            group: None,
        };
        let before = copy.job_summaries()?;
        let joined = copy.join(process)?;
        Ok(JoinPreview {
            joined,
            before,
            after: copy.job_summaries()?,
        })
    }

    /// The same store writing each attempt's record on the caller's thread,
    /// one transaction each, rather than through the group-commit writer:
    /// slower under load, but a write is done when the call returns (what a
    /// test under tokio's paused clock needs, where time would otherwise
    /// run on while the writer's thread commits).
    pub fn without_group_commit(mut self) -> Self {
        self.group = None;
        self
    }

    /// One write in a transaction of its own, on the caller's thread.
    fn write_now(&self, write: Write) -> Result<AttemptId> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        group::commit(&mut conn, std::slice::from_ref(&write))
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

/// A copy of `conn`'s database in memory.
fn in_memory(conn: &Connection) -> rusqlite::Result<Connection> {
    let mut copy = Connection::open_in_memory()?;
    // In one step: one read of one moment, which a writer meanwhile
    // cannot make start over.
    rusqlite::backup::Backup::new(conn, &mut copy)?.run_to_completion(
        i32::MAX,
        Duration::from_millis(10),
        None,
    )?;
    Ok(copy)
}

/// A job state as stored, refused (not guessed) when unreadable.
fn parse_state(text: &str) -> Result<JobState> {
    JobState::parse(text).ok_or_else(|| StoreError::Corrupt(format!("job state {text:?}")))
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
