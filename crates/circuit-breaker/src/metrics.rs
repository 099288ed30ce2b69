//! A point-in-time view of one breaker.

use std::time::Duration;

use serde::Serialize;

use crate::state::State;

/// A snapshot of a breaker: its state and its window, from [`crate::CircuitBreaker::metrics`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// The breaker's name.
    pub name: String,
    /// The current state.
    pub state: State,
    /// Calls in the sliding window (Closed / MetricsOnly) or probes completed (HalfOpen).
    pub calls: u64,
    /// Of those, successes.
    pub successes: u64,
    /// Of those, failures (including timeouts).
    pub failures: u64,
    /// Of those, slow calls (successful or not).
    pub slow_calls: u64,
    /// Calls rejected in the current episode, as resilience4j counts them: the count starts at
    /// zero whenever the breaker enters any state but Open (Closed, HalfOpen, a manual state,
    /// a reset), and Open carries on the count of the state it came from.
    pub not_permitted: u64,
    /// `failures / calls` in percent; `None` (JSON `null`) while the window holds fewer calls
    /// than the minimum (in HalfOpen: until every probe has reported), where resilience4j
    /// returns -1. A rate the breaker does not act on yet is not a 0 % rate.
    pub failure_rate: Option<f64>,
    /// `slow_calls / calls` in percent; `None` under the same condition as `failure_rate`.
    pub slow_call_rate: Option<f64>,
    /// In Open: milliseconds until the next call may be a probe.
    pub time_until_half_open_ms: Option<u64>,
    /// Openings in a row without closing in between (what grows the open duration).
    pub consecutive_opens: u32,
}

impl Metrics {
    /// In Open: time until the next call may be a probe.
    pub fn time_until_half_open(&self) -> Option<Duration> {
        self.time_until_half_open_ms.map(Duration::from_millis)
    }
}

/// `part / calls` in percent, or `None` below `minimum` calls (the breaker does not act on a
/// rate until then, so neither should a dashboard).
pub(crate) fn rate(part: u64, calls: u64, minimum: u64) -> Option<f64> {
    (calls > 0 && calls >= minimum).then(|| part as f64 * 100.0 / calls as f64)
}
