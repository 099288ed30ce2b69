//! The SQLite store: one table in one database file, claims in `BEGIN IMMEDIATE`
//! transactions, fenced single-statement settling writes, an in-process wake-up.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteQueryResult, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    LEASE_EXPIRED_MESSAGE, QueueAdmin, QueueStore, REPLAYABLE, RUNNABLE, Settlement, after_failure,
    after_snooze, check_claim, check_replay_filter,
};
use crate::time::{add, from_micros, sub, to_micros};
use crate::{
    AttemptError, Claimed, Enqueued, Error, Failure, Filter, LEASE_EXPIRED, Lease, Message,
    MessageId, NewMessage, Page, Pruned, QueueConfig, QueueStats, Retention, Snooze, State,
};

/// How long a connection waits for another's write lock before the call fails with
/// [`Error::StoreUnavailable`] (the default of [`SqliteQueue::connect_options`]).
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Rows per multi-row `INSERT` (15 parameters each, far below SQLite's 32 766).
const INSERT_CHUNK: usize = 500;

const COLUMNS: &str = "id, queue, dedup_key, payload, priority, state, attempts, max_attempts, \
     run_at, lease_token, lease_expires_at, errors, correlation_id, group_key, waiting_since, \
     created_at, updated_at, trace_context";

/// The rescued (or buried) message's history entry, built in SQL from the row's own attempt
/// count; `?3` is the time as RFC 3339 text, `?4` the message, `?5` the kind.
const LEASE_EXPIRED_ENTRY: &str = "json_object('attempt', attempts, 'at', ?3, 'message', ?4, \
     'kind', ?5)";

/// A [`QueueStore`] on SQLite (feature `sqlite`): the embedded durable store of ONE service
/// instance, with the semantics of `PostgresQueue` and the same conformance suite.
///
/// Open the pool with [`SqliteQueue::connect_options`] (WAL journal, `synchronous = FULL`,
/// a busy timeout) and run [`SqliteQueue::migrate`] once at start-up (migrations
/// `2026112702xxxx`, table `dlq_messages`). Several stores (the idempotency store, the
/// snapshots...) may share the file and the pool: each crate's migrations ignore the others'.
///
/// # How claims stay exclusive and fenced without `SKIP LOCKED`
///
/// SQLite has one writer at a time per database file. A claim is one `BEGIN IMMEDIATE`
/// transaction: it takes the write lock first, then buries orphans on their last attempt,
/// selects the due rows and marks them `running` under a new lease token, and commits. No
/// other claim can run between its select and its update, so two workers never take the same
/// message; a claim that finds the lock held waits up to the busy timeout, then fails with
/// [`Error::StoreUnavailable`]. Every settling write (`ack`, `fail`, `snooze`, `extend`,
/// `release`) is one statement guarded by `lease_token = ? AND state = 'running'`, which
/// SQLite runs as its own write transaction: a stale lease matches no row and gets
/// [`Error::LeaseLost`]. Within the process, the store's writers (its clones included) queue
/// on an async mutex before asking for the lock, so they never sleep in SQLite's busy
/// handler waiting for each other.
///
/// # Time
///
/// Times are integer microseconds since the Unix epoch, read from the configured clock and
/// bound into every statement (never SQLite's own clock), so tests drive time exactly.
///
/// # Wake-up and single instance
///
/// [`wait_for_work`](QueueStore::wait_for_work) waits on a `Notify` per queue shared by the
/// store's clones, signalled after an enqueue, release, replay or run-now commits, and bounded
/// by the time until the queue's next message becomes due (or its next lease expires). Writes
/// from another process are seen only at that bound or the caller's timeout: run one service
/// instance per file (use Postgres for several). To make a second instance refuse to start,
/// hold a [`SqliteInstanceLock`](crate::SqliteInstanceLock) for the process's lifetime.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    pool: SqlitePool,
    config: QueueConfig,
    wakers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    /// Writers of this store (and its clones) take turns here before asking SQLite for the
    /// write lock: SQLite's busy handler sleeps in growing steps while it waits, which costs
    /// far more than queueing in-process (the lock is still what excludes other processes).
    gate: Arc<tokio::sync::Mutex<()>>,
}

