//! A selected endpoint, held for the length of one call.

use std::sync::Arc;

use crate::Endpoint;
use crate::member::Member;
use steadfast_circuit_breaker::OwnedPermit;

/// One endpoint chosen by [`Registry::select`](crate::Registry::select), with its breaker
/// permit and a place in its in-flight count (which P2C balancing reads).
///
/// Report the outcome with [`success`](Self::success) or [`failure`](Self::failure); dropping
/// the lease records nothing (a cancelled call says nothing about the endpoint). Use this when
/// [`Registry::call`](crate::Registry::call) does not fit, e.g. a streaming response whose
/// outcome is known later.
#[must_use = "report the outcome with success() or failure()"]
pub struct Lease {
    pub(crate) member: Arc<Member>,
    pub(crate) index: usize,
    permit: Option<OwnedPermit>,
    panic: bool,
}

impl Lease {
    pub(crate) fn new(
        member: Arc<Member>,
        index: usize,
        permit: Option<OwnedPermit>,
        panic: bool,
    ) -> Self {
        member.start_call();
        Self {
            member,
            index,
            permit,
            panic,
        }
    }

    /// The chosen endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.member.endpoint
    }

    /// Whether the service was in panic mode when this endpoint was chosen (the endpoint may be
    /// unhealthy or ejected; in that case its breaker is bypassed and the call is not recorded).
    pub fn in_panic_mode(&self) -> bool {
        self.panic
    }

    /// Whether the call is a half-open probe of the endpoint's breaker: its failure says the
    /// endpoint is still down (the breaker opens again), not that the request was bad. False
    /// for a call through a closed breaker, and in panic mode (the breaker is bypassed).
    pub fn is_probe(&self) -> bool {
        self.permit
            .as_ref()
            .is_some_and(steadfast_circuit_breaker::OwnedPermit::is_probe)
    }

    /// Records a successful call on the endpoint's breaker.
    pub fn success(mut self) {
        if let Some(permit) = self.permit.take() {
            permit.success();
        }
        self.member.observe(&self.member.events, None);
    }

    /// Records a failed call on the endpoint's breaker (which may eject the endpoint).
    pub fn failure(mut self) {
        if let Some(permit) = self.permit.take() {
            permit.failure();
        }
        self.member.observe(&self.member.events, None);
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("endpoint", &self.member.endpoint)
            .field("permit", &self.permit.is_some())
            .field("panic", &self.panic)
            .finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.member.end_call();
    }
}
