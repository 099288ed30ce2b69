//! Power of two choices on pending requests.

use rand::Rng;

use super::Candidate;

/// Samples two distinct candidates and returns the one with fewer calls in flight; the first
/// sample wins ties, and since it is random, ties are spread evenly.
pub(crate) fn pick<C: Candidate, R: Rng + ?Sized>(candidates: &[C], rng: &mut R) -> usize {
    let len = candidates.len();
    if len == 1 {
        return 0;
    }
    let a = rng.random_range(0..len);
    // Draw from the other len - 1 slots so that the two are always distinct.
    let mut b = rng.random_range(0..len - 1);
    if b >= a {
        b += 1;
    }
    if candidates[b].in_flight() < candidates[a].in_flight() {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Fake;
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    proptest! {
        /// The pick is never more loaded than every other candidate, and the strictly most
        /// loaded candidate is never picked when there are two or more.
        #[test]
        fn never_picks_the_unique_maximum(
            loads in proptest::collection::vec(0usize..50, 1..30),
            seed in any::<u64>(),
        ) {
            let c: Vec<_> = loads.iter().map(|&l| Fake(1, l)).collect();
            let mut rng = SmallRng::seed_from_u64(seed);
            let i = pick(&c, &mut rng);
            prop_assert!(i < c.len());
            let max = *loads.iter().max().unwrap();
            let unique_max = loads.iter().filter(|&&l| l == max).count() == 1;
            if c.len() > 1 && unique_max {
                prop_assert!(loads[i] < max);
            }
        }
    }

    #[test]
    fn both_of_two_equal_candidates_are_used() {
        let c = [Fake(1, 0), Fake(1, 0)];
        let mut rng = SmallRng::seed_from_u64(7);
        let mut seen = [false; 2];
        for _ in 0..100 {
            seen[pick(&c, &mut rng)] = true;
        }
        assert_eq!(seen, [true, true]);
    }
}