fn still_held(done: &SqliteQueryResult, lease: &Lease) -> Result<(), Error> {
    if done.rows_affected() == 0 {
        return Err(Error::LeaseLost(lease.id));
    }
    Ok(())
}

impl SqliteQueue {
    /// A store on `pool` with the default configuration.
    pub fn new(pool: SqlitePool) -> Self {
        Self::with_config(pool, QueueConfig::default())
    }

    /// A store on `pool` with `config`.
    pub fn with_config(pool: SqlitePool, config: QueueConfig) -> Self {
        SqliteQueue {
            pool,
            config,
            wakers: Arc::default(),
            gate: Arc::default(),
        }
    }

    /// Connect options for the database file at `path`, as this store expects them: the file
    /// is created if missing (its folder is not), WAL journal (readers never block the
    /// writer), `synchronous = FULL` (a committed enqueue survives a power cut, not only a
    /// crash; `NORMAL` trades that for speed), and a busy timeout of
    /// [`SQLITE_BUSY_TIMEOUT`]. Adjust with the returned builder's methods.
    pub fn connect_options(path: impl AsRef<Path>) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
    }

    /// Applies this crate's SQLite migrations (others' already-applied migrations are
    /// ignored, so stores of several crates can share one file).
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
        self.config.now()
    }

    /// A write transaction that holds the database's write lock from its first statement, so
    /// that what it reads cannot change before it writes.
    async fn immediate(&self) -> Result<Transaction<'static, Sqlite>, Error> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    fn waker(&self, queue: &str) -> Arc<Notify> {
        self.wakers
            .lock()
            .entry(queue.to_owned())
            .or_default()
            .clone()
    }

    fn wake(&self, queue: &str) {
        let waker = self.waker(queue);
        waker.notify_waiters();
        // Also leave a permit, for a worker between its empty claim and its wait.
        waker.notify_one();
    }

    /// How long until `queue`'s next waiting message is due or its next lease expires.
    async fn next_due_in(&self, queue: &str) -> Option<Duration> {
        let now = self.now();
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT min(run_at) FROM dlq_messages \
             WHERE queue = ?1 AND state IN ('pending', 'retrying', 'running') AND run_at > ?2",
        )
        .bind(queue)
        .bind(to_micros(now))
        .fetch_one(&self.pool)
        .await
        .ok()?;
        let next = from_micros(next?).ok()?;
        (next - now).to_std().ok()
    }

    /// Writes a `fail`/`snooze` settlement to the leased message (fenced by its token).
    async fn settle_held(
        &self,
        lease: &Lease,
        settlement: Settlement,
        now: DateTime<Utc>,
    ) -> Result<State, Error> {
        let Settlement {
            state,
            run_at,
            waiting_since,
            entries,
            give_back,
        } = settlement;
        let mut q = QueryBuilder::<Sqlite>::new("UPDATE dlq_messages SET state = ");
        q.push_bind(state.as_str())
            .push(", run_at = ")
            .push_bind(to_micros(run_at))
            .push(", errors = json_insert(errors");
        for entry in &entries {
            let json =
                serde_json::to_string(entry).map_err(|e| Error::InvalidInput(e.to_string()))?;
            q.push(", '$[#]', json(").push_bind(json).push(")");
        }
        q.push("), attempts = max(attempts - ")
            .push_bind(i64::from(give_back))
            .push(", 0), waiting_since = ")
            .push_bind(waiting_since.map(to_micros))
            .push(", lease_token = NULL, lease_expires_at = NULL, updated_at = ")
            .push_bind(to_micros(now))
            .push(" WHERE id = ")
            .push_bind(lease.id.to_string())
            .push(" AND lease_token = ")
            .push_bind(lease.token.to_string())
            .push(" AND state = 'running'");
        let _gate = self.gate.lock().await;
        let done = q.build().execute(&self.pool).await?;
        still_held(&done, lease)?;
        Ok(state)
    }

    /// The error for an operator action that matched no row: not found, or the wrong state.
    async fn why_not(&self, id: MessageId, expected: State) -> Error {
        let state: Result<Option<String>, sqlx::Error> =
            sqlx::query_scalar("SELECT state FROM dlq_messages WHERE id = ?1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await;
        match state {
            Err(e) => e.into(),
            Ok(None) => Error::NotFound(id),
            Ok(Some(s)) => match s.parse() {
                Ok(actual) => Error::WrongState {
                    id,
                    actual,
                    expected,
                },
                Err(e) => e,
            },
        }
    }
}

