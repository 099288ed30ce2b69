//! The health report: a serde value for a `/health` or `/admin/registry` endpoint.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use steadfast_circuit_breaker::State as BreakerState;
use tokio::sync::broadcast;

use crate::member::Member;
use crate::service::Service;
use crate::{Balance, HealthState, RegistryEvent};

/// Every registered service, sorted by name. Serialize it as the body of an admin endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// When the report was taken.
    pub generated_at: DateTime<Utc>,
    /// One entry per service.
    pub services: Vec<ServiceReport>,
}

impl HealthReport {
    /// The service of that name, if present.
    pub fn service(&self, name: &str) -> Option<&ServiceReport> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Whether every service has at least one eligible endpoint.
    pub fn all_available(&self) -> bool {
        self.services
            .iter()
            .all(|s| s.status != ServiceStatus::Down)
    }
}

/// A summary of one service's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    /// Every endpoint takes traffic.
    Healthy,
    /// Some endpoints take traffic.
    Degraded,
    /// None does (calls fail fast, or run in panic mode if configured).
    Down,
}

/// One service in the [`HealthReport`].
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    /// The service name.
    pub name: String,
    /// Healthy, degraded or down.
    pub status: ServiceStatus,
    /// Endpoints that take traffic outside panic mode.
    pub eligible: usize,
    /// All endpoints.
    pub total: usize,
    /// Whether the last selection ran in panic mode.
    pub panic_mode: bool,
    /// The balancing strategy.
    pub balance: Balance,
    /// The fallback service, if any.
    pub fallback_service: Option<String>,
    /// One entry per endpoint, in registration order.
    pub endpoints: Vec<EndpointReport>,
}

/// One endpoint in a [`ServiceReport`].
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    /// The endpoint's position in its service (registration order, from 0).
    pub index: usize,
    /// The endpoint URL, [redacted](crate::Endpoint::redacted): no credentials or query.
    pub url: String,
    /// Its balancing weight.
    pub weight: u32,
    /// Its metadata.
    pub metadata: BTreeMap<String, String>,
    /// The state balancing uses (draining, then ejected, then the active checks).
    pub state: HealthState,
    /// The state from active checks alone.
    pub checked_state: HealthState,
    /// When the last active check finished, if any.
    pub last_check: Option<DateTime<Utc>>,
    /// The last active check error, if any.
    pub last_error: Option<String>,
    /// Consecutive passing checks.
    pub consecutive_successes: u32,
    /// Consecutive failing checks.
    pub consecutive_failures: u32,
    /// The endpoint's circuit breaker state.
    pub breaker: BreakerState,
    /// Calls in flight on the endpoint.
    pub in_flight: usize,
}

impl EndpointReport {
    fn of(index: usize, member: &Member, events: &broadcast::Sender<RegistryEvent>) -> Self {
        let state = member.observe(events, None);
        let check = member.check.lock();
        Self {
            index,
            url: member.endpoint.redacted().to_owned(),
            weight: member.endpoint.get_weight(),
            metadata: member.endpoint.all_metadata().clone(),
            state,
            checked_state: check.tracker.state(),
            last_check: check.last_check,
            last_error: check.last_error.clone(),
            consecutive_successes: check.tracker.consecutive_successes(),
            consecutive_failures: check.tracker.consecutive_failures(),
            breaker: member.breaker.state(),
            in_flight: member.in_flight(),
        }
    }
}

impl ServiceReport {
    pub(crate) fn of(service: &Service, events: &broadcast::Sender<RegistryEvent>) -> Self {
        let endpoints: Vec<_> = service
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| EndpointReport::of(i, m, events))
            .collect();
        let eligible = endpoints.iter().filter(|e| e.state.is_eligible()).count();
        let status = match eligible {
            0 => ServiceStatus::Down,
            n if n == endpoints.len() => ServiceStatus::Healthy,
            _ => ServiceStatus::Degraded,
        };
        Self {
            name: service.name.to_string(),
            status,
            eligible,
            total: endpoints.len(),
            panic_mode: service.in_panic_mode(),
            balance: service.config.balance,
            fallback_service: service.config.fallback_service.clone(),
            endpoints,
        }
    }
}
