//! [`SqliteStore::join`]: which run the one process a SQLite store has at a
//! time works on.
//!
//! What a process that died left in flight becomes uncertain (or held for
//! review, or cancelled as an operator asked); then, by
//! [`crate::join::plan`], the process resumes the run cut short under the
//! same settings or begins a new one, closing the one cut short.

use orchestrator_contract::Category;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::{SqliteStore, accounts_clause, now_ms};
use crate::join::{self, OpenRun, Plan};
use crate::{Joined, JoinedHow, NewProcess, ProcessId, Result, RunState, Skipped, StoreError};

impl SqliteStore {
    /// [`crate::RunStore::join_run`]: see the module documentation.
    pub(super) fn join(&self, process: &NewProcess) -> Result<Joined> {
        let process_config = serde_json::to_string(&serde_json::json!({
            "retry": process.config,
            "workers": process.workers,
            "accounts": process.accounts,
            "plugins": process.plugins,
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
