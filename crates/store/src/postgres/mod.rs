//! [`PostgresStore`]: one PostgreSQL database that many orchestrator
//! processes, on many machines, share.
//!
//! Processes agree on the run they work on (see [`crate::join`]), claim jobs
//! in batches (`FOR UPDATE SKIP LOCKED`, one claim at a time so an account is
//! never split between two processes) and hold them under a lease they
//! renew. A job's lease ends with its attempt's outcome.
//! A process that dies stops renewing; once its leases expire, the next
//! claim anywhere takes its jobs back, and its attempts in flight become
//! `uncertain`, exactly as after a local crash: retried with the same
//! idempotency key, or held for review past the platform's key window.
//!
//! Every call runs on the store's own small runtime, so the caller may be
//! synchronous or async. A call that loses its connection (the server
//! restarted, the network dropped) is retried until the database answers
//! again or [`outage::OUTAGE_LIMIT`] passes; each write is idempotent, so a
//! retry of a transaction whose commit was not acknowledged does no harm.
//!
//! Connections may use TLS ([`tls`]: libpq's `sslmode`s, over rustls), and
//! find their password where libpq does ([`password`]); [`PgOptions`] says
//! how many there are, and [`PostgresStore::open_with`] takes it.
//!
//! The parts: [`schema`] (migrations), [`url`] (the URL as messages show
//! it), [`connect`] (a URL and options made a connection, and why one
//! failed said with what to change), [`outage`] (calls on the store's
//! runtime, retried through an outage), [`writer`] (the attempts' writes,
//! committed in groups) and [`attempts`] (their SQL), [`leases`] (claims,
//! renewals, taking back what a lost process held), [`runs`] (which run a
//! process joins), [`writes`] and [`reads`] (the two halves of the store).

mod attempts;
mod connect;
mod leases;
mod outage;
mod password;
mod reads;
mod runs;
mod schema;
#[cfg(test)]
mod tests;
mod tls;
mod url;
mod writer;
mod writes;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize};
use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::mpsc;
use tokio_postgres::Row;

use crate::model::read_ms;
use crate::write::{Reply, Write};
use crate::{JobState, Result, StoreError, StoredJob};
use outage::Failure;

pub use leases::DEFAULT_LEASE;
pub use schema::{POSTGRES_SCHEMA_VERSION, WORKER_GRANTS, worker_grants};
pub use tls::{SslMode, TlsOptions};
pub use url::{is_postgres_url, url_has_password, without_password};

/// The database's clock, in ms since the epoch: leases are compared on one
/// clock, whichever machines the processes run on.
const NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Connections of a process's pool when [`PgOptions::pool_size`] is not
/// set (`--db-pool`).
pub const DEFAULT_POOL: usize = 16;

/// Connections a process opens beside its pool: its writers', one each.
pub const WRITER_CONNECTIONS: usize = writer::WRITERS;

/// How a [`PostgresStore`] connects, beside what its URL says.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// How long a process holds the jobs it claimed without renewing.
    pub lease: Duration,
    /// `sslmode`, `sslrootcert` (the URL's win) and `--ca-file`.
    pub tls: TlsOptions,
    /// Connections of the pool every call but the attempts' writes uses,
    /// made as they are needed: a process opens at most this many plus
    /// [`WRITER_CONNECTIONS`].
    pub pool_size: usize,
    /// A file holding the password alone, for a URL without one (before
    /// `PGPASSWORD` and the passfile, as libpq looks).
    pub password_file: Option<std::path::PathBuf>,
    /// Whether opening brings the schema up to date (it does unless a
    /// command must change nothing: a dry run). Without, a schema behind
    /// this build's is [`StoreError::NotMigrated`].
    pub migrate: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            lease: DEFAULT_LEASE,
            tls: TlsOptions::default(),
            pool_size: DEFAULT_POOL,
            password_file: None,
            migrate: true,
        }
    }
}

/// Many processes' store: see the module documentation.
pub struct PostgresStore {
    inner: Arc<Inner>,
    /// The attempts' writes go to these, in turn.
    writers: Vec<mpsc::UnboundedSender<(Write, Reply)>>,
    next_writer: AtomicUsize,
    /// Taken on drop, to shut down without blocking an async caller.
    runtime: Option<tokio::runtime::Runtime>,
}

