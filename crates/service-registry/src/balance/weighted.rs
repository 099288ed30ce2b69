//! Weighted round robin: a shared cursor over the cumulative weights.

use std::sync::atomic::AtomicUsize;

use super::Candidate;

/// Each cycle of `sum(weights)` picks gives every candidate exactly its weight in picks. A zero
/// weight (refused by the config) is treated as 1 so nothing is starved by accident.
pub(crate) fn pick<C: Candidate>(cursor: &AtomicUsize, candidates: &[C], advance: bool) -> usize {
    let total: u64 = candidates
        .iter()
        .map(|c| u64::from(c.weight().max(1)))
        .sum();
    let mut ticket = (super::ticket(cursor, advance) as u64) % total;
    for (i, c) in candidates.iter().enumerate() {
        let w = u64::from(c.weight().max(1));
        if ticket < w {
            return i;
        }
        ticket -= w;
    }
    candidates.len() - 1
}

#[cfg(test)]
mod tests {
    use super::super::tests::Fake;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Over one full cycle every candidate gets exactly its weight.
        #[test]
        fn one_cycle_matches_weights(
            weights in proptest::collection::vec(1u32..20, 1..20),
            start in 0usize..10_000,
        ) {
            let c: Vec<_> = weights.iter().map(|&w| Fake(w, 0)).collect();
            let cursor = AtomicUsize::new(start);
            let total: u32 = weights.iter().sum();
            let mut counts = vec![0u32; c.len()];
            for _ in 0..total {
                counts[pick(&cursor, &c, true)] += 1;
            }
            prop_assert_eq!(counts, weights);
        }
    }
}
