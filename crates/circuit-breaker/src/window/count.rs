//! The count-based window: the last `size` recorded calls.
//!
//! Every recorded call takes the next sequence number from one cache-padded counter. Only
//! failures and slow calls are remembered, by sequence number, in ordered queues; the window
//! holds `min(seq, size)` calls, and a remembered failure is in the window while its number is
//! greater than `seq - size`. A success therefore costs one `fetch_add`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use super::Stats;
use crate::config::Config;

pub(crate) struct CountWindow {
    size: u64,
    minimum: u64,
    seq: CachePadded<AtomicU64>,
    marks: Mutex<Marks>,
}

#[derive(Default)]
struct Marks {
    failures: VecDeque<u64>,
    slow: VecDeque<u64>,
}

impl Marks {
    fn evict(&mut self, seq: u64, size: u64) {
        let oldest_kept = seq.saturating_sub(size);
        while self.failures.front().is_some_and(|&s| s <= oldest_kept) {
            self.failures.pop_front();
        }
        while self.slow.front().is_some_and(|&s| s <= oldest_kept) {
            self.slow.pop_front();
        }
    }

    fn stats(&self, seq: u64, size: u64) -> Stats {
        Stats {
            calls: seq.min(size),
            failures: self.failures.len() as u64,
            slow: self.slow.len() as u64,
        }
    }
}

impl CountWindow {
    pub(crate) fn new(size: u32, config: &Config) -> Self {
        CountWindow {
            size: u64::from(size),
            minimum: config.effective_minimum_calls(),
            seq: CachePadded::new(AtomicU64::new(0)),
            marks: Mutex::new(Marks::default()),
        }
    }

    #[inline(always)]
    pub(crate) fn record_success(&self) -> bool {
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        // A success lowers the failure rate of a full window or of one already past its
        // minimum; the only success that can trip is the one that reaches the minimum.
        n == self.minimum
    }

    pub(crate) fn record_other(&self, failure: bool, slow: bool) -> Stats {
        let mut marks = self.marks.lock();
        // Taken under the lock so that the queues stay ordered.
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        if failure {
            marks.failures.push_back(n);
        }
        if slow {
            marks.slow.push_back(n);
        }
        marks.evict(n, self.size);
        marks.stats(n, self.size)
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut marks = self.marks.lock();
        let n = self.seq.load(Ordering::Relaxed);
        marks.evict(n, self.size);
        marks.stats(n, self.size)
    }

    pub(crate) fn reset(&self) {
        let mut marks = self.marks.lock();
        self.seq.store(0, Ordering::Relaxed);
        marks.failures.clear();
        marks.slow.clear();
    }
}
