//! Time behind a trait, so that tests control it exactly and the hot path can read a coarse,
//! cheap clock instead of calling `Instant::now()` per call.
//!
//! - [`MonotonicClock`]: the trait, nanoseconds from an arbitrary origin, never decreasing.
//! - [`InstantClock`]: the process's monotonic clock ([`Instant`]), for production; the default.
//! - [`ManualMonotonicClock`]: moves only when told to, for tests and simulations.
//!
//! # Two clocks
//!
//! This is the breaker's *monotonic* clock: elapsed time inside one process. Its sibling,
//! `steadfast_retry::WallClock`, answers the time of day for deadlines that other processes
//! read (leases, `run_at`). A breaker must not use wall time (a clock step would stretch or cut
//! an open state), and a lease must not use monotonic time (an `Instant` means nothing to
//! another host). The side-by-side comparison is on [`MonotonicClock`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A monotonic clock in nanoseconds from an arbitrary origin.
///
/// The trait is object-safe; a breaker owns an `Arc<dyn MonotonicClock>`-like handle. Implement
/// it to drive breakers from your own time source (a simulation, a test).
///
/// # Two clocks
///
/// Steadfast has two clock traits, named for what they measure:
///
/// | | [`MonotonicClock`] (this crate) | `steadfast_retry::WallClock` |
/// |---|---|---|
/// | measures | elapsed time in one process (nanoseconds, never goes back) | the time of day (`SystemTime`) |
/// | taken by | the circuit breaker, the service registry's breakers | the dlq (leases, `run_at`), idempotency (leases, TTLs, dedup windows), the webhook's conversations |
/// | production | [`InstantClock`] | `SystemClock` |
/// | tests | [`ManualMonotonicClock`] | `ManualClock`, `TokioClock` |
///
/// A breaker must not read wall time: an NTP step or a manual clock change would stretch an
/// open state to hours or end it at once, and its windows would count calls into the wrong
/// second. Its readings never leave the process, so a monotonic clock is exact. A lease or a
/// retry deadline must not read monotonic time: it is stored and compared by other processes
/// and hosts, and an `Instant` means nothing outside the process that took it (nor after a
/// restart), so those use the wall clock and rely on hosts keeping it in sync.
///
/// The implementations carry distinct names (`InstantClock`, `ManualMonotonicClock`) so that a
/// service importing both crates never sees two `ManualClock`s doing different things.
pub trait MonotonicClock: Send + Sync + 'static {
    /// Nanoseconds since this clock's origin. Never decreases.
    fn now_nanos(&self) -> u64;

    /// A cheaper reading that may lag [`MonotonicClock::now_nanos`] by about a millisecond.
    ///
    /// The breaker reads this on its hot paths (time-based windows, slow-call durations, the
    /// wait in Open). The default is the exact reading.
    fn coarse_now_nanos(&self) -> u64 {
        self.now_nanos()
    }
}

impl<C: MonotonicClock + ?Sized> MonotonicClock for Arc<C> {
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
    fn coarse_now_nanos(&self) -> u64 {
        (**self).coarse_now_nanos()
    }
}

impl<C: MonotonicClock + ?Sized> MonotonicClock for Box<C> {
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
    fn coarse_now_nanos(&self) -> u64 {
        (**self).coarse_now_nanos()
    }
}

/// The process's monotonic clock ([`Instant`]), with a coarse reading kept up to date by one
/// background thread that wakes every millisecond.
///
/// The thread starts on the first coarse reading (or on [`InstantClock::start_coarse`]) and
/// lives for the process; it is the price of a hot path that never calls `Instant::now()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstantClock;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

static COARSE: AtomicU64 = AtomicU64::new(0);
static UPKEEP: OnceLock<()> = OnceLock::new();

fn precise() -> u64 {
    u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl InstantClock {
    /// Starts the coarse clock's upkeep thread if it is not running yet. Idempotent.
    pub fn start_coarse() {
        UPKEEP.get_or_init(|| {
            COARSE.fetch_max(precise(), Ordering::Relaxed);
            let spawned = std::thread::Builder::new()
                .name("steadfast-coarse-clock".into())
                .spawn(|| {
                    loop {
                        COARSE.fetch_max(precise(), Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                });
            // Without the thread the coarse reading falls back to the precise one (see below),
            // so a failed spawn costs speed, never correctness.
            if spawned.is_err() {
                COARSE.store(u64::MAX, Ordering::Relaxed);
            }
        });
    }

    #[inline]
    pub(crate) fn coarse() -> u64 {
        let v = COARSE.load(Ordering::Relaxed);
        if v == 0 || v == u64::MAX {
            // Not started yet, or no upkeep thread: the precise reading is always correct.
            if v == 0 {
                Self::start_coarse();
            }
            return precise();
        }
        v
    }
}

impl MonotonicClock for InstantClock {
    fn now_nanos(&self) -> u64 {
        precise()
    }
    #[inline]
    fn coarse_now_nanos(&self) -> u64 {
        Self::coarse()
    }
}

/// A clock that moves only when told to: for tests and simulations. Clones share the time.
///
/// ```
/// use std::time::Duration;
/// use steadfast_circuit_breaker::{MonotonicClock, ManualMonotonicClock};
///
/// let clock = ManualMonotonicClock::new();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now_nanos(), 2_000_000_000);
/// ```
#[derive(Clone, Default)]
pub struct ManualMonotonicClock {
    nanos: Arc<AtomicU64>,
}

impl fmt::Debug for ManualMonotonicClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualMonotonicClock")
            .field("nanos", &self.nanos.load(Ordering::Relaxed))
            .finish()
    }
}

impl ManualMonotonicClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update keeps the add saturating instead of wrapping.
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Sets the clock to `nanos`, if that is not earlier than now (the clock is monotonic).
    pub fn set_nanos(&self, nanos: u64) {
        self.nanos.fetch_max(nanos, Ordering::AcqRel);
    }
}

impl MonotonicClock for ManualMonotonicClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
    }
}

/// The breaker's handle on its clock: the system clock is matched directly so that its coarse
/// reading inlines to one atomic load on the hot path.
#[derive(Clone)]
pub(crate) enum ClockSource {
    System,
    Custom(Arc<dyn MonotonicClock>),
}

impl ClockSource {
    pub(crate) fn new<C: MonotonicClock>(clock: C) -> Self {
        // An `InstantClock` handed in explicitly still takes the fast path.
        if std::any::TypeId::of::<C>() == std::any::TypeId::of::<InstantClock>() {
            return ClockSource::System;
        }
        ClockSource::Custom(Arc::new(clock))
    }

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            ClockSource::System => InstantClock::coarse(),
            ClockSource::Custom(c) => c.coarse_now_nanos(),
        }
    }

    pub(crate) fn shared(&self) -> Arc<dyn MonotonicClock> {
        match self {
            ClockSource::System => Arc::new(InstantClock),
            ClockSource::Custom(c) => Arc::clone(c),
        }
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_and_monotonic() {
        let a = ManualMonotonicClock::new();
        let b = a.clone();
        a.advance(Duration::from_millis(5));
        assert_eq!(b.now_nanos(), 5_000_000);
        b.set_nanos(1);
        assert_eq!(a.now_nanos(), 5_000_000);
        a.advance(Duration::MAX);
        assert_eq!(a.now_nanos(), u64::MAX);
    }

    #[test]
    fn system_coarse_reading_does_not_run_ahead() {
        let coarse = InstantClock.coarse_now_nanos();
        let precise = InstantClock.now_nanos();
        assert!(coarse <= precise);
    }
}
