//! Time behind a trait, so that tests control it exactly and the hot path can read a coarse,
//! cheap clock instead of calling `Instant::now()` per call.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A monotonic clock in nanoseconds from an arbitrary origin.
///
/// The trait is object-safe; a breaker owns an `Arc<dyn Clock>`-like handle. Implement it to
/// drive breakers from your own time source (a simulation, a test).
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since this clock's origin. Never decreases.
    fn now_nanos(&self) -> u64;

    /// A cheaper reading that may lag [`Clock::now_nanos`] by about a millisecond.
    ///
    /// The breaker reads this on its hot paths (time-based windows, slow-call durations, the
    /// wait in Open). The default is the exact reading.
    fn coarse_now_nanos(&self) -> u64 {
        self.now_nanos()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
    fn coarse_now_nanos(&self) -> u64 {
        (**self).coarse_now_nanos()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
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
/// The thread starts on the first coarse reading (or on [`SystemClock::start_coarse`]) and
/// lives for the process; it is the price of a hot path that never calls `Instant::now()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

static COARSE: AtomicU64 = AtomicU64::new(0);
static UPKEEP: OnceLock<()> = OnceLock::new();

fn precise() -> u64 {
    u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl SystemClock {
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

impl Clock for SystemClock {
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
/// use steadfast_circuit_breaker::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now_nanos(), 2_000_000_000);
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("nanos", &self.nanos.load(Ordering::Relaxed))
            .finish()
    }
}

impl ManualClock {
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

impl Clock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
    }
}

/// The breaker's handle on its clock: the system clock is matched directly so that its coarse
/// reading inlines to one atomic load on the hot path.
#[derive(Clone)]
pub(crate) enum ClockSource {
    System,
    Custom(Arc<dyn Clock>),
}

impl ClockSource {
    pub(crate) fn new<C: Clock>(clock: C) -> Self {
        // A `SystemClock` handed in explicitly still takes the fast path.
        if std::any::TypeId::of::<C>() == std::any::TypeId::of::<SystemClock>() {
            return ClockSource::System;
        }
        ClockSource::Custom(Arc::new(clock))
    }

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            ClockSource::System => SystemClock::coarse(),
            ClockSource::Custom(c) => c.coarse_now_nanos(),
        }
    }

    pub(crate) fn shared(&self) -> Arc<dyn Clock> {
        match self {
            ClockSource::System => Arc::new(SystemClock),
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
        let a = ManualClock::new();
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
        let coarse = SystemClock.coarse_now_nanos();
        let precise = SystemClock.now_nanos();
        assert!(coarse <= precise);
    }
}
