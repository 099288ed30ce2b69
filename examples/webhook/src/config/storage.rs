//! `[storage]`: which stores (SQLite, Postgres and Redis, or the in-memory demo), and how
//! they are used.
//!
//! The choice is made here, once ([`Backend`]): `storage.backend` when set; otherwise
//! Postgres when `storage.database_url` (`DATABASE_URL`) is set, and the SQLite file at
//! `storage.sqlite_path` when nothing is. In-memory stores are only ever an explicit choice
//! (`backend = "memory"` or `--demo`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use steadfast_service_kit::storage::Backend;

use super::{ConfigError, Secret, check};

/// Default bound of one store call.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default de-duplication window: Meta retries a delivery for up to 7 days.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Default SQLite database file (relative to the working directory; its folder is created).
pub const DEFAULT_SQLITE_PATH: &str = "./steadfast-data/webhook.db";

/// The `[storage]` table as written in the file, before validation.
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
    /// `database_url` (env `DATABASE_URL`): `postgres://` or `postgresql://`; selects
    /// Postgres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<Secret>,
    /// `redis_url` (env `REDIS_URL`): `redis://` or `rediss://`; only with `database_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<Secret>,
    /// `pool_size`; default 16.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
    /// `dedup_window_seconds`; default [`DEFAULT_DEDUP_WINDOW`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_window_seconds: Option<u64>,
    /// `queue_name`; default `whatsapp-inbound`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<String>,
    /// `redis_prefix`; default `steadfast:webhook:seen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_prefix: Option<String>,
    /// `store_timeout_ms`; default [`DEFAULT_STORE_TIMEOUT`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_timeout_ms: Option<u64>,
}

/// Storage selection.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Which stores the service runs on.
    pub backend: Backend,
    /// The SQLite database file (meaningful with [`Backend::Sqlite`]).
    pub sqlite_path: PathBuf,
    /// Postgres: queue, dead letters, conversations; `Some` exactly with
    /// [`Backend::Postgres`].
    pub database_url: Option<Secret>,
    /// Redis: the de-duplication fast path. Optional even with Postgres.
    pub redis_url: Option<Secret>,
    /// Pool size of the Postgres pool.
    pub pool_size: u32,
    /// How long the Redis fast path remembers a message id.
    pub dedup_window: Duration,
    /// Name of the queue in the queue store.
    pub queue_name: String,
    /// Prefix of the Redis fast-path keys.
    pub redis_prefix: String,
    /// The longest one store call may take: Postgres `statement_timeout` on the pool, and a
    /// client-side bound around each worker store call (a stalled database fails the call
    /// instead of hanging a worker slot; the message's lease recovers it).
    pub store_timeout: Duration,
}

impl TryFrom<RawStorage> for StorageConfig {
    type Error = ConfigError;

    fn try_from(raw: RawStorage) -> Result<Self, ConfigError> {
        let backend = Backend::resolve(raw.backend.as_deref(), raw.database_url.is_some())
            .map_err(|problem| ConfigError::invalid("storage.backend", problem))?;
        if raw.redis_url.is_some() && backend != Backend::Postgres {
            return Err(ConfigError::invalid(
                "storage.redis_url",
                "is set without storage.database_url (DATABASE_URL): the Redis de-duplication \
                 fast path only makes sense in front of the Postgres queue",
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
        let scheme = |url: &Option<Secret>, schemes: [&str; 2]| {
            url.as_ref()
                .is_none_or(|u| schemes.iter().any(|s| u.expose().starts_with(s)))
        };
        if !scheme(&raw.database_url, ["postgres://", "postgresql://"]) {
            return Err(ConfigError::invalid(
                "storage.database_url",
                "must start with postgres:// or postgresql://",
            ));
        }
        if !scheme(&raw.redis_url, ["redis://", "rediss://"]) {
            return Err(ConfigError::invalid(
                "storage.redis_url",
                "must start with redis:// or rediss://",
            ));
        }
        let pool_size = raw.pool_size.unwrap_or(16);
        if pool_size == 0 {
            return Err(ConfigError::invalid(
                "storage.pool_size",
                "must be greater than 0",
            ));
        }
        let queue_name = raw
            .queue_name
            .unwrap_or_else(|| "whatsapp-inbound".to_owned());
        if queue_name.trim().is_empty() {
            return Err(ConfigError::invalid(
                "storage.queue_name",
                "must not be empty",
            ));
        }
        Ok(Self {
            backend,
            sqlite_path,
            database_url: raw.database_url,
            redis_url: raw.redis_url,
            pool_size,
            dedup_window: check::positive_secs(
                "storage.dedup_window_seconds",
                raw.dedup_window_seconds,
                DEFAULT_DEDUP_WINDOW,
                "must be greater than 0 (Meta retries for up to 7 days)",
            )?,
            queue_name,
            redis_prefix: raw
                .redis_prefix
                .unwrap_or_else(|| "steadfast:webhook:seen".to_owned()),
            store_timeout: check::positive_ms(
                "storage.store_timeout_ms",
                raw.store_timeout_ms,
                DEFAULT_STORE_TIMEOUT.as_millis() as u64,
            )?,
        })
    }
}
