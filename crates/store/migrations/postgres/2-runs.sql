-- Schema 2. What schema 1 called runs were processes; they keep their ids
-- (attempts keep theirs in process_id, leases in lease_process). The passes
-- of a batch were one series: they become run 1, open unless its last pass
-- ended it, with the settings of the last process that worked on it.
-- Per-job budgets so far are run 1's. Jobs may be cancelled.
ALTER TABLE runs RENAME TO processes;
ALTER TABLE processes ADD COLUMN run INTEGER;
ALTER TABLE attempts RENAME COLUMN run_id TO process_id;
ALTER TABLE attempts ADD COLUMN run INTEGER;
ALTER TABLE jobs RENAME COLUMN lease_run TO lease_process;
ALTER INDEX jobs_by_lease_run RENAME TO jobs_by_lease_process;
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
CREATE TABLE runs (
    run              INTEGER PRIMARY KEY,
    started_ms       BIGINT NOT NULL,
    ended_ms         BIGINT,
    state            TEXT NOT NULL,
    config           TEXT NOT NULL,
    accounts         TEXT
);
INSERT INTO runs (run, started_ms, ended_ms, state, config, accounts)
SELECT 1,
       COALESCE((SELECT MIN(started_ms) FROM processes), (SELECT MIN(started_ms) FROM passes), 0),
       CASE WHEN ended THEN (SELECT MAX(ended_ms) FROM passes) END,
       CASE WHEN ended THEN 'finished' ELSE 'open' END,
       COALESCE((SELECT config::json->>'retry' FROM processes ORDER BY id DESC LIMIT 1),
                '{"max_passes":3,"retry_delay_seconds":30,"infrastructure_retry_limit":3,"retry_unknown_errors":true,"retry_non_retryable":false}'),
       (SELECT config::json->>'accounts' FROM processes ORDER BY id DESC LIMIT 1)
FROM (SELECT (SELECT ended_ms IS NOT NULL AND COALESCE(result, '') NOT LIKE '% jobs to retry'
              FROM passes ORDER BY pass DESC LIMIT 1) AS ended) AS latest
WHERE EXISTS (SELECT 1 FROM processes) OR EXISTS (SELECT 1 FROM passes);
UPDATE processes SET run = 1;
UPDATE attempts SET run = 1;
ALTER TABLE passes ADD COLUMN run INTEGER NOT NULL DEFAULT 1;
ALTER TABLE passes ALTER COLUMN run DROP DEFAULT;
ALTER TABLE passes DROP CONSTRAINT passes_pkey;
ALTER TABLE passes ADD PRIMARY KEY (run, pass);
DROP INDEX attempts_by_pass;
CREATE INDEX attempts_by_pass ON attempts (run, pass, outcome);
