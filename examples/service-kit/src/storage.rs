//! Where a service keeps its state: the choice of backend ([`Backend`]), and the SQLite file
//! both services open the same way ([`sqlite_pool`]).

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use steadfast_dlq::{SqliteInstanceLock, SqliteQueue};

use crate::Error;

/// How long taking a pooled connection may wait (opening one included). Short, so that a
/// down or stalled database turns into a prompt 503 rather than a request held open; a
/// healthy pool hands out a connection in microseconds to milliseconds.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the queue, dead letters, conversations and sagas live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In-process stores: nothing survives a restart (tests and `--demo`).
    Memory,
    /// One SQLite file: durable, one instance per file.
    Sqlite,
    /// Postgres (and optionally Redis): durable, several instances side by side.
    Postgres,
}

impl Backend {
    /// The backend of `storage.backend` (`explicit`) given whether a database URL is set:
    /// unset picks Postgres with a URL and SQLite without; an explicit backend that
    /// contradicts the URL is refused (the problem, for the `storage.backend` key's error)
    /// rather than guessed: a deployment that sets `DATABASE_URL` and still runs on a local
    /// file (or in memory) would be a silent surprise either way.
    pub fn resolve(explicit: Option<&str>, has_database_url: bool) -> Result<Backend, String> {
        let Some(text) = explicit.map(str::trim) else {
            return Ok(if has_database_url {
                Backend::Postgres
            } else {
                Backend::Sqlite
            });
        };
        let chosen = match text {
            "postgres" => Backend::Postgres,
            "sqlite" => Backend::Sqlite,
            "memory" => Backend::Memory,
            other => {
                return Err(format!(
                    "{other:?} is not one of \"sqlite\", \"postgres\", \"memory\""
                ));
            }
        };
        match (chosen, has_database_url) {
            (Backend::Postgres, false) => {
                Err("is \"postgres\" but storage.database_url (DATABASE_URL) is not set".to_owned())
            }
            (Backend::Sqlite | Backend::Memory, true) => Err(format!(
                "is {:?} (or --demo) but storage.database_url (DATABASE_URL) is also set: \
                 unset one of them",
                chosen.as_str()
            )),
            _ => Ok(chosen),
        }
    }

    /// The value of `storage.backend` naming this backend.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Opens the SQLite database file at `path` for one service instance: its folder created,
/// this process's instance lock taken (a second instance fails here, naming the file), one
/// pool of `pool_size` connections for every store, with the stores' connect options (WAL,
/// `synchronous = FULL`, busy timeout).
pub async fn sqlite_pool(
    path: &Path,
    pool_size: u32,
) -> Result<(SqlitePool, SqliteInstanceLock), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Sqlite(format!(
                "cannot create the folder {} (storage.sqlite_path): {e}",
                dir.display()
            ))
        })?;
    }
    let instance = SqliteInstanceLock::acquire(path)
        .await
        .map_err(|e| Error::Sqlite(e.to_string()))?;
    let pool = SqlitePoolOptions::new()
        .max_connections(pool_size)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(SqliteQueue::connect_options(path))
        .await
        .map_err(|e| Error::Sqlite(format!("cannot open {}: {e}", path.display())))?;
    Ok((pool, instance))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_follows_the_url_unless_named_and_contradictions_are_refused() {
        assert_eq!(Backend::resolve(None, true), Ok(Backend::Postgres));
        assert_eq!(Backend::resolve(None, false), Ok(Backend::Sqlite));
        assert_eq!(
            Backend::resolve(Some(" memory "), false),
            Ok(Backend::Memory)
        );
        assert!(Backend::resolve(Some("postgres"), false).is_err());
        assert!(Backend::resolve(Some("sqlite"), true).is_err());
        assert!(Backend::resolve(Some("mysql"), false).is_err());
        for b in [Backend::Memory, Backend::Sqlite, Backend::Postgres] {
            assert_eq!(
                Backend::resolve(Some(b.as_str()), b == Backend::Postgres),
                Ok(b)
            );
        }
    }

    #[tokio::test]
    async fn a_second_instance_on_one_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("kit-sqlite-{}", uuid::Uuid::new_v4()));
        let path = dir.join("nested").join("db.sqlite");
        let (_pool, _lock) = sqlite_pool(&path, 2).await.expect("first instance");
        let second = sqlite_pool(&path, 2).await;
        assert!(matches!(second, Err(Error::Sqlite(_))), "{second:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
