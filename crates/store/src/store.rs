//! [`Store`]: the store behind a batch, in two halves.
//!
//! [`RunStore`] is what taking part in a run, or steering one, asks of the
//! store: every write (the batch, the runs and their passes, the processes,
//! the attempts, an operator's cancel and retry) and the reads that decide
//! a run's next step (which run, which pass, which jobs). [`ReadStore`] is
//! what an observer reads (`--status`, `report`, `explain`, the tallies
//! and waits a run reports): nothing there changes the store, so a store
//! opened read-only answers all of it (but for the dry run's
//! [`ReadStore::preview_join`] on PostgreSQL, which writes in a
//! transaction it rolls back).
//!
//! Callers hold a `Box<dyn Store>` or an `Arc<dyn Store>`, which offers
//! both halves; a caller that names a concrete store brings the halves'
//! methods into scope with [`crate::prelude`].

use crate::{
    AccountRow, AttemptId, AttemptOutcome, AttemptRecord, ClaimLimit, Durable, ImportSummary,
    JobChange, JobFilter, JobSummary, JoinPreview, Joined, NewJob, NewProcess, PassMark, Pause,
    ProcessId, ProcessState, ReportRow, Result, RunPass, RunState, StatusReport, StoreConnection,
    StoredJob, Throughput,
};

/// The store behind a batch: both halves, for callers that run a batch
/// and report on it. Every store that implements [`RunStore`] and
/// [`ReadStore`] is one.
pub trait Store: RunStore + ReadStore {}

impl<T: RunStore + ReadStore + ?Sized> Store for T {}

/// The run side of the store: see the module documentation. Every method is
/// one transaction.
pub trait RunStore: Send + Sync {
    /// Imports jobs, keeping what is already stored under the same id.
    fn import(&self, jobs: &[NewJob], source: &str) -> Result<ImportSummary>;
    /// Forgets the stored batch (jobs, attempts, runs, passes, processes).
    fn clear(&self) -> Result<()>;

    /// Records a process as working on the batch, and on which run.
    ///
    /// Attempts that a dead process left in flight become `uncertain`:
    /// their jobs are eligible again (same idempotency key), or held for
    /// review when the attempt is older than the platform's key window.
    /// Then, by [`crate::join::plan`]: the process joins the open run other
    /// processes work on; or resumes the open run that was cut short, when
    /// its budget settings and accounts are the same; or begins a new run,
    /// closing the one cut short. A new run reopens the jobs that failed in
    /// earlier runs with a category its settings retry (the others are
    /// reported as skipped), and gives every open job of its accounts a
    /// fresh budget.
    fn join_run(&self, process: &NewProcess) -> Result<Joined>;
    /// Records that `process` stopped working: what it still holds goes
    /// back at once.
    fn leave_run(&self, process: ProcessId, state: ProcessState) -> Result<()>;
    /// Asks every running process to stop; returns how many were asked.
    fn request_stop(&self) -> Result<u32>;
    /// Lets jobs held for review be retried; returns how many.
    fn release_held(&self) -> Result<u64>;
    fn stop_requested(&self, process: ProcessId) -> Result<bool>;
    /// Cancels jobs: they are never attempted again. One in flight is
    /// cancelled when its attempt ends, unless it posted. An unknown id
    /// fails the whole call, changing nothing.
    fn cancel(&self, jobs: &[String]) -> Result<Vec<(String, JobChange)>>;
    /// Makes failed, cancelled or held jobs eligible again, whatever their
    /// category, with a fresh budget: a run going on takes them in its
    /// current or next pass, otherwise the next run. An unknown id fails
    /// the whole call, changing nothing.
    fn retry(&self, jobs: &[String]) -> Result<Vec<(String, JobChange)>>;

    /// Where `run` stands.
    fn run_state(&self, run: u32) -> Result<RunState>;
    /// The newest pass of `run` begun, if any: its number, when it opens,
    /// and whether it ended. Every process sharing the store agrees on it.
    fn latest_pass(&self, run: u32) -> Result<Option<PassMark>>;
    /// Opens a pass at `opens_ms`; a pass another process opened first
    /// stays as it is.
    fn begin_pass(&self, at: RunPass, opens_ms: u64) -> Result<()>;
    /// Ends a pass with `result` and, in the same transaction, opens `next`
    /// (its number and when it opens) or, without one, finishes the run.
    /// Returns whether this call ended it: `false` when another process
    /// did first.
    fn end_pass(
        &self,
        at: RunPass,
        result: &orchestrator_retry::PassResult,
        next: Option<(u32, u64)>,
    ) -> Result<bool>;
    /// Finishes `run` without another pass (nothing was left to do).
    fn end_run(&self, run: u32) -> Result<()>;
    /// Jobs to attempt in pass `pass` of the current run: pending or to
    /// retry, not yet attempted in it, optionally only of some accounts; in
    /// import order.
    fn eligible_jobs(&self, pass: u32, accounts: Option<&[String]>) -> Result<Vec<StoredJob>>;
    /// How many jobs [`RunStore::eligible_jobs`] would return.
    fn eligible_count(&self, pass: u32, accounts: Option<&[String]>) -> Result<u64>;
    /// Hands `process` jobs to attempt in `pass`, in import order, under a
    /// lease when other processes may share the store. A store only one
    /// process may use at a time hands out all of them at once; a shared
    /// one hands out what `limit` allows, never jobs of an account another
    /// live process holds, and first takes back the jobs of processes whose
    /// leases expired (their attempts in flight become uncertain, as after
    /// a crash).
    fn claim(
        &self,
        process: ProcessId,
        pass: u32,
        accounts: Option<&[String]>,
        limit: ClaimLimit,
    ) -> Result<Vec<StoredJob>> {
        let _ = (process, limit);
        self.eligible_jobs(pass, accounts)
    }
    /// Jobs of `pass` not finished yet anywhere: eligible, claimed or in
    /// flight. The pass ends when this is 0.
    fn unfinished_in_pass(&self, pass: u32, accounts: Option<&[String]>) -> Result<u64>;
    /// Keeps `process`'s leases (and its heartbeat) alive; a shared store's
    /// processes call it well within the lease.
    fn renew(&self, process: ProcessId) -> Result<()> {
        let _ = process;
        Ok(())
    }
    /// How long a lease lasts, when the store hands out leases.
    fn lease(&self) -> Option<std::time::Duration> {
        None
    }
    /// The accounts whose jobs a run may yet attempt: every job not
    /// succeeded or cancelled.
    fn accounts_with_work(&self) -> Result<Vec<String>>;

