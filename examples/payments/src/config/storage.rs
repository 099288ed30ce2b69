//! `[storage]`: where the ledger, idempotency records, sagas and callbacks live.

use serde::{Deserialize, Serialize};
use steadfast_webhook::config::Secret;

use super::ConfigError;

/// Default Postgres pool size.
pub const DEFAULT_POOL_SIZE: u32 = 16;

/// `[storage]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// `database_url` (env `DATABASE_URL`): Postgres for everything durable; unset runs the
    /// in-memory demo.
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
    /// Postgres; `None` is demo mode.
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
        if raw.redis_url.is_some() && raw.database_url.is_none() {
            return Err(ConfigError::invalid(
                "storage.redis_url",
                "needs storage.database_url (the demo keeps idempotency records in memory)",
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
            database_url: raw.database_url,
            redis_url: raw.redis_url,
            pool_size,
        })
    }
}
