-- Schema 1: jobs, attempts, passes of the batch, runs (processes) with leases.
CREATE TABLE jobs (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    account          TEXT NOT NULL,
    payload          TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    passes_attempted INTEGER NOT NULL DEFAULT 0,
    last_pass        INTEGER NOT NULL DEFAULT 0,
    infra_failures   INTEGER NOT NULL DEFAULT 0,
    not_before_ms    BIGINT,
    category         TEXT,
    reason           TEXT,
    decided_by       TEXT,
    gave_up          TEXT,
    remote_id        TEXT,
    url              TEXT,
    lease_run        BIGINT,
    lease_until_ms   BIGINT
);
CREATE INDEX jobs_by_state ON jobs (state, last_pass, seq);
CREATE INDEX jobs_by_account_lease ON jobs (account, lease_until_ms);
CREATE INDEX jobs_by_lease_run ON jobs (lease_run);
CREATE TABLE attempts (
    id               BIGSERIAL PRIMARY KEY,
    job_id           TEXT NOT NULL REFERENCES jobs (id),
    run_id           BIGINT,
    pass             INTEGER NOT NULL,
    number           INTEGER NOT NULL,
    idempotency_key  TEXT NOT NULL,
    started_ms       BIGINT NOT NULL,
    ended_ms         BIGINT,
    outcome          TEXT NOT NULL DEFAULT 'in-flight',
    remote_id        TEXT,
    url              TEXT,
    failure          TEXT,
    fault            TEXT,
    category         TEXT,
    reason           TEXT,
    decided_by       TEXT,
    retry_after_ms   BIGINT,
    decision         TEXT,
    retry_scope      TEXT
);
CREATE INDEX attempts_by_job ON attempts (job_id);
CREATE INDEX attempts_by_pass ON attempts (pass, outcome);
CREATE TABLE passes (
    pass             INTEGER PRIMARY KEY,
    started_ms       BIGINT NOT NULL,
    ended_ms         BIGINT,
    result           TEXT
);
CREATE TABLE runs (
    id               BIGSERIAL PRIMARY KEY,
    pid              INTEGER NOT NULL,
    host             TEXT NOT NULL,
    started_ms       BIGINT NOT NULL,
    heartbeat_ms     BIGINT NOT NULL,
    ended_ms         BIGINT,
    state            TEXT NOT NULL,
    stop_requested   BOOLEAN NOT NULL DEFAULT false,
    config           TEXT NOT NULL
);
CREATE TABLE meta (
    key              TEXT PRIMARY KEY,
    value            TEXT NOT NULL
);
