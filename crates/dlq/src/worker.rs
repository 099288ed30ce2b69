//! The worker: runs an async handler over one queue with bounded concurrency, lease heartbeats,
//! graceful shutdown and metrics hooks.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::{Error, Failure, Lease, Message, MessageId, Queue, QueueStats, Snooze, State};

/// What a handler decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed: the message is `done`.
    Ack,
    /// Failed, worth retrying: `retrying` after the policy's backoff (or the failure's own
    /// delay, see [`Failure::after`]), or `dead` when attempts are exhausted.
    Retry(Failure),
    /// Failed for good: `dead` at once, whatever attempts are left.
    Dead(Failure),
    /// Not really tried (e.g. an open circuit breaker refused the call): due again at the
    /// snooze's time, the attempt given back (see [`Snooze`]). `dead` only when the queue's
    /// horizon has passed.
    Snooze(Snooze),
}

impl Outcome {
    /// [`Outcome::Retry`] after the policy's backoff.
    pub fn retry(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Outcome::Retry(Failure::retryable(kind, message))
    }

    /// [`Outcome::Retry`] after `delay` (e.g. a downstream's `Retry-After`).
    pub fn retry_after(
        kind: impl Into<String>,
        message: impl Into<String>,
        delay: Duration,
    ) -> Self {
        Outcome::Retry(Failure::retryable(kind, message).after(delay))
    }

    /// [`Outcome::Snooze`] for `delay` (e.g. a breaker's `retry_after`).
    pub fn snooze(kind: impl Into<String>, message: impl Into<String>, delay: Duration) -> Self {
        Outcome::Snooze(Snooze::after(kind, message, delay))
    }

    /// [`Outcome::Dead`].
    pub fn dead(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Outcome::Dead(Failure::fatal(kind, message))
    }
}

/// Hooks for metrics and logs. Every method has an empty default; implement what you export.
/// Calls are synchronous and on the worker's tasks: keep them cheap (increment a counter).
pub trait WorkerHooks: Send + Sync {
    /// A message was acked after `latency` in its handler.
    fn processed(&self, _queue: &str, _latency: Duration) {}
    /// A message failed and will be retried.
    fn retried(&self, _queue: &str, _latency: Duration, _failure: &Failure) {}
    /// A message became a dead letter.
    fn dead_lettered(&self, _queue: &str, _latency: Duration, _failure: &Failure) {}
    /// A message was snoozed (rescheduled without spending an attempt).
    fn snoozed(&self, _queue: &str, _latency: Duration, _snooze: &Snooze) {}
    /// A snoozed message became a dead letter: it had waited longer than its queue's horizon.
    /// (A failure that hits the horizon is reported through
    /// [`dead_lettered`](Self::dead_lettered).)
    fn snooze_dead_lettered(&self, _queue: &str, _latency: Duration, _snooze: &Snooze) {}
    /// A lease was lost mid-handler (expired and re-claimed elsewhere): the result was dropped.
    fn lease_lost(&self, _queue: &str, _id: MessageId) {}
    /// The queue's stats, every `stats_interval` (depth, dead count, oldest due age).
    fn queue_stats(&self, _stats: &QueueStats) {}
    /// The store failed; the worker keeps going (the lease will return the message).
    fn store_error(&self, _queue: &str, _error: &Error) {}
}

/// Hooks that do nothing.
#[derive(Debug, Clone, Copy, Default)]
struct NoHooks;

impl WorkerHooks for NoHooks {}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Messages acked.
    pub acked: u64,
    /// Messages failed and scheduled for retry.
    pub retried: u64,
    /// Messages dead-lettered.
    pub dead: u64,
    /// Messages snoozed (rescheduled without spending an attempt).
    pub snoozed: u64,
    /// Results dropped because the lease was lost.
    pub lease_lost: u64,
    /// In-flight messages given back at shutdown because their handler outlived the deadline.
    pub released: u64,
    /// Settling writes that failed on a store error (those messages return after their lease).
    pub store_errors: u64,
}

