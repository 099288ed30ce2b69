//! The worker on the memory store, with tokio's clock paused: leases, heartbeats and
//! shutdown deadlines play out in virtual time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use steadfast_dlq::{
    Error, Failure, MemoryQueue, MessageId, NewMessage, Outcome, Queue, QueueAdmin, QueueConfig,
    QueueStats, QueueStore, Snooze, State, TokioClock, Worker, WorkerHooks,
};
use tokio::sync::oneshot;

fn store() -> Arc<MemoryQueue> {
    let config = QueueConfig::builder()
        .clock(Arc::new(TokioClock::new()))
        .build()
        .unwrap();
    Arc::new(MemoryQueue::with_config(config))
}

async fn fill(store: &dyn Queue, n: u32) -> Vec<MessageId> {
    let batch = (0..n)
        .map(|i| NewMessage::new("q", json!({ "i": i })).dedup_key(format!("k{i}")))
        .collect();
    let out = store.enqueue_batch(batch).await.unwrap();
    out.into_iter().map(|e| e.id()).collect()
}

/// Stops the worker once `store` has `n` messages settled (done or dead).
async fn settled(store: Arc<dyn Queue>, n: u64) {
    loop {
        let stats = store.stats().await.unwrap();
        let s = stats
            .first()
            .cloned()
            .unwrap_or_else(|| QueueStats::empty("q"));
        if s.count(State::Done) + s.count(State::Dead) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Default)]
struct Counting {
    processed: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    stats_calls: AtomicU64,
    last_kind: Mutex<Option<String>>,
    store_errors: Mutex<Vec<String>>,
}

impl WorkerHooks for Counting {
    fn processed(&self, _queue: &str, _latency: Duration) {
        self.processed.fetch_add(1, Ordering::SeqCst);
    }
    fn retried(&self, _queue: &str, _latency: Duration, failure: &Failure) {
        self.retried.fetch_add(1, Ordering::SeqCst);
        *self.last_kind.lock() = Some(failure.kind().to_owned());
    }
    fn dead_lettered(&self, _queue: &str, _latency: Duration, failure: &Failure) {
        self.dead.fetch_add(1, Ordering::SeqCst);
        *self.last_kind.lock() = Some(failure.kind().to_owned());
    }
    fn queue_stats(&self, _stats: &QueueStats) {
        self.stats_calls.fetch_add(1, Ordering::SeqCst);
    }
    fn store_error(&self, _queue: &str, error: &Error) {
        assert!(error.is_transient(), "{error}");
        self.store_errors.lock().push(error.to_string());
    }
}

#[tokio::test(start_paused = true)]
async fn processes_everything_with_bounded_concurrency() {
    let store = store();
    let ids = fill(&*store, 40).await;
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(HashMap::<MessageId, u32>::new()));
    let hooks = Arc::new(Counting::default());
    let worker = Worker::builder(store.clone(), "q")
        .concurrency(4)
        .batch_size(3)
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let (r, p, s) = (running.clone(), peak.clone(), seen.clone());
    let report = worker
        .run(
            move |m| {
                let (r, p, s) = (r.clone(), p.clone(), s.clone());
                async move {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    *s.lock().entry(m.id).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    r.fetch_sub(1, Ordering::SeqCst);
                    Outcome::Ack
                }
            },
            settled(store.clone(), 40),
        )
        .await;
    assert_eq!(report.acked, 40);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        4,
        "never more than the concurrency"
    );
    let seen = seen.lock();
    assert!(
        ids.iter().all(|id| seen.get(id) == Some(&1)),
        "each exactly once"
    );
    assert_eq!(hooks.processed.load(Ordering::SeqCst), 40);
    assert!(hooks.stats_calls.load(Ordering::SeqCst) >= 1);
}

