//! The Postgres store: a row per saga, a row per log entry; fenced single-statement appends,
//! `FOR UPDATE SKIP LOCKED` recovery claims.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use steadfast_retry::SystemClock;

use super::{SagaStore, check_operator_entry, check_runner_entry, ends_work};
use crate::time::{WallClock, add, now};
use crate::{
    Created, Entry, Error, Lease, ListFilter, LogEntry, NewSaga, SagaId, SagaLog, SagaSummary,
    State,
};

const COLUMNS: &str = "id, name, version, state, fence, lease_owner, lease_expires_at, \
     created_at, updated_at";

/// A [`SagaStore`] on Postgres (feature `postgres`): several processes can run sagas against
/// one database.
///
/// Run [`PostgresSagaStore::migrate`] once at start-up (migrations `2026112109xxxx`, tables
/// `saga_instances` and `saga_entries`, unqualified so the connection's `search_path` picks
/// the schema).
///
/// Time comes from the store's clock and is bound into every query (not the server's
/// `now()`), so tests drive it exactly; instances sharing the database need synced clocks.
#[derive(Debug, Clone)]
pub struct PostgresSagaStore {
    pool: PgPool,
    clock: Arc<dyn WallClock>,
}

impl PostgresSagaStore {
    /// A store on `pool`, on the system clock.
    pub fn new(pool: PgPool) -> Self {
        Self::with_clock(pool, Arc::new(SystemClock))
    }

    /// A store on `pool` reading time from `clock`.
    pub fn with_clock(pool: PgPool, clock: Arc<dyn WallClock>) -> Self {
        PostgresSagaStore { pool, clock }
    }

    /// Applies this crate's migrations (others' already-applied migrations are ignored).
    pub async fn migrate(pool: &PgPool) -> Result<(), Error> {
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator
            .run(pool)
            .await
            .map_err(|e| Error::StoreUnavailable(Box::new(e)))
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn now(&self) -> DateTime<Utc> {
        now(&*self.clock)
    }

    async fn summary(&self, id: &SagaId) -> Result<Option<SagaSummary>, Error> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM saga_instances WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_summary).transpose()
    }
}

