//! What a step sees: the saga's input, earlier outputs, and its idempotency key.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::{SagaId, StepError};

/// The context a step's execute and compensation run with.
///
/// The idempotency key is `<saga id>:<step name>`: the same for every attempt, across
/// crashes and runners, so a step can pass it downstream (an `Idempotency-Key` header) and a
/// re-run after a crash cannot act twice.
pub struct StepContext<I> {
    pub(crate) saga_id: SagaId,
    pub(crate) step: Arc<str>,
    pub(crate) key: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) input: Arc<I>,
    pub(crate) outputs: Arc<HashMap<String, serde_json::Value>>,
}

impl<I> Clone for StepContext<I> {
    fn clone(&self) -> Self {
        StepContext {
            saga_id: self.saga_id.clone(),
            step: self.step.clone(),
            key: self.key.clone(),
            attempt: self.attempt,
            input: self.input.clone(),
            outputs: self.outputs.clone(),
        }
    }
}

impl<I> fmt::Debug for StepContext<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepContext")
            .field("saga_id", &self.saga_id)
            .field("step", &self.step)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl<I> StepContext<I> {
    /// The saga's id.
    pub fn saga_id(&self) -> &SagaId {
        &self.saga_id
    }

    /// This step's name.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// The stable idempotency key, `<saga id>:<step name>`.
    pub fn idempotency_key(&self) -> &str {
        &self.key
    }

    /// The attempt number (1-based, counted over the saga's life: an attempt cut short by a
    /// crash counts too). For a compensation, its own attempt number.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The saga's input.
    pub fn input(&self) -> &I {
        &self.input
    }

    /// The recorded output of completed step `step`, decoded. A step that has not completed,
    /// or an output of another shape, is a permanent error (a definition bug).
    pub fn output<O: DeserializeOwned>(&self, step: &str) -> Result<O, StepError> {
        let value = self
            .outputs
            .get(step)
            .ok_or_else(|| StepError::permanent(format!("step {step} has no recorded output")))?;
        serde_json::from_value(value.clone()).map_err(|e| {
            StepError::permanent(format!("output of step {step} does not decode: {e}"))
        })
    }

    /// The recorded output of completed step `step`, as JSON.
    pub fn raw_output(&self, step: &str) -> Option<&serde_json::Value> {
        self.outputs.get(step)
    }
}
