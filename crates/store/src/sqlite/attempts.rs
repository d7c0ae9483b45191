//! [`begin_attempt_in`] and [`finish_attempt_in`]: an attempt's two writes,
//! in the transaction the [`super::group`] writer (or the caller) holds.

use rusqlite::{Connection, OptionalExtension, params};

use super::{exec, now_ms, one};
use crate::model::{FailureColumns, stored_ms};
use crate::sql;
use crate::{AttemptId, AttemptOutcome, Result, RunPass, StoreError, StoredJob};

/// Records an attempt as in flight, in `tx`: only a job still pending or to
/// retry may begin (one cancelled since it was handed out may not). Its
/// number follows the job's attempts as stored.
pub(super) fn begin_attempt_in(tx: &Connection, job: &StoredJob, at: RunPass) -> Result<AttemptId> {
    let number: Option<u32> = tx
        .prepare_cached(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1,
                             passes_attempted = passes_attempted + 1, last_pass = ?1
             WHERE id = ?2 AND state IN ('pending', 'retry')
             RETURNING attempts",
        )?
        .query_row(params![at.pass, job.id], |r| r.get(0))
        .optional()?;
    let Some(number) = number else {
        let state: Option<String> = tx
            .prepare_cached("SELECT state FROM jobs WHERE id = ?1")?
            .query_row([&job.id], |r| r.get(0))
            .optional()?;
        return Err(StoreError::NotEligible {
            job: job.id.clone(),
            state: state.unwrap_or_else(|| "missing".into()),
        });
    };
    exec(
        tx,
        "INSERT INTO attempts (job_id, run, process_id, pass, number, idempotency_key, started_ms)
         VALUES (?1, ?2, (SELECT MAX(id) FROM processes WHERE state = 'running'), ?3, ?4, ?5, ?6)",
        params![
            job.id,
            at.run,
            at.pass,
            number,
            job.idempotency_key,
            now_ms() as i64
        ],
    )?;
    Ok(AttemptId(tx.last_insert_rowid()))
}

/// Records an attempt's outcome and its job's new state, in `tx`. A job
/// cancelled while the attempt was in flight ends cancelled, unless it
/// posted.
pub(super) fn finish_attempt_in(
    tx: &Connection,
    attempt: AttemptId,
    outcome: &AttemptOutcome,
) -> Result<()> {
    let job_id: String = one(
        tx,
        "SELECT job_id FROM attempts WHERE id = ?1",
        [attempt.0],
        |r| r.get(0),
    )?;
    let ended = now_ms() as i64;
    match outcome {
        AttemptOutcome::Succeeded(receipt) => {
            exec(
                tx,
                "UPDATE attempts SET outcome = 'succeeded', ended_ms = ?1, remote_id = ?2, url = ?3
                 WHERE id = ?4",
                params![ended, receipt.remote_id, receipt.url, attempt.0],
            )?;
            exec(
                tx,
                "UPDATE jobs SET state = 'succeeded', remote_id = ?1, url = ?2,
                                 not_before_ms = NULL, category = NULL, reason = NULL,
                                 decided_by = NULL, gave_up = NULL, cancel_requested = 0
                 WHERE id = ?3",
                params![receipt.remote_id, receipt.url, job_id],
            )?;
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
            exec(
                tx,
                "UPDATE attempts SET outcome = 'failed', ended_ms = ?1, failure = ?2, fault = ?3,
                                     category = ?4, reason = ?5, decided_by = ?6,
                                     retry_after_ms = ?7, decision = ?8, retry_scope = ?9,
                                     consulted = ?11
                 WHERE id = ?10",
                params![
                    ended,
                    columns.failure,
                    columns.fault,
                    classification.category.as_str(),
                    classification.reason,
                    classification.decided_by,
                    columns.retry_after_ms,
                    columns.decision,
                    columns.retry_scope,
                    attempt.0,
                    columns.consulted
                ],
            )?;
            exec(
                tx,
                "UPDATE jobs SET state = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE ?1 END,
                                 gave_up = ?2, category = ?3,
                                 reason = CASE WHEN cancel_requested = 1 THEN ?9 ELSE ?4 END,
                                 decided_by = ?5, not_before_ms = ?6,
                                 infra_failures = infra_failures + ?7,
                                 passes_attempted = passes_attempted - ?10,
                                 last_pass = last_pass - ?10
                 WHERE id = ?8",
                params![
                    columns.state,
                    columns.gave_up,
                    classification.category.as_str(),
                    classification.reason,
                    classification.decided_by,
                    not_before_ms.map(stored_ms),
                    columns.infra,
                    job_id,
                    sql::CANCELLED_REASON,
                    columns.uncounted,
                ],
            )?;
        }
    }
    Ok(())
}
