//! The in-memory store: for tests, demos and single-process use without durability.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use steadfast_retry::SystemClock;

use super::{SagaStore, check_operator_entry, check_runner_entry, ends_work};
use crate::time::{WallClock, add, now};
use crate::{
    Created, Entry, Error, Lease, ListFilter, LogEntry, NewSaga, SagaId, SagaLog, SagaSummary,
    State,
};

/// A [`SagaStore`] in process memory. Nothing survives the process; use it for tests and
/// `--demo` runs. Time comes from its clock, so tests drive leases exactly.
#[derive(Debug, Clone)]
pub struct MemorySagaStore {
    inner: Arc<Mutex<HashMap<SagaId, SagaLog>>>,
    clock: Arc<dyn WallClock>,
}

impl Default for MemorySagaStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySagaStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store reading time from `clock`.
    pub fn with_clock(clock: Arc<dyn WallClock>) -> Self {
        MemorySagaStore {
            inner: Arc::default(),
            clock,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        now(&*self.clock)
    }
}

fn held<'a>(
    map: &'a mut HashMap<SagaId, SagaLog>,
    lease: &Lease,
) -> Result<&'a mut SagaLog, Error> {
    match map.get_mut(&lease.id) {
        Some(log) if log.summary.fence == lease.fence && log.summary.state.is_active() => Ok(log),
        _ => Err(Error::LeaseLost(lease.id.clone())),
    }
}

fn push(log: &mut SagaLog, entry: Entry, at: DateTime<Utc>) {
    if let Some(state) = entry.new_state() {
        log.summary.state = state;
    }
    let seq = log.entries.len() as u64 + 1;
    log.entries.push(LogEntry { seq, at, entry });
    log.summary.updated_at = at;
}

fn lease_of(log: &SagaLog, expires_at: DateTime<Utc>) -> Lease {
    Lease {
        id: log.summary.id.clone(),
        fence: log.summary.fence,
        owner: log.summary.lease_owner.clone().unwrap_or_default(),
        expires_at,
    }
}

#[async_trait]
impl SagaStore for MemorySagaStore {
    async fn create(&self, saga: NewSaga, owner: &str, lease: Duration) -> Result<Created, Error> {
        let now = self.now();
        let mut map = self.inner.lock();
        if let Some(existing) = map.get(&saga.id) {
            return Ok(Created::Exists(existing.summary.clone()));
        }
        let expires_at = add(now, lease);
        let log = SagaLog {
            summary: SagaSummary {
                id: saga.id.clone(),
                name: saga.name,
                version: saga.version,
                state: State::Running,
                lease_owner: Some(owner.to_owned()),
                lease_expires_at: Some(expires_at),
                fence: 1,
                created_at: now,
                updated_at: now,
            },
            input: saga.input,
            entries: Vec::new(),
        };
        let lease = lease_of(&log, expires_at);
        map.insert(saga.id, log);
        Ok(Created::New(lease))
    }

    async fn append(
        &self,
        lease: &Lease,
        entry: Entry,
        lease_for: Duration,
    ) -> Result<Lease, Error> {
        check_runner_entry(&entry)?;
        let now = self.now();
        let mut map = self.inner.lock();
        let log = held(&mut map, lease)?;
        let done = ends_work(&entry);
        push(log, entry, now);
        let expires_at = add(now, lease_for);
        if done {
            log.summary.lease_owner = None;
            log.summary.lease_expires_at = None;
        } else {
            log.summary.lease_expires_at = Some(expires_at);
        }
        Ok(lease_of(log, expires_at))
    }

    async fn heartbeat(&self, lease: &Lease, lease_for: Duration) -> Result<Lease, Error> {
        let now = self.now();
        let mut map = self.inner.lock();
        let log = held(&mut map, lease)?;
        let expires_at = add(now, lease_for);
        log.summary.lease_expires_at = Some(expires_at);
        Ok(lease_of(log, expires_at))
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let now = self.now();
        let mut map = self.inner.lock();
        let log = held(&mut map, lease)?;
        log.summary.lease_owner = None;
        log.summary.lease_expires_at = Some(now);
        Ok(())
    }

    async fn claim(
        &self,
        name: &str,
        version: u32,
        owner: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Lease>, Error> {
        let now = self.now();
        let expires_at = add(now, lease);
        let mut map = self.inner.lock();
        let mut due: Vec<&mut SagaLog> = map
            .values_mut()
            .filter(|log| {
                let s = &log.summary;
                s.state.is_active()
                    && s.name == name
                    && s.version == version
                    && s.lease_expires_at.is_none_or(|at| at <= now)
            })
            .collect();
        due.sort_by(|a, b| {
            (a.summary.lease_expires_at, &a.summary.id)
                .cmp(&(b.summary.lease_expires_at, &b.summary.id))
        });
        Ok(due
            .into_iter()
            .take(limit)
            .map(|log| {
                log.summary.fence += 1;
                log.summary.lease_owner = Some(owner.to_owned());
                log.summary.lease_expires_at = Some(expires_at);
                lease_of(log, expires_at)
            })
            .collect())
    }

    async fn load(&self, id: &SagaId) -> Result<Option<SagaLog>, Error> {
        Ok(self.inner.lock().get(id).cloned())
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<SagaSummary>, Error> {
        let map = self.inner.lock();
        let mut rows: Vec<SagaSummary> = map
            .values()
            .map(|log| &log.summary)
            .filter(|s| filter.state.is_none_or(|st| s.state == st))
            .filter(|s| filter.name.as_ref().is_none_or(|n| &s.name == n))
            .cloned()
            .collect();
        rows.sort_by(|a, b| (b.updated_at, &b.id).cmp(&(a.updated_at, &a.id)));
        rows.truncate(filter.capped_limit());
        Ok(rows)
    }

    async fn operator_append(
        &self,
        id: &SagaId,
        entry: Entry,
        expected: State,
    ) -> Result<SagaSummary, Error> {
        check_operator_entry(&entry)?;
        let now = self.now();
        let mut map = self.inner.lock();
        let log = map.get_mut(id).ok_or_else(|| Error::NotFound(id.clone()))?;
        if log.summary.state != expected {
            return Err(Error::WrongState {
                id: id.clone(),
                actual: log.summary.state,
                expected,
            });
        }
        push(log, entry, now);
        // A new fence: whoever held the saga before the operator stepped in cannot write.
        log.summary.fence += 1;
        log.summary.lease_owner = None;
        log.summary.lease_expires_at = None;
        Ok(log.summary.clone())
    }
}
