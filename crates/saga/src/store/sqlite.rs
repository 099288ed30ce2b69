//! The SQLite store: a row per saga, a row per log entry; fenced appends and recovery claims
//! in `BEGIN IMMEDIATE` transactions.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use steadfast_retry::SystemClock;

use super::{SagaStore, check_operator_entry, check_runner_entry, ends_work};
use crate::time::{WallClock, add, now};
use crate::{
    Created, Entry, Error, Lease, ListFilter, LogEntry, NewSaga, SagaId, SagaLog, SagaSummary,
    State,
};

/// How long a connection of [`SqliteSagaStore::connect_options`] waits for another's write
/// lock before the call fails with [`Error::StoreUnavailable`].
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const COLUMNS: &str = "id, name, version, state, fence, lease_owner, lease_expires_at, \
     created_at, updated_at";

/// A [`SagaStore`] on SQLite (feature `sqlite`): the embedded durable saga log of one service
/// instance, with the semantics of `PostgresSagaStore` and the same conformance suite.
///
/// Open the pool with [`SqliteSagaStore::connect_options`] (WAL journal,
/// `synchronous = FULL`, a busy timeout) and run [`SqliteSagaStore::migrate`] once
/// (migrations `2026112709xxxx`, tables `saga_instances` and `saga_entries`); the file may
/// hold the other crates' SQLite stores too.
///
/// SQLite has one writer per file and no `SKIP LOCKED`. A recovery claim is one
/// `BEGIN IMMEDIATE` transaction (write lock first, then select the expired leases and bump
/// their fences), so concurrent claimers never get the same saga; an append is one
/// `BEGIN IMMEDIATE` transaction holding the fenced row update and the entry insert, so an
/// entry is written only under the current fence, together with its state change. A write
/// that waits for the lock longer than the busy timeout fails with
/// [`Error::StoreUnavailable`], having written nothing. Within the process, the store's
/// writers (its clones included) queue on an async mutex before asking for the lock.
///
/// Time comes from the store's clock (integer microseconds since the epoch, never SQLite's
/// own clock), so tests drive it exactly.
#[derive(Debug, Clone)]
pub struct SqliteSagaStore {
    pool: SqlitePool,
    clock: Arc<dyn WallClock>,
    /// Writers of this store (and its clones) take turns here before asking SQLite for the
    /// write lock: SQLite's busy handler sleeps in growing steps while it waits, which costs
    /// far more than queueing in-process (the lock still excludes other processes).
    gate: Arc<tokio::sync::Mutex<()>>,
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(us: i64) -> Result<DateTime<Utc>, Error> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| Error::Corrupt(format!("time {us} out of range")))
}

impl SqliteSagaStore {
    /// A store on `pool`, on the system clock.
    pub fn new(pool: SqlitePool) -> Self {
        Self::with_clock(pool, Arc::new(SystemClock))
    }

