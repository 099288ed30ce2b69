//! The worker side: what happens to a queued message.
//!
//! [`pipeline`] holds the steps (load the conversation, route, call the downstream, send the
//! reply, save the conversation) and the one mapping from a step's error to the queue's
//! [`Outcome`]: [`Outcome::Retry`] for a failed attempt (the queue backs off and, after the
//! last attempt, dead-letters the message with every attempt's error),
//! [`Outcome::Snooze`] when a breaker refused the call or its half-open probe failed (no
//! attempt spent; `worker.retry_horizon_seconds` bounds the wait), or [`Outcome::Dead`] when
//! no retry can help.
//!
//! Every store call here is bounded by `storage.store_timeout`: a database that stops
//! answering fails the attempt (kind `store_timeout`, retried) instead of hanging the slot.
//! Outbound calls follow no redirects, read at most `worker.max_response_bytes` of a reply,
//! and send (and record) at most WhatsApp's 4096 characters of it.

pub mod body;
pub mod conversation;
pub mod downstream;
pub mod graph;
pub mod pipeline;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use steadfast_circuit_breaker::State as BreakerState;
use steadfast_dlq::{Failure, Message, Outcome, QueueStats, WorkerHooks};
use steadfast_retry::WallClock;
use steadfast_service_registry::Registry;
use tracing::Instrument;

use crate::config::Config;
use crate::mask::Masked;
use crate::payload::InboundMessage;
use crate::routing::Router;
use conversation::Conversations;
use graph::GraphClient;

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
    /// Replies.
    pub graph: GraphClient,
    /// HTTP client for downstream calls.
    pub http: reqwest::Client,
    /// Per-sender locks (striped): one sender's messages are handled one at a time in this
    /// process, so they do not fight over the conversation's version and its history stays in
    /// order. Across processes, the store's version check still serializes them.
    pub sender_locks: SenderLocks,
    /// The wall clock conversations are timed by (`SystemClock` in production; tests pass a
    /// `ManualClock`).
    pub clock: Arc<dyn WallClock>,
    /// A reply's actions, run as sagas ([`crate::actions`]).
    pub actions: crate::actions::Actions,
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
            Err(e) => return pipeline::outcome(&pipeline::StepError::BadPayload(e.to_string())),
        };
        let span = tracing::info_span!(
            "message",
            correlation_id = %job.correlation_id,
            message_id = %job.message_id,
            from = %Masked(&job.from),
            attempt = message.attempts,
        );
        let past_horizon = message.waiting_since.is_some_and(|since| {
            chrono::Duration::from_std(self.config.worker.retry_horizon)
                .is_ok_and(|horizon| self.now() - since > horizon)
        });
        let attempt = pipeline::Attempt {
            number: message.attempts,
            max: message.max_attempts,
            past_horizon,
        };
        let outcome = async {
            let _turn = self.sender_locks.of(&job.from).lock().await;
            self.process_at(&job, attempt).await
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
            Outcome::Snooze(s) => tracing::info!(
                kind = s.kind(),
                error = s.message(),
                "downstream unavailable; snoozed without spending an attempt"
            ),
        });
        outcome
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

    /// Every breaker: the ones outside the registry (`whatsapp-graph-api`, `redis-dedup`,
    /// `action:<type>`) under
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
        let is_open = |s: BreakerState| matches!(s, BreakerState::Open | BreakerState::ForcedOpen);
        let action_breakers: serde_json::Map<String, Value> = self
            .actions
            .configured()
            .into_iter()
            .filter_map(|k| {
                let name = k.breaker_name();
                self.breakers
                    .get(&name)
                    .map(|b| (name, json!(b.state().as_str())))
            })
            .collect();
        let actions_down = action_breakers
            .values()
            .any(|s| matches!(s.as_str(), Some("open" | "forced_open")));
        let mut checks = vec![
            (
                "services".into(),
                json!({"status": "ok", "services": services}),
            ),
            (
                graph::BREAKER.into(),
                json!({
                    "status": if is_open(graph_state) { "down" } else { "ok" },
                    "breaker": graph_state.as_str(),
                    "sends": self.config.whatsapp.access_token.is_some(),
                }),
            ),
        ];
        if !action_breakers.is_empty() {
            checks.push((
                "actions".into(),
                json!({
                    "status": if actions_down { "down" } else { "ok" },
                    "breakers": action_breakers,
                }),
            ));
        }
        checks
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
    fn snoozed(&self, _queue: &str, latency: Duration, _snooze: &steadfast_dlq::Snooze) {
        metrics::counter!(crate::metrics::WORKER_OUTCOMES, "outcome" => "snooze").increment(1);
        metrics::histogram!(crate::metrics::WORKER_DURATION).record(latency);
    }
    fn snooze_dead_lettered(
        &self,
        _queue: &str,
        latency: Duration,
        _snooze: &steadfast_dlq::Snooze,
    ) {
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
