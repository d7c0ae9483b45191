//! SQL that both stores' dialects read alike, written once. (SQLite reads
//! `$1` as a parameter too, so statements with one parameter are shared.)

/// The accounts whose jobs a run may yet attempt.
pub(crate) const ACCOUNTS_WITH_WORK: &str = "SELECT DISTINCT account FROM jobs WHERE state NOT IN ('succeeded', 'cancelled') ORDER BY account";

/// The newest pass of run `$1`: number, when it opens, whether it ended.
pub(crate) const LATEST_PASS: &str = "SELECT pass, started_ms, ended_ms IS NOT NULL FROM passes WHERE run = $1 ORDER BY pass DESC LIMIT 1";

/// Where run `$1` stands.
pub(crate) const RUN_STATE: &str = "SELECT state FROM runs WHERE run = $1";

/// Finishes the open run `$2` at `$1`. (SQLite numbers `$n` parameters in
/// the order they first appear, so they appear in order.)
pub(crate) const FINISH_RUN: &str =
    "UPDATE runs SET state = 'finished', ended_ms = $1 WHERE run = $2 AND state = 'open'";

/// Every job's standing, in import order.
pub(crate) const JOB_SUMMARIES: &str =
    "SELECT id, account, state, category, attempts, remote_id FROM jobs ORDER BY seq";

/// Lets the jobs held for review be retried.
pub(crate) const RELEASE_HELD: &str = "UPDATE jobs SET state = 'retry', reason = 'released for retry after review' WHERE state = 'needs-review'";

/// Every pass of run `$1` and how it ended.
pub(crate) const PASS_RESULTS: &str =
    "SELECT pass, result FROM passes WHERE run = $1 ORDER BY pass";

/// How many jobs the batch holds.
pub(crate) const COUNT_JOBS: &str = "SELECT COUNT(*) FROM jobs";

/// Jobs failed or to retry, by the category of their latest failure.
pub(crate) const BY_CATEGORY: &str = "SELECT category, COUNT(*) FROM jobs WHERE state IN ('retry', 'failed') AND category IS NOT NULL GROUP BY category ORDER BY category";

/// Failed jobs, by the category of their latest failure.
pub(crate) const FAILED_BY_CATEGORY: &str = "SELECT COALESCE(category, 'unknown'), COUNT(*) FROM jobs WHERE state = 'failed' GROUP BY 1 ORDER BY 1";

/// Jobs by state.
pub(crate) const BY_STATE: &str = "SELECT state, COUNT(*) FROM jobs GROUP BY state";

/// Failed jobs, grouped by why, most frequent first.
pub(crate) const FAILURE_REASONS: &str = "SELECT category, COALESCE(gave_up || ': ' || reason, reason), COUNT(*), MIN(id) FROM jobs WHERE state = 'failed' GROUP BY 1, 2 ORDER BY 3 DESC, 4 LIMIT 10";

/// How many runs there are.
pub(crate) const COUNT_RUNS: &str = "SELECT COUNT(*) FROM runs";

/// A [`crate::StoredJob`]'s columns, in the order both stores read them.
pub(crate) const JOB_COLUMNS: &str = "id, account, payload, idempotency_key, state, attempts, passes_attempted, infra_failures, not_before_ms";

/// A job's state and whether its cancellation waits for its attempt, for
/// `cancel` and `retry`.
pub(crate) const JOB_CONTROL: &str = "SELECT state, cancel_requested FROM jobs WHERE id = $1";

/// A job cancelled while an attempt of it is in flight: cancelled when the
/// attempt ends, unless it posted.
pub(crate) const CANCEL_AFTER_ATTEMPT: &str = "UPDATE jobs SET cancel_requested = 1 WHERE id = $1";

/// What the reason of a job cancelled by an operator says.
pub(crate) const CANCELLED_REASON: &str = "cancelled by an operator";

/// A job an operator cancelled. (A shared store also drops its lease.)
pub(crate) const CANCELLED: &str = "state = 'cancelled', reason = 'cancelled by an operator'";

/// A job an operator retried: eligible again, whatever its category, with
/// none of its run's budget used. (A shared store also drops its lease.)
pub(crate) const RETRIED: &str =
    "state = 'retry', gave_up = NULL, reason = 'retry requested by an operator',
    passes_attempted = 0, last_pass = 0, infra_failures = 0, cancel_requested = 0";

/// How many accounts have jobs.
pub(crate) const COUNT_ACCOUNTS: &str = "SELECT COUNT(DISTINCT account) FROM jobs";

/// The jobs by state of the accounts `$1` (limit) from `$2` (offset), in
/// name order; grouped in SQL, so a page costs its accounts' rows only.
pub(crate) const ACCOUNTS_PAGE: &str = "SELECT account, state, COUNT(*) FROM jobs
     WHERE account IN (SELECT DISTINCT account FROM jobs ORDER BY account LIMIT $1 OFFSET $2)
     GROUP BY account, state ORDER BY account, state";

/// Attempts that ended since `$2`, by outcome, in buckets of `$1` ms.
pub(crate) const THROUGHPUT: &str = "SELECT ended_ms / $1,
            SUM(CASE WHEN outcome = 'succeeded' THEN 1 ELSE 0 END),
            SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END)
     FROM attempts WHERE ended_ms >= $2 GROUP BY 1 ORDER BY 1";

/// A page of jobs: `$1` state (or NULL for any), `$2` account (or NULL),
/// `$3` limit, `$4` offset.
pub(crate) const JOBS_PAGE: &str = "SELECT id, account, state, category, attempts, remote_id
     FROM jobs WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR account = $2)
     ORDER BY seq LIMIT $3 OFFSET $4";

/// How many jobs [`JOBS_PAGE`] pages through (`$1` state, `$2` account).
pub(crate) const JOBS_MATCHING: &str =
    "SELECT COUNT(*) FROM jobs WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR account = $2)";

/// Each attempt started since `$1` (ms): its account and start, oldest
/// first — what the rate budgets have spent. (Through the index on
/// `ended_ms`: an attempt ends after it starts, or has not ended.)
pub(crate) const SPENT_SINCE: &str = "SELECT j.account, a.started_ms
     FROM attempts a JOIN jobs j ON j.id = a.job_id
     WHERE (a.ended_ms >= $1 OR a.ended_ms IS NULL) AND a.started_ms >= $1
     ORDER BY a.started_ms, a.id";
