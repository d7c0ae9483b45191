//! [`PostgresStore`]: one PostgreSQL database that many orchestrator
//! processes, on many machines, share.
//!
//! Processes agree on the run they work on (see [`crate::join`]), claim jobs
//! in batches (`FOR UPDATE SKIP LOCKED`, one claim at a time so an account is
//! never split between two processes) and hold them under a lease they
//! renew. A job's lease ends with its attempt's outcome.
//! A process that dies stops renewing; once its leases expire, the next
//! claim anywhere takes its jobs back, and its attempts in flight become
//! `uncertain`, exactly as after a local crash: retried with the same
//! idempotency key, or held for review past the platform's key window.
//!
//! Every call runs on the store's own small runtime, so the caller may be
//! synchronous or async. A call that loses its connection (the server
//! restarted, the network dropped) is retried until the database answers
//! again or [`OUTAGE_LIMIT`] passes; each write is idempotent, so a retry of
//! a transaction whose commit was not acknowledged does no harm.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use orchestrator_retry::{PassResult, PassTally};

use crate::model::{AttemptRow, FailureColumns, RunRow, read_ms, stored_ms};
use crate::sql::{self, JOB_COLUMNS};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Transaction};

use crate::join::{self, OpenRun, Plan};
use crate::status::StatusQueries;
use crate::write::{Reply, Write};
use crate::{
    AttemptId, AttemptOutcome, AttemptRecord, ClaimLimit, Durable, ImportSummary, JobChange,
    JobState, JobSummary, Joined, JoinedHow, NewJob, NewProcess, PassMark, Pause, ProcessId,
    ProcessState, ProcessStatus, RUNS_SHOWN, ReadStore, ReasonCount, ReportRow, Result, RetryEntry,
    RunPass, RunState, RunStore, Skipped, StatusReport, StoreError, StoredJob, idempotency_key,
};

/// What turns schema version `n` into `n + 1`, at index `n`; the database's
/// version is the number of steps applied. Each step is frozen once
/// released: a change is a new step.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/1-batch.sql"),
    include_str!("../migrations/postgres/2-runs.sql"),
    include_str!("../migrations/postgres/3-consulted.sql"),
];

/// The schema version this build writes.
pub const POSTGRES_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The database's clock, in ms since the epoch: leases are compared on one
/// clock, whichever machines the processes run on.
const NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Writers committing the attempts' writes side by side: while one waits
/// for its WAL flush, the others fill the next groups.
const WRITERS: usize = 4;

/// The most writes one transaction commits.
const GROUP_MAX: usize = 256;

/// How long a lease lasts unless `--lease` says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How long a call keeps retrying while the database cannot be reached.
const OUTAGE_LIMIT: Duration = Duration::from_secs(120);

/// Claims take this transaction-scoped advisory lock, one at a time: a claim
/// then sees every account another claim just took.
const CLAIM_LOCK: i64 = 0x6f72_6368_636c_6169; // "orchclai"

/// Migrations take this one, so processes starting together migrate once.
const MIGRATE_LOCK: i64 = 0x6f72_6368_6d69_6772; // "orchmigr"

/// Joining a run takes this one, so processes starting together agree on
/// one run.
const RUN_LOCK: i64 = 0x6f72_6368_7275_6e73; // "orchruns"

/// Many processes' store: see the module documentation.
pub struct PostgresStore {
    inner: Arc<Inner>,
    /// The attempts' writes go to these, in turn.
    writers: Vec<mpsc::UnboundedSender<(Write, Reply)>>,
    next_writer: AtomicUsize,
    /// Taken on drop, to shut down without blocking an async caller.
    runtime: Option<tokio::runtime::Runtime>,
}

struct Inner {
    pool: Pool,
    /// The URL without its password, for messages.
    shown: String,
    lease: Duration,
    /// The key window of this process (set as it joins its run), which its
    /// claims honour when they take back a dead process's attempts.
    key_window_ms: AtomicI64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.inner.shown)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Whether `url` names a PostgreSQL store rather than a state file.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A call's failure: the connection (retried) or anything else (not).
enum Failure {
    Connection(String),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        // Class 08 is a connection exception; 57P01-57P03 are the server
        // shutting down, crashing, or not accepting connections yet; a
        // deadlock or serialization failure (40P01, 40001) is worth another
        // try too.
        let lost = e.is_closed()
            || e.code().is_some_and(|c| {
                let c = c.code();
                c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "40P01" | "40001")
            })
            || std::error::Error::source(&e)
                .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
        let text = match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        };
        if lost {
            Failure::Connection(text)
        } else {
            Failure::Store(StoreError::Postgres(text))
        }
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Failure::Connection(other.to_string()),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

type Step<T> = std::result::Result<T, Failure>;

/// A statement's parameters, owned, so a retried call can bind them again.
type Params = Vec<Box<dyn ToSql + Send + Sync>>;

