-- Schema 5: what the dashboard pages through: accounts, and attempts by time.
CREATE INDEX jobs_by_account ON jobs (account, state);
CREATE INDEX attempts_by_end ON attempts (ended_ms);
