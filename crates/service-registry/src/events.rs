//! Change events: what a dashboard, a log line or a metrics gauge subscribes to.

use serde::{Deserialize, Serialize};

use crate::HealthState;

/// Something changed in the registry. Delivered through
/// [`Registry::subscribe`](crate::Registry::subscribe) (a tokio broadcast channel: a slow
/// subscriber misses the oldest events and is told how many with `RecvError::Lagged`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RegistryEvent {
    /// A service was registered.
    Registered {
        /// The service name.
        service: String,
    },
    /// A service was deregistered; its health checks have stopped.
    Deregistered {
        /// The service name.
        service: String,
    },
    /// An endpoint's state changed (health check thresholds, breaker ejection or recovery,
    /// draining). Breaker-driven changes are noticed when the registry next looks at the
    /// endpoint: on a call, a check, a selection or a report.
    EndpointStateChanged {
        /// The service name.
        service: String,
        /// The endpoint URL, [redacted](crate::Endpoint::redacted): no credentials or query.
        endpoint: String,
        /// The state before.
        from: HealthState,
        /// The state now.
        to: HealthState,
        /// The last health check error, when a check caused the change.
        reason: Option<String>,
    },
    /// The share of eligible endpoints fell below the service's panic threshold: calls are now
    /// balanced over every endpoint that is not draining (`active: true`), or it recovered
    /// (`active: false`).
    PanicMode {
        /// The service name.
        service: String,
        /// Whether panic mode is now on.
        active: bool,
    },
}
