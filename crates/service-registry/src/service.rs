//! A registered service: its members, balancer, panic flag and health-check tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use steadfast_circuit_breaker::{CircuitBreaker, MonotonicClock};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::balance::{Balancer, Candidate};
use crate::health::{Tracker, task};
use crate::lease::Lease;
use crate::member::Member;
use crate::{Error, HealthState, RegistryEvent, ServiceConfig};

pub(crate) struct Service {
    pub(crate) name: Arc<str>,
    pub(crate) config: ServiceConfig,
    pub(crate) members: Vec<Arc<Member>>,
    balancer: Balancer,
    panic: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// An eligible member and its position, as the balancer sees it.
#[derive(Clone, Copy)]
struct Slot<'a> {
    index: usize,
    member: &'a Member,
}

impl Candidate for Slot<'_> {
    fn weight(&self) -> u32 {
        self.member.endpoint.get_weight()
    }

    fn in_flight(&self) -> usize {
        self.member.in_flight()
    }
}

impl Service {
    /// Builds the members (one breaker each). Health-check tasks are started separately by
    /// [`Service::start_checks`], so that a service without checks needs no runtime.
    pub(crate) fn new(
        config: ServiceConfig,
        clock: Option<&Arc<dyn MonotonicClock>>,
        events: &broadcast::Sender<RegistryEvent>,
    ) -> Self {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let (healthy, unhealthy) = config
            .health_check
            .as_ref()
            .map_or((1, 1), |c| (c.healthy_threshold(), c.unhealthy_threshold()));
        let members = config
            .endpoints
            .iter()
            .map(|endpoint| {
                Arc::new(Member::new(
                    Arc::clone(&name),
                    endpoint.clone(),
                    breaker(&name, endpoint, &config, clock),
                    Tracker::new(healthy, unhealthy),
                    events.clone(),
                ))
            })
            .collect();
        Self {
            name,
            config,
            members,
            balancer: Balancer::default(),
            panic: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn start_checks(&self, events: &broadcast::Sender<RegistryEvent>) {
        let Some(check) = &self.config.health_check else {
            return;
        };
        let mut tasks = self.tasks.lock();
        for member in &self.members {
            tasks.push(task::spawn(
                Arc::clone(member),
                check.clone(),
                events.clone(),
            ));
        }
    }

    /// Stops the health checks (idempotent).
    pub(crate) fn stop_checks(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }

    /// Runs one check on every endpoint now, concurrently with the background schedule.
    pub(crate) async fn check_now(&self, events: &broadcast::Sender<RegistryEvent>) {
        if let Some(check) = &self.config.health_check {
            for member in &self.members {
                task::run_once(member, check, events).await;
            }
        }
    }

    /// The member whose URL is `endpoint`, or else whose redacted URL is, when exactly one is
    /// (reports and events show only the redacted URL).
    pub(crate) fn member(&self, endpoint: &str) -> Result<&Arc<Member>, Error> {
        let exact = self.members.iter().find(|m| m.endpoint.url() == endpoint);
        let redacted = || {
            let mut found = self
                .members
                .iter()
                .filter(|m| m.endpoint.redacted() == endpoint);
            found.next().filter(|_| found.next().is_none())
        };
        exact
            .or_else(redacted)
            .ok_or_else(|| Error::UnknownEndpoint {
                service: self.name.to_string(),
                // What the caller asked for may be a URL with credentials too.
                endpoint: crate::Endpoint::redact(endpoint),
            })
    }

    pub(crate) fn in_panic_mode(&self) -> bool {
        self.panic.load(Ordering::Relaxed)
    }

    /// Chooses an endpoint and acquires its breaker permit, preferring endpoints not in
    /// `tried` (the ones this call already used) and falling back to those.
    ///
    /// [`Error::Rejected`] only when every endpoint in the pool refused a permit.
    pub(crate) fn select(
        &self,
        events: &broadcast::Sender<RegistryEvent>,
        tried: &[usize],
    ) -> Result<Lease, Error> {
        let mut eligible = Vec::with_capacity(self.members.len());
        let mut live = 0usize;
        for (index, member) in self.members.iter().enumerate() {
            let state = member.observe(events, None);
            if state != HealthState::Draining {
                live += 1;
            }
            if state.is_eligible() {
                eligible.push(Slot {
                    index,
                    member: member.as_ref(),
                });
            }
        }
        let panic = self.update_panic(eligible.len(), live, events);
        let pool = if panic {
            // Panic mode: everything but the draining endpoints.
            self.members
                .iter()
                .enumerate()
                .filter(|(_, m)| m.state() != HealthState::Draining)
                .map(|(index, m)| Slot {
                    index,
                    member: m.as_ref(),
                })
                .collect()
        } else {
            eligible
        };
        if pool.is_empty() {
            return Err(Error::NoHealthyEndpoint {
                service: self.name.to_string(),
            });
        }
        // Untried endpoints first; when every one of them refuses, back to the tried ones
        // whose breakers still admit a call: a retry gives up only when every endpoint's
        // breaker refused (what `Error::Rejected` says), not when the untried ones did.
        let (untried, tried_pool): (Vec<_>, Vec<_>) =
            pool.into_iter().partition(|s| !tried.contains(&s.index));
        let mut retry_after: Option<Duration> = None;
        for (mut pool, advance) in [(untried, tried.is_empty()), (tried_pool, false)] {
            while !pool.is_empty() {
                let pick = self.balancer.pick(self.config.balance, &pool, advance);
                let slot = pool[pick];
                let member = &self.members[slot.index];
                match member.breaker.try_acquire_owned() {
                    Ok(permit) => {
                        return Ok(Lease::new(
                            Arc::clone(member),
                            slot.index,
                            Some(permit),
                            panic,
                        ));
                    }
                    // Panic mode overrides the breaker too; the call goes unrecorded.
                    Err(_) if panic => {
                        return Ok(Lease::new(Arc::clone(member), slot.index, None, panic));
                    }
                    Err(rejected) => {
                        // Half-open with its probes in use, or opened since `observe`.
                        member.observe(events, None);
                        if let Some(after) = rejected.retry_after {
                            retry_after = Some(retry_after.map_or(after, |d| d.min(after)));
                        }
                        pool.swap_remove(pick);
                    }
                }
            }
        }
        Err(Error::Rejected {
            service: self.name.to_string(),
            retry_after,
        })
    }

    fn update_panic(
        &self,
        eligible: usize,
        live: usize,
        events: &broadcast::Sender<RegistryEvent>,
    ) -> bool {
        let panic = match self.config.panic_threshold {
            #[allow(clippy::cast_precision_loss)] // endpoint counts are far below 2^52
            Some(threshold) if live > 0 => (eligible as f64 / live as f64) < threshold,
            _ => false,
        };
        if self.panic.load(Ordering::Relaxed) != panic
            && self.panic.swap(panic, Ordering::Relaxed) != panic
        {
            let _ = events.send(RegistryEvent::PanicMode {
                service: self.name.to_string(),
                active: panic,
            });
        }
        panic
    }
}

/// One breaker per endpoint, named `service endpoint` (the redacted URL) in its events and
/// metrics.
fn breaker(
    service: &str,
    endpoint: &crate::Endpoint,
    config: &ServiceConfig,
    clock: Option<&Arc<dyn MonotonicClock>>,
) -> CircuitBreaker {
    let name = format!("{service} {}", endpoint.redacted());
    match clock {
        Some(clock) => {
            CircuitBreaker::named_with_clock(name, config.breaker.clone(), Arc::clone(clock))
        }
        None => CircuitBreaker::named(name, config.breaker.clone()),
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop_checks();
    }
}
