//! steadfast-dlq on the real Postgres: enqueue (single, batch of 100), claim + ack with 1, 4
//! and 16 concurrent workers (batch claims, one ack statement per batch), and the same with
//! 100k done rows in the table, then after pruning them. Enqueue and claim + ack also run on
//! SQLite (a temporary file, the store's default connect options: WAL, `synchronous = FULL`),
//! under the same group names with a `sqlite` parameter (`dlq/enqueue/single/sqlite`,
//! `dlq/claim_ack/workers/4/sqlite`).
//!
//! Compare the messages/second with `pgbench` single-INSERT TPS on the same machine (see
//! BENCHMARKS.md for the command).
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use steadfast_dlq::{
    NewMessage, PostgresQueue, Queue, QueueAdmin, QueueStore, Retention, SqliteQueue,
};

/// Messages per claim+ack measurement iteration.
const PER_ITER: u64 = 400;
/// Messages a worker claims at once (and acks in one statement).
const CLAIM_BATCH: usize = 25;

fn payload(i: u64) -> serde_json::Value {
    json!({ "from": "250788000000", "type": "text", "text": { "body": format!("message {i}") } })
}

struct Setup {
    _schema: steadfast_testkit::PgSchema,
    store: Arc<PostgresQueue>,
    seq: AtomicU64,
}

fn setup(rt: &tokio::runtime::Runtime) -> Option<Setup> {
    rt.block_on(async {
        let schema = steadfast_testkit::postgres().await?;
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .connect_with(schema.connect_options())
            .await
            .ok()?;
        PostgresQueue::migrate(&pool).await.ok()?;
        Some(Setup {
            _schema: schema,
            store: Arc::new(PostgresQueue::new(pool)),
            seq: AtomicU64::new(0),
        })
    })
}

/// Enqueues `n` messages on `queue` in batches of 100 (outside the timed section).
async fn fill(store: &dyn Queue, queue: &str, n: u64, seq: &AtomicU64) {
    let mut left = n;
    while left > 0 {
        let k = left.min(100);
        let batch = (0..k)
            .map(|_| {
                let i = seq.fetch_add(1, Ordering::Relaxed);
                NewMessage::new(queue, payload(i)).dedup_key(format!("wamid.{i}"))
            })
            .collect();
        store.enqueue_batch(batch).await.expect("enqueue");
        left -= k;
    }
}

/// `workers` tasks claim and ack until `total` messages of `queue` are done.
async fn drain(store: &Arc<dyn Queue>, queue: &str, workers: usize, total: u64) {
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let store = store.clone();
        let done = done.clone();
        let queue = queue.to_owned();
        tasks.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < total {
                let claimed = store
                    .claim(&queue, CLAIM_BATCH, Duration::from_secs(60))
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    // Others hold the rest; let them finish.
                    tokio::task::yield_now().await;
                    continue;
                }
                let leases: Vec<_> = claimed.into_iter().map(|c| c.lease).collect();
                let n = store.ack_batch(&leases).await.expect("ack");
                done.fetch_add(n, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
}

/// `suffix` tells the store apart in the benchmark id: empty for Postgres (the original
/// names), `/sqlite` for SQLite.
fn claim_ack_group(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn Queue>,
    seq: &AtomicU64,
    name: &str,
    suffix: &str,
) {
    let mut group = c.benchmark_group(format!("dlq/{name}"));
    group.throughput(Throughput::Elements(PER_ITER));
    group.sample_size(10);
    for workers in [1usize, 4, 16] {
        group.bench_with_input(
            BenchmarkId::new("workers", format!("{workers}{suffix}")),
            &workers,
            |b, &workers| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            fill(&**store, "bench", PER_ITER, seq).await;
                            let start = Instant::now();
                            drain(store, "bench", workers, PER_ITER).await;
                            total += start.elapsed();
                        }
                        total
                    })
                });
            },
        );
    }
    group.finish();
}