fn borrowed(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// Jobs to attempt in pass `$1`, of the accounts `$2` (all when `NULL`).
const ELIGIBLE: &str = "state IN ('pending', 'retry') AND last_pass < $1 AND ($2::text[] IS NULL OR account = ANY($2))";

impl Failure {
    fn into_store_error(self) -> StoreError {
        match self {
            Failure::Store(e) => e,
            Failure::Connection(reason) => StoreError::Postgres(reason),
        }
    }
}

impl PostgresStore {
    /// Connects to the database at `url`, applying the schema's migrations
    /// if it is new or older. Leases last `lease`.
    pub fn open(url: &str, lease: Duration) -> Result<Self> {
        let shown = without_password(url);
        let open_err = |reason: String| StoreError::Open {
            path: shown.clone(),
            reason,
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| open_err(e.to_string()))?;
        // A host that never answers is an error in seconds, not minutes.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("orchestrator-postgres")
            .enable_all()
            .build()
            .map_err(|e| open_err(format!("cannot start its runtime: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| open_err(e.to_string()))?;
        let inner = Arc::new(Inner {
            pool,
            shown: shown.clone(),
            lease,
            // Mastodon keeps idempotency keys for an hour; join_run sets it.
            key_window_ms: AtomicI64::new(3_600_000),
        });
        let writers = (0..WRITERS)
            .map(|_| {
                let (sender, queue) = mpsc::unbounded_channel();
                runtime.spawn(writer(inner.clone(), queue));
                sender
            })
            .collect();
        let store = PostgresStore {
            inner,
            writers,
            next_writer: AtomicUsize::new(0),
            runtime: Some(runtime),
        };
        // A first connection that fails is a wrong URL or a server that is
        // not there: say so at once rather than retrying for minutes.
        let inner = store.inner.clone();
        store
            .block(async move { migrate(&inner).await })
            .map_err(|e| match e {
                Failure::Connection(reason) | Failure::Store(StoreError::Postgres(reason)) => {
                    open_err(reason)
                }
                Failure::Store(e) => e,
            })?;
        Ok(store)
    }

    /// Runs `fut` on the store's runtime and waits for it.
    fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Step<T>> + Send + 'static,
    ) -> Step<T> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the store")
            .spawn(async move {
                let _ = sender.send(fut.await);
            });
        receiver
            .recv()
            .unwrap_or_else(|_| Err(Failure::Connection("the store's runtime stopped".into())))
    }

    /// One call, retried while the database cannot be reached.
    fn call<T, F, Fut>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(Arc<Inner>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Step<T>> + Send,
    {
        let inner = self.inner.clone();
        self.block(async move { retrying(&inner, &op).await })
            .map_err(Failure::into_store_error)
    }

    /// One statement on its own (retried like every call), each row turned
    /// into a `T` by `map`.
    fn rows<T: Send + 'static>(
        &self,
        statement: &str,
        params: Params,
        map: fn(&Row) -> T,
    ) -> Result<Vec<T>> {
        let (statement, params) = (Arc::<str>::from(statement), Arc::new(params));
        self.call(move |inner: Arc<Inner>| {
            let (statement, params) = (statement.clone(), params.clone());
            async move {
                let client = inner.pool.get().await?;
                let rows = client.query(&*statement, &borrowed(&params)).await?;
                Ok(rows.iter().map(map).collect())
            }
        })
    }

    /// [`PostgresStore::rows`] for a statement with at most one row.
    fn row<T: Send + 'static>(
        &self,
        statement: &str,
        params: Params,
        map: fn(&Row) -> T,
    ) -> Result<Option<T>> {
        Ok(self.rows(statement, params, map)?.into_iter().next())
    }

    /// [`PostgresStore::rows`] for a `SELECT COUNT(*)`.
    fn count(&self, statement: &str, params: Params) -> Result<u64> {
        let count = self.row(statement, params, |r| r.get::<_, i64>(0))?;
        Ok(count.unwrap_or(0) as u64)
    }

    /// One statement on its own that changes rows; returns how many.
    fn execute(&self, statement: &str, params: Params) -> Result<u64> {
        let (statement, params) = (Arc::<str>::from(statement), Arc::new(params));
        self.call(move |inner: Arc<Inner>| {
            let (statement, params) = (statement.clone(), params.clone());
            async move {
                let client = inner.pool.get().await?;
                Ok(client.execute(&*statement, &borrowed(&params)).await?)
            }
        })
    }

    /// Queues `write` with one of the writers, answered through `reply`
    /// once its group is committed; returns the answer to wait for.
    fn submit<T>(&self, write: Write, (reply, answer): (Reply, Durable<T>)) -> Durable<T> {
        let writer = self.next_writer.fetch_add(1, Ordering::Relaxed) % self.writers.len();
        if self.writers[writer].send((write, reply)).is_err() {
            return Durable::ready(Err(StoreError::Commit("the store's writer stopped".into())));
        }
        answer
    }
}

/// Runs `op` until it succeeds, fails for a reason other than the
/// connection, or the database has been unreachable for [`OUTAGE_LIMIT`].
async fn retrying<T, F, Fut>(inner: &Arc<Inner>, op: &F) -> Step<T>
where
    F: Fn(Arc<Inner>) -> Fut,
    Fut: Future<Output = Step<T>>,
{
    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match op(inner.clone()).await {
            Err(Failure::Connection(reason)) if started.elapsed() < OUTAGE_LIMIT => {
                if !warned {
                    tracing::warn!(
                        "cannot reach the PostgreSQL store {} ({reason}); pausing until it answers",
                        inner.shown
                    );
                    warned = true;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(Failure::Connection(reason)) => {
                return Err(Failure::Connection(format!(
                    "{reason} (unreachable for {} s)",
                    OUTAGE_LIMIT.as_secs()
                )));
            }
            other => {
                if warned && other.is_ok() {
                    tracing::warn!("the PostgreSQL store {} answers again", inner.shown);
                }
                return other;
            }
        }
    }
}

/// Brings the schema up to date, once however many processes start at once.
async fn migrate(inner: &Inner) -> Step<()> {
    let mut client = inner.pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS orchestrator_schema (version BIGINT NOT NULL)")
        .await?;
    let found: i64 = match tx
        .query_opt("SELECT version FROM orchestrator_schema", &[])
        .await?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO orchestrator_schema (version) VALUES (0)", &[])
                .await?;
            0
        }
    };
    if found > POSTGRES_SCHEMA_VERSION {
        return Err(Failure::Store(StoreError::NewerSchema {
            path: inner.shown.clone(),
            found,
            known: POSTGRES_SCHEMA_VERSION,
        }));
    }
    for step in &MIGRATIONS[found as usize..] {
        tx.batch_execute(step).await?;
    }
    tx.execute(
        "UPDATE orchestrator_schema SET version = $1",
        &[&POSTGRES_SCHEMA_VERSION],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// `url` without its password (in the user part or a `password=`
/// parameter), for messages and `--status`.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (address, query) = match rest.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (rest, None),
    };
    // The user part ends at the last `@` before the path.
    let authority_end = address.find('/').unwrap_or(address.len());
    let (authority, path) = address.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or("");
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let mut shown = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.to_ascii_lowercase().starts_with("password="))
            .collect();
        if !kept.is_empty() {
            shown.push('?');
            shown.push_str(&kept.join("&"));
        }
    }
    shown
}

