//! Property tests on the delay schedule.
use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use steadfast_retry::{Backoff, Jitter, RetryPolicy};

fn backoff() -> impl Strategy<Value = Backoff> {
    prop_oneof![
        (1u64..5_000).prop_map(|ms| Backoff::constant(Duration::from_millis(ms))),
        (1u64..5_000, 0u64..5_000)
            .prop_map(|(i, s)| Backoff::linear(Duration::from_millis(i), Duration::from_millis(s))),
        (1u64..5_000, 1.0f64..10.0)
            .prop_map(|(i, m)| Backoff::exponential(Duration::from_millis(i), m)),
    ]
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
    ]
}

fn policy() -> impl Strategy<Value = RetryPolicy> {
    (backoff(), jitter(), 0u64..60_000, 1u32..30).prop_map(|(b, j, extra, attempts)| {
        RetryPolicy::builder()
            .backoff(b)
            .jitter(j)
            .max_delay(b.initial() + Duration::from_millis(extra))
            .max_attempts(attempts)
            .build()
            .expect("generated policies are valid")
    })
}

proptest! {
    #[test]
    fn delays_never_exceed_max_delay(p in policy(), attempt in 1u32..10_000, seed: u64) {
        let mut rng = SmallRng::seed_from_u64(seed);
        prop_assert!(p.delay_with_rng(attempt, &mut rng) <= p.max_delay());
        for d in p.schedule_with_rng(SmallRng::seed_from_u64(seed)) {
            prop_assert!(d <= p.max_delay());
        }
    }

    #[test]
    fn unjittered_delays_are_non_decreasing(b in backoff(), extra in 0u64..60_000, n in 1u32..200) {
        let p = RetryPolicy::builder()
            .backoff(b)
            .max_delay(b.initial() + Duration::from_millis(extra))
            .max_attempts(n + 1)
            .build()
            .unwrap();
        let delays: Vec<_> = p.schedule().collect();
        prop_assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
    }

    #[test]
    fn jittered_delays_stay_in_bounds(p in policy(), attempt in 1u32..100, seed: u64) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let base = p.base_delay(attempt);
        let d = p.delay_with_rng(attempt, &mut rng);
        match p.jitter() {
            Jitter::None => prop_assert_eq!(d, base),
            Jitter::Full => prop_assert!(d <= base),
            Jitter::Equal => prop_assert!(d >= base / 2 && d <= base),
            Jitter::Decorrelated => {
                prop_assert!(d >= p.backoff().initial().min(p.max_delay()));
                prop_assert!(d <= p.max_delay());
            }
            _ => unreachable!("all jitters covered"),
        }
    }

    #[test]
    fn schedule_has_one_wait_per_retry(p in policy()) {
        prop_assert_eq!(p.schedule().count() as u32, p.max_attempts() - 1);
    }

    #[test]
    fn same_seed_same_schedule(p in policy(), seed: u64) {
        let a: Vec<_> = p.schedule_with_rng(SmallRng::seed_from_u64(seed)).collect();
        let b: Vec<_> = p.schedule_with_rng(SmallRng::seed_from_u64(seed)).collect();
        prop_assert_eq!(a, b);
    }
}

#[test]
fn default_policy_is_the_seed_systems() {
    let p = RetryPolicy::default();
    assert_eq!(p.max_attempts(), 3);
    assert_eq!(p.delay(1), Duration::from_secs(1));
    assert_eq!(p.delay(2), Duration::from_secs(2));
    assert_eq!(p.delay(5), Duration::from_secs(16));
    assert_eq!(p.delay(6), Duration::from_secs(30), "capped at 30 s");
    assert_eq!(p.delay(u32::MAX), Duration::from_secs(30));
    assert_eq!(
        p.schedule().collect::<Vec<_>>(),
        vec![Duration::from_secs(1), Duration::from_secs(2)]
    );
}

#[test]
fn linear_and_constant_schedules() {
    let linear = RetryPolicy::builder()
        .linear(Duration::from_millis(100), Duration::from_millis(50))
        .max_attempts(4)
        .build()
        .unwrap();
    assert_eq!(
        linear.schedule().collect::<Vec<_>>(),
        [100, 150, 200].map(Duration::from_millis).to_vec()
    );
    let constant = RetryPolicy::builder()
        .constant(Duration::from_millis(7))
        .max_delay(Duration::from_millis(7))
        .max_attempts(3)
        .build()
        .unwrap();
    assert_eq!(
        constant.schedule().collect::<Vec<_>>(),
        vec![Duration::from_millis(7); 2]
    );
}

#[test]
fn builder_rejects_bad_values() {
    use steadfast_retry::ConfigError;
    assert_eq!(
        RetryPolicy::builder().max_attempts(0).build(),
        Err(ConfigError::ZeroAttempts(0))
    );
    assert!(matches!(
        RetryPolicy::builder()
            .exponential(Duration::from_secs(1), 0.5)
            .build(),
        Err(ConfigError::InvalidMultiplier(_))
    ));
    assert!(matches!(
        RetryPolicy::builder()
            .exponential(Duration::from_secs(1), f64::NAN)
            .build(),
        Err(ConfigError::InvalidMultiplier(_))
    ));
    assert!(matches!(
        RetryPolicy::builder()
            .exponential(Duration::from_secs(10), 2.0)
            .max_delay(Duration::from_secs(1))
            .build(),
        Err(ConfigError::MaxDelayBelowInitial { .. })
    ));
}
