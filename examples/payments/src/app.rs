//! The state every handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use steadfast_dlq::Queue;
use steadfast_saga::Operator;
use steadfast_service_kit::ratelimit::IpRateLimiter;

use crate::checks::Checks;
use crate::config::Config;
use crate::ledger::Ledger;
use crate::payout::PayoutService;
use crate::signature::Signer;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The ledger.
    pub ledger: Arc<dyn Ledger>,
    /// Payout sagas.
    pub payouts: PayoutService,
    /// Saga operations (admin).
    pub sagas: Operator,
    /// The callback queue.
    pub queue: Arc<dyn Queue>,
    /// Callback signatures.
    pub signer: Signer,
    /// Per-IP limit on `/momo/callback`.
    pub limiter: IpRateLimiter,
    /// `/health` and gauges, refreshed in the background.
    pub checks: Checks,
    /// `/metrics`.
    pub metrics: PrometheusHandle,
    /// The provider breaker (`momo-provider`), for the admin API's breaker control.
    pub provider_breaker: steadfast_circuit_breaker::CircuitBreaker,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}
