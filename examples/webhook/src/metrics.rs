//! Prometheus metrics: names, descriptions and the process-wide recorder.
//!
//! The `metrics` facade is process-global, so the recorder is installed once per process and
//! shared by every router built in it (integration tests build several).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
pub use steadfast_service_kit::metrics::{ADMIN_AUTH_FAILURES, CONNECTIONS_CLOSED, RATE_LIMITED};

/// HTTP requests, labelled `route`, `method`, `status`.
pub const HTTP_REQUESTS: &str = "webhook_http_requests_total";
/// HTTP request latency in seconds, labelled `route`.
pub const HTTP_DURATION: &str = "webhook_http_request_duration_seconds";
/// Signature failures, labelled `reason` (`missing`, `malformed`, `mismatch`).
pub const SIGNATURE_FAILURES: &str = "webhook_signature_failures_total";
/// Inbound messages, labelled `outcome` (`accepted`, `duplicate`, `malformed`, `stale`).
pub const MESSAGES: &str = "webhook_messages_total";
/// Changes or deliveries ignored (unknown `field` / `object`).
pub const IGNORED: &str = "webhook_ignored_total";
/// Status updates, labelled `status` (`sent`, `delivered`, `read`, `failed`, `other`).
pub const STATUSES: &str = "webhook_statuses_total";
/// Redis fast-path lookups, labelled `result` (`hit`, `miss`, `error`).
pub const DEDUP_FAST_PATH: &str = "webhook_dedup_fast_path_total";
/// Queue depth, labelled `state` (`pending`, `running`, `retrying`, `dead`, `done`).
pub const QUEUE_DEPTH: &str = "webhook_queue_depth";
/// Dead letters now in the queue.
pub const DEAD_LETTERS: &str = "webhook_dead_letters";
/// Age of the oldest due message, in seconds.
pub const QUEUE_OLDEST_AGE: &str = "webhook_queue_oldest_age_seconds";
/// Worker outcomes, labelled `outcome` (`done`, `retry`, `snooze`, `dead`, `lease_lost`).
pub const WORKER_OUTCOMES: &str = "webhook_worker_outcomes_total";
/// Worker handling time in seconds.
pub const WORKER_DURATION: &str = "webhook_worker_duration_seconds";
/// Breaker state per breaker, labelled `name`: 0 closed, 1 open, 2 half-open, 3 disabled,
/// 4 forced open, 5 metrics only.
pub const BREAKER_STATE: &str = "webhook_breaker_state";
/// 1 while a breaker is open, half-open or forced open (not taking normal traffic), else 0.
pub const BREAKER_OPEN: &str = "webhook_breaker_open";
/// Downstream call latency in seconds, labelled `service`, `outcome`.
pub const DOWNSTREAM_DURATION: &str = "webhook_downstream_duration_seconds";
/// Routed messages, labelled `service`, `reason`.
pub const ROUTED: &str = "webhook_routed_total";
/// Outbound replies, labelled `outcome` (`sent`, `logged`, `failed`, `rejected`).
pub const OUTBOUND_REPLIES: &str = "webhook_outbound_replies_total";
/// Conversation timeouts fired by the sweeper.
pub const CONVERSATION_TIMEOUTS: &str = "webhook_conversation_timeouts_total";
/// Conversation save conflicts (optimistic concurrency), retried.
pub const CONVERSATION_CONFLICTS: &str = "webhook_conversation_conflicts_total";
/// Conversations removed by retention (idle longer than `conversation.retention_days`).
pub const CONVERSATIONS_PRUNED: &str = "webhook_conversations_pruned_total";
/// Queue store calls of the worker that failed or outlasted `storage.store_timeout` (claim,
/// heartbeat, ack, fail, release, stats); the worker keeps going and leases recover.
pub const WORKER_STORE_ERRORS: &str = "webhook_worker_store_errors_total";

