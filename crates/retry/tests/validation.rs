//! Every way to make a policy or backoff validates, and nothing that validates can panic later.
use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use steadfast_retry::{Backoff, ConfigError, Jitter, MAX_DURATION, RetryPolicy};

/// Any duration `Duration` can hold, biased towards the edges.
fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(MAX_DURATION),
        Just(MAX_DURATION + Duration::from_nanos(1)),
        (0u64..10_000).prop_map(Duration::from_millis),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

/// Any multiplier, the non-finite and negative ones included.
fn any_multiplier() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-2.0),
        Just(0.0),
        Just(1.0),
        Just(f64::MAX),
        any::<f64>(),
        0.5f64..10.0,
    ]
}

fn any_backoff() -> impl Strategy<Value = Backoff> {
    prop_oneof![
        any_duration().prop_map(Backoff::constant),
        (any_duration(), any_duration()).prop_map(|(i, s)| Backoff::linear(i, s)),
        (any_duration(), any_multiplier()).prop_map(|(i, m)| Backoff::exponential(i, m)),
    ]
}

fn any_jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
    ]
}

fn edge_attempt() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(1), Just(u32::MAX), any::<u32>(), 1u32..100]
}

proptest! {
    /// An unchecked backoff (as the breaker held before `open_backoff` validated) never panics.
    #[test]
    fn base_delay_never_panics(b in any_backoff(), attempt in edge_attempt(), cap in any_duration()) {
        prop_assert!(b.base_delay(attempt, cap) <= cap);
    }

    #[test]
    fn arbitrary_input_is_refused_or_safe(
        b in any_backoff(),
        j in any_jitter(),
        max_delay in any_duration(),
        attempts in prop_oneof![Just(0u32), Just(u32::MAX), 1u32..50],
        elapsed in proptest::option::of(any_duration()),
        attempt in edge_attempt(),
        seed: u64,
    ) {
        let mut builder = RetryPolicy::builder()
            .backoff(b)
            .jitter(j)
            .max_delay(max_delay)
            .max_attempts(attempts);
        if let Some(e) = elapsed {
            builder = builder.max_elapsed(e);
        }
        let Ok(p) = builder.build() else { return Ok(()) };
        prop_assert!(b.validate().is_ok());
        prop_assert!(p.max_delay() <= MAX_DURATION);
        let mut rng = SmallRng::seed_from_u64(seed);
        prop_assert!(p.delay_with_rng(attempt, &mut rng) <= p.max_delay());
        prop_assert!(p.delay(attempt) <= p.max_delay());
        // The schedule of a valid policy: bounded, and without jitter non-decreasing.
        let delays: Vec<_> = p.schedule_with_rng(SmallRng::seed_from_u64(seed)).take(64).collect();
        prop_assert!(delays.iter().all(|d| *d <= p.max_delay()));
        if j == Jitter::None {
            prop_assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        }
    }
}

#[test]
fn the_reported_backoff_is_refused_and_no_longer_panics() {
    let b = Backoff::exponential(Duration::from_secs(10), -2.0);
    assert_eq!(b.validate(), Err(ConfigError::InvalidMultiplier(-2.0)));
    // Opening 2 gave -20 s, which `Duration::from_secs_f64` panicked on.
    assert_eq!(b.base_delay(2, Duration::from_secs(60)), Duration::ZERO);
    assert!(matches!(
        RetryPolicy::builder().backoff(b).build(),
        Err(ConfigError::InvalidMultiplier(_))
    ));
}

