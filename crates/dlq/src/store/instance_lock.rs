//! One service instance per SQLite database file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteLockingMode};
use sqlx::{ConnectOptions, Connection};

use crate::Error;

/// Proof that this process is the only one using a SQLite database file (feature `sqlite`).
///
/// The SQLite stores are single-instance stores: their wake-ups are in-process and their
/// claims rely on one writer. [`acquire`](Self::acquire) takes an exclusive lock on a
/// companion file, `<database>.lock`, through SQLite's own file locking
/// (`locking_mode = EXCLUSIVE` and a write), and holds it until the value is dropped or the
/// process ends (the operating system releases it even after `kill -9`). A second process
/// that tries gets [`Error::StoreUnavailable`] at once, saying the file is in use, instead
/// of silently sharing it. Take it before opening the stores and keep it for the process's
/// lifetime; the database file itself stays open to any number of connections of this
/// process.
///
/// ```no_run
/// # async fn demo() -> Result<(), steadfast_dlq::Error> {
/// let _instance = steadfast_dlq::SqliteInstanceLock::acquire("./data/webhook.db").await?;
/// // ... open the pool, migrate, run the service; the lock goes with `_instance`.
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SqliteInstanceLock {
    lock_file: PathBuf,
    _conn: SqliteConnection,
}

impl SqliteInstanceLock {
    /// Locks `database` (its companion `<database>.lock`, created if missing) for this
    /// process, or fails at once with [`Error::StoreUnavailable`] when another instance
    /// holds it.
    pub async fn acquire(database: impl AsRef<Path>) -> Result<Self, Error> {
        let mut name: OsString = database.as_ref().as_os_str().to_owned();
        name.push(".lock");
        let lock_file = PathBuf::from(name);
        let in_use = |e: sqlx::Error| {
            Error::StoreUnavailable(
                format!(
                    "SQLite database {} is in use by another instance (lock file {}): {e}; \
                     a SQLite store serves one instance, use Postgres for several",
                    database.as_ref().display(),
                    lock_file.display()
                )
                .into(),
            )
        };
        let mut conn = SqliteConnectOptions::new()
            .filename(&lock_file)
            .create_if_missing(true)
            .locking_mode(SqliteLockingMode::Exclusive)
            .busy_timeout(Duration::ZERO)
            .connect()
            .await
            .map_err(in_use)?;
        // In exclusive locking mode the first write takes the lock and keeps it after commit.
        let written = async {
            sqlx::query("CREATE TABLE IF NOT EXISTS instance (pid INTEGER NOT NULL)")
                .execute(&mut conn)
                .await?;
            sqlx::query("DELETE FROM instance")
                .execute(&mut conn)
                .await?;
            sqlx::query("INSERT INTO instance (pid) VALUES (?1)")
                .bind(i64::from(std::process::id()))
                .execute(&mut conn)
                .await
        }
        .await;
        if let Err(e) = written {
            let _ = conn.close().await;
            return Err(in_use(e));
        }
        Ok(SqliteInstanceLock {
            lock_file,
            _conn: conn,
        })
    }

    /// The lock file (`<database>.lock`).
    pub fn lock_file(&self) -> &Path {
        &self.lock_file
    }
}
