//! The breaker's hot path against the physical floor and against peer crates (failsafe 1.x,
//! recloser 1.x), in one run so that the ratios hold on a noisy machine.
//!
//! - `breaker_overhead`: one thread, a permitted call doing nothing, recorded as a success.
//! - `breaker_contended`: the same with 2 threads hammering ONE shared breaker; the time
//!   reported is the wall time per call as seen by one thread (each thread makes `iters` calls).
//! - `breaker_rejected`: a call rejected while Open.
// criterion_group! generates undocumented public items.
#![allow(missing_docs)]
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use crossbeam_utils::CachePadded;
use failsafe::CircuitBreaker as _;
use steadfast_circuit_breaker::{CircuitBreaker, Config};

/// The physical floor: what any breaker must at least do (read its state, bump a counter).
struct Floor {
    state: CachePadded<AtomicU8>,
    counter: CachePadded<AtomicU64>,
}

impl Floor {
    fn new() -> Self {
        Floor {
            state: CachePadded::new(AtomicU8::new(0)),
            counter: CachePadded::new(AtomicU64::new(0)),
        }
    }

    #[inline]
    fn call(&self) {
        if self.state.load(Ordering::Acquire) == 0 {
            self.counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn steadfast_count() -> CircuitBreaker {
    CircuitBreaker::new(
        Config::builder()
            .count_window(100)
            .call_timeout(None)
            .build()
            .expect("valid config"),
    )
}

fn steadfast_time() -> CircuitBreaker {
    CircuitBreaker::new(
        Config::builder()
            .time_window(Duration::from_secs(30))
            .call_timeout(None)
            .build()
            .expect("valid config"),
    )
}

#[inline]
fn acquire_success(b: &CircuitBreaker) {
    b.try_acquire().expect("closed").success();
}

/// The async `call` with a ready future, polled once with a no-op waker (no executor cost).
#[inline]
fn call_async(b: &CircuitBreaker) {
    let fut = pin!(b.call(|| async { Ok::<u32, ()>(black_box(1)) }));
    let mut cx = Context::from_waker(Waker::noop());
    match fut.poll(&mut cx) {
        Poll::Ready(r) => {
            black_box(r.expect("permitted"));
        }
        Poll::Pending => unreachable!("the operation is ready"),
    }
}

fn failsafe_breaker() -> impl failsafe::CircuitBreaker + Sync {
    failsafe::Config::new().build()
}

fn recloser_breaker() -> recloser::Recloser {
    recloser::Recloser::default()
}

fn overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker_overhead");
    let floor = Floor::new();
    group.bench_function("floor", |b| b.iter(|| floor.call()));
    let count = steadfast_count();
    group.bench_function("steadfast_count", |b| b.iter(|| acquire_success(&count)));
    let time = steadfast_time();
    group.bench_function("steadfast_time", |b| b.iter(|| acquire_success(&time)));
    let call = steadfast_count();
    group.bench_function("steadfast_call_async", |b| b.iter(|| call_async(&call)));
    let fs = failsafe_breaker();
    group.bench_function("failsafe", |b| {
        b.iter(|| black_box(fs.call(|| Ok::<u32, ()>(black_box(1)))))
    });
    let rc = recloser_breaker();
    group.bench_function("recloser", |b| {
        b.iter(|| black_box(rc.call(|| Ok::<u32, ()>(black_box(1)))))
    });
    group.finish();
}

/// Runs `op` `iters` times on each of 2 threads at once; returns the wall time of the slower
/// thread (so per-iteration time is the time per call seen by one thread).
fn two_threads<S: Sync>(shared: &S, iters: u64, op: impl Fn(&S) + Sync) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        op(shared);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker_contended");
    // The floor's counters are per thread (owned cache lines); the state is shared and read-only.
    let floor_state = CachePadded::new(AtomicU8::new(0));
    group.bench_function("floor", |b| {
        b.iter_custom(|iters| {
            two_threads(&floor_state, iters, |state| {
                thread_local! {
                    static OWN: CachePadded<AtomicU64> = const { CachePadded::new(AtomicU64::new(0)) };
                }
                if state.load(Ordering::Acquire) == 0 {
                    OWN.with(|c| c.fetch_add(1, Ordering::Relaxed));
                }
            })
        })
    });
    let count = steadfast_count();
    group.bench_function("steadfast_count", |b| {
        b.iter_custom(|iters| two_threads(&count, iters, acquire_success))
    });
    let time = steadfast_time();
    group.bench_function("steadfast_time", |b| {
        b.iter_custom(|iters| two_threads(&time, iters, acquire_success))
    });
    let call = steadfast_count();
    group.bench_function("steadfast_call_async", |b| {
        b.iter_custom(|iters| two_threads(&call, iters, call_async))
    });
    let fs = failsafe_breaker();
    group.bench_function("failsafe", |b| {
        b.iter_custom(|iters| {
            two_threads(&fs, iters, |fs| {
                let _ = black_box(fs.call(|| Ok::<u32, ()>(black_box(1))));
            })
        })
    });
    let rc = recloser_breaker();
    group.bench_function("recloser", |b| {
        b.iter_custom(|iters| {
            two_threads(&rc, iters, |rc| {
                let _ = black_box(rc.call(|| Ok::<u32, ()>(black_box(1))));
            })
        })
    });
    group.finish();
}

fn rejected(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker_rejected");
    let hour = Duration::from_secs(3600);

    let sf = CircuitBreaker::new(
        Config::builder()
            .count_window(10)
            .open_duration(hour)
            .call_timeout(None)
            .build()
            .expect("valid config"),
    );
    sf.transition_to_open();
    group.bench_function("steadfast", |b| {
        b.iter(|| black_box(sf.try_acquire().is_err()))
    });

    let fs = failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            1,
            failsafe::backoff::constant(hour),
        ))
        .build();
    let _ = fs.call(|| Err::<(), ()>(()));
    assert!(fs.call(|| Ok::<(), ()>(())).is_err(), "failsafe is open");
    group.bench_function("failsafe", |b| {
        b.iter(|| black_box(fs.call(|| Ok::<u32, ()>(black_box(1)))))
    });

    let rc = recloser::Recloser::custom()
        .closed_len(1)
        .error_rate(0.5)
        .open_wait(hour)
        .build();
    let _ = rc.call(|| Err::<(), ()>(()));
    let _ = rc.call(|| Err::<(), ()>(()));
    assert!(
        matches!(rc.call(|| Ok::<(), ()>(())), Err(recloser::Error::Rejected)),
        "recloser is open"
    );
    group.bench_function("recloser", |b| {
        b.iter(|| black_box(rc.call(|| Ok::<u32, ()>(black_box(1)))))
    });
    group.finish();
}

criterion_group!(benches, overhead, contended, rejected);
criterion_main!(benches);
