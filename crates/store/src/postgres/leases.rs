//! Leases: [`PostgresStore::claim_leased`] hands a process jobs to attempt
//! under a lease, [`PostgresStore::renew_leases`] keeps them, and
//! [`recover`] takes back what a process that stopped renewing held.
//!
//! Claims take one advisory lock in turn, so an account is never split
//! between two processes. A lease ends with its attempt's outcome; a
//! process that dies stops renewing, and once its leases expire the next
//! claim anywhere takes its jobs back, its attempts in flight uncertain.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_postgres::Transaction;

use super::outage::{Failure, Step};
use super::{Inner, NOW, PostgresStore, accounts_param, job_from_row};
use crate::sql::JOB_COLUMNS;
use crate::{ClaimLimit, ProcessId, Result, StoreError, StoredJob};

/// How long a lease lasts unless `--lease` says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Claims take this transaction-scoped advisory lock, one at a time: a claim
/// then sees every account another claim just took.
const CLAIM_LOCK: i64 = 0x6f72_6368_636c_6169; // "orchclai"

impl PostgresStore {
    /// [`crate::RunStore::claim`]: see the module documentation.
    pub(super) fn claim_leased(
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
                let key_window = inner.key_window_ms.load(Ordering::Relaxed);
                recover(&tx, key_window, Unheld::Expired).await?;
                let lease = inner.lease.as_millis() as i64;
                // The eligible jobs in import order, the first few only;
                // all of them when those few hold too few accounts (a jobs
                // file grouped by account), which claims what the first
                // claim did and more.
                let window = limit.saturating_mul(WINDOW);
                let wanted = limit.min(max_accounts.saturating_mul(per_account));
                let ask = Ask {
                    process: process.0,
                    lease,
                    pass: pass as i32,
                    accounts: &accounts,
                    limit,
                    max_accounts,
                    per_account,
                };
                let mut claimed = claim_in(&tx, ask, Some(window)).await?;
                if claimed.window_rows >= window && (claimed.rows.len() as i64) < wanted {
                    claimed = claim_in(&tx, ask, None).await?;
                }
                let rows = claimed.rows;
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

    /// [`crate::RunStore::renew`]: the process's heartbeat and every lease it
    /// holds.
    pub(super) fn renew_leases(&self, process: ProcessId) -> Result<()> {
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
}

/// How many eligible jobs, for each it may claim, a claim looks at first.
const WINDOW: i64 = 4;

/// What a claim asks for: see [`claim_in`].
#[derive(Clone, Copy)]
struct Ask<'a> {
    process: i64,
    /// The lease, in ms.
    lease: i64,
    pass: i32,
    accounts: &'a Option<Vec<String>>,
    limit: i64,
    max_accounts: i64,
    per_account: i64,
}

/// The jobs a claim took (as [`JOB_COLUMNS`], then `seq`), and how many
/// eligible jobs it looked at.
struct Claimed {
    rows: Vec<tokio_postgres::Row>,
    window_rows: i64,
}

/// Claims, in `tx`, jobs of the first `max_accounts` accounts (in import
/// order) that no other live process holds: up to `limit` of their jobs,
/// `per_account` at most of each, among the first `window` eligible jobs
/// (all when `None`). A job this process already holds but has not begun
/// (a claim whose answer was lost) is handed out again.
async fn claim_in(tx: &Transaction<'_>, ask: Ask<'_>, window: Option<i64>) -> Step<Claimed> {
    // A claim for nothing takes nothing (the statement below would choose
    // one account, and PostgreSQL refuses a negative offset).
    if ask.limit < 1 || ask.max_accounts < 1 || ask.per_account < 1 {
        return Ok(Claimed {
            rows: Vec::new(),
            window_rows: 0,
        });
    }
    // The clock is read once: a volatile `now` in a filter is read for
    // every row, and cannot be looked up in an index. The accounts other
    // processes hold are found once, from the few jobs under a lease (not
    // asked again for each eligible job), and left out with NOT EXISTS (a
    // hash anti-join; NOT IN cost several times more here). The eligible
    // jobs are read in import order through `jobs_open`, the first
    // `window` of them.
    let rows = tx
        .query(
            &format!(
                "WITH now AS MATERIALIZED (SELECT {NOW} AS ms),
                 held AS MATERIALIZED (
                    SELECT DISTINCT account FROM jobs
                    WHERE lease_process IS NOT NULL AND lease_process <> $1
                      AND lease_until_ms >= (SELECT ms FROM now)
                 ), open AS MATERIALIZED (
                    SELECT seq, account FROM jobs j
                    WHERE j.state IN ('pending', 'retry') AND j.last_pass < $3
                      AND ($4::text[] IS NULL OR j.account = ANY($4))
                      AND (COALESCE(j.lease_until_ms, 0) < (SELECT ms FROM now)
                           OR j.lease_process = $1)
                      AND NOT EXISTS (SELECT 1 FROM held h WHERE h.account = j.account)
                    ORDER BY seq LIMIT $8
                 ), eligible AS MATERIALIZED (
                    -- Each job's place among its account's, and where its
                    -- account's first job is.
                    SELECT seq, row_number() OVER account AS nth, min(seq) OVER account AS first
                    FROM open WINDOW account AS (PARTITION BY account ORDER BY seq)
                 ), chosen AS (
                    -- The first job of the last account chosen: accounts
                    -- whose first job comes no later are chosen.
                    SELECT COALESCE(
                        (SELECT seq FROM eligible WHERE nth = 1 ORDER BY seq OFFSET $6::bigint - 1 LIMIT 1),
                        9223372036854775807) AS last_first
                 )
                 UPDATE jobs SET lease_process = $1, lease_until_ms = (SELECT ms FROM now) + $2
                 -- Arrays, looked up by the primary key.
                 WHERE seq = ANY (ARRAY(
                    SELECT j.seq FROM jobs j
                    WHERE j.seq = ANY (ARRAY(
                        SELECT seq FROM eligible
                        WHERE nth <= $7 AND first <= (SELECT last_first FROM chosen)))
                      -- Checked again on the row as locked: it may have
                      -- changed since the statement began.
                      AND j.state IN ('pending', 'retry') AND j.last_pass < $3
                      AND (COALESCE(j.lease_until_ms, 0) < (SELECT ms FROM now)
                           OR j.lease_process = $1)
                    ORDER BY j.seq LIMIT $5
                    FOR UPDATE SKIP LOCKED))
                 RETURNING {JOB_COLUMNS}, seq, (SELECT COUNT(*) FROM open)"
            ),
            &[
                &ask.process,
                &ask.lease,
                &ask.pass,
                ask.accounts,
                &ask.limit,
                &ask.max_accounts,
                &ask.per_account,
                &window,
            ],
        )
        .await?;
    let window_rows = rows.first().map_or(0, |row| row.get::<_, i64>(10));
    Ok(Claimed { rows, window_rows })
}

/// Which jobs in flight nobody holds any more.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unheld {
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
pub(super) async fn recover(tx: &Transaction<'_>, key_window_ms: i64, unheld: Unheld) -> Step<u64> {
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

/// Whether a process renewed within its own lease (recorded as it joined;
/// `default`, a parameter, for a process of an older schema that recorded
/// none): a process is lost by its lease, not by the asker's.
pub(super) fn renewed_within_its_lease(default: &str) -> String {
    format!("heartbeat_ms >= {NOW} - COALESCE((config::json->>'lease_ms')::bigint, {default})")
}