/// Runs a handler over one queue. Build with [`Worker::builder`].
///
/// The loop claims at most as many messages as it has free slots (bounded concurrency), runs
/// each handler in its own task (a panic fails the attempt with kind `"panic"`), extends the
/// lease every `heartbeat` while the handler runs, and settles with the handler's [`Outcome`].
/// When idle it waits for the store's wake-up (Postgres NOTIFY) or `poll_interval`.
///
/// On shutdown it stops claiming, waits up to `shutdown_timeout` for in-flight handlers, then
/// aborts the rest and releases their leases so another worker takes them at once.
///
/// It takes the whole [`Queue`]: besides the worker's contract ([`QueueStore`](crate::QueueStore)) it
/// reads the queue's [`stats`](crate::QueueAdmin::stats) every `stats_interval` for
/// [`WorkerHooks::queue_stats`].
///
/// Every store call it makes (claim, heartbeat, ack, fail, release, stats) is bounded by
/// `store_timeout`: a store that never answers (a black-holed database connection) fails the
/// call with [`Error::StoreUnavailable`] instead of holding a slot, the loop or the shutdown forever.
/// What such a call leaves behind is recovered by the lease, as after a crash.
pub struct Worker {
    store: Arc<dyn Queue>,
    queue: String,
    concurrency: usize,
    batch_size: usize,
    lease: Duration,
    heartbeat: Duration,
    poll_interval: Duration,
    shutdown_timeout: Duration,
    stats_interval: Duration,
    store_timeout: Duration,
    hooks: Arc<dyn WorkerHooks>,
    span_hook: Option<SpanHook>,
}

/// Called with each claimed message and the span its attempt runs in (see
/// [`WorkerBuilder::on_span`]).
pub type SpanHook = Arc<dyn Fn(&Message, &tracing::Span) + Send + Sync>;

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.queue)
            .field("concurrency", &self.concurrency)
            .field("batch_size", &self.batch_size)
            .field("lease", &self.lease)
            .field("heartbeat", &self.heartbeat)
            .field("store_timeout", &self.store_timeout)
            .finish_non_exhaustive()
    }
}

/// The default bound of one store call made by the worker.
pub const DEFAULT_WORKER_STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`Worker`].
///
/// Defaults: concurrency 8, batch size = concurrency, lease 30 s, heartbeat every lease / 3,
/// poll interval 1 s, shutdown timeout 30 s, stats every 15 s, store timeout 10 s
/// ([`DEFAULT_WORKER_STORE_TIMEOUT`]), no hooks.
pub struct WorkerBuilder {
    store: Arc<dyn Queue>,
    queue: String,
    concurrency: usize,
    batch_size: Option<usize>,
    lease: Duration,
    heartbeat: Option<Duration>,
    poll_interval: Duration,
    shutdown_timeout: Duration,
    stats_interval: Duration,
    store_timeout: Duration,
    hooks: Arc<dyn WorkerHooks>,
    span_hook: Option<SpanHook>,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// Handlers running at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Most messages claimed in one store call (at least 1; capped by free slots).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = Some(n);
        self
    }

    /// How long a claim holds a message before another worker may take it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often a running handler's lease is extended (must be shorter than the lease).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }

    /// The longest idle wait before claiming again (the fallback when no wake-up arrives).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// How long shutdown waits for in-flight handlers before releasing their messages.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How often [`WorkerHooks::queue_stats`] is called.
    pub fn stats_interval(mut self, every: Duration) -> Self {
        self.stats_interval = every;
        self
    }

    /// The longest one store call (claim, heartbeat, ack, fail, release, stats) may take
    /// (positive; default [`DEFAULT_WORKER_STORE_TIMEOUT`]). A call that outlasts it counts as a store
    /// error ([`Error::StoreUnavailable`], reported to [`WorkerHooks::store_error`]) and the worker
    /// keeps going: a claim is tried again after `poll_interval`, a heartbeat at the next beat,
    /// and a message whose ack or fail timed out comes back when its lease expires.
    ///
    /// It does not cancel the work on the server: an ack that timed out may still commit.
    /// Keep it above the store's normal worst case (a claim of `batch_size` rows under load).
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Metrics hooks.
    pub fn hooks(mut self, hooks: Arc<dyn WorkerHooks>) -> Self {
        self.hooks = hooks;
        self
    }

    /// A hook called with each claimed message and the `dlq.process` span its attempt runs
    /// in, before the span is entered: where a service continues the message's trace, e.g.
    /// sets the span's OpenTelemetry parent (and a link) from
    /// [`Message::trace_context`](crate::Message::trace_context). The crate knows no
    /// OpenTelemetry; it only hands over the span. Keep it cheap: it runs once per attempt.
    pub fn on_span(
        mut self,
        hook: impl Fn(&Message, &tracing::Span) + Send + Sync + 'static,
    ) -> Self {
        self.span_hook = Some(Arc::new(hook));
        self
    }

    /// The worker, or the first invalid setting.
    pub fn build(self) -> Result<Worker, Error> {
        crate::message::check_name("queue name", &self.queue)
            .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        if self.concurrency == 0 {
            return Err(Error::InvalidConfig(
                "concurrency must be at least 1".into(),
            ));
        }
        let batch_size = self.batch_size.unwrap_or(self.concurrency);
        if batch_size == 0 {
            return Err(Error::InvalidConfig("batch_size must be at least 1".into()));
        }
        crate::store::check_claim(&self.queue, self.lease)
            .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        let heartbeat = self.heartbeat.unwrap_or(self.lease / 3);
        if heartbeat.is_zero() || heartbeat >= self.lease {
            return Err(Error::InvalidConfig(format!(
                "heartbeat ({heartbeat:?}) must be positive and shorter than the lease ({:?})",
                self.lease
            )));
        }
        for (name, d) in [
            ("poll_interval", self.poll_interval),
            ("stats_interval", self.stats_interval),
            ("store_timeout", self.store_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::InvalidConfig(format!("{name} must be positive")));
            }
        }
        Ok(Worker {
            store: self.store,
            queue: self.queue,
            concurrency: self.concurrency,
            batch_size,
            lease: self.lease,
            heartbeat,
            poll_interval: self.poll_interval,
            shutdown_timeout: self.shutdown_timeout,
            stats_interval: self.stats_interval,
            store_timeout: self.store_timeout,
            hooks: self.hooks,
            span_hook: self.span_hook,
        })
    }
}

