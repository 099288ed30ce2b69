//! The in-process store: the same semantics as Postgres, for tests and the one-command demo.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    QueueAdmin, QueueStore, REPLAYABLE, RUNNABLE, Settlement, after_failure, after_snooze,
    check_claim, check_replay_filter, lease_expired,
};
use crate::time::{add, sub};
use crate::{
    Claimed, Enqueued, Error, Failure, Filter, Lease, Message, MessageId, NewMessage, Page, Pruned,
    QueueConfig, QueueStats, Retention, Snooze, State,
};

/// A [`QueueStore`] in memory. Nothing survives the process: use it for tests and demos.
///
/// Claims read an index of the claimable messages ordered like Postgres's claim (priority,
/// then `run_at`, then id), so claiming `n` costs O(n log N) whatever the backlog; `done` and
/// `dead` rows are never in that index.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    config: QueueConfig,
    inner: Mutex<Inner>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
}

#[derive(Debug, Default)]
struct Inner {
    messages: HashMap<MessageId, Message>,
    /// (queue, dedup key) of every message that is not done (and of retained done ones on
    /// queues that remember done keys).
    keys: HashMap<(String, String), MessageId>,
    /// (queue, group) → ids of the group's live (`pending`/`retrying`/`running`) messages:
    /// only the first may be claimed.
    groups: HashMap<(String, String), BTreeSet<MessageId>>,
    /// What a claim may take, per queue. Kept in step with `messages` by [`Inner::edit`],
    /// [`Inner::insert`] and [`Inner::remove`]: nothing else changes an indexed field.
    queues: HashMap<String, QueueIndex>,
}

/// The claim order: most urgent priority, then earliest `run_at`, then oldest id.
type ReadyKey = (u8, DateTime<Utc>, MessageId);

/// One queue's claimable messages.
#[derive(Debug, Default)]
struct QueueIndex {
    /// `pending`/`retrying` messages, and `running` ones with attempts left (a `running`
    /// message's `run_at` is its lease expiry, so it becomes due when the lease lapses).
    ready: BTreeSet<ReadyKey>,
    /// `running` messages on their last attempt, by lease expiry: a claim after that expiry
    /// buries them instead of running them again.
    doomed: BTreeSet<(DateTime<Utc>, MessageId)>,
}

/// Where a message belongs in its queue's index, if anywhere.
enum Slot {
    Ready(ReadyKey),
    Doomed((DateTime<Utc>, MessageId)),
}

fn slot(m: &Message) -> Option<Slot> {
    match m.state {
        State::Pending | State::Retrying => Some(Slot::Ready((m.priority, m.run_at, m.id))),
        State::Running if m.attempts < m.max_attempts => {
            Some(Slot::Ready((m.priority, m.run_at, m.id)))
        }
        State::Running => Some(Slot::Doomed((m.run_at, m.id))),
        State::Done | State::Dead => None,
    }
}

fn index(queues: &mut HashMap<String, QueueIndex>, m: &Message) {
    let Some(slot) = slot(m) else { return };
    let q = match queues.get_mut(m.queue.as_str()) {
        Some(q) => q,
        None => queues.entry(m.queue.clone()).or_default(),
    };
    match slot {
        Slot::Ready(k) => q.ready.insert(k),
        Slot::Doomed(k) => q.doomed.insert(k),
    };
}

fn unindex(queues: &mut HashMap<String, QueueIndex>, m: &Message) {
    let (Some(slot), Some(q)) = (slot(m), queues.get_mut(m.queue.as_str())) else {
        return;
    };
    match slot {
        Slot::Ready(k) => q.ready.remove(&k),
        Slot::Doomed(k) => q.doomed.remove(&k),
    };
}

fn is_live(m: &Message) -> bool {
    matches!(m.state, State::Pending | State::Retrying | State::Running)
}

fn group_of(m: &Message) -> Option<(String, String)> {
    m.group_key.clone().map(|g| (m.queue.clone(), g))
}

