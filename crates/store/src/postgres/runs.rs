//! [`PostgresStore::join`]: which run a process works on, when many may
//! share the store.
//!
//! Processes starting together take the run lock in turn and agree on one
//! run by [`crate::join::plan`]: a process joins the open run others work
//! on (under the same settings only), resumes one cut short, or begins a
//! new one, closing the run cut short and taking back what is still in
//! flight. Processes that stopped renewing are marked lost first.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_postgres::Transaction;

use super::leases::{Unheld, recover, renewed_within_its_lease};
use super::outage::Step;
use super::reads::job_summary;
use super::{Inner, NOW, PostgresStore, accounts_param};
use crate::join::{self, OpenRun, Plan};
use crate::sql;
use crate::{
    JobSummary, JoinPreview, Joined, JoinedHow, NewProcess, ProcessId, Result, RunState, Skipped,
    StoreError,
};

/// Joining a run takes this one, so processes starting together agree on
/// one run.
const RUN_LOCK: i64 = 0x6f72_6368_7275_6e73; // "orchruns"

impl PostgresStore {
    /// [`crate::RunStore::join_run`], under the run lock: see the module
    /// documentation.
    pub(super) fn join(&self, process: &NewProcess) -> Result<Joined> {
        let joining = self.joining(process)?;
        self.inner
            .key_window_ms
            .store(process.key_window_ms as i64, Ordering::Relaxed);
        self.call(move |inner: Arc<Inner>| {
            let joining = joining.clone();
            async move {
                let mut client = inner.pool.get().await?;
                let tx = client.transaction().await?;
                let joined = join_in(&tx, &inner, &joining).await?;
                tx.commit().await?;
                Ok(joined)
            }
        })
    }

    /// [`crate::ReadStore::preview_join`]: the join in a transaction that
    /// is rolled back, with the jobs read before it is.
    pub(super) fn preview(&self, process: &NewProcess) -> Result<JoinPreview> {
        let joining = self.joining(process)?;
        self.call(move |inner: Arc<Inner>| {
            let joining = joining.clone();
            async move {
                let mut client = inner.pool.get().await?;
                let tx = client.transaction().await?;
                // A look, not a wait: a lock a run holds long fails the
                // preview rather than holding up the processes behind it.
                tx.batch_execute("SET LOCAL lock_timeout = '10s'").await?;
                let summaries = |rows: Vec<tokio_postgres::Row>| -> Vec<JobSummary> {
                    rows.iter().map(job_summary).collect()
                };
                let before = summaries(tx.query(sql::JOB_SUMMARIES, &[]).await?);
                let joined = join_in(&tx, &inner, &joining).await?;
                // What a joining process's first claim takes back: the
                // jobs of processes whose lease ran out.
                let window = joining.process.key_window_ms as i64;
                recover(&tx, window, Unheld::Expired).await?;
                let after = summaries(tx.query(sql::JOB_SUMMARIES, &[]).await?);
                // Nothing of it is kept.
                tx.rollback().await?;
                Ok(JoinPreview {
                    joined,
                    before,
                    after,
                })
            }
        })
    }
}

/// What a joining process brings to [`join_in`], for every try of it.
struct Joining {
    process: NewProcess,
    /// What it records of itself.
    process_config: String,
    /// Its budget settings, as a run records them.
    config: String,
    host: String,
}

impl PostgresStore {
    fn joining(&self, process: &NewProcess) -> Result<Arc<Joining>> {
        let process_config = serde_json::to_string(&serde_json::json!({
            "retry": process.config,
            "workers": process.workers,
            "accounts": process.accounts,
            "plugins": process.plugins,
            "key_window_ms": process.key_window_ms,
            // Whether it is lost is judged by its own lease, whoever asks.
            "lease_ms": self.inner.lease.as_millis() as u64,
        }))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Arc::new(Joining {
            process: process.clone(),
            process_config,
            config: join::config_text(&process.config)?,
            host: hostname(),
        }))
    }
}

/// Joins `process` to a run in `tx`, under the run lock: see the module
/// documentation.
async fn join_in(tx: &Transaction<'_>, inner: &Inner, joining: &Joining) -> Step<Joined> {
    let Joining {
        process,
        process_config,
        config,
        host,
    } = joining;
    let pid = process.pid as i32;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&RUN_LOCK])
        .await?;
    let lease = inner.lease.as_millis() as i64;
    // Processes that stopped renewing are lost (until they renew again);
    // the others go on.
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
    let (run, how) = match join::plan(open_run(tx).await?, process)? {
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
                    &format!("UPDATE runs SET state = 'closed', ended_ms = {NOW} WHERE run = $1"),
                    &[&(closed.run as i32)],
                )
                .await?;
            }
            // Nobody works on the batch now: what is still in flight is
            // uncertain, and counts in no budget.
            let window = process.key_window_ms as i64;
            recover(tx, window, Unheld::ByLiveProcesses).await?;
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
                fresh_budgets(tx, &process.config, accounts.as_deref()).await?;
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
    // How this process reaches the database, for --status on any machine:
    // its connections are all made alike.
    let (encrypted, version): (bool, Option<String>) = tx
        .query_opt(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .map_or((false, None), |r| (r.get(0), r.get(1)));
    let connection = crate::StoreConnection {
        sslmode: inner.facts.mode.to_string(),
        encrypted,
        tls_version: version,
    }
    .to_string();
    let id: i64 = tx
        .query_one(
            &format!(
                "INSERT INTO processes (run, pid, host, started_ms, heartbeat_ms, state, config, connection)
                 VALUES ($1, $2, $3, {NOW}, {NOW}, 'running', $4, $5) RETURNING id"
            ),
            &[&(run as i32), &pid, &host, &process_config, &connection],
        )
        .await?
        .get(0);
    Ok(Joined {
        process: ProcessId(id),
        run,
        accounts,
        how,
    })
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