/// `states` as a JSON array, for `IN (SELECT value FROM json_each(?))`.
fn state_names(states: &[State]) -> String {
    serde_json::Value::from(states.iter().map(|s| s.as_str()).collect::<Vec<_>>()).to_string()
}

fn uuid(text: &str, what: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(text).map_err(|e| Error::Corrupt(format!("{what} {text:?}: {e}")))
}

fn micros(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, Error> {
    from_micros(row.try_get(column)?)
}

fn optional_micros(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, Error> {
    row.try_get::<Option<i64>, _>(column)?
        .map(from_micros)
        .transpose()
}

fn decode(row: &SqliteRow) -> Result<Message, Error> {
    let corrupt = |what: &str| Error::Corrupt(format!("{what} out of range"));
    let id: String = row.try_get("id")?;
    let payload: String = row.try_get("payload")?;
    let errors: String = row.try_get("errors")?;
    let lease_owner: Option<String> = row.try_get("lease_token")?;
    let state: String = row.try_get("state")?;
    Ok(Message {
        id: MessageId::from_uuid(uuid(&id, "id")?),
        queue: row.try_get("queue")?,
        dedup_key: row.try_get("dedup_key")?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| Error::Corrupt(format!("payload: {e}")))?,
        priority: u8::try_from(row.try_get::<i64, _>("priority")?)
            .map_err(|_| corrupt("priority"))?,
        state: state.parse()?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?)
            .map_err(|_| corrupt("attempts"))?,
        max_attempts: u32::try_from(row.try_get::<i64, _>("max_attempts")?)
            .map_err(|_| corrupt("max_attempts"))?,
        run_at: micros(row, "run_at")?,
        lease_owner: lease_owner
            .as_deref()
            .map(|t| uuid(t, "lease token"))
            .transpose()?,
        lease_expires_at: optional_micros(row, "lease_expires_at")?,
        errors: serde_json::from_str::<Vec<AttemptError>>(&errors)
            .map_err(|e| Error::Corrupt(format!("errors: {e}")))?,
        correlation_id: row.try_get("correlation_id")?,
        trace_context: row.try_get("trace_context")?,
        group_key: row.try_get("group_key")?,
        waiting_since: optional_micros(row, "waiting_since")?,
        created_at: micros(row, "created_at")?,
        updated_at: micros(row, "updated_at")?,
    })
}

/// Appends `WHERE` conditions for `filter` to `q`.
fn push_filter(q: &mut QueryBuilder<'_, Sqlite>, filter: &Filter) {
    q.push(" WHERE state = ")
        .push_bind(filter.target_state().as_str());
    if let Some(queue) = &filter.queue {
        q.push(" AND queue = ").push_bind(queue.clone());
    }
    if let Some(kind) = &filter.error_kind {
        q.push(" AND json_extract(errors, '$[#-1].kind') = ")
            .push_bind(kind.clone());
    }
    if let Some(since) = filter.since {
        q.push(" AND updated_at >= ").push_bind(to_micros(since));
    }
    if let Some(until) = filter.until {
        q.push(" AND updated_at < ").push_bind(to_micros(until));
    }
}

#[async_trait]
impl QueueStore for SqliteQueue {
    async fn enqueue_batch(&self, messages: Vec<NewMessage>) -> Result<Vec<Enqueued>, Error> {
        for m in &messages {
            m.validate()?;
        }
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let at = self.now();
        let now = to_micros(at);
        // Within the batch, the first copy of a key is the one stored.
        let mut first_of: HashMap<(&str, &str), usize> = HashMap::new();
        let mut copy_of: Vec<Option<usize>> = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let first = m.dedup_key.as_deref().and_then(|key| {
                match first_of.get(&(m.queue.as_str(), key)) {
                    Some(&first) => Some(first),
                    None => {
                        first_of.insert((m.queue.as_str(), key), i);
                        None
                    }
                }
            });
            copy_of.push(first);
        }
        let keys: Vec<[&str; 2]> = first_of.keys().map(|(q, k)| [*q, *k]).collect();
        let keys = serde_json::to_string(&keys).map_err(|e| Error::InvalidInput(e.to_string()))?;

