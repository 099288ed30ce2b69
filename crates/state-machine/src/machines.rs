//! The typed face of a [`SnapshotStore`]: load, send, save with retry on conflict, sweep.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::definition::{Definition, Transition};
use crate::error::Error;
use crate::instance::Instance;
use crate::registry::{Registry, Restored};
use crate::store::SnapshotStore;
use crate::types::{Event, StateId};

/// Default number of reload-and-retry rounds [`Machines::send`] makes on a version conflict.
pub const DEFAULT_CONFLICT_RETRIES: u32 = 5;

/// Default first delay before the sweeper retries an instance it could not fire (see
/// [`Machines::failure_backoff`]).
pub const DEFAULT_FAILURE_BACKOFF: Duration = Duration::from_secs(60);

/// Default longest delay between the sweeper's retries of an instance it could not fire.
pub const DEFAULT_FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// The key, at the top of a stored instance's JSON, where the sweeper counts its consecutive
/// failures to fire that instance. [`Instance`] does not read it, so the next typed save (an
/// event sent, or the timeout finally fired) drops it and the count starts again.
pub const SWEEP_FAILURES_KEY: &str = "sweep_failures";

/// What [`Machines::send`] did: the transition and the instance as saved.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied<S, C> {
    /// The transition (`ignored` when the definition ignores unhandled events and nothing was
    /// saved).
    pub transition: Transition<S>,
    /// The instance after the event, with its new stored [`version`](Instance::version).
    pub instance: Instance<S, C>,
}

/// What one [`Machines::sweep`] did.
#[derive(Debug)]
pub struct SweepReport<S> {
    /// Keys whose timeout fired, with the transition taken.
    pub fired: Vec<(String, Transition<S>)>,
    /// Keys saved by someone else between the sweep's load and save (left to them; a later
    /// sweep sees them again if still due).
    pub conflicts: Vec<String>,
    /// Keys whose instance could not be restored or whose timeout event has no transition.
    /// Each is saved again with a later due time (see [`backed_off`](Self::backed_off)), so
    /// that it does not hold its place at the head of the due order: fix the definition (or
    /// delete the key), and the next sweep after its new due time fires it.
    pub failed: Vec<(String, Error)>,
    /// Failed keys moved back in the due order: the key, how many sweeps in a row failed on
    /// it (this one included), and the due time it now has. A failed key missing here was
    /// saved by someone else meanwhile (their save stands) or its store save failed.
    pub backed_off: Vec<(String, u32, DateTime<Utc>)>,
}

impl<S> Default for SweepReport<S> {
    fn default() -> Self {
        SweepReport {
            fired: Vec::new(),
            conflicts: Vec::new(),
            failed: Vec::new(),
            backed_off: Vec::new(),
        }
    }
}

/// Instances of one machine kept in a [`SnapshotStore`], by key.
///
/// Every stored instance goes through a [`Registry`] on load, so instances written by an older
/// definition version run on that version (if still registered) or are migrated forward. New
/// instances start on the *current* definition. Cheap to clone.
pub struct Machines<S: StateId, E: Event, C> {
    registry: Arc<Registry<S, E, C>>,
    current: Arc<Definition<S, E, C>>,
    store: Arc<dyn SnapshotStore>,
    conflict_retries: u32,
    failure_backoff: (Duration, Duration),
}

impl<S: StateId, E: Event, C> Clone for Machines<S, E, C> {
    fn clone(&self) -> Self {
        Machines {
            registry: self.registry.clone(),
            current: self.current.clone(),
            store: self.store.clone(),
            conflict_retries: self.conflict_retries,
            failure_backoff: self.failure_backoff,
        }
    }
}

impl<S: StateId, E: Event, C> fmt::Debug for Machines<S, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machines")
            .field("definition", &self.current.name())
            .field("version", &self.current.version())
            .field("conflict_retries", &self.conflict_retries)
            .field("failure_backoff", &self.failure_backoff)
            .finish_non_exhaustive()
    }
}

