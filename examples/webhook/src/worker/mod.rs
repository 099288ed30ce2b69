//! The worker side: what happens to a queued message.
//!
//! For each message: skip it if it was already processed (a durable marker, so a Meta retry
//! that arrives after the first copy finished is not processed twice even with Redis down);
//! advance the sender's conversation and route the message; call the downstream through the
//! service registry; send its reply through the Graph API; record the reply in the
//! conversation; mark the message processed. Failures return [`Outcome::Retry`] (the queue
//! backs off and, after the last attempt, dead-letters the message with every attempt's
//! error) or [`Outcome::Dead`] when no retry can help.
//!
//! Every store call here is bounded by `storage.store_timeout`: a database that stops
//! answering fails the attempt (kind `store_timeout`, retried) instead of hanging the slot.
//! Outbound calls follow no redirects, read at most `worker.max_response_bytes` of a reply,
//! and send (and record) at most WhatsApp's 4096 characters of it.

pub mod body;
pub mod conversation;
pub mod downstream;
pub mod graph;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use steadfast_circuit_breaker::State as BreakerState;
use steadfast_dlq::{Failure, Message, Outcome, QueueStats, WorkerHooks};
use steadfast_idempotency::Deduplicator;
use steadfast_service_registry::Registry;
use steadfast_state_machine::conversation::ConvEvent;
use tracing::Instrument;

use crate::config::Config;
use crate::mask::Masked;
use crate::payload::InboundMessage;
use crate::routing::Router;
use conversation::Conversations;
use downstream::{DownstreamError, DownstreamRequest};
use graph::{GraphClient, SendError};

/// How long the processed-marker lookup may take before it is skipped.
const MARKER_TIMEOUT: Duration = Duration::from_millis(500);

/// Everything the worker (and the admin API) uses.
pub struct Services {
    /// The configuration.
    pub config: Arc<Config>,
    /// Keyword routing.
    pub router: Router,
    /// Downstream services, their endpoints and breakers.
    pub registry: Registry,
    /// Named breakers outside the registry (`whatsapp-graph-api`).
    pub breakers: steadfast_circuit_breaker::Registry,
    /// Conversations by sender.
    pub conversations: Conversations,
    /// Messages already processed (durable in production).
    pub processed: Deduplicator,
    /// Replies.
    pub graph: GraphClient,
    /// HTTP client for downstream calls.
    pub http: reqwest::Client,
    /// Per-sender locks (striped): one sender's messages are handled one at a time in this
    /// process, so they do not fight over the conversation's version and its history stays in
    /// order. Across processes, the store's version check still serializes them.
    pub sender_locks: SenderLocks,
}

/// A fixed set of async mutexes, picked by hashing the sender: bounded memory whatever the
/// number of senders.
#[derive(Debug)]
pub struct SenderLocks(Vec<tokio::sync::Mutex<()>>);

impl Default for SenderLocks {
    fn default() -> Self {
        Self((0..1024).map(|_| tokio::sync::Mutex::new(())).collect())
    }
}

impl SenderLocks {
    /// The lock of `sender`.
    pub fn of(&self, sender: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        sender.hash(&mut h);
        &self.0[(h.finish() % self.0.len() as u64) as usize]
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("services", &self.registry.services())
            .finish_non_exhaustive()
    }
}

fn fallback_reply(config: &Config, service: &str) -> Option<String> {
    config
        .services
        .iter()
        .find(|s| s.name == service)
        .and_then(|s| s.fallback_reply.clone())
        .or_else(|| config.fallback_reply.clone())
}

impl Services {
    /// Handles one claimed queue message.
    pub async fn handle(&self, message: Message) -> Outcome {
        let start = Instant::now();
        let job: InboundMessage = match serde_json::from_value(message.payload.clone()) {
            Ok(j) => j,
            Err(e) => {
                return Outcome::dead("bad_payload", format!("unreadable queue payload: {e}"));
            }
        };
        let span = tracing::info_span!(
            "message",
            correlation_id = %job.correlation_id,
            message_id = %job.message_id,
            from = %Masked(&job.from),
            attempt = message.attempts,
        );
        let outcome = async {
            let _turn = self.sender_locks.of(&job.from).lock().await;
            self.process(&job, message.attempts, message.max_attempts)
                .await
        }
        .instrument(span.clone())
        .await;
        span.in_scope(|| match &outcome {
            Outcome::Ack => tracing::info!(
                elapsed_ms = start.elapsed().as_millis() as u64,
                "message processed"
            ),
            Outcome::Retry(f) => tracing::warn!(
                kind = f.kind(),
                error = f.message(),
                "attempt failed; will retry unless attempts are exhausted"
            ),
            Outcome::Dead(f) => tracing::error!(
                kind = f.kind(),
                error = f.message(),
                "message dead-lettered"
            ),
        });
        outcome
    }

