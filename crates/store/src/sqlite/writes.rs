//! The run side of [`SqliteStore`]: the batch, passes, an operator's
//! cancel and retry, and the attempts' writes (queued with the
//! [`super::group`] writer, or written at once). Joining a run is in
//! [`super::runs`].

use orchestrator_retry::PassResult;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, accounts_clause, exec, job_from_row, now_ms, parse_state};
use crate::model::{read_ms, stored_ms};
use crate::sql::{self, JOB_COLUMNS};
use crate::write::{Reply, Write};
use crate::{
    AttemptId, AttemptOutcome, Durable, ImportSummary, JobChange, JobState, Joined, NewJob,
    NewProcess, PassMark, ProcessId, ProcessState, Result, RunPass, RunState, RunStore, StoreError,
    StoredJob, idempotency_key,
};

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
        self.join(process)
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

    fn sealed_tokens(&self, account: &str) -> Result<Option<Vec<u8>>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        Ok(conn
            .query_row(
                "SELECT sealed FROM tokens WHERE account = ?1",
                [account],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn seal_tokens(&self, account: &str, sealed: &[u8]) -> Result<()> {
        // Its own transaction, not the group writer's: the caller waits for
        // this commit (an fsync under `synchronous = FULL`).
        self.with_tx(|tx| {
            tx.execute(
                "INSERT INTO tokens (account, sealed, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account) DO UPDATE SET sealed = excluded.sealed,
                     updated_ms = excluded.updated_ms",
                params![account, sealed, now_ms() as i64],
            )?;
            Ok(())
        })
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
