//! steadfast-saga overhead per step: sagas of no-op steps run to completion (and a 3-step saga
//! whose third step fails, so two compensations run) on the memory store and on the real
//! Postgres. Each step costs two durable records (start, completion with output); the saga
//! adds its creation and its final record. The figure to read is time per step (criterion's
//! throughput is in steps).
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sqlx::postgres::PgPoolOptions;
use steadfast_saga::{
    MemorySagaStore, PostgresSagaStore, RunOutcome, RunnerConfig, Saga, SagaId, SagaRunner,
    SagaStore, State, Step, StepContext, StepError,
};

fn noop_saga(steps: usize, fail_last: bool) -> Saga<u64> {
    let mut b = Saga::builder(format!("bench{steps}{}", if fail_last { "f" } else { "" }));
    for i in 0..steps {
        let fail = fail_last && i + 1 == steps;
        b = b.step(
            Step::new(format!("s{i}"), move |ctx: StepContext<u64>| async move {
                if fail {
                    return Err(StepError::permanent("declined"));
                }
                Ok(*ctx.input())
            })
            .compensate(|_ctx, _out: u64| async { Ok(()) }),
        );
    }
    b.build().expect("saga")
}

fn group(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: Arc<dyn SagaStore>,
    seq: &AtomicU64,
) {
    let mut g = c.benchmark_group(format!("saga/{name}"));
    for steps in [1usize, 5] {
        let runner = SagaRunner::new(
            noop_saga(steps, false),
            store.clone(),
            RunnerConfig::default(),
        );
        g.throughput(Throughput::Elements(steps as u64));
        g.bench_with_input(BenchmarkId::new("complete_steps", steps), &steps, |b, _| {
            b.to_async(rt).iter(|| async {
                let i = seq.fetch_add(1, Ordering::Relaxed);
                let id = SagaId::new(format!("b-{i}")).expect("id");
                let out = runner.run(id, i).await.expect("run");
                assert_eq!(out, RunOutcome::Finished(State::Completed));
            });
        });
    }
    // 3 executes + 2 compensations.
    let runner = SagaRunner::new(noop_saga(3, true), store.clone(), RunnerConfig::default());
    g.throughput(Throughput::Elements(5));
    g.bench_function("third_fails_two_compensations", |b| {
        b.to_async(rt).iter(|| async {
            let i = seq.fetch_add(1, Ordering::Relaxed);
            let id = SagaId::new(format!("f-{i}")).expect("id");
            let out = runner.run(id, i).await.expect("run");
            assert_eq!(out, RunOutcome::Finished(State::Compensated));
        });
    });
    g.finish();
}

fn saga(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let seq = AtomicU64::new(0);
    group(c, &rt, "memory", Arc::new(MemorySagaStore::new()), &seq);

    let pg = rt.block_on(async {
        let schema = steadfast_testkit::postgres().await?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(schema.connect_options())
            .await
            .ok()?;
        PostgresSagaStore::migrate(&pool).await.ok()?;
        Some((schema, pool))
    });
    let Some((_schema, pool)) = pg else {
        eprintln!("saga Postgres benches skipped: Postgres unreachable");
        return;
    };
    group(
        c,
        &rt,
        "postgres",
        Arc::new(PostgresSagaStore::new(pool)),
        &seq,
    );
}

criterion_group!(benches, saga);
criterion_main!(benches);