        let gate = self.gate.lock().await;
        // One write transaction for the batch: nothing else writes between the key look-ups
        // and the insert.
        let mut tx = self.immediate().await?;
        let mut holders: HashMap<(String, String), String> = HashMap::new();
        if !first_of.is_empty() {
            // The live holder of each key (the dedup index), then on queues that remember
            // done keys the newest done holder (the done-keys index).
            let live = sqlx::query(
                "SELECT m.queue, m.dedup_key, m.id FROM json_each(?1) AS k \
                 JOIN dlq_messages m ON m.queue = k.value ->> 0 AND m.dedup_key = k.value ->> 1 \
                 WHERE m.state <> 'done'",
            )
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?;
            for row in live {
                holders.insert(
                    (row.try_get("queue")?, row.try_get("dedup_key")?),
                    row.try_get("id")?,
                );
            }
            let done = sqlx::query(
                "SELECT m.queue, m.dedup_key, m.id FROM json_each(?1) AS k \
                 JOIN dlq_messages m ON m.queue = k.value ->> 0 AND m.dedup_key = k.value ->> 1 \
                 WHERE m.state = 'done' AND m.dedup_key IS NOT NULL \
                 ORDER BY m.created_at DESC",
            )
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?;
            for row in done {
                let queue: String = row.try_get("queue")?;
                if self.config.remembers_done(&queue) {
                    holders
                        .entry((queue, row.try_get("dedup_key")?))
                        .or_insert(row.try_get("id")?);
                }
            }
        }

