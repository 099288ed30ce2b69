//! Prometheus metrics: names and the process-wide recorder (installed once, shared by every
//! router of the process, as in the webhook).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// HTTP requests, labelled `route`, `status`.
pub const HTTP_REQUESTS: &str = "payments_http_requests_total";
/// Transfers made.
pub const TRANSFERS: &str = "payments_transfers_total";
/// Payouts finished, labelled `status` (`succeeded`, `failed`).
pub const PAYOUTS: &str = "payments_payouts_total";
/// Deposits, labelled `result` (`credited`, `duplicate`).
pub const DEPOSITS: &str = "payments_deposits_total";
/// Callbacks at `/momo/callback`, labelled `outcome` (`accepted`, `duplicate`, `forbidden_ip`,
/// `bad_signature`, `rate_limited`, `invalid_payload`, `store_unavailable`).
pub const CALLBACKS: &str = "payments_callbacks_total";
/// Provider calls, labelled `outcome` (`accepted`, `retryable`, `refused`).
pub const PROVIDER_CALLS: &str = "payments_provider_calls_total";
/// Provider call latency in seconds.
pub const PROVIDER_DURATION: &str = "payments_provider_call_duration_seconds";
/// Callback worker outcomes, labelled `outcome` (`done`, `retry`, `dead`).
pub const CALLBACK_WORKER: &str = "payments_callback_worker_total";
/// Gauges refreshed in the background: `payments_ledger_*`, `payments_queue_*`.
pub const LEDGER_PENDING_PAYOUTS: &str = "payments_ledger_pending_payouts";
/// 1 when the ledger invariant holds at the last refresh.
pub const LEDGER_INVARIANT: &str = "payments_ledger_invariant_ok";
/// Parked callbacks (dead letters).
pub const CALLBACKS_PARKED: &str = "payments_callbacks_parked";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}
