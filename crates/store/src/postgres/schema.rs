//! [`POSTGRES_SCHEMA_VERSION`]: the database's schema, brought up to date
//! by [`migrate`] as a store opens.

use super::outage::{Failure, Step};
use super::{Inner, PostgresStore};
use tokio_postgres::error::SqlState;

use crate::StoreError;

/// What turns schema version `n` into `n + 1`, at index `n`; the database's
/// version is the number of steps applied. Each step is frozen once
/// released: a change is a new step.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/1-batch.sql"),
    include_str!("../../migrations/postgres/2-runs.sql"),
    include_str!("../../migrations/postgres/3-consulted.sql"),
    include_str!("../../migrations/postgres/4-tokens.sql"),
    include_str!("../../migrations/postgres/5-browse.sql"),
    include_str!("../../migrations/postgres/6-lighter-writes.sql"),
    include_str!("../../migrations/postgres/7-connection.sql"),
];

/// The schema version this build writes.
pub const POSTGRES_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Migrations take this one, so processes starting together migrate once.
const MIGRATE_LOCK: i64 = 0x6f72_6368_6d69_6772; // "orchmigr"

/// Brings the schema up to date, once however many processes start at once.
/// A schema already current is only read — no lock, no DDL — so a worker
/// role that may not change it opens the store; one that must be changed
/// by a role that may not is refused with what to run instead.
pub(super) async fn migrate(inner: &Inner) -> Step<()> {
    let client = inner.pool.get().await?;
    let found = match client
        .query_opt("SELECT version FROM orchestrator_schema", &[])
        .await
    {
        Ok(row) => row.map_or(0, |row| row.get::<_, i64>(0)),
        // No such table yet: a new database.
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => 0,
        Err(e) => return Err(e.into()),
    };
    drop(client);
    if found == POSTGRES_SCHEMA_VERSION {
        return Ok(());
    }
    match change(inner).await {
        Err(Failure::Store(StoreError::Postgres(reason)))
            if reason.contains("permission denied") =>
        {
            Err(Failure::Store(StoreError::NotSchemaOwner {
                path: inner.shown.clone(),
                found,
                needs: POSTGRES_SCHEMA_VERSION,
                reason,
            }))
        }
        other => other,
    }
}

/// The migrations from the version found, under the migrations' lock.
async fn change(inner: &Inner) -> Step<()> {
    let mut client = inner.pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS orchestrator_schema (version BIGINT NOT NULL)")
        .await?;
    let found: i64 = match tx
        .query_opt("SELECT version FROM orchestrator_schema", &[])
        .await?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO orchestrator_schema (version) VALUES (0)", &[])
                .await?;
            0
        }
    };
    if found > POSTGRES_SCHEMA_VERSION {
        return Err(Failure::Store(StoreError::NewerSchema {
            path: inner.shown.clone(),
            found,
            known: POSTGRES_SCHEMA_VERSION,
        }));
    }
    for step in &MIGRATIONS[found as usize..] {
        tx.batch_execute(step).await?;
    }
    tx.execute(
        "UPDATE orchestrator_schema SET version = $1",
        &[&POSTGRES_SCHEMA_VERSION],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What a worker role needs of the schema, and no more: the data of every
/// table, the schema's version to read, and the ids its sequences hand
/// out. `{role}` is replaced by the role, quoted. Run as the owner, after
/// each migration (a new table needs its grant).
pub const WORKER_GRANTS: &str = "
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE
    ON jobs, attempts, passes, runs, processes, meta, tokens TO {role};
GRANT SELECT ON orchestrator_schema TO {role};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};
";

/// [`WORKER_GRANTS`] for `role`, its name quoted as an identifier.
pub fn worker_grants(role: &str) -> String {
    let quoted = format!("\"{}\"", role.replace('"', "\"\""));
    WORKER_GRANTS.replace("{role}", &quoted)
}

impl PostgresStore {
    /// Grants `role` what a worker needs ([`WORKER_GRANTS`]); run by the
    /// schema's owner, after migrating.
    pub fn grant_worker(&self, role: &str) -> crate::Result<()> {
        let grants = worker_grants(role);
        self.call(move |inner: std::sync::Arc<Inner>| {
            let grants = grants.clone();
            async move {
                let client = inner.pool.get().await?;
                client.batch_execute(&grants).await?;
                Ok(())
            }
        })
    }
}
