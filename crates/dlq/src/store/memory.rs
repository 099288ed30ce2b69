//! The in-process store: the same semantics as Postgres, for tests and the one-command demo.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{QueueStore, after_failure, check_claim, check_replay_filter, lease_expired};
use crate::time::{add, sub};
use crate::{
    AttemptError, Claimed, Enqueued, Error, Failure, Filter, Lease, Message, MessageId, NewMessage,
    Page, Pruned, QueueConfig, QueueStats, Retention, State,
};

/// A [`QueueStore`] in memory. Nothing survives the process: use it for tests and demos.
///
/// Claims scan the queue (O(messages in the queue)); that is fine for what it is for.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    config: QueueConfig,
    inner: Mutex<Inner>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
}

#[derive(Debug, Default)]
struct Inner {
    messages: HashMap<MessageId, Message>,
    /// (queue, dedup key) of every message that is not done.
    keys: HashMap<(String, String), MessageId>,
}

impl Inner {
    fn forget_key(&mut self, m: &Message) {
        if let Some(key) = &m.dedup_key {
            let k = (m.queue.clone(), key.clone());
            if self.keys.get(&k) == Some(&m.id) {
                self.keys.remove(&k);
            }
        }
    }

    /// Deletes `doomed` (purge, prune), freeing their dedup keys.
    fn remove_all(&mut self, doomed: &[Message]) {
        for m in doomed {
            self.messages.remove(&m.id);
            self.forget_key(m);
        }
    }

    fn held(&mut self, lease: &Lease) -> Result<&mut Message, Error> {
        match self.messages.get_mut(&lease.id) {
            Some(m) if m.state == State::Running && m.lease_owner == Some(lease.token) => Ok(m),
            _ => Err(Error::LeaseLost(lease.id)),
        }
    }
}

impl MemoryQueue {
    /// An empty queue with the default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty queue with `config`.
    pub fn with_config(config: QueueConfig) -> Self {
        MemoryQueue {
            config,
            ..Self::default()
        }
    }

    fn waker(&self, queue: &str) -> Arc<Notify> {
        self.wakers
            .lock()
            .entry(queue.to_owned())
            .or_default()
            .clone()
    }
}

fn settle(m: &mut Message, state: State, now: chrono::DateTime<chrono::Utc>) {
    m.state = state;
    m.lease_owner = None;
    m.lease_expires_at = None;
    m.updated_at = now;
}

