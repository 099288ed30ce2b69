//! The time-based window: the calls of the last `secs` whole seconds, one bucket per second.
//!
//! Only the current second's bucket is written on the hot path (lock-free counters). When the
//! second changes, the first caller to notice seals the bucket into a running total and
//! subtracts the buckets that fell out of the window (subtract-on-evict), so a read is the
//! sealed total plus the live bucket: O(1). A success racing a rotation may land in the
//! bucket just sealed and be lost; that costs one call's precision at a second boundary, never
//! a lock on the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use super::Stats;
use crate::config::Config;

const BUCKET_NANOS: u64 = 1_000_000_000;

#[derive(Default)]
struct Bucket {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

impl Bucket {
    fn load(&self) -> Stats {
        Stats {
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            slow: self.slow.load(Ordering::Relaxed),
        }
    }

    fn take(&self) -> Stats {
        Stats {
            calls: self.calls.swap(0, Ordering::Relaxed),
            failures: self.failures.swap(0, Ordering::Relaxed),
            slow: self.slow.swap(0, Ordering::Relaxed),
        }
    }
}

struct Sealed {
    /// Per ring slot: the second it was sealed for and what it held.
    buckets: Vec<Option<(u64, Stats)>>,
    total: Stats,
}

pub(crate) struct TimeWindow {
    secs: u64,
    mask: u64,
    minimum: u64,
    current: CachePadded<AtomicU64>,
    live: Box<[CachePadded<Bucket>]>,
    sealed_calls: CachePadded<AtomicU64>,
    sealed: Mutex<Sealed>,
}

impl TimeWindow {
    pub(crate) fn new(window: Duration, config: &Config, now: u64) -> Self {
        let secs = window.as_secs() + u64::from(window.subsec_nanos() > 0);
        // A power-of-two ring so the hot path masks instead of dividing.
        let ring = secs.next_power_of_two();
        let live = (0..ring)
            .map(|_| CachePadded::new(Bucket::default()))
            .collect();
        TimeWindow {
            secs,
            mask: ring - 1,
            minimum: config.effective_minimum_calls(),
            current: CachePadded::new(AtomicU64::new(now / BUCKET_NANOS)),
            live,
            sealed_calls: CachePadded::new(AtomicU64::new(0)),
            sealed: Mutex::new(Sealed {
                buckets: vec![None; ring as usize],
                total: Stats::default(),
            }),
        }
    }

    #[inline]
    fn bucket(&self, second: u64) -> &Bucket {
        &self.live[(second & self.mask) as usize]
    }

    #[inline(always)]
    pub(crate) fn record_success(&self, now: u64) -> bool {
        let second = now / BUCKET_NANOS;
        let mut rotated = false;
        if second != self.current.load(Ordering::Acquire) {
            rotated = self.rotate_now(second);
        }
        let before = self.bucket(second).calls.fetch_add(1, Ordering::Relaxed);
        // Evicting old buckets can raise a rate, so a rotation is followed by an evaluation;
        // otherwise only the success that brings the window up to its minimum can trip.
        rotated || before + 1 + self.sealed_calls.load(Ordering::Relaxed) == self.minimum
    }

    #[cold]
    #[inline(never)]
    fn rotate_now(&self, second: u64) -> bool {
        let mut sealed = self.sealed.lock();
        self.rotate(&mut sealed, second)
    }

    /// Moves the window to `second` if it is newer. Returns whether it moved.
    fn rotate(&self, sealed: &mut Sealed, second: u64) -> bool {
        let current = self.current.load(Ordering::Acquire);
        if second <= current {
            return false;
        }
        let slot = (current & self.mask) as usize;
        let held = self.live[slot].take();
        sealed.buckets[slot] = Some((current, held));
        add(&mut sealed.total, held);
        for entry in sealed.buckets.iter_mut() {
            if let Some((at, stats)) = *entry {
                if at + self.secs <= second {
                    sub(&mut sealed.total, stats);
                    *entry = None;
                }
            }
        }
        // Clear what a racing late success may have left in the new bucket.
        self.bucket(second).take();
        self.sealed_calls
            .store(sealed.total.calls, Ordering::Relaxed);
        self.current.store(second, Ordering::Release);
        true
    }

    pub(crate) fn record_other(&self, failure: bool, slow: bool, now: u64) -> Stats {
        let mut sealed = self.sealed.lock();
        self.rotate(&mut sealed, now / BUCKET_NANOS);
        let bucket = self.bucket(self.current.load(Ordering::Acquire));
        bucket.calls.fetch_add(1, Ordering::Relaxed);
        if failure {
            bucket.failures.fetch_add(1, Ordering::Relaxed);
        }
        if slow {
            bucket.slow.fetch_add(1, Ordering::Relaxed);
        }
        let mut stats = sealed.total;
        add(&mut stats, bucket.load());
        stats
    }

    /// The window as of `now`, without moving it: a read never evicts on its own, so that
    /// every eviction is seen by the recording path that evaluates the rates.
    pub(crate) fn stats(&self, now: u64) -> Stats {
        let sealed = self.sealed.lock();
        let second = now / BUCKET_NANOS;
        let current = self.current.load(Ordering::Acquire);
        let live = self.bucket(current).load();
        if second <= current {
            let mut stats = sealed.total;
            add(&mut stats, live);
            return stats;
        }
        let mut stats = Stats::default();
        for (at, held) in sealed.buckets.iter().flatten().copied() {
            if at + self.secs > second {
                add(&mut stats, held);
            }
        }
        if current + self.secs > second {
            add(&mut stats, live);
        }
        stats
    }

    pub(crate) fn reset(&self, now: u64) {
        let mut sealed = self.sealed.lock();
        for bucket in self.live.iter() {
            bucket.take();
        }
        sealed.buckets.iter_mut().for_each(|b| *b = None);
        sealed.total = Stats::default();
        self.sealed_calls.store(0, Ordering::Relaxed);
        self.current.store(now / BUCKET_NANOS, Ordering::Release);
    }
}

fn add(into: &mut Stats, s: Stats) {
    into.calls += s.calls;
    into.failures += s.failures;
    into.slow += s.slow;
}

fn sub(from: &mut Stats, s: Stats) {
    from.calls = from.calls.saturating_sub(s.calls);
    from.failures = from.failures.saturating_sub(s.failures);
    from.slow = from.slow.saturating_sub(s.slow);
}
