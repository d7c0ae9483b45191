//! [`POSTGRES_SCHEMA_VERSION`]: the database's schema, brought up to date
//! by [`migrate`] as a store opens.

use super::outage::{Failure, Step};
use super::{Inner, PostgresStore};
use deadpool_postgres::GenericClient;
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
    let found = version(&client).await?.unwrap_or(0);
    drop(client);
    if found == POSTGRES_SCHEMA_VERSION {
        return Ok(());
    }
    if found > POSTGRES_SCHEMA_VERSION {
        return Err(newer(inner, found));
    }
    change(inner, found).await
}

/// Checks, changing nothing, that the schema is this build's.
pub(super) async fn current(inner: &Inner) -> Step<()> {
    let client = inner.pool.get().await?;
    let found = version(&client).await?.unwrap_or(0);
    match found.cmp(&POSTGRES_SCHEMA_VERSION) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(newer(inner, found)),
        std::cmp::Ordering::Less => Err(Failure::Store(StoreError::NotMigrated {
            path: inner.shown.clone(),
            found,
            needs: POSTGRES_SCHEMA_VERSION,
        })),
    }
}

/// The schema's version as stored; `None` for a database without one.
async fn version(client: &impl GenericClient) -> Step<Option<i64>> {
    // Asked first, as a failed query would end the migration's transaction;
    // and of pg_tables, read with the statement's snapshot, which sees a
    // table another process made while this one waited for the lock (a
    // name lookup such as to_regclass may not yet).
    let table: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables
                            WHERE schemaname = ANY (current_schemas(false))
                              AND tablename = 'orchestrator_schema')",
            &[],
        )
        .await?
        .get(0);
    if !table {
        return Ok(None);
    }
    let row = client
        .query_opt("SELECT version FROM orchestrator_schema", &[])
        .await?;
    Ok(Some(row.map_or(0, |row| row.get::<_, i64>(0))))
}

fn newer(inner: &Inner, found: i64) -> Failure {
    Failure::Store(StoreError::NewerSchema {
        path: inner.shown.clone(),
        found,
        known: POSTGRES_SCHEMA_VERSION,
    })
}

/// The migrations from the version found under the migrations' lock
/// (another process may have applied them while this one waited for it).
/// A role without the right to change the schema (SQLSTATE 42501, whatever
/// the server's language) is told to run `migrate` as the owner.
async fn change(inner: &Inner, read: i64) -> Step<()> {
    let denied = |e: tokio_postgres::Error| -> Failure {
        if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            Failure::Store(StoreError::NotSchemaOwner {
                path: inner.shown.clone(),
                found: read,
                needs: POSTGRES_SCHEMA_VERSION,
                reason: e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |db| db.message().to_owned()),
            })
        } else {
            e.into()
        }
    };
    let mut client = inner.pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await?;
    let found = match version(&tx).await? {
        Some(found) => found,
        None => {
            tx.batch_execute("CREATE TABLE orchestrator_schema (version BIGINT NOT NULL)")
                .await
                .map_err(denied)?;
            0
        }
    };
    if found == POSTGRES_SCHEMA_VERSION {
        return Ok(());
    }
    if found > POSTGRES_SCHEMA_VERSION {
        return Err(newer(inner, found));
    }
    for step in &MIGRATIONS[found as usize..] {
        tx.batch_execute(step).await.map_err(denied)?;
    }
    // One row, whatever the table held (a database from before versions
    // has the table and no row).
    tx.execute("DELETE FROM orchestrator_schema", &[])
        .await
        .map_err(denied)?;
    tx.execute(
        "INSERT INTO orchestrator_schema (version) VALUES ($1)",
        &[&POSTGRES_SCHEMA_VERSION],
    )
    .await
    .map_err(denied)?;
    tx.commit().await?;
    Ok(())
}

/// What a worker role needs of the schema, and no more: the data of every
/// table, the schema's version to read, and the ids its sequences hand
/// out. `{role}` is replaced by the role and `{schema}` by the schema the
/// tables are in (the owner's `current_schema()`, usually `public`), both
/// quoted. Run as the owner, after each migration (a new table needs its
/// grant).
pub const WORKER_GRANTS: &str = "
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE
    ON jobs, attempts, passes, runs, processes, meta, tokens TO {role};
GRANT SELECT ON orchestrator_schema TO {role};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
";

/// `name` quoted as an SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// [`WORKER_GRANTS`] for `role` on the tables of `schema`.
pub fn worker_grants(role: &str, schema: &str) -> String {
    WORKER_GRANTS
        .replace("{role}", &quoted(role))
        .replace("{schema}", &quoted(schema))
}

impl PostgresStore {
    /// Grants `role` what a worker needs ([`WORKER_GRANTS`]); run by the
    /// schema's owner, after migrating.
    pub fn grant_worker(&self, role: &str) -> crate::Result<()> {
        let role = role.to_owned();
        self.call(move |inner: std::sync::Arc<Inner>| {
            let role = role.clone();
            async move {
                let client = inner.pool.get().await?;
                // The tables are where this role's search path finds them.
                let schema: Option<String> =
                    client.query_one("SELECT current_schema()", &[]).await?.get(0);
                let schema = schema.ok_or_else(|| {
                    StoreError::Postgres(
                        "this role's search_path names no schema that exists: set it to the schema of the orchestrator's tables".into(),
                    )
                })?;
                client.batch_execute(&worker_grants(&role, &schema)).await?;
                Ok(())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_and_schema_are_quoted_whatever_they_hold() {
        let grants = worker_grants("w\"; DROP TABLE jobs; --", "my schema");
        assert!(
            grants.contains(r#"TO "w""; DROP TABLE jobs; --";"#),
            "{grants}"
        );
        assert!(grants.contains(r#"ON SCHEMA "my schema" TO"#), "{grants}");
        assert!(!grants.contains("{role}") && !grants.contains("{schema}"));
    }
}
