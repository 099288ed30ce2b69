//! The registry: named services, their health-check tasks, selection and calls.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use parking_lot::RwLock;
use steadfast_circuit_breaker::{CircuitBreaker, MonotonicClock, State as BreakerState};
use steadfast_retry::{Action, Retry};
use tokio::sync::broadcast;

use crate::lease::Lease;
use crate::report::{HealthReport, ServiceReport};
use crate::service::Service;
use crate::{CallError, Endpoint, Error, RegistryEvent, ServiceConfig};

/// Capacity of the change-event channel; a subscriber that falls further behind is told it
/// lagged.
const EVENT_CAPACITY: usize = 1024;

/// Named services with health-checked endpoints, a circuit breaker per endpoint, balancing,
/// and [`call`](Self::call) with retry across endpoints and fallback.
///
/// Cheap to clone (an `Arc` inside); share one per process. Health checks run on tokio tasks
/// owned by the registry: they stop when their service is deregistered, on
/// [`shutdown`](Self::shutdown), and when the last clone is dropped.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    services: RwLock<HashMap<String, Arc<Service>>>,
    events: broadcast::Sender<RegistryEvent>,
    shut_down: AtomicBool,
    /// The clock for every breaker; `None`: the system clock.
    clock: Option<Arc<dyn MonotonicClock>>,
}

/// One endpoint's circuit breaker, as listed by [`Registry::breakers`] (e.g. for a Prometheus
/// gauge `breaker_state{service, endpoint}`).
#[derive(Debug, Clone)]
pub struct EndpointBreaker {
    /// The service name.
    pub service: String,
    /// The endpoint URL, [redacted](crate::Endpoint::redacted): no credentials or query.
    pub endpoint: String,
    /// The endpoint's position in its service (registration order, from 0): tells apart two
    /// endpoints whose redacted URLs are equal.
    pub index: usize,
    /// The breaker (a handle: state, metrics, events, manual control).
    pub breaker: CircuitBreaker,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("services", &self.services())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry whose breakers run on the system clock.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// An empty registry whose breakers all run on `clock` (e.g. a
    /// [`ManualMonotonicClock`](steadfast_circuit_breaker::ManualMonotonicClock), so a test can move a breaker's
    /// open duration along). Health-check intervals and call timeouts use tokio's clock.
    pub fn with_breaker_clock(clock: impl MonotonicClock) -> Self {
        Self::build(Some(Arc::new(clock)))
    }

