//! The crate's errors: [`Error`] for configuration and the registry, [`CallError`] for calls.

use std::time::Duration;

/// What went wrong in the registry itself, and what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range; fix the configuration.
    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig {
        /// The setting, e.g. `health_check.interval`.
        field: &'static str,
        /// What it must be.
        reason: String,
    },
    /// A service of that name exists; deregister it first to replace it.
    #[error("service {service:?} is already registered; deregister it first to replace it")]
    AlreadyRegistered {
        /// The service name.
        service: String,
    },
    /// No service of that name; register it (or check the spelling).
    #[error("no service named {service:?} is registered")]
    UnknownService {
        /// The service name.
        service: String,
    },
    /// The service has no endpoint with that URL.
    #[error("service {service:?} has no endpoint {endpoint:?}")]
    UnknownEndpoint {
        /// The service name.
        service: String,
        /// The endpoint URL asked for, [redacted](crate::Endpoint::redact).
        endpoint: String,
    },
    /// Every endpoint is unhealthy, ejected or draining, and panic mode is off or not reached:
    /// fail fast, use a fallback, or try later.
    #[error("no healthy endpoint for service {service:?}")]
    NoHealthyEndpoint {
        /// The service name.
        service: String,
    },
    /// Eligible endpoints exist but every one's circuit breaker refused a permit (half-open
    /// probes in use, or the breaker opened since the check); try again after `retry_after`.
    #[error("every endpoint of {service:?} is refused by its circuit breaker")]
    Rejected {
        /// The service name.
        service: String,
        /// The soonest time a breaker may let a call through, when known.
        retry_after: Option<Duration>,
    },
    /// [`Registry::register`](crate::Registry::register) ran outside a tokio runtime, which the
    /// health-check tasks need.
    #[error("registering a service with health checks needs a tokio runtime")]
    NoRuntime,
    /// The registry was shut down; build a new one.
    #[error("the registry is shut down")]
    ShutDown,
}

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}

/// Why [`Registry::call`](crate::Registry::call) failed, after retries and any fallback.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError<E> {
    /// No endpoint could be tried: unknown service, nothing healthy, or every breaker refused.
    #[error(transparent)]
    Unavailable(#[from] Error),
    /// The last call made exceeded the service's call timeout.
    #[error("call to {endpoint} ({service}) timed out after {after:?}")]
    Timeout {
        /// The service name.
        service: String,
        /// The endpoint URL, [redacted](crate::Endpoint::redacted).
        endpoint: String,
        /// The timeout that elapsed.
        after: Duration,
        /// Every call made went through as a half-open probe (see [`CallError::is_probe`]).
        probe: bool,
    },
    /// The last call made returned this error.
    #[error("call to {endpoint} ({service}) failed: {error}")]
    Failed {
        /// The service name.
        service: String,
        /// The endpoint URL, [redacted](crate::Endpoint::redacted).
        endpoint: String,
        /// The closure's error.
        error: E,
        /// Every call made went through as a half-open probe (see [`CallError::is_probe`]).
        probe: bool,
    },
}

impl<E> CallError<E> {
    /// The closure's error, when the last attempt got as far as returning one.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the calls made were all half-open probes: no endpoint's breaker was closed, so
    /// the failure says the service is still down rather than that this request is bad (a
    /// queue may reschedule the work without counting an attempt, until
    /// [`Registry::retry_after`](crate::Registry::retry_after)). False for
    /// [`CallError::Unavailable`] (no call was made) and for calls in panic mode.
    pub fn is_probe(&self) -> bool {
        match self {
            Self::Timeout { probe, .. } | Self::Failed { probe, .. } => *probe,
            Self::Unavailable(_) => false,
        }
    }

    /// The endpoint of the last attempt (its redacted URL), when one was tried.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Self::Timeout { endpoint, .. } | Self::Failed { endpoint, .. } => Some(endpoint),
            Self::Unavailable(_) => None,
        }
    }
}
