//! An in-process [`SnapshotStore`].

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use super::{Snapshot, SnapshotStore};
use crate::error::Error;

/// A [`SnapshotStore`] in memory: for tests, demos and single-process services. One mutex
/// guards the map and the due-time index together, so a save and its index update are atomic.
#[derive(Debug, Default)]
pub struct MemorySnapshots {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    rows: HashMap<String, Snapshot>,
    /// (due_at, key): the sweeper's index.
    due: BTreeSet<(DateTime<Utc>, String)>,
    /// key -> when it was last saved, and the same ordered by time: the retention index.
    saved_at: HashMap<String, DateTime<Utc>>,
    by_saved_at: BTreeSet<(DateTime<Utc>, String)>,
}

impl Inner {
    fn remove(&mut self, key: &str) -> Option<Snapshot> {
        let old = self.rows.remove(key)?;
        if let Some(at) = old.due_at {
            self.due.remove(&(at, key.to_owned()));
        }
        if let Some(at) = self.saved_at.remove(key) {
            self.by_saved_at.remove(&(at, key.to_owned()));
        }
        Some(old)
    }
}

impl MemorySnapshots {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many instances are stored.
    pub fn len(&self) -> usize {
        self.inner.lock().rows.len()
    }

    /// Whether no instance is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SnapshotStore for MemorySnapshots {
    async fn load(&self, key: &str) -> Result<Option<Snapshot>, Error> {
        Ok(self.inner.lock().rows.get(key).cloned())
    }

    async fn save(
        &self,
        key: &str,
        expected_version: u64,
        instance: &serde_json::Value,
        due_at: Option<DateTime<Utc>>,
    ) -> Result<u64, Error> {
        let mut inner = self.inner.lock();
        let actual = inner.rows.get(key).map(|s| (s.version, s.due_at));
        if actual.map(|(v, _)| v).unwrap_or(0) != expected_version
            || (expected_version == 0 && actual.is_some())
        {
            return Err(Error::Conflict {
                key: key.to_owned(),
                expected: expected_version,
                actual: actual.map(|(v, _)| v),
            });
        }
        if let Some((_, Some(old))) = actual {
            inner.due.remove(&(old, key.to_owned()));
        }
        if let Some(at) = due_at {
            inner.due.insert((at, key.to_owned()));
        }
        let now = Utc::now();
        if let Some(old) = inner.saved_at.insert(key.to_owned(), now) {
            inner.by_saved_at.remove(&(old, key.to_owned()));
        }
        inner.by_saved_at.insert((now, key.to_owned()));
        let version = expected_version + 1;
        inner.rows.insert(
            key.to_owned(),
            Snapshot {
                key: key.to_owned(),
                version,
                due_at,
                instance: instance.clone(),
            },
        );
        Ok(version)
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Snapshot>, Error> {
        let inner = self.inner.lock();
        Ok(inner
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .filter_map(|(_, key)| inner.rows.get(key).cloned())
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        Ok(self.inner.lock().remove(key).is_some())
    }

    async fn prune_idle(&self, saved_before: DateTime<Utc>, limit: usize) -> Result<u64, Error> {
        let mut inner = self.inner.lock();
        let doomed: Vec<String> = inner
            .by_saved_at
            .iter()
            .take_while(|(at, _)| *at < saved_before)
            .take(limit)
            .map(|(_, key)| key.clone())
            .collect();
        for key in &doomed {
            inner.remove(key);
        }
        Ok(doomed.len() as u64)
    }
}