impl Inner {
    /// Adds or removes `m` in its group's live set, after `index` / before `unindex`.
    fn regroup(&mut self, m: &Message, live: bool) {
        let Some(group) = group_of(m) else { return };
        if live && is_live(m) {
            self.groups.entry(group).or_default().insert(m.id);
        } else if let Some(ids) = self.groups.get_mut(&group) {
            ids.remove(&m.id);
            if ids.is_empty() {
                self.groups.remove(&group);
            }
        }
    }

    /// Whether no earlier message of `m`'s group is live.
    fn heads_its_group(&self, m: &Message) -> bool {
        let Some(group) = &m.group_key else {
            return true;
        };
        self.groups
            .get(&(m.queue.clone(), group.clone()))
            .and_then(|ids| ids.first())
            .is_none_or(|first| *first == m.id)
    }

    fn forget_key(&mut self, m: &Message) {
        if let Some(key) = &m.dedup_key {
            self.forget(m.id, (m.queue.clone(), key.clone()));
        }
    }

    /// Frees `key` if `id` still holds it.
    fn forget(&mut self, id: MessageId, key: (String, String)) {
        if self.keys.get(&key) == Some(&id) {
            self.keys.remove(&key);
        }
    }

    fn insert(&mut self, m: Message) {
        index(&mut self.queues, &m);
        self.regroup(&m, true);
        self.messages.insert(m.id, m);
    }

    /// Changes one message, keeping the indexes in step.
    fn edit<R>(&mut self, id: MessageId, f: impl FnOnce(&mut Message) -> R) -> Option<R> {
        let mut m = self.messages.remove(&id)?;
        unindex(&mut self.queues, &m);
        self.regroup(&m, false);
        let out = f(&mut m);
        index(&mut self.queues, &m);
        self.regroup(&m, true);
        self.messages.insert(id, m);
        Some(out)
    }

    /// Deletes one message, freeing its dedup key.
    fn remove(&mut self, id: MessageId) -> Option<Message> {
        let m = self.messages.remove(&id)?;
        unindex(&mut self.queues, &m);
        self.regroup(&m, false);
        self.forget_key(&m);
        Some(m)
    }

    /// Deletes every message `select` picks (purge, prune), freeing their dedup keys; returns
    /// the states of those deleted (ids are collected first: no message is cloned).
    fn remove_where(&mut self, select: impl Fn(&Message) -> bool) -> Vec<State> {
        let doomed: Vec<MessageId> = self
            .messages
            .values()
            .filter(|m| select(m))
            .map(|m| m.id)
            .collect();
        doomed
            .into_iter()
            .filter_map(|id| self.remove(id).map(|m| m.state))
            .collect()
    }

    /// Changes the message `lease` holds, or says the lease is lost.
    fn held<R>(&mut self, lease: &Lease, f: impl FnOnce(&mut Message) -> R) -> Result<R, Error> {
        match self.messages.get(&lease.id) {
            Some(m) if m.state == State::Running && m.lease_owner == Some(lease.token) => {
                self.edit(lease.id, f).ok_or(Error::LeaseLost(lease.id))
            }
            _ => Err(Error::LeaseLost(lease.id)),
        }
    }

    /// Ids of `queue`'s running messages on their last attempt whose lease lapsed by `now`.
    fn lapsed_last_attempts(&self, queue: &str, now: DateTime<Utc>) -> Vec<MessageId> {
        let Some(q) = self.queues.get(queue) else {
            return Vec::new();
        };
        q.doomed
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect()
    }

