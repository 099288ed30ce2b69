//! HalfOpen's probe accounting in one atomic word, so that handing out a probe, returning an
//! unused one and recording an outcome are each a single compare-and-swap that also checks the
//! probe belongs to the current HalfOpen episode (a late probe from an earlier episode can
//! neither add a permit nor count an outcome).
//!
//! Layout: bits 0..10 available probes, 10..20 successes, 20..30 failures, 30..40 slow calls,
//! 40..64 the low 24 bits of the breaker's generation.

use std::sync::atomic::{AtomicU64, Ordering};

const FIELD: u64 = 10;
const MASK: u64 = (1 << FIELD) - 1;
const GEN_SHIFT: u64 = 40;
const GEN_MASK: u64 = (1 << 24) - 1;

const AVAIL: u64 = 0;
const SUCC: u64 = FIELD;
const FAIL: u64 = 2 * FIELD;
const SLOW: u64 = 3 * FIELD;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probes {
    pub successes: u64,
    pub failures: u64,
    pub slow: u64,
}

/// What recording a probe's outcome led to.
pub(crate) enum Recorded {
    /// Stale probe, or more probes are outstanding.
    Pending,
    /// This outcome completed the episode; decide with these counts.
    Complete(Probes),
}

pub(crate) struct HalfOpen {
    word: AtomicU64,
}

fn field(word: u64, shift: u64) -> u64 {
    (word >> shift) & MASK
}

fn generation(epoch: u64) -> u64 {
    (epoch & GEN_MASK) << GEN_SHIFT
}

impl HalfOpen {
    pub(crate) fn new() -> Self {
        HalfOpen {
            word: AtomicU64::new(0),
        }
    }

    /// Starts an episode for generation `epoch` with `permits` probes.
    pub(crate) fn start(&self, epoch: u64, permits: u32) {
        self.word
            .store(generation(epoch) | u64::from(permits), Ordering::Release);
    }

    fn update(&self, epoch: u64, f: impl Fn(u64) -> Option<u64>) -> Result<u64, u64> {
        let tag = generation(epoch);
        self.word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                if w & (GEN_MASK << GEN_SHIFT) != tag {
                    return None;
                }
                f(w)
            })
    }

    /// Takes a probe for generation `epoch`, if one is left.
    pub(crate) fn acquire(&self, epoch: u64) -> bool {
        self.update(epoch, |w| (field(w, AVAIL) > 0).then(|| w - (1 << AVAIL)))
            .is_ok()
    }

    /// Returns an unused probe (dropped or ignored).
    pub(crate) fn release(&self, epoch: u64) {
        let _ = self.update(epoch, |w| Some(w + (1 << AVAIL)));
    }

    /// Records a probe's outcome; the outcome that completes `permits` probes returns the counts.
    pub(crate) fn record(&self, epoch: u64, permits: u32, failure: bool, slow: bool) -> Recorded {
        let mut add = if failure { 1 << FAIL } else { 1 << SUCC };
        if slow {
            add += 1 << SLOW;
        }
        match self.update(epoch, |w| Some(w + add)) {
            Ok(before) => {
                let w = before + add;
                let probes = Probes {
                    successes: field(w, SUCC),
                    failures: field(w, FAIL),
                    slow: field(w, SLOW),
                };
                if probes.successes + probes.failures == u64::from(permits) {
                    Recorded::Complete(probes)
                } else {
                    Recorded::Pending
                }
            }
            Err(_) => Recorded::Pending,
        }
    }

    /// The counts of the episode `epoch` so far (zero for another episode).
    pub(crate) fn probes(&self, epoch: u64) -> Probes {
        let w = self.word.load(Ordering::Acquire);
        if w & (GEN_MASK << GEN_SHIFT) != generation(epoch) {
            return Probes {
                successes: 0,
                failures: 0,
                slow: 0,
            };
        }
        Probes {
            successes: field(w, SUCC),
            failures: field(w, FAIL),
            slow: field(w, SLOW),
        }
    }
}