fn job_from_row(row: &Row) -> StoredJob {
    let state: String = row.get(4);
    StoredJob {
        id: row.get(0),
        account: row.get(1),
        payload: row.get(2),
        idempotency_key: row.get(3),
        state: JobState::parse(&state).unwrap_or(JobState::Pending),
        attempts: row.get::<_, i32>(5) as u32,
        passes_attempted: row.get::<_, i32>(6) as u32,
        infrastructure_failures: row.get::<_, i32>(7) as u32,
        not_before_ms: row.get::<_, Option<i64>>(8).map(read_ms),
        claimed_by: None,
    }
}

/// The accounts filter as a parameter: `NULL` for every account.
fn accounts_param(accounts: Option<&[String]>) -> Option<Vec<String>> {
    accounts.map(<[String]>::to_vec)
}

/// Which jobs in flight nobody holds any more.
#[derive(Debug, Clone, Copy)]
enum Unheld {
    /// Their lease expired: their process died or lost touch.
    Expired,
    /// No process working now holds them: once nobody works on the open
    /// run, a new run takes back everything still in flight at once.
    ByLiveProcesses,
}

impl Unheld {
    fn condition(self) -> String {
        match self {
            Unheld::Expired => format!("COALESCE(lease_until_ms, 0) < {NOW}"),
            Unheld::ByLiveProcesses => "lease_process IS NULL
                OR lease_process NOT IN (SELECT id FROM processes WHERE state = 'running')"
                .into(),
        }
    }
}

/// Takes back the jobs in flight that nobody holds (`unheld`): their
/// attempts become uncertain, and the jobs eligible again
/// in the pass they were in (or held for review, past the platform's key
/// window; or cancelled, when an operator asked for it meanwhile).
async fn recover(tx: &Transaction<'_>, key_window_ms: i64, unheld: Unheld) -> Step<u64> {
    let unheld = unheld.condition();
    Ok(tx
        .execute(
            &format!(
                "WITH lost AS (
                    SELECT id FROM jobs
                    WHERE state = 'running' AND ({unheld})
                    FOR UPDATE SKIP LOCKED
                 ), fixed AS (
                    UPDATE jobs SET
                        state = CASE
                            WHEN cancel_requested = 1 THEN 'cancelled'
                            WHEN (SELECT MIN(started_ms) FROM attempts a
                                  WHERE a.job_id = jobs.id AND a.outcome = 'in-flight') < {NOW} - $1
                                THEN 'needs-review'
                            WHEN attempts > 0 THEN 'retry'
                            ELSE 'pending' END,
                        reason = CASE
                            WHEN cancel_requested = 1 THEN reason
                            WHEN (SELECT MIN(started_ms) FROM attempts a
                                  WHERE a.job_id = jobs.id AND a.outcome = 'in-flight') < {NOW} - $1
                                THEN 'an attempt was in flight when a run died, longer ago than the platform remembers idempotency keys; check whether it was posted, then --run --release-held'
                            ELSE reason END,
                        last_pass = last_pass - 1, passes_attempted = passes_attempted - 1,
                        lease_process = NULL, lease_until_ms = NULL
                    FROM lost WHERE jobs.id = lost.id
                    RETURNING jobs.id
                 )
                 UPDATE attempts SET outcome = 'uncertain', ended_ms = {NOW}
                 WHERE outcome = 'in-flight' AND job_id IN (SELECT id FROM fixed)"
            ),
            &[&key_window_ms],
        )
        .await?)
}

/// Records an attempt as in flight, in `tx`: one statement, prepared once
/// per connection.
async fn begin_attempt_in(
    tx: &deadpool_postgres::Transaction<'_>,
    lease: Duration,
    job: &StoredJob,
    at: RunPass,
) -> Step<AttemptId> {
    let (run, pass) = (at.run as i32, at.pass as i32);
    let number = job.attempts as i32 + 1;
    // Only the process that holds the job may begin it: one whose lease
    // expired and was taken over may not, whatever it still believes. The
    // lease starts again with the attempt.
    let claimed_by = job.claimed_by.map(|process| process.0);
    let lease = lease.as_millis() as i64;
    let begin = tx
        .prepare_cached(&format!(
            "WITH begun AS (
                UPDATE jobs SET state = 'running', attempts = attempts + 1,
                       passes_attempted = passes_attempted + 1, last_pass = $1,
                       lease_until_ms = {NOW} + $5
                WHERE id = $2 AND state IN ('pending', 'retry') AND last_pass < $1
                  AND attempts = $3 AND ($4::bigint IS NULL OR lease_process = $4)
                RETURNING id, lease_process, idempotency_key, attempts)
             INSERT INTO attempts (job_id, run, process_id, pass, number, idempotency_key, started_ms)
             SELECT id, $6, lease_process, $1, attempts, idempotency_key, {NOW} FROM begun
             RETURNING id"
        ))
        .await?;
    let begun = tx
        .query_opt(
            &begin,
            &[&pass, &job.id, &(number - 1), &claimed_by, &lease, &run],
        )
        .await?;
    if let Some(row) = begun {
        return Ok(AttemptId(row.get(0)));
    }
    // This transaction may have committed before its answer was lost: then
    // the attempt is there, made by this process, and is the answer.
    // (Another process's attempt of the job never is.)
    let existing = tx
        .query_opt(
            "SELECT id FROM attempts WHERE job_id = $1 AND run = $2 AND pass = $3 AND number = $4
               AND outcome = 'in-flight' AND ($5::bigint IS NULL OR process_id = $5)",
            &[&job.id, &run, &pass, &number, &claimed_by],
        )
        .await?;
    if let Some(row) = existing {
        return Ok(AttemptId(row.get(0)));
    }
    // An operator cancelled it since it was claimed; or another process
    // took it over.
    let state: Option<String> = tx
        .query_opt("SELECT state FROM jobs WHERE id = $1", &[&job.id])
        .await?
        .map(|row| row.get(0));
    match state {
        Some(state) if state == JobState::Cancelled.as_str() => {
            Err(Failure::Store(StoreError::NotEligible {
                job: job.id.clone(),
                state,
            }))
        }
        _ => Err(Failure::Store(StoreError::LeaseLost(job.id.clone()))),
    }
}

