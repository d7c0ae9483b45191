//! The store: the single source of truth for a batch.
//!
//! Start from the [`Store`] trait: jobs imported from the jobs file, every
//! attempt (recorded as in flight before the plugin runs, and with its
//! outcome after), the runs (each a series of passes with its own budgets,
//! see [`RunStore::join_run`]) and the processes that worked on them. It is
//! two traits in one: [`RunStore`], what a run writes and steers by, and
//! [`ReadStore`], what `--status`, `report` and `explain` read.
//! [`SqliteStore`] is the embedded default; [`PostgresStore`] lets processes
//! on many machines share one batch, under leases. The status command reads only
//! the store, so it works from another terminal while a run is going on.
//!
//! Nothing here knows about WebAssembly; the runner hands in plain
//! [`orchestrator_contract`] values.

mod durable;
mod error;
mod join;
mod lock;
mod model;
mod postgres;
mod sql;
mod sqlite;
mod status;
mod store;
mod write;

pub use durable::Durable;
pub use error::{Result, StoreError};
pub use lock::{Acquired, RunLock, holder as run_lock_holder};
pub use model::*;
pub use postgres::{
    DEFAULT_LEASE, POSTGRES_SCHEMA_VERSION, PostgresStore, WORKER_GRANTS, is_postgres_url,
    without_password, worker_grants,
};
pub use postgres::{
    DEFAULT_POOL, PgOptions, SslMode, TlsOptions, WRITER_CONNECTIONS, url_has_password,
};
pub use sqlite::SqliteStore;
pub use store::{ReadStore, RunStore, Store};

/// The store traits, for callers that name a concrete store
/// (`SqliteStore::open(…)?.status()`): `use orchestrator_store::prelude::*;`.
pub mod prelude {
    pub use crate::{ReadStore, RunStore, Store};
}

/// The idempotency key of a job: stable across attempts, passes and
/// re-imports, because it depends only on the account and the job id.
pub fn idempotency_key(account: &str, job_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("orchestrator/v1\0{account}\0{job_id}"));
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("orch-{hex}")
}

#[cfg(test)]
mod tests;