    /// Ids of up to `limit` of `queue`'s messages due by `now`, in claim order, skipping
    /// messages held back by an earlier live message of their group. Walks each priority's
    /// due prefix, then jumps to the next priority: O(limit + priorities + held back) steps.
    fn due(&self, queue: &str, limit: usize, now: DateTime<Utc>) -> Vec<MessageId> {
        let mut out = Vec::new();
        let Some(q) = self.queues.get(queue) else {
            return out;
        };
        let first = MessageId::from_uuid(Uuid::nil());
        let mut from = 0u8;
        while out.len() < limit {
            let Some(&(priority, _, _)) = q
                .ready
                .range((from, DateTime::<Utc>::MIN_UTC, first)..)
                .next()
            else {
                break;
            };
            for &(p, run_at, id) in q.ready.range((priority, DateTime::<Utc>::MIN_UTC, first)..) {
                if p != priority || run_at > now || out.len() == limit {
                    break;
                }
                if self
                    .messages
                    .get(&id)
                    .is_some_and(|m| self.heads_its_group(m))
                {
                    out.push(id);
                }
            }
            match priority.checked_add(1) {
                Some(next) => from = next,
                None => break,
            }
        }
        out
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

    /// Writes a `fail`/`snooze` settlement to the leased message.
    fn settle_held(
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
        let mut inner = self.inner.lock();
        inner.held(lease, |m| {
            m.errors.extend(entries);
            if give_back {
                m.attempts = m.attempts.saturating_sub(1);
            }
            m.run_at = run_at;
            m.waiting_since = waiting_since;
            settle(m, state, now);
        })?;
        Ok(state)
    }

    fn wake(&self, queue: &str) {
        let waker = self.waker(queue);
        waker.notify_waiters();
        // Also leave a permit, for a worker between its empty claim and its wait.
        waker.notify_one();
    }

    fn waker(&self, queue: &str) -> Arc<Notify> {
        self.wakers
            .lock()
            .entry(queue.to_owned())
            .or_default()
            .clone()
    }
}

fn settle(m: &mut Message, state: State, now: DateTime<Utc>) {
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
                    // A done holder keeps its key only on queues that remember done keys
                    // (`ack` frees it otherwise).
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
                inner.insert(Message {
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
                    trace_context: new.trace_context,
                    group_key: new.group,
                    waiting_since: None,
                    created_at: now,
                    updated_at: now,
                });
                out.push(Enqueued::New(id));
            }
        }
        for queue in queues {
            self.wake(&queue);
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
        // Orphans that already used their last attempt are dead letters, not claims.
        for id in inner.lapsed_last_attempts(queue, now) {
            inner.edit(id, |m| {
                m.errors.push(lease_expired(m.attempts, now));
                settle(m, State::Dead, now);
            });
        }
        let mut out = Vec::new();
        for id in inner.due(queue, limit, now) {
            let claimed = inner.edit(id, |m| {
                if m.state == State::Running {
                    m.errors.push(lease_expired(m.attempts, now));
                }
                m.state = State::Running;
                m.attempts += 1;
                m.run_at = expires_at;
                m.lease_owner = Some(token);
                m.lease_expires_at = Some(expires_at);
                m.updated_at = now;
                Claimed {
                    lease: Lease {
                        id: m.id,
                        queue: m.queue.clone(),
                        token,
                        attempt: m.attempts,
                        max_attempts: m.max_attempts,
                        expires_at,
                        waiting_since: m.waiting_since,
                    },
                    message: m.clone(),
                }
            });
            out.extend(claimed);
        }
        Ok(out)
    }

    async fn ack(&self, lease: &Lease) -> Result<(), Error> {
        let now = self.config.now();
        let remember = self.config.remembers_done(&lease.queue);
        let mut inner = self.inner.lock();
        let key = inner.held(lease, |m| {
            settle(m, State::Done, now);
            m.waiting_since = None;
            m.dedup_key.clone().map(|k| (m.queue.clone(), k))
        })?;
        if let Some(key) = key {
            if !remember {
                inner.forget(lease.id, key);
            }
        }
        Ok(())
    }

    async fn ack_batch(&self, leases: &[Lease]) -> Result<u64, Error> {
        Ok(self.ack_batch_ids(leases).await?.len() as u64)
    }

    async fn ack_batch_ids(&self, leases: &[Lease]) -> Result<Vec<MessageId>, Error> {
        let mut acked = Vec::with_capacity(leases.len());
        for lease in leases {
            match self.ack(lease).await {
                Ok(()) => acked.push(lease.id),
                Err(Error::LeaseLost(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(acked)
    }

    async fn fail(&self, lease: &Lease, failure: Failure) -> Result<State, Error> {
        let now = self.config.now();
        let settlement = after_failure(&self.config, lease, &failure, now);
        self.settle_held(lease, settlement, now)
    }

    async fn snooze(&self, lease: &Lease, snooze: Snooze) -> Result<State, Error> {
        let now = self.config.now();
        let settlement = after_snooze(&self.config, lease, &snooze, now);
        self.settle_held(lease, settlement, now)
    }

    async fn extend(&self, lease: &Lease, lease_for: Duration) -> Result<Lease, Error> {
        check_claim(&lease.queue, lease_for)?;
        let now = self.config.now();
        let expires_at = add(now, lease_for);
        let mut inner = self.inner.lock();
        inner.held(lease, |m| {
            m.run_at = expires_at;
            m.lease_expires_at = Some(expires_at);
            m.updated_at = now;
        })?;
        Ok(Lease {
            expires_at,
            ..lease.clone()
        })
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let now = self.config.now();
        let mut inner = self.inner.lock();
        inner.held(lease, |m| {
            m.attempts = m.attempts.saturating_sub(1);
            m.run_at = now;
            let state = if m.attempts == 0 {
                State::Pending
            } else {
                State::Retrying
            };
            settle(m, state, now);
        })?;
        Ok(())
    }

    async fn wait_for_work(&self, queue: &str, timeout: Duration) {
        let waker = self.waker(queue);
        let _ = tokio::time::timeout(timeout, waker.notified()).await;
    }
}

#[async_trait]
impl QueueAdmin for MemoryQueue {
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
        let m = inner.messages.get(&id).ok_or(Error::NotFound(id))?;
        if !REPLAYABLE.contains(&m.state) {
            return Err(Error::WrongState {
                id,
                actual: m.state,
                expected: State::Dead,
            });
        }
        let queue = inner
            .edit(id, |m| {
                m.attempts = 0;
                m.run_at = now;
                m.waiting_since = None;
                settle(m, State::Pending, now);
                m.queue.clone()
            })
            .ok_or(Error::NotFound(id))?;
        drop(inner);
        self.wake(&queue);
        Ok(())
    }

    async fn run_now(&self, id: MessageId) -> Result<(), Error> {
        let now = self.config.now();
        let mut inner = self.inner.lock();
        let m = inner.messages.get(&id).ok_or(Error::NotFound(id))?;
        if !RUNNABLE.contains(&m.state) {
            return Err(Error::WrongState {
                id,
                actual: m.state,
                expected: State::Retrying,
            });
        }
        let queue = inner
            .edit(id, |m| {
                m.run_at = now;
                m.updated_at = now;
                m.queue.clone()
            })
            .ok_or(Error::NotFound(id))?;
        drop(inner);
        self.wake(&queue);
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
        Ok(self.inner.lock().remove(id).is_some())
    }

    async fn purge(&self, filter: &Filter) -> Result<u64, Error> {
        let mut inner = self.inner.lock();
        Ok(inner.remove_where(|m| filter.matches(m)).len() as u64)
    }

    async fn prune(&self, retention: &Retention) -> Result<Pruned, Error> {
        let now = self.config.now();
        let done_before = sub(now, retention.done);
        let dead_before = retention.dead.map(|d| sub(now, d));
        let mut inner = self.inner.lock();
        let mut pruned = Pruned::default();
        let doomed = inner.remove_where(|m| match m.state {
            State::Done => m.updated_at < done_before,
            State::Dead => dead_before.is_some_and(|t| m.updated_at < t),
            _ => false,
        });
        for state in doomed {
            match state {
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
}
