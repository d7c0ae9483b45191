//! The run side of [`PostgresStore`]: the batch, passes, an operator's
//! cancel and retry, and the attempts' writes (queued with the
//! [`super::writer`]s). Joining a run and claiming jobs are in
//! [`super::runs`] and [`super::leases`].

use std::sync::Arc;
use std::time::Duration;

use orchestrator_retry::PassResult;

use super::outage::Failure;
use super::{Inner, NOW, PostgresStore, accounts_param, job_from_row};
use crate::model::{read_ms, stored_ms};
use crate::sql::{self, JOB_COLUMNS};
use crate::write::{Reply, Write};
use crate::{
    AttemptId, AttemptOutcome, ClaimLimit, Durable, ImportSummary, JobChange, JobState, Joined,
    NewJob, NewProcess, PassMark, ProcessId, ProcessState, Result, RunPass, RunState, RunStore,
    StoreError, StoredJob, idempotency_key,
};

/// Jobs to attempt in pass `$1`, of the accounts `$2` (all when `NULL`).
const ELIGIBLE: &str = "state IN ('pending', 'retry') AND last_pass < $1 AND ($2::text[] IS NULL OR account = ANY($2))";

impl RunStore for PostgresStore {
    fn import(&self, jobs: &[NewJob], source: &str) -> Result<ImportSummary> {
        let jobs = jobs.to_vec();
        let source = source.to_owned();
        self.call(move |inner: Arc<Inner>| {
            let (jobs, source) = (jobs.clone(), source.clone());
            async move {
                let mut client = inner.pool.get().await?;
                let tx = client.transaction().await?;
                let mut summary = ImportSummary::default();
                // In chunks of arrays: one round trip per thousand jobs.
                for chunk in jobs.chunks(1000) {
                    let ids: Vec<&str> = chunk.iter().map(|j| j.id.as_str()).collect();
                    let accounts: Vec<&str> = chunk.iter().map(|j| j.account.as_str()).collect();
                    let payloads: Vec<&str> = chunk.iter().map(|j| j.payload.as_str()).collect();
                    let keys: Vec<String> = chunk
                        .iter()
                        .map(|j| idempotency_key(&j.account, &j.id))
                        .collect();
                    let added = tx
                        .execute(
                            "INSERT INTO jobs (id, account, payload, idempotency_key)
                             SELECT id, account, payload, key
                         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                                 WITH ORDINALITY AS t(id, account, payload, key, n)
                                 ORDER BY n
                             ON CONFLICT (id) DO NOTHING",
                            &[&ids, &accounts, &payloads, &keys],
                        )
                        .await?;
                    summary.added += added;
                    summary.kept += chunk.len() as u64 - added;
                }
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('jobs_source', $1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&source],
                )
                .await?;
                tx.commit().await?;
                Ok(summary)
            }
        })
    }

    fn clear(&self) -> Result<()> {
        // Without RESTART IDENTITY, which needs the sequences' owner: a
        // worker role may re-seed, and ids go on as SQLite's do.
        self.call(|inner: Arc<Inner>| async move {
            let client = inner.pool.get().await?;
            client
                .batch_execute("TRUNCATE attempts, jobs, passes, runs, processes, meta")
                .await?;
            Ok(())
        })
    }

    fn join_run(&self, process: &NewProcess) -> Result<Joined> {
        self.join(process)
    }

    fn leave_run(&self, process: ProcessId, state: ProcessState) -> Result<()> {
        self.call(move |inner: Arc<Inner>| {
            async move {
                let mut client = inner.pool.get().await?;
                let tx = client.transaction().await?;
                tx.execute(
                    &format!("UPDATE processes SET state = $1, ended_ms = {NOW} WHERE id = $2"),
                    &[&state.as_str(), &process.0],
                )
                .await?;
                // What this process still holds goes back at once: jobs it
                // had not begun, and attempts a stop left in flight
                // (uncertain now).
                tx.execute(
                    "UPDATE jobs SET lease_until_ms = 0 WHERE lease_process = $1",
                    &[&process.0],
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }
        })
    }

    fn sealed_tokens(&self, account: &str) -> Result<Option<Vec<u8>>> {
        self.row(
            "SELECT sealed FROM tokens WHERE account = $1",
            vec![Box::new(account.to_owned())],
            |r| r.get(0),
        )
    }

    fn seal_tokens(&self, account: &str, sealed: &[u8]) -> Result<()> {
        self.execute(
            "INSERT INTO tokens (account, sealed, updated_ms) VALUES ($1, $2, $3)
             ON CONFLICT (account) DO UPDATE SET sealed = excluded.sealed,
                 updated_ms = excluded.updated_ms",
            vec![
                Box::new(account.to_owned()),
                Box::new(sealed.to_vec()),
                Box::new(orchestrator_contract::time::now_ms() as i64),
            ],
        )?;
        Ok(())
    }

    fn request_stop(&self) -> Result<u32> {
        let asked = self.execute(
            "UPDATE processes SET stop_requested = true WHERE state IN ('running', 'lost')",
            vec![],
        )?;
        Ok(asked as u32)
    }

    fn release_held(&self) -> Result<u64> {
        self.execute(sql::RELEASE_HELD, vec![])
    }

    fn stop_requested(&self, process: ProcessId) -> Result<bool> {
        let asked = self.row(
            "SELECT stop_requested FROM processes WHERE id = $1",
            vec![Box::new(process.0)],
            |r| r.get(0),
        )?;
        Ok(asked.unwrap_or(false))
    }

    fn cancel(&self, jobs: &[String]) -> Result<Vec<(String, JobChange)>> {
        self.control(
            jobs,
            JobChange::cancel,
            format!(
                "UPDATE jobs SET {}, lease_process = NULL, lease_until_ms = NULL WHERE id = $1",
                sql::CANCELLED
            ),
            Some(sql::CANCEL_AFTER_ATTEMPT),
        )
    }

    fn retry(&self, jobs: &[String]) -> Result<Vec<(String, JobChange)>> {
        self.control(
            jobs,
            |state, _| JobChange::retry(state),
            format!(
                "UPDATE jobs SET {}, lease_process = NULL, lease_until_ms = NULL WHERE id = $1",
                sql::RETRIED
            ),
            None,
        )
    }

    fn run_state(&self, run: u32) -> Result<RunState> {
        let state: Option<String> =
            self.row(sql::RUN_STATE, vec![Box::new(run as i32)], |r| r.get(0))?;
        let state = state.ok_or_else(|| StoreError::Corrupt(format!("run {run} is missing")))?;
        RunState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("the state of run {run}: {state:?}")))
    }

    fn latest_pass(&self, run: u32) -> Result<Option<PassMark>> {
        self.row(sql::LATEST_PASS, vec![Box::new(run as i32)], |r| PassMark {
            pass: r.get::<_, i32>(0) as u32,
            opens_ms: read_ms(r.get::<_, i64>(1)),
            ended: r.get(2),
        })
    }

    fn begin_pass(&self, at: RunPass, opens_ms: u64) -> Result<()> {
        self.execute(
            "INSERT INTO passes (run, pass, started_ms) VALUES ($1, $2, $3)
             ON CONFLICT (run, pass) DO NOTHING",
            vec![
                Box::new(at.run as i32),
                Box::new(at.pass as i32),
                Box::new(stored_ms(opens_ms)),
            ],
        )
        .map(drop)
    }

    fn end_pass(&self, at: RunPass, result: &PassResult, next: Option<(u32, u64)>) -> Result<bool> {
        let result = result.to_string();
        let (run, pass) = (at.run as i32, at.pass as i32);
        self.call(move |inner: Arc<Inner>| {
            let result = result.clone();
            async move {
                let mut client = inner.pool.get().await?;
                let tx = client.transaction().await?;
                let ended = tx
                    .execute(
                        &format!(
                            "UPDATE passes SET ended_ms = {NOW}, result = $1
                             WHERE run = $2 AND pass = $3 AND ended_ms IS NULL"
                        ),
                        &[&result, &run, &pass],
                    )
                    .await?
                    == 1;
                match (ended, next) {
                    (false, _) => {}
                    (true, Some((next, opens_ms))) => {
                        tx.execute(
                            "INSERT INTO passes (run, pass, started_ms) VALUES ($1, $2, $3)
                             ON CONFLICT (run, pass) DO NOTHING",
                            &[&run, &(next as i32), &(stored_ms(opens_ms))],
                        )
                        .await?;
                    }
                    (true, None) => {
                        tx.execute(&finish_run(), &[&run]).await?;
                    }
                }
                tx.commit().await?;
                Ok(ended)
            }
        })
    }

    fn end_run(&self, run: u32) -> Result<()> {
        self.execute(&finish_run(), vec![Box::new(run as i32)])
            .map(drop)
    }

    fn eligible_jobs(&self, pass: u32, accounts: Option<&[String]>) -> Result<Vec<StoredJob>> {
        self.rows(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {ELIGIBLE} ORDER BY seq"),
            vec![Box::new(pass as i32), Box::new(accounts_param(accounts))],
            job_from_row,
        )
    }

    fn eligible_count(&self, pass: u32, accounts: Option<&[String]>) -> Result<u64> {
        self.count(
            &format!("SELECT COUNT(*) FROM jobs WHERE {ELIGIBLE}"),
            vec![Box::new(pass as i32), Box::new(accounts_param(accounts))],
        )
    }

    fn claim(
        &self,
        process: ProcessId,
        pass: u32,
        accounts: Option<&[String]>,
        limit: ClaimLimit,
    ) -> Result<Vec<StoredJob>> {
        self.claim_leased(process, pass, accounts, limit)
    }

    fn unfinished_in_pass(&self, pass: u32, accounts: Option<&[String]>) -> Result<u64> {
        self.count(
            "SELECT COUNT(*) FROM jobs
             WHERE ((state IN ('pending', 'retry') AND last_pass < $1) OR state = 'running')
               AND ($2::text[] IS NULL OR account = ANY($2))",
            vec![Box::new(pass as i32), Box::new(accounts_param(accounts))],
        )
    }

    fn renew(&self, process: ProcessId) -> Result<()> {
        self.renew_leases(process)
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.inner.lease)
    }

    fn accounts_with_work(&self) -> Result<Vec<String>> {
        self.rows(sql::ACCOUNTS_WITH_WORK, vec![], |r| r.get(0))
    }

    fn begin_attempt(&self, job: &StoredJob, at: RunPass) -> Result<AttemptId> {
        self.queue_begin_attempt(job, at).wait()
    }

    fn finish_attempt(&self, attempt: AttemptId, outcome: &AttemptOutcome) -> Result<()> {
        self.queue_finish_attempt(attempt, outcome).wait()
    }

    fn queue_begin_attempt(&self, job: &StoredJob, at: RunPass) -> Durable<AttemptId> {
        let write = Write::Begin {
            job: job.clone(),
            at,
        };
        self.submit(write, Reply::begun())
    }

    fn queue_finish_attempt(&self, attempt: AttemptId, outcome: &AttemptOutcome) -> Durable<()> {
        let write = Write::Finish {
            attempt,
            outcome: outcome.clone(),
        };
        self.submit(write, Reply::finished())
    }
}

