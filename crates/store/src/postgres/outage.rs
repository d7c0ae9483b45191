//! [`Failure`]: why a call on the PostgreSQL store failed, and whether it
//! is worth another try.
//!
//! Every call runs on the store's own runtime ([`PostgresStore::call`] and
//! the single-statement helpers built on it), and one that loses its
//! connection is retried ([`retrying`]) until the database answers again or
//! [`OUTAGE_LIMIT`] passes.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Inner, PostgresStore};
use crate::{Result, StoreError};

/// How long a call keeps retrying while the database cannot be reached.
pub(super) const OUTAGE_LIMIT: Duration = Duration::from_secs(120);

/// A call's failure: the connection (retried) or anything else (not).
pub(super) enum Failure {
    Connection(String),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        // Class 08 is a connection exception; 57P01-57P03 are the server
        // shutting down, crashing, or not accepting connections yet; a
        // deadlock or serialization failure (40P01, 40001) is worth another
        // try too.
        let lost = e.is_closed()
            || e.code().is_some_and(|c| {
                let c = c.code();
                c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "40P01" | "40001")
            })
            || std::error::Error::source(&e)
                .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
        let text = match e.as_db_error() {
            // A refused login (class 28) carries its code: what the server
            // says is in its own language, and the hints go by the code.
            Some(db) if db.code().code().starts_with("28") => {
                format!("{} (SQLSTATE {})", db.message(), db.code().code())
            }
            Some(db) => db.message().to_owned(),
            None => super::connect::chain(&e),
        };
        // Too many clients: the server refuses new connections until some
        // close, so it is worth waiting for; the message says what to change.
        if e.code() == Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS) {
            return Failure::Connection(format!("{text} ({})", super::connect::TOO_MANY_CLIENTS));
        }
        if lost {
            Failure::Connection(text)
        } else {
            Failure::Store(StoreError::Postgres(text))
        }
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Failure::Connection(other.to_string()),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

pub(super) type Step<T> = std::result::Result<T, Failure>;

/// A statement's parameters, owned, so a retried call can bind them again.
pub(super) type Params = Vec<Box<dyn ToSql + Send + Sync>>;

pub(super) fn borrowed(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

impl Failure {
    pub(super) fn into_store_error(self) -> StoreError {
        match self {
            Failure::Store(e) => e,
            Failure::Connection(reason) => StoreError::Postgres(reason),
        }
    }
}

impl PostgresStore {
    /// Runs `fut` on the store's runtime and waits for it.
    pub(super) fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Step<T>> + Send + 'static,
    ) -> Step<T> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the store")
            .spawn(async move {
                let _ = sender.send(fut.await);
            });
        receiver
            .recv()
            .unwrap_or_else(|_| Err(Failure::Connection("the store's runtime stopped".into())))
    }

    /// One call, retried while the database cannot be reached.
    pub(super) fn call<T, F, Fut>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(Arc<Inner>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Step<T>> + Send,
    {
        let inner = self.inner.clone();
        self.block(async move { retrying(&inner, &op).await })
            .map_err(Failure::into_store_error)
    }

    /// One statement on its own (retried like every call), each row turned
    /// into a `T` by `map`.
    pub(super) fn rows<T: Send + 'static>(
        &self,
        statement: &str,
        params: Params,
        map: fn(&Row) -> T,
    ) -> Result<Vec<T>> {
        let (statement, params) = (Arc::<str>::from(statement), Arc::new(params));
        self.call(move |inner: Arc<Inner>| {
            let (statement, params) = (statement.clone(), params.clone());
            async move {
                let client = inner.pool.get().await?;
                let rows = client.query(&*statement, &borrowed(&params)).await?;
                Ok(rows.iter().map(map).collect())
            }
        })
    }

    /// [`PostgresStore::rows`] for a statement with at most one row.
    pub(super) fn row<T: Send + 'static>(
        &self,
        statement: &str,
        params: Params,
        map: fn(&Row) -> T,
    ) -> Result<Option<T>> {
        Ok(self.rows(statement, params, map)?.into_iter().next())
    }

    /// [`PostgresStore::rows`] for a `SELECT COUNT(*)`.
    pub(super) fn count(&self, statement: &str, params: Params) -> Result<u64> {
        let count = self.row(statement, params, |r| r.get::<_, i64>(0))?;
        Ok(count.unwrap_or(0) as u64)
    }

    /// One statement on its own that changes rows; returns how many.
    pub(super) fn execute(&self, statement: &str, params: Params) -> Result<u64> {
        let (statement, params) = (Arc::<str>::from(statement), Arc::new(params));
        self.call(move |inner: Arc<Inner>| {
            let (statement, params) = (statement.clone(), params.clone());
            async move {
                let client = inner.pool.get().await?;
                Ok(client.execute(&*statement, &borrowed(&params)).await?)
            }
        })
    }
}

/// Runs `op` until it succeeds, fails for a reason other than the
/// connection, or the database has been unreachable for [`OUTAGE_LIMIT`].
pub(super) async fn retrying<T, F, Fut>(inner: &Arc<Inner>, op: &F) -> Step<T>
where
    F: Fn(Arc<Inner>) -> Fut,
    Fut: Future<Output = Step<T>>,
{
    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match op(inner.clone()).await {
            Err(Failure::Connection(reason)) if started.elapsed() < OUTAGE_LIMIT => {
                if !warned {
                    tracing::warn!(
                        "cannot reach the PostgreSQL store {} ({reason}); pausing until it answers",
                        inner.shown
                    );
                    warned = true;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(Failure::Connection(reason)) => {
                return Err(Failure::Connection(format!(
                    "{reason} (unreachable for {} s)",
                    OUTAGE_LIMIT.as_secs()
                )));
            }
            other => {
                if warned && other.is_ok() {
                    tracing::warn!("the PostgreSQL store {} answers again", inner.shown);
                }
                return other;
            }
        }
    }
}
