//! Postgres-only behaviour: several worker processes on one queue, and a worker killed
//! mid-handler. (The shared semantics are in the conformance suite.)
#![cfg(feature = "postgres")]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use steadfast_dlq::{
    LEASE_EXPIRED, ManualClock, MessageId, NewMessage, Outcome, PostgresQueue, Queue, QueueAdmin,
    QueueConfig, QueueStore, State, Worker,
};

/// (attempt, correlation id) as a handler saw them.
type Seen = (u32, Option<String>);

/// Another "instance": its own pool on the same schema.
async fn instance(pg: &steadfast_testkit::PgSchema, config: QueueConfig) -> Arc<PostgresQueue> {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(pg.connect_options())
        .await
        .unwrap();
    Arc::new(PostgresQueue::with_config(pool, config))
}

async fn wait_done(store: &dyn Queue, n: u64) {
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
async fn several_workers_ack_each_message_exactly_once() {
    let Some(pg) = steadfast_testkit::postgres().await else {
        return;
    };
    PostgresQueue::migrate(pg.pool()).await.unwrap();
    const N: u32 = 300;
    let producer = PostgresQueue::new(pg.pool().clone());
    let batch: Vec<_> = (0..N)
        .map(|i| NewMessage::new("q", json!({ "i": i })).dedup_key(format!("wamid.{i}")))
        .collect();
    let ids: Vec<MessageId> = producer
        .enqueue_batch(batch)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id())
        .collect();

    // Every handler call is recorded; every fifth message fails its first attempt.
    let acked: Arc<Mutex<HashMap<MessageId, u32>>> = Arc::default();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut workers = Vec::new();
    for _ in 0..3 {
        let store = instance(&pg, QueueConfig::default()).await;
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
    let mut total = steadfast_dlq::WorkerReport::default();
    for w in workers {
        let r = w.await.unwrap();
        total.acked += r.acked;
        total.retried += r.retried;
        total.lease_lost += r.lease_lost;
    }
    assert_eq!(total.acked, u64::from(N));
    assert_eq!(total.retried, u64::from(N / 5));
    assert_eq!(total.lease_lost, 0);
    let stats = producer.stats().await.unwrap();
    assert_eq!(stats[0].count(State::Done), u64::from(N));
    assert_eq!(stats[0].depth(), 0);
    let acked = acked.lock();
    assert_eq!(acked.len(), N as usize, "none lost");
    assert!(
        ids.iter().all(|id| acked.get(id) == Some(&1)),
        "each acked exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_handler_is_redelivered_after_its_lease() {
    let Some(pg) = steadfast_testkit::postgres().await else {
        return;
    };
    PostgresQueue::migrate(pg.pool()).await.unwrap();
    let clock = ManualClock::starting_now();
    let config = QueueConfig::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let a = instance(&pg, config.clone()).await;
    let b = instance(&pg, config).await;
    let id = a
        .enqueue(NewMessage::new("q", json!({})).correlation_id("req-1"))
        .await
        .unwrap()
        .id();

    // Instance A starts the handler, then dies: its task is aborted, nothing is settled.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Mutex::new(Some(started_tx));
    let worker_a = Worker::builder(a.clone(), "q")
        .lease(Duration::from_secs(30))
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let killed = tokio::spawn(async move {
        worker_a
            .run(
                move |_m| {
                    if let Some(tx) = started_tx.lock().take() {
                        let _ = tx.send(());
                    }
                    std::future::pending::<Outcome>()
                },
                std::future::pending::<()>(),
            )
            .await
    });
    started_rx.await.unwrap();
    killed.abort();
    let _ = killed.await;
    let m = b.get(id).await.unwrap().unwrap();
    assert_eq!((m.state, m.attempts), (State::Running, 1));

    // Before the lease runs out nobody else gets it; after, instance B does.
    assert!(
        b.claim("q", 1, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(Duration::from_secs(31));
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let worker_b = Worker::builder(b.clone(), "q")
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let s = seen.clone();
    let report = worker_b
        .run(
            move |m| {
                s.lock().push((m.attempts, m.correlation_id.clone()));
                async { Outcome::Ack }
            },
            wait_done(&*b, 1),
        )
        .await;
    assert_eq!(report.acked, 1);
    assert_eq!(*seen.lock(), vec![(2, Some("req-1".to_owned()))]);
    let m = b.get(id).await.unwrap().unwrap();
    assert_eq!(m.state, State::Done);
    assert_eq!(m.errors[0].kind, LEASE_EXPIRED);
}

#[tokio::test]
async fn migrations_are_idempotent_and_coexist() {
    let Some(pg) = steadfast_testkit::postgres().await else {
        return;
    };
    PostgresQueue::migrate(pg.pool()).await.unwrap();
    PostgresQueue::migrate(pg.pool()).await.unwrap();
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(pg.pool())
        .await
        .unwrap();
    assert!(
        versions
            .iter()
            .all(|v| (20261121020000..20261121030000).contains(v))
    );
    assert!(!versions.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_of_several_processes_never_run_two_messages_of_one_group() {
    let Some(pg) = steadfast_testkit::postgres().await else {
        return;
    };
    PostgresQueue::migrate(pg.pool()).await.unwrap();
    const GROUPS: u64 = 4;
    const PER_GROUP: u64 = 15;
    let producer = PostgresQueue::new(pg.pool().clone());
    let batch: Vec<_> = (0..PER_GROUP)
        .flat_map(|i| {
            (0..GROUPS).map(move |g| {
                NewMessage::new("q", json!({ "g": g, "i": i })).group(format!("sender.{g}"))
            })
        })
        .collect();
    producer.enqueue_batch(batch).await.unwrap();

    // Per group: how many handlers run now, and the order they ran in.
    // (A handler's panic would only fail its attempt: overlaps are counted, then asserted.)
    let running: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let overlaps = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let order: Arc<Mutex<HashMap<u64, Vec<u64>>>> = Arc::default();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut workers = Vec::new();
    for _ in 0..3 {
        let store = instance(&pg, QueueConfig::default()).await;
        let worker = Worker::builder(store, "q")
            .concurrency(4)
            .poll_interval(Duration::from_millis(20))
            .build()
            .unwrap();
        let (running, order, overlaps) = (running.clone(), order.clone(), overlaps.clone());
        let mut stop = stop_tx.subscribe();
        workers.push(tokio::spawn(async move {
            worker
                .run(
                    move |m| {
                        let (running, order) = (running.clone(), order.clone());
                        let overlaps = overlaps.clone();
                        async move {
                            let g = m.payload["g"].as_u64().unwrap();
                            let i = m.payload["i"].as_u64().unwrap();
                            {
                                let mut running = running.lock();
                                let n = running.entry(g).or_default();
                                if *n > 0 {
                                    overlaps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                }
                                *n += 1;
                            }
                            order.lock().entry(g).or_default().push(i);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            *running.lock().get_mut(&g).unwrap() -= 1;
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
    wait_done(&producer, GROUPS * PER_GROUP).await;
    let _ = stop_tx.send(());
    let mut acked = 0;
    for w in workers {
        acked += w.await.unwrap().acked;
    }
    assert_eq!(acked, GROUPS * PER_GROUP);
    assert_eq!(
        overlaps.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "two messages of one group ran at once"
    );
    let order = order.lock();
    for g in 0..GROUPS {
        assert_eq!(
            order[&g],
            (0..PER_GROUP).collect::<Vec<_>>(),
            "group {g} in order"
        );
    }
}
