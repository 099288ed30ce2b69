//! One endpoint's live state inside a registered service: its breaker, its active-check
//! bookkeeping, its in-flight count, and the last state announced to subscribers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use steadfast_circuit_breaker::{CircuitBreaker, MonotonicClock, State as BreakerState};
use tokio::sync::broadcast;

use crate::health::{CheckError, Tracker};
use crate::{Endpoint, HealthState, RegistryEvent};

/// The last active check, for the report.
#[derive(Debug)]
pub(crate) struct CheckRecord {
    pub(crate) tracker: Tracker,
    pub(crate) last_check: Option<DateTime<Utc>>,
    pub(crate) last_error: Option<String>,
}

pub(crate) struct Member {
    pub(crate) service: Arc<str>,
    pub(crate) endpoint: Endpoint,
    pub(crate) breaker: CircuitBreaker,
    /// The breaker's clock, to tell whether an Open breaker's wait is over.
    clock: Arc<dyn MonotonicClock>,
    /// While the breaker is Open: the breaker-clock time its wait ends (0: not known yet).
    open_until: AtomicU64,
    /// The active-check state, mirrored from `check.tracker` for lock-free reads.
    active: AtomicU8,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    /// The effective state last announced in an event.
    announced: AtomicU8,
    pub(crate) check: Mutex<CheckRecord>,
    /// Where state changes are announced (a handle on the registry's channel).
    pub(crate) events: broadcast::Sender<RegistryEvent>,
}

impl Member {
    pub(crate) fn new(
        service: Arc<str>,
        endpoint: Endpoint,
        breaker: CircuitBreaker,
        tracker: Tracker,
        events: broadcast::Sender<RegistryEvent>,
    ) -> Self {
        Self {
            service,
            endpoint,
            clock: breaker.clock(),
            open_until: AtomicU64::new(0),
            breaker,
            active: AtomicU8::new(HealthState::Unknown.to_u8()),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            announced: AtomicU8::new(HealthState::Unknown.to_u8()),
            check: Mutex::new(CheckRecord {
                tracker,
                last_check: None,
                last_error: None,
            }),
            events,
        }
    }

    /// The state from active checks alone.
    pub(crate) fn active_state(&self) -> HealthState {
        HealthState::from_u8(self.active.load(Ordering::Acquire))
    }

    /// The state balancing uses: draining overrides everything, then an open breaker
    /// (passive health) overrides the active checks.
    pub(crate) fn state(&self) -> HealthState {
        if self.draining.load(Ordering::Acquire) {
            return HealthState::Draining;
        }
        if self.ejected() {
            return HealthState::Ejected;
        }
        self.active_state()
    }

    /// Whether the breaker keeps the endpoint out of rotation: ForcedOpen, or Open with its
    /// wait not over. The breaker reads Open until a call moves it to HalfOpen, so an Open
    /// breaker whose wait is over must count as eligible, or no call would ever probe it.
    fn ejected(&self) -> bool {
        match self.breaker.state() {
            BreakerState::ForcedOpen => true,
            BreakerState::Open => {
                let now = self.clock.now_nanos();
                let until = self.open_until.load(Ordering::Acquire);
                if now < until {
                    return true;
                }
                // Unknown, or from an earlier opening: ask the breaker once per opening (the
                // metrics snapshot is too costly for every selection).
                match self.breaker.metrics().time_until_half_open() {
                    Some(wait) if !wait.is_zero() => {
                        let wait = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                        self.open_until
                            .store(now.saturating_add(wait), Ordering::Release);
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// Computes the state and announces it if it differs from the last one announced.
    pub(crate) fn observe(
        &self,
        events: &broadcast::Sender<RegistryEvent>,
        reason: Option<&str>,
    ) -> HealthState {
        let now = self.state();
        let code = now.to_u8();
        // Cheap common case: nothing changed, one atomic load.
        if self.announced.load(Ordering::Acquire) != code {
            let before = self.announced.swap(code, Ordering::AcqRel);
            if before != code {
                // No subscriber is not an error.
                let _ = events.send(RegistryEvent::EndpointStateChanged {
                    service: self.service.to_string(),
                    endpoint: self.endpoint.redacted().to_owned(),
                    from: HealthState::from_u8(before),
                    to: now,
                    reason: reason.map(str::to_owned),
                });
            }
        }
        now
    }

    /// Records one active check result and announces a resulting change.
    pub(crate) fn record_check(
        &self,
        result: Result<(), CheckError>,
        events: &broadcast::Sender<RegistryEvent>,
    ) {
        let reason = result.as_ref().err().map(ToString::to_string);
        {
            let mut record = self.check.lock();
            record.tracker.record(result.is_ok());
            record.last_check = Some(Utc::now());
            if reason.is_some() {
                record.last_error.clone_from(&reason);
            }
            self.active
                .store(record.tracker.state().to_u8(), Ordering::Release);
        }
        self.observe(events, reason.as_deref());
    }

    pub(crate) fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Release);
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn start_call(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end_call(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