/// Records an attempt's outcome and its job's new state, in `tx`: one
/// statement. An attempt already finished (a retried commit) or taken over
/// after its run lost the lease changes nothing.
async fn finish_attempt_in(
    tx: &deadpool_postgres::Transaction<'_>,
    attempt: AttemptId,
    outcome: &AttemptOutcome,
) -> Step<()> {
    match outcome {
        AttemptOutcome::Succeeded(receipt) => {
            let finish = tx
                .prepare_cached(&format!(
                    "WITH finished AS (
                        UPDATE attempts SET outcome = 'succeeded', ended_ms = {NOW},
                               remote_id = $1, url = $2
                        WHERE id = $3 AND outcome = 'in-flight' RETURNING job_id)
                     UPDATE jobs SET state = 'succeeded', remote_id = $1, url = $2,
                            not_before_ms = NULL, category = NULL, reason = NULL,
                            decided_by = NULL, gave_up = NULL, cancel_requested = 0,
                            lease_process = NULL, lease_until_ms = NULL
                     FROM finished WHERE jobs.id = finished.job_id"
                ))
                .await?;
            tx.execute(&finish, &[&receipt.remote_id, &receipt.url, &attempt.0])
                .await?;
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
            let finish = tx
                .prepare_cached(&format!(
                    "WITH finished AS (
                        UPDATE attempts SET outcome = 'failed', ended_ms = {NOW}, failure = $1,
                               fault = $2, category = $3, reason = $4, decided_by = $5,
                               retry_after_ms = $6, decision = $7, retry_scope = $8,
                               consulted = $15
                        WHERE id = $9 AND outcome = 'in-flight' RETURNING job_id)
                     UPDATE jobs SET
                            state = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE $10 END,
                            gave_up = $11, category = $3,
                            reason = CASE WHEN cancel_requested = 1 THEN $14 ELSE $4 END,
                            decided_by = $5, not_before_ms = $12,
                            infra_failures = infra_failures + $13,
                            passes_attempted = passes_attempted - $16,
                            last_pass = last_pass - $16,
                            lease_process = NULL, lease_until_ms = NULL
                     FROM finished WHERE jobs.id = finished.job_id"
                ))
                .await?;
            tx.execute(
                &finish,
                &[
                    &columns.failure,
                    &columns.fault,
                    &classification.category.as_str(),
                    &classification.reason,
                    &classification.decided_by,
                    &columns.retry_after_ms,
                    &columns.decision,
                    &columns.retry_scope,
                    &attempt.0,
                    &columns.state,
                    &columns.gave_up,
                    &not_before_ms.map(stored_ms),
                    &columns.infra,
                    &sql::CANCELLED_REASON,
                    &columns.consulted,
                    &columns.uncounted,
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// Commits `writes` in one transaction: one WAL flush for many attempts.
/// Each write is answered with the attempt it wrote; one that finds its job
/// taken over or cancelled answers so without failing the others.
async fn commit_writes(inner: Arc<Inner>, writes: Arc<Vec<Write>>) -> Step<Vec<Result<AttemptId>>> {
    let mut client = inner.pool.get().await?;
    let tx = client.transaction().await?;
    let mut results = Vec::with_capacity(writes.len());
    for write in writes.iter() {
        let written = match write {
            Write::Begin { job, at } => begin_attempt_in(&tx, inner.lease, job, *at).await,
            Write::Finish { attempt, outcome } => finish_attempt_in(&tx, *attempt, outcome)
                .await
                .map(|()| *attempt),
        };
        match written {
            Ok(written) => results.push(Ok(written)),
            Err(Failure::Store(
                skipped @ (StoreError::LeaseLost(_) | StoreError::NotEligible { .. }),
            )) => results.push(Err(skipped)),
            Err(e) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// A writer: commits what is queued in groups, and answers each write once
/// its group is durable. While one group commits, the next gathers.
async fn writer(inner: Arc<Inner>, mut queue: mpsc::UnboundedReceiver<(Write, Reply)>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (writes, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let writes = Arc::new(writes);
        let results = match retrying(&inner, &|inner| commit_writes(inner, writes.clone())).await {
            Ok(results) => results,
            // One write is bad: commit each alone, so only it fails.
            Err(Failure::Store(_)) if writes.len() > 1 => {
                let mut results = Vec::with_capacity(writes.len());
                for write in writes.iter() {
                    let one = Arc::new(vec![write.clone()]);
                    results.push(
                        match retrying(&inner, &|inner| commit_writes(inner, one.clone())).await {
                            Ok(mut written) => written.pop().expect("one result per write"),
                            Err(e) => Err(e.into_store_error()),
                        },
                    );
                }
                results
            }
            Err(e) => {
                let e = e.into_store_error().to_string();
                writes
                    .iter()
                    .map(|_| Err(StoreError::Postgres(e.clone())))
                    .collect()
            }
        };
        for (reply, result) in replies.into_iter().zip(results) {
            reply.send(result);
        }
    }
}

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
        self.call(|inner: Arc<Inner>| async move {
            let client = inner.pool.get().await?;
            client
                .batch_execute(
                    "TRUNCATE attempts, jobs, passes, runs, processes, meta RESTART IDENTITY",
                )
                .await?;
            Ok(())
        })
    }

    fn join_run(&self, process: &NewProcess) -> Result<Joined> {
        let process_config = serde_json::to_string(&serde_json::json!({
            "retry": process.config,
            "workers": process.workers,
            "accounts": process.accounts,
            "key_window_ms": process.key_window_ms,
            // Whether it is lost is judged by its own lease, whoever asks.
            "lease_ms": self.inner.lease.as_millis() as u64,
        }))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let config = join::config_text(&process.config)?;
        let pid = process.pid as i32;
        let host = hostname();
        self.inner
            .key_window_ms
            .store(process.key_window_ms as i64, Ordering::Relaxed);
        let process = process.clone();
        self.call(move |inner: Arc<Inner>| {
            let (process_config, config, host, process) = (
                process_config.clone(),
                config.clone(),
                host.clone(),
                process.clone(),
            );
            async move {
                let mut client = inner.pool.get().await?;
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&RUN_LOCK])
                    .await?;
                let lease = inner.lease.as_millis() as i64;
                // Processes that stopped renewing are lost (until they renew
                // again); the others go on.
                tx.execute(
                    &format!(
                        "UPDATE processes SET state = 'lost'
                         WHERE state = 'running' AND NOT ({})",
                        renewed_within_its_lease("$1")
                    ),
                    &[&lease],
                )
                .await?;
                let accounts = join::normalized(process.accounts.as_deref());
                let (run, how) = match join::plan(open_run(&tx).await?, &process)? {
                    Plan::Join { run, others } => (run, JoinedHow::Joined { others }),
                    Plan::Resume { run } => {
                        // The same budgets; the delays are this process's.
                        tx.execute(
                            "UPDATE runs SET config = $1 WHERE run = $2",
                            &[&config, &(run as i32)],
                        )
                        .await?;
                        (run, JoinedHow::Resumed)
                    }
                    Plan::Begin { closing } => {
                        if let Some(closed) = &closing {
                            tx.execute(
                                &format!(
                                    "UPDATE runs SET state = 'closed', ended_ms = {NOW} WHERE run = $1"
                                ),
                                &[&(closed.run as i32)],
                            )
                            .await?;
                        }
                        // Nobody works on the batch now: what is still in
                        // flight is uncertain, and counts in no budget.
                        let window = process.key_window_ms as i64;
                        recover(&tx, window, Unheld::ByLiveProcesses).await?;
                        let run: i32 = tx
                            .query_one("SELECT COALESCE(MAX(run), 0) + 1 FROM runs", &[])
                            .await?
                            .get(0);
                        tx.execute(
                            &format!(
                                "INSERT INTO runs (run, started_ms, state, config, accounts)
                                 VALUES ($1, {NOW}, 'open', $2, $3)"
                            ),
                            &[&run, &config, &join::accounts_text(accounts.as_deref())],
                        )
                        .await?;
                        let (reopened, skipped) =
                            fresh_budgets(&tx, &process.config, accounts.as_deref()).await?;
                        (
                            run as u32,
                            JoinedHow::Began {
                                reopened,
                                skipped,
                                closed: closing,
                            },
                        )
                    }
                };
                let id: i64 = tx
                    .query_one(
                        &format!(
                            "INSERT INTO processes (run, pid, host, started_ms, heartbeat_ms, state, config)
                             VALUES ($1, $2, $3, {NOW}, {NOW}, 'running', $4) RETURNING id"
                        ),
                        &[&(run as i32), &pid, &host, &process_config],
                    )
                    .await?
                    .get(0);
                tx.commit().await?;
                Ok(Joined {
                    process: ProcessId(id),
                    run,
                    accounts,
                    how,
                })
            }
        })
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
        let accounts = accounts_param(accounts);
        // Spread over the accounts: a jobs file grouped by account must not
        // give one claim to a single account, whose jobs run one by one.
        let per_account = (limit.jobs / limit.accounts.max(1)).max(1) as i64;
        let (limit, max_accounts) = (limit.jobs as i64, limit.accounts as i64);
        self.call(move |inner: Arc<Inner>| {
            let accounts = accounts.clone();
            async move {
                let mut client = inner.pool.get().await?;
                let tx = client.transaction().await?;
                // A process that lost touch for longer than its lease may
                // find its run closed and a new one begun: its work goes on
                // there, not here. (Asked before the claims' lock, which
                // every process waits for in turn.)
                let closed: Option<i32> = tx
                    .query_opt(
                        "SELECT r.run FROM processes p JOIN runs r ON r.run = p.run
                         WHERE p.id = $1 AND r.state = 'closed'",
                        &[&process.0],
                    )
                    .await?
                    .map(|row| row.get(0));
                if let Some(run) = closed {
                    return Err(Failure::Store(StoreError::RunClosed(run as u32)));
                }
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])
                    .await?;
                let window = inner.key_window_ms.load(Ordering::Relaxed);
                recover(&tx, window, Unheld::Expired).await?;
                let lease = inner.lease.as_millis() as i64;
                // The first `$6` accounts (in import order) that no other
                // live process holds, then up to `$5` of their jobs, `$7` at
                // most of each. A job this process already holds but has not
                // begun (a claim whose answer was lost) is handed out again.
                let rows = tx
                    .query(
                        &format!(
                            "WITH eligible AS (
                                SELECT seq, account,
                                       row_number() OVER (PARTITION BY account ORDER BY seq) AS nth
                                FROM jobs j
                                WHERE j.state IN ('pending', 'retry') AND j.last_pass < $3
                                  AND ($4::text[] IS NULL OR j.account = ANY($4))
                                  AND (COALESCE(j.lease_until_ms, 0) < {NOW} OR j.lease_process = $1)
                                  AND NOT EXISTS (
                                      SELECT 1 FROM jobs o
                                      WHERE o.account = j.account AND o.lease_process <> $1
                                        AND o.lease_until_ms >= {NOW})
                             ), chosen AS (
                                SELECT account FROM eligible
                                GROUP BY account ORDER BY MIN(seq) LIMIT $6
                             )
                             UPDATE jobs SET lease_process = $1, lease_until_ms = {NOW} + $2
                             WHERE seq IN (
                                SELECT j.seq FROM jobs j
                                WHERE j.seq IN (SELECT seq FROM eligible WHERE nth <= $7)
                                  AND j.account IN (SELECT account FROM chosen)
                                  -- Checked again on the row as locked: it may
                                  -- have changed since the statement began.
                                  AND j.state IN ('pending', 'retry') AND j.last_pass < $3
                                  AND (COALESCE(j.lease_until_ms, 0) < {NOW} OR j.lease_process = $1)
                                ORDER BY j.seq LIMIT $5
                                FOR UPDATE SKIP LOCKED)
                             RETURNING {JOB_COLUMNS}, seq"
                        ),
                        &[
                            &process.0,
                            &lease,
                            &(pass as i32),
                            &accounts,
                            &limit,
                            &max_accounts,
                            &per_account,
                        ],
                    )
                    .await?;
                tx.commit().await?;
                let mut jobs: Vec<(i64, StoredJob)> = rows
                    .iter()
                    .map(|r| {
                        let job = StoredJob {
                            claimed_by: Some(process),
                            ..job_from_row(r)
                        };
                        // `seq` follows the job's columns.
                        (r.get::<_, i64>(9), job)
                    })
                    .collect();
                jobs.sort_by_key(|(seq, _)| *seq);
                Ok(jobs.into_iter().map(|(_, job)| job).collect())
            }
        })
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
        self.call(move |inner: Arc<Inner>| async move {
            let mut client = inner.pool.get().await?;
            let tx = client.transaction().await?;
            let lease = inner.lease.as_millis() as i64;
            // A process marked lost while it could not reach the database is
            // back; one that finished stays finished, and keeps no leases.
            let alive = tx
                .execute(
                    &format!(
                        "UPDATE processes SET heartbeat_ms = {NOW}, state = 'running'
                         WHERE id = $1 AND state IN ('running', 'lost')"
                    ),
                    &[&process.0],
                )
                .await?
                == 1;
            if alive {
                // Rows a writer holds are being begun (which renews them)
                // or finished (which releases them).
                tx.execute(
                    &format!(
                        "UPDATE jobs SET lease_until_ms = {NOW} + $2
                         WHERE seq IN (SELECT seq FROM jobs WHERE lease_process = $1
                                       FOR UPDATE SKIP LOCKED)"
                    ),
                    &[&process.0, &lease],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
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

impl ReadStore for PostgresStore {
    fn job_count(&self) -> Result<u64> {
        self.count(sql::COUNT_JOBS, vec![])
    }

    fn schema_version(&self) -> Result<i64> {
        let version = self.row("SELECT version FROM orchestrator_schema", vec![], |r| {
            r.get(0)
        })?;
        Ok(version.unwrap_or(0))
    }

    fn tally(&self, accounts: Option<&[String]>) -> Result<PassTally> {
        let tally = self.row(
            "SELECT
                COUNT(*) FILTER (WHERE state = 'succeeded'),
                COUNT(*) FILTER (WHERE state IN ('pending', 'retry', 'running')),
                COUNT(*) FILTER (WHERE state = 'failed'),
                COUNT(*) FILTER (WHERE state = 'needs-review'),
                COUNT(*) FILTER (WHERE state = 'cancelled')
             FROM jobs WHERE ($1::text[] IS NULL OR account = ANY($1))",
            vec![Box::new(accounts_param(accounts))],
            |r| PassTally {
                succeeded: r.get::<_, i64>(0) as u32,
                unfinished: r.get::<_, i64>(1) as u32,
                failed: r.get::<_, i64>(2) as u32,
                held: r.get::<_, i64>(3) as u32,
                cancelled: r.get::<_, i64>(4) as u32,
            },
        )?;
        Ok(tally.unwrap_or_default())
    }

    fn pauses(&self, now_ms: u64, max_wait_ms: u64) -> Result<Vec<Pause>> {
        let rows = self.rows(
            "SELECT a.retry_scope, j.account,
                    MAX(LEAST(a.ended_ms, $1) + LEAST(a.retry_after_ms, $2)) AS until_ms
             FROM attempts a JOIN jobs j ON j.id = a.job_id
             WHERE a.retry_scope IN ('account', 'platform') AND a.retry_after_ms IS NOT NULL
             GROUP BY a.retry_scope, j.account
             HAVING MAX(LEAST(a.ended_ms, $1) + LEAST(a.retry_after_ms, $2)) > $1
             ORDER BY j.account, a.retry_scope",
            vec![
                Box::new(stored_ms(now_ms)),
                Box::new(stored_ms(max_wait_ms)),
            ],
            |r| (r.get(0), r.get(1), r.get(2)),
        )?;
        rows.into_iter()
            .map(|(scope, account, until)| Pause::from_stored(scope, account, until))
            .collect()
    }

    fn status(&self) -> Result<StatusReport> {
        crate::status::assemble(&StatusReads(self))
    }

    fn job_summaries(&self) -> Result<Vec<JobSummary>> {
        self.rows(sql::JOB_SUMMARIES, vec![], |r| {
            let state: String = r.get(2);
            JobSummary {
                id: r.get(0),
                account: r.get(1),
                state: JobState::parse(&state).unwrap_or(JobState::Pending),
                category: r.get(3),
                attempts: r.get::<_, i32>(4) as u32,
                remote_id: r.get(5),
            }
        })
    }

    fn attempts(&self, job: &str) -> Result<Vec<AttemptRecord>> {
        Ok(self
            .attempt_rows(Some(job.to_owned()))?
            .into_iter()
            .map(|row| row.attempt)
            .collect())
    }

    fn job(&self, id: &str) -> Result<Option<StoredJob>> {
        self.row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
            vec![Box::new(id.to_owned())],
            job_from_row,
        )
    }

    fn report(&self) -> Result<Vec<ReportRow>> {
        self.attempt_rows(None)
    }
}

impl PostgresStore {
    /// Attempts with their jobs: one job's, or all.
    fn attempt_rows(&self, job: Option<String>) -> Result<Vec<ReportRow>> {
        let rows = self.rows(
            "SELECT a.pass, a.number, a.started_ms, a.ended_ms, a.outcome, a.remote_id, a.failure,
                    a.fault, a.category, a.decided_by, a.reason, a.retry_after_ms, a.decision,
                    a.job_id, j.account, a.retry_scope, a.run, a.process_id, a.consulted
             FROM attempts a JOIN jobs j ON j.id = a.job_id
             WHERE ($1::text IS NULL OR a.job_id = $1)
             ORDER BY j.seq, a.id",
            vec![Box::new(job)],
            |r| AttemptRow {
                pass: r.get::<_, i32>(0) as u32,
                number: r.get::<_, i32>(1) as u32,
                started_ms: r.get(2),
                ended_ms: r.get(3),
                outcome: r.get(4),
                remote_id: r.get(5),
                failure: r.get(6),
                fault: r.get(7),
                category: r.get(8),
                decided_by: r.get(9),
                reason: r.get(10),
                retry_after_ms: r.get(11),
                decision: r.get(12),
                job: r.get(13),
                account: r.get(14),
                retry_scope: r.get(15),
                run: r.get::<_, Option<i32>>(16).map(|v| v as u32),
                process: r.get(17),
                consulted: r.get(18),
            },
        )?;
        rows.into_iter().map(AttemptRow::report_row).collect()
    }
}

/// Whether a process renewed within its own lease (recorded as it joined;
/// `default`, a parameter, for a process of an older schema that recorded
/// none): a process is lost by its lease, not by the asker's.
fn renewed_within_its_lease(default: &str) -> String {
    format!("heartbeat_ms >= {NOW} - COALESCE((config::json->>'lease_ms')::bigint, {default})")
}

/// Finishes the open run `$1`.
fn finish_run() -> String {
    format!(
        "UPDATE runs SET state = 'finished', ended_ms = {NOW} WHERE run = $1 AND state = 'open'"
    )
}

/// The newest run, when it is open, with how many processes work on it.
async fn open_run(tx: &Transaction<'_>) -> Step<Option<OpenRun>> {
    let newest = tx
        .query_opt(
            "SELECT run, state, config, accounts FROM runs ORDER BY run DESC LIMIT 1",
            &[],
        )
        .await?;
    let Some(row) = newest else {
        return Ok(None);
    };
    let (run, state, config, accounts): (i32, String, String, Option<String>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if state != RunState::Open.as_str() {
        return Ok(None);
    }
    let live: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM processes WHERE run = $1 AND state = 'running'",
            &[&run],
        )
        .await?
        .get(0);
    let run = run as u32;
    Ok(Some(OpenRun {
        run,
        config: join::config_from(&config, run)?,
        accounts: join::accounts_from(accounts.as_deref(), run)?,
        live_processes: live as u64,
    }))
}

/// A new run's budgets: failed jobs of `accounts` whose category `config`
/// retries are reopened, and every open job starts with none of the run's
/// passes used. Returns how many were reopened, and the failed jobs left
/// as they are, by category.
async fn fresh_budgets(
    tx: &Transaction<'_>,
    config: &orchestrator_retry::RetryConfig,
    accounts: Option<&[String]>,
) -> Step<(u64, Vec<Skipped>)> {
    let categories: Vec<&str> = config
        .retried_categories()
        .iter()
        .map(|c| c.as_str())
        .collect();
    let accounts = accounts_param(accounts);
    let reopened = tx
        .execute(
            "UPDATE jobs SET state = 'retry', gave_up = NULL
             WHERE state = 'failed' AND (category IS NULL OR category = ANY($1))
               AND ($2::text[] IS NULL OR account = ANY($2))",
            &[&categories, &accounts],
        )
        .await?;
    tx.execute(
        "UPDATE jobs SET passes_attempted = 0, last_pass = 0, infra_failures = 0
         WHERE state IN ('pending', 'retry') AND ($1::text[] IS NULL OR account = ANY($1))
           AND (passes_attempted <> 0 OR last_pass <> 0 OR infra_failures <> 0)",
        &[&accounts],
    )
    .await?;
    let skipped = tx
        .query(
            "SELECT category, COUNT(*), MIN(id) FROM jobs
             WHERE state = 'failed' AND ($1::text[] IS NULL OR account = ANY($1))
             GROUP BY category ORDER BY category",
            &[&accounts],
        )
        .await?
        .iter()
        .map(|r| Skipped {
            category: r
                .get::<_, Option<&str>>(0)
                .and_then(orchestrator_contract::Category::parse)
                .unwrap_or(orchestrator_contract::Category::Unknown),
            jobs: r.get::<_, i64>(1) as u64,
            example: r.get(2),
        })
        .collect();
    Ok((reopened, skipped))
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

/// This machine's name, so `--status` can say where each run is.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// `--status`'s queries, each a call of its own (retried while the database
/// cannot be reached).
struct StatusReads<'s>(&'s PostgresStore);

impl StatusReads<'_> {
    /// Whether a process works on its run: it is running and renewed
    /// within its lease (one that stopped renewing is lost). `$1` is the
    /// lease.
    fn live() -> String {
        format!("state = 'running' AND {}", renewed_within_its_lease("$1"))
    }

    fn lease(&self) -> i64 {
        self.0.inner.lease.as_millis() as i64
    }
}

impl StatusQueries for StatusReads<'_> {
    fn count(&self, sql: &str) -> Result<u64> {
        self.0.count(sql, vec![])
    }

    fn counts(&self, sql: &str) -> Result<Vec<(String, u64)>> {
        self.0.rows(sql, vec![], |r| {
            (r.get::<_, String>(0), r.get::<_, i64>(1) as u64)
        })
    }

    fn newest_runs(&self) -> Result<Vec<RunRow>> {
        let live = Self::live();
        self.0.rows(
            &format!(
                "SELECT r.run, r.state, r.started_ms, r.ended_ms, r.config, r.accounts,
                        (SELECT COALESCE(MAX(pass), 0) FROM passes p WHERE p.run = r.run),
                        (SELECT COUNT(*) FROM attempts a WHERE a.run = r.run),
                        EXISTS (SELECT 1 FROM processes x WHERE x.run = r.run AND x.{live})
                 FROM runs r ORDER BY r.run DESC LIMIT {RUNS_SHOWN}"
            ),
            vec![Box::new(self.lease())],
            |r| RunRow {
                run: r.get::<_, i32>(0) as u32,
                state: r.get(1),
                started_ms: r.get(2),
                ended_ms: r.get(3),
                config: r.get(4),
                accounts: r.get(5),
                passes: r.get::<_, i32>(6) as u32,
                attempts: r.get(7),
                live: r.get(8),
            },
        )
    }

    fn passes(&self, run: u32) -> Result<Vec<(u32, Option<String>)>> {
        self.0
            .rows(sql::PASS_RESULTS, vec![Box::new(run as i32)], |r| {
                (r.get::<_, i32>(0) as u32, r.get(1))
            })
    }

    fn pass_counts(&self, at: RunPass) -> Result<Vec<(String, String, u64)>> {
        self.0.rows(
            "SELECT outcome, COALESCE(category, ''), COUNT(*) FROM attempts
             WHERE run = $1 AND pass = $2
             GROUP BY outcome, category ORDER BY 2",
            vec![Box::new(at.run as i32), Box::new(at.pass as i32)],
            |r| (r.get(0), r.get(1), r.get::<_, i64>(2) as u64),
        )
    }

    /// The ten newest, those working on the run (or lost) first: many
    /// processes may share a run.
    fn processes(&self, run: u32) -> Result<Vec<ProcessStatus>> {
        let live = Self::live();
        self.0.rows(
            &format!(
                "SELECT id, run, pid, host,
                        CASE WHEN state = 'running' AND NOT ({live}) THEN 'lost'
                             ELSE state END,
                        started_ms, ended_ms, stop_requested
                 FROM processes WHERE run = $2
                 ORDER BY (state IN ('running', 'lost')) DESC, id DESC LIMIT 10"
            ),
            vec![Box::new(self.lease()), Box::new(run as i32)],
            |r| ProcessStatus {
                id: r.get(0),
                run: r.get::<_, Option<i32>>(1).map(|v| v as u32),
                pid: r.get::<_, i32>(2) as u32,
                host: Some(r.get(3)),
                state: r.get(4),
                started_ms: read_ms(r.get::<_, i64>(5)),
                ended_ms: r.get::<_, Option<i64>>(6).map(read_ms),
                stop_requested: r.get(7),
            },
        )
    }

    fn jobs_in_state(&self, state: JobState) -> Result<(Vec<RetryEntry>, u64)> {
        let state = state.as_str();
        let total = self.0.count(
            "SELECT COUNT(*) FROM jobs WHERE state = $1",
            vec![Box::new(state)],
        )?;
        let list = self.0.rows(
            "SELECT id, account, category, COALESCE(gave_up || ': ' || reason, reason), decided_by, not_before_ms
             FROM jobs WHERE state = $1 ORDER BY seq LIMIT 10",
            vec![Box::new(state)],
            |r| RetryEntry {
                job: r.get(0),
                account: r.get(1),
                category: r.get(2),
                reason: r.get(3),
                decided_by: r.get(4),
                not_before_ms: r.get::<_, Option<i64>>(5).map(read_ms),
            },
        )?;
        Ok((list, total))
    }

    fn failure_reasons(&self) -> Result<Vec<ReasonCount>> {
        self.0.rows(sql::FAILURE_REASONS, vec![], |r| ReasonCount {
            category: r.get(0),
            reason: r.get(1),
            jobs: r.get::<_, i64>(2) as u64,
            example: r.get(3),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn a_url_is_shown_without_its_password() {
        for (url, shown) in [
            ("postgres://u:secret@db/batch", "postgres://u@db/batch"),
            ("postgres://u@db:5433/batch", "postgres://u@db:5433/batch"),
            (
                "postgresql://db/batch?user=u&password=secret&sslmode=disable",
                "postgresql://db/batch?user=u&sslmode=disable",
            ),
            ("postgres://db/b?password=x@y", "postgres://db/b"),
        ] {
            assert_eq!(without_password(url), shown);
        }
    }
}
