//! The async level: run an operation under the breaker, classify its result, apply the call
//! timeout.

use std::future::Future;

use crate::breaker::CircuitBreaker;
use crate::error::CallError;

/// How one call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counts as a success.
    Success,
    /// Counts as a failure.
    Failure,
    /// Counts neither way (and gives a HalfOpen probe back).
    Ignore,
}

/// Decides how a call's result counts: for errors AND for `Ok` values (an HTTP 503 inside `Ok`
/// is a failure; a 404 error may be ignored).
///
/// Closures `Fn(&Result<T, E>) -> Outcome` implement it.
pub trait Classifier<T, E> {
    /// How `result` counts.
    fn classify(&self, result: &Result<T, E>) -> Outcome;
}

impl<T, E, F> Classifier<T, E> for F
where
    F: Fn(&Result<T, E>) -> Outcome,
{
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// `Ok` is a success, `Err` a failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl<T, E> Classifier<T, E> for DefaultClassifier {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

impl CircuitBreaker {
    /// Runs `operation` if the breaker permits it: `Ok` counts as a success, `Err` as a
    /// failure, and a call exceeding the configured call timeout is cancelled and counted as a
    /// failure. Cancelling the returned future records nothing.
    ///
    /// With a call timeout configured, this must run inside a tokio runtime with time enabled.
    pub async fn call<F, Fut, T, E>(&self, operation: F) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_with(&DefaultClassifier, operation).await
    }

    /// Like [`CircuitBreaker::call`], with `classifier` deciding how the result counts. The
    /// caller still gets its `Ok` value when the classifier counts it as a failure.
    pub async fn call_with<C, F, Fut, T, E>(
        &self,
        classifier: &C,
        operation: F,
    ) -> Result<T, CallError<E>>
    where
        C: Classifier<T, E> + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(CallError::Rejected)?;
        let result = match self.inner.config.call_timeout {
            Some(limit) => match tokio::time::timeout(limit, operation()).await {
                Ok(result) => result,
                Err(_) => {
                    permit.failure();
                    return Err(CallError::Timeout);
                }
            },
            None => operation().await,
        };
        permit.record(classifier.classify(&result));
        result.map_err(CallError::Inner)
    }
}
