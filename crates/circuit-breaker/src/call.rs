//! The async level: run an operation under the breaker, classify its result, apply the call
//! timeout.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

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

/// The boxed form a configured classifier is stored in, one per result type.
type Boxed<T, E> = Box<dyn Fn(&Result<T, E>) -> Outcome + Send + Sync>;

/// The classifiers set once in a [`crate::Config`], at most one per result type
/// `Result<T, E>`, found again by type when a call's result arrives.
#[derive(Clone, Default)]
pub(crate) struct Classifiers(Vec<Arc<dyn Any + Send + Sync>>);

impl Classifiers {
    pub(crate) fn set<T: 'static, E: 'static>(&mut self, f: Boxed<T, E>) {
        let entry: Arc<dyn Any + Send + Sync> = Arc::new(f);
        let id = Any::type_id(&*entry);
        self.0.retain(|e| Any::type_id(&**e) != id);
        self.0.push(entry);
    }

    pub(crate) fn get<T: 'static, E: 'static>(&self) -> Option<&Boxed<T, E>> {
        self.0.iter().find_map(|e| e.downcast_ref::<Boxed<T, E>>())
    }
}

impl fmt::Debug for Classifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Classifiers({})", self.0.len())
    }
}

impl PartialEq for Classifiers {
    /// Closures cannot be compared: two sets are equal when they hold the same closures.
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

/// A breaker classifies by its configured classifier (see [`CircuitBreaker::classify`]): pass a
/// clone where a [`Classifier`] is expected, e.g. to the tower layer's `.classifier(...)`, to
/// use the one set in the config.
impl<T: 'static, E: 'static> Classifier<T, E> for CircuitBreaker {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        CircuitBreaker::classify(self, result)
    }
}

impl CircuitBreaker {
    /// How `result` counts: by the classifier configured for `Result<T, E>`
    /// ([`crate::ConfigBuilder::classifier`]) if there is one, else `Ok` is a success and
    /// `Err` a failure.
    pub fn classify<T: 'static, E: 'static>(&self, result: &Result<T, E>) -> Outcome {
        match self.inner.config.classifiers.get::<T, E>() {
            Some(f) => f(result),
            None => DefaultClassifier.classify(result),
        }
    }

    /// Runs `operation` if the breaker permits it. The result counts as the configured
    /// classifier for `Result<T, E>` says ([`crate::ConfigBuilder::classifier`]); without one,
    /// `Ok` counts as a success and `Err` as a failure. A call exceeding the configured call
    /// timeout is cancelled and counted as a failure. Cancelling the returned future records
    /// nothing.
    ///
    /// With a call timeout configured, this must run inside a tokio runtime with time enabled.
    pub async fn call<F, Fut, T, E>(&self, operation: F) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: 'static,
        E: 'static,
    {
        let by_config = |result: &Result<T, E>| self.classify(result);
        self.call_with(&by_config, operation).await
    }

    /// Like [`CircuitBreaker::call`], with `classifier` deciding how the result counts (in place
    /// of the configured one: a per-call override). The caller still gets its `Ok` value when
    /// the classifier counts it as a failure.
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