/// Reply actions ignored, labelled `reason` (`malformed`, `unknown_type`, `not_configured`,
/// `duplicate`, `bad_message_id`).
pub const ACTIONS_IGNORED: &str = "webhook_actions_ignored_total";
/// Reply action calls, labelled `action` (the type), `phase` (`execute`, `compensate`) and
/// `outcome` (`ok`, `retry`, `failed`, `breaker_wait`).
pub const ACTION_STEPS: &str = "webhook_action_steps_total";
/// Reply action call latency in seconds, labelled `action`, `phase`.
pub const ACTION_STEP_DURATION: &str = "webhook_action_step_duration_seconds";
/// Reply-action sagas, labelled `outcome` (`started`, `resumed`, `completed`, `compensated`,
/// `parked`, `lease_lost`).
pub const SAGAS: &str = "webhook_sagas_total";
/// Sagas parked (`failed`) for an operator now.
pub const SAGAS_PARKED: &str = "webhook_sagas_parked";

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 3.0, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program): then ours
            // still renders what it sees, which is nothing, and the program's own wins.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route, method and status");
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency by route"
    );
    describe_counter!(
        SIGNATURE_FAILURES,
        "Deliveries refused for their signature, by reason"
    );
    describe_counter!(RATE_LIMITED, "Requests refused by the per-IP rate limit");
    describe_counter!(MESSAGES, "Inbound messages by outcome");
    describe_counter!(
        IGNORED,
        "Changes or deliveries of a kind this service does not handle"
    );
    describe_counter!(STATUSES, "Outbound message status updates by status");
    describe_counter!(
        DEDUP_FAST_PATH,
        "Redis de-duplication fast path lookups by result"
    );
    describe_gauge!(QUEUE_DEPTH, "Queue messages by state");
    describe_gauge!(DEAD_LETTERS, "Dead letters waiting for an operator");
    describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest due message"
    );
    describe_counter!(WORKER_OUTCOMES, "Worker outcomes per message attempt");
    describe_histogram!(
        WORKER_DURATION,
        Unit::Seconds,
        "Worker handling time per attempt"
    );
    describe_gauge!(
        BREAKER_STATE,
        "Breaker state: 0 closed, 1 open, 2 half-open, 3 disabled, 4 forced open, 5 metrics only"
    );
    describe_gauge!(
        BREAKER_OPEN,
        "1 while a breaker is open, half-open or forced open"
    );
    describe_histogram!(
        DOWNSTREAM_DURATION,
        Unit::Seconds,
        "Downstream call latency"
    );
    describe_counter!(ROUTED, "Messages routed, by service and reason");
    describe_counter!(OUTBOUND_REPLIES, "Replies to users by outcome");
    describe_counter!(CONVERSATION_TIMEOUTS, "Conversation state timeouts fired");
    describe_counter!(
        CONVERSATION_CONFLICTS,
        "Conversation save conflicts retried"
    );
    describe_counter!(
        CONVERSATIONS_PRUNED,
        "Conversations removed by retention (idle past conversation.retention_days)"
    );
    describe_counter!(
        WORKER_STORE_ERRORS,
        "Worker queue store calls that failed or timed out"
    );
    describe_counter!(
        CONNECTIONS_CLOSED,
        "Connections closed by the server: request head too slow, or idle too long"
    );
    describe_counter!(
        ADMIN_AUTH_FAILURES,
        "Admin API requests refused for a missing or wrong bearer token"
    );
    describe_counter!(
        ACTIONS_IGNORED,
        "Reply actions ignored (malformed, unknown or unconfigured type, duplicate)"
    );
    describe_counter!(
        ACTION_STEPS,
        "Reply action calls by action, phase (execute, compensate) and outcome"
    );
    describe_histogram!(
        ACTION_STEP_DURATION,
        Unit::Seconds,
        "Reply action call latency by action and phase"
    );
    describe_counter!(SAGAS, "Reply-action sagas by outcome");
    describe_gauge!(
        SAGAS_PARKED,
        "Reply-action sagas parked for an operator (a cancellation failed for good)"
    );
    // Present at 0 from the start, so that `increase()` sees the first failure.
    for reason in ["missing", "mismatch"] {
        metrics::counter!(ADMIN_AUTH_FAILURES, "reason" => reason).absolute(0);
    }
}
