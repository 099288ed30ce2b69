//! Idempotency claims and message de-duplication on each store. For Redis, the raw
//! `SET NX PX` round trip on the same connection is the floor: `first_seen` should be within
//! 1.1x of it, claim + complete (two round trips) within 2.2x. The Redis three are measured
//! interleaved (see below) so that their ratios hold on a noisy machine. SQLite runs on a
//! temporary file (`idempotency/sqlite/...`).
// criterion_group! generates undocumented public items.
#![allow(missing_docs)]
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use steadfast_idempotency::{
    Claim, Config, DedupStore, Deduplicator, Fingerprint, Idempotency, IdempotencyKey,
    IdempotencyStore, ManualClock, MemoryStore, PostgresStore, RedisStore, SqliteStore,
    StoredResponse, Timestamp,
};

const WINDOW: Duration = Duration::from_secs(300);

fn response() -> StoredResponse {
    StoredResponse::new(
        201,
        [("content-type", Bytes::from_static(b"application/json"))],
        Bytes::from_static(br#"{"id":"tr_123","status":"accepted"}"#),
    )
}

fn key(i: u64) -> IdempotencyKey {
    IdempotencyKey::parse(&format!("bench-key-{i:016}")).expect("valid key")
}

async fn claim_complete(idem: &Idempotency, i: u64, response: &StoredResponse) {
    let fp = Fingerprint::of_request("POST", "/transfers", None, b"{\"amount\":100}");
    match idem.claim("bench", &key(i), fp).await.expect("claim") {
        Claim::Execute(lease) => lease.complete(response).await.expect("complete"),
        other => panic!("fresh key must execute, got {other:?}"),
    }
}

fn bench_store(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    claims: Arc<dyn IdempotencyStore>,
    dedup: Arc<dyn DedupStore>,
    clock: Option<ManualClock>,
) {
    let mut group = c.benchmark_group("idempotency");
    let mut idem = Idempotency::new(claims, Config::default());
    let mut dedup = Deduplicator::new(dedup, WINDOW);
    if let Some(clock) = &clock {
        idem = idem.with_clock(Arc::new(clock.clone()));
        dedup = dedup.with_clock(Arc::new(clock.clone()));
    }
    let response = response();
    // The memory store reuses a bounded key space: when the index wraps, the clock jumps past
    // every TTL so the old records count as expired and are replaced in place.
    const WRAP: u64 = 50_000;
    let next = AtomicU64::new(0);
    let fresh = || {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if let Some(clock) = &clock {
            if i.is_multiple_of(WRAP) {
                clock.advance(Duration::from_secs(2 * 24 * 3600));
            }
            i % WRAP
        } else {
            i
        }
    };
    group.bench_function(format!("{name}/claim_complete"), |b| {
        b.to_async(rt)
            .iter(|| async { claim_complete(&idem, fresh(), &response).await })
    });
    group.bench_function(format!("{name}/first_seen"), |b| {
        b.to_async(rt).iter(|| async {
            let id = format!("wamid.bench{:016}", fresh());
            assert!(dedup.first_seen(&id, WINDOW).await.expect("first_seen"));
        })
    });
    group.finish();
}

fn idempotency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let clock = ManualClock::new(Timestamp::now());
    let memory = Arc::new(MemoryStore::new());
    bench_store(c, &rt, "memory", memory.clone(), memory, Some(clock));

    if let Some(redis) = rt.block_on(steadfast_testkit::redis()) {
        let store = RedisStore::new(redis.conn(), redis.prefix());
        rt.block_on(store.load_scripts()).expect("load scripts");
        let idem = Idempotency::new(Arc::new(store.clone()), Config::default());
        let dedup = Deduplicator::new(Arc::new(store), WINDOW);
        let conn = redis.conn();
        let response = response();
        let next = AtomicU64::new(0);
        // On a shared, noisy machine the three are measured interleaved: every iteration
        // runs all three operations on the same connection (in rotating order) and times
        // only the benchmark's own, so the ratios compare like with like.
        let trio = |measured: usize| {
            let (idem, dedup, conn, response, next, redis) =
                (&idem, &dedup, &conn, &response, &next, &redis);
            move |iters: u64| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    // Rotate the order so that no operation always runs first or last.
                    for step in 0..3 {
                        let op = (i as usize + step) % 3;
                        let start = Instant::now();
                        match op {
                            // The floor: one raw SET NX PX round trip.
                            0 => {
                                let set: Option<String> = redis::cmd("SET")
                                    .arg(redis.key(&format!("raw:{i}")))
                                    .arg(1)
                                    .arg("NX")
                                    .arg("PX")
                                    .arg(300_000)
                                    .query_async(&mut conn.clone())
                                    .await
                                    .expect("SET");
                                assert!(set.is_some());
                            }
                            1 => {
                                let id = format!("wamid.bench{i:016}");
                                assert!(dedup.first_seen(&id, WINDOW).await.expect("first_seen"));
                            }
                            _ => claim_complete(idem, i, response).await,
                        }
                        if op == measured {
                            total += start.elapsed();
                        }
                    }
                }
                total
            }
        };
        let mut group = c.benchmark_group("idempotency");
        for (name, measured) in [
            ("redis/set_nx_px_raw", 0),
            ("redis/first_seen", 1),
            ("redis/claim_complete", 2),
        ] {
            group.bench_function(name, |b| b.to_async(&rt).iter_custom(trio(measured)));
        }
        group.finish();
        rt.block_on(async move { drop(redis) });
    }

    // SQLite on a temporary file, with the store's default connect options (WAL,
    // synchronous = FULL: every commit is flushed to disk).
    let file = steadfast_testkit::SqliteFile::new();
    let store = rt.block_on(async {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(SqliteStore::connect_options(file.path()))
            .await
            .expect("open the SQLite file");
        let store = SqliteStore::new(pool);
        store.migrate().await.expect("migrate");
        Arc::new(store)
    });
    bench_store(c, &rt, "sqlite", store.clone(), store, None);

    if let Some(pg) = rt.block_on(steadfast_testkit::postgres()) {
        let store = PostgresStore::new(pg.pool().clone());
        rt.block_on(store.migrate()).expect("migrate");
        let store = Arc::new(store);
        bench_store(c, &rt, "postgres", store.clone(), store, None);
        rt.block_on(async move { drop(pg) });
    }
}

criterion_group!(benches, idempotency);
criterion_main!(benches);
