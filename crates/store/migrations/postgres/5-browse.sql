-- Schema 5: attempts by when they ended, for the dashboard's throughput.
-- (Accounts are paged through jobs_by_account_lease, which begins with the
-- account.)
CREATE INDEX attempts_by_end ON attempts (ended_ms);