#[async_trait]
impl QueueStore for MemoryQueue {
    async fn enqueue_batch(&self, messages: Vec<NewMessage>) -> Result<Vec<Enqueued>, Error> {
        for m in &messages {
            m.validate()?;
        }
        let now = self.config.now();
        let mut queues = Vec::new();
        let mut out = Vec::with_capacity(messages.len());
        {
            let mut inner = self.inner.lock();
            for new in messages {
                if let Some(key) = &new.dedup_key {
                    if let Some(id) = inner.keys.get(&(new.queue.clone(), key.clone())) {
                        out.push(Enqueued::Duplicate(*id));
                        continue;
                    }
                }
                let id = MessageId::new();
                let max_attempts = new
                    .max_attempts
                    .unwrap_or_else(|| self.config.policy(&new.queue).max_attempts());
                if let Some(key) = &new.dedup_key {
                    inner.keys.insert((new.queue.clone(), key.clone()), id);
                }
                if !queues.contains(&new.queue) {
                    queues.push(new.queue.clone());
                }
                inner.messages.insert(
                    id,
                    Message {
                        id,
                        queue: new.queue,
                        dedup_key: new.dedup_key,
                        payload: new.payload,
                        priority: new.priority,
                        state: State::Pending,
                        attempts: 0,
                        max_attempts,
                        run_at: add(now, new.delay),
                        lease_owner: None,
                        lease_expires_at: None,
                        errors: Vec::new(),
                        correlation_id: new.correlation_id,
                        created_at: now,
                        updated_at: now,
                    },
                );
                out.push(Enqueued::New(id));
            }
        }
        for queue in queues {
            let waker = self.waker(&queue);
            waker.notify_waiters();
            // Also leave a permit, for a worker between its empty claim and its wait.
            waker.notify_one();
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
        let now = self.config.now();
        let expires_at = add(now, lease);
        let token = Uuid::now_v7();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        // Orphans that already used their last attempt are dead letters, not claims.
        let mut buried = Vec::new();
        for m in inner.messages.values_mut() {
            if m.queue == queue
                && m.state == State::Running
                && m.run_at <= now
                && m.attempts >= m.max_attempts
            {
                m.errors.push(lease_expired(m.attempts, now));
                settle(m, State::Dead, now);
                buried.push(m.id);
            }
        }
        let mut due: Vec<&mut Message> = inner
            .messages
            .values_mut()
            .filter(|m| {
                m.queue == queue
                    && matches!(m.state, State::Pending | State::Retrying | State::Running)
                    && m.run_at <= now
            })
            .collect();
        due.sort_by_key(|m| (m.priority, m.run_at, m.id));
        let mut out = Vec::new();
        for m in due.into_iter().take(limit) {
            if m.state == State::Running {
                m.errors.push(lease_expired(m.attempts, now));
            }
            m.state = State::Running;
            m.attempts += 1;
            m.run_at = expires_at;
            m.lease_owner = Some(token);
            m.lease_expires_at = Some(expires_at);
            m.updated_at = now;
            out.push(Claimed {
                lease: Lease {
                    id: m.id,
                    queue: m.queue.clone(),
                    token,
                    attempt: m.attempts,
                    max_attempts: m.max_attempts,
                    expires_at,
                },
                message: m.clone(),
            });
        }
        Ok(out)
    }

    async fn ack(&self, lease: &Lease) -> Result<(), Error> {
        let now = self.config.now();
        let mut inner = self.inner.lock();
        let m = inner.held(lease)?;
        settle(m, State::Done, now);
        let m = m.clone();
        inner.forget_key(&m);
        Ok(())
    }

    async fn ack_batch(&self, leases: &[Lease]) -> Result<u64, Error> {
        let mut acked = 0;
        for lease in leases {
            match self.ack(lease).await {
                Ok(()) => acked += 1,
                Err(Error::LeaseLost(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(acked)
    }

    async fn fail(&self, lease: &Lease, failure: Failure) -> Result<State, Error> {
        let now = self.config.now();
        let mut inner = self.inner.lock();
        let m = inner.held(lease)?;
        let (state, run_at) = after_failure(&self.config, lease, &failure, now);
        m.errors.push(AttemptError {
            attempt: lease.attempt,
            at: now,
            message: failure.message,
            kind: failure.kind,
        });
        m.run_at = run_at;
        settle(m, state, now);
        Ok(state)
    }

    async fn extend(&self, lease: &Lease, lease_for: Duration) -> Result<Lease, Error> {
        check_claim(&lease.queue, lease_for)?;
        let now = self.config.now();
        let expires_at = add(now, lease_for);
        let mut inner = self.inner.lock();
        let m = inner.held(lease)?;
        m.run_at = expires_at;
        m.lease_expires_at = Some(expires_at);
        m.updated_at = now;
        Ok(Lease {
            expires_at,
            ..lease.clone()
        })
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let now = self.config.now();
        let mut inner = self.inner.lock();
        let m = inner.held(lease)?;
        m.attempts = m.attempts.saturating_sub(1);
        m.run_at = now;
        let state = if m.attempts == 0 {
            State::Pending
        } else {
            State::Retrying
        };
        settle(m, state, now);
        Ok(())
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error> {
        Ok(self.inner.lock().messages.get(&id).cloned())
    }

    async fn list(&self, filter: &Filter, page: Page) -> Result<Vec<Message>, Error> {
        let inner = self.inner.lock();
        let mut found: Vec<Message> = inner
            .messages
            .values()
            .filter(|m| filter.matches(m) && page.after.is_none_or(|after| m.id > after))
            .cloned()
            .collect();
        found.sort_by_key(|m| m.id);
        found.truncate(page.clamped_limit() as usize);
        Ok(found)
    }

    async fn replay(&self, id: MessageId) -> Result<(), Error> {
        let now = self.config.now();
        let mut inner = self.inner.lock();
        let m = inner.messages.get_mut(&id).ok_or(Error::NotFound(id))?;
        if m.state != State::Dead {
            return Err(Error::WrongState {
                id,
                actual: m.state,
                expected: State::Dead,
            });
        }
        m.attempts = 0;
        m.run_at = now;
        settle(m, State::Pending, now);
        let queue = m.queue.clone();
        drop(inner);
        self.waker(&queue).notify_waiters();
        Ok(())
    }

    async fn replay_matching(&self, filter: &Filter) -> Result<u64, Error> {
        check_replay_filter(filter)?;
        let ids: Vec<MessageId> = {
            let inner = self.inner.lock();
            inner
                .messages
                .values()
                .filter(|m| filter.matches(m))
                .map(|m| m.id)
                .collect()
        };
        let mut n = 0;
        for id in ids {
            match self.replay(id).await {
                Ok(()) => n += 1,
                Err(Error::NotFound(_) | Error::WrongState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    async fn delete(&self, id: MessageId) -> Result<bool, Error> {
        let mut inner = self.inner.lock();
        match inner.messages.remove(&id) {
            Some(m) => {
                inner.forget_key(&m);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn purge(&self, filter: &Filter) -> Result<u64, Error> {
        let mut inner = self.inner.lock();
        let doomed: Vec<Message> = inner
            .messages
            .values()
            .filter(|m| filter.matches(m))
            .cloned()
            .collect();
        inner.remove_all(&doomed);
        Ok(doomed.len() as u64)
    }

    async fn prune(&self, retention: &Retention) -> Result<Pruned, Error> {
        let now = self.config.now();
        let done_before = sub(now, retention.done);
        let dead_before = retention.dead.map(|d| sub(now, d));
        let mut inner = self.inner.lock();
        let mut pruned = Pruned::default();
        let doomed: Vec<Message> = inner
            .messages
            .values()
            .filter(|m| match m.state {
                State::Done => m.updated_at < done_before,
                State::Dead => dead_before.is_some_and(|t| m.updated_at < t),
                _ => false,
            })
            .cloned()
            .collect();
        inner.remove_all(&doomed);
        for m in &doomed {
            match m.state {
                State::Done => pruned.done += 1,
                _ => pruned.dead += 1,
            }
        }
        Ok(pruned)
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        let now = self.config.now();
        let inner = self.inner.lock();
        let mut by_queue: HashMap<&str, QueueStats> = HashMap::new();
        for m in inner.messages.values() {
            let stats = by_queue
                .entry(&m.queue)
                .or_insert_with(|| QueueStats::empty(&m.queue));
            *stats.counts.entry(m.state).or_default() += 1;
            if matches!(m.state, State::Pending | State::Retrying) && m.run_at <= now {
                let age = (now - m.run_at).to_std().unwrap_or_default();
                stats.oldest_due_age = stats.oldest_due_age.max(age);
            }
        }
        let mut out: Vec<QueueStats> = by_queue.into_values().collect();
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(out)
    }

    async fn wait_for_work(&self, queue: &str, timeout: Duration) {
        let waker = self.waker(queue);
        let _ = tokio::time::timeout(timeout, waker.notified()).await;
    }
}
