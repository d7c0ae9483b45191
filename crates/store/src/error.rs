//! [`StoreError`]: why the store could not do what was asked.

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state file {path}: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "the state file {path} was written by a newer orchestrator (schema {found}, this one knows {known}); use a newer orchestrator or another --state-file"
    )]
    NewerSchema {
        path: String,
        found: i64,
        known: i64,
    },
    #[error(
        "the database {path} is at schema version {found} and this orchestrator needs {needs}, but this role may not change the schema ({reason}); run `orchestrator migrate --state-file URL` as the role that owns it (with --grant-to ROLE for the workers), then run again"
    )]
    NotSchemaOwner {
        path: String,
        found: i64,
        needs: i64,
        reason: String,
    },
    #[error(
        "the database {path} is at schema version {found} and this orchestrator needs {needs}: a run would migrate it first; run `orchestrator migrate --state-file URL` (as the role that owns the schema) to do it now"
    )]
    NotMigrated {
        path: String,
        found: i64,
        needs: i64,
    },
    #[error(
        "the state file {path} is read-only; make it writable (chmod u+w) or use another --state-file"
    )]
    ReadOnly { path: String },
    #[error(
        "another run{} is working on {path}; wait for it, stop it with --stop-all, or give --take-over (alias --force-kill-ports) to stop it and take over",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked { path: String, pid: Option<u32> },
    #[error("the state file's database failed: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("the PostgreSQL store failed: {0}")]
    Postgres(String),
    /// Another process took the job over after this process's lease
    /// expired.
    #[error("job {0} was taken over by another process after this one's lease expired")]
    LeaseLost(String),
    /// The job changed since it was handed out (an operator cancelled it):
    /// it is not to be attempted now.
    #[error("job {job} is {state} now, not to be attempted")]
    NotEligible { job: String, state: String },
    #[error(
        "run {run} is in progress on other processes with other settings: {differences}; start this process with the same settings, or wait for that run to finish"
    )]
    RunInProgress { run: u32, differences: String },
    /// The process lost touch with the store for longer than its lease, and
    /// meanwhile its run was closed for a new one.
    #[error(
        "run {0} was closed while this process could not reach the store; the run that replaced it goes on with the work"
    )]
    RunClosed(u32),
    #[error("no job {} in the batch", .0.iter().map(|id| format!("{id:?}")).collect::<Vec<_>>().join(", "))]
    UnknownJobs(Vec<String>),
    #[error("the state file holds a value it cannot read: {0}")]
    Corrupt(String),
    #[error("the state file's database could not commit: {0}")]
    Commit(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
