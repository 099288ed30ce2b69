//! A [`SnapshotStore`] on SQLite.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

use super::{Snapshot, SnapshotStore};
use crate::error::Error;

/// How long a connection of [`SqliteSnapshots::connect_options`] waits for another's write
/// lock before the call fails with [`Error::StoreUnavailable`].
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`SnapshotStore`] on SQLite (feature `sqlite`; table `state_machine_snapshots`, JSON text
/// instance, times as integer microseconds since the epoch, partial index on `due_at`): the
/// embedded durable store of one service instance.
///
/// Saves are single statements, each its own write transaction (SQLite has one writer per
/// file): a conditional `UPDATE ... WHERE version = ?expected`, or `INSERT ... ON CONFLICT DO
/// NOTHING` for a new key, so of two writers of one version exactly one wins and the other
/// gets [`Error::Conflict`]. A write that waits for the lock longer than the busy timeout
/// fails with [`Error::StoreUnavailable`]. As in the memory store, `prune_idle`'s "last save"
/// is this process's clock at the save.
///
/// Open the pool with [`SqliteSnapshots::connect_options`] and run
/// [`migrate`](Self::migrate) once; the file may hold the other crates' SQLite stores too.
#[derive(Clone, Debug)]
pub struct SqliteSnapshots {
    pool: SqlitePool,
}

impl SqliteSnapshots {
    /// A store on `pool`. Run [`migrate`](Self::migrate) once first.
    pub fn new(pool: SqlitePool) -> Self {
        SqliteSnapshots { pool }
    }

    /// Connect options for the database file at `path`: created if missing (not its folder),
    /// WAL journal, `synchronous = FULL`, busy timeout [`SQLITE_BUSY_TIMEOUT`]. Adjust with
    /// the returned builder's methods.
    pub fn connect_options(path: impl AsRef<Path>) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
    }

    /// Applies this crate's SQLite migrations (versions `2026112703xxxx`), ignoring other
    /// crates' migrations recorded in the shared `_sqlx_migrations` table.
    ///
    /// # Errors
    /// [`Error::StoreUnavailable`] when a migration cannot be applied.
    pub async fn migrate(pool: &SqlitePool) -> Result<(), Error> {
        let mut migrator = sqlx::migrate!("./migrations_sqlite");
        migrator.set_ignore_missing(true);
        migrator.run(pool).await.map_err(store)
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn stored_version(&self, key: &str) -> Result<Option<u64>, Error> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT version FROM state_machine_snapshots WHERE key = ?1")
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

type Row = (String, i64, Option<i64>, String);

fn snapshot((key, version, due_at, instance): Row) -> Result<Snapshot, Error> {
    let due_at = match due_at {
        None => None,
        Some(us) => Some(DateTime::from_timestamp_micros(us).ok_or_else(|| {
            store(std::io::Error::other(format!(
                "snapshot {key:?}: due_at {us} out of range"
            )))
        })?),
    };
    Ok(Snapshot {
        version: to_u64(version),
        due_at,
        instance: serde_json::from_str(&instance)?,
        key,
    })
}

#[async_trait]
impl SnapshotStore for SqliteSnapshots {
    async fn load(&self, key: &str) -> Result<Option<Snapshot>, Error> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT key, version, due_at, instance FROM state_machine_snapshots WHERE key = ?1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(store)?;
        row.map(snapshot).transpose()
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
        let instance = serde_json::to_string(instance)?;
        let due_at = due_at.map(|d| d.timestamp_micros());
        let now = Utc::now().timestamp_micros();
        let written = if expected == 0 {
            sqlx::query(
                "INSERT INTO state_machine_snapshots (key, version, due_at, instance, updated_at) \
                 VALUES (?1, 1, ?2, ?3, ?4) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(due_at)
            .bind(instance)
            .bind(now)
            .execute(&self.pool)
            .await
        } else {
            sqlx::query(
                "UPDATE state_machine_snapshots \
                 SET version = version + 1, due_at = ?3, instance = ?4, updated_at = ?5 \
                 WHERE key = ?1 AND version = ?2",
            )
            .bind(key)
            .bind(expected)
            .bind(due_at)
            .bind(instance)
            .bind(now)
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
             WHERE due_at IS NOT NULL AND due_at <= ?1 ORDER BY due_at, key LIMIT ?2",
        )
        .bind(now.timestamp_micros())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(store)?;
        rows.into_iter().map(snapshot).collect()
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        let done = sqlx::query("DELETE FROM state_machine_snapshots WHERE key = ?1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(store)?;
        Ok(done.rows_affected() > 0)
    }

    async fn prune_idle(&self, saved_before: DateTime<Utc>, limit: usize) -> Result<u64, Error> {
        // In batches through the updated_at index, so a large backlog never becomes one long
        // write transaction that every other writer waits on.
        let done = sqlx::query(
            "DELETE FROM state_machine_snapshots WHERE key IN ( \
               SELECT key FROM state_machine_snapshots WHERE updated_at < ?1 \
               ORDER BY updated_at LIMIT ?2)",
        )
        .bind(saved_before.timestamp_micros())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(store)?;
        Ok(done.rows_affected())
    }
}
