//! SQLite-only behaviour: several pools (as several workers would) on one database file, the
//! write lock's busy timeout, the single-instance lock. (The shared semantics are in the
//! conformance suite.)
#![cfg(feature = "sqlite")]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection};
use steadfast_dlq::{
    Error, MessageId, NewMessage, Outcome, QueueAdmin, QueueConfig, QueueStore, SqliteInstanceLock,
    SqliteQueue, State, Worker,
};
use steadfast_testkit::SqliteFile;

async fn pool(file: &SqliteFile) -> SqlitePool {
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(SqliteQueue::connect_options(file.path()))
        .await
        .unwrap();
    SqliteQueue::migrate(&pool).await.unwrap();
    pool
}

async fn wait_done(store: &SqliteQueue, n: u64) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let stats = store.stats().await.unwrap();
            if stats.first().is_some_and(|s| s.count(State::Done) >= n) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "workers did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_on_separate_pools_never_share_a_message() {
    let file = SqliteFile::new();
    let producer = SqliteQueue::new(pool(&file).await);
    const N: usize = 200;
    producer
        .enqueue_batch(
            (0..N)
                .map(|i| NewMessage::new("q", json!({ "i": i })))
                .collect(),
        )
        .await
        .unwrap();
    let mut claimers = Vec::new();
    for _ in 0..4 {
        let store = SqliteQueue::new(pool(&file).await);
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store.claim("q", 7, Duration::from_secs(60)).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| c.message.id));
            }
        }));
    }
    let mut seen: HashSet<MessageId> = HashSet::new();
    for c in claimers {
        for id in c.await.unwrap() {
            assert!(seen.insert(id), "message {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_workers_ack_each_message_exactly_once() {
    let file = SqliteFile::new();
    let producer = SqliteQueue::new(pool(&file).await);
    const N: u32 = 300;
    let ids: Vec<MessageId> = producer
        .enqueue_batch(
            (0..N)
                .map(|i| NewMessage::new("q", json!({ "i": i })).dedup_key(format!("wamid.{i}")))
                .collect(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id())
        .collect();
    let acked: Arc<Mutex<HashMap<MessageId, u32>>> = Arc::default();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut workers = Vec::new();
    for _ in 0..3 {
        let store = Arc::new(SqliteQueue::new(pool(&file).await));
        let worker = Worker::builder(store, "q")
            .concurrency(4)
            .poll_interval(Duration::from_millis(50))
            .build()
            .unwrap();
        let acked = acked.clone();
        let mut stop = stop_tx.subscribe();
        workers.push(tokio::spawn(async move {
            worker
                .run(
                    move |m| {
                        let acked = acked.clone();
                        async move {
                            let i = m.payload["i"].as_u64().unwrap();
                            if i % 5 == 0 && m.attempts == 1 {
                                return Outcome::retry_after("flaky", "first try", Duration::ZERO);
                            }
                            *acked.lock().entry(m.id).or_default() += 1;
                            Outcome::Ack
                        }
                    },
                    async move {
                        let _ = stop.recv().await;
                    },
                )
                .await
        }));
    }
    wait_done(&producer, u64::from(N)).await;
    let _ = stop_tx.send(());
    let mut lease_lost = 0;
    for w in workers {
        lease_lost += w.await.unwrap().lease_lost;
    }
    assert_eq!(lease_lost, 0);
    let acked = acked.lock();
    assert_eq!(acked.len(), N as usize, "none lost");
    assert!(
        ids.iter().all(|id| acked.get(id) == Some(&1)),
        "each acked exactly once"
    );
}

#[tokio::test]
async fn a_write_lock_held_past_the_busy_timeout_is_store_unavailable() {
    let file = SqliteFile::new();
    let _ = pool(&file).await;
    let impatient = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteQueue::connect_options(file.path()).busy_timeout(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    let store = SqliteQueue::with_config(impatient, QueueConfig::default());
    let mut holder = SqliteQueue::connect_options(file.path())
        .connect()
        .await
        .unwrap();
    let mut tx = holder.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("SELECT count(*) FROM dlq_messages")
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = store
        .enqueue(NewMessage::new("q", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StoreUnavailable(_)), "{err}");
    assert!(err.is_transient());
    tx.rollback().await.unwrap();
    // Nothing was written, and the store works once the lock is free.
    assert!(store.stats().await.unwrap().is_empty());
    store
        .enqueue(NewMessage::new("q", json!({})))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_second_instance_on_the_same_file_is_refused() {
    let file = SqliteFile::new();
    let first = SqliteInstanceLock::acquire(file.path()).await.unwrap();
    let err = SqliteInstanceLock::acquire(file.path()).await.unwrap_err();
    assert!(matches!(err, Error::StoreUnavailable(_)), "{err}");
    assert!(
        err.to_string().contains("in use by another instance"),
        "{err}"
    );
    let lock_file = first.lock_file().to_owned();
    drop(first);
    // Released with its holder (and by the OS when a process dies).
    let again = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(lock) = SqliteInstanceLock::acquire(file.path()).await {
                return lock;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the lock is released when its holder drops");
    drop(again);
    let _ = std::fs::remove_file(lock_file);
}

#[tokio::test]
async fn migrations_are_idempotent_and_versions_are_the_crates_own() {
    let file = SqliteFile::new();
    let pool = pool(&file).await;
    SqliteQueue::migrate(&pool).await.unwrap();
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(!versions.is_empty());
    assert!(
        versions
            .iter()
            .all(|v| (20261127020000..20261127030000).contains(v))
    );
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}
