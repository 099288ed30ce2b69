//! A [`SnapshotStore`] on Postgres.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;

use super::{Snapshot, SnapshotStore};
use crate::error::Error;

/// A [`SnapshotStore`] on Postgres (table `state_machine_snapshots`, JSONB instance, partial
/// index on `due_at`). Several processes can share it: saves are conditional `UPDATE ... WHERE
/// version = $expected` (or `INSERT ... ON CONFLICT DO NOTHING` for a new key), so of two
/// writers exactly one wins and the other gets [`Error::Conflict`].
///
/// The table name is unqualified: it lives in the connection's `search_path`. Postgres keeps
/// `due_at` to the microsecond; the sweeper re-checks the instance itself, so that does not
/// fire a timeout early.
#[derive(Clone, Debug)]
pub struct PostgresSnapshots {
    pool: PgPool,
}

impl PostgresSnapshots {
    /// A store on `pool`. Run [`migrate`](Self::migrate) once first.
    pub fn new(pool: PgPool) -> Self {
        PostgresSnapshots { pool }
    }

    /// Applies this crate's migrations (versions `2026112103xxxx`), ignoring other crates'
    /// migrations recorded in the shared `_sqlx_migrations` table.
    ///
    /// # Errors
    /// [`Error::StoreUnavailable`] when a migration cannot be applied.
    pub async fn migrate(pool: &PgPool) -> Result<(), Error> {
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator.run(pool).await.map_err(store)
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn stored_version(&self, key: &str) -> Result<Option<u64>, Error> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT version FROM state_machine_snapshots WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(store)?;
        Ok(v.map(to_u64))
    }
}

fn store(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::StoreUnavailable(Box::new(e))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

type Row = (String, i64, Option<DateTime<Utc>>, Json<serde_json::Value>);

fn snapshot((key, version, due_at, Json(instance)): Row) -> Snapshot {
    Snapshot {
        key,
        version: to_u64(version),
        due_at,
        instance,
    }
}

#[async_trait]
impl SnapshotStore for PostgresSnapshots {
    async fn load(&self, key: &str) -> Result<Option<Snapshot>, Error> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT key, version, due_at, instance FROM state_machine_snapshots WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(store)?;
        Ok(row.map(snapshot))
    }

    async fn save(
        &self,
        key: &str,
        expected_version: u64,
        instance: &serde_json::Value,
        due_at: Option<DateTime<Utc>>,
    ) -> Result<u64, Error> {
        let expected = i64::try_from(expected_version).map_err(|_| Error::Conflict {
            key: key.to_owned(),
            expected: expected_version,
            actual: None,
        })?;
        let written = if expected == 0 {
            sqlx::query(
                "INSERT INTO state_machine_snapshots (key, version, due_at, instance) \
                 VALUES ($1, 1, $2, $3) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(due_at)
            .bind(Json(instance))
            .execute(&self.pool)
            .await
        } else {
            sqlx::query(
                "UPDATE state_machine_snapshots \
                 SET version = version + 1, due_at = $3, instance = $4, updated_at = now() \
                 WHERE key = $1 AND version = $2",
            )
            .bind(key)
            .bind(expected)
            .bind(due_at)
            .bind(Json(instance))
            .execute(&self.pool)
            .await
        }
        .map_err(store)?;
        if written.rows_affected() == 1 {
            return Ok(expected_version + 1);
        }
        Err(Error::Conflict {
            key: key.to_owned(),
            expected: expected_version,
            actual: self.stored_version(key).await?,
        })
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Snapshot>, Error> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT key, version, due_at, instance FROM state_machine_snapshots \
             WHERE due_at <= $1 ORDER BY due_at, key LIMIT $2",
        )
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(store)?;
        Ok(rows.into_iter().map(snapshot).collect())
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        let done = sqlx::query("DELETE FROM state_machine_snapshots WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(store)?;
        Ok(done.rows_affected() > 0)
    }

    async fn prune_idle(&self, saved_before: DateTime<Utc>, limit: usize) -> Result<u64, Error> {
        // In batches through the updated_at index, so a large backlog never becomes one long
        // transaction holding row locks that writers wait on.
        let done = sqlx::query(
            "DELETE FROM state_machine_snapshots WHERE key IN ( \
               SELECT key FROM state_machine_snapshots WHERE updated_at < $1 \
               ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(saved_before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(store)?;
        Ok(done.rows_affected())
    }
}
