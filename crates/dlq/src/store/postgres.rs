//! The Postgres store: one table, `FOR UPDATE SKIP LOCKED` claims, fenced settling writes,
//! `LISTEN/NOTIFY` wake-up.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use sqlx::postgres::{PgListener, PgPool, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{
    LEASE_EXPIRED_MESSAGE, QueueAdmin, QueueStore, REPLAYABLE, RUNNABLE, Settlement, after_failure,
    after_snooze, check_claim, check_replay_filter,
};
use crate::time::{add, sub};
use crate::{
    AttemptError, Claimed, Enqueued, Error, Failure, Filter, LEASE_EXPIRED, Lease, Message,
    MessageId, NewMessage, Page, Pruned, QueueConfig, QueueStats, Retention, Snooze, State,
};

/// The NOTIFY channel; the payload is the queue name.
pub(crate) const CHANNEL: &str = "steadfast_dlq";

const COLUMNS: &str = "id, queue, dedup_key, payload, priority, state, attempts, max_attempts, \
     run_at, lease_token, lease_expires_at, errors, correlation_id, group_key, waiting_since, \
     created_at, updated_at, trace_context";

/// `Ok` when a fenced statement (`WHERE ... lease_token = $token AND state = 'running'`)
/// touched the row, i.e. the lease was still the message's current one.
fn still_held(done: &sqlx::postgres::PgQueryResult, lease: &Lease) -> Result<(), Error> {
    if done.rows_affected() == 0 {
        return Err(Error::LeaseLost(lease.id));
    }
    Ok(())
}

/// A [`QueueStore`] on Postgres (feature `postgres`).
///
/// Run [`PostgresQueue::migrate`] once at start-up (migrations `2026112102xxxx`, table
/// `dlq_messages`, unqualified so the connection's `search_path` picks the schema).
///
/// Time comes from the configured clock and is bound into every query (not the server's
/// `now()`), so tests drive it exactly; instances sharing the database need synced clocks.
/// Enqueues NOTIFY channel `steadfast_dlq`; [`wait_for_work`](QueueStore::wait_for_work) starts
/// one listener connection per store on first use, and falls back to its timeout (polling)
/// while the listener is down.
#[derive(Debug)]
pub struct PostgresQueue {
    pool: PgPool,
    config: QueueConfig,
    wakers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    listener: OnceLock<ListenerTask>,
}