/// How one message ended, for the report.
enum Settled {
    Acked,
    Retried,
    Snoozed,
    Dead,
    LeaseLost,
    StoreError,
}

/// Aborts a spawned handler when its supervising task is dropped or aborted.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type InFlight = Arc<Mutex<HashMap<MessageId, Lease>>>;

/// One ack waiting for the acker: the lease, and where to say whether it was still held.
type AckRequest = (Lease, oneshot::Sender<Result<bool, Error>>);

/// The most acks written in one batch.
const MAX_ACK_BATCH: usize = 256;

/// Writes the acks of messages that finish together in one store call
/// ([`QueueStore::ack_batch_ids`](crate::QueueStore::ack_batch_ids)): one commit instead of one each. It never waits to fill a
/// batch: it writes what is queued at once, and what arrives meanwhile goes in the next
/// write, so an ack waits at most for the write before it (group commit).
async fn acker(
    store: Arc<dyn Queue>,
    mut requests: mpsc::UnboundedReceiver<AckRequest>,
    store_timeout: Duration,
) {
    let mut batch: Vec<AckRequest> = Vec::new();
    while requests.recv_many(&mut batch, MAX_ACK_BATCH).await > 0 {
        let leases: Vec<Lease> = batch.iter().map(|(lease, _)| lease.clone()).collect();
        let acked = bounded(store_timeout, "ack", store.ack_batch_ids(&leases)).await;
        match acked {
            Ok(ids) => {
                let ids: std::collections::HashSet<MessageId> = ids.into_iter().collect();
                for (lease, reply) in batch.drain(..) {
                    let _ = reply.send(Ok(ids.contains(&lease.id)));
                }
            }
            Err(e) => {
                // Each waiting handler reports the failure of its own ack.
                let text = e.to_string();
                let mut first = Some(e);
                for (_, reply) in batch.drain(..) {
                    let e = first.take().unwrap_or_else(|| {
                        Error::StoreUnavailable(Box::new(AckFailed(text.clone())))
                    });
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}

/// The failure of a batched ack, as told to every handler of the batch but the first.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct AckFailed(String);

impl Worker {
    /// A builder for a worker over `queue` of `store`.
    pub fn builder(store: Arc<dyn Queue>, queue: impl Into<String>) -> WorkerBuilder {
        WorkerBuilder {
            store,
            queue: queue.into(),
            concurrency: 8,
            batch_size: None,
            lease: Duration::from_secs(30),
            heartbeat: None,
            poll_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            stats_interval: Duration::from_secs(15),
            store_timeout: DEFAULT_WORKER_STORE_TIMEOUT,
            hooks: Arc::new(NoHooks),
            span_hook: None,
        }
    }

    /// The queue it consumes.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Runs `handler` over the queue until `shutdown` completes, then shuts down gracefully.
    /// Must run inside a tokio runtime (handlers are spawned).
    pub async fn run<H, Fut, S>(&self, handler: H, shutdown: S) -> WorkerReport
    where
        H: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
        S: Future<Output = ()>,
    {
        let handler = Arc::new(handler);
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let in_flight: InFlight = Arc::default();
        let mut tasks: JoinSet<Settled> = JoinSet::new();
        let (acks, ack_requests) = mpsc::unbounded_channel();
        let mut acker = AbortOnDrop(tokio::spawn(acker(
            self.store.clone(),
            ack_requests,
            self.store_timeout,
        )));
        let mut report = WorkerReport::default();
        let mut next_stats = Instant::now();
        let mut shutdown = std::pin::pin!(shutdown);

        loop {
            while let Some(done) = tasks.try_join_next() {
                tally(&mut report, done);
            }
            if Instant::now() >= next_stats {
                next_stats = Instant::now() + self.stats_interval;
                self.report_stats().await;
            }
            let free = slots.available_permits();
            if free == 0 {
                tokio::select! {
                    () = &mut shutdown => break,
                    Some(done) = tasks.join_next() => tally(&mut report, done),
                }
                continue;
            }
            let claimed = tokio::select! {
                () = &mut shutdown => break,
                claimed = bounded(
                    self.store_timeout,
                    "claim",
                    self.store.claim(&self.queue, free.min(self.batch_size), self.lease),
                ) => claimed,
            };
            match claimed {
                Ok(claimed) if !claimed.is_empty() => {
                    for c in claimed {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            // Cannot happen (we claimed at most `free`); give it back if it does.
                            let _ = bounded(
                                self.store_timeout,
                                "release",
                                self.store.release(&c.lease),
                            )
                            .await;
                            continue;
                        };
                        in_flight.lock().insert(c.lease.id, c.lease.clone());
                        let job = Job {
                            store: self.store.clone(),
                            hooks: self.hooks.clone(),
                            in_flight: in_flight.clone(),
                            acks: acks.clone(),
                            lease_for: self.lease,
                            heartbeat: self.heartbeat,
                            store_timeout: self.store_timeout,
                            span_hook: self.span_hook.clone(),
                        };
                        let handler = handler.clone();
                        tasks.spawn(async move {
                            let settled = job.run(c, move |m| handler(m)).await;
                            drop(permit);
                            settled
                        });
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = self.store.wait_for_work(&self.queue, self.poll_interval) => {}
                        Some(done) = tasks.join_next() => tally(&mut report, done),
                    }
                }
                Err(e) => {
                    self.hooks.store_error(&self.queue, &e);
                    tracing::warn!(queue = %self.queue, error = %e, "claim failed");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(self.poll_interval) => {}
                    }
                }
            }
        }

        // Shutdown: no more claims; let in-flight handlers finish within the deadline.
        let drained = tokio::time::timeout(self.shutdown_timeout, async {
            while let Some(done) = tasks.join_next().await {
                tally(&mut report, done);
            }
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while let Some(done) = tasks.join_next().await {
                tally(&mut report, done);
            }
        }
        // Every handler is settled or aborted: let the acker write what it holds (bounded by
        // its store timeout), then stop it.
        drop(acks);
        let _ = (&mut acker.0).await;
        if drained.is_err() {
            let leftover: Vec<Lease> = in_flight.lock().drain().map(|(_, l)| l).collect();
            for lease in leftover {
                match bounded(self.store_timeout, "release", self.store.release(&lease)).await {
                    Ok(()) => report.released += 1,
                    Err(Error::LeaseLost(_)) => {}
                    Err(e) => {
                        report.store_errors += 1;
                        self.hooks.store_error(&self.queue, &e);
                    }
                }
            }
        }
        report
    }

    async fn report_stats(&self) {
        match bounded(self.store_timeout, "stats", self.store.stats()).await {
            Ok(all) => {
                let stats = all
                    .into_iter()
                    .find(|s| s.queue == self.queue)
                    .unwrap_or_else(|| QueueStats::empty(&self.queue));
                self.hooks.queue_stats(&stats);
            }
            Err(e) => self.hooks.store_error(&self.queue, &e),
        }
    }
}

/// A store call that did not answer within the worker's `store_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("{operation} did not answer within {after:?}")]
struct StoreTimeout {
    operation: &'static str,
    after: Duration,
}

/// Runs one store call with the worker's bound; an elapsed call is the store being
/// unavailable, which every caller already handles (report it, keep going, let leases recover).
async fn bounded<T>(
    after: Duration,
    operation: &'static str,
    call: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(after, call).await {
        Ok(result) => result,
        Err(_) => Err(Error::StoreUnavailable(Box::new(StoreTimeout {
            operation,
            after,
        }))),
    }
}

fn tally(report: &mut WorkerReport, done: Result<Settled, tokio::task::JoinError>) {
    match done {
        Ok(Settled::Acked) => report.acked += 1,
        Ok(Settled::Retried) => report.retried += 1,
        Ok(Settled::Snoozed) => report.snoozed += 1,
        Ok(Settled::Dead) => report.dead += 1,
        Ok(Settled::LeaseLost) => report.lease_lost += 1,
        Ok(Settled::StoreError) => report.store_errors += 1,
        // Aborted at shutdown: its lease is released by the caller.
        Err(_) => {}
    }
}

/// Everything one message's task needs.
struct Job {
    store: Arc<dyn Queue>,
    hooks: Arc<dyn WorkerHooks>,
    in_flight: InFlight,
    acks: mpsc::UnboundedSender<AckRequest>,
    lease_for: Duration,
    heartbeat: Duration,
    store_timeout: Duration,
    span_hook: Option<SpanHook>,
}

/// The span one attempt runs in: a root (whatever span the worker loop runs in, a message's
/// attempt is not part of it), named and attributed after the OpenTelemetry messaging
/// conventions for a consumer's "process" operation, so that a service exporting traces gets
/// conventional spans without this crate knowing OpenTelemetry. `outcome` is recorded when
/// the attempt settles (`ack`, `retry`, `dead`, `snooze`, `lease_lost`, `store_error`).
fn process_span(message: &Message, attempt: u32) -> tracing::Span {
    tracing::info_span!(
        parent: None,
        "dlq.process",
        otel.name = %format_args!("process {}", message.queue),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "steadfast_dlq",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %message.queue,
        messaging.message.id = %message.id,
        messaging.message.conversation_id = message.correlation_id.as_deref(),
        attempt,
        outcome = tracing::field::Empty,
    )
}

impl Job {
    /// Acks through the worker's acker (batched with the acks of messages finishing
    /// together): `Ok(false)` when the lease was lost. Bounded by `store_timeout`.
    async fn ack(&self, lease: &Lease) -> Result<bool, Error> {
        let (reply, answer) = oneshot::channel();
        if self.acks.send((lease.clone(), reply)).is_err() {
            // The acker is gone (cannot happen while the worker runs): ack alone.
            return match bounded(self.store_timeout, "ack", self.store.ack(lease)).await {
                Ok(()) => Ok(true),
                Err(Error::LeaseLost(_)) => Ok(false),
                Err(e) => Err(e),
            };
        }
        bounded(self.store_timeout, "ack", async {
            answer.await.map_err(|_| {
                Error::StoreUnavailable(Box::new(AckFailed("the acker stopped".to_owned())))
            })?
        })
        .await
    }

    async fn run<H, Fut>(self, claimed: crate::Claimed, handler: H) -> Settled
    where
        H: FnOnce(Message) -> Fut,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let span = process_span(&claimed.message, claimed.lease.attempt);
        if let Some(hook) = &self.span_hook {
            hook(&claimed.message, &span);
        }
        let settled = self
            .attempt(claimed, handler)
            .instrument(span.clone())
            .await;
        let (outcome, error) = match settled {
            Settled::Acked => ("ack", false),
            Settled::Retried => ("retry", true),
            Settled::Snoozed => ("snooze", false),
            Settled::Dead => ("dead", true),
            Settled::LeaseLost => ("lease_lost", true),
            Settled::StoreError => ("store_error", true),
        };
        span.record("outcome", outcome);
        if error {
            span.record("otel.status_code", "error");
        }
        settled
    }

    async fn attempt<H, Fut>(self, claimed: crate::Claimed, handler: H) -> Settled
    where
        H: FnOnce(Message) -> Fut,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let crate::Claimed { message, mut lease } = claimed;
        let id = message.id;
        let queue = message.queue.clone();
        let started = Instant::now();
        tracing::debug!(
            queue = %queue,
            id = %id,
            attempt = lease.attempt,
            correlation_id = message.correlation_id.as_deref().unwrap_or(""),
            "handling message"
        );
        // The handler runs in its own task so that a panic fails the attempt instead of
        // leaving the message to its lease.
        // The handler's work is a child of this attempt's span, in its task too.
        let mut handle = AbortOnDrop(tokio::spawn(
            handler(message).instrument(tracing::Span::current()),
        ));
        let mut beat = tokio::time::interval_at(Instant::now() + self.heartbeat, self.heartbeat);
        let outcome = loop {
            tokio::select! {
                joined = &mut handle.0 => break match joined {
                    Ok(outcome) => outcome,
                    Err(e) => Outcome::retry("panic", format!("handler panicked: {e}")),
                },
                _ = beat.tick() => match bounded(
                    self.store_timeout,
                    "heartbeat",
                    self.store.extend(&lease, self.lease_for),
                )
                .await
                {
                    Ok(extended) => {
                        lease = extended;
                        self.in_flight.lock().insert(id, lease.clone());
                    }
                    Err(Error::LeaseLost(_)) => {
                        self.in_flight.lock().remove(&id);
                        self.hooks.lease_lost(&queue, id);
                        return Settled::LeaseLost;
                    }
                    // Keep working; the next beat tries again before the lease runs out.
                    Err(e) => self.hooks.store_error(&queue, &e),
                },
            }
        };
        let latency = started.elapsed();
        let settled = match outcome {
            Outcome::Ack => match self.ack(&lease).await {
                Ok(true) => {
                    self.hooks.processed(&queue, latency);
                    Ok(Settled::Acked)
                }
                Ok(false) => Err(Error::LeaseLost(id)),
                Err(e) => Err(e),
            },
            Outcome::Snooze(snooze) => {
                match bounded(
                    self.store_timeout,
                    "snooze",
                    self.store.snooze(&lease, snooze.clone()),
                )
                .await
                {
                    Ok(State::Dead) => {
                        tracing::warn!(
                            queue = %queue, id = %id, snooze = %snooze,
                            "dead-lettered: waited past the queue's horizon"
                        );
                        self.hooks.snooze_dead_lettered(&queue, latency, &snooze);
                        Ok(Settled::Dead)
                    }
                    Ok(_) => {
                        self.hooks.snoozed(&queue, latency, &snooze);
                        Ok(Settled::Snoozed)
                    }
                    Err(e) => Err(e),
                }
            }
            Outcome::Retry(failure) | Outcome::Dead(failure) => {
                match bounded(
                    self.store_timeout,
                    "fail",
                    self.store.fail(&lease, failure.clone()),
                )
                .await
                {
                    Ok(State::Dead) => {
                        tracing::warn!(queue = %queue, id = %id, error = %failure, "dead-lettered");
                        self.hooks.dead_lettered(&queue, latency, &failure);
                        Ok(Settled::Dead)
                    }
                    Ok(_) => {
                        self.hooks.retried(&queue, latency, &failure);
                        Ok(Settled::Retried)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        self.in_flight.lock().remove(&id);
        match settled {
            Ok(s) => s,
            Err(Error::LeaseLost(_)) => {
                self.hooks.lease_lost(&queue, id);
                Settled::LeaseLost
            }
            Err(e) => {
                tracing::warn!(queue = %queue, id = %id, error = %e, "settling failed");
                self.hooks.store_error(&queue, &e);
                Settled::StoreError
            }
        }
    }
}
