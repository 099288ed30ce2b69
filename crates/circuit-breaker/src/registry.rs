//! A registry of named breakers, created on first use from a preset.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use serde::Serialize;

use crate::breaker::CircuitBreaker;
use crate::clock::{ClockSource, MonotonicClock, nanos};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::State;

/// Which configuration a breaker gets when the registry creates it.
#[derive(Debug, Clone, PartialEq)]
pub enum Preset {
    /// [`Config::default`]: the seed system's settings.
    Default,
    /// [`Config::standard`]: 50 %, 60 s open.
    Standard,
    /// [`Config::ai_agent`]: 60 %, 120 s open.
    AiAgent,
    /// Any configuration.
    Custom(Config),
}

impl Preset {
    /// The configuration this preset stands for.
    pub fn config(&self) -> Config {
        match self {
            Preset::Default => Config::default(),
            Preset::Standard => Config::standard(),
            Preset::AiAgent => Config::ai_agent(),
            Preset::Custom(c) => c.clone(),
        }
    }
}

impl From<Config> for Preset {
    fn from(config: Config) -> Self {
        Preset::Custom(config)
    }
}

struct Entry {
    breaker: CircuitBreaker,
    /// Clock reading of the last lookup through the registry.
    last_used: AtomicU64,
}

/// Named breakers, shared. Cheap to clone: clones share one registry.
///
/// A breaker counts as used when it is looked up through the registry ([`Registry::get`],
/// [`Registry::get_or_create`]); callers that keep a breaker handle and call it directly should
/// look it up now and then, or not rely on [`Registry::remove_idle`].
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    breakers: DashMap<String, Entry>,
    clock: ClockSource,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("breakers", &self.names())
            .finish()
    }
}

/// The state of every breaker in a registry, by name (serializes as a JSON object).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct RegistrySnapshot {
    /// Metrics per breaker name.
    pub breakers: BTreeMap<String, Metrics>,
}

impl Registry {
    /// An empty registry; its breakers use the system clock.
    pub fn new() -> Self {
        Self::from_source(ClockSource::System)
    }

    /// An empty registry whose breakers (and idle tracking) use `clock`.
    pub fn with_clock(clock: impl MonotonicClock) -> Self {
        Self::from_source(ClockSource::new(clock))
    }

    fn from_source(clock: ClockSource) -> Self {
        Registry {
            inner: Arc::new(RegistryInner {
                breakers: DashMap::new(),
                clock,
            }),
        }
    }

    /// The breaker called `name`, created from `preset` if it does not exist yet (the preset
    /// of an existing breaker is not checked).
    pub fn get_or_create(&self, name: &str, preset: impl Into<Preset>) -> CircuitBreaker {
        let now = self.inner.clock.now();
        if let Some(entry) = self.inner.breakers.get(name) {
            entry.last_used.store(now, Ordering::Relaxed);
            return entry.breaker.clone();
        }
        let preset = preset.into();
        let entry = self
            .inner
            .breakers
            .entry(name.to_owned())
            .or_insert_with(|| Entry {
                breaker: CircuitBreaker::build(name, preset.config(), self.inner.clock.clone()),
                last_used: AtomicU64::new(now),
            });
        entry.last_used.store(now, Ordering::Relaxed);
        entry.breaker.clone()
    }

    /// The breaker called `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<CircuitBreaker> {
        let entry = self.inner.breakers.get(name)?;
        entry
            .last_used
            .store(self.inner.clock.now(), Ordering::Relaxed);
        Some(entry.breaker.clone())
    }

    /// Removes the breaker called `name`; returns it if it existed. Handles already taken
    /// keep working but are no longer in the registry.
    pub fn remove(&self, name: &str) -> Option<CircuitBreaker> {
        self.inner.breakers.remove(name).map(|(_, e)| e.breaker)
    }

    /// Removes breakers not looked up for at least `idle` and in Closed (an Open breaker is
    /// kept: forgetting it would let traffic hit a downstream known to be failing). Returns
    /// the removed names.
    pub fn remove_idle(&self, idle: Duration) -> Vec<String> {
        let now = self.inner.clock.now();
        let idle = nanos(idle);
        let mut removed = Vec::new();
        self.inner.breakers.retain(|name, entry| {
            let unused = now.saturating_sub(entry.last_used.load(Ordering::Relaxed)) >= idle;
            let remove = unused && entry.breaker.state() == State::Closed;
            if remove {
                removed.push(name.clone());
            }
            !remove
        });
        removed.sort();
        removed
    }

    /// Names of all breakers, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .breakers
            .iter()
            .map(|e| e.key().clone())
            .collect();
        names.sort();
        names
    }

    /// Number of breakers.
    pub fn len(&self) -> usize {
        self.inner.breakers.len()
    }

    /// True when the registry holds no breaker.
    pub fn is_empty(&self) -> bool {
        self.inner.breakers.is_empty()
    }

    /// Metrics of every breaker, by name.
    pub fn snapshot(&self) -> RegistrySnapshot {
        RegistrySnapshot {
            breakers: self
                .inner
                .breakers
                .iter()
                .map(|e| (e.key().clone(), e.breaker.metrics()))
                .collect(),
        }
    }
}
