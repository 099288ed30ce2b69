//! The application state shared by the handlers.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;

use crate::config::Config;
use crate::ingest::Ingestor;
use crate::ratelimit::IpRateLimiter;
use crate::signature::Verifier;

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Checks `X-Hub-Signature-256`.
    pub verifier: Verifier,
    /// Puts deliveries on the queue.
    pub ingestor: Ingestor,
    /// Per-IP rate limit of `/webhook`.
    pub limiter: IpRateLimiter,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// `"memory"` or `"postgres"`, shown by `/health`.
    pub store_kind: &'static str,
    /// The worker side (conversations, registry, breakers).
    pub services: Option<Arc<crate::worker::Services>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store_kind", &self.store_kind)
            .field("ingestor", &self.ingestor)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Health checks beyond the queue and the fast path: the registry's services, breakers.
    pub async fn extra_health(&self) -> Vec<(String, Value)> {
        match &self.services {
            Some(s) => s.health_checks(),
            None => Vec::new(),
        }
    }

    /// Sets the gauges that are read from stores (queue depth, dead letters, breaker states).
    pub async fn refresh_gauges(&self) {
        use crate::metrics as m;
        if let Ok(Ok(stats)) =
            tokio::time::timeout(Duration::from_secs(2), self.ingestor.queue().stats()).await
        {
            let queue = &self.config.storage.queue_name;
            // A queue that holds nothing is absent from the stats: report zeros.
            let s = stats
                .into_iter()
                .find(|s| &s.queue == queue)
                .unwrap_or_else(|| steadfast_dlq::QueueStats::empty(queue.clone()));
            for state in steadfast_dlq::State::ALL {
                metrics::gauge!(m::QUEUE_DEPTH, "state" => state.as_str())
                    .set(s.count(state) as f64);
            }
            metrics::gauge!(m::DEAD_LETTERS).set(s.dead() as f64);
            metrics::gauge!(m::QUEUE_OLDEST_AGE).set(s.oldest_due_age.as_secs_f64());
        }
        if let Some(s) = &self.services {
            s.refresh_gauges();
        }
    }
}
