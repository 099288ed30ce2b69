//! Cost of computing a delay and of the retry budget's hot path.
// criterion_group! generates undocumented public items.
#![allow(missing_docs)]
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use steadfast_retry::{Jitter, RetryBudget, RetryPolicy};

fn retry(c: &mut Criterion) {
    let mut group = c.benchmark_group("retry");
    let plain = RetryPolicy::default();
    let jittered = RetryPolicy::builder()
        .jitter(Jitter::Full)
        .max_attempts(10)
        .build()
        .expect("valid policy");
    group.bench_function("delay_exponential", |b| {
        b.iter(|| plain.delay(black_box(3)))
    });
    group.bench_function("delay_full_jitter", |b| {
        b.iter(|| jittered.delay(black_box(3)))
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let budget = RetryBudget::builder()
        .window(Duration::from_secs(10))
        .build()
        .expect("valid budget");
    group.bench_function("budget_deposit_withdraw", |b| {
        b.iter(|| {
            budget.deposit();
            black_box(budget.withdraw())
        })
    });
    group.finish();
}

criterion_group!(benches, retry);
criterion_main!(benches);
