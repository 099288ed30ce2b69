//! Concurrency: HalfOpen never hands out more than its probes, cancellation loses no permit,
//! and concurrent outcomes are all counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use steadfast_circuit_breaker::{CircuitBreaker, Config, Event, ManualMonotonicClock, State};

const PERMITS: u32 = 3;

fn half_open_breaker() -> CircuitBreaker {
    let config = Config::builder()
        .count_window(10)
        .half_open_permits(PERMITS)
        .max_wait_in_half_open(None)
        .call_timeout(None)
        .build()
        .unwrap();
    let b = CircuitBreaker::with_clock(config, ManualMonotonicClock::new());
    b.transition_to_half_open();
    b
}

/// Takes every probe that is available, returns how many, and gives them back.
fn available_probes(b: &CircuitBreaker) -> usize {
    let permits: Vec<_> = std::iter::from_fn(|| b.try_acquire().ok())
        .take(1000)
        .collect();
    permits.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_never_hands_out_more_than_n() {
    let b = half_open_breaker();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let granted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..32 {
        let (b, in_flight, max_seen, granted) = (
            b.clone(),
            in_flight.clone(),
            max_seen.clone(),
            granted.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..500 {
                if let Ok(permit) = b.try_acquire() {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max_seen.fetch_max(now, Ordering::SeqCst);
                    granted.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    // Give the slot back either way, so the episode never completes.
                    if (task + i) % 2 == 0 {
                        permit.ignore();
                    } else {
                        drop(permit);
                    }
                } else {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(max_seen.load(Ordering::SeqCst) <= PERMITS as usize);
    assert!(granted.load(Ordering::Relaxed) >= PERMITS as usize);
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(available_probes(&b), PERMITS as usize, "no slot lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_calls_lose_no_permit() {
    let b = half_open_breaker();
    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (b, started) = (b.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            let _ = b
                .call(|| async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<Result<(), ()>>().await
                })
                .await;
        }));
    }
    // Wait until the probes are taken (the others were rejected and finished).
    while started.load(Ordering::SeqCst) < PERMITS as usize {
        tokio::task::yield_now().await;
    }
    assert_eq!(started.load(Ordering::SeqCst), PERMITS as usize);
    assert_eq!(available_probes(&b), 0);
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(available_probes(&b), PERMITS as usize);
}

#[test]
fn open_to_half_open_race_makes_one_transition_and_n_probes() {
    let clock = ManualMonotonicClock::new();
    let config = Config::builder()
        .count_window(10)
        .half_open_permits(2)
        .open_duration(Duration::from_secs(5))
        // Room for every rejection event, so the transition is not lagged out.
        .event_capacity(4096)
        .build()
        .unwrap();
    let b = CircuitBreaker::with_clock(config, clock.clone());
    b.transition_to_open();
    let mut events = b.subscribe();
    clock.advance(Duration::from_secs(5));
    let granted = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let mut held = Vec::new();
                for _ in 0..100 {
                    if let Ok(p) = b.try_acquire() {
                        granted.fetch_add(1, Ordering::SeqCst);
                        held.push(p);
                    }
                }
                // Held until the end of the thread: probes stay out.
                std::thread::yield_now();
                drop(held);
            });
        }
    });
    assert!(granted.load(Ordering::SeqCst) >= 2);
    let to_half_open = events
        .drain()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Event::Transition {
                    to: State::HalfOpen,
                    ..
                }
            )
        })
        .count();
    assert_eq!(to_half_open, 1);
}

#[test]
fn concurrent_outcomes_are_all_counted() {
    for config in [
        Config::builder().count_window(1_000_000),
        Config::builder().time_window(Duration::from_secs(60)),
    ] {
        let config = config
            .minimum_calls(1_000_000)
            .failure_rate_threshold(100.0)
            .build()
            .unwrap();
        let b = CircuitBreaker::with_clock(config, ManualMonotonicClock::new());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..11_000 {
                        let p = b.try_acquire().unwrap();
                        if i % 11 == 0 {
                            p.failure()
                        } else {
                            p.success()
                        }
                    }
                });
            }
        });
        let m = b.metrics();
        assert_eq!((m.calls, m.failures), (44_000, 4_000));
    }
}
