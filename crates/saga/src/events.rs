//! Events for metrics and logs: step latencies and outcomes, breaker waits, compensations,
//! finished and parked sagas.

use std::sync::Arc;
use std::time::Duration;

use crate::{SagaId, State};

pub(crate) type EventHook = Arc<dyn Fn(&SagaEvent) + Send + Sync>;

/// Something a runner did, passed to every [`on_event`](crate::RunnerConfigBuilder::on_event)
/// hook. Latencies are tokio-clock durations of the step's own call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SagaEvent {
    /// A saga was created and started.
    Started {
        /// The saga.
        id: SagaId,
        /// Its definition.
        saga: String,
    },
    /// A runner took over a saga whose lease had expired.
    Resumed {
        /// The saga.
        id: SagaId,
        /// Its definition.
        saga: String,
        /// The state it resumed in.
        state: State,
    },
    /// A step's execute succeeded.
    StepSucceeded {
        /// The saga.
        id: SagaId,
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
        /// How long the call took.
        latency: Duration,
    },
    /// A step's execute failed.
    StepFailed {
        /// The saga.
        id: SagaId,
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
        /// How long the call took.
        latency: Duration,
        /// Whether it will be retried.
        retrying: bool,
        /// The error.
        error: String,
    },
    /// A step waits for its open breaker (no attempt spent).
    BreakerWait {
        /// The saga.
        id: SagaId,
        /// The step.
        step: String,
        /// How long it waits before asking again.
        wait: Duration,
    },
    /// A compensation succeeded.
    Compensated {
        /// The saga.
        id: SagaId,
        /// The step undone.
        step: String,
        /// The compensation attempt.
        attempt: u32,
        /// How long the call took.
        latency: Duration,
    },
    /// A compensation failed.
    CompensationFailed {
        /// The saga.
        id: SagaId,
        /// The step being undone.
        step: String,
        /// The compensation attempt.
        attempt: u32,
        /// How long the call took.
        latency: Duration,
        /// Whether it will be retried.
        retrying: bool,
        /// The error.
        error: String,
    },
    /// The saga reached `completed` or `compensated`.
    Finished {
        /// The saga.
        id: SagaId,
        /// Its definition.
        saga: String,
        /// The final state.
        state: State,
    },
    /// The saga was parked (`failed`) for an operator.
    Parked {
        /// The saga.
        id: SagaId,
        /// Its definition.
        saga: String,
        /// Why.
        reason: String,
    },
    /// The runner lost its lease and stopped working on the saga.
    LeaseLost {
        /// The saga.
        id: SagaId,
    },
}