impl<S, E, C> Machines<S, E, C>
where
    S: StateId,
    E: Event,
    C: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Instances of `definition` (the only registered version) in `store`.
    pub fn new(definition: Arc<Definition<S, E, C>>, store: Arc<dyn SnapshotStore>) -> Self {
        let mut registry = Registry::new();
        // A fresh registry cannot already hold this name and version.
        let _ = registry.register(definition.clone());
        Machines {
            registry: Arc::new(registry),
            current: definition,
            store,
            conflict_retries: DEFAULT_CONFLICT_RETRIES,
            failure_backoff: (DEFAULT_FAILURE_BACKOFF, DEFAULT_FAILURE_BACKOFF_MAX),
        }
    }

    /// Instances of the latest registered version of `name` in `store`, older versions restored
    /// (or migrated) through `registry`.
    ///
    /// # Errors
    /// [`Error::UnknownDefinition`] if `name` is not registered.
    pub fn with_registry(
        registry: Arc<Registry<S, E, C>>,
        name: &str,
        store: Arc<dyn SnapshotStore>,
    ) -> Result<Self, Error> {
        let current = registry
            .latest(name)
            .ok_or_else(|| Error::UnknownDefinition {
                name: name.to_owned(),
                version: 0,
            })?;
        Ok(Machines {
            registry,
            current,
            store,
            conflict_retries: DEFAULT_CONFLICT_RETRIES,
            failure_backoff: (DEFAULT_FAILURE_BACKOFF, DEFAULT_FAILURE_BACKOFF_MAX),
        })
    }

    /// How many times [`send`](Self::send) reloads and retries after a version conflict
    /// (default [`DEFAULT_CONFLICT_RETRIES`]).
    pub fn conflict_retries(mut self, retries: u32) -> Self {
        self.conflict_retries = retries;
        self
    }

    /// How long [`sweep`](Self::sweep) moves back an instance it could not fire: `first` after
    /// its first failure, doubling on each further failure in a row, never more than `max`
    /// (raised to `first` if smaller). Defaults [`DEFAULT_FAILURE_BACKOFF`] and
    /// [`DEFAULT_FAILURE_BACKOFF_MAX`]. A zero `first` still moves a failed instance behind
    /// every instance due before the sweep's `now`.
    pub fn failure_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.failure_backoff = (first, max.max(first));
        self
    }

    /// The current definition (new instances start on it).
    pub fn definition(&self) -> &Arc<Definition<S, E, C>> {
        &self.current
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SnapshotStore> {
        &self.store
    }

    /// The instance stored under `key`, with the definition it runs on.
    ///
    /// # Errors
    /// [`Error::StoreUnavailable`], and restore errors ([`Error::UnknownDefinition`],
    /// [`Error::Migration`], [`Error::Serialization`]).
    pub async fn load_with_definition(
        &self,
        key: &str,
    ) -> Result<Option<Restored<S, E, C>>, Error> {
        let Some(snapshot) = self.store.load(key).await? else {
            return Ok(None);
        };
        let (def, mut instance) = self.registry.restore(snapshot.instance)?;
        // The row's version is the truth (the JSON copy was written before the save).
        instance.version = snapshot.version;
        Ok(Some((def, instance)))
    }

    /// The instance stored under `key`.
    ///
    /// # Errors
    /// As [`load_with_definition`](Self::load_with_definition).
    pub async fn load(&self, key: &str) -> Result<Option<Instance<S, C>>, Error> {
        Ok(self.load_with_definition(key).await?.map(|(_, i)| i))
    }

    /// Saves `instance` under `key` if the stored version is still `instance.version()` (0: the
    /// key must be new), and advances `instance`'s version.
    ///
    /// # Errors
    /// [`Error::Conflict`] if someone saved in between (reload and re-apply), [`Error::StoreUnavailable`],
    /// [`Error::Serialization`].
    pub async fn save(&self, key: &str, instance: &mut Instance<S, C>) -> Result<(), Error> {
        let expected = instance.version;
        let due_at = match self
            .registry
            .get(&instance.definition, instance.definition_version)
        {
            Some(def) => def.due_at(instance),
            None => self.current.due_at(instance),
        };
        instance.version = expected + 1;
        let json = serde_json::to_value(&*instance);
        instance.version = expected;
        let version = self.store.save(key, expected, &json?, due_at).await?;
        instance.version = version;
        Ok(())
    }

    /// Loads `key` (or starts a new instance with `C::default()` on the current definition),
    /// sends `event` at `now`, and saves. On a version conflict it reloads and re-applies the
    /// event, up to [`conflict_retries`](Self::conflict_retries) times, so concurrent senders
    /// on one key serialize instead of overwriting each other.
    ///
    /// # Errors
    /// [`Error::NoTransition`] (nothing saved), [`Error::Conflict`] when retries are exhausted,
    /// and the errors of [`load`](Self::load) and [`save`](Self::save).
    pub async fn send(
        &self,
        key: &str,
        event: E,
        now: DateTime<Utc>,
    ) -> Result<Applied<S, C>, Error>
    where
        C: Default,
    {
        let mut attempt = 0;
        loop {
            let (def, mut instance) = match self.load_with_definition(key).await? {
                Some(found) => found,
                None => (
                    self.current.clone(),
                    self.current.new_instance(C::default(), now),
                ),
            };
            let transition = def.send(&mut instance, event.clone(), now)?;
            if transition.ignored {
                return Ok(Applied {
                    transition,
                    instance,
                });
            }
            match self.save(key, &mut instance).await {
                Ok(()) => {
                    return Ok(Applied {
                        transition,
                        instance,
                    });
                }
                Err(e) if e.is_conflict() && attempt < self.conflict_retries => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The instance stored under `key` with its definition, or a new instance with
    /// `C::default()` on the current definition at `now` (version 0: not stored yet).
    ///
    /// # Errors
    /// As [`load_with_definition`](Self::load_with_definition).
    pub async fn load_or_new(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Restored<S, E, C>, Error>
    where
        C: Default,
    {
        Ok(match self.load_with_definition(key).await? {
            Some(found) => found,
            None => (
                self.current.clone(),
                self.current.new_instance(C::default(), now),
            ),
        })
    }

    /// Loads `key` (or starts a new instance with `C::default()` on the current definition at
    /// `now`), lets `apply` change it (send several events, edit the context), and saves it
    /// version-checked. On a conflict it reloads and calls `apply` again on the fresh instance,
    /// up to [`conflict_retries`](Self::conflict_retries) times, so `apply` must be safe to
    /// repeat. An `Err` from `apply` saves nothing and is returned as is.
    ///
    /// # Errors
    /// `apply`'s error, [`Error::Conflict`] when retries are exhausted, and the errors of
    /// [`load`](Self::load) and [`save`](Self::save).
    pub async fn update<T>(
        &self,
        key: &str,
        now: DateTime<Utc>,
        apply: impl FnMut(&Definition<S, E, C>, &mut Instance<S, C>) -> Result<T, Error>,
    ) -> Result<(T, Instance<S, C>), Error>
    where
        C: Default,
    {
        let loaded = self.load_or_new(key, now).await?;
        self.update_from(key, loaded, now, apply).await
    }

    /// [`update`](Self::update) starting from an instance the caller already loaded (with
    /// [`load_or_new`](Self::load_or_new) or [`load_with_definition`](Self::load_with_definition)),
    /// so that a caller that read the instance first (to decide what to do) and writes it
    /// later pays one load and one save. `apply` runs on `loaded` first; if someone saved the
    /// key since, the save conflicts and the loop reloads and re-applies, as `update` does.
    ///
    /// # Errors
    /// As [`update`](Self::update).
    pub async fn update_from<T>(
        &self,
        key: &str,
        loaded: Restored<S, E, C>,
        now: DateTime<Utc>,
        mut apply: impl FnMut(&Definition<S, E, C>, &mut Instance<S, C>) -> Result<T, Error>,
    ) -> Result<(T, Instance<S, C>), Error>
    where
        C: Default,
    {
        let (mut def, mut instance) = loaded;
        let mut attempt = 0;
        loop {
            let out = apply(&def, &mut instance)?;
            match self.save(key, &mut instance).await {
                Ok(()) => return Ok((out, instance)),
                Err(e) if e.is_conflict() && attempt < self.conflict_retries => {
                    attempt += 1;
                    (def, instance) = self.load_or_new(key, now).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Fires due timeouts: loads up to `limit` instances whose timeout is due at `now`, sends
    /// each its timeout event and saves it (version-checked: an instance saved by someone else
    /// meanwhile is left alone and reported as a conflict). Call it periodically; it never
    /// fails as a whole for one bad instance.
    ///
    /// An instance that cannot be fired (it cannot be restored, or its timeout event has no
    /// transition) is reported in [`failed`](SweepReport::failed) and saved back unchanged
    /// but for a later due time (see [`failure_backoff`](Self::failure_backoff)) and its
    /// failure count ([`SWEEP_FAILURES_KEY`]), so that `limit` such instances cannot keep
    /// every healthy one from firing.
    ///
    /// # Errors
    /// [`Error::StoreUnavailable`] when the due instances cannot be listed.
    pub async fn sweep(&self, now: DateTime<Utc>, limit: usize) -> Result<SweepReport<S>, Error> {
        let mut report = SweepReport::default();
        for snapshot in self.store.due(now, limit).await? {
            let key = snapshot.key;
            // Kept raw: a failed instance is saved back as it was stored, not re-serialised.
            let raw = snapshot.instance.clone();
            let failure = match self.registry.restore(snapshot.instance) {
                Err(e) => Some(e),
                Ok((def, mut instance)) => {
                    instance.version = snapshot.version;
                    // The stored due time is an index; the instance decides (Postgres rounds
                    // to µs).
                    let Some(event) = def.due(&instance, now) else {
                        continue;
                    };
                    match def.send(&mut instance, event, now) {
                        Err(e) => Some(e),
                        Ok(transition) => {
                            match self.save(&key, &mut instance).await {
                                Ok(()) => report.fired.push((key.clone(), transition)),
                                Err(e) if e.is_conflict() => report.conflicts.push(key.clone()),
                                Err(e) => report.failed.push((key.clone(), e)),
                            }
                            None
                        }
                    }
                }
            };
            if let Some(e) = failure {
                report.failed.push((key.clone(), e));
                self.back_off(&key, snapshot.version, raw, now, &mut report)
                    .await;
            }
        }
        Ok(report)
    }

    /// Saves a failed instance's stored JSON back with its failure count raised and its due
    /// time moved to `now` plus the backoff. A conflict means someone saved it meanwhile:
    /// their save stands, and decides its due time.
    async fn back_off(
        &self,
        key: &str,
        version: u64,
        mut raw: serde_json::Value,
        now: DateTime<Utc>,
        report: &mut SweepReport<S>,
    ) {
        let failures = raw
            .get(SWEEP_FAILURES_KEY)
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
            .saturating_add(1);
        if let Some(object) = raw.as_object_mut() {
            object.insert(SWEEP_FAILURES_KEY.to_owned(), failures.into());
        }
        let (first, max) = self.failure_backoff;
        let delay = first
            .checked_mul(1u32.checked_shl(failures - 1).unwrap_or(u32::MAX))
            .map_or(max, |d| d.min(max));
        let due_at = TimeDelta::from_std(delay)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if self
            .store
            .save(key, version, &raw, Some(due_at))
            .await
            .is_ok()
        {
            report.backed_off.push((key.to_owned(), failures, due_at));
        }
    }
}
