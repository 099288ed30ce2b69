//! Persistence of instances: the [`SnapshotStore`] trait and its adapters.
//!
//! Stores are untyped on purpose: an instance is kept as its serde JSON (a
//! [`serde_json::Value`]), together with its key, a version counter and the time its next
//! timeout falls due. That keeps the trait dyn-compatible (`Arc<dyn SnapshotStore>`), lets one
//! store hold instances of several definitions, and lets a [`Registry`](crate::Registry)
//! migrate old JSON before it is typed. The typed face is [`Machines`](crate::Machines).

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Error;

pub use memory::MemorySnapshots;
#[cfg(feature = "postgres")]
pub use postgres::PostgresSnapshots;
#[cfg(feature = "sqlite")]
pub use sqlite::{SQLITE_BUSY_TIMEOUT, SqliteSnapshots};

/// One stored instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The instance's key (e.g. a user id).
    pub key: String,
    /// The stored version: 1 after the first save, +1 on each save.
    pub version: u64,
    /// When the instance's next timeout falls due (`None`: none in its current state).
    pub due_at: Option<DateTime<Utc>>,
    /// The instance, as serde JSON.
    pub instance: serde_json::Value,
}

/// Where instances live between events, with optimistic concurrency.
///
/// Contract (checked by the conformance suite, `testing::conformance` with feature `testing`,
/// against every adapter):
/// - `save` writes only if the stored version equals `expected_version` (0: the key must not
///   exist), then stores `expected_version + 1` and returns it; otherwise it writes nothing and
///   returns [`Error::Conflict`] with the version it found. Of two writers that loaded the
///   same version, exactly one wins.
/// - `due(now, limit)` returns up to `limit` snapshots whose `due_at <= now`, earliest first.
/// - `delete` removes a key whatever its version and says whether it existed.
/// - `prune_idle(saved_before, limit)` removes up to `limit` instances whose last save was
///   before `saved_before`, whatever their version, and returns how many it removed.
#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// The snapshot stored under `key`, if any.
    async fn load(&self, key: &str) -> Result<Option<Snapshot>, Error>;

    /// Saves `instance` under `key` if its stored version is `expected_version`; returns the
    /// new version.
    async fn save(
        &self,
        key: &str,
        expected_version: u64,
        instance: &serde_json::Value,
        due_at: Option<DateTime<Utc>>,
    ) -> Result<u64, Error>;

    /// Up to `limit` snapshots whose timeout is due at `now`, earliest `due_at` first.
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Snapshot>, Error>;

    /// Removes `key`; true if it existed.
    async fn delete(&self, key: &str) -> Result<bool, Error>;

    /// Removes up to `limit` instances not saved since `saved_before`; returns how many went.
    ///
    /// This is retention: instances often hold personal data (a conversation's messages,
    /// keyed by a phone number) that must not be kept forever. Call it periodically in
    /// batches until it returns less than `limit`. An instance saved concurrently may be
    /// removed just before its writer saves again: that writer then sees a
    /// [`Error::Conflict`] with no stored version and starts the instance afresh.
    async fn prune_idle(&self, saved_before: DateTime<Utc>, limit: usize) -> Result<u64, Error>;
}
