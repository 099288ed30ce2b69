//! Active health checks: the [`HealthChecker`] trait, its adapters (HTTP, TCP, closure), the
//! [`HealthCheck`] schedule (interval, jitter, timeout, thresholds), and the states an endpoint
//! moves through.
//!
//! A check runs on a tokio task owned by the registry, one per endpoint. The task checks once
//! right away, then every `interval` (± `jitter`), or every `unhealthy_interval` while the
//! endpoint is unhealthy so that recovery is noticed sooner. Results feed consecutive-result
//! thresholds, so one blip does not flap the state. The task ends when its service is
//! deregistered or the registry shuts down.

mod closure;
#[cfg(feature = "http")]
mod http;
mod state;
pub(crate) mod task;
mod tcp;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use closure::FnChecker;
#[cfg(feature = "http")]
pub use http::HttpChecker;
pub use state::HealthState;
pub(crate) use state::Tracker;
pub use tcp::TcpChecker;

use crate::{Endpoint, Error};

/// Why one health check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The endpoint answered with a status outside the expected range.
    #[error("unexpected status {0}")]
    Status(u16),
    /// The endpoint could not be reached (refused, reset, DNS, TLS, ...).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The check did not finish within the configured timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Any other reason, from a custom checker.
    #[error("{0}")]
    Failed(String),
}

/// Probes one endpoint once. Implement it for custom checks (a gRPC health call, a database
/// ping) or use [`HttpChecker`], [`TcpChecker`] and [`FnChecker`].
///
/// The registry applies the timeout and the thresholds; a checker only reports one result.
#[async_trait]
pub trait HealthChecker: Send + Sync + 'static {
    /// `Ok(())` when the endpoint is fit to take traffic.
    async fn check(&self, endpoint: &Endpoint) -> Result<(), CheckError>;
}

#[async_trait]
impl<C: HealthChecker + ?Sized> HealthChecker for Arc<C> {
    async fn check(&self, endpoint: &Endpoint) -> Result<(), CheckError> {
        (**self).check(endpoint).await
    }
}

/// How and how often a service's endpoints are checked.
///
/// Defaults (the seed system's 30 s interval, Consul/Envoy-style thresholds):
///
/// | setting | default |
/// |---|---|
/// | `interval` | 30 s |
/// | `unhealthy_interval` | 5 s |
/// | `jitter` | 0.1 (each wait is `interval × (1 ± 0.1 × random)`) |
/// | `timeout` | 5 s |
/// | `healthy_threshold` | 2 consecutive passes to recover |
/// | `unhealthy_threshold` | 3 consecutive failures to go unhealthy |
///
/// ```
/// use std::time::Duration;
/// use steadfast_service_registry::HealthCheck;
///
/// let check = HealthCheck::tcp()
///     .interval(Duration::from_secs(10))
///     .unhealthy_threshold(2)
///     .build()?;
/// assert_eq!(check.interval(), Duration::from_secs(10));
/// # Ok::<(), steadfast_service_registry::Error>(())
/// ```
#[derive(Clone)]
pub struct HealthCheck {
    pub(crate) checker: Arc<dyn HealthChecker>,
    interval: Duration,
    unhealthy_interval: Duration,
    jitter: f64,
    timeout: Duration,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl std::fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthCheck")
            .field("interval", &self.interval)
            .field("unhealthy_interval", &self.unhealthy_interval)
            .field("jitter", &self.jitter)
            .field("timeout", &self.timeout)
            .field("healthy_threshold", &self.healthy_threshold)
            .field("unhealthy_threshold", &self.unhealthy_threshold)
            .finish_non_exhaustive()
    }
}

impl HealthCheck {
    /// A schedule for any checker, with the defaults above.
    pub fn builder(checker: impl HealthChecker) -> HealthCheckBuilder {
        HealthCheckBuilder {
            check: HealthCheck {
                checker: Arc::new(checker),
                interval: Duration::from_secs(30),
                unhealthy_interval: Duration::from_secs(5),
                jitter: 0.1,
                timeout: Duration::from_secs(5),
                healthy_threshold: 2,
                unhealthy_threshold: 3,
            },
        }
    }

    /// `GET <endpoint url><path>` expecting a 2xx status (feature `http`).
    #[cfg(feature = "http")]
    pub fn http(path: impl Into<String>) -> HealthCheckBuilder {
        Self::builder(HttpChecker::new(path))
    }

    /// A TCP connect to the endpoint's `host:port`.
    pub fn tcp() -> HealthCheckBuilder {
        Self::builder(TcpChecker)
    }