    async fn process(&self, job: &InboundMessage, attempt: u32, max_attempts: u32) -> Outcome {
        let start = Instant::now();
        let store_timeout = self.config.storage.store_timeout;
        let marker_timeout = MARKER_TIMEOUT.min(store_timeout);
        match tokio::time::timeout(marker_timeout, self.processed.seen(&job.message_id)).await {
            Ok(Ok(true)) => {
                tracing::info!("already processed; duplicate skipped");
                metrics::counter!(crate::metrics::WORKER_OUTCOMES, "outcome" => "duplicate")
                    .increment(1);
                return Outcome::Ack;
            }
            Ok(Ok(false)) => {}
            // Unknown: process it (the downstream gets an Idempotency-Key for exactly this case).
            Ok(Err(_)) | Err(_) => {
                tracing::warn!("processed-marker lookup failed; processing anyway")
            }
        }

        let text = job
            .text
            .clone()
            .unwrap_or_else(|| format!("[{}]", job.kind));
        let begun = match conversation::begin(
            &self.conversations,
            &self.router,
            job,
            &text,
            attempt,
            store_timeout,
        )
        .await
        {
            Ok(b) => b,
            Err(e) => return Outcome::retry(e.kind(), e.to_string()),
        };
        let service = begun.service.clone();
        metrics::counter!(crate::metrics::ROUTED, "service" => service.clone(), "reason" => begun.reason.as_str())
            .increment(1);
        tracing::info!(service = %service, reason = begun.reason.as_str(), "routed");

        let request = DownstreamRequest {
            message_id: job.message_id.clone(),
            from: job.from.clone(),
            kind: job.kind.clone(),
            text: job.text.clone(),
            conversation_state: conversation::state_name(begun.conversation.state()),
            correlation_id: job.correlation_id.clone(),
            history: begun
                .conversation
                .context()
                .last_messages
                .iter()
                .cloned()
                .collect(),
        };
        let reply = match downstream::call(
            &self.registry,
            &self.http,
            &service,
            &request,
            self.config.worker.max_response_bytes,
        )
        .await
        {
            Ok(r) => r,
            Err(
                e @ (DownstreamError::Rejected { .. }
                | DownstreamError::Redirected { .. }
                | DownstreamError::TooLarge { .. }),
            ) => {
                self.fail_conversation(job, &format!("{service}: {e}"))
                    .await;
                return Outcome::dead(e.kind(), format!("{service}: {e}"));
            }
            Err(DownstreamError::Retryable {
                kind,
                message,
                retry_after,
            }) => {
                if attempt >= max_attempts {
                    // Last attempt: the user hears something now; the message waits in the
                    // dead letters for an operator's replay.
                    self.fail_conversation(job, &message).await;
                    if let Some(text) = fallback_reply(&self.config, &service) {
                        if let Err(e) = self
                            .graph
                            .send_text(&job.phone_number_id, &job.from, graph::cap_text(&text))
                            .await
                        {
                            tracing::warn!(error = %e, "fallback reply not sent");
                        }
                    }
                }
                let failure = Failure::retryable(kind, message);
                return Outcome::Retry(match retry_after {
                    Some(d) => failure.after(d),
                    None => failure,
                });
            }
        };

        // What is sent is what is recorded: both cut to WhatsApp's limit.
        if let Some(text) = reply
            .reply
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(graph::cap_text)
        {
            match self
                .graph
                .send_text(&job.phone_number_id, &job.from, text)
                .await
            {
                Ok(()) => {}
                Err(
                    e @ (SendError::Refused { .. }
                    | SendError::Redirected { .. }
                    | SendError::BadPhoneNumberId),
                ) => {
                    return Outcome::dead(e.kind(), e.to_string());
                }
                Err(SendError::Retryable {
                    kind,
                    message,
                    retry_after,
                }) => {
                    let failure = Failure::retryable(kind, message);
                    return Outcome::Retry(match retry_after {
                        Some(d) => failure.after(d),
                        None => failure,
                    });
                }
            }
            if let Err(e) = conversation::record(
                &self.conversations,
                &job.from,
                ConvEvent::AgentReply {
                    text: text.to_owned(),
                    done: reply.done,
                },
                store_timeout,
            )
            .await
            {
                // The reply went out; only the history misses it. Not worth a retry that
                // would send the reply twice (a timeout included).
                tracing::warn!(error = %e, "reply sent but not recorded in the conversation");
            }
        }
        // As above: after the reply went out, a timed-out marker is logged, not retried.
        match tokio::time::timeout(
            store_timeout,
            self.processed
                .mark_processed(&job.message_id, start.elapsed()),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "processed marker not written; a redelivery would be processed again")
            }
            Err(_) => tracing::warn!(
                timeout_ms = store_timeout.as_millis() as u64,
                "processed marker timed out; a redelivery would be processed again"
            ),
        }
        Outcome::Ack
    }

    async fn fail_conversation(&self, job: &InboundMessage, reason: &str) {
        if let Err(e) = conversation::record(
            &self.conversations,
            &job.from,
            ConvEvent::Fail {
                reason: reason.to_owned(),
            },
            self.config.storage.store_timeout,
        )
        .await
        {
            tracing::warn!(error = %e, "conversation failure not recorded");
        }
    }

    /// Fires due conversation timeouts (`awaiting_input` / `agent_active` idle for 30 min
    /// → `idle`) as of `now`; returns how many fired.
    pub async fn sweep(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize, String> {
        let report = self
            .conversations
            .sweep(now, 500)
            .await
            .map_err(|e| e.to_string())?;
        for (key, e) in &report.failed {
            tracing::warn!(wa_id = %Masked(key), error = %e, "conversation timeout could not fire");
        }
        let fired = report.fired.len();
        if fired > 0 {
            metrics::counter!(crate::metrics::CONVERSATION_TIMEOUTS).increment(fired as u64);
            tracing::info!(fired, "conversation timeouts fired");
        }
        Ok(fired)
    }

    /// Every breaker: the ones outside the registry (`whatsapp-graph-api`, `redis-dedup`) under
    /// their own names, then each endpoint's as `<service>@<host:port>` (see
    /// [`endpoint_breaker_names`]). These names are what `/metrics`, `/admin/breakers` and the
    /// logs show, so they never carry an endpoint's credentials, path or query.
    pub fn all_breakers(&self) -> Vec<NamedBreaker> {
        let mut out: Vec<_> = self
            .breakers
            .names()
            .into_iter()
            .filter_map(|n| {
                self.breakers.get(&n).map(|breaker| NamedBreaker {
                    name: n,
                    service: None,
                    breaker,
                })
            })
            .collect();
        let endpoints = self.registry.breakers();
        let names = endpoint_breaker_names(
            endpoints
                .iter()
                .map(|b| (b.service.as_str(), b.endpoint.as_str(), b.index)),
        );
        out.extend(
            endpoints
                .into_iter()
                .zip(names)
                .map(|(b, name)| NamedBreaker {
                    name,
                    service: Some(b.service),
                    breaker: b.breaker,
                }),
        );
        out
    }

    /// Health entries: each service's status, and the Graph API breaker.
    pub fn health_checks(&self) -> Vec<(String, Value)> {
        let report = self.registry.report();
        let services: serde_json::Map<String, Value> = report
            .services
            .iter()
            .map(|s| {
                let v = serde_json::to_value(s).unwrap_or(Value::Null);
                (
                    s.name.clone(),
                    v.get("status").cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        let graph_state = self.graph.breaker().state();
        vec![
            (
                "services".into(),
                json!({"status": "ok", "services": services}),
            ),
            (
                graph::BREAKER.into(),
                json!({
                    "status": if matches!(graph_state, BreakerState::Open | BreakerState::ForcedOpen) { "down" } else { "ok" },
                    "breaker": graph_state.as_str(),
                    "sends": self.config.whatsapp.access_token.is_some(),
                }),
            ),
        ]
    }

    /// Sets the breaker gauges.
    pub fn refresh_gauges(&self) {
        for NamedBreaker { name, breaker, .. } in self.all_breakers() {
            let state = breaker.state();
            let code = match state {
                BreakerState::Closed => 0.0,
                BreakerState::Open => 1.0,
                BreakerState::HalfOpen => 2.0,
                BreakerState::Disabled => 3.0,
                BreakerState::ForcedOpen => 4.0,
                BreakerState::MetricsOnly => 5.0,
            };
            let open = matches!(
                state,
                BreakerState::Open | BreakerState::HalfOpen | BreakerState::ForcedOpen
            );
            metrics::gauge!(crate::metrics::BREAKER_STATE, "name" => name.clone()).set(code);
            metrics::gauge!(crate::metrics::BREAKER_OPEN, "name" => name).set(if open {
                1.0
            } else {
                0.0
            });
        }
    }
}

/// A breaker with the name it is shown and addressed by.
#[derive(Debug, Clone)]
pub struct NamedBreaker {
    /// `whatsapp-graph-api`, `redis-dedup`, or `<service>@<host:port>` for an endpoint's.
    pub name: String,
    /// The service, for an endpoint's breaker.
    pub service: Option<String>,
    /// The breaker (state, metrics, manual control).
    pub breaker: steadfast_circuit_breaker::CircuitBreaker,
}

/// The `host:port` of an endpoint URL (the port filled in from the scheme when absent), or
/// `None` when it is not a URL with a host.
fn host_port(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!("{host}:{port}"))
}

/// Names for endpoint breakers given as `(service, endpoint URL, index in the service)`, in
/// the same order: `<service>@<host:port>`, or `<service>.<index>@<host:port>` when two
/// endpoints of one service share a host and port (service names hold no `.`), or
/// `<service>.<index>` when the URL has no host. Only the host and port: the user info, path
/// and query of an endpoint URL can hold credentials, and they are also not needed to tell
/// which downstream a breaker guards.
pub fn endpoint_breaker_names<'a>(
    endpoints: impl IntoIterator<Item = (&'a str, &'a str, usize)>,
) -> Vec<String> {
    let endpoints: Vec<_> = endpoints
        .into_iter()
        .map(|(service, url, index)| (service, host_port(url), index))
        .collect();
    endpoints
        .iter()
        .map(|(service, hp, index)| match hp {
            Some(hp)
                if endpoints
                    .iter()
                    .filter(|(s, h, _)| s == service && h.as_ref() == Some(hp))
                    .count()
                    == 1 =>
            {
                format!("{service}@{hp}")
            }
            Some(hp) => format!("{service}.{index}@{hp}"),
            None => format!("{service}.{index}"),
        })
        .collect()
}

/// Worker hooks exporting metrics.
#[derive(Debug, Default)]
pub struct MetricsHooks;

impl WorkerHooks for MetricsHooks {
    fn processed(&self, _queue: &str, latency: Duration) {
        metrics::counter!(crate::metrics::WORKER_OUTCOMES, "outcome" => "done").increment(1);
        metrics::histogram!(crate::metrics::WORKER_DURATION).record(latency);
    }
    fn retried(&self, _queue: &str, latency: Duration, _failure: &Failure) {
        metrics::counter!(crate::metrics::WORKER_OUTCOMES, "outcome" => "retry").increment(1);
        metrics::histogram!(crate::metrics::WORKER_DURATION).record(latency);
    }
    fn dead_lettered(&self, _queue: &str, latency: Duration, _failure: &Failure) {
        metrics::counter!(crate::metrics::WORKER_OUTCOMES, "outcome" => "dead").increment(1);
        metrics::histogram!(crate::metrics::WORKER_DURATION).record(latency);
    }
    fn lease_lost(&self, _queue: &str, _id: steadfast_dlq::MessageId) {
        metrics::counter!(crate::metrics::WORKER_OUTCOMES, "outcome" => "lease_lost").increment(1);
    }
    fn queue_stats(&self, stats: &QueueStats) {
        for state in steadfast_dlq::State::ALL {
            metrics::gauge!(crate::metrics::QUEUE_DEPTH, "state" => state.as_str())
                .set(stats.count(state) as f64);
        }
        metrics::gauge!(crate::metrics::DEAD_LETTERS).set(stats.dead() as f64);
        metrics::gauge!(crate::metrics::QUEUE_OLDEST_AGE).set(stats.oldest_due_age.as_secs_f64());
    }
    fn store_error(&self, queue: &str, error: &steadfast_dlq::Error) {
        metrics::counter!(crate::metrics::WORKER_STORE_ERRORS).increment(1);
        tracing::error!(queue, error = %error, "queue store error in the worker");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_breakers_are_named_by_service_and_host_port() {
        let names = endpoint_breaker_names([
            ("jobs", "http://user:s3cretpass@127.0.0.1:8080/x?k=1", 0),
            ("jobs", "http://127.0.0.1:8080/y", 1),
            ("jobs", "https://jobs.internal/v1", 2),
            ("ai-agent", "http://[::1]:9000/agent", 0),
            ("ai-agent", "http://127.0.0.1:8080/agent", 1),
            ("odd", "not a url", 0),
        ]);
        assert_eq!(
            names,
            [
                "jobs.0@127.0.0.1:8080",
                "jobs.1@127.0.0.1:8080",
                "jobs@jobs.internal:443",
                "ai-agent@[::1]:9000",
                "ai-agent@127.0.0.1:8080",
                "odd.0",
            ]
        );
    }
}