#[test]
fn absurd_and_zero_durations_are_refused() {
    let too_long = MAX_DURATION + Duration::from_secs(1);
    assert!(matches!(
        RetryPolicy::builder().max_delay(Duration::MAX).build(),
        Err(ConfigError::DurationTooLong {
            name: "max_delay",
            ..
        })
    ));
    assert!(matches!(
        RetryPolicy::builder()
            .linear(Duration::from_secs(1), too_long)
            .build(),
        Err(ConfigError::DurationTooLong {
            name: "backoff step",
            ..
        })
    ));
    assert!(matches!(
        RetryPolicy::builder().max_elapsed(Duration::ZERO).build(),
        Err(ConfigError::ZeroDuration("max_elapsed"))
    ));
    assert!(matches!(
        RetryPolicy::builder().max_elapsed(too_long).build(),
        Err(ConfigError::DurationTooLong {
            name: "max_elapsed",
            ..
        })
    ));
    // The ceiling itself is accepted, and its delays are computed without overflow.
    let p = RetryPolicy::builder()
        .linear(MAX_DURATION, MAX_DURATION)
        .max_delay(MAX_DURATION)
        .max_attempts(u32::MAX)
        .jitter(Jitter::Decorrelated)
        .build()
        .unwrap();
    assert_eq!(p.base_delay(u32::MAX), MAX_DURATION);
    assert!(p.delay(u32::MAX) <= MAX_DURATION);
    assert!(RetryPolicy::try_from(RetryPolicy::builder().max_attempts(0)).is_err());
}

/// The serde form goes through the builder's checks.
#[cfg(feature = "serde")]
mod serde_form {
    use super::*;

    proptest! {
    /// Serde refuses exactly what the builder refuses.
    #[test]
    fn serde_agrees_with_the_builder(
        b in any_backoff(),
        max_delay in any_duration(),
        attempts in prop_oneof![Just(0u32), 1u32..50],
    ) {
        let built = RetryPolicy::builder()
            .backoff(b)
            .max_delay(max_delay)
            .max_attempts(attempts)
            .build();
        let json = policy_json(&b, max_delay, attempts);
        let parsed = serde_json::from_value::<RetryPolicy>(json);
        prop_assert_eq!(built.is_ok(), parsed.is_ok(), "{:?}", parsed);
        if let (Ok(a), Ok(b)) = (built, parsed) {
            prop_assert_eq!(a, b);
        }
    }
    }

    /// A policy's serde form, written by hand so that invalid values can be expressed.
    fn policy_json(b: &Backoff, max_delay: Duration, attempts: u32) -> serde_json::Value {
        let d = |d: Duration| serde_json::json!({ "secs": d.as_secs(), "nanos": d.subsec_nanos() });
        let backoff = match *b {
            Backoff::Constant { delay } => serde_json::json!({ "constant": { "delay": d(delay) } }),
            Backoff::Linear { initial, step } => {
                serde_json::json!({ "linear": { "initial": d(initial), "step": d(step) } })
            }
            Backoff::Exponential {
                initial,
                multiplier,
            } => serde_json::json!({
                "exponential": { "initial": d(initial), "multiplier": multiplier }
            }),
            _ => unreachable!("all backoffs covered"),
        };
        serde_json::json!({
            "backoff": backoff,
            "jitter": "none",
            "max_delay": d(max_delay),
            "max_attempts": attempts,
            "max_elapsed": null,
        })
    }

    #[test]
    fn serde_refuses_what_the_builder_refuses() {
        let zero_attempts = policy_json(
            &Backoff::constant(Duration::from_secs(1)),
            Duration::from_secs(5),
            0,
        );
        let err = serde_json::from_value::<RetryPolicy>(zero_attempts).unwrap_err();
        assert!(
            err.to_string().contains("max_attempts must be at least 1"),
            "{err}"
        );

        let negative = policy_json(
            &Backoff::exponential(Duration::from_secs(1), -2.0),
            Duration::from_secs(5),
            3,
        );
        let err = serde_json::from_value::<RetryPolicy>(negative).unwrap_err();
        assert!(err.to_string().contains("multiplier"), "{err}");

        // A backoff on its own (e.g. the breaker's open backoff in a config file) validates too.
        let err = serde_json::from_str::<Backoff>(
            r#"{"exponential":{"initial":{"secs":1,"nanos":0},"multiplier":0.5}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("multiplier"), "{err}");

        let p = RetryPolicy::builder()
            .max_elapsed(Duration::from_secs(90))
            .build()
            .unwrap();
        let back: RetryPolicy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