fn decode_summary(row: &PgRow) -> Result<SagaSummary, Error> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let version: i32 = row.try_get("version")?;
    Ok(SagaSummary {
        id: SagaId::new(id).map_err(|e| Error::Corrupt(e.to_string()))?,
        name: row.try_get("name")?,
        version: u32::try_from(version)
            .map_err(|_| Error::Corrupt("version out of range".to_owned()))?,
        state: state.parse()?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        fence: row.try_get("fence")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn encode(entry: &Entry) -> Result<serde_json::Value, Error> {
    serde_json::to_value(entry).map_err(|e| Error::InvalidInput(e.to_string()))
}

fn version(v: u32) -> Result<i32, Error> {
    i32::try_from(v).map_err(|_| Error::InvalidInput(format!("version {v} above {}", i32::MAX)))
}

#[async_trait]
impl SagaStore for PostgresSagaStore {
    async fn create(&self, saga: NewSaga, owner: &str, lease: Duration) -> Result<Created, Error> {
        let now = self.now();
        let expires_at = add(now, lease);
        let inserted = sqlx::query(
            "INSERT INTO saga_instances \
                 (id, name, version, input, state, fence, lease_owner, lease_expires_at, \
                  created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'running', 1, $5, $6, $7, $7) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(saga.id.as_str())
        .bind(&saga.name)
        .bind(version(saga.version)?)
        .bind(&saga.input)
        .bind(owner)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Created::New(Lease {
                id: saga.id,
                fence: 1,
                owner: owner.to_owned(),
                expires_at,
            }));
        }
        match self.summary(&saga.id).await? {
            Some(summary) => Ok(Created::Exists(summary)),
            // Deleted by hand between the two statements: nothing we can stand on.
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
        // One statement: the fenced row update and the entry insert commit together.
        let row = sqlx::query(
            "WITH s AS ( \
                 UPDATE saga_instances SET state = COALESCE($3, state), \
                     entry_count = entry_count + 1, \
                     lease_owner = CASE WHEN $4 THEN NULL ELSE lease_owner END, \
                     lease_expires_at = CASE WHEN $4 THEN NULL ELSE $5 END, \
                     updated_at = $6 \
                 WHERE id = $1 AND fence = $2 AND state IN ('running', 'compensating') \
                 RETURNING entry_count, lease_owner), \
             e AS (INSERT INTO saga_entries (saga_id, seq, at, entry) \
                 SELECT $1, entry_count, $6, $7 FROM s) \
             SELECT lease_owner FROM s",
        )
        .bind(lease.id.as_str())
        .bind(lease.fence)
        .bind(state)
        .bind(done)
        .bind(expires_at)
        .bind(now)
        .bind(encode(&entry)?)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Err(Error::LeaseLost(lease.id.clone()));
        };
        let owner: Option<String> = row.try_get("lease_owner")?;
        Ok(Lease {
            id: lease.id.clone(),
            fence: lease.fence,
            owner: owner.unwrap_or_default(),
            expires_at,
        })
    }

    async fn heartbeat(&self, lease: &Lease, lease_for: Duration) -> Result<Lease, Error> {
        let expires_at = add(self.now(), lease_for);
        let done = sqlx::query(
            "UPDATE saga_instances SET lease_expires_at = $3 \
             WHERE id = $1 AND fence = $2 AND state IN ('running', 'compensating')",
        )
        .bind(lease.id.as_str())
        .bind(lease.fence)
        .bind(expires_at)
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
        let done = sqlx::query(
            "UPDATE saga_instances SET lease_owner = NULL, lease_expires_at = $3 \
             WHERE id = $1 AND fence = $2 AND state IN ('running', 'compensating')",
        )
        .bind(lease.id.as_str())
        .bind(lease.fence)
        .bind(self.now())
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
        let now = self.now();
        let expires_at = add(now, lease);
        let rows = sqlx::query(
            "UPDATE saga_instances s SET fence = s.fence + 1, lease_owner = $4, \
                 lease_expires_at = $5 \
             FROM (SELECT id FROM saga_instances \
                   WHERE name = $1 AND version = $2 AND state IN ('running', 'compensating') \
                     AND (lease_expires_at IS NULL OR lease_expires_at <= $6) \
                   ORDER BY lease_expires_at NULLS FIRST, id \
                   LIMIT $3 \
                   FOR UPDATE SKIP LOCKED) c \
             WHERE s.id = c.id \
             RETURNING s.id, s.fence",
        )
        .bind(name)
        .bind(version(version_)?)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(owner)
        .bind(expires_at)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
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
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, input FROM saga_instances WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let summary = decode_summary(&row)?;
        let input: serde_json::Value = row.try_get("input")?;
        let rows =
            sqlx::query("SELECT seq, at, entry FROM saga_entries WHERE saga_id = $1 ORDER BY seq")
                .bind(id.as_str())
                .fetch_all(&self.pool)
                .await?;
        let entries = rows
            .iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq")?;
                let entry: serde_json::Value = row.try_get("entry")?;
                Ok(LogEntry {
                    seq: u64::try_from(seq)
                        .map_err(|_| Error::Corrupt("entry seq out of range".to_owned()))?,
                    at: row.try_get("at")?,
                    entry: serde_json::from_value(entry)
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
        let mut q: QueryBuilder<'_, Postgres> =
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
        // A new fence: whoever held the saga before the operator stepped in cannot write.
        let row = sqlx::query(&format!(
            "WITH s AS ( \
                 UPDATE saga_instances SET state = $3, entry_count = entry_count + 1, \
                     fence = fence + 1, lease_owner = NULL, lease_expires_at = NULL, \
                     updated_at = $4 \
                 WHERE id = $1 AND state = $2 \
                 RETURNING {COLUMNS}, entry_count), \
             e AS (INSERT INTO saga_entries (saga_id, seq, at, entry) \
                 SELECT $1, entry_count, $4, $5 FROM s) \
             SELECT {COLUMNS} FROM s"
        ))
        .bind(id.as_str())
        .bind(expected.as_str())
        .bind(state.as_str())
        .bind(now)
        .bind(encode(&entry)?)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => decode_summary(&row),
            None => match self.summary(id).await? {
                None => Err(Error::NotFound(id.clone())),
                Some(s) => Err(Error::WrongState {
                    id: id.clone(),
                    actual: s.state,
                    expected,
                }),
            },
        }
    }
}