#[tokio::test(start_paused = true)]
async fn retry_then_dead_follow_the_handler() {
    let store = store();
    let ids = fill(&*store, 2).await;
    let hooks = Arc::new(Counting::default());
    let worker = Worker::builder(store.clone(), "q")
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let first = ids[0];
    let report = worker
        .run(
            move |m| async move {
                if m.id == first {
                    // Fails once, then succeeds.
                    if m.attempts == 1 {
                        Outcome::retry("timeout", "downstream slow")
                    } else {
                        Outcome::Ack
                    }
                } else {
                    Outcome::dead("bad_payload", "no text")
                }
            },
            settled(store.clone(), 2),
        )
        .await;
    assert_eq!((report.acked, report.retried, report.dead), (1, 1, 1));
    let a = store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!((a.state, a.attempts, a.errors.len()), (State::Done, 2, 1));
    let b = store.get(ids[1]).await.unwrap().unwrap();
    assert_eq!((b.state, b.attempts), (State::Dead, 1));
    assert_eq!(b.errors[0].kind, "bad_payload");
    assert_eq!(hooks.retried.load(Ordering::SeqCst), 1);
    assert_eq!(hooks.dead.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_long_handler_s_lease() {
    let store = store();
    let ids = fill(&*store, 1).await;
    let worker = Worker::builder(store.clone(), "q")
        .lease(Duration::from_secs(10))
        .heartbeat(Duration::from_secs(3))
        .build()
        .unwrap();
    let spy: Arc<dyn Queue> = store.clone();
    let report = worker
        .run(
            |_m| async {
                tokio::time::sleep(Duration::from_secs(100)).await;
                Outcome::Ack
            },
            async move {
                // Halfway through the handler, far past the original lease: not claimable.
                tokio::time::sleep(Duration::from_secs(50)).await;
                assert!(
                    spy.claim("q", 1, Duration::from_secs(1))
                        .await
                        .unwrap()
                        .is_empty()
                );
                settled(spy, 1).await;
            },
        )
        .await;
    assert_eq!((report.acked, report.lease_lost), (1, 0));
    let m = store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!((m.state, m.attempts), (State::Done, 1));
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_in_flight_work_finish_within_the_deadline() {
    let store = store();
    let ids = fill(&*store, 1).await;
    let worker = Worker::builder(store.clone(), "q")
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let started_tx = Mutex::new(Some(started_tx));
    let report = worker
        .run(
            move |_m| {
                if let Some(tx) = started_tx.lock().take() {
                    let _ = tx.send(());
                }
                async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Outcome::Ack
                }
            },
            async {
                started_rx.await.unwrap();
            },
        )
        .await;
    assert_eq!((report.acked, report.released), (1, 0));
    assert_eq!(store.get(ids[0]).await.unwrap().unwrap().state, State::Done);
}

#[tokio::test(start_paused = true)]
async fn shutdown_releases_what_outlives_the_deadline() {
    let store = store();
    let ids = fill(&*store, 3).await;
    let worker = Worker::builder(store.clone(), "q")
        .concurrency(2)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let report = worker
        .run(
            move |_m| {
                s.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Outcome::Ack
                }
            },
            tokio::time::sleep(Duration::from_secs(1)),
        )
        .await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "the third was never claimed"
    );
    assert_eq!((report.acked, report.released), (0, 2));
    for id in ids {
        let m = store.get(id).await.unwrap().unwrap();
        assert_eq!(
            (m.state, m.attempts),
            (State::Pending, 0),
            "given back, not counted"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_fails_the_attempt() {
    let store = store();
    let ids = fill(&*store, 1).await;
    let worker = Worker::builder(store.clone(), "q").build().unwrap();
    let spy: Arc<dyn Queue> = store.clone();
    let report = worker
        .run(
            |_m| async {
                panic!("handler bug");
            },
            async move {
                loop {
                    let s = spy.stats().await.unwrap();
                    if s[0].count(State::Retrying) == 1 {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        )
        .await;
    assert_eq!(report.retried, 1);
    let m = store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(m.errors[0].kind, "panic");
}

#[tokio::test(start_paused = true)]
async fn idle_workers_wake_on_enqueue() {
    let store = store();
    let worker = Worker::builder(store.clone(), "q")
        .poll_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let producer: Arc<dyn Queue> = store.clone();
    let start = tokio::time::Instant::now();
    let report = worker
        .run(|_m| async { Outcome::Ack }, async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            fill(&*producer, 1).await;
            settled(producer, 1).await;
        })
        .await;
    assert_eq!(report.acked, 1);
    // Virtual time: the worker did not wait out its hour-long poll interval.
    assert!(start.elapsed() < Duration::from_secs(3600));
}

#[test]
fn builder_rejects_settings_that_cannot_work() {
    let store: Arc<dyn Queue> = Arc::new(MemoryQueue::new());
    let invalid =
        |b: steadfast_dlq::WorkerBuilder| matches!(b.build(), Err(Error::InvalidConfig(_)));
    assert!(invalid(Worker::builder(store.clone(), "")));
    assert!(invalid(Worker::builder(store.clone(), "q").concurrency(0)));
    assert!(invalid(Worker::builder(store.clone(), "q").batch_size(0)));
    assert!(invalid(
        Worker::builder(store.clone(), "q").lease(Duration::ZERO)
    ));
    assert!(invalid(
        Worker::builder(store.clone(), "q")
            .lease(Duration::from_secs(5))
            .heartbeat(Duration::from_secs(5))
    ));
    assert!(invalid(
        Worker::builder(store.clone(), "q").poll_interval(Duration::ZERO)
    ));
    assert!(invalid(
        Worker::builder(store.clone(), "q").store_timeout(Duration::ZERO)
    ));
    let ok = Worker::builder(store, "q").build().unwrap();
    assert_eq!(ok.queue(), "q");
}

/// A store that records the `limit` of every claim (and what it returned) around the memory
/// store.
#[derive(Debug)]
struct RecordingClaims {
    inner: Arc<MemoryQueue>,
    claims: Mutex<Vec<(usize, usize)>>,
}

#[async_trait::async_trait]
impl QueueStore for RecordingClaims {
    async fn enqueue_batch(
        &self,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<steadfast_dlq::Enqueued>, Error> {
        self.inner.enqueue_batch(messages).await
    }

    async fn claim(
        &self,
        queue: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<steadfast_dlq::Claimed>, Error> {
        let out = self.inner.claim(queue, limit, lease).await?;
        self.claims.lock().push((limit, out.len()));
        Ok(out)
    }

    async fn ack(&self, lease: &steadfast_dlq::Lease) -> Result<(), Error> {
        self.inner.ack(lease).await
    }

    async fn ack_batch(&self, leases: &[steadfast_dlq::Lease]) -> Result<u64, Error> {
        self.inner.ack_batch(leases).await
    }

    async fn fail(&self, lease: &steadfast_dlq::Lease, failure: Failure) -> Result<State, Error> {
        self.inner.fail(lease, failure).await
    }

    async fn extend(
        &self,
        lease: &steadfast_dlq::Lease,
        lease_for: Duration,
    ) -> Result<steadfast_dlq::Lease, Error> {
        self.inner.extend(lease, lease_for).await
    }

    async fn release(&self, lease: &steadfast_dlq::Lease) -> Result<(), Error> {
        self.inner.release(lease).await
    }

    async fn snooze(&self, lease: &steadfast_dlq::Lease, snooze: Snooze) -> Result<State, Error> {
        self.inner.snooze(lease, snooze).await
    }

    async fn wait_for_work(&self, queue: &str, timeout: Duration) {
        self.inner.wait_for_work(queue, timeout).await
    }
}

#[async_trait::async_trait]
impl QueueAdmin for RecordingClaims {
    async fn get(&self, id: MessageId) -> Result<Option<steadfast_dlq::Message>, Error> {
        self.inner.get(id).await
    }

    async fn list(
        &self,
        filter: &steadfast_dlq::Filter,
        page: steadfast_dlq::Page,
    ) -> Result<Vec<steadfast_dlq::Message>, Error> {
        self.inner.list(filter, page).await
    }

    async fn run_now(&self, id: MessageId) -> Result<(), Error> {
        self.inner.run_now(id).await
    }

    async fn replay(&self, id: MessageId) -> Result<(), Error> {
        self.inner.replay(id).await
    }

    async fn replay_matching(&self, filter: &steadfast_dlq::Filter) -> Result<u64, Error> {
        self.inner.replay_matching(filter).await
    }

    async fn delete(&self, id: MessageId) -> Result<bool, Error> {
        self.inner.delete(id).await
    }

    async fn purge(&self, filter: &steadfast_dlq::Filter) -> Result<u64, Error> {
        self.inner.purge(filter).await
    }

    async fn prune(
        &self,
        retention: &steadfast_dlq::Retention,
    ) -> Result<steadfast_dlq::Pruned, Error> {
        self.inner.prune(retention).await
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        self.inner.stats().await
    }
}

#[tokio::test(start_paused = true)]
async fn claims_take_every_free_slot_up_to_the_batch_size() {
    let store = Arc::new(RecordingClaims {
        inner: self::store(),
        claims: Mutex::new(Vec::new()),
    });
    fill(&*store, 24).await;
    let worker = Worker::builder(store.clone(), "q")
        .concurrency(8)
        .batch_size(6)
        .build()
        .unwrap();
    let report = worker
        .run(
            |_m| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Outcome::Ack
            },
            settled(store.clone(), 24),
        )
        .await;
    assert_eq!(report.acked, 24);
    let claims = store.claims.lock().clone();
    let fetched: Vec<usize> = claims
        .iter()
        .map(|&(_, got)| got)
        .filter(|&n| n > 0)
        .collect();
    assert_eq!(fetched.iter().sum::<usize>(), 24);
    assert!(
        claims.iter().all(|&(limit, _)| (1..=6).contains(&limit)),
        "{claims:?}"
    );
    // Handlers finish together, so every wave of 8 freed slots is refilled by full claims
    // (6 + 2), never slot by slot.
    assert_eq!(fetched, [6, 2, 6, 2, 6, 2], "{claims:?}");
}

/// A store whose named calls never answer while they are in `stalled` (a black-holed
/// database connection): the future stays pending, no error ever comes back.
#[derive(Debug)]
struct Stalling {
    inner: Arc<MemoryQueue>,
    stalled: Mutex<Vec<&'static str>>,
}

impl Stalling {
    fn new(stalled: &[&'static str]) -> Arc<Self> {
        Arc::new(Self {
            inner: self::store(),
            stalled: Mutex::new(stalled.to_vec()),
        })
    }

    fn restore(&self) {
        self.stalled.lock().clear();
    }

    async fn gate(&self, call: &str) {
        if self.stalled.lock().contains(&call) {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait::async_trait]
impl QueueStore for Stalling {
    async fn enqueue_batch(
        &self,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<steadfast_dlq::Enqueued>, Error> {
        self.inner.enqueue_batch(messages).await
    }

    async fn claim(
        &self,
        queue: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<steadfast_dlq::Claimed>, Error> {
        self.gate("claim").await;
        self.inner.claim(queue, limit, lease).await
    }

    async fn ack(&self, lease: &steadfast_dlq::Lease) -> Result<(), Error> {
        self.gate("ack").await;
        self.inner.ack(lease).await
    }

    async fn ack_batch(&self, leases: &[steadfast_dlq::Lease]) -> Result<u64, Error> {
        self.inner.ack_batch(leases).await
    }

    async fn fail(&self, lease: &steadfast_dlq::Lease, failure: Failure) -> Result<State, Error> {
        self.gate("fail").await;
        self.inner.fail(lease, failure).await
    }

    async fn extend(
        &self,
        lease: &steadfast_dlq::Lease,
        lease_for: Duration,
    ) -> Result<steadfast_dlq::Lease, Error> {
        self.gate("extend").await;
        self.inner.extend(lease, lease_for).await
    }

    async fn release(&self, lease: &steadfast_dlq::Lease) -> Result<(), Error> {
        self.gate("release").await;
        self.inner.release(lease).await
    }

    async fn snooze(&self, lease: &steadfast_dlq::Lease, snooze: Snooze) -> Result<State, Error> {
        self.inner.snooze(lease, snooze).await
    }

    async fn wait_for_work(&self, queue: &str, timeout: Duration) {
        self.inner.wait_for_work(queue, timeout).await
    }
}

#[async_trait::async_trait]
impl QueueAdmin for Stalling {
    async fn get(&self, id: MessageId) -> Result<Option<steadfast_dlq::Message>, Error> {
        self.inner.get(id).await
    }

    async fn list(
        &self,
        filter: &steadfast_dlq::Filter,
        page: steadfast_dlq::Page,
    ) -> Result<Vec<steadfast_dlq::Message>, Error> {
        self.inner.list(filter, page).await
    }

    async fn run_now(&self, id: MessageId) -> Result<(), Error> {
        self.inner.run_now(id).await
    }

    async fn replay(&self, id: MessageId) -> Result<(), Error> {
        self.inner.replay(id).await
    }

    async fn replay_matching(&self, filter: &steadfast_dlq::Filter) -> Result<u64, Error> {
        self.inner.replay_matching(filter).await
    }

    async fn delete(&self, id: MessageId) -> Result<bool, Error> {
        self.inner.delete(id).await
    }

    async fn purge(&self, filter: &steadfast_dlq::Filter) -> Result<u64, Error> {
        self.inner.purge(filter).await
    }

    async fn prune(
        &self,
        retention: &steadfast_dlq::Retention,
    ) -> Result<steadfast_dlq::Pruned, Error> {
        self.inner.prune(retention).await
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        self.gate("stats").await;
        self.inner.stats().await
    }
}

/// Reads the memory store's stats directly (the decorator's own `stats` may be stalled).
async fn settled_in(store: Arc<Stalling>, n: u64) {
    settled(store.inner.clone(), n).await
}

/// Without a bound, the first claim would wait forever: the worker would neither process
/// anything after the store came back nor see its shutdown signal through a store call.
/// The outer `timeout` only turns such a hang into a failure (virtual time).
#[tokio::test(start_paused = true)]
async fn claims_that_never_answer_time_out_and_the_worker_keeps_claiming() {
    let store = Stalling::new(&["claim", "stats"]);
    fill(&*store, 3).await;
    let hooks = Arc::new(Counting::default());
    let worker = Worker::builder(store.clone(), "q")
        .store_timeout(Duration::from_millis(500))
        .poll_interval(Duration::from_millis(100))
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let (s, h) = (store.clone(), hooks.clone());
    let start = tokio::time::Instant::now();
    let report = tokio::time::timeout(
        Duration::from_secs(600),
        worker.run(|_m| async { Outcome::Ack }, async move {
            while h.store_errors.lock().len() < 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            s.restore();
            settled_in(s, 3).await;
        }),
    )
    .await
    .expect("the worker does not hang on a store that never answers");
    assert_eq!(report.acked, 3);
    let errors = hooks.store_errors.lock().clone();
    assert!(errors.len() >= 3, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("claim did not answer within 500ms")),
        "{errors:?}"
    );
    // Three timed-out claims (and the stats call before the first), no more.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_that_never_answers_does_not_hold_the_finished_handler() {
    let store = Stalling::new(&["extend"]);
    fill(&*store, 1).await;
    let hooks = Arc::new(Counting::default());
    let worker = Worker::builder(store.clone(), "q")
        .lease(Duration::from_secs(3))
        .heartbeat(Duration::from_secs(1))
        .store_timeout(Duration::from_millis(200))
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let report = tokio::time::timeout(
        Duration::from_secs(600),
        worker.run(
            |_m| async {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                Outcome::Ack
            },
            settled_in(store.clone(), 1),
        ),
    )
    .await
    .expect("the worker does not hang on a heartbeat that never answers");
    assert_eq!(report.acked, 1, "acked within its lease despite the beats");
    let errors = hooks.store_errors.lock().clone();
    assert_eq!(errors.len(), 2, "beats at 1 s and 2 s: {errors:?}");
    assert!(errors[0].contains("heartbeat did not answer within 200ms"));
}

#[tokio::test(start_paused = true)]
async fn an_ack_that_never_answers_is_a_store_error_and_the_lease_returns_the_message() {
    let store = Stalling::new(&["ack"]);
    fill(&*store, 1).await;
    let hooks = Arc::new(Counting::default());
    let runs = Arc::new(AtomicU64::new(0));
    let worker = Worker::builder(store.clone(), "q")
        .lease(Duration::from_secs(2))
        .store_timeout(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(100))
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let (s, r) = (store.clone(), runs.clone());
    let report = tokio::time::timeout(
        Duration::from_secs(600),
        worker.run(
            move |_m| {
                let (s, r) = (s.clone(), r.clone());
                async move {
                    // The store comes back after the first run's ack stalled.
                    if r.fetch_add(1, Ordering::SeqCst) == 1 {
                        s.restore();
                    }
                    Outcome::Ack
                }
            },
            settled_in(store.clone(), 1),
        ),
    )
    .await
    .expect("the worker does not hang on an ack that never answers");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "re-claimed after its lease");
    assert_eq!(report.acked, 1);
    assert_eq!(report.store_errors, 1);
    let errors = hooks.store_errors.lock().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("ack did not answer within 300ms"));
}

#[tokio::test(start_paused = true)]
async fn shutdown_does_not_wait_forever_to_release_on_a_store_that_never_answers() {
    let store = Stalling::new(&["release"]);
    fill(&*store, 1).await;
    let hooks = Arc::new(Counting::default());
    let worker = Worker::builder(store.clone(), "q")
        .shutdown_timeout(Duration::from_secs(1))
        .store_timeout(Duration::from_millis(300))
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let tx = Mutex::new(Some(tx));
    let report = tokio::time::timeout(
        Duration::from_secs(600),
        worker.run(
            move |_m| {
                if let Some(tx) = tx.lock().take() {
                    let _ = tx.send(());
                }
                std::future::pending::<Outcome>()
            },
            async move {
                let _ = rx.await;
            },
        ),
    )
    .await
    .expect("shutdown is bounded even when the release never answers");
    assert_eq!(report.released, 0);
    assert_eq!(report.store_errors, 1);
    assert!(hooks.store_errors.lock()[0].contains("release did not answer"));
}

/// Counts snoozes through the hooks.
#[derive(Default)]
struct Snoozes {
    snoozed: AtomicU64,
    dead: AtomicU64,
}

impl WorkerHooks for Snoozes {
    fn snoozed(&self, _queue: &str, _latency: Duration, snooze: &Snooze) {
        assert_eq!(snooze.kind(), "breaker_open");
        self.snoozed.fetch_add(1, Ordering::SeqCst);
    }
    fn snooze_dead_lettered(&self, _queue: &str, _latency: Duration, _snooze: &Snooze) {
        self.dead.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_snoozed_message_spends_no_attempt() {
    let store = store();
    let ids = fill(&*store, 1).await;
    let hooks = Arc::new(Snoozes::default());
    let worker = Worker::builder(store.clone(), "q")
        .poll_interval(Duration::from_millis(100))
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let runs = Arc::new(AtomicU64::new(0));
    let r = runs.clone();
    let report = worker
        .run(
            move |m| {
                let r = r.clone();
                async move {
                    // The breaker refuses five times (each run is attempt 1), then it closes.
                    assert_eq!(m.attempts, 1, "a snooze gives its attempt back");
                    if r.fetch_add(1, Ordering::SeqCst) < 5 {
                        Outcome::snooze("breaker_open", "open", Duration::from_secs(1))
                    } else {
                        Outcome::Ack
                    }
                }
            },
            settled(store.clone(), 1),
        )
        .await;
    assert_eq!((report.snoozed, report.acked, report.retried), (5, 1, 0));
    assert_eq!(hooks.snoozed.load(Ordering::SeqCst), 5);
    let m = store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!((m.state, m.attempts), (State::Done, 1));
    assert_eq!(m.errors.iter().filter(|e| e.snoozed).count(), 5);
}

#[tokio::test(start_paused = true)]
async fn snoozing_past_the_horizon_dead_letters() {
    let config = QueueConfig::builder()
        .clock(Arc::new(TokioClock::new()))
        .queue_horizon("q", Duration::from_secs(10))
        .build()
        .unwrap();
    let store = Arc::new(MemoryQueue::with_config(config));
    let ids = fill(&*store, 1).await;
    let hooks = Arc::new(Snoozes::default());
    let worker = Worker::builder(store.clone(), "q")
        .poll_interval(Duration::from_millis(100))
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let report = worker
        .run(
            |_m| async { Outcome::snooze("breaker_open", "open", Duration::from_secs(3)) },
            settled(store.clone(), 1),
        )
        .await;
    // Snoozed at 0, 3, 6, 9 s; at 12 s it has waited longer than 10 s.
    assert_eq!((report.snoozed, report.dead), (4, 1));
    assert_eq!(hooks.dead.load(Ordering::SeqCst), 1);
    let m = store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!((m.state, m.attempts), (State::Dead, 0));
    assert_eq!(m.last_error().unwrap().kind, steadfast_dlq::HORIZON_PASSED);
}

/// A store that records the size of every batched ack around the memory store.
#[derive(Debug)]
struct RecordingAcks {
    inner: Arc<MemoryQueue>,
    acks: Mutex<Vec<usize>>,
}

#[async_trait::async_trait]
impl QueueStore for RecordingAcks {
    async fn enqueue_batch(
        &self,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<steadfast_dlq::Enqueued>, Error> {
        self.inner.enqueue_batch(messages).await
    }

    async fn claim(
        &self,
        queue: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<steadfast_dlq::Claimed>, Error> {
        self.inner.claim(queue, limit, lease).await
    }

    async fn ack(&self, _lease: &steadfast_dlq::Lease) -> Result<(), Error> {
        panic!("the worker acks through ack_batch_ids");
    }

    async fn ack_batch(&self, leases: &[steadfast_dlq::Lease]) -> Result<u64, Error> {
        self.inner.ack_batch(leases).await
    }

    async fn ack_batch_ids(
        &self,
        leases: &[steadfast_dlq::Lease],
    ) -> Result<Vec<MessageId>, Error> {
        self.acks.lock().push(leases.len());
        // A commit takes a while: acks finishing meanwhile queue up for the next one.
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.inner.ack_batch_ids(leases).await
    }

    async fn fail(&self, lease: &steadfast_dlq::Lease, failure: Failure) -> Result<State, Error> {
        self.inner.fail(lease, failure).await
    }

    async fn snooze(&self, lease: &steadfast_dlq::Lease, snooze: Snooze) -> Result<State, Error> {
        self.inner.snooze(lease, snooze).await
    }

    async fn extend(
        &self,
        lease: &steadfast_dlq::Lease,
        lease_for: Duration,
    ) -> Result<steadfast_dlq::Lease, Error> {
        self.inner.extend(lease, lease_for).await
    }

    async fn release(&self, lease: &steadfast_dlq::Lease) -> Result<(), Error> {
        self.inner.release(lease).await
    }

    async fn wait_for_work(&self, queue: &str, timeout: Duration) {
        self.inner.wait_for_work(queue, timeout).await
    }
}

#[async_trait::async_trait]
impl QueueAdmin for RecordingAcks {
    async fn get(&self, id: MessageId) -> Result<Option<steadfast_dlq::Message>, Error> {
        self.inner.get(id).await
    }

    async fn list(
        &self,
        filter: &steadfast_dlq::Filter,
        page: steadfast_dlq::Page,
    ) -> Result<Vec<steadfast_dlq::Message>, Error> {
        self.inner.list(filter, page).await
    }

    async fn replay(&self, id: MessageId) -> Result<(), Error> {
        self.inner.replay(id).await
    }

    async fn run_now(&self, id: MessageId) -> Result<(), Error> {
        self.inner.run_now(id).await
    }

    async fn replay_matching(&self, filter: &steadfast_dlq::Filter) -> Result<u64, Error> {
        self.inner.replay_matching(filter).await
    }

    async fn delete(&self, id: MessageId) -> Result<bool, Error> {
        self.inner.delete(id).await
    }

    async fn purge(&self, filter: &steadfast_dlq::Filter) -> Result<u64, Error> {
        self.inner.purge(filter).await
    }

    async fn prune(
        &self,
        retention: &steadfast_dlq::Retention,
    ) -> Result<steadfast_dlq::Pruned, Error> {
        self.inner.prune(retention).await
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        self.inner.stats().await
    }
}

#[tokio::test(start_paused = true)]
async fn acks_of_messages_that_finish_together_share_one_write() {
    let store = Arc::new(RecordingAcks {
        inner: self::store(),
        acks: Mutex::new(Vec::new()),
    });
    fill(&*store, 32).await;
    let hooks = Arc::new(Counting::default());
    let worker = Worker::builder(store.clone(), "q")
        .concurrency(8)
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let report = worker
        .run(
            |_m| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Outcome::Ack
            },
            settled(store.clone(), 32),
        )
        .await;
    assert_eq!(report.acked, 32);
    assert_eq!(hooks.processed.load(Ordering::SeqCst), 32);
    let acks = store.acks.lock().clone();
    assert_eq!(acks.iter().sum::<usize>(), 32);
    // Waves of 8 handlers finish together: far fewer writes than messages.
    assert!(acks.len() <= 8, "{acks:?}");
    assert!(acks.iter().any(|&n| n > 1), "{acks:?}");
}

#[tokio::test(start_paused = true)]
async fn a_busy_group_takes_one_slot_and_others_flow() {
    let store = store();
    // One sender with 16 slow messages, enqueued first; then another sender's message.
    let busy: Vec<_> = (0..16)
        .map(|i| NewMessage::new("q", json!({ "from": "busy", "i": i })).group("busy"))
        .collect();
    store.enqueue_batch(busy).await.unwrap();
    let other = store
        .enqueue(NewMessage::new("q", json!({ "from": "other" })).group("other"))
        .await
        .unwrap()
        .id();
    let running_busy = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let other_started = Arc::new(Mutex::new(None));
    let started = tokio::time::Instant::now();
    let worker = Worker::builder(store.clone(), "q")
        .concurrency(4)
        .build()
        .unwrap();
    let (r, o, os) = (running_busy.clone(), order.clone(), other_started.clone());
    let report = worker
        .run(
            move |m| {
                let (r, o, os) = (r.clone(), o.clone(), os.clone());
                async move {
                    if m.id == other {
                        *os.lock() = Some(started.elapsed());
                        return Outcome::Ack;
                    }
                    // Two at once shows as a negative index in the order (a panic here would
                    // only fail the attempt).
                    let at_once = r.fetch_add(1, Ordering::SeqCst);
                    o.lock()
                        .push(m.payload["i"].as_i64().unwrap() - 100 * at_once as i64);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    r.fetch_sub(1, Ordering::SeqCst);
                    Outcome::Ack
                }
            },
            settled(store.clone(), 17),
        )
        .await;
    assert_eq!(report.acked, 17);
    assert_eq!(
        *order.lock(),
        (0..16).collect::<Vec<i64>>(),
        "in order, one at a time"
    );
    let waited = other_started.lock().unwrap();
    assert!(
        waited < Duration::from_secs(1),
        "the other sender waited {waited:?}, at least one slow call"
    );
}
