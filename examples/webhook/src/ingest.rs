//! Ingestion: a parsed delivery becomes queue messages in ONE durable write.
//!
//! Order matters for not losing messages:
//! 1. The Redis fast path is asked which `wamid`s were seen (fail-open: an error or a slow
//!    answer counts as "not seen"). Seen ones are answered as duplicates without a write.
//! 2. Every other message goes into one `enqueue_batch` with its `wamid` as the dedup key: the
//!    queue's key is the truth; a duplicate the fast path missed is caught here.
//! 3. Only after that write committed are the ids marked seen in Redis. Marking first would
//!    lose a message whose write then failed: Meta's retry would be dropped as a duplicate.
//!
//! A queue store error, or a write that does not finish within [`WRITE_TIMEOUT`], fails the
//! whole delivery (503): Meta retries it, and the retry is de-duplicated against whatever did
//! commit.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use steadfast_circuit_breaker::{CallError, CircuitBreaker};
use steadfast_dlq::{Enqueued, NewMessage, Queue};
use steadfast_idempotency::Deduplicator;
use tracing::Instrument;

use crate::payload::{Delivery, InboundMessage};

/// How long the fast path may take before it is skipped (fail-open).
pub const FAST_PATH_TIMEOUT: Duration = Duration::from_millis(250);

/// How long the durable write of one delivery may take before the delivery is refused with
/// 503. A store that stalls (a network partition that swallows packets, a database that
/// accepts connections but never answers) must not hold Meta's request open: a refused
/// delivery is retried and de-duplicated by its message ids, even if the write did commit.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The name of the breaker in front of the Redis fast path.
pub const FAST_PATH_BREAKER: &str = "redis-dedup";

/// The fast path's breaker settings: a Redis that keeps failing (or answering slower than
/// [`FAST_PATH_TIMEOUT`]) is skipped for 10 s instead of costing every delivery a timeout.
pub fn fast_path_breaker_config() -> steadfast_circuit_breaker::Config {
    steadfast_circuit_breaker::Config::builder()
        .failure_rate_threshold(50.0)
        .count_window(20)
        .minimum_calls(10)
        .open_duration(Duration::from_secs(10))
        .call_timeout(Some(FAST_PATH_TIMEOUT))
        .build()
        .expect("static breaker settings are valid")
}

/// What ingestion did with a delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestReport {
    /// Messages newly stored.
    pub accepted: usize,
    /// Messages already known (fast path or queue key).
    pub duplicates: usize,
    /// Status updates recorded.
    pub statuses: usize,
    /// Changes/objects ignored.
    pub ignored: usize,
    /// Items skipped as malformed.
    pub malformed: usize,
    /// Messages and statuses of a delivery refused as stale (every timestamp older than
    /// `http.max_delivery_age_seconds`): a replay, answered 200 and not stored.
    pub stale: usize,
}

/// Puts deliveries on the queue.
#[derive(Clone)]
pub struct Ingestor {
    queue: Arc<dyn Queue>,
    queue_name: String,
    dedup: Option<Deduplicator>,
    breaker: Option<CircuitBreaker>,
}

impl std::fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingestor")
            .field("queue_name", &self.queue_name)
            .field("fast_path", &self.dedup.is_some())
            .finish()
    }
}

impl Ingestor {
    /// Ingests into `queue_name` of `queue`, with an optional fast path (Redis, or memory in
    /// the demo) behind an optional breaker.
    pub fn new(
        queue: Arc<dyn Queue>,
        queue_name: impl Into<String>,
        dedup: Option<Deduplicator>,
        breaker: Option<CircuitBreaker>,
    ) -> Self {
        Self {
            queue,
            queue_name: queue_name.into(),
            dedup,
            breaker,
        }
    }

