//! `[storage]`: where the ledger, idempotency records, sagas and callbacks live; the choice
//! is made here, once ([`Backend`], as in the webhook): `storage.backend` when set; otherwise
//! Postgres with `DATABASE_URL`, the SQLite file `storage.sqlite_path` without. In-memory
//! stores are only an explicit choice (`backend = "memory"` or `--demo`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use steadfast_service_kit::secret::Secret;
pub use steadfast_service_kit::storage::Backend;

use super::ConfigError;

/// Default Postgres pool size.
pub const DEFAULT_POOL_SIZE: u32 = 16;

/// Default SQLite database file (relative to the working directory; its folder is created).
pub const DEFAULT_SQLITE_PATH: &str = "./steadfast-data/payments.db";

/// `[storage]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// `backend`: `"sqlite"`, `"postgres"` or `"memory"` (flag `--demo`); unset picks
    /// Postgres when `database_url` is set, SQLite otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// `sqlite_path`; default [`DEFAULT_SQLITE_PATH`]. Used by the SQLite backend only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite_path: Option<PathBuf>,
    /// `database_url` (env `DATABASE_URL`): Postgres for everything durable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<Secret>,
    /// `redis_url` (env `REDIS_URL`): the idempotency records' fast path; only with
    /// `database_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<Secret>,
    /// `pool_size`; default [`DEFAULT_POOL_SIZE`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
}

/// The validated storage section.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// Which stores the service runs on.
    pub backend: Backend,
    /// The SQLite database file (meaningful with [`Backend::Sqlite`]).
    pub sqlite_path: PathBuf,
    /// Postgres; `Some` exactly with [`Backend::Postgres`].
    pub database_url: Option<Secret>,
    /// Redis for idempotency records.
    pub redis_url: Option<Secret>,
    /// Postgres connections.
    pub pool_size: u32,
}

impl TryFrom<RawStorage> for StorageConfig {
    type Error = ConfigError;

    fn try_from(raw: RawStorage) -> Result<Self, ConfigError> {
        let check = |key: &str, url: &Option<Secret>, schemes: &[&str]| match url {
            Some(u) if !schemes.iter().any(|s| u.expose().starts_with(s)) => {
                Err(ConfigError::invalid(
                    key,
                    format!("must be a URL starting with {}", schemes.join(" or ")),
                ))
            }
            _ => Ok(()),
        };
        check(
            "storage.database_url",
            &raw.database_url,
            &["postgres://", "postgresql://"],
        )?;
        check(
            "storage.redis_url",
            &raw.redis_url,
            &["redis://", "rediss://"],
        )?;
        let backend = Backend::resolve(raw.backend.as_deref(), raw.database_url.is_some())
            .map_err(|problem| ConfigError::invalid("storage.backend", problem))?;
        if raw.redis_url.is_some() && backend != Backend::Postgres {
            return Err(ConfigError::invalid(
                "storage.redis_url",
                "needs storage.database_url (without Postgres the idempotency records live \
                 with the other stores)",
            ));
        }
        let sqlite_path = raw
            .sqlite_path
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SQLITE_PATH));
        if sqlite_path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "storage.sqlite_path",
                "must not be empty",
            ));
        }
        let pool_size = raw.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        if pool_size == 0 {
            return Err(ConfigError::invalid(
                "storage.pool_size",
                "must be at least 1",
            ));
        }
        Ok(StorageConfig {
            backend,
            sqlite_path,
            database_url: raw.database_url,
            redis_url: raw.redis_url,
            pool_size,
        })
    }
}
