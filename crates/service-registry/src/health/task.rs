//! The per-endpoint health-check loop, run on a tokio task owned by the registry.

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::{CheckError, HealthCheck};
use crate::member::Member;
use crate::{HealthState, RegistryEvent};

/// Spawns the loop on the current runtime. The task holds the member and the event sender but
/// not the service, so it never keeps a deregistered service alive; the service aborts it.
pub(crate) fn spawn(
    member: Arc<Member>,
    check: HealthCheck,
    events: broadcast::Sender<RegistryEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            run_once(&member, &check, &events).await;
            let unhealthy = member.active_state() == HealthState::Unhealthy;
            let wait = check.next_wait(unhealthy, rand::random::<f64>());
            tokio::time::sleep(wait).await;
        }
    })
}

/// One check with its timeout, recorded into the member's thresholds.
pub(crate) async fn run_once(
    member: &Member,
    check: &HealthCheck,
    events: &broadcast::Sender<RegistryEvent>,
) {
    let result =
        match tokio::time::timeout(check.timeout(), check.checker.check(&member.endpoint)).await {
            Ok(result) => result,
            Err(_) => Err(CheckError::Timeout(check.timeout())),
        };
    member.record_check(result, events);
}
