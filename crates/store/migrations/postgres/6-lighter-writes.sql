-- Schema 6: fewer index entries for each attempt's writes, and claims that
-- read the jobs they may take, not the whole batch.
-- Jobs are looked up by the process holding their lease only while one
-- holds it, so only those are indexed by it: a job released by its
-- attempt's outcome leaves the index rather than adding an entry for NULL.
DROP INDEX jobs_by_lease_process;
CREATE INDEX jobs_by_lease_process ON jobs (lease_process) WHERE lease_process IS NOT NULL;
-- A claim reads the jobs still to attempt in import order, the first few
-- of them: they alone are indexed so.
CREATE INDEX jobs_open ON jobs (seq) WHERE state IN ('pending', 'retry');
-- Attempts are counted by run and pass; their outcome, which every finish
-- changes, is read from the row.
DROP INDEX attempts_by_pass;
CREATE INDEX attempts_by_pass ON attempts (run, pass);
