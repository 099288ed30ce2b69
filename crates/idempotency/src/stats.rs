//! Outcome counters: kept as atomics (readable with `stats()`) and emitted through the
//! `metrics` facade, so any recorder (Prometheus, ...) sees them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Which counter to bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Executed,
    Replayed,
    InFlight,
    Mismatch,
    StoreError,
    FailOpen,
    TooLarge,
    Duplicate,
    FirstSeen,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Executed => "executed",
            Outcome::Replayed => "replayed",
            Outcome::InFlight => "in_flight",
            Outcome::Mismatch => "mismatch",
            Outcome::StoreError => "store_error",
            Outcome::FailOpen => "fail_open",
            Outcome::TooLarge => "too_large",
            Outcome::Duplicate => "duplicate",
            Outcome::FirstSeen => "first_seen",
        }
    }
}

/// A snapshot of the counters of an [`Idempotency`](crate::Idempotency) or
/// [`Deduplicator`](crate::Deduplicator).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Claims that ran the operation.
    pub executed: u64,
    /// Claims answered from a stored response.
    pub replayed: u64,
    /// Claims refused because another holder's lease is live.
    pub in_flight: u64,
    /// Claims refused because the key was used with a different request.
    pub mismatch: u64,
    /// Store errors (whatever the store-down policy then did).
    pub store_error: u64,
    /// Operations run (or messages accepted) without protection because the store was down.
    pub fail_open: u64,
    /// Responses not stored because their body exceeded the limit.
    pub too_large: u64,
    /// De-duplication: messages seen before.
    pub duplicate: u64,
    /// De-duplication: messages seen for the first time.
    pub first_seen: u64,
}

#[derive(Debug)]
pub(crate) struct Counters {
    component: &'static str,
    values: [AtomicU64; 9],
}

impl Counters {
    pub(crate) fn new(component: &'static str) -> Self {
        Counters {
            component,
            values: Default::default(),
        }
    }

    pub(crate) fn bump(&self, outcome: Outcome) {
        self.values[outcome as usize].fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            "steadfast_idempotency_outcomes_total",
            "component" => self.component,
            "outcome" => outcome.label()
        )
        .increment(1);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let v = |o: Outcome| self.values[o as usize].load(Ordering::Relaxed);
        Stats {
            executed: v(Outcome::Executed),
            replayed: v(Outcome::Replayed),
            in_flight: v(Outcome::InFlight),
            mismatch: v(Outcome::Mismatch),
            store_error: v(Outcome::StoreError),
            fail_open: v(Outcome::FailOpen),
            too_large: v(Outcome::TooLarge),
            duplicate: v(Outcome::Duplicate),
            first_seen: v(Outcome::FirstSeen),
        }
    }
}