    /// Any async closure over the endpoint.
    pub fn from_fn<F, Fut>(f: F) -> HealthCheckBuilder
    where
        F: Fn(Endpoint) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), CheckError>> + Send + 'static,
    {
        Self::builder(FnChecker::new(f))
    }

    /// Time between checks while the endpoint is not unhealthy.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Time between checks while the endpoint is unhealthy.
    pub fn unhealthy_interval(&self) -> Duration {
        self.unhealthy_interval
    }

    /// The jitter fraction applied to every wait.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The limit on one check.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Consecutive passes that bring an unhealthy endpoint back.
    pub fn healthy_threshold(&self) -> u32 {
        self.healthy_threshold
    }

    /// Consecutive failures that make an endpoint unhealthy.
    pub fn unhealthy_threshold(&self) -> u32 {
        self.unhealthy_threshold
    }

    /// The wait before the next check, jitter drawn from `unit` in `[0, 1)`.
    pub(crate) fn next_wait(&self, unhealthy: bool, unit: f64) -> Duration {
        let base = if unhealthy {
            self.unhealthy_interval
        } else {
            self.interval
        };
        // Spread over [base × (1 - j), base × (1 + j)) so that checks of many endpoints
        // started together drift apart.
        base.mul_f64(1.0 + self.jitter * (2.0 * unit - 1.0))
    }
}

/// Builds a validated [`HealthCheck`]; see [`HealthCheck::builder`].
#[derive(Debug)]
#[must_use]
pub struct HealthCheckBuilder {
    check: HealthCheck,
}

impl HealthCheckBuilder {
    /// Time between checks (default 30 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.check.interval = interval;
        self
    }

    /// Time between checks while unhealthy (default 5 s), so recovery is seen sooner.
    pub fn unhealthy_interval(mut self, interval: Duration) -> Self {
        self.check.unhealthy_interval = interval;
        self
    }

    /// Jitter fraction in `[0, 1)` (default 0.1); 0 makes the schedule exact.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.check.jitter = fraction;
        self
    }

    /// Limit on one check (default 5 s); a check that takes longer fails.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.check.timeout = timeout;
        self
    }

    /// Consecutive passes that bring an unhealthy endpoint back (default 2).
    pub fn healthy_threshold(mut self, n: u32) -> Self {
        self.check.healthy_threshold = n;
        self
    }

    /// Consecutive failures that make an endpoint unhealthy (default 3).
    pub fn unhealthy_threshold(mut self, n: u32) -> Self {
        self.check.unhealthy_threshold = n;
        self
    }

    /// Validates and returns the schedule.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero interval or timeout, a jitter outside `[0, 1)`, or a
    /// zero threshold.
    pub fn build(self) -> Result<HealthCheck, Error> {
        let c = &self.check;
        if c.interval.is_zero() || c.unhealthy_interval.is_zero() {
            return Err(Error::invalid(
                "health_check.interval",
                "must be greater than zero",
            ));
        }
        if c.timeout.is_zero() {
            return Err(Error::invalid(
                "health_check.timeout",
                "must be greater than zero",
            ));
        }
        if !(0.0..1.0).contains(&c.jitter) {
            return Err(Error::invalid("health_check.jitter", "must be in [0, 1)"));
        }
        if c.healthy_threshold == 0 || c.unhealthy_threshold == 0 {
            return Err(Error::invalid(
                "health_check.threshold",
                "must be at least 1",
            ));
        }
        Ok(self.check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(HealthCheck::tcp().interval(Duration::ZERO).build().is_err());
        assert!(HealthCheck::tcp().timeout(Duration::ZERO).build().is_err());
        assert!(HealthCheck::tcp().jitter(1.0).build().is_err());
        assert!(HealthCheck::tcp().jitter(f64::NAN).build().is_err());
        assert!(HealthCheck::tcp().healthy_threshold(0).build().is_err());
        assert!(HealthCheck::tcp().build().is_ok());
    }

    #[test]
    fn wait_stays_within_jitter_bounds() {
        let c = HealthCheck::tcp().jitter(0.2).build().unwrap();
        assert_eq!(c.next_wait(false, 0.5), Duration::from_secs(30));
        assert_eq!(c.next_wait(false, 0.0), Duration::from_secs(24));
        assert!(c.next_wait(false, 0.999_999) < Duration::from_secs(36));
        assert_eq!(c.next_wait(true, 0.5), Duration::from_secs(5));
    }
}
