//! A service's configuration: endpoints, call timeout, retry policy, breaker preset, health
//! check, balancing, panic threshold and fallback.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use steadfast_circuit_breaker::Config as BreakerConfig;
use steadfast_retry::{RetryBudget, RetryPolicy};

use crate::{Balance, Endpoint, Error, HealthCheck};

/// Everything the registry needs to call one named service.
///
/// | setting | default | why |
/// |---|---|---|
/// | `call_timeout` | 30 s | one attempt; an AI agent may need `120 s` as in the seed system |
/// | `retry` | [`RetryPolicy::default`]: 3 attempts, 1 s then 2 s | the seed system's policy |
/// | `retry_budget` | none | share one [`RetryBudget`] between services so retries cannot amplify an outage |
/// | `breaker` | [`BreakerConfig::standard`]: 50 % over 60 s | use [`BreakerConfig::ai_agent`] (60 % / 120 s) for slow agents |
/// | `health_check` | none: passive health (breakers) only | |
/// | `balance` | [`Balance::RoundRobin`] | |
/// | `panic_threshold` | none: [`Error::NoHealthyEndpoint`] when nothing is eligible | panic mode is opt-in and explicit |
/// | `fallback_service` | none | |
///
/// ```
/// use std::time::Duration;
/// use steadfast_circuit_breaker::Config as BreakerConfig;
/// use steadfast_service_registry::{Balance, Endpoint, ServiceConfig};
///
/// let config = ServiceConfig::builder("ai-agent")
///     .endpoint("http://10.0.0.7:8080")
///     .endpoint(Endpoint::new("http://10.0.0.8:8080").weight(2))
///     .call_timeout(Duration::from_secs(120))
///     .breaker(BreakerConfig::ai_agent())
///     .balance(Balance::P2cLeastPending)
///     .panic_threshold(0.5)
///     .build()?;
/// assert_eq!(config.endpoints().len(), 2);
/// # Ok::<(), steadfast_service_registry::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub(crate) name: String,
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) call_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) retry_budget: Option<Arc<RetryBudget>>,
    pub(crate) breaker: BreakerConfig,
    pub(crate) health_check: Option<HealthCheck>,
    pub(crate) balance: Balance,
    pub(crate) panic_threshold: Option<f64>,
    pub(crate) fallback_service: Option<String>,
}

impl ServiceConfig {
    /// A builder for service `name`, with the defaults above.
    pub fn builder(name: impl Into<String>) -> ServiceConfigBuilder {
        ServiceConfigBuilder {
            config: ServiceConfig {
                name: name.into(),
                endpoints: Vec::new(),
                call_timeout: Duration::from_secs(30),
                retry: RetryPolicy::default(),
                retry_budget: None,
                breaker: BreakerConfig::standard(),
                health_check: None,
                balance: Balance::RoundRobin,
                panic_threshold: None,
                fallback_service: None,
            },
        }
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The endpoints, in registration order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The limit on one attempt.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// The retry policy across endpoints.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The retry budget, if any.
    pub fn retry_budget(&self) -> Option<&Arc<RetryBudget>> {
        self.retry_budget.as_ref()
    }

    /// The configuration of each endpoint's breaker.
    pub fn breaker(&self) -> &BreakerConfig {
        &self.breaker
    }

    /// The active health check, if any.
    pub fn health_check(&self) -> Option<&HealthCheck> {
        self.health_check.as_ref()
    }

    /// The balancing strategy.
    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// The panic threshold, if any.
    pub fn panic_threshold(&self) -> Option<f64> {
        self.panic_threshold
    }

    /// The service called when every attempt on this one failed, if any.
    pub fn fallback_service(&self) -> Option<&str> {
        self.fallback_service.as_deref()
    }
}

/// Builds a validated [`ServiceConfig`]; see [`ServiceConfig::builder`].
#[derive(Debug)]
#[must_use]
pub struct ServiceConfigBuilder {
    config: ServiceConfig,
}

impl ServiceConfigBuilder {
    /// Adds an endpoint: a URL string or an [`Endpoint`] with weight and metadata.
    pub fn endpoint(mut self, endpoint: impl Into<Endpoint>) -> Self {
        self.config.endpoints.push(endpoint.into());
        self
    }

