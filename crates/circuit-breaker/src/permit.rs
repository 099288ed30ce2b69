//! Permits: the right to make one call, reported on exactly once (or dropped).

use std::fmt;

use crate::breaker::{CircuitBreaker, Inner};
use crate::state::State;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PermitKind {
    /// Closed or MetricsOnly: the outcome goes to the sliding window.
    Closed,
    /// A HalfOpen probe.
    HalfOpen,
    /// Disabled: nothing is recorded.
    Disabled,
}

/// Kept to two words (the permit's kind is the state bits of `word`) so that it stays in
/// registers on the hot path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PermitData {
    /// The state word when the permit was handed out (state and generation), or `DISARMED`
    /// once an outcome was reported.
    pub(crate) word: u64,
    /// Coarse-clock start, when slow-call detection is on.
    pub(crate) start: u64,
}

const DISARMED: u64 = u64::MAX;

impl PermitData {
    #[inline(always)]
    pub(crate) fn new(word: u64, start: u64) -> Self {
        PermitData { word, start }
    }

    #[inline(always)]
    pub(crate) fn kind(&self) -> PermitKind {
        match State::from_code(self.word & 0b111) {
            State::HalfOpen => PermitKind::HalfOpen,
            State::Disabled => PermitKind::Disabled,
            _ => PermitKind::Closed,
        }
    }

    #[inline(always)]
    fn armed(&self) -> bool {
        self.word != DISARMED
    }

    /// Returns the data and marks this copy as reported.
    #[inline(always)]
    fn take(&mut self) -> PermitData {
        let data = *self;
        self.word = DISARMED;
        data
    }
}

/// Permission to make one call, from [`CircuitBreaker::try_acquire`].
///
/// Report the outcome with [`Permit::success`], [`Permit::failure`] or [`Permit::ignore`].
/// Dropping it without an outcome (a cancelled future, an early return) records nothing and
/// gives a HalfOpen probe slot back, so cancellation can never wedge a breaker.
#[must_use = "report the outcome with success(), failure() or ignore()"]
pub struct Permit<'a> {
    inner: &'a Inner,
    data: PermitData,
}

impl<'a> Permit<'a> {
    #[inline(always)]
    pub(crate) fn new(inner: &'a Inner, data: PermitData) -> Self {
        Permit { inner, data }
    }

    /// Whether this permit is a HalfOpen probe: a call the breaker lets through to find out
    /// whether the downstream is back. Its failure says the downstream is still down (the
    /// breaker opens again), not that the request was bad, which a caller retrying work
    /// (a queue) may want to tell apart from a failure while Closed.
    pub fn is_probe(&self) -> bool {
        self.data.kind() == PermitKind::HalfOpen
    }

    /// The call succeeded.
    #[inline(always)]
    pub fn success(mut self) {
        let data = self.data.take();
        self.inner.record(&data, Some(false));
    }

    /// The call failed.
    #[inline]
    pub fn failure(mut self) {
        let data = self.data.take();
        self.inner.record(&data, Some(true));
    }

    /// The call's outcome says nothing about the downstream's health (e.g. a 404, a
    /// validation error): count it neither way and give a HalfOpen probe back.
    #[inline]
    pub fn ignore(mut self) {
        let data = self.data.take();
        self.inner.record(&data, None);
    }

    /// Reports `outcome`.
    #[inline]
    pub fn record(self, outcome: crate::Outcome) {
        match outcome {
            crate::Outcome::Success => self.success(),
            crate::Outcome::Failure => self.failure(),
            crate::Outcome::Ignore => self.ignore(),
        }
    }
}

impl Drop for Permit<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.data.armed() {
            self.inner.release(&self.data);
        }
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("kind", &self.data.kind())
            .finish()
    }
}

/// A [`Permit`] that holds its own handle on the breaker, from
/// [`CircuitBreaker::try_acquire_owned`]. Same rules.
#[must_use = "report the outcome with success(), failure() or ignore()"]
pub struct OwnedPermit {
    breaker: CircuitBreaker,
    data: PermitData,
}

impl OwnedPermit {
    pub(crate) fn new(breaker: CircuitBreaker, data: PermitData) -> Self {
        OwnedPermit { breaker, data }
    }

    /// Whether this permit is a HalfOpen probe (see [`Permit::is_probe`]).
    pub fn is_probe(&self) -> bool {
        self.data.kind() == PermitKind::HalfOpen
    }

    /// The call succeeded.
    pub fn success(mut self) {
        let data = self.data.take();
        self.breaker.inner.record(&data, Some(false));
    }

    /// The call failed.
    pub fn failure(mut self) {
        let data = self.data.take();
        self.breaker.inner.record(&data, Some(true));
    }

    /// Count the call neither way (see [`Permit::ignore`]).
    pub fn ignore(mut self) {
        let data = self.data.take();
        self.breaker.inner.record(&data, None);
    }

    /// Reports `outcome`.
    pub fn record(self, outcome: crate::Outcome) {
        match outcome {
            crate::Outcome::Success => self.success(),
            crate::Outcome::Failure => self.failure(),
            crate::Outcome::Ignore => self.ignore(),
        }
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        if self.data.armed() {
            self.breaker.inner.release(&self.data);
        }
    }
}

impl fmt::Debug for OwnedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("breaker", &self.breaker.name())
            .field("kind", &self.data.kind())
            .finish()
    }
}
