//! SQL that both stores' dialects read alike, written once.

/// The accounts with jobs left to attempt.
pub(crate) const ACCOUNTS_WITH_WORK: &str =
    "SELECT DISTINCT account FROM jobs WHERE state IN ('pending', 'retry') ORDER BY account";

/// The newest pass: number, when it opens, whether it ended.
pub(crate) const LATEST_PASS: &str =
    "SELECT pass, started_ms, ended_ms IS NOT NULL FROM passes ORDER BY pass DESC LIMIT 1";

/// Every job's standing, in import order.
pub(crate) const JOB_SUMMARIES: &str =
    "SELECT id, account, state, category, attempts, remote_id FROM jobs ORDER BY seq";

/// Lets the jobs held for review be retried.
pub(crate) const RELEASE_HELD: &str = "UPDATE jobs SET state = 'retry', reason = 'released for retry after review' WHERE state = 'needs-review'";

/// Every pass and how it ended.
pub(crate) const PASS_RESULTS: &str = "SELECT pass, result FROM passes ORDER BY pass";

/// How many jobs the batch holds.
pub(crate) const COUNT_JOBS: &str = "SELECT COUNT(*) FROM jobs";

/// Jobs failed or to retry, by the category of their latest failure.
pub(crate) const BY_CATEGORY: &str = "SELECT category, COUNT(*) FROM jobs WHERE state IN ('retry', 'failed') AND category IS NOT NULL GROUP BY category ORDER BY category";

/// Jobs by state.
pub(crate) const BY_STATE: &str = "SELECT state, COUNT(*) FROM jobs GROUP BY state";

/// Jobs failed for good, grouped by why, most frequent first.
pub(crate) const FAILURE_REASONS: &str = "SELECT category, COALESCE(gave_up || ': ' || reason, reason), COUNT(*), MIN(id) FROM jobs WHERE state = 'failed' GROUP BY 1, 2 ORDER BY 3 DESC, 4 LIMIT 10";

/// A [`crate::StoredJob`]'s columns, in the order both stores read them.
pub(crate) const JOB_COLUMNS: &str = "id, account, payload, idempotency_key, state, attempts, passes_attempted, infra_failures, not_before_ms";