    /// Records an attempt as in flight, in pass `at`, before the plugin
    /// runs.
    fn begin_attempt(&self, job: &StoredJob, at: RunPass) -> Result<AttemptId>;
    /// Records an attempt's outcome and the job's new state together.
    fn finish_attempt(&self, attempt: AttemptId, outcome: &AttemptOutcome) -> Result<()>;
    /// [`RunStore::begin_attempt`] for async callers: the write is queued,
    /// and the answer arrives once it is durable, committed with whatever
    /// other writes were queued meanwhile.
    fn queue_begin_attempt(&self, job: &StoredJob, at: RunPass) -> Durable<AttemptId> {
        Durable::ready(self.begin_attempt(job, at))
    }
    /// [`RunStore::finish_attempt`] for async callers, as
    /// [`RunStore::queue_begin_attempt`].
    /// The account's tokens as the host sealed them (encrypted under a key
    /// the store never sees; see `orchestrator-auth`), if any.
    fn sealed_tokens(&self, account: &str) -> Result<Option<Vec<u8>>>;
    /// Replaces the account's sealed tokens, durably before it returns: a
    /// rotated refresh token is on disk before its access token is used.
    fn seal_tokens(&self, account: &str, sealed: &[u8]) -> Result<()>;

    fn queue_finish_attempt(&self, attempt: AttemptId, outcome: &AttemptOutcome) -> Durable<()> {
        Durable::ready(self.finish_attempt(attempt, outcome))
    }
}

/// The read side of the store: see the module documentation. Every method
/// reads, and none changes anything.
pub trait ReadStore: Send + Sync {
    /// How many jobs the batch holds.
    fn job_count(&self) -> Result<u64>;
    /// The schema version the store holds (migrations are applied when it
    /// opens).
    fn schema_version(&self) -> Result<i64>;
    /// Counts the jobs (optionally of some accounts) by where they stand.
    fn tally(&self, accounts: Option<&[String]>) -> Result<orchestrator_retry::PassTally>;
    /// The account and platform waits still running at `now_ms`, the latest
    /// per account and scope: a run that starts (or resumes) honours what
    /// the platform asked of the runs before it, each wait at most
    /// `max_wait_ms` long (whatever an older or hostile writer stored).
    fn pauses(&self, now_ms: u64, max_wait_ms: u64) -> Result<Vec<Pause>>;
    /// Every attempt started since `since_ms`, as its account and start
    /// (ms since the epoch), oldest first: what the rate budgets spent.
    fn spent_since(&self, since_ms: u64) -> Result<Vec<(String, u64)>>;

    /// Everything `--status` shows.
    fn status(&self) -> Result<StatusReport>;
    /// How this process reaches the store, when it is a server's (whether
    /// the connection is encrypted); `None` for a file.
    fn connection(&self) -> Result<Option<StoreConnection>> {
        Ok(None)
    }
    /// Every job's current state, in import order.
    fn job_summaries(&self) -> Result<Vec<JobSummary>>;
    /// A job's attempts, oldest first.
    fn attempts(&self, job: &str) -> Result<Vec<AttemptRecord>>;
    /// One job, if the batch has it.
    fn job(&self, id: &str) -> Result<Option<StoredJob>>;
    /// Every attempt of the batch, by job in import order, oldest first.
    fn report(&self) -> Result<Vec<ReportRow>>;

    /// Accounts in name order, `limit` (at most [`crate::PAGE_MAX`]) from
    /// `offset`, each with its jobs by state; and how many accounts there
    /// are.
    fn accounts_page(&self, offset: u64, limit: u64) -> Result<(Vec<AccountRow>, u64)>;
    /// Jobs matching `filter` in import order, a page of them; and how many
    /// match.
    fn jobs_page(
        &self,
        filter: &JobFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<JobSummary>, u64)>;
    /// Attempts that ended since `since_ms`, by outcome, in buckets of
    /// `bucket_ms`, oldest first (empty buckets left out).
    fn throughput(&self, since_ms: u64, bucket_ms: u64) -> Result<Vec<Throughput>>;
    /// What [`RunStore::join_run`] would do for `process`, with the jobs
    /// before and after, worked out without changing the store: the dry
    /// run. (On PostgreSQL, in a transaction rolled back: it needs the
    /// rights a run has.)
    fn preview_join(&self, process: &NewProcess) -> Result<JoinPreview>;
}