struct Inner {
    pool: Pool,
    /// The writers' own connections, one each: see [`writer::CONNECTION_SETUP`].
    writers_pool: Pool,
    /// The URL without its password, for messages.
    shown: String,
    /// How it connects, for messages and `--status`.
    facts: connect::Facts,
    lease: Duration,
    /// The key window of this process (set as it joins its run), which its
    /// claims honour when they take back a dead process's attempts.
    key_window_ms: AtomicI64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.inner.shown)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PostgresStore {
    /// Connects to the database at `url`, applying the schema's migrations
    /// if it is new or older. Leases last `lease`; the rest of
    /// [`PgOptions`] is its default.
    pub fn open(url: &str, lease: Duration) -> Result<Self> {
        PostgresStore::open_with(
            url,
            &PgOptions {
                lease,
                ..PgOptions::default()
            },
        )
    }

    /// [`PostgresStore::open`] with `options`: TLS, the password, the
    /// pool's size.
    pub fn open_with(url: &str, options: &PgOptions) -> Result<Self> {
        let shown = without_password(url);
        let open_err = |reason: String| StoreError::Open {
            path: shown.clone(),
            reason,
        };
        let env = |name: &str| std::env::var_os(name);
        let connect::Connection { config, tls, facts } =
            connect::prepare(url, options, &env).map_err(open_err)?;
        let lease = options.lease;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("orchestrator-postgres")
            .enable_all()
            .build()
            .map_err(|e| open_err(format!("cannot start its runtime: {e}")))?;
        let writers_pool = pool_of(
            config.clone(),
            tls.clone(),
            writer::WRITERS,
            Some(writer::CONNECTION_SETUP),
        )
        .map_err(|e| open_err(e.to_string()))?;
        let pool = pool_of(config, tls, options.pool_size.max(1), None)
            .map_err(|e| open_err(e.to_string()))?;
        let inner = Arc::new(Inner {
            pool,
            writers_pool,
            shown: shown.clone(),
            facts: facts.clone(),
            lease,
            // Mastodon keeps idempotency keys for an hour; join_run sets it.
            key_window_ms: AtomicI64::new(3_600_000),
        });
        let writers = (0..writer::WRITERS)
            .map(|_| {
                let (sender, queue) = mpsc::unbounded_channel();
                runtime.spawn(writer::writer(inner.clone(), queue));
                sender
            })
            .collect();
        let store = PostgresStore {
            inner,
            writers,
            next_writer: AtomicUsize::new(0),
            runtime: Some(runtime),
        };
        // A first connection that fails is a wrong URL or a server that is
        // not there: say so at once rather than retrying for minutes.
        let inner = store.inner.clone();
        let migrate = options.migrate;
        store
            .block(async move {
                if migrate {
                    schema::migrate(&inner).await
                } else {
                    schema::current(&inner).await
                }
            })
            .map_err(|e| match e {
                Failure::Connection(reason) | Failure::Store(StoreError::Postgres(reason)) => {
                    open_err(connect::explained(&reason, &facts))
                }
                Failure::Store(e) => e,
            })?;
        Ok(store)
    }
}

/// A pool of up to `size` connections made with `config`, each running
/// `setup` (SQL) first when there is one.
fn pool_of(
    config: tokio_postgres::Config,
    tls: tls::MakeRustls,
    size: usize,
    setup: Option<&'static str>,
) -> std::result::Result<Pool, deadpool_postgres::BuildError> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1);
    if let Some(setup) = setup {
        builder = builder.post_create(Hook::async_fn(move |client, _| {
            Box::pin(async move {
                client
                    .batch_execute(setup)
                    .await
                    .map_err(HookError::Backend)
            })
        }));
    }
    builder.build()
}

/// A job as a statement returns it, its columns in [`crate::sql::JOB_COLUMNS`]
/// order.
fn job_from_row(row: &Row) -> StoredJob {
    let state: String = row.get(4);
    StoredJob {
        id: row.get(0),
        account: row.get(1),
        payload: row.get(2),
        idempotency_key: row.get(3),
        state: JobState::parse(&state).unwrap_or(JobState::Pending),
        attempts: row.get::<_, i32>(5) as u32,
        passes_attempted: row.get::<_, i32>(6) as u32,
        infrastructure_failures: row.get::<_, i32>(7) as u32,
        not_before_ms: row.get::<_, Option<i64>>(8).map(read_ms),
        claimed_by: None,
    }
}

/// The accounts filter as a parameter: `NULL` for every account.
fn accounts_param(accounts: Option<&[String]>) -> Option<Vec<String>> {
    accounts.map(<[String]>::to_vec)
}