    /// Runs one fast-path call under the breaker and the timeout; `None` when it was skipped
    /// (breaker open) or timed out.
    async fn guarded<T: 'static, F>(
        &self,
        call: F,
    ) -> Option<Result<T, steadfast_idempotency::Error>>
    where
        F: std::future::Future<Output = Result<T, steadfast_idempotency::Error>>,
    {
        match &self.breaker {
            Some(b) => match b.call(|| call).await {
                Ok(v) => Some(Ok(v)),
                Err(CallError::Inner(e)) => Some(Err(e)),
                Err(_) => None,
            },
            None => tokio::time::timeout(FAST_PATH_TIMEOUT, call).await.ok(),
        }
    }

    /// The queue store.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    /// The fast path, if configured.
    pub fn dedup(&self) -> Option<&Deduplicator> {
        self.dedup.as_ref()
    }

    /// Which of `ids` the fast path has seen; errors and timeouts count as unseen.
    async fn seen(&self, ids: &[&str]) -> Vec<bool> {
        let Some(dedup) = &self.dedup else {
            return vec![false; ids.len()];
        };
        join_all(ids.iter().map(|id| async move {
            let (seen, result) = match self.guarded(dedup.seen(id)).await {
                Some(Ok(true)) => (true, "hit"),
                Some(Ok(false)) => (false, "miss"),
                Some(Err(_)) => (false, "error"),
                None => (false, "skipped"),
            };
            metrics::counter!(crate::metrics::DEDUP_FAST_PATH, "result" => result).increment(1);
            seen
        }))
        .await
    }

    /// Marks ids seen after their write committed; failures only cost a later duplicate
    /// write, which the queue key absorbs.
    async fn mark(&self, ids: &[&str]) {
        let Some(dedup) = &self.dedup else { return };
        join_all(ids.iter().map(|id| async move {
            if !matches!(self.guarded(dedup.mark_seen(id)).await, Some(Ok(()))) {
                metrics::counter!(crate::metrics::DEDUP_FAST_PATH, "result" => "mark_error")
                    .increment(1);
            }
        }))
        .await;
    }

    /// Stores every message of `delivery` (one write) and counts its statuses.
    pub async fn ingest(
        &self,
        delivery: &Delivery,
        correlation_id: &str,
    ) -> Result<IngestReport, steadfast_dlq::Error> {
        let mut report = IngestReport {
            statuses: delivery.statuses.len(),
            ignored: delivery.ignored,
            malformed: delivery.malformed,
            ..IngestReport::default()
        };
        let ids: Vec<&str> = delivery
            .messages
            .iter()
            .map(|m| m.message_id.as_str())
            .collect();
        let seen = self.seen(&ids).await;
        let fresh: Vec<&InboundMessage> = delivery
            .messages
            .iter()
            .zip(&seen)
            .filter(|(_, s)| !**s)
            .map(|(m, _)| m)
            .collect();
        report.duplicates = ids.len() - fresh.len();
        // The enqueue as an OpenTelemetry messaging "send" span; its context is stored with
        // every message of the batch, so each attempt of the worker continues this trace.
        let (span, carrier) = if fresh.is_empty() {
            (tracing::Span::none(), None)
        } else {
            crate::telemetry::send_span(&self.queue_name, correlation_id)
        };
        // A message the queue would refuse (an id over 255 bytes, control characters) must
        // not fail the whole delivery into Meta's 7-day retry loop: it is skipped and counted.
        let mut batch = Vec::with_capacity(fresh.len());
        let mut stored = Vec::with_capacity(fresh.len());
        for m in fresh {
            let mut job = m.clone();
            job.correlation_id = correlation_id.to_owned();
            let message = NewMessage::new(
                self.queue_name.clone(),
                serde_json::to_value(&job).expect("a message serializes"),
            )
            .dedup_key(job.message_id.clone())
            // One sender's messages run one at a time and in order, across workers and
            // instances, and a busy sender holds one worker slot, not all of them.
            .group(job.from.clone())
            .correlation_id(correlation_id.to_owned());
            let message = match &carrier {
                Some(c) => message.trace_context(c.clone()),
                None => message,
            };
            if message.validate().is_ok() {
                batch.push(message);
                stored.push(m.message_id.as_str());
            } else {
                report.malformed += 1;
            }
        }
        if !batch.is_empty() {
            span.record("messaging.batch.message_count", batch.len());
            let results = tokio::time::timeout(WRITE_TIMEOUT, self.queue.enqueue_batch(batch))
                .instrument(span.clone())
                .await
                .map_err(|_| {
                    steadfast_dlq::Error::StoreUnavailable(Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {WRITE_TIMEOUT:?}"),
                    )))
                })
                .and_then(|written| written)
                .inspect_err(|_| {
                    span.record("otel.status_code", "error");
                })?;
            for r in &results {
                match r {
                    Enqueued::New(_) => report.accepted += 1,
                    Enqueued::Duplicate(_) => report.duplicates += 1,
                }
            }
            self.mark(&stored).await;
        }
        Ok(report)
    }
}
