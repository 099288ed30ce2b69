//! Property test: for any sequence of outcomes and clock steps, the breaker agrees with a
//! direct, slow reference model of the resilience4j state machine.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use steadfast_circuit_breaker::{CircuitBreaker, Config, ManualMonotonicClock, State};

const OPEN_SECS: u64 = 10;
const SLOW_SECS: u64 = 2;
const NANOS: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
enum Op {
    Success,
    Failure,
    SlowSuccess,
    SlowFailure,
    Ignore,
    Drop,
    AdvanceMs(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Success),
        3 => Just(Op::Failure),
        1 => Just(Op::SlowSuccess),
        1 => Just(Op::SlowFailure),
        1 => Just(Op::Ignore),
        1 => Just(Op::Drop),
        2 => (1u64..15_000).prop_map(Op::AdvanceMs),
    ]
}

#[derive(Debug, Clone, Copy)]
enum WindowKind {
    Count(u32),
    Time(u64),
}

#[derive(Debug, Clone)]
struct Params {
    window: WindowKind,
    minimum: u32,
    threshold: f64,
    slow_threshold: f64,
    permits: u32,
}

fn params() -> impl Strategy<Value = Params> {
    (
        prop_oneof![
            (1u32..8).prop_map(WindowKind::Count),
            (1u64..6).prop_map(WindowKind::Time)
        ],
        1u32..7,
        prop_oneof![Just(20.0), Just(50.0), Just(70.0), Just(100.0)],
        prop_oneof![Just(50.0), Just(100.0)],
        1u32..4,
    )
        .prop_map(
            |(window, minimum, threshold, slow_threshold, permits)| Params {
                window,
                minimum,
                threshold,
                slow_threshold,
                permits,
            },
        )
}

/// One recorded call: (second, failure, slow).
type Call = (u64, bool, bool);

#[derive(Debug)]
enum MState {
    Closed,
    Open { until: u64 },
    HalfOpen { failures: u32, slow: u32, done: u32 },
}

struct Model {
    p: Params,
    state: MState,
    window: VecDeque<Call>,
}

impl Model {
    fn in_window(&self, now: u64) -> Vec<Call> {
        match self.p.window {
            WindowKind::Count(n) => self.window.iter().rev().take(n as usize).copied().collect(),
            WindowKind::Time(secs) => self
                .window
                .iter()
                .filter(|(at, _, _)| at + secs > now / NANOS)
                .copied()
                .collect(),
        }
    }

    fn over(&self, calls: u64, failures: u64, slow: u64) -> bool {
        let c = calls as f64;
        failures as f64 * 100.0 >= self.p.threshold * c
            || slow as f64 * 100.0 >= self.p.slow_threshold * c
    }

    fn min_calls(&self) -> u64 {
        match self.p.window {
            WindowKind::Count(n) => u64::from(self.p.minimum.min(n)),
            WindowKind::Time(_) => u64::from(self.p.minimum),
        }
    }

    /// Returns whether the call is permitted.
    fn acquire(&mut self, now: u64) -> bool {
        if let MState::Open { until } = self.state {
            if now < until {
                return false;
            }
            self.state = MState::HalfOpen {
                failures: 0,
                slow: 0,
                done: 0,
            };
        }
        true
    }

    fn record(&mut self, now: u64, failure: bool, slow: bool) {
        match &mut self.state {
            MState::Closed => {
                self.window.push_back((now / NANOS, failure, slow));
                let calls = self.in_window(now);
                let n = calls.len() as u64;
                let f = calls.iter().filter(|c| c.1).count() as u64;
                let s = calls.iter().filter(|c| c.2).count() as u64;
                if n >= self.min_calls() && self.over(n, f, s) {
                    self.state = MState::Open {
                        until: now + OPEN_SECS * NANOS,
                    };
                }
            }
            MState::HalfOpen {
                failures,
                slow: slow_count,
                done,
            } => {
                *done += 1;
                *failures += u32::from(failure);
                *slow_count += u32::from(slow);
                if *done == self.p.permits {
                    let (f, s) = (u64::from(*failures), u64::from(*slow_count));
                    if self.over(u64::from(self.p.permits), f, s) {
                        self.state = MState::Open {
                            until: now + OPEN_SECS * NANOS,
                        };
                    } else {
                        self.state = MState::Closed;
                        self.window.clear();
                    }
                }
            }
            MState::Open { .. } => unreachable!("no permit in Open"),
        }
    }

    fn state(&self) -> State {
        match self.state {
            MState::Closed => State::Closed,
            MState::Open { .. } => State::Open,
            MState::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

fn build(p: &Params, clock: &ManualMonotonicClock) -> CircuitBreaker {
    let mut b = Config::builder()
        .minimum_calls(p.minimum)
        .failure_rate_threshold(p.threshold)
        .slow_call_rate_threshold(p.slow_threshold)
        .slow_call_duration(Duration::from_secs(SLOW_SECS))
        .half_open_permits(p.permits)
        .open_duration(Duration::from_secs(OPEN_SECS));
    b = match p.window {
        WindowKind::Count(n) => b.count_window(n),
        WindowKind::Time(s) => b.time_window(Duration::from_secs(s)),
    };
    CircuitBreaker::with_clock(b.build().unwrap(), clock.clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn breaker_agrees_with_the_reference_model(p in params(), ops in prop::collection::vec(op(), 1..120)) {
        let clock = ManualMonotonicClock::new();
        let breaker = build(&p, &clock);
        let mut model = Model { p: p.clone(), state: MState::Closed, window: VecDeque::new() };

        for op in ops {
            let now = clock.now_nanos_for_test();
            match op {
                Op::AdvanceMs(ms) => clock.advance(Duration::from_millis(ms)),
                Op::Drop => {
                    let permitted = model.acquire(now);
                    prop_assert_eq!(breaker.try_acquire().is_ok(), permitted);
                }
                Op::Ignore => {
                    let permitted = model.acquire(now);
                    let got = breaker.try_acquire();
                    prop_assert_eq!(got.is_ok(), permitted);
                    if let Ok(permit) = got { permit.ignore(); }
                }
                Op::Success | Op::Failure | Op::SlowSuccess | Op::SlowFailure => {
                    let failure = matches!(op, Op::Failure | Op::SlowFailure);
                    let slow = matches!(op, Op::SlowSuccess | Op::SlowFailure);
                    let permitted = model.acquire(now);
                    let got = breaker.try_acquire();
                    prop_assert_eq!(got.is_ok(), permitted, "permit at {:?}", op);
                    if let Ok(permit) = got {
                        if slow { clock.advance(Duration::from_millis(SLOW_SECS * 1000 + 1)); }
                        let end = clock.now_nanos_for_test();
                        if failure { permit.failure() } else { permit.success() }
                        model.record(end, failure, slow);
                    }
                }
            }
            prop_assert_eq!(breaker.state(), model.state(), "after {:?}", op);
            if model.state() == State::Closed {
                let now = clock.now_nanos_for_test();
                let calls = model.in_window(now);
                let m = breaker.metrics();
                prop_assert_eq!(m.calls, calls.len() as u64);
                prop_assert_eq!(m.failures, calls.iter().filter(|c| c.1).count() as u64);
                prop_assert_eq!(m.slow_calls, calls.iter().filter(|c| c.2).count() as u64);
            }
        }
    }
}

trait NowForTest {
    fn now_nanos_for_test(&self) -> u64;
}

impl NowForTest for ManualMonotonicClock {
    fn now_nanos_for_test(&self) -> u64 {
        use steadfast_circuit_breaker::MonotonicClock;
        self.now_nanos()
    }
}