    fn build(clock: Option<Arc<dyn MonotonicClock>>) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                services: RwLock::new(HashMap::new()),
                events,
                shut_down: AtomicBool::new(false),
                clock,
            }),
        }
    }

    /// Registers a service and, if it has a health check, starts one check task per endpoint
    /// (the first check runs right away).
    ///
    /// # Errors
    /// [`Error::AlreadyRegistered`] if the name is taken, [`Error::NoRuntime`] when a health
    /// check is configured and no tokio runtime is running, [`Error::ShutDown`] after
    /// [`shutdown`](Self::shutdown).
    pub fn register(&self, config: ServiceConfig) -> Result<(), Error> {
        if config.health_check.is_some() && tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let name = config.name.clone();
        {
            let mut services = self.inner.services.write();
            if self.inner.shut_down.load(Ordering::Acquire) {
                return Err(Error::ShutDown);
            }
            if services.contains_key(&name) {
                return Err(Error::AlreadyRegistered { service: name });
            }
            let service = Arc::new(Service::new(
                config,
                self.inner.clock.as_ref(),
                &self.inner.events,
            ));
            service.start_checks(&self.inner.events);
            services.insert(name.clone(), service);
        }
        let _ = self
            .inner
            .events
            .send(RegistryEvent::Registered { service: name });
        Ok(())
    }

    /// Removes a service and stops its health checks. Calls already running finish.
    ///
    /// # Errors
    /// [`Error::UnknownService`] if no service has that name.
    pub fn deregister(&self, name: &str) -> Result<(), Error> {
        let service = self
            .inner
            .services
            .write()
            .remove(name)
            .ok_or_else(|| unknown(name))?;
        service.stop_checks();
        let _ = self.inner.events.send(RegistryEvent::Deregistered {
            service: name.to_owned(),
        });
        Ok(())
    }

    /// Deregisters every service, stopping all health checks; later registrations fail with
    /// [`Error::ShutDown`].
    pub fn shutdown(&self) {
        let services: Vec<_> = {
            let mut map = self.inner.services.write();
            self.inner.shut_down.store(true, Ordering::Release);
            map.drain().collect()
        };
        for (name, service) in services {
            service.stop_checks();
            let _ = self
                .inner
                .events
                .send(RegistryEvent::Deregistered { service: name });
        }
    }

    /// The registered service names, sorted.
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<_> = self.inner.services.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether a service of that name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.inner.services.read().contains_key(name)
    }

    /// Change events from now on: registrations, endpoint state changes, panic mode.
    pub fn subscribe(&self) -> broadcast::Receiver<RegistryEvent> {
        self.inner.events.subscribe()
    }

    /// Chooses an endpoint of `service` and acquires its breaker permit, for callers that
    /// report the outcome themselves. Most callers want [`call`](Self::call).
    ///
    /// # Errors
    /// [`Error::UnknownService`], [`Error::NoHealthyEndpoint`], or [`Error::Rejected`] when every
    /// eligible endpoint's breaker refused a permit.
    pub fn select(&self, service: &str) -> Result<Lease, Error> {
        // Under the read lock rather than cloning the service's Arc: cheaper on the hot path,
        // and writers (register/deregister) are rare.
        self.inner
            .services
            .read()
            .get(service)
            .ok_or_else(|| unknown(service))?
            .select(&self.inner.events, &[])
    }

    /// Calls `service` through the registry: picks an endpoint, runs `op` on it under the
    /// service's call timeout and the endpoint's breaker, and on failure retries per the
    /// service's retry policy: on an endpoint this call has not tried while one admits it, else
    /// on a tried one whose breaker admits it (the untried ones refused: half-open with their
    /// probes out). If every attempt fails and the service has a
    /// [`fallback_service`](crate::ServiceConfigBuilder::fallback_service), the same `op`
    /// runs against that service; if it fails too, the primary's error is returned.
    ///
    /// `op` gets the endpoint by value (cheap clone) and returns a future. Return `Err` for every
    /// outcome that should count against the endpoint (e.g. map HTTP 5xx with
    /// `error_for_status()`): an `Ok` is a breaker success.
    ///
    /// Not retried: [`Error::UnknownService`], [`Error::NoHealthyEndpoint`] and
    /// [`Error::Rejected`] (every eligible endpoint's breaker refused, tried or not: nothing to
    /// retry on now, so go to the fallback instead of waiting).
    ///
    /// ```no_run
    /// # async fn demo(registry: steadfast_service_registry::Registry, client: reqwest::Client) {
    /// let body = serde_json::json!({ "text": "hello" });
    /// let reply = registry
    ///     .call("jobs", |endpoint| {
    ///         let request = client.post(endpoint.join("/v1/messages")).json(&body);
    ///         async move { request.send().await?.error_for_status()?.text().await }
    ///     })
    ///     .await;
    /// # }
    /// ```
    ///
    /// When a retry finds no endpoint to try (the failure just opened the breaker), the error
    /// is the last call's, not the refusal: a call was made, and it failed. Each failed call
    /// says whether every call made was a half-open probe ([`CallError::is_probe`]).
    ///
    /// # Errors
    /// [`CallError`]: the last call's error, a timeout, or why no endpoint could be tried.
    pub async fn call<T, E, F, Fut>(&self, service: &str, mut op: F) -> Result<T, CallError<E>>
    where
        F: FnMut(Endpoint) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let primary = self.service(service)?;
        let error = match self.call_service(&primary, &mut op).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let Some(fallback) = primary.config.fallback_service.clone() else {
            return Err(error);
        };
        drop(primary);
        // One level only: a fallback's own fallback is not followed (no cycles, bounded time).
        match self.service(&fallback) {
            Ok(fallback) => self.call_service(&fallback, &mut op).await.or(Err(error)),
            Err(_) => Err(error),
        }
    }

    /// [`call`](Self::call), then `fallback` with the final error if it still failed (a canned
    /// reply, a cached answer, a queue for later). The fallback may return `Ok` to recover or
    /// pass the error on.
    ///
    /// # Errors
    /// Whatever `fallback` returns.
    pub async fn call_with_fallback<T, E, F, Fut, G, GFut>(
        &self,
        service: &str,
        op: F,
        fallback: G,
    ) -> Result<T, CallError<E>>
    where
        F: FnMut(Endpoint) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        G: FnOnce(CallError<E>) -> GFut,
        GFut: Future<Output = Result<T, CallError<E>>>,
    {
        match self.call(service, op).await {
            Ok(value) => Ok(value),
            Err(error) => fallback(error).await,
        }
    }

    async fn call_service<T, E, F, Fut>(
        &self,
        service: &Arc<Service>,
        op: &mut F,
    ) -> Result<T, CallError<E>>
    where
        F: FnMut(Endpoint) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let events = &self.inner.events;
        let timeout = service.config.call_timeout;
        let mut tried: Vec<usize> = Vec::new();
        // Whether every call made so far was a half-open probe.
        let mut only_probes = true;
        // The last call's failure, kept here rather than in the retry loop: when a later
        // attempt finds no endpoint to try (its failure opened the breaker), the call that
        // ran is what the caller is told about, not the refusal that followed it.
        let last_failure: parking_lot::Mutex<Option<CallError<E>>> = parking_lot::Mutex::new(None);
        let mut retry = Retry::new(&service.config.retry).classify(|e: &Attempt| match e {
            Attempt::Unavailable(_) => Action::Stop,
            Attempt::Failed => Action::Retry,
        });
        if let Some(budget) = &service.config.retry_budget {
            retry = retry.budget(budget);
        }
        let result = retry
            .run(|| {
                let attempt = service.select(events, &tried).map(|lease| {
                    tried.push(lease.index);
                    only_probes &= lease.is_probe();
                    let future = op(lease.endpoint().clone());
                    (lease, future)
                });
                let probe = only_probes;
                let last_failure = &last_failure;
                async move {
                    let (lease, future) = attempt.map_err(Attempt::Unavailable)?;
                    let outcome = tokio::time::timeout(timeout, future).await;
                    let endpoint = lease.endpoint().redacted().to_owned();
                    let failure = match outcome {
                        Ok(Ok(value)) => {
                            lease.success();
                            return Ok(value);
                        }
                        Ok(Err(error)) => CallError::Failed {
                            service: service.name.to_string(),
                            endpoint,
                            error,
                            probe,
                        },
                        Err(_) => CallError::Timeout {
                            service: service.name.to_string(),
                            endpoint,
                            after: timeout,
                            probe,
                        },
                    };
                    lease.failure();
                    *last_failure.lock() = Some(failure);
                    Err(Attempt::Failed)
                }
            })
            .await;
        match result {
            Ok(value) => Ok(value),
            Err(e) => {
                let called = last_failure.into_inner();
                match e.error {
                    Attempt::Unavailable(error) => {
                        Err(called.unwrap_or(CallError::Unavailable(error)))
                    }
                    Attempt::Failed => Err(called.unwrap_or_else(|| {
                        // Not reached: a failed call always leaves its error behind.
                        CallError::Unavailable(Error::NoHealthyEndpoint {
                            service: service.name.to_string(),
                        })
                    })),
                }
            }
        }
    }

    /// How long until `service` takes calls again when open breakers are what keep every
    /// endpoint out: the soonest time one of them half-opens (its next call is then a probe).
    /// `None` when an endpoint admits calls now (closed, half-open, disabled breaker), when
    /// only forced-open breakers remain (an operator decides), or for an unknown service.
    ///
    /// For a caller that got [`Error::NoHealthyEndpoint`] or a failed probe
    /// ([`CallError::is_probe`]) and wants to wait, rather than retry blindly.
    pub fn retry_after(&self, service: &str) -> Option<Duration> {
        let service = self.service(service).ok()?;
        let mut soonest: Option<Duration> = None;
        for member in &service.members {
            if member.state() == crate::HealthState::Draining {
                continue;
            }
            match member.breaker.state() {
                BreakerState::ForcedOpen => {}
                BreakerState::Open => match member.breaker.metrics().time_until_half_open() {
                    Some(wait) if !wait.is_zero() => {
                        soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
        soonest
    }

    /// Runs one health check on every endpoint of `service` now, in addition to the schedule
    /// (an operator's "check now" button; also what tests use to step thresholds). Does nothing
    /// for a service without a health check.
    ///
    /// # Errors
    /// [`Error::UnknownService`].
    pub async fn check_now(&self, service: &str) -> Result<(), Error> {
        let service = self.service(service)?;
        service.check_now(&self.inner.events).await;
        Ok(())
    }

    /// Drains (`true`) or restores (`false`) one endpoint: a draining endpoint gets no new calls,
    /// even in panic mode; calls in flight finish. `endpoint` is the URL as registered, or its
    /// [redacted](crate::Endpoint::redacted) form when that names exactly one endpoint.
    ///
    /// # Errors
    /// [`Error::UnknownService`] or [`Error::UnknownEndpoint`].
    pub fn set_draining(&self, service: &str, endpoint: &str, draining: bool) -> Result<(), Error> {
        let service = self.service(service)?;
        let member = service.member(endpoint)?;
        member.set_draining(draining);
        member.observe(&self.inner.events, None);
        Ok(())
    }

    /// The breaker of one endpoint (to inspect it, or force it open or closed by hand).
    /// `endpoint` as for [`set_draining`](Self::set_draining).
    ///
    /// # Errors
    /// [`Error::UnknownService`] or [`Error::UnknownEndpoint`].
    pub fn breaker(&self, service: &str, endpoint: &str) -> Result<CircuitBreaker, Error> {
        let service = self.service(service)?;
        Ok(service.member(endpoint)?.breaker.clone())
    }

    /// Every endpoint's breaker, sorted by service then registration order: what a `/metrics`
    /// handler exports as breaker-state gauges.
    pub fn breakers(&self) -> Vec<EndpointBreaker> {
        let mut services: Vec<_> = self.inner.services.read().values().cloned().collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        services
            .iter()
            .flat_map(|s| {
                s.members
                    .iter()
                    .enumerate()
                    .map(|(index, m)| EndpointBreaker {
                        service: s.name.to_string(),
                        endpoint: m.endpoint.redacted().to_owned(),
                        index,
                        breaker: m.breaker.clone(),
                    })
            })
            .collect()
    }

    /// The health of every service: serialize it for `/health` or `/admin/registry`.
    pub fn report(&self) -> HealthReport {
        let mut services: Vec<_> = self.inner.services.read().values().cloned().collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        HealthReport {
            generated_at: Utc::now(),
            services: services
                .iter()
                .map(|s| ServiceReport::of(s, &self.inner.events))
                .collect(),
        }
    }

    /// The health of one service.
    ///
    /// # Errors
    /// [`Error::UnknownService`].
    pub fn service_report(&self, service: &str) -> Result<ServiceReport, Error> {
        Ok(ServiceReport::of(
            &*self.service(service)?,
            &self.inner.events,
        ))
    }

    fn service(&self, name: &str) -> Result<Arc<Service>, Error> {
        self.inner
            .services
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| unknown(name))
    }
}

/// One attempt's failure inside [`Registry::call`]'s retry loop (the call's own error waits
/// aside, see `call_service`).
enum Attempt {
    /// A call was made and failed.
    Failed,
    /// No endpoint could be tried.
    Unavailable(Error),
}

fn unknown(name: &str) -> Error {
    Error::UnknownService {
        service: name.to_owned(),
    }
}