#[derive(Debug)]
struct ListenerTask(JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PostgresQueue {
    /// A store on `pool` with the default configuration.
    pub fn new(pool: PgPool) -> Self {
        Self::with_config(pool, QueueConfig::default())
    }

    /// A store on `pool` with `config`.
    pub fn with_config(pool: PgPool, config: QueueConfig) -> Self {
        PostgresQueue {
            pool,
            config,
            wakers: Arc::default(),
            listener: OnceLock::new(),
        }
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
        self.config.now()
    }

    fn waker(&self, queue: &str) -> Arc<Notify> {
        waker(&self.wakers, queue)
    }

    fn start_listener(&self) {
        self.listener.get_or_init(|| {
            let pool = self.pool.clone();
            let wakers = self.wakers.clone();
            ListenerTask(tokio::spawn(listen(pool, wakers)))
        });
    }

    async fn notify(
        &self,
        conn: &mut sqlx::PgConnection,
        queues: Vec<String>,
    ) -> Result<(), Error> {
        if queues.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, q) FROM UNNEST($2::text[]) AS q")
            .bind(CHANNEL)
            .bind(queues)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn notify_pool(&self, queues: Vec<String>) -> Result<(), Error> {
        let mut conn = self.pool.acquire().await?;
        self.notify(&mut conn, queues).await
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
        let entries =
            serde_json::to_value(entries).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let done = sqlx::query(
            "UPDATE dlq_messages SET state = $3, run_at = $4, errors = errors || $5, \
                 attempts = GREATEST(attempts - $6, 0), waiting_since = $7, \
                 lease_token = NULL, lease_expires_at = NULL, updated_at = $8 \
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
        )
        .bind(lease.id.as_uuid())
        .bind(lease.token)
        .bind(state.as_str())
        .bind(run_at)
        .bind(entries)
        .bind(i32::from(give_back))
        .bind(waiting_since)
        .bind(now)
        .execute(&self.pool)
        .await?;
        still_held(&done, lease)?;
        Ok(state)
    }

    /// The error for an operator action that matched no row: not found, or the wrong state.
    async fn why_not(&self, id: MessageId, expected: State) -> Error {
        let state: Result<Option<String>, sqlx::Error> =
            sqlx::query_scalar("SELECT state FROM dlq_messages WHERE id = $1")
                .bind(id.as_uuid())
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

fn state_names(states: &[State]) -> Vec<String> {
    states.iter().map(|s| s.as_str().to_owned()).collect()
}

fn waker(wakers: &Mutex<HashMap<String, Arc<Notify>>>, queue: &str) -> Arc<Notify> {
    wakers.lock().entry(queue.to_owned()).or_default().clone()
}

/// Forwards notifications to the waiting workers of each queue; reconnects after errors.
async fn listen(pool: PgPool, wakers: Arc<Mutex<HashMap<String, Arc<Notify>>>>) {
    loop {
        if pool.is_closed() {
            return;
        }
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "dlq listener cannot connect; polling meanwhile");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "dlq LISTEN failed; polling meanwhile");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            match listener.recv().await {
                Ok(n) => {
                    let w = waker(&wakers, n.payload());
                    w.notify_waiters();
                    w.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dlq listener lost; reconnecting");
                    // Notifications were maybe missed: wake everyone to claim once.
                    for w in wakers.lock().values() {
                        w.notify_waiters();
                    }
                    break;
                }
            }
        }
    }
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn decode(row: &PgRow) -> Result<Message, Error> {
    let state: String = row.try_get("state")?;
    let errors: serde_json::Value = row.try_get("errors")?;
    let errors: Vec<AttemptError> =
        serde_json::from_value(errors).map_err(|e| Error::Corrupt(format!("errors: {e}")))?;
    let priority: i16 = row.try_get("priority")?;
    let attempts: i32 = row.try_get("attempts")?;
    let max_attempts: i32 = row.try_get("max_attempts")?;
    let corrupt = |what: &str| Error::Corrupt(format!("{what} out of range"));
    Ok(Message {
        id: MessageId::from_uuid(row.try_get("id")?),
        queue: row.try_get("queue")?,
        dedup_key: row.try_get("dedup_key")?,
        payload: row.try_get("payload")?,
        priority: u8::try_from(priority).map_err(|_| corrupt("priority"))?,
        state: state.parse()?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts"))?,
        max_attempts: u32::try_from(max_attempts).map_err(|_| corrupt("max_attempts"))?,
        run_at: row.try_get("run_at")?,
        lease_owner: row.try_get("lease_token")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        errors,
        correlation_id: row.try_get("correlation_id")?,
        trace_context: row.try_get("trace_context")?,
        group_key: row.try_get("group_key")?,
        waiting_since: row.try_get("waiting_since")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Appends `WHERE` conditions for `filter` to `q`.
fn push_filter(q: &mut QueryBuilder<'_, Postgres>, filter: &Filter) {
    q.push(" WHERE state = ")
        .push_bind(filter.target_state().as_str().to_owned());
    if let Some(queue) = &filter.queue {
        q.push(" AND queue = ").push_bind(queue.clone());
    }
    if let Some(kind) = &filter.error_kind {
        q.push(" AND errors -> -1 ->> 'kind' = ")
            .push_bind(kind.clone());
    }
    if let Some(since) = filter.since {
        q.push(" AND updated_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        q.push(" AND updated_at < ").push_bind(until);
    }
}

fn lease_expired_error_sql(attempts: &str, at_param: &str) -> String {
    format!(
        "jsonb_build_array(jsonb_build_object('attempt', {attempts}, 'at', {at_param}::text, \
         'message', '{LEASE_EXPIRED_MESSAGE}', 'kind', '{LEASE_EXPIRED}'))"
    )
}

#[async_trait]
impl QueueStore for PostgresQueue {
    async fn enqueue_batch(&self, messages: Vec<NewMessage>) -> Result<Vec<Enqueued>, Error> {
        for m in &messages {
            m.validate()?;
        }
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        // Within the batch, the first copy of a key is the one stored.
        let mut first_of: HashMap<(&str, &str), usize> = HashMap::new();
        let mut copy_of: Vec<Option<usize>> = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            match m.dedup_key.as_deref() {
                Some(key) => match first_of.get(&(m.queue.as_str(), key)) {
                    Some(&first) => copy_of.push(Some(first)),
                    None => {
                        first_of.insert((m.queue.as_str(), key), i);
                        copy_of.push(None);
                    }
                },
                None => copy_of.push(None),
            }
        }
        let ids: Vec<Uuid> = messages
            .iter()
            .map(|_| MessageId::new().as_uuid())
            .collect();
        let originals: Vec<usize> = (0..messages.len())
            .filter(|&i| copy_of[i].is_none())
            .collect();
        let b_ids: Vec<Uuid> = originals.iter().map(|&i| ids[i]).collect();
        let b_queues: Vec<String> = originals
            .iter()
            .map(|&i| messages[i].queue.clone())
            .collect();
        let b_keys: Vec<Option<String>> = originals
            .iter()
            .map(|&i| messages[i].dedup_key.clone())
            .collect();
        let b_payloads: Vec<serde_json::Value> = originals
            .iter()
            .map(|&i| messages[i].payload.clone())
            .collect();
        let b_priorities: Vec<i16> = originals
            .iter()
            .map(|&i| i16::from(messages[i].priority))
            .collect();
        let b_max: Vec<i32> = originals
            .iter()
            .map(|&i| {
                let m = &messages[i];
                to_i32(
                    m.max_attempts
                        .unwrap_or_else(|| self.config.policy(&m.queue).max_attempts()),
                )
            })
            .collect();
        let b_run_at: Vec<DateTime<Utc>> = originals
            .iter()
            .map(|&i| add(now, messages[i].delay))
            .collect();
        let b_corr: Vec<Option<String>> = originals
            .iter()
            .map(|&i| messages[i].correlation_id.clone())
            .collect();
        let b_groups: Vec<Option<String>> = originals
            .iter()
            .map(|&i| messages[i].group.clone())
            .collect();
        let b_traces: Vec<Option<String>> = originals
            .iter()
            .map(|&i| messages[i].trace_context.clone())
            .collect();
        let b_remember: Vec<bool> = originals
            .iter()
            .map(|&i| {
                let m = &messages[i];
                m.dedup_key.is_some() && self.config.remembers_done(&m.queue)
            })
            .collect();

        let mut tx = self.pool.begin().await?;
        // On a queue that remembers done keys, a retained done holder makes this a duplicate
        // too (the unique index covers live messages only).
        let inserted: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO dlq_messages (id, queue, dedup_key, payload, priority, state, attempts, \
                 max_attempts, run_at, errors, correlation_id, group_key, created_at, updated_at, \
                 trace_context) \
             SELECT id, queue, dedup_key, payload, priority, 'pending', 0, max_attempts, run_at, \
                 '[]'::jsonb, correlation_id, group_key, $11, $11, trace_context \
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int2[], \
                 $6::int4[], $7::timestamptz[], $8::text[], $9::text[], $10::bool[], \
                 $12::text[]) \
                 AS t(id, queue, dedup_key, payload, priority, max_attempts, run_at, \
                      correlation_id, group_key, remember, trace_context) \
             WHERE NOT (t.remember AND EXISTS ( \
                 SELECT 1 FROM dlq_messages d \
                 WHERE d.queue = t.queue AND d.dedup_key = t.dedup_key AND d.state = 'done')) \
             ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL AND state <> 'done' \
             DO NOTHING \
             RETURNING id",
        )
        .bind(&b_ids)
        .bind(&b_queues)
        .bind(&b_keys)
        .bind(&b_payloads)
        .bind(&b_priorities)
        .bind(&b_max)
        .bind(&b_run_at)
        .bind(&b_corr)
        .bind(&b_groups)
        .bind(&b_remember)
        .bind(now)
        .bind(&b_traces)
        .fetch_all(&mut *tx)
        .await?;
        let mut inserted: HashSet<Uuid> = inserted.into_iter().collect();

        // The race the filter above cannot see: the holder was live when this statement began
        // and was settled done before the unique check (which then waited for it and found no
        // live holder). This statement's fresh snapshot sees that done holder: undo ours.
        let (mut r_ids, mut r_queues, mut r_keys) = (Vec::new(), Vec::new(), Vec::new());
        for (i, id) in b_ids.iter().enumerate() {
            if b_remember[i] && inserted.contains(id) {
                r_ids.push(*id);
                r_queues.push(b_queues[i].clone());
                r_keys.push(b_keys[i].clone());
            }
        }
        if !r_ids.is_empty() {
            // Looked up from our keys into the done-keys index, one probe per new row, and a
            // DELETE only when one is found (rarely): a DELETE ... EXISTS over the new ids ran
            // on a generic plan that cost more than the whole insert (enqueue batches of 100:
            // ~9k instead of ~60k messages/s in the dlq bench).
            let raced: Vec<Uuid> = sqlx::query_scalar(
                "SELECT r.id FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS r(id, queue, key) \
                 WHERE EXISTS (SELECT 1 FROM dlq_messages d \
                     WHERE d.queue = r.queue AND d.dedup_key = r.key AND d.state = 'done')",
            )
            .bind(&r_ids)
            .bind(&r_queues)
            .bind(&r_keys)
            .fetch_all(&mut *tx)
            .await?;
            if !raced.is_empty() {
                let undone: Vec<Uuid> = sqlx::query_scalar(
                    "DELETE FROM dlq_messages m USING UNNEST($1::uuid[]) AS r(id) \
                     WHERE m.id = r.id RETURNING m.id",
                )
                .bind(&raced)
                .fetch_all(&mut *tx)
                .await?;
                for id in undone {
                    inserted.remove(&id);
                }
            }
        }

        // Keys that conflicted: find the live message holding each.
        let (lookup_queues, lookup_keys): (Vec<String>, Vec<String>) = originals
            .iter()
            .filter(|&&i| !inserted.contains(&ids[i]))
            .filter_map(|&i| {
                let m = &messages[i];
                m.dedup_key.clone().map(|k| (m.queue.clone(), k))
            })
            .unzip();
        let mut existing: HashMap<(String, String), Uuid> = HashMap::new();
        if !lookup_keys.is_empty() {
            // The live holder of each key, or, when it was settled `done` between our insert
            // and this read (a worker finished it meanwhile), the newest done copy: the key's
            // message exists either way, so this one is a duplicate of it.
            let rows = sqlx::query(
                "SELECT DISTINCT ON (m.queue, m.dedup_key) m.queue, m.dedup_key, m.id \
                 FROM dlq_messages m \
                 JOIN UNNEST($1::text[], $2::text[]) AS k(queue, key) \
                   ON m.queue = k.queue AND m.dedup_key = k.key \
                 ORDER BY m.queue, m.dedup_key, (m.state <> 'done') DESC, m.created_at DESC",
            )
            .bind(&lookup_queues)
            .bind(&lookup_keys)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                existing.insert(
                    (row.try_get("queue")?, row.try_get("dedup_key")?),
                    row.try_get("id")?,
                );
            }
        }

        let mut out = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let original = copy_of[i].unwrap_or(i);
            let resolved = if inserted.contains(&ids[original]) {
                if original == i {
                    Enqueued::New(MessageId::from_uuid(ids[i]))
                } else {
                    Enqueued::Duplicate(MessageId::from_uuid(ids[original]))
                }
            } else {
                let key = (m.queue.clone(), m.dedup_key.clone().unwrap_or_default());
                match existing.get(&key) {
                    Some(id) => Enqueued::Duplicate(MessageId::from_uuid(*id)),
                    // The conflicting message was deleted (purged or pruned) between our
                    // insert and lookup: nothing was stored for this one; the caller may retry.
                    None => {
                        return Err(Error::StoreUnavailable(
                            format!(
                                "dedup key {:?} changed state during enqueue; retry",
                                m.dedup_key
                            )
                            .into(),
                        ));
                    }
                }
            };
            out.push(resolved);
        }

        let mut woken: Vec<String> = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if inserted.contains(&ids[i]) && !woken.contains(&m.queue) {
                woken.push(m.queue.clone());
            }
        }
        // NOTIFY inside the transaction: delivered at commit, never for a rolled-back write.
        self.notify(&mut tx, woken).await?;
        tx.commit().await?;
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
        // One statement: bury orphans that used their last attempt (a partial index holds
        // exactly those `running` rows, so finding them costs nothing when there are none),
        // then take the most urgent due rows that nobody else is locking and that no earlier
        // live message of their group holds back (a probe of the group index per grouped
        // candidate). The two CTEs touch disjoint rows.
        let sql = format!(
            "WITH orphans AS ( \
                 SELECT id FROM dlq_messages \
                 WHERE queue = $1 AND state = 'running' AND run_at <= $2 \
                   AND attempts >= max_attempts \
                 FOR UPDATE SKIP LOCKED \
             ), buried AS ( \
                 UPDATE dlq_messages m SET state = 'dead', lease_token = NULL, \
                     lease_expires_at = NULL, updated_at = $2, \
                     errors = m.errors || {buried_error} \
                 FROM orphans WHERE m.id = orphans.id \
                 RETURNING m.id \
             ), due AS ( \
                 SELECT id, run_at FROM dlq_messages c \
                 WHERE queue = $1 AND state IN ('pending', 'retrying', 'running') \
                   AND run_at <= $2 AND NOT (state = 'running' AND attempts >= max_attempts) \
                   AND (group_key IS NULL OR NOT EXISTS ( \
                       SELECT 1 FROM dlq_messages e \
                       WHERE e.queue = c.queue AND e.group_key = c.group_key AND e.id < c.id \
                         AND e.state IN ('pending', 'retrying', 'running'))) \
                 ORDER BY priority, run_at, id \
                 LIMIT $4 \
                 FOR UPDATE SKIP LOCKED \
             ) \
             UPDATE dlq_messages m SET state = 'running', attempts = m.attempts + 1, \
                 run_at = $5, lease_token = $6, lease_expires_at = $5, updated_at = $2, \
                 errors = CASE WHEN m.state = 'running' THEN m.errors || {rescued_error} \
                          ELSE m.errors END \
             FROM due WHERE m.id = due.id \
             RETURNING due.run_at AS due_at, {cols}",
            buried_error = lease_expired_error_sql("m.attempts", "$3"),
            rescued_error = lease_expired_error_sql("m.attempts", "$3"),
            cols = COLUMNS
                .split(", ")
                .map(|c| format!("m.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let rows = sqlx::query(&sql)
            .bind(queue)
            .bind(now)
            .bind(now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .bind(limit)
            .bind(expires_at)
            .bind(token)
            .fetch_all(&self.pool)
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let due_at: DateTime<Utc> = row.try_get("due_at")?;
            let message = decode(row)?;
            let lease = Lease {
                id: message.id,
                queue: message.queue.clone(),
                token,
                attempt: message.attempts,
                max_attempts: message.max_attempts,
                expires_at,
                waiting_since: message.waiting_since,
            };
            claimed.push((message.priority, due_at, Claimed { message, lease }));
        }
        // RETURNING has no order: restore the claim order.
        claimed.sort_by_key(|a| (a.0, a.1, a.2.message.id));
        Ok(claimed.into_iter().map(|(_, _, c)| c).collect())
    }

    async fn ack(&self, lease: &Lease) -> Result<(), Error> {
        let done = sqlx::query(
            "UPDATE dlq_messages SET state = 'done', lease_token = NULL, \
                 lease_expires_at = NULL, waiting_since = NULL, updated_at = $3 \
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
        )
        .bind(lease.id.as_uuid())
        .bind(lease.token)
        .bind(self.now())
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
        let ids: Vec<Uuid> = leases.iter().map(|l| l.id.as_uuid()).collect();
        let tokens: Vec<Uuid> = leases.iter().map(|l| l.token).collect();
        let acked: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE dlq_messages m SET state = 'done', lease_token = NULL, \
                 lease_expires_at = NULL, waiting_since = NULL, updated_at = $3 \
             FROM UNNEST($1::uuid[], $2::uuid[]) AS l(id, token) \
             WHERE m.id = l.id AND m.lease_token = l.token AND m.state = 'running' \
             RETURNING m.id",
        )
        .bind(&ids)
        .bind(&tokens)
        .bind(self.now())
        .fetch_all(&self.pool)
        .await?;
        Ok(acked.into_iter().map(MessageId::from_uuid).collect())
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
        let done = sqlx::query(
            "UPDATE dlq_messages SET run_at = $3, lease_expires_at = $3, updated_at = $4 \
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
        )
        .bind(lease.id.as_uuid())
        .bind(lease.token)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        still_held(&done, lease)?;
        Ok(Lease {
            expires_at,
            ..lease.clone()
        })
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let done = sqlx::query(
            "UPDATE dlq_messages SET attempts = GREATEST(attempts - 1, 0), \
                 state = CASE WHEN attempts <= 1 THEN 'pending' ELSE 'retrying' END, \
                 run_at = $3, lease_token = NULL, lease_expires_at = NULL, updated_at = $3 \
             WHERE id = $1 AND lease_token = $2 AND state = 'running' \
             RETURNING queue",
        )
        .bind(lease.id.as_uuid())
        .bind(lease.token)
        .bind(self.now())
        .fetch_optional(&self.pool)
        .await?;
        match done {
            Some(_) => self.notify_pool(vec![lease.queue.clone()]).await,
            None => Err(Error::LeaseLost(lease.id)),
        }
    }

    async fn wait_for_work(&self, queue: &str, timeout: Duration) {
        self.start_listener();
        let waker = self.waker(queue);
        let _ = tokio::time::timeout(timeout, waker.notified()).await;
    }
}

#[async_trait]
impl QueueAdmin for PostgresQueue {
    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM dlq_messages WHERE id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn list(&self, filter: &Filter, page: Page) -> Result<Vec<Message>, Error> {
        let mut q = QueryBuilder::new(format!("SELECT {COLUMNS} FROM dlq_messages"));
        push_filter(&mut q, filter);
        if let Some(after) = page.after {
            q.push(" AND id > ").push_bind(after.as_uuid());
        }
        q.push(" ORDER BY id LIMIT ")
            .push_bind(i64::from(page.clamped_limit()));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    async fn replay(&self, id: MessageId) -> Result<(), Error> {
        let queue: Option<String> = sqlx::query_scalar(
            "UPDATE dlq_messages SET state = 'pending', attempts = 0, run_at = $2, \
                 lease_token = NULL, lease_expires_at = NULL, waiting_since = NULL, \
                 updated_at = $2 \
             WHERE id = $1 AND state = ANY($3) RETURNING queue",
        )
        .bind(id.as_uuid())
        .bind(self.now())
        .bind(state_names(&REPLAYABLE))
        .fetch_optional(&self.pool)
        .await?;
        match queue {
            Some(queue) => self.notify_pool(vec![queue]).await,
            None => Err(self.why_not(id, State::Dead).await),
        }
    }

    async fn run_now(&self, id: MessageId) -> Result<(), Error> {
        let queue: Option<String> = sqlx::query_scalar(
            "UPDATE dlq_messages SET run_at = $2, updated_at = $2 \
             WHERE id = $1 AND state = ANY($3) RETURNING queue",
        )
        .bind(id.as_uuid())
        .bind(self.now())
        .bind(state_names(&RUNNABLE))
        .fetch_optional(&self.pool)
        .await?;
        match queue {
            Some(queue) => self.notify_pool(vec![queue]).await,
            None => Err(self.why_not(id, State::Retrying).await),
        }
    }

    async fn replay_matching(&self, filter: &Filter) -> Result<u64, Error> {
        check_replay_filter(filter)?;
        let now = self.now();
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
        let queues: Vec<String> = q.build_query_scalar().fetch_all(&self.pool).await?;
        let n = queues.len() as u64;
        let mut distinct: Vec<String> = queues;
        distinct.sort();
        distinct.dedup();
        self.notify_pool(distinct).await?;
        Ok(n)
    }

    async fn delete(&self, id: MessageId) -> Result<bool, Error> {
        let done = sqlx::query("DELETE FROM dlq_messages WHERE id = $1")
            .bind(id.as_uuid())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn purge(&self, filter: &Filter) -> Result<u64, Error> {
        let mut q = QueryBuilder::new("DELETE FROM dlq_messages");
        push_filter(&mut q, filter);
        Ok(q.build().execute(&self.pool).await?.rows_affected())
    }

    async fn prune(&self, retention: &Retention) -> Result<Pruned, Error> {
        let now = self.now();
        let done = sqlx::query("DELETE FROM dlq_messages WHERE state = 'done' AND updated_at < $1")
            .bind(sub(now, retention.done))
            .execute(&self.pool)
            .await?
            .rows_affected();
        let dead = match retention.dead {
            Some(keep) => {
                sqlx::query("DELETE FROM dlq_messages WHERE state = 'dead' AND updated_at < $1")
                    .bind(sub(now, keep))
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
                 min(run_at) FILTER (WHERE state IN ('pending', 'retrying') AND run_at <= $1) \
                     AS oldest_due \
             FROM dlq_messages GROUP BY queue, state ORDER BY queue",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<QueueStats> = Vec::new();
        for row in rows {
            let queue: String = row.try_get("queue")?;
            let state: State = row.try_get::<String, _>("state")?.parse()?;
            let n: i64 = row.try_get("n")?;
            let oldest: Option<DateTime<Utc>> = row.try_get("oldest_due")?;
            if out.last().is_none_or(|s| s.queue != queue) {
                out.push(QueueStats::empty(queue));
            }
            let stats = out.last_mut().expect("pushed above");
            stats.counts.insert(state, u64::try_from(n).unwrap_or(0));
            if let Some(oldest) = oldest {
                let age = (now - oldest).to_std().unwrap_or_default();
                stats.oldest_due_age = stats.oldest_due_age.max(age);
            }
        }
        Ok(out)
    }
}
