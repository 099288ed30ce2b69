//! The application state shared by the handlers.

use std::sync::Arc;

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
    /// `"memory"`, `"sqlite"` or `"postgres"`, shown by `/health`.
    pub store_kind: &'static str,
    /// The worker side (conversations, registry, breakers).
    pub services: Option<Arc<crate::worker::Services>>,
    /// The stores' last check outcome, refreshed in the background: `/health` and `/metrics`
    /// read it instead of touching the stores.
    pub checks: crate::checks::Checks,
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

    /// Sets the gauges read from memory (breaker states). The queue gauges are set by the
    /// background checks ([`crate::checks`]), never per scrape.
    pub fn refresh_gauges(&self) {
        if let Some(s) = &self.services {
            s.refresh_gauges();
        }
    }
}
