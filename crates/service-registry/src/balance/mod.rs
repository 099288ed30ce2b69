//! Load balancing over a service's eligible endpoints.
//!
//! The registry first narrows the endpoints to the eligible ones (healthy or unknown, breaker not
//! open, not draining; or all but the draining ones in panic mode), then asks the strategy to
//! pick one. Each strategy lives in its own file; none takes a lock.

mod p2c;
mod round_robin;
mod weighted;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

/// How a service spreads calls over its eligible endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Balance {
    /// Each eligible endpoint in turn (the default).
    #[default]
    RoundRobin,
    /// In turn, in proportion to [`Endpoint::weight`](crate::Endpoint::weight). Proportional
    /// over each cycle of the total weight, not interleaved (nginx's "smooth" variant needs a
    /// lock on every pick).
    WeightedRoundRobin,
    /// Power of two choices on pending requests: sample two distinct eligible endpoints at random
    /// and take the one with fewer calls in flight (tower's `p2c`, Finagle's least-loaded). It
    /// sends less traffic to a slow endpoint without a global scan or lock.
    P2cLeastPending,
}

/// The cursor's value for this pick, moved on by one when `advance`.
fn ticket(cursor: &AtomicUsize, advance: bool) -> usize {
    if advance {
        cursor.fetch_add(1, Ordering::Relaxed)
    } else {
        cursor.load(Ordering::Relaxed)
    }
}

/// What a strategy needs to know about a candidate.
pub(crate) trait Candidate {
    fn weight(&self) -> u32;
    fn in_flight(&self) -> usize;
}

/// Per-service balancer state: one cursor shared by the round-robin strategies.
#[derive(Debug, Default)]
pub(crate) struct Balancer {
    cursor: AtomicUsize,
}

impl Balancer {
    /// Picks an index into `candidates` (non-empty) with `strategy`.
    ///
    /// `advance` is false for a retry's pick among the endpoints a call has not tried yet: it
    /// reads the cursor without moving it, so retries do not shift the rotation (otherwise the
    /// endpoint after a failing one would be skipped and the failing one tried first by every
    /// call).
    pub(crate) fn pick<C: Candidate>(
        &self,
        strategy: Balance,
        candidates: &[C],
        advance: bool,
    ) -> usize {
        debug_assert!(!candidates.is_empty());
        match strategy {
            Balance::RoundRobin => round_robin::pick(&self.cursor, candidates.len(), advance),
            Balance::WeightedRoundRobin => weighted::pick(&self.cursor, candidates, advance),
            Balance::P2cLeastPending => p2c::pick(candidates, &mut rand::rng()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A test candidate: (weight, in flight).
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Fake(pub u32, pub usize);

    impl Candidate for Fake {
        fn weight(&self) -> u32 {
            self.0
        }
        fn in_flight(&self) -> usize {
            self.1
        }
    }

    #[test]
    fn round_robin_visits_each_in_turn() {
        let b = Balancer::default();
        let c = [Fake(1, 0); 3];
        let picks: Vec<_> = (0..6)
            .map(|_| b.pick(Balance::RoundRobin, &c, true))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_round_robin_is_proportional() {
        let b = Balancer::default();
        let c = [Fake(3, 0), Fake(1, 0), Fake(2, 0)];
        let mut counts = [0; 3];
        for _ in 0..600 {
            counts[b.pick(Balance::WeightedRoundRobin, &c, true)] += 1;
        }
        assert_eq!(counts, [300, 100, 200]);
    }

    #[test]
    fn p2c_never_picks_the_most_loaded_of_three() {
        let b = Balancer::default();
        let c = [Fake(1, 0), Fake(1, 9), Fake(1, 1)];
        for _ in 0..1000 {
            assert_ne!(b.pick(Balance::P2cLeastPending, &c, true), 1);
        }
    }
}
