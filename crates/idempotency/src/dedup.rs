//! Message de-duplication: "have I seen this message id within the window?"

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::StoreDown;
use crate::error::{ConfigError, Error};
use crate::key::KeyRules;
use crate::stats::{Counters, Outcome, Stats};
use crate::store::DedupStore;
use crate::timestamp::Timestamp;
use steadfast_retry::{SystemClock, WallClock};

/// De-duplicates messages by id (e.g. a WhatsApp `wamid`) within a window.
///
/// Two ways to use it:
/// - check-and-set in one atomic step: [`Deduplicator::first_seen`] (Redis: one `SET NX PX`);
/// - check, do the durable work, then record: [`Deduplicator::seen`] before and
///   [`Deduplicator::mark_seen`] / [`Deduplicator::mark_processed`] after the work committed,
///   so that a crash between the two never loses a message (it is only processed twice, by
///   an idempotent consumer).
///
/// Store-down behaviour applies to `first_seen` only (default [`StoreDown::FailOpen`]: the
/// message counts as new and `Stats::fail_open` is bumped). `seen`, `mark_seen` and
/// `mark_processed` always return the typed error so the caller decides (and counts).
#[derive(Clone)]
pub struct Deduplicator {
    store: Arc<dyn DedupStore>,
    window: Duration,
    store_down: StoreDown,
    rules: KeyRules,
    clock: Arc<dyn WallClock>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Deduplicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deduplicator")
            .field("window", &self.window)
            .field("store_down", &self.store_down)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Deduplicator {
    /// Remember ids for `window` (the default for `mark_*`; `first_seen` takes its own)
    /// on `store`. Fail open; ids of 1–512 visible ASCII characters; system clock.
    pub fn new(store: Arc<dyn DedupStore>, window: Duration) -> Self {
        Deduplicator {
            store,
            window,
            store_down: StoreDown::FailOpen,
            rules: KeyRules::new(1, 512).expect("valid bounds"),
            clock: Arc::new(SystemClock),
            counters: Arc::new(Counters::new("dedup")),
        }
    }

    /// Store-down behaviour of [`Deduplicator::first_seen`].
    pub fn store_down(mut self, policy: StoreDown) -> Self {
        self.store_down = policy;
        self
    }

    /// Message id syntax (default 1–512 visible ASCII characters).
    pub fn id_rules(mut self, rules: KeyRules) -> Self {
        self.rules = rules;
        self
    }

    /// Use another clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> Timestamp {
        crate::timestamp::now(&*self.clock)
    }

    /// The default window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Outcome counters since creation.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    fn checked_window(window: Duration) -> Result<Duration, Error> {
        if window.as_millis() == 0 {
            return Err(ConfigError::ZeroDuration { name: "window" }.into());
        }
        Ok(window)
    }

    fn store_error(&self, id: &str, e: &Error) {
        self.counters.bump(Outcome::StoreError);
        tracing::warn!(message_id = %redact(id), error = %e, "dedup store error");
    }

    /// `true` the first time `id` is seen within `window` (and remembers it), `false` for a
    /// duplicate. Atomic across instances sharing the store.
    pub async fn first_seen(&self, id: &str, window: Duration) -> Result<bool, Error> {
        self.rules.parse(id)?;
        let window = Self::checked_window(window)?;
        match self.store.insert_if_absent(id, window, self.now()).await {
            Ok(first) => {
                self.counters.bump(if first {
                    Outcome::FirstSeen
                } else {
                    Outcome::Duplicate
                });
                Ok(first)
            }
            Err(e) => {
                self.store_error(id, &e);
                match self.store_down {
                    StoreDown::FailClosed => Err(e),
                    StoreDown::FailOpen => {
                        self.counters.bump(Outcome::FailOpen);
                        Ok(true)
                    }
                }
            }
        }
    }

    /// Whether `id` was marked within its window (read only).
    pub async fn seen(&self, id: &str) -> Result<bool, Error> {
        self.rules.parse(id)?;
        let seen = self
            .store
            .contains(id, self.now())
            .await
            .inspect_err(|e| self.store_error(id, e))?;
        self.counters.bump(if seen {
            Outcome::Duplicate
        } else {
            Outcome::FirstSeen
        });
        Ok(seen)
    }

    /// Remember `id` for the default window (call after the message's durable write).
    pub async fn mark_seen(&self, id: &str) -> Result<(), Error> {
        self.rules.parse(id)?;
        self.store
            .mark(id, self.window, self.now(), None)
            .await
            .inspect_err(|e| self.store_error(id, e))
    }

    /// Remember `id` as processed for the default window, recording how long processing took
    /// (histogram `steadfast_dedup_processing_seconds`).
    pub async fn mark_processed(&self, id: &str, processing_time: Duration) -> Result<(), Error> {
        self.rules.parse(id)?;
        metrics::histogram!("steadfast_dedup_processing_seconds").record(processing_time);
        self.store
            .mark(id, self.window, self.now(), Some(processing_time))
            .await
            .inspect_err(|e| self.store_error(id, e))
    }
}

fn redact(id: &str) -> String {
    let head: String = id.chars().take(8).collect();
    format!("{head}…({})", id.len())
}
