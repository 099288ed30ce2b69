//! `SqliteStore`: claims decided in one `BEGIN IMMEDIATE` transaction, fenced conditional
//! `UPDATE` / `DELETE`, shipped migrations, a reaper for expired rows.
//!
//! Tables: `idempotency_records` (primary key `(scope, key)`), `idempotency_dedup`, and the
//! one-row counter `idempotency_fence` that fencing tokens come from.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

use crate::error::Error;
use crate::key::IdempotencyKey;
use crate::response::StoredResponse;
use crate::store::{ClaimRequest, DedupStore, IdempotencyStore, StoreClaim, answer_found, fenced};
use crate::timestamp::{Timestamp, millis};

const STATE_IN_FLIGHT: i64 = 0;
const STATE_COMPLETED: i64 = 1;

/// How long a connection of [`SqliteStore::connect_options`] waits for another's write lock
/// before the call fails with [`Error::StoreUnavailable`].
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const CURRENT: &str = "
SELECT fingerprint, state, expires_at_ms, response
  FROM idempotency_records WHERE scope = ?1 AND key = ?2";

const NEXT_FENCE: &str =
    "UPDATE idempotency_fence SET value = value + 1 WHERE id = 1 RETURNING value";

/// Take the key (it is absent or expired: the transaction checked).
const TAKE: &str = "
INSERT INTO idempotency_records
    (scope, key, fingerprint, fence, state, expires_at_ms, created_at_ms)
VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)
ON CONFLICT (scope, key) DO UPDATE
   SET fingerprint = excluded.fingerprint, fence = excluded.fence, state = 0,
       expires_at_ms = excluded.expires_at_ms, status = NULL, response = NULL,
       created_at_ms = excluded.created_at_ms";

const COMPLETE: &str = "
UPDATE idempotency_records
   SET state = 1, status = ?4, response = ?5, expires_at_ms = ?7
 WHERE scope = ?1 AND key = ?2 AND fence = ?3 AND state = 0 AND expires_at_ms > ?6";

const RELEASE: &str = "
DELETE FROM idempotency_records
 WHERE scope = ?1 AND key = ?2 AND fence = ?3 AND state = 0";

/// A SQLite [`IdempotencyStore`] and [`DedupStore`] (feature `sqlite`): the embedded durable
/// store of one service instance. Cheap to clone (shares the pool).
///
/// Open the pool with [`SqliteStore::connect_options`] (WAL journal, `synchronous = FULL`, a
/// busy timeout) and run [`SqliteStore::migrate`] once (versions `2026112701xxxx`); the file
/// may be shared with the other crates' SQLite stores.
///
/// # How claims stay exclusive and fenced
///
/// SQLite has one writer per database file and no row locks. A claim is one
/// `BEGIN IMMEDIATE` transaction: it takes the write lock first, reads the key's record,
/// and either answers from it (replay, in flight, mismatch) or, when the key is absent or
/// expired, takes the next fencing token from a one-row counter and writes the new lease.
/// Nothing can change the record between that read and that write, so of any number of
/// concurrent claims exactly one is granted. `complete` and `release` are single statements
/// guarded by `fence = ? AND state = 0` (SQLite runs each as its own write transaction): a
/// stale fence matches nothing and gets [`Error::StaleLease`]. A write that waits for the
/// lock longer than the busy timeout fails with [`Error::StoreUnavailable`]. Within the
/// process, the store's writers (its clones included) queue on an async mutex before asking
/// for the lock, so they never sleep in SQLite's busy handler waiting for each other.
///
/// Times are the caller's (`now` arguments), stored as integer milliseconds since the epoch.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Writers of this store (and its clones) take turns here before asking SQLite for the
    /// write lock: SQLite's busy handler sleeps in growing steps while it waits, which costs
    /// far more than queueing in-process (the lock still excludes other processes).
    gate: Arc<tokio::sync::Mutex<()>>,
}

fn ms(t: Timestamp) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

fn fence_param(fence: u64) -> i64 {
    i64::try_from(fence).unwrap_or(i64::MAX)
}

fn dur_ms(d: Duration) -> i64 {
    i64::try_from(millis(d)).unwrap_or(i64::MAX)
}

/// `at + d` in milliseconds, saturating: SQLite would turn an overflowing integer sum into a
/// float, so sums are made here.
fn after(at: Timestamp, d: Duration) -> i64 {
    ms(at).saturating_add(dur_ms(d))
}

impl SqliteStore {
    /// A store on `pool`. Run [`SqliteStore::migrate`] once before use.
    pub fn new(pool: SqlitePool) -> Self {
        SqliteStore {
            pool,
            gate: Arc::default(),
        }
    }

