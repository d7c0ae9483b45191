//! The read side of [`SqliteStore`]: counts, records and reports;
//! `--status` is assembled by [`crate::status`] from the queries here, on a
//! connection held for the whole report.

use orchestrator_retry::PassTally;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::{SqliteStore, accounts_clause, job_from_row};
use crate::model::{AttemptRow, RunRow, read_ms, stored_ms};
use crate::sql::{self, JOB_COLUMNS};
use crate::status::StatusQueries;
use crate::{
    AccountRow, AttemptRecord, JobFilter, JobState, JobSummary, JoinPreview, NewProcess, Pause,
    ProcessStatus, RUNS_SHOWN, ReadStore, ReasonCount, ReportRow, Result, RetryEntry, RunPass,
    StatusReport, StoredJob, Throughput,
};

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

    fn spent_since(&self, since_ms: u64) -> Result<Vec<(String, u64)>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare_cached(sql::SPENT_SINCE)?;
        let spent = stmt
            .query_map([stored_ms(since_ms)], |r| {
                Ok((r.get::<_, String>(0)?, read_ms(r.get::<_, i64>(1)?)))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(spent)
    }

    fn pauses(&self, now_ms: u64, max_wait_ms: u64) -> Result<Vec<Pause>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare(
            // SQLite takes a bare column (the reason) from the row that
            // holds the MAX.
            "SELECT a.retry_scope, j.account,
                    MAX(MIN(a.ended_ms, ?1) + MIN(a.retry_after_ms, ?2)) AS until_ms, a.reason
             FROM attempts a JOIN jobs j ON j.id = a.job_id
             WHERE a.retry_scope IN ('account', 'platform') AND a.retry_after_ms IS NOT NULL
             GROUP BY a.retry_scope, j.account
             HAVING until_ms > ?1
             ORDER BY j.account, a.retry_scope",
        )?;
        let pauses = stmt
            .query_map([stored_ms(now_ms), stored_ms(max_wait_ms)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        pauses
            .into_iter()
            .map(|(scope, account, until, reason)| {
                Pause::from_stored(scope, account, until, reason)
            })
            .collect()
    }

    fn status(&self) -> Result<StatusReport> {
        // One lock for the whole report: this process's writes wait for it.
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        crate::status::assemble(&StatusReads(&conn))
    }

    fn preview_join(&self, process: &NewProcess) -> Result<JoinPreview> {
        self.preview(process)
    }

    fn job_summaries(&self) -> Result<Vec<JobSummary>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare(sql::JOB_SUMMARIES)?;
        let jobs = stmt
            .query_map([], job_summary)?
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

    fn accounts_page(&self, offset: u64, limit: u64) -> Result<(Vec<AccountRow>, u64)> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let total = conn.query_row(sql::COUNT_ACCOUNTS, [], |r| r.get::<_, i64>(0))? as u64;
        let mut stmt = conn.prepare_cached(sql::ACCOUNTS_PAGE)?;
        let rows = stmt
            .query_map(
                params![crate::model::page_size(limit), stored_ms(offset)],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((AccountRow::gather(rows), total))
    }

    fn jobs_page(
        &self,
        filter: &JobFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<JobSummary>, u64)> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let state = filter.state.map(|s| s.as_str());
        let account = filter.account.as_deref();
        let total = conn.query_row(sql::JOBS_MATCHING, params![state, account], |r| {
            r.get::<_, i64>(0)
        })? as u64;
        let mut stmt = conn.prepare_cached(sql::JOBS_PAGE)?;
        let jobs = stmt
            .query_map(
                params![
                    state,
                    account,
                    crate::model::page_size(limit),
                    stored_ms(offset)
                ],
                job_summary,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((jobs, total))
    }

    fn throughput(&self, since_ms: u64, bucket_ms: u64) -> Result<Vec<Throughput>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = bucket_ms.max(1);
        let mut stmt = conn.prepare_cached(sql::THROUGHPUT)?;
        let rows = stmt
            .query_map(params![stored_ms(bucket), stored_ms(since_ms)], |r| {
                Ok(Throughput {
                    start_ms: read_ms(r.get::<_, i64>(0)?).saturating_mul(bucket),
                    succeeded: read_ms(r.get::<_, i64>(1)?),
                    failed: read_ms(r.get::<_, i64>(2)?),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
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
            "SELECT id, run, pid, state, started_ms, ended_ms, stop_requested, config
             FROM processes WHERE run = ?1 ORDER BY id DESC LIMIT 10",
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
                    plugins: crate::PluginUse::from_config(
                        &r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                    ),
                    connection: None,
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

/// A row of `sql::JOB_SUMMARIES`' columns; a state this build does not know
/// reads as pending.
fn job_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobSummary> {
    let state: String = r.get(2)?;
    Ok(JobSummary {
        id: r.get(0)?,
        account: r.get(1)?,
        state: JobState::parse(&state).unwrap_or(JobState::Pending),
        category: r.get(3)?,
        attempts: r.get(4)?,
        remote_id: r.get(5)?,
    })
}
