//! Metrics from the saga runner's events, and the parked-sagas gauge.

use std::time::Duration;

use steadfast_saga::{ListFilter, MAX_LIST, Operator, SagaEvent, State};

use crate::metrics as m;

/// Records one [`SagaEvent`] (the runner's `on_event` hook): step outcomes and latencies by
/// action and phase, sagas by how they ended.
pub fn record_event(event: &SagaEvent) {
    let step = |action: &str, phase: &'static str, outcome: &'static str| {
        metrics::counter!(m::ACTION_STEPS, "action" => action.to_owned(), "phase" => phase, "outcome" => outcome)
            .increment(1);
    };
    let latency = |action: &str, phase: &'static str, d: Duration| {
        metrics::histogram!(m::ACTION_STEP_DURATION, "action" => action.to_owned(), "phase" => phase)
            .record(d);
    };
    let saga = |outcome: &'static str| {
        metrics::counter!(m::SAGAS, "outcome" => outcome).increment(1);
    };
    match event {
        SagaEvent::Started { .. } => saga("started"),
        SagaEvent::Resumed { id, state, .. } => {
            tracing::info!(saga = %id, state = %state, "saga resumed by recovery");
            saga("resumed");
        }
        SagaEvent::StepSucceeded {
            step: s,
            latency: d,
            ..
        } => {
            step(s, "execute", "ok");
            latency(s, "execute", *d);
        }
        SagaEvent::StepFailed {
            id,
            step: s,
            attempt,
            latency: d,
            retrying,
            error,
        } => {
            let outcome = if *retrying { "retry" } else { "failed" };
            step(s, "execute", outcome);
            latency(s, "execute", *d);
            tracing::warn!(saga = %id, action = %s, attempt, retrying, error = %error, "action failed");
        }
        SagaEvent::BreakerWait { step: s, .. } => step(s, "execute", "breaker_wait"),
        SagaEvent::Compensated {
            id,
            step: s,
            latency: d,
            ..
        } => {
            step(s, "compensate", "ok");
            latency(s, "compensate", *d);
            tracing::info!(saga = %id, action = %s, "action cancelled");
        }
        SagaEvent::CompensationFailed {
            id,
            step: s,
            attempt,
            latency: d,
            retrying,
            error,
        } => {
            let outcome = if *retrying { "retry" } else { "failed" };
            step(s, "compensate", outcome);
            latency(s, "compensate", *d);
            tracing::warn!(saga = %id, action = %s, attempt, retrying, error = %error, "action cancellation failed");
        }
        SagaEvent::Finished { id, state, .. } => {
            tracing::info!(saga = %id, state = %state, "reply actions saga finished");
            saga(match state {
                State::Compensated => "compensated",
                _ => "completed",
            });
        }
        SagaEvent::Parked { .. } => saga("parked"),
        SagaEvent::LeaseLost { id } => {
            tracing::warn!(saga = %id, "saga lease lost; another runner carries it on");
            saga("lease_lost");
        }
        _ => {}
    }
}

/// Sets `webhook_sagas_parked` to the number of parked (`failed`) sagas. Run in the
/// background, never per scrape; counts up to [`MAX_LIST`].
pub async fn refresh_parked(operator: &Operator, timeout: Duration) {
    let filter = ListFilter::state(State::Failed).limit(MAX_LIST);
    match tokio::time::timeout(timeout, operator.list(&filter)).await {
        Ok(Ok(parked)) => metrics::gauge!(m::SAGAS_PARKED).set(parked.len() as f64),
        Ok(Err(e)) => tracing::warn!(error = %e, "parked sagas not counted"),
        Err(_) => tracing::warn!("parked sagas not counted: the saga store did not answer"),
    }
}
