-- Schema 4: the tokens platforms issued, sealed by the host.
CREATE TABLE tokens (
    account      TEXT PRIMARY KEY,
    sealed       BYTEA NOT NULL,
    updated_ms   BIGINT NOT NULL
);