    /// Adds several endpoints.
    pub fn endpoints<I>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Endpoint>,
    {
        self.config
            .endpoints
            .extend(endpoints.into_iter().map(Into::into));
        self
    }

    /// The limit on one attempt (default 30 s); an attempt that takes longer counts as a
    /// breaker failure and is retried on another endpoint.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }

    /// The retry policy (default [`RetryPolicy::default`]); `max_attempts` counts every attempt,
    /// each on a different endpoint while untried eligible ones remain.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// A retry budget (default none): every call deposits, every retry withdraws, and a call
    /// whose retry is refused stops (then falls back). Share one budget between services to
    /// cap retries process-wide.
    pub fn retry_budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.config.retry_budget = Some(budget);
        self
    }

    /// The breaker configuration for each endpoint (default [`BreakerConfig::standard`]).
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.config.breaker = config;
        self
    }

    /// An active health check (default none: passive health through the breakers only).
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.config.health_check = Some(check);
        self
    }

    /// The balancing strategy (default round robin).
    pub fn balance(mut self, balance: Balance) -> Self {
        self.config.balance = balance;
        self
    }

    /// Enables panic mode: when the share of eligible endpoints falls below `fraction` (in
    /// `(0, 1]`), calls are balanced over every endpoint that is not draining, ignoring health
    /// checks and breakers (Envoy's panic threshold). Without it, a service with nothing
    /// eligible fails fast with [`Error::NoHealthyEndpoint`].
    pub fn panic_threshold(mut self, fraction: f64) -> Self {
        self.config.panic_threshold = Some(fraction);
        self
    }

    /// Another registered service to call, with the same closure, when every attempt on this
    /// one failed (for instance a smaller model behind the main AI agent).
    pub fn fallback_service(mut self, name: impl Into<String>) -> Self {
        self.config.fallback_service = Some(name.into());
        self
    }

    /// Validates and returns the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an empty name, no endpoints, duplicate endpoint URLs, a
    /// zero weight, a zero call timeout, a panic threshold outside `(0, 1]`, or a fallback to
    /// the service itself.
    pub fn build(self) -> Result<ServiceConfig, Error> {
        let c = &self.config;
        if c.name.trim().is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        if c.endpoints.is_empty() {
            return Err(Error::invalid("endpoints", "need at least one endpoint"));
        }
        let mut seen = HashSet::new();
        for e in &c.endpoints {
            if e.url().trim().is_empty() {
                return Err(Error::invalid("endpoints", "an endpoint URL is empty"));
            }
            if !seen.insert(e.url()) {
                return Err(Error::invalid(
                    "endpoints",
                    format!("{:?} is listed twice", e.redacted()),
                ));
            }
            if e.get_weight() == 0 {
                return Err(Error::invalid(
                    "endpoints",
                    format!("{:?} has weight 0; weights start at 1", e.redacted()),
                ));
            }
        }
        if c.call_timeout.is_zero() {
            return Err(Error::invalid("call_timeout", "must be greater than zero"));
        }
        if let Some(p) = c.panic_threshold {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::invalid("panic_threshold", "must be in (0, 1]"));
            }
        }
        if c.fallback_service.as_deref() == Some(c.name.as_str()) {
            return Err(Error::invalid(
                "fallback_service",
                "must name another service",
            ));
        }
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ServiceConfigBuilder {
        ServiceConfig::builder("jobs").endpoint("http://a:1")
    }

    #[test]
    fn validation() {
        assert!(base().build().is_ok());
        assert!(ServiceConfig::builder("jobs").build().is_err());
        assert!(
            ServiceConfig::builder(" ")
                .endpoint("http://a:1")
                .build()
                .is_err()
        );
        assert!(base().endpoint("http://a:1").build().is_err());
        assert!(
            base()
                .endpoint(Endpoint::new("http://b:1").weight(0))
                .build()
                .is_err()
        );
        assert!(base().call_timeout(Duration::ZERO).build().is_err());
        assert!(base().panic_threshold(0.0).build().is_err());
        assert!(base().panic_threshold(1.5).build().is_err());
        assert!(base().panic_threshold(f64::NAN).build().is_err());
        assert!(base().panic_threshold(1.0).build().is_ok());
        assert!(base().fallback_service("jobs").build().is_err());
        let err = base().endpoint("").build().unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                field: "endpoints",
                ..
            }
        ));
    }
}