    /// A store on `pool` reading time from `clock`.
    pub fn with_clock(pool: SqlitePool, clock: Arc<dyn WallClock>) -> Self {
        SqliteSagaStore {
            pool,
            clock,
            gate: Arc::default(),
        }
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

    /// Applies this crate's SQLite migrations (others' already-applied migrations are
    /// ignored).
    pub async fn migrate(pool: &SqlitePool) -> Result<(), Error> {
        let mut migrator = sqlx::migrate!("./migrations_sqlite");
        migrator.set_ignore_missing(true);
        migrator
            .run(pool)
            .await
            .map_err(|e| Error::StoreUnavailable(Box::new(e)))
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn now(&self) -> DateTime<Utc> {
        now(&*self.clock)
    }

    async fn immediate(&self) -> Result<Transaction<'static, Sqlite>, Error> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn decode_summary(row: &SqliteRow) -> Result<SagaSummary, Error> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let version: i64 = row.try_get("version")?;
    Ok(SagaSummary {
        id: SagaId::new(id).map_err(|e| Error::Corrupt(e.to_string()))?,
        name: row.try_get("name")?,
        version: u32::try_from(version)
            .map_err(|_| Error::Corrupt("version out of range".to_owned()))?,
        state: state.parse()?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row
            .try_get::<Option<i64>, _>("lease_expires_at")?
            .map(from_micros)
            .transpose()?,
        fence: row.try_get("fence")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
    })
}

fn encode(entry: &Entry) -> Result<String, Error> {
    serde_json::to_string(entry).map_err(|e| Error::InvalidInput(e.to_string()))
}

fn version(v: u32) -> Result<i32, Error> {
    i32::try_from(v).map_err(|_| Error::InvalidInput(format!("version {v} above {}", i32::MAX)))
}

#[async_trait]
impl SagaStore for SqliteSagaStore {
    async fn create(&self, saga: NewSaga, owner: &str, lease: Duration) -> Result<Created, Error> {
        let now = self.now();
        let expires_at = add(now, lease);
        let version = version(saga.version)?;
        let input =
            serde_json::to_string(&saga.input).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let _gate = self.gate.lock().await;
        let mut tx = self.immediate().await?;
        let inserted = sqlx::query(
            "INSERT INTO saga_instances \
                 (id, name, version, input, state, fence, lease_owner, lease_expires_at, \
                  created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 'running', 1, ?5, ?6, ?7, ?7) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(saga.id.as_str())
        .bind(&saga.name)
        .bind(version)
        .bind(input)
        .bind(owner)
        .bind(micros(expires_at))
        .bind(micros(now))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            tx.commit().await?;
            return Ok(Created::New(Lease {
                id: saga.id,
                fence: 1,
                owner: owner.to_owned(),
                expires_at,
            }));
        }
        // The existing row, read in the same transaction: it cannot vanish meanwhile.
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM saga_instances WHERE id = ?1"
        ))
        .bind(saga.id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        tx.rollback().await?;
        match row {
            Some(row) => Ok(Created::Exists(decode_summary(&row)?)),
            None => Err(Error::StoreUnavailable(
                format!("saga {} vanished while being created", saga.id).into(),
            )),
        }
    }

    async fn append(
        &self,
        lease: &Lease,
        entry: Entry,
        lease_for: Duration,
    ) -> Result<Lease, Error> {
        check_runner_entry(&entry)?;
        let now = self.now();
        let expires_at = add(now, lease_for);
        let done = ends_work(&entry);
        let state = entry.new_state().map(|s| s.as_str());
        let encoded = encode(&entry)?;
        // One transaction: the fenced row update and the entry insert commit together.
        let _gate = self.gate.lock().await;
        let mut tx = self.immediate().await?;
        let row = sqlx::query(
            "UPDATE saga_instances SET state = COALESCE(?3, state), \
                 entry_count = entry_count + 1, \
                 lease_owner = CASE WHEN ?4 THEN NULL ELSE lease_owner END, \
                 lease_expires_at = CASE WHEN ?4 THEN NULL ELSE ?5 END, \
                 updated_at = ?6 \
             WHERE id = ?1 AND fence = ?2 AND state IN ('running', 'compensating') \
             RETURNING entry_count, lease_owner",
        )
        .bind(lease.id.as_str())
        .bind(lease.fence)
        .bind(state)
        .bind(done)
        .bind(micros(expires_at))
        .bind(micros(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Err(Error::LeaseLost(lease.id.clone()));
        };
        let seq: i64 = row.try_get("entry_count")?;
        let owner: Option<String> = row.try_get("lease_owner")?;
        sqlx::query("INSERT INTO saga_entries (saga_id, seq, at, entry) VALUES (?1, ?2, ?3, ?4)")
            .bind(lease.id.as_str())
            .bind(seq)
            .bind(micros(now))
            .bind(encoded)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Lease {
            id: lease.id.clone(),
            fence: lease.fence,
            owner: owner.unwrap_or_default(),
            expires_at,
        })
    }

    async fn heartbeat(&self, lease: &Lease, lease_for: Duration) -> Result<Lease, Error> {
        let expires_at = add(self.now(), lease_for);
        let _gate = self.gate.lock().await;
        let done = sqlx::query(
            "UPDATE saga_instances SET lease_expires_at = ?3 \
             WHERE id = ?1 AND fence = ?2 AND state IN ('running', 'compensating')",
        )
        .bind(lease.id.as_str())
        .bind(lease.fence)
        .bind(micros(expires_at))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::LeaseLost(lease.id.clone()));
        }
        Ok(Lease {
            expires_at,
            ..lease.clone()
        })
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let _gate = self.gate.lock().await;
        let done = sqlx::query(
            "UPDATE saga_instances SET lease_owner = NULL, lease_expires_at = ?3 \
             WHERE id = ?1 AND fence = ?2 AND state IN ('running', 'compensating')",
        )
        .bind(lease.id.as_str())
        .bind(lease.fence)
        .bind(micros(self.now()))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::LeaseLost(lease.id.clone()));
        }
        Ok(())
    }

    async fn claim(
        &self,
        name: &str,
        version_: u32,
        owner: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Lease>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let version = version(version_)?;
        let now = self.now();
        let expires_at = add(now, lease);
        // The select and the update in one write transaction: no other claim runs between.
        let _gate = self.gate.lock().await;
        let mut tx = self.immediate().await?;
        let rows = sqlx::query(
            "UPDATE saga_instances SET fence = fence + 1, lease_owner = ?4, \
                 lease_expires_at = ?5 \
             WHERE id IN (SELECT id FROM saga_instances \
                   WHERE name = ?1 AND version = ?2 AND state IN ('running', 'compensating') \
                     AND (lease_expires_at IS NULL OR lease_expires_at <= ?6) \
                   ORDER BY lease_expires_at NULLS FIRST, id \
                   LIMIT ?3) \
             RETURNING id, fence",
        )
        .bind(name)
        .bind(version)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(owner)
        .bind(micros(expires_at))
        .bind(micros(now))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                Ok(Lease {
                    id: SagaId::new(id).map_err(|e| Error::Corrupt(e.to_string()))?,
                    fence: row.try_get("fence")?,
                    owner: owner.to_owned(),
                    expires_at,
                })
            })
            .collect()
    }

    async fn load(&self, id: &SagaId) -> Result<Option<SagaLog>, Error> {
        // One read transaction: the row and its entries from the same snapshot.
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, input FROM saga_instances WHERE id = ?1"
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let summary = decode_summary(&row)?;
        let input: String = row.try_get("input")?;
        let input: serde_json::Value =
            serde_json::from_str(&input).map_err(|e| Error::Corrupt(format!("input: {e}")))?;
        let rows =
            sqlx::query("SELECT seq, at, entry FROM saga_entries WHERE saga_id = ?1 ORDER BY seq")
                .bind(id.as_str())
                .fetch_all(&mut *tx)
                .await?;
        tx.rollback().await?;
        let entries = rows
            .iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq")?;
                let entry: String = row.try_get("entry")?;
                Ok(LogEntry {
                    seq: u64::try_from(seq)
                        .map_err(|_| Error::Corrupt("entry seq out of range".to_owned()))?,
                    at: from_micros(row.try_get("at")?)?,
                    entry: serde_json::from_str(&entry)
                        .map_err(|e| Error::Corrupt(format!("log entry: {e}")))?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Some(SagaLog {
            summary,
            input,
            entries,
        }))
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<SagaSummary>, Error> {
        let mut q: QueryBuilder<'_, Sqlite> =
            QueryBuilder::new(format!("SELECT {COLUMNS} FROM saga_instances WHERE TRUE"));
        if let Some(state) = filter.state {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(name) = &filter.name {
            q.push(" AND name = ").push_bind(name.clone());
        }
        q.push(" ORDER BY updated_at DESC, id DESC LIMIT ")
            .push_bind(i64::try_from(filter.capped_limit()).unwrap_or(i64::MAX));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(decode_summary).collect()
    }

    async fn operator_append(
        &self,
        id: &SagaId,
        entry: Entry,
        expected: State,
    ) -> Result<SagaSummary, Error> {
        check_operator_entry(&entry)?;
        let now = self.now();
        let state = entry.new_state().unwrap_or(expected);
        let encoded = encode(&entry)?;
        let _gate = self.gate.lock().await;
        let mut tx = self.immediate().await?;
        // A new fence: whoever held the saga before the operator stepped in cannot write.
        let row = sqlx::query(&format!(
            "UPDATE saga_instances SET state = ?3, entry_count = entry_count + 1, \
                 fence = fence + 1, lease_owner = NULL, lease_expires_at = NULL, \
                 updated_at = ?4 \
             WHERE id = ?1 AND state = ?2 \
             RETURNING {COLUMNS}, entry_count"
        ))
        .bind(id.as_str())
        .bind(expected.as_str())
        .bind(state.as_str())
        .bind(micros(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let actual: Option<String> =
                sqlx::query_scalar("SELECT state FROM saga_instances WHERE id = ?1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.rollback().await?;
            return match actual {
                None => Err(Error::NotFound(id.clone())),
                Some(actual) => Err(Error::WrongState {
                    id: id.clone(),
                    actual: actual.parse()?,
                    expected,
                }),
            };
        };
        let seq: i64 = row.try_get("entry_count")?;
        sqlx::query("INSERT INTO saga_entries (saga_id, seq, at, entry) VALUES (?1, ?2, ?3, ?4)")
            .bind(id.as_str())
            .bind(seq)
            .bind(micros(now))
            .bind(encoded)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        decode_summary(&row)
    }
}
