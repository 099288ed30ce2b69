//! An injectable wall clock, so that code deciding expiry by the time of day (queue leases,
//! idempotency windows, `next_retry_at`) can be driven exactly by tests.
//!
//! The clock answers [`SystemTime`], the standard library's wall time; each crate converts
//! it to its own representation (a `chrono::DateTime<Utc>` implements `From<SystemTime>`,
//! milliseconds come from [`SystemTime::duration_since`]). Three implementations:
//!
//! - [`SystemClock`]: the system's wall clock, for production.
//! - [`ManualClock`]: stands still until told to move ([`ManualClock::advance`],
//!   [`ManualClock::set`]); clones share one time, so a test keeps a clone and hands another
//!   to the code under test.
//! - [`TokioClock`]: the system time at creation plus tokio's elapsed time, so under
//!   `tokio::time::pause` (or `start_paused`) wall time follows the paused clock.
//!
//! This is a *wall* clock: instances on different hosts comparing its readings need their
//! clocks kept in sync (NTP), and a skew shifts deadlines by that much. For measuring
//! durations inside one process, a monotonic clock (`Instant`) is the right tool.
//!
//! # Two clocks
//!
//! This is the *wall* clock: the time of day, for deadlines that other processes and hosts
//! read (leases, `run_at`, dedup windows). Its sibling, `steadfast_circuit_breaker::
//! MonotonicClock`, measures elapsed time inside one process for breakers. A lease must not use
//! monotonic time (an `Instant` means nothing to another host), and a breaker must not use wall
//! time (a clock step would stretch or cut an open state). The side-by-side comparison is on
//! [`WallClock`].

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// A source of wall-clock time.
///
/// Take it as `Arc<dyn WallClock>` so that tests can pass a [`ManualClock`] or a [`TokioClock`]
/// where production passes a [`SystemClock`].
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, UNIX_EPOCH};
/// use steadfast_retry::{WallClock, ManualClock};
///
/// let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let clock = ManualClock::new(start);
/// let shared: Arc<dyn WallClock> = Arc::new(clock.clone());
///
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(shared.now(), start + Duration::from_secs(30));
///
/// clock.set(start);
/// assert_eq!(shared.now(), start);
/// ```
///
/// # Two clocks
///
/// Steadfast has two clock traits, named for what they measure:
///
/// | | [`WallClock`] (this crate) | `steadfast_circuit_breaker::MonotonicClock` |
/// |---|---|---|
/// | measures | the time of day (`SystemTime`) | elapsed time in one process (nanoseconds, never goes back) |
/// | taken by | the dlq (leases, `run_at`), idempotency (leases, TTLs, dedup windows), the webhook's conversations | the circuit breaker, the service registry's breakers |
/// | production | [`SystemClock`] | `InstantClock` |
/// | tests | [`ManualClock`], [`TokioClock`] | `ManualMonotonicClock` |
///
/// A lease, a `next_retry_at` or a dedup window must not read monotonic time: it is stored and
/// compared by other processes and hosts, and an `Instant` means nothing outside the process
/// that took it (nor after a restart). A breaker must not read wall time: its readings never
/// leave the process, and an NTP step would stretch an open state to hours or end it at once.
/// The breaker's implementations carry their own names, so importing both crates brings no
/// two types called the same.
pub trait WallClock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock ([`SystemTime::now`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use steadfast_retry::{WallClock, ManualClock};
///
/// let clock = ManualClock::starting_now();
/// let before = clock.now();
/// clock.advance(Duration::from_millis(1_500));
/// assert_eq!(clock.now().duration_since(before).unwrap(), Duration::from_millis(1_500));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    // A mutex, not an atomic: `SystemTime` has no portable integer form, and tests are the
    // only users, so the lock is never contended on a hot path.
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    /// A clock stopped at `start` (anything convertible to a [`SystemTime`], such as a
    /// `chrono::DateTime<Utc>`).
    pub fn new(start: impl Into<SystemTime>) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(start.into())),
        }
    }

    /// A clock stopped at the current system time.
    pub fn starting_now() -> Self {
        Self::new(SystemTime::now())
    }

    /// Moves the clock forward by `by`. A move past the largest representable time leaves
    /// the clock where it was.
    pub fn advance(&self, by: Duration) {
        let mut now = self.lock();
        *now = now.checked_add(by).unwrap_or(*now);
    }

    /// Sets the clock (backwards too).
    pub fn set(&self, to: impl Into<SystemTime>) {
        *self.lock() = to.into();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SystemTime> {
        // The guarded value is a plain time, valid whatever a panicking holder was doing.
        self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl WallClock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.lock()
    }
}

/// Wall-clock time that advances with tokio's clock: the system time at creation plus the
/// tokio time elapsed since.
///
/// Under `tokio::time::pause` it follows the paused clock, so tests with `start_paused` see
/// leases and backoff expire exactly when tokio time says, without sleeping for real.
///
/// ```
/// use std::time::Duration;
/// use steadfast_retry::{WallClock, TokioClock};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let clock = TokioClock::new();
/// let before = clock.now();
/// tokio::time::sleep(Duration::from_secs(60)).await; // instant: tokio time is paused
/// assert_eq!(clock.now().duration_since(before).unwrap(), Duration::from_secs(60));
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base: SystemTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Starts at the current system time.
    pub fn new() -> Self {
        TokioClock {
            base: SystemTime::now(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl WallClock for TokioClock {
    fn now(&self) -> SystemTime {
        let elapsed = self.start.elapsed();
        self.base.checked_add(elapsed).unwrap_or(self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn manual_clock_clones_share_time() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        let a = ManualClock::new(start);
        let b = a.clone();
        a.advance(Duration::from_millis(250));
        assert_eq!(b.now(), start + Duration::from_millis(250));
        b.set(UNIX_EPOCH);
        assert_eq!(a.now(), UNIX_EPOCH);
    }

    #[test]
    fn manual_clock_advance_past_the_end_stays_put() {
        let clock = ManualClock::new(UNIX_EPOCH);
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), UNIX_EPOCH);
    }

    #[test]
    fn system_clock_is_the_system_time() {
        let before = SystemTime::now();
        let now = SystemClock.now();
        assert!(now >= before);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        let t0 = clock.now();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            clock.now().duration_since(t0).unwrap(),
            Duration::from_secs(5)
        );
    }
}
