//! The store conformance suites on every adapter, run through their export
//! (`steadfast_idempotency::testing`) as a third party's store would run them: memory here,
//! Redis and Postgres on the real servers (through steadfast-testkit).

use std::sync::Arc;
use std::time::Duration;

use steadfast_idempotency::testing::{DedupWindow, dedup_store, idempotency_store};
use steadfast_idempotency::{MemoryStore, Timestamp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    idempotency_store(Arc::new(MemoryStore::new())).await;
    dedup_store(Arc::new(MemoryStore::new()), DedupWindow::CallerClock).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    use steadfast_idempotency::RedisStore;
    let Some(r) = steadfast_testkit::redis().await else {
        return;
    };
    let store = RedisStore::new(r.conn(), r.prefix());
    idempotency_store(Arc::new(store.clone())).await;
    dedup_store(Arc::new(store), DedupWindow::ServerTtl).await;

    // The window is a Redis TTL: check it was set, and bounded by the window.
    let mut conn = r.conn();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}:d:wamid.A", r.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 0 && pttl <= 300_000, "pttl {pttl}");
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    use steadfast_idempotency::PostgresStore;
    let Some(pg) = steadfast_testkit::postgres().await else {
        return;
    };
    let store = PostgresStore::new(pg.pool().clone());
    store.migrate().await.unwrap();
    // Migrating twice is a no-op.
    store.migrate().await.unwrap();
    idempotency_store(Arc::new(store.clone())).await;
    dedup_store(Arc::new(store.clone()), DedupWindow::CallerClock).await;

    // The reaper removes what expired, and only that.
    let far = Timestamp::now().plus(Duration::from_secs(10 * 24 * 3600));
    let removed = store.reap(far).await.unwrap();
    assert!(removed > 0);
    assert_eq!(store.reap(far).await.unwrap(), 0);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    use sqlx::sqlite::SqlitePoolOptions;
    use steadfast_idempotency::SqliteStore;
    // A file, not `:memory:`: several connections, real locking.
    let file = steadfast_testkit::SqliteFile::new();
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(SqliteStore::connect_options(file.path()))
        .await
        .unwrap();
    let store = SqliteStore::new(pool);
    store.migrate().await.unwrap();
    // Migrating twice is a no-op.
    store.migrate().await.unwrap();
    idempotency_store(Arc::new(store.clone())).await;
    dedup_store(Arc::new(store.clone()), DedupWindow::CallerClock).await;

    // The reaper removes what expired, and only that.
    let far = Timestamp::now().plus(Duration::from_secs(10 * 24 * 3600));
    let removed = store.reap(far).await.unwrap();
    assert!(removed > 0);
    assert_eq!(store.reap(far).await.unwrap(), 0);
}
