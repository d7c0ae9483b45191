//! [`POSTGRES_SCHEMA_VERSION`]: the database's schema, brought up to date
//! by [`migrate`] as a store opens.

use super::Inner;
use super::outage::{Failure, Step};
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
];

/// The schema version this build writes.
pub const POSTGRES_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Migrations take this one, so processes starting together migrate once.
const MIGRATE_LOCK: i64 = 0x6f72_6368_6d69_6772; // "orchmigr"

/// Brings the schema up to date, once however many processes start at once.
pub(super) async fn migrate(inner: &Inner) -> Step<()> {
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