        let mut out: Vec<Enqueued> = Vec::with_capacity(messages.len());
        let mut new_rows: Vec<(MessageId, &NewMessage)> = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if let Some(first) = copy_of[i] {
                out.push(Enqueued::Duplicate(out[first].id()));
                continue;
            }
            if let Some(key) = &m.dedup_key {
                if let Some(holder) = holders.get(&(m.queue.clone(), key.clone())) {
                    out.push(Enqueued::Duplicate(MessageId::from_uuid(uuid(
                        holder, "id",
                    )?)));
                    continue;
                }
            }
            let id = MessageId::new();
            new_rows.push((id, m));
            out.push(Enqueued::New(id));
        }
        // Multi-row inserts, in chunks well under SQLite's limit on bound parameters.
        for chunk in new_rows.chunks(INSERT_CHUNK) {
            let mut rows = Vec::with_capacity(chunk.len());
            for (id, m) in chunk {
                let payload = serde_json::to_string(&m.payload)
                    .map_err(|e| Error::InvalidInput(e.to_string()))?;
                let max_attempts = m
                    .max_attempts
                    .unwrap_or_else(|| self.config.policy(&m.queue).max_attempts());
                rows.push((id, m, payload, max_attempts));
            }
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO dlq_messages (id, queue, dedup_key, payload, priority, state, \
                     attempts, max_attempts, run_at, errors, correlation_id, group_key, \
                     created_at, updated_at, trace_context) ",
            );
            q.push_values(rows, |mut b, (id, m, payload, max_attempts)| {
                b.push_bind(id.to_string())
                    .push_bind(m.queue.as_str())
                    .push_bind(m.dedup_key.as_deref())
                    .push_bind(payload)
                    .push_bind(i64::from(m.priority))
                    .push("'pending'")
                    .push("0")
                    .push_bind(i64::from(max_attempts))
                    .push_bind(to_micros(add(at, m.delay)))
                    .push("'[]'")
                    .push_bind(m.correlation_id.as_deref())
                    .push_bind(m.group.as_deref())
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(m.trace_context.as_deref());
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        drop(gate);
        let mut woken: Vec<&str> = Vec::new();
        for (_, m) in &new_rows {
            if !woken.contains(&m.queue.as_str()) {
                woken.push(&m.queue);
                self.wake(&m.queue);
            }
        }
        Ok(out)
    }

    async fn claim(
        &self,
        queue: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, Error> {
        check_claim(queue, lease)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        let expires_at = add(now, lease);
        let token = Uuid::now_v7();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let at = now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let _gate = self.gate.lock().await;
        let mut tx = self.immediate().await?;
        // Orphans that already used their last attempt are dead letters, not claims.
        sqlx::query(&format!(
            "UPDATE dlq_messages SET state = 'dead', lease_token = NULL, \
                 lease_expires_at = NULL, updated_at = ?2, \
                 errors = json_insert(errors, '$[#]', {LEASE_EXPIRED_ENTRY}) \
             WHERE queue = ?1 AND state = 'running' AND attempts >= max_attempts \
               AND run_at <= ?2"
        ))
        .bind(queue)
        .bind(to_micros(now))
        .bind(&at)
        .bind(LEASE_EXPIRED_MESSAGE)
        .bind(LEASE_EXPIRED)
        .execute(&mut *tx)
        .await?;
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM dlq_messages c \
             WHERE queue = ?1 AND state IN ('pending', 'retrying', 'running') \
               AND run_at <= ?2 AND NOT (state = 'running' AND attempts >= max_attempts) \
               AND (group_key IS NULL OR NOT EXISTS ( \
                   SELECT 1 FROM dlq_messages e \
                   WHERE e.queue = c.queue AND e.group_key = c.group_key AND e.id < c.id \
                     AND e.state IN ('pending', 'retrying', 'running'))) \
             ORDER BY priority, run_at, id \
             LIMIT ?3",
        )
        .bind(queue)
        .bind(to_micros(now))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if due.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        // SET expressions read the row as it was: a rescued row's entry records the attempt
        // whose lease expired.
        let rows = sqlx::query(&format!(
            "UPDATE dlq_messages SET state = 'running', attempts = attempts + 1, \
                 errors = CASE WHEN state = 'running' \
                     THEN json_insert(errors, '$[#]', {LEASE_EXPIRED_ENTRY}) ELSE errors END, \
                 run_at = ?1, lease_token = ?6, lease_expires_at = ?1, updated_at = ?2 \
             WHERE id IN (SELECT value FROM json_each(?7)) \
             RETURNING {COLUMNS}"
        ))
        .bind(to_micros(expires_at))
        .bind(to_micros(now))
        .bind(&at)
        .bind(LEASE_EXPIRED_MESSAGE)
        .bind(LEASE_EXPIRED)
        .bind(token.to_string())
        .bind(serde_json::Value::from(due.clone()).to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let order: HashMap<&str, usize> = due
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let message = decode(row)?;
            let rank = order
                .get(message.id.to_string().as_str())
                .copied()
                .unwrap_or(usize::MAX);
            let lease = Lease {
                id: message.id,
                queue: message.queue.clone(),
                token,
                attempt: message.attempts,
                max_attempts: message.max_attempts,
                expires_at,
                waiting_since: message.waiting_since,
            };
            claimed.push((rank, Claimed { message, lease }));
        }
        // RETURNING has no order: restore the claim order.
        claimed.sort_by_key(|c| c.0);
        Ok(claimed.into_iter().map(|(_, c)| c).collect())
    }

    async fn ack(&self, lease: &Lease) -> Result<(), Error> {
        let _gate = self.gate.lock().await;
        let done = sqlx::query(
            "UPDATE dlq_messages SET state = 'done', lease_token = NULL, \
                 lease_expires_at = NULL, waiting_since = NULL, updated_at = ?3 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )
        .bind(lease.id.to_string())
        .bind(lease.token.to_string())
        .bind(to_micros(self.now()))
        .execute(&self.pool)
        .await?;
        still_held(&done, lease)
    }

    async fn ack_batch(&self, leases: &[Lease]) -> Result<u64, Error> {
        Ok(self.ack_batch_ids(leases).await?.len() as u64)
    }

    async fn ack_batch_ids(&self, leases: &[Lease]) -> Result<Vec<MessageId>, Error> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let pairs: Vec<[String; 2]> = leases
            .iter()
            .map(|l| [l.id.to_string(), l.token.to_string()])
            .collect();
        let pairs =
            serde_json::to_string(&pairs).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let _gate = self.gate.lock().await;
        let acked: Vec<String> = sqlx::query_scalar(
            "UPDATE dlq_messages SET state = 'done', lease_token = NULL, \
                 lease_expires_at = NULL, waiting_since = NULL, updated_at = ?2 \
             WHERE state = 'running' AND (id, lease_token) IN ( \
                 SELECT value ->> 0, value ->> 1 FROM json_each(?1)) \
             RETURNING id",
        )
        .bind(pairs)
        .bind(to_micros(self.now()))
        .fetch_all(&self.pool)
        .await?;
        acked
            .iter()
            .map(|id| uuid(id, "id").map(MessageId::from_uuid))
            .collect()
    }

    async fn fail(&self, lease: &Lease, failure: Failure) -> Result<State, Error> {
        let now = self.now();
        let settlement = after_failure(&self.config, lease, &failure, now);
        self.settle_held(lease, settlement, now).await
    }

    async fn snooze(&self, lease: &Lease, snooze: Snooze) -> Result<State, Error> {
        let now = self.now();
        let settlement = after_snooze(&self.config, lease, &snooze, now);
        self.settle_held(lease, settlement, now).await
    }

    async fn extend(&self, lease: &Lease, lease_for: Duration) -> Result<Lease, Error> {
        check_claim(&lease.queue, lease_for)?;
        let now = self.now();
        let expires_at = add(now, lease_for);
        let _gate = self.gate.lock().await;
        let done = sqlx::query(
            "UPDATE dlq_messages SET run_at = ?3, lease_expires_at = ?3, updated_at = ?4 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )
        .bind(lease.id.to_string())
        .bind(lease.token.to_string())
        .bind(to_micros(expires_at))
        .bind(to_micros(now))
        .execute(&self.pool)
        .await?;
        still_held(&done, lease)?;
        Ok(Lease {
            expires_at,
            ..lease.clone()
        })
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let _gate = self.gate.lock().await;
        let done = sqlx::query(
            "UPDATE dlq_messages SET attempts = max(attempts - 1, 0), \
                 state = CASE WHEN attempts <= 1 THEN 'pending' ELSE 'retrying' END, \
                 run_at = ?3, lease_token = NULL, lease_expires_at = NULL, updated_at = ?3 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )
        .bind(lease.id.to_string())
        .bind(lease.token.to_string())
        .bind(to_micros(self.now()))
        .execute(&self.pool)
        .await?;
        still_held(&done, lease)?;
        self.wake(&lease.queue);
        Ok(())
    }

    async fn wait_for_work(&self, queue: &str, timeout: Duration) {
        let waker = self.waker(queue);
        let notified = waker.notified();
        tokio::pin!(notified);
        // Registered before the look-up below: a wake-up meanwhile is not missed.
        notified.as_mut().enable();
        let bound = match self.next_due_in(queue).await {
            Some(due) => due.min(timeout),
            None => timeout,
        };
        let _ = tokio::time::timeout(bound, notified).await;
    }
}

#[async_trait]
impl QueueAdmin for SqliteQueue {
    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM dlq_messages WHERE id = ?1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn list(&self, filter: &Filter, page: Page) -> Result<Vec<Message>, Error> {
        let mut q = QueryBuilder::new(format!("SELECT {COLUMNS} FROM dlq_messages"));
        push_filter(&mut q, filter);
        if let Some(after) = page.after {
            q.push(" AND id > ").push_bind(after.to_string());
        }
        q.push(" ORDER BY id LIMIT ")
            .push_bind(i64::from(page.clamped_limit()));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    async fn replay(&self, id: MessageId) -> Result<(), Error> {
        let _gate = self.gate.lock().await;
        let queue: Option<String> = sqlx::query_scalar(
            "UPDATE dlq_messages SET state = 'pending', attempts = 0, run_at = ?2, \
                 lease_token = NULL, lease_expires_at = NULL, waiting_since = NULL, \
                 updated_at = ?2 \
             WHERE id = ?1 AND state IN (SELECT value FROM json_each(?3)) RETURNING queue",
        )
        .bind(id.to_string())
        .bind(to_micros(self.now()))
        .bind(state_names(&REPLAYABLE))
        .fetch_optional(&self.pool)
        .await?;
        match queue {
            Some(queue) => {
                self.wake(&queue);
                Ok(())
            }
            None => Err(self.why_not(id, State::Dead).await),
        }
    }

    async fn run_now(&self, id: MessageId) -> Result<(), Error> {
        let _gate = self.gate.lock().await;
        let queue: Option<String> = sqlx::query_scalar(
            "UPDATE dlq_messages SET run_at = ?2, updated_at = ?2 \
             WHERE id = ?1 AND state IN (SELECT value FROM json_each(?3)) RETURNING queue",
        )
        .bind(id.to_string())
        .bind(to_micros(self.now()))
        .bind(state_names(&RUNNABLE))
        .fetch_optional(&self.pool)
        .await?;
        match queue {
            Some(queue) => {
                self.wake(&queue);
                Ok(())
            }
            None => Err(self.why_not(id, State::Retrying).await),
        }
    }

    async fn replay_matching(&self, filter: &Filter) -> Result<u64, Error> {
        check_replay_filter(filter)?;
        let now = to_micros(self.now());
        let mut q =
            QueryBuilder::new("UPDATE dlq_messages SET state = 'pending', attempts = 0, run_at = ");
        q.push_bind(now)
            .push(
                ", lease_token = NULL, lease_expires_at = NULL, waiting_since = NULL, \
                 updated_at = ",
            )
            .push_bind(now);
        push_filter(&mut q, filter);
        q.push(" RETURNING queue");
        let _gate = self.gate.lock().await;
        let mut queues: Vec<String> = q.build_query_scalar().fetch_all(&self.pool).await?;
        let n = queues.len() as u64;
        queues.sort();
        queues.dedup();
        for queue in &queues {
            self.wake(queue);
        }
        Ok(n)
    }

    async fn delete(&self, id: MessageId) -> Result<bool, Error> {
        let _gate = self.gate.lock().await;
        let done = sqlx::query("DELETE FROM dlq_messages WHERE id = ?1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn purge(&self, filter: &Filter) -> Result<u64, Error> {
        let mut q = QueryBuilder::new("DELETE FROM dlq_messages");
        push_filter(&mut q, filter);
        let _gate = self.gate.lock().await;
        Ok(q.build().execute(&self.pool).await?.rows_affected())
    }

    async fn prune(&self, retention: &Retention) -> Result<Pruned, Error> {
        let now = self.now();
        let _gate = self.gate.lock().await;
        let done = sqlx::query("DELETE FROM dlq_messages WHERE state = 'done' AND updated_at < ?1")
            .bind(to_micros(sub(now, retention.done)))
            .execute(&self.pool)
            .await?
            .rows_affected();
        let dead = match retention.dead {
            Some(keep) => {
                sqlx::query("DELETE FROM dlq_messages WHERE state = 'dead' AND updated_at < ?1")
                    .bind(to_micros(sub(now, keep)))
                    .execute(&self.pool)
                    .await?
                    .rows_affected()
            }
            None => 0,
        };
        Ok(Pruned { done, dead })
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        let now = self.now();
        let rows = sqlx::query(
            "SELECT queue, state, count(*) AS n, \
                 min(CASE WHEN state IN ('pending', 'retrying') AND run_at <= ?1 \
                     THEN run_at END) AS oldest_due \
             FROM dlq_messages GROUP BY queue, state ORDER BY queue",
        )
        .bind(to_micros(now))
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<QueueStats> = Vec::new();
        for row in rows {
            let queue: String = row.try_get("queue")?;
            let state: State = row.try_get::<String, _>("state")?.parse()?;
            let n: i64 = row.try_get("n")?;
            let oldest = optional_micros(&row, "oldest_due")?;
            if out.last().is_none_or(|s| s.queue != queue) {
                out.push(QueueStats::empty(queue));
            }
            let Some(stats) = out.last_mut() else {
                continue;
            };
            stats.counts.insert(state, u64::try_from(n).unwrap_or(0));
            if let Some(oldest) = oldest {
                let age = (now - oldest).to_std().unwrap_or_default();
                stats.oldest_due_age = stats.oldest_due_age.max(age);
            }
        }
        Ok(out)
    }
}
