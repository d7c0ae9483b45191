//! [`begin_attempt_in`] and [`finish_attempt_in`]: an attempt's two writes,
//! each one statement, in a writer's transaction.

use std::time::Duration;

use super::NOW;
use super::outage::{Failure, Step};
use crate::model::{FailureColumns, stored_ms};
use crate::sql;
use crate::{AttemptId, AttemptOutcome, JobState, RunPass, StoreError, StoredJob};

/// Records an attempt as in flight, in `tx`: one statement, prepared once
/// per connection.
pub(super) async fn begin_attempt_in(
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
pub(super) async fn finish_attempt_in(
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
