//! `PostgresStore`: claims with `INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`, fenced
//! conditional `UPDATE` / `DELETE`, shipped migrations, a reaper for expired rows.
//!
//! Tables (unqualified names, so the connection's `search_path` decides the schema):
//! `idempotency_records` (primary key `(scope, key)`), `idempotency_dedup`, and the sequence
//! `idempotency_fence_seq` that fencing tokens come from.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;

use crate::error::Error;
use crate::key::IdempotencyKey;
use crate::response::StoredResponse;
use crate::store::{ClaimRequest, DedupStore, IdempotencyStore, StoreClaim, answer_found, fenced};
use crate::timestamp::{Timestamp, millis};

const STATE_IN_FLIGHT: i16 = 0;
const STATE_COMPLETED: i16 = 1;

/// Take the key if it is free or expired. `RETURNING` yields a row only when we took it.
const CLAIM: &str = "
INSERT INTO idempotency_records (scope, key, fingerprint, fence, state, expires_at_ms)
VALUES ($1, $2, $3, nextval('idempotency_fence_seq'), 0, $4 + $5)
ON CONFLICT (scope, key) DO UPDATE
   SET fingerprint = EXCLUDED.fingerprint, fence = EXCLUDED.fence, state = 0,
       expires_at_ms = EXCLUDED.expires_at_ms, status = NULL, response = NULL,
       created_at = now()
 WHERE idempotency_records.expires_at_ms <= $4
RETURNING fence";

const CURRENT: &str = "
SELECT fingerprint, state, expires_at_ms, response
  FROM idempotency_records WHERE scope = $1 AND key = $2";

const COMPLETE: &str = "
UPDATE idempotency_records
   SET state = 1, status = $4, response = $5, expires_at_ms = $6 + $7
 WHERE scope = $1 AND key = $2 AND fence = $3 AND state = 0 AND expires_at_ms > $6";

const RELEASE: &str = "
DELETE FROM idempotency_records
 WHERE scope = $1 AND key = $2 AND fence = $3 AND state = 0";

/// A Postgres [`IdempotencyStore`] and [`DedupStore`]. Cheap to clone (shares the pool).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
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

impl PostgresStore {
    /// A store on `pool`. Run [`PostgresStore::migrate`] once before use.
    pub fn new(pool: PgPool) -> Self {
        PostgresStore { pool }
    }

    /// Apply the shipped migrations (versions `2026112101xxxx`). Other crates' migrations in
    /// the same `_sqlx_migrations` table are left alone.
    pub async fn migrate(&self) -> Result<(), Error> {
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await.map_err(Error::store)
    }

    /// Delete every claim record and de-duplication entry expired at `now`; returns how many
    /// rows were removed. Expired rows are already ignored by claims; reaping frees space.
    pub async fn reap(&self, now: Timestamp) -> Result<u64, Error> {
        let records = sqlx::query("DELETE FROM idempotency_records WHERE expires_at_ms <= $1")
            .bind(ms(now))
            .execute(&self.pool)
            .await
            .map_err(Error::store)?;
        let dedup = sqlx::query("DELETE FROM idempotency_dedup WHERE expires_at_ms <= $1")
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
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl IdempotencyStore for PostgresStore {
    async fn claim(&self, req: ClaimRequest<'_>) -> Result<StoreClaim, Error> {
        // Two statements; between them the live record may expire or be released, so try
        // again (it then inserts). Three rounds are plenty: each retry needs a racing release.
        for _ in 0..3 {
            let taken: Option<i64> = sqlx::query_scalar(CLAIM)
                .bind(req.scope)
                .bind(req.key.as_str())
                .bind(req.fingerprint.as_bytes().as_slice())
                .bind(ms(req.now))
                .bind(dur_ms(req.lease).max(1))
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::store)?;
            if let Some(fence) = taken {
                return Ok(StoreClaim::Execute {
                    fence: u64::try_from(fence)
                        .map_err(|_| Error::Corrupt("negative fence".into()))?,
                });
            }
            let current: Option<(Vec<u8>, i16, i64, Option<Vec<u8>>)> = sqlx::query_as(CURRENT)
                .bind(req.scope)
                .bind(req.key.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::store)?;
            let Some((fingerprint, state, expires_at_ms, response)) = current else {
                continue;
            };
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
            // None: the record expired between the two statements; take the key.
            if let Some(answer) = found {
                return Ok(answer);
            }
        }
        Err(Error::store(std::io::Error::other(
            "claim kept racing with expiring records",
        )))
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
        let done = sqlx::query(COMPLETE)
            .bind(scope)
            .bind(key.as_str())
            .bind(fence_param(fence))
            .bind(i16::try_from(response.status()).unwrap_or(i16::MAX))
            .bind(response.encode())
            .bind(ms(now))
            .bind(dur_ms(ttl))
            .execute(&self.pool)
            .await
            .map_err(Error::store)?;
        fenced(done.rows_affected() == 1, fence)
    }

    async fn release(&self, scope: &str, key: &IdempotencyKey, fence: u64) -> Result<(), Error> {
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
impl DedupStore for PostgresStore {
    async fn insert_if_absent(
        &self,
        id: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let inserted: Option<i32> = sqlx::query_scalar(
            "INSERT INTO idempotency_dedup (id, expires_at_ms) VALUES ($1, $2 + $3)
             ON CONFLICT (id) DO UPDATE
                SET expires_at_ms = EXCLUDED.expires_at_ms, processing_ms = NULL
              WHERE idempotency_dedup.expires_at_ms <= $2
             RETURNING 1",
        )
        .bind(id)
        .bind(ms(now))
        .bind(dur_ms(window))
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::store)?;
        Ok(inserted.is_some())
    }

    async fn contains(&self, id: &str, now: Timestamp) -> Result<bool, Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM idempotency_dedup WHERE id = $1 AND expires_at_ms > $2)",
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
        sqlx::query(
            "INSERT INTO idempotency_dedup (id, expires_at_ms, processing_ms) VALUES ($1, $2 + $3, $4)
             ON CONFLICT (id) DO UPDATE
                SET expires_at_ms = EXCLUDED.expires_at_ms,
                    processing_ms = COALESCE(EXCLUDED.processing_ms, idempotency_dedup.processing_ms)",
        )
        .bind(id)
        .bind(ms(now))
        .bind(dur_ms(window))
        .bind(processing_time.map(dur_ms))
        .execute(&self.pool)
        .await
        .map_err(Error::store)?;
        Ok(())
    }
}