    /// Connect options for the database file at `path`: created if missing (not its folder),
    /// WAL journal, `synchronous = FULL` (a stored response survives a power cut), busy
    /// timeout [`SQLITE_BUSY_TIMEOUT`]. Adjust with the returned builder's methods.
    pub fn connect_options(path: impl AsRef<Path>) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
    }

    /// Apply the shipped SQLite migrations (versions `2026112701xxxx`). Other crates'
    /// migrations in the same `_sqlx_migrations` table are left alone.
    pub async fn migrate(&self) -> Result<(), Error> {
        let mut migrator = sqlx::migrate!("./migrations_sqlite");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await.map_err(Error::store)
    }

    /// Delete every claim record and de-duplication entry expired at `now`; returns how many
    /// rows were removed. Expired rows are already ignored by claims; reaping frees space.
    pub async fn reap(&self, now: Timestamp) -> Result<u64, Error> {
        let _gate = self.gate.lock().await;
        let records = sqlx::query("DELETE FROM idempotency_records WHERE expires_at_ms <= ?1")
            .bind(ms(now))
            .execute(&self.pool)
            .await
            .map_err(Error::store)?;
        let dedup = sqlx::query("DELETE FROM idempotency_dedup WHERE expires_at_ms <= ?1")
            .bind(ms(now))
            .execute(&self.pool)
            .await
            .map_err(Error::store)?;
        Ok(records.rows_affected() + dedup.rows_affected())
    }

    /// Reap every `interval` on the current tokio runtime, on the system clock. Errors are
    /// logged and the next tick tries again. Abort the handle to stop it.
    pub fn spawn_reaper(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match store.reap(Timestamp::now()).await {
                    Ok(n) => tracing::debug!(removed = n, "idempotency reaper"),
                    Err(e) => tracing::warn!(error = %e, "idempotency reaper failed"),
                }
            }
        })
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim(&self, req: ClaimRequest<'_>) -> Result<StoreClaim, Error> {
        let _gate = self.gate.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::store)?;
        let current: Option<(Vec<u8>, i64, i64, Option<Vec<u8>>)> = sqlx::query_as(CURRENT)
            .bind(req.scope)
            .bind(req.key.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::store)?;
        if let Some((fingerprint, state, expires_at_ms, response)) = current {
            let expires_at = Timestamp::from_millis(u64::try_from(expires_at_ms).unwrap_or(0));
            let found = answer_found(&req, &fingerprint, expires_at, || match state {
                STATE_COMPLETED => {
                    let bytes = response.ok_or_else(|| {
                        Error::Corrupt("completed record without response".into())
                    })?;
                    StoredResponse::decode(&bytes).map(Some)
                }
                STATE_IN_FLIGHT => Ok(None),
                other => Err(Error::Corrupt(format!("unknown record state {other}"))),
            })?;
            if let Some(answer) = found {
                // Nothing written: ending the transaction is all that is left.
                tx.rollback().await.map_err(Error::store)?;
                return Ok(answer);
            }
        }
        let fence: i64 = sqlx::query_scalar(NEXT_FENCE)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::store)?;
        sqlx::query(TAKE)
            .bind(req.scope)
            .bind(req.key.as_str())
            .bind(req.fingerprint.as_bytes().as_slice())
            .bind(fence)
            .bind(after(req.now, req.lease).max(ms(req.now).saturating_add(1)))
            .bind(ms(req.now))
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
        tx.commit().await.map_err(Error::store)?;
        Ok(StoreClaim::Execute {
            fence: u64::try_from(fence).map_err(|_| Error::Corrupt("negative fence".into()))?,
        })
    }

    async fn complete(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fence: u64,
        response: &StoredResponse,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<(), Error> {
        let _gate = self.gate.lock().await;
        let done = sqlx::query(COMPLETE)
            .bind(scope)
            .bind(key.as_str())
            .bind(fence_param(fence))
            .bind(i64::from(response.status()))
            .bind(response.encode())
            .bind(ms(now))
            .bind(after(now, ttl))
            .execute(&self.pool)
            .await
            .map_err(Error::store)?;
        fenced(done.rows_affected() == 1, fence)
    }

    async fn release(&self, scope: &str, key: &IdempotencyKey, fence: u64) -> Result<(), Error> {
        let _gate = self.gate.lock().await;
        let done = sqlx::query(RELEASE)
            .bind(scope)
            .bind(key.as_str())
            .bind(fence_param(fence))
            .execute(&self.pool)
            .await
            .map_err(Error::store)?;
        fenced(done.rows_affected() == 1, fence)
    }
}

#[async_trait]
impl DedupStore for SqliteStore {
    async fn insert_if_absent(
        &self,
        id: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let _gate = self.gate.lock().await;
        // One statement (its own write transaction): of concurrent callers exactly one inserts
        // or revives an expired entry; the others' conflict matches the WHERE of none.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO idempotency_dedup (id, expires_at_ms) VALUES (?1, ?3)
             ON CONFLICT (id) DO UPDATE
                SET expires_at_ms = excluded.expires_at_ms, processing_ms = NULL
              WHERE idempotency_dedup.expires_at_ms <= ?2
             RETURNING 1",
        )
        .bind(id)
        .bind(ms(now))
        .bind(after(now, window))
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::store)?;
        Ok(inserted.is_some())
    }

    async fn contains(&self, id: &str, now: Timestamp) -> Result<bool, Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM idempotency_dedup WHERE id = ?1 AND expires_at_ms > ?2)",
        )
        .bind(id)
        .bind(ms(now))
        .fetch_one(&self.pool)
        .await
        .map_err(Error::store)
    }

    async fn mark(
        &self,
        id: &str,
        window: Duration,
        now: Timestamp,
        processing_time: Option<Duration>,
    ) -> Result<(), Error> {
        let _gate = self.gate.lock().await;
        sqlx::query(
            "INSERT INTO idempotency_dedup (id, expires_at_ms, processing_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE
                SET expires_at_ms = excluded.expires_at_ms,
                    processing_ms = COALESCE(excluded.processing_ms, idempotency_dedup.processing_ms)",
        )
        .bind(id)
        .bind(after(now, window))
        .bind(processing_time.map(dur_ms))
        .execute(&self.pool)
        .await
        .map_err(Error::store)?;
        Ok(())
    }
}
