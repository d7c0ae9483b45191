//! The read side of [`PostgresStore`]: counts, records and reports, each
//! statement a call of its own; `--status` is assembled by
//! [`crate::status`] from the queries here.

use orchestrator_retry::PassTally;

use super::leases::renewed_within_its_lease;
use super::{NOW, PostgresStore, accounts_param, job_from_row};
use crate::model::{AttemptRow, RunRow, read_ms, stored_ms};
use crate::sql::{self, JOB_COLUMNS};
use crate::status::StatusQueries;
use crate::{
    AccountRow, AttemptRecord, JobFilter, JobState, JobSummary, JoinPreview, NewProcess, Pause,
    ProcessStatus, RUNS_SHOWN, ReadStore, ReasonCount, ReportRow, Result, RetryEntry, RunPass,
    StatusReport, StoredJob, Throughput,
};

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

    fn spent_since(&self, since_ms: u64) -> Result<Vec<(String, u64)>> {
        // The starts are on the database's clock and the budgets count on
        // this host's: the times go out and come back shifted by how far
        // apart the two clocks are (to within a round trip), so a database
        // clock behind this host's does not refill budgets early. The
        // shift is a scalar subquery, worked out once before the scan, so
        // the bound stays a constant the index on `ended_ms` can take.
        let spent = format!(
            "SELECT j.account, a.started_ms + (SELECT $2::bigint - {NOW})
             FROM attempts a JOIN jobs j ON j.id = a.job_id
             WHERE (a.ended_ms >= (SELECT $1::bigint - ($2::bigint - {NOW})) OR a.ended_ms IS NULL)
               AND a.started_ms >= (SELECT $1::bigint - ($2::bigint - {NOW}))
             ORDER BY a.started_ms, a.id"
        );
        let host_now = orchestrator_contract::time::now_ms();
        self.rows(
            &spent,
            vec![Box::new(stored_ms(since_ms)), Box::new(stored_ms(host_now))],
            |r| (r.get::<_, String>(0), read_ms(r.get::<_, i64>(1))),
        )
    }

    fn pauses(&self, now_ms: u64, max_wait_ms: u64) -> Result<Vec<Pause>> {
        let rows = self.rows(
            "SELECT a.retry_scope, j.account,
                    MAX(LEAST(a.ended_ms, $1) + LEAST(a.retry_after_ms, $2)) AS until_ms,
                    (ARRAY_AGG(a.reason ORDER BY
                        LEAST(a.ended_ms, $1) + LEAST(a.retry_after_ms, $2) DESC))[1]
             FROM attempts a JOIN jobs j ON j.id = a.job_id
             WHERE a.retry_scope IN ('account', 'platform') AND a.retry_after_ms IS NOT NULL
             GROUP BY a.retry_scope, j.account
             HAVING MAX(LEAST(a.ended_ms, $1) + LEAST(a.retry_after_ms, $2)) > $1
             ORDER BY j.account, a.retry_scope",
            vec![
                Box::new(stored_ms(now_ms)),
                Box::new(stored_ms(max_wait_ms)),
            ],
            |r| (r.get(0), r.get(1), r.get(2), r.get(3)),
        )?;
        rows.into_iter()
            .map(|(scope, account, until, reason)| {
                Pause::from_stored(scope, account, until, reason)
            })
            .collect()
    }

    fn status(&self) -> Result<StatusReport> {
        crate::status::assemble(&StatusReads(self))
    }

    fn connection(&self) -> Result<Option<crate::StoreConnection>> {
        // One of the pool's connections says; they are all made alike.
        let sslmode = self.inner.facts.mode.to_string();
        let ssl = self.row(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            vec![],
            |r| (r.get::<_, bool>(0), r.get::<_, Option<String>>(1)),
        )?;
        let (encrypted, tls_version) = ssl.unwrap_or((false, None));
        Ok(Some(crate::StoreConnection {
            sslmode,
            encrypted,
            tls_version,
        }))
    }

    fn job_summaries(&self) -> Result<Vec<JobSummary>> {
        self.rows(sql::JOB_SUMMARIES, vec![], job_summary)
    }

    fn preview_join(&self, process: &NewProcess) -> Result<JoinPreview> {
        self.preview(process)
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

    fn accounts_page(&self, offset: u64, limit: u64) -> Result<(Vec<AccountRow>, u64)> {
        let total = self.count(sql::COUNT_ACCOUNTS, vec![])?;
        let rows = self.rows(
            sql::ACCOUNTS_PAGE,
            vec![
                Box::new(crate::model::page_size(limit)),
                Box::new(stored_ms(offset)),
            ],
            |r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, i64>(2),
                )
            },
        )?;
        Ok((AccountRow::gather(rows), total))
    }

    fn jobs_page(
        &self,
        filter: &JobFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<JobSummary>, u64)> {
        // PostgreSQL must be told a parameter's type where it is only
        // compared with NULL.
        const MATCHING: &str = "FROM jobs WHERE ($1::text IS NULL OR state = $1::text)
             AND ($2::text IS NULL OR account = $2::text)";
        let state = filter.state.map(|s| s.as_str().to_owned());
        let account = filter.account.clone();
        let total = self.count(
            &format!("SELECT COUNT(*) {MATCHING}"),
            vec![Box::new(state.clone()), Box::new(account.clone())],
        )?;
        let jobs = self.rows(
            &format!(
                "SELECT id, account, state, category, attempts, remote_id {MATCHING}
                 ORDER BY seq LIMIT $3 OFFSET $4"
            ),
            vec![
                Box::new(state),
                Box::new(account),
                Box::new(crate::model::page_size(limit)),
                Box::new(stored_ms(offset)),
            ],
            job_summary,
        )?;
        Ok((jobs, total))
    }

    fn throughput(&self, since_ms: u64, bucket_ms: u64) -> Result<Vec<Throughput>> {
        let bucket = bucket_ms.max(1);
        let rows = self.rows(
            sql::THROUGHPUT,
            vec![Box::new(stored_ms(bucket)), Box::new(stored_ms(since_ms))],
            |r| Throughput {
                // The bucket's number, made a time below.
                start_ms: read_ms(r.get::<_, i64>(0)),
                succeeded: read_ms(r.get::<_, i64>(1)),
                failed: read_ms(r.get::<_, i64>(2)),
            },
        )?;
        Ok(rows
            .into_iter()
            .map(|t| Throughput {
                start_ms: t.start_ms.saturating_mul(bucket),
                ..t
            })
            .collect())
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
                        started_ms, ended_ms, stop_requested, config, connection
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
                plugins: crate::PluginUse::from_config(
                    &r.get::<_, Option<String>>(8).unwrap_or_default(),
                ),
                // Bounded: another process wrote it.
                connection: r.get::<_, Option<String>>(9).map(|c| {
                    orchestrator_contract::text::bounded(c, orchestrator_contract::text::NAME_BYTES)
                }),
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

/// A row of [`sql::JOB_SUMMARIES`].
pub(super) fn job_summary(r: &tokio_postgres::Row) -> JobSummary {
    let state: String = r.get(2);
    JobSummary {
        id: r.get(0),
        account: r.get(1),
        state: JobState::parse(&state).unwrap_or(JobState::Pending),
        category: r.get(3),
        attempts: r.get::<_, i32>(4) as u32,
        remote_id: r.get(5),
    }
}
