//! [`write_group`]: the attempts' writes of one group, in one statement
//! that takes them as arrays, so a group costs one round trip and one
//! commit however many writes it holds.
//!
//! Each write is still answered on its own: a begin that finds its job
//! taken over or cancelled says so, without failing the others. A job (or
//! an attempt) that a group names twice is written by a second statement
//! after the first, so the group reads as its writes one after another.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use deadpool_postgres::Client;

use super::NOW;
use super::outage::Step;
use crate::model::{FailureColumns, stored_ms};
use crate::sql;
use crate::{AttemptId, AttemptOutcome, Decided, JobState, RunPass, StoreError, StoredJob};
use orchestrator_contract::Receipt;

/// One begin of a group: the job as claimed, and where it runs.
pub(super) type Begin<'w> = (&'w StoredJob, RunPass);

/// One finish of a group: the attempt, and how it ended.
pub(super) type Finish<'w> = (AttemptId, &'w AttemptOutcome);

/// Records the outcomes `finishes` (and their jobs' new states) and the
/// attempts `begins` as in flight, each statement in a transaction of its
/// own; answers each begin with its attempt, or why it may not begin.
///
/// An attempt already finished (a retried commit) or taken over after its
/// process lost the lease changes nothing. Only the process that holds a
/// job may begin it: one whose lease expired and was taken over may not,
/// whatever it still believes; the lease starts again with the attempt.
///
/// A statement writes a group's finishes and begins side by side, each
/// seeing the database as it was before either: they never meet, as a
/// job has one attempt in flight at most (an attempt begins only from
/// `pending` or `retry`; its job leaves `running` only as it ends or
/// becomes uncertain), so a finish releases a running job and a begin
/// takes a waiting one.
pub(super) async fn write_group(
    client: &Client,
    lease: Duration,
    begins: &[Begin<'_>],
    finishes: &[Finish<'_>],
) -> Step<Vec<Result<AttemptId, StoreError>>> {
    // The arrays `f` and `b` are limited to as many writes as they hold:
    // the planner then counts each as one row, not ten (it cannot see into
    // an array it is not given), and looks each write's row up by its key
    // rather than scanning a table it believes small. A connection plans
    // the statement once and keeps the plan (see
    // `writer::CONNECTION_SETUP`).
    let statement = client
        .prepare_cached(&format!(
            "WITH now AS MATERIALIZED (SELECT {NOW} AS ms),
             f AS (SELECT * FROM unnest($1::bigint[], $2::bool[], $3::text[], $4::text[],
                          $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                          $10::bigint[], $11::text[], $12::text[], $13::text[], $14::text[],
                          $15::text[], $16::bigint[], $17::int[], $18::int[])
                   AS f(attempt, succeeded, remote_id, url, failure, fault, category, reason,
                        decided_by, retry_after_ms, decision, retry_scope, consulted, state,
                        gave_up, not_before_ms, infra, uncounted)
                   LIMIT cardinality($1)),
             finished AS (
                UPDATE attempts a SET
                       outcome = CASE WHEN f.succeeded THEN 'succeeded' ELSE 'failed' END,
                       ended_ms = (SELECT ms FROM now), remote_id = f.remote_id, url = f.url,
                       failure = f.failure, fault = f.fault, category = f.category,
                       reason = f.reason, decided_by = f.decided_by,
                       retry_after_ms = f.retry_after_ms, decision = f.decision,
                       retry_scope = f.retry_scope, consulted = f.consulted
                FROM f WHERE a.id = f.attempt AND a.outcome = 'in-flight'
                RETURNING a.job_id, f.*),
             released AS (
                UPDATE jobs SET
                       state = CASE WHEN f.succeeded THEN 'succeeded'
                                    WHEN jobs.cancel_requested = 1 THEN 'cancelled'
                                    ELSE f.state END,
                       remote_id = CASE WHEN f.succeeded THEN f.remote_id ELSE jobs.remote_id END,
                       url = CASE WHEN f.succeeded THEN f.url ELSE jobs.url END,
                       not_before_ms = f.not_before_ms, category = f.category,
                       reason = CASE WHEN f.succeeded THEN NULL
                                     WHEN jobs.cancel_requested = 1 THEN $19
                                     ELSE f.reason END,
                       decided_by = f.decided_by, gave_up = f.gave_up,
                       cancel_requested = CASE WHEN f.succeeded THEN 0
                                               ELSE jobs.cancel_requested END,
                       infra_failures = jobs.infra_failures + f.infra,
                       passes_attempted = jobs.passes_attempted - f.uncounted,
                       last_pass = jobs.last_pass - f.uncounted,
                       lease_process = NULL, lease_until_ms = NULL
                FROM finished f WHERE jobs.id = f.job_id),
             b AS (SELECT * FROM unnest($20::text[], $21::int[], $22::int[], $23::int[],
                                        $24::bigint[])
                   AS b(job_id, run, pass, attempts, claimed_by)
                   LIMIT cardinality($20)),
             begun AS (
                UPDATE jobs SET state = 'running', attempts = jobs.attempts + 1,
                       passes_attempted = jobs.passes_attempted + 1, last_pass = b.pass,
                       lease_until_ms = (SELECT ms FROM now) + $25
                FROM b
                WHERE jobs.id = b.job_id AND jobs.state IN ('pending', 'retry')
                  AND jobs.last_pass < b.pass AND jobs.attempts = b.attempts
                  AND (b.claimed_by IS NULL OR jobs.lease_process = b.claimed_by)
                RETURNING jobs.id, jobs.lease_process, jobs.idempotency_key, jobs.attempts,
                          b.run, b.pass)
             INSERT INTO attempts (job_id, run, process_id, pass, number, idempotency_key, started_ms)
             SELECT id, run, lease_process, pass, attempts, idempotency_key, (SELECT ms FROM now)
             FROM begun
             RETURNING job_id, id"
        ))
        .await?;
    let lease = lease.as_millis() as i64;
    // A failure's columns, worked out once.
    let ended: Vec<(AttemptId, Ended<'_>)> = finishes
        .iter()
        .map(|&(attempt, outcome)| (attempt, Ended::of(outcome)))
        .collect();
    let begin_rounds = rounds(begins.iter().map(|(job, _)| job.id.as_str()));
    let finish_rounds = rounds(ended.iter().map(|(attempt, _)| attempt.0));
    let mut begun: Vec<Option<AttemptId>> = vec![None; begins.len()];
    for round in 0..begin_rounds.len().max(finish_rounds.len()) {
        let mut f = FinishArrays::default();
        for &i in finish_rounds.get(round).map_or(&[][..], Vec::as_slice) {
            f.push(ended[i].0, &ended[i].1);
        }
        let mut b = BeginArrays::default();
        let these = begin_rounds.get(round).map_or(&[][..], Vec::as_slice);
        for &i in these {
            b.push(begins[i]);
        }
        let rows = client
            .query(
                &statement,
                &[
                    &f.attempt,
                    &f.succeeded,
                    &f.remote_id,
                    &f.url,
                    &f.failure,
                    &f.fault,
                    &f.category,
                    &f.reason,
                    &f.decided_by,
                    &f.retry_after_ms,
                    &f.decision,
                    &f.retry_scope,
                    &f.consulted,
                    &f.state,
                    &f.gave_up,
                    &f.not_before_ms,
                    &f.infra,
                    &f.uncounted,
                    &sql::CANCELLED_REASON,
                    &b.job_id,
                    &b.run,
                    &b.pass,
                    &b.attempts,
                    &b.claimed_by,
                    &lease,
                ],
            )
            .await?;
        // A round names each job once.
        let by_job: HashMap<&str, i64> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        for &i in these {
            begun[i] = by_job.get(begins[i].0.id.as_str()).map(|&id| AttemptId(id));
        }
    }
    let mut answers = Vec::with_capacity(begins.len());
    for (&(job, at), begun) in begins.iter().zip(begun) {
        answers.push(match begun {
            Some(attempt) => Ok(attempt),
            None => not_begun(client, job, at).await?,
        });
    }
    Ok(answers)
}

/// Why `job` did not begin: an earlier try of its group that committed
/// before its answer was lost began it (the answer is that attempt), or it
/// is cancelled or held by another process now.
async fn not_begun(
    client: &Client,
    job: &StoredJob,
    at: RunPass,
) -> Step<Result<AttemptId, StoreError>> {
    let (run, pass) = (at.run as i32, at.pass as i32);
    let number = job.attempts as i32 + 1;
    let claimed_by = job.claimed_by.map(|process| process.0);
    // Made by this process, in flight: another process's attempt of the job
    // never is the answer.
    let existing = client
        .query_opt(
            "SELECT id FROM attempts WHERE job_id = $1 AND run = $2 AND pass = $3 AND number = $4
               AND outcome = 'in-flight' AND ($5::bigint IS NULL OR process_id = $5)",
            &[&job.id, &run, &pass, &number, &claimed_by],
        )
        .await?;
    if let Some(row) = existing {
        return Ok(Ok(AttemptId(row.get(0))));
    }
    let state: Option<String> = client
        .query_opt("SELECT state FROM jobs WHERE id = $1", &[&job.id])
        .await?
        .map(|row| row.get(0));
    Ok(Err(match state {
        Some(state) if state == JobState::Cancelled.as_str() => StoreError::NotEligible {
            job: job.id.clone(),
            state,
        },
        _ => StoreError::LeaseLost(job.id.clone()),
    }))
}

/// The begins of one statement, column by column.
#[derive(Default)]
struct BeginArrays<'w> {
    job_id: Vec<&'w str>,
    run: Vec<i32>,
    pass: Vec<i32>,
    attempts: Vec<i32>,
    claimed_by: Vec<Option<i64>>,
}

impl<'w> BeginArrays<'w> {
    fn push(&mut self, (job, at): Begin<'w>) {
        self.job_id.push(&job.id);
        self.run.push(at.run as i32);
        self.pass.push(at.pass as i32);
        self.attempts.push(job.attempts as i32);
        self.claimed_by
            .push(job.claimed_by.map(|process| process.0));
    }
}

/// How an attempt ended, as its columns say it.
enum Ended<'w> {
    Succeeded(&'w Receipt),
    Failed {
        classification: &'w Decided,
        not_before_ms: Option<u64>,
        columns: FailureColumns,
    },
}

impl<'w> Ended<'w> {
    fn of(outcome: &'w AttemptOutcome) -> Self {
        match outcome {
            AttemptOutcome::Succeeded(receipt) => Ended::Succeeded(receipt),
            AttemptOutcome::Failed {
                failure,
                fault,
                classification,
                decision,
                not_before_ms,
            } => Ended::Failed {
                classification,
                not_before_ms: *not_before_ms,
                columns: FailureColumns::of(
                    failure.as_ref(),
                    fault.as_ref(),
                    classification,
                    decision,
                ),
            },
        }
    }
}

/// The finishes of one statement, column by column.
#[derive(Default)]
struct FinishArrays<'w> {
    attempt: Vec<i64>,
    succeeded: Vec<bool>,
    remote_id: Vec<Option<&'w str>>,
    url: Vec<Option<&'w str>>,
    failure: Vec<Option<&'w str>>,
    fault: Vec<Option<&'w str>>,
    category: Vec<Option<&'w str>>,
    reason: Vec<Option<&'w str>>,
    decided_by: Vec<Option<&'w str>>,
    retry_after_ms: Vec<Option<i64>>,
    decision: Vec<Option<&'w str>>,
    retry_scope: Vec<Option<&'w str>>,
    consulted: Vec<Option<&'w str>>,
    state: Vec<Option<&'w str>>,
    gave_up: Vec<Option<&'w str>>,
    not_before_ms: Vec<Option<i64>>,
    infra: Vec<i32>,
    uncounted: Vec<i32>,
}

impl<'w> FinishArrays<'w> {
    fn push(&mut self, attempt: AttemptId, ended: &'w Ended<'w>) {
        self.attempt.push(attempt.0);
        match ended {
            Ended::Succeeded(receipt) => {
                self.succeeded.push(true);
                self.remote_id.push(Some(&receipt.remote_id));
                self.url.push(receipt.url.as_deref());
                for column in [
                    &mut self.failure,
                    &mut self.fault,
                    &mut self.category,
                    &mut self.reason,
                    &mut self.decided_by,
                    &mut self.decision,
                    &mut self.retry_scope,
                    &mut self.consulted,
                    &mut self.state,
                    &mut self.gave_up,
                ] {
                    column.push(None);
                }
                self.retry_after_ms.push(None);
                self.not_before_ms.push(None);
                self.infra.push(0);
                self.uncounted.push(0);
            }
            Ended::Failed {
                classification,
                not_before_ms,
                columns,
            } => {
                self.succeeded.push(false);
                self.remote_id.push(None);
                self.url.push(None);
                self.failure.push(columns.failure.as_deref());
                self.fault.push(columns.fault.as_deref());
                self.category.push(Some(classification.category.as_str()));
                self.reason.push(Some(&classification.reason));
                self.decided_by.push(Some(&classification.decided_by));
                self.decision.push(Some(&columns.decision));
                self.retry_scope.push(columns.retry_scope);
                self.consulted.push(columns.consulted.as_deref());
                self.state.push(Some(columns.state));
                self.gave_up.push(columns.gave_up.as_deref());
                self.retry_after_ms.push(columns.retry_after_ms);
                self.not_before_ms.push(not_before_ms.map(stored_ms));
                self.infra.push(columns.infra);
                self.uncounted.push(columns.uncounted);
            }
        }
    }
}

/// The indexes of `keys` in rounds that name each key once: a key's first
/// write goes in the first round, its second in the second, and so on.
fn rounds<K: Eq + Hash>(keys: impl Iterator<Item = K>) -> Vec<Vec<usize>> {
    let mut seen: HashMap<K, usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, key) in keys.enumerate() {
        let times = seen.entry(key).or_insert(0);
        if rounds.len() <= *times {
            rounds.push(Vec::new());
        }
        rounds[*times].push(i);
        *times += 1;
    }
    rounds
}