fn dlq(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    sqlite(c, &rt);
    let Some(s) = setup(&rt) else {
        eprintln!("dlq Postgres benches skipped: Postgres unreachable");
        return;
    };
    let store: Arc<dyn Queue> = s.store.clone();

    let mut group = c.benchmark_group("dlq/enqueue");
    group.throughput(Throughput::Elements(1));
    group.bench_function("single", |b| {
        b.to_async(&rt).iter(|| async {
            let i = s.seq.fetch_add(1, Ordering::Relaxed);
            s.store
                .enqueue(NewMessage::new("enqueue", payload(i)).dedup_key(format!("wamid.{i}")))
                .await
                .expect("enqueue")
        });
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("batch_100", |b| {
        b.to_async(&rt).iter(|| async {
            let batch = (0..100)
                .map(|_| {
                    let i = s.seq.fetch_add(1, Ordering::Relaxed);
                    NewMessage::new("enqueue", payload(i)).dedup_key(format!("wamid.{i}"))
                })
                .collect();
            s.store.enqueue_batch(batch).await.expect("enqueue")
        });
    });
    group.finish();
    // The enqueue benches leave pending rows on their own queue; clear them.
    rt.block_on(async {
        sqlx::query("DELETE FROM dlq_messages")
            .execute(s.store.pool())
            .await
            .expect("clear")
    });

    claim_ack_group(c, &rt, &store, &s.seq, "claim_ack", "");

    // 100k done rows, as accumulate in a week of traffic without pruning.
    rt.block_on(async {
        sqlx::query(
            "INSERT INTO dlq_messages (id, queue, dedup_key, payload, priority, state, attempts, \
                 max_attempts, run_at, errors, created_at, updated_at) \
             SELECT gen_random_uuid(), 'bench', 'old.' || g, $1, 0, 'done', 1, 3, \
                 now() - interval '8 days', '[]'::jsonb, now() - interval '8 days', \
                 now() - interval '8 days' \
             FROM generate_series(1, 100000) AS g",
        )
        .bind(payload(0))
        .execute(s.store.pool())
        .await
        .expect("insert done rows");
        sqlx::query("ANALYZE dlq_messages")
            .execute(s.store.pool())
            .await
            .expect("analyze");
    });
    claim_ack_group(c, &rt, &store, &s.seq, "claim_ack_with_100k_done", "");

    let pruned = rt.block_on(async {
        let pruned = s.store.prune(&Retention::default()).await.expect("prune");
        sqlx::query("VACUUM ANALYZE dlq_messages")
            .execute(s.store.pool())
            .await
            .expect("vacuum");
        pruned
    });
    eprintln!("pruned {} done rows older than 7 days", pruned.done);
    claim_ack_group(c, &rt, &store, &s.seq, "claim_ack_after_prune", "");
}

/// Enqueue and claim + ack on SQLite, under the Postgres benches' group names.
fn sqlite(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let file = steadfast_testkit::SqliteFile::new();
    let store: Arc<dyn Queue> = rt.block_on(async {
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(SqliteQueue::connect_options(file.path()))
            .await
            .expect("open the SQLite file");
        SqliteQueue::migrate(&pool).await.expect("migrate");
        Arc::new(SqliteQueue::new(pool))
    });
    let seq = AtomicU64::new(0);
    let mut group = c.benchmark_group("dlq/enqueue");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("single", "sqlite"), |b| {
        b.to_async(rt).iter(|| async {
            let i = seq.fetch_add(1, Ordering::Relaxed);
            store
                .enqueue(NewMessage::new("enqueue", payload(i)).dedup_key(format!("wamid.{i}")))
                .await
                .expect("enqueue")
        });
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function(BenchmarkId::new("batch_100", "sqlite"), |b| {
        b.to_async(rt).iter(|| async {
            let batch = (0..100)
                .map(|_| {
                    let i = seq.fetch_add(1, Ordering::Relaxed);
                    NewMessage::new("enqueue", payload(i)).dedup_key(format!("wamid.{i}"))
                })
                .collect();
            store.enqueue_batch(batch).await.expect("enqueue")
        });
    });
    group.finish();
    claim_ack_group(c, rt, &store, &seq, "claim_ack", "/sqlite");
    rt.block_on(async move { drop(store) });
}

criterion_group!(benches, dlq);
criterion_main!(benches);
