//! Behaviour held against resilience4j's documented behaviour (issue 14), on a manual clock.

use std::time::Duration;

use steadfast_circuit_breaker::{CircuitBreaker, Config, ConfigBuilder, ManualClock, State};

fn breaker(config: ConfigBuilder) -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let b = CircuitBreaker::with_clock(config.build().unwrap(), clock.clone());
    (b, clock)
}

fn count_config(window: u32, minimum: u32) -> ConfigBuilder {
    Config::builder()
        .count_window(window)
        .minimum_calls(minimum)
        .failure_rate_threshold(50.0)
        .open_duration(Duration::from_secs(10))
}

#[test]
fn a_call_lasting_exactly_the_slow_threshold_is_not_slow() {
    let (b, clock) = breaker(
        count_config(2, 2)
            .slow_call_duration(Duration::from_secs(2))
            .slow_call_rate_threshold(50.0),
    );
    for _ in 0..2 {
        let p = b.try_acquire().unwrap();
        clock.advance(Duration::from_secs(2));
        p.success();
    }
    assert_eq!(b.metrics().slow_calls, 0);
    assert_eq!(b.state(), State::Closed);
    // One millisecond more is slow (the coarse clock's resolution).
    let p = b.try_acquire().unwrap();
    clock.advance(Duration::from_millis(2001));
    p.success();
    assert_eq!(b.metrics().slow_calls, 1);
    assert_eq!(b.state(), State::Open, "1 slow of 2 = 50 %");
}
