//! `MemoryStore`: an in-process store on `dashmap`, for tests, demos and single instances.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::error::Error;
use crate::fingerprint::Fingerprint;
use crate::key::IdempotencyKey;
use crate::response::StoredResponse;
use crate::store::{ClaimRequest, DedupStore, IdempotencyStore, StoreClaim, answer_found};
use crate::timestamp::Timestamp;
use steadfast_retry::WallClock;

#[derive(Debug, Clone)]
enum State {
    InFlight,
    Completed(Arc<StoredResponse>),
}

#[derive(Debug, Clone)]
struct Record {
    fingerprint: Fingerprint,
    fence: u64,
    state: State,
    /// Lease expiry while in flight, replay expiry once completed.
    expires_at: Timestamp,
}

impl Record {
    /// In flight under the lease with `fence` (what complete and release require).
    fn held_by(&self, fence: u64) -> bool {
        self.fence == fence && matches!(self.state, State::InFlight)
    }
}

#[derive(Debug, Default)]
struct Inner {
    records: DashMap<(String, String), Record>,
    dedup: DashMap<String, Timestamp>,
    fences: AtomicU64,
}

/// An in-memory [`IdempotencyStore`] and [`DedupStore`]. Clones share the same data.
///
/// Expired entries are replaced lazily when their key is touched; [`MemoryStore::sweep`]
/// (or the task from [`MemoryStore::spawn_sweeper`]) removes the rest, so memory stays
/// bounded by the live keys.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remove every entry expired at `now`; returns how many were removed.
    pub fn sweep(&self, now: Timestamp) -> usize {
        let before = self.len();
        self.inner.records.retain(|_, r| r.expires_at > now);
        self.inner.dedup.retain(|_, exp| *exp > now);
        before - self.len()
    }

    /// Entries held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.inner.records.len() + self.inner.dedup.len()
    }

    /// Whether the store holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sweep every `interval` on the current tokio runtime. The task holds only a weak
    /// reference: it ends when the last clone of the store is dropped.
    pub fn spawn_sweeper(
        &self,
        interval: Duration,
        clock: Arc<dyn WallClock>,
    ) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                MemoryStore { inner }.sweep(crate::timestamp::now(&*clock));
            }
        })
    }

    fn next_fence(&self) -> u64 {
        self.inner.fences.fetch_add(1, Ordering::Relaxed) + 1
    }
}

fn record_key(scope: &str, key: &IdempotencyKey) -> (String, String) {
    (scope.to_owned(), key.as_str().to_owned())
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim(&self, req: ClaimRequest<'_>) -> Result<StoreClaim, Error> {
        let fresh = |fence| Record {
            fingerprint: req.fingerprint,
            fence,
            state: State::InFlight,
            expires_at: req.now.plus(req.lease),
        };
        match self.inner.records.entry(record_key(req.scope, req.key)) {
            Entry::Occupied(mut entry) => {
                let record = entry.get();
                let found = answer_found(
                    &req,
                    record.fingerprint.as_bytes(),
                    record.expires_at,
                    || {
                        Ok(match &record.state {
                            State::Completed(r) => Some(StoredResponse::clone(r)),
                            State::InFlight => None,
                        })
                    },
                )?;
                if let Some(answer) = found {
                    return Ok(answer);
                }
                let fence = self.next_fence();
                entry.insert(fresh(fence));
                Ok(StoreClaim::Execute { fence })
            }
            Entry::Vacant(entry) => {
                let fence = self.next_fence();
                entry.insert(fresh(fence));
                Ok(StoreClaim::Execute { fence })
            }
        }
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
        let mut record = self
            .inner
            .records
            .get_mut(&record_key(scope, key))
            .filter(|r| r.held_by(fence) && r.expires_at > now)
            .ok_or(Error::StaleLease { fence })?;
        record.state = State::Completed(Arc::new(response.clone()));
        record.expires_at = now.plus(ttl);
        Ok(())
    }

    async fn release(&self, scope: &str, key: &IdempotencyKey, fence: u64) -> Result<(), Error> {
        self.inner
            .records
            .remove_if(&record_key(scope, key), |_, r| r.held_by(fence))
            .map(|_| ())
            .ok_or(Error::StaleLease { fence })
    }
}

#[async_trait]
impl DedupStore for MemoryStore {
    async fn insert_if_absent(
        &self,
        id: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<bool, Error> {
        match self.inner.dedup.entry(id.to_owned()) {
            Entry::Occupied(mut e) => {
                if *e.get() > now {
                    return Ok(false);
                }
                e.insert(now.plus(window));
                Ok(true)
            }
            Entry::Vacant(e) => {
                e.insert(now.plus(window));
                Ok(true)
            }
        }
    }

    async fn contains(&self, id: &str, now: Timestamp) -> Result<bool, Error> {
        Ok(self.inner.dedup.get(id).is_some_and(|exp| *exp > now))
    }

    async fn mark(
        &self,
        id: &str,
        window: Duration,
        now: Timestamp,
        _processing_time: Option<Duration>,
    ) -> Result<(), Error> {
        // Processing time is reported through metrics by the Deduplicator; memory keeps none.
        self.inner.dedup.insert(id.to_owned(), now.plus(window));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sweep_removes_only_expired() {
        let store = MemoryStore::new();
        let t0 = Timestamp::from_millis(1_000);
        store
            .insert_if_absent("a", Duration::from_secs(1), t0)
            .await
            .unwrap();
        store
            .insert_if_absent("b", Duration::from_secs(10), t0)
            .await
            .unwrap();
        assert_eq!(store.sweep(t0.plus(Duration::from_secs(5))), 1);
        assert_eq!(store.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn sweeper_task_sweeps_and_ends_with_the_store() {
        let clock = crate::ManualClock::new(Timestamp::from_millis(0));
        let store = MemoryStore::new();
        store
            .insert_if_absent("a", Duration::from_secs(1), Timestamp::from(clock.now()))
            .await
            .unwrap();
        let task = store.spawn_sweeper(Duration::from_secs(1), Arc::new(clock.clone()));
        clock.advance(Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(store.is_empty());
        drop(store);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(task.is_finished());
    }
}