/// Finishes the open run `$1`.
fn finish_run() -> String {
    format!(
        "UPDATE runs SET state = 'finished', ended_ms = {NOW} WHERE run = $1 AND state = 'open'"
    )
}

impl PostgresStore {
    /// Changes the jobs `ids` as `change` decides from each one's state (and
    /// whether its cancellation waits for its attempt): runs `changed` (SQL
    /// with the id as `$1`) where it says so, `after` where the job's
    /// attempt must end first. An unknown id changes nothing.
    fn control(
        &self,
        ids: &[String],
        change: fn(JobState, bool) -> JobChange,
        changed: String,
        after: Option<&'static str>,
    ) -> Result<Vec<(String, JobChange)>> {
        let ids = ids.to_vec();
        self.call(move |inner: Arc<Inner>| {
            let (ids, changed) = (ids.clone(), changed.clone());
            async move {
                let mut client = inner.pool.get().await?;
                let tx = client.transaction().await?;
                // Locked, so a claim or an attempt's outcome waits for us.
                let rows = tx
                    .query(
                        "SELECT id, state, cancel_requested FROM jobs WHERE id = ANY($1) FOR UPDATE",
                        &[&ids],
                    )
                    .await?;
                let found: std::collections::HashMap<String, (String, i32)> = rows
                    .iter()
                    .map(|r| (r.get(0), (r.get(1), r.get(2))))
                    .collect();
                let unknown: Vec<String> = ids
                    .iter()
                    .filter(|id| !found.contains_key(*id))
                    .cloned()
                    .collect();
                if !unknown.is_empty() {
                    return Err(Failure::Store(StoreError::UnknownJobs(unknown)));
                }
                let mut changes = Vec::with_capacity(ids.len());
                for id in &ids {
                    let (state, requested) = &found[id];
                    let state = JobState::parse(state).ok_or_else(|| {
                        Failure::Store(StoreError::Corrupt(format!("job state {state:?}")))
                    })?;
                    let what = change(state, *requested != 0);
                    let statement = match what {
                        JobChange::Changed { .. } => Some(changed.as_str()),
                        JobChange::CancelledAfterAttempt => after,
                        JobChange::Already { .. } | JobChange::Refused { .. } => None,
                    };
                    if let Some(statement) = statement {
                        tx.execute(statement, &[id]).await?;
                    }
                    changes.push((id.clone(), what));
                }
                tx.commit().await?;
                Ok(changes)
            }
        })
    }
}
