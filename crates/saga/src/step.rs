//! Steps: an execute, an optional compensation, and how each is retried.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use steadfast_circuit_breaker::CircuitBreaker;
use steadfast_retry::RetryPolicy;

use crate::StepContext;
use crate::config::default_compensation_policy;

/// A step's failure, classified: retried by policy, or permanent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Worth another attempt (a timeout, a 5xx, a 429): retried by the step's policy, after
    /// `retry_after` when the downstream said when (capped by the policy's `max_delay`).
    #[error("{message}")]
    Retryable {
        /// What happened.
        message: String,
        /// The downstream's `Retry-After`, if it gave one.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (a 4xx, a business refusal): the step fails now, and the saga
    /// compensates (or, after a pivot, parks).
    #[error("{message}")]
    Permanent {
        /// What happened.
        message: String,
    },
}

impl StepError {
    /// A retryable error.
    pub fn retryable(message: impl Into<String>) -> Self {
        StepError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> Self {
        StepError::Permanent {
            message: message.into(),
        }
    }

    /// A retryable error to retry after `after` (e.g. an HTTP `Retry-After`); a permanent
    /// error stays as it is.
    pub fn retry_after(self, after: Duration) -> Self {
        match self {
            StepError::Retryable { message, .. } => StepError::Retryable {
                message,
                retry_after: Some(after),
            },
            permanent => permanent,
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StepError::Retryable { .. })
    }

    /// The message.
    pub fn message(&self) -> &str {
        match self {
            StepError::Retryable { message, .. } | StepError::Permanent { message } => message,
        }
    }

    /// The server-given delay, if any.
    pub fn server_delay(&self) -> Option<Duration> {
        match self {
            StepError::Retryable { retry_after, .. } => *retry_after,
            StepError::Permanent { .. } => None,
        }
    }
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub(crate) type ExecFn<I> =
    Arc<dyn Fn(StepContext<I>) -> BoxFuture<Result<serde_json::Value, StepError>> + Send + Sync>;
pub(crate) type WhenFn<I> = Arc<dyn Fn(&I) -> bool + Send + Sync>;
pub(crate) type CompFn<I> = Arc<
    dyn Fn(StepContext<I>, serde_json::Value) -> BoxFuture<Result<(), StepError>> + Send + Sync,
>;

/// One step of a saga, built with [`Step::new`]; `I` is the saga's input type.
pub struct Step<I> {
    pub(crate) name: String,
    pub(crate) execute: ExecFn<I>,
    pub(crate) compensate: Option<CompFn<I>>,
    pub(crate) pivot: bool,
    pub(crate) policy: RetryPolicy,
    pub(crate) compensation_policy: RetryPolicy,
    pub(crate) breaker: Option<CircuitBreaker>,
    pub(crate) only_if: Option<WhenFn<I>>,
}

impl<I> fmt::Debug for Step<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("compensable", &self.compensate.is_some())
            .field("pivot", &self.pivot)
            .field("conditional", &self.only_if.is_some())
            .field("policy", &self.policy)
            .field("compensation_policy", &self.compensation_policy)
            .field(
                "breaker",
                &self.breaker.as_ref().map(|b| b.name().to_owned()),
            )
            .finish()
    }
}

impl<I: Send + Sync + 'static> Step<I> {
    /// A step named `name` (1 to 64 of `[A-Za-z0-9_.-]`, unique in its saga) that runs
    /// `execute`. Its output `O` is recorded in the log (JSON) before the saga moves on: it is
    /// what later steps read ([`StepContext::output`]) and what the compensation gets.
    ///
    /// Defaults: no compensation (undoing the saga skips it), not a pivot, retried by
    /// [`RetryPolicy::default`] (3 attempts, 1 s then 2 s), compensations by
    /// [`default_compensation_policy`], no breaker.
    #[allow(clippy::new_ret_no_self)]
    pub fn new<O, F, Fut>(name: impl Into<String>, execute: F) -> StepBuilder<I, O>
    where
        O: Serialize + DeserializeOwned + Send + 'static,
        F: Fn(StepContext<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, StepError>> + Send + 'static,
    {
        let execute: ExecFn<I> = Arc::new(move |ctx| {
            let fut = execute(ctx);
            Box::pin(async move {
                let output = fut.await?;
                serde_json::to_value(output).map_err(|e| {
                    StepError::permanent(format!("step output does not serialise: {e}"))
                })
            })
        });
        StepBuilder {
            step: Step {
                name: name.into(),
                execute,
                compensate: None,
                pivot: false,
                policy: RetryPolicy::default(),
                compensation_policy: default_compensation_policy(),
                breaker: None,
                only_if: None,
            },
            _output: PhantomData,
        }
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the step has a compensation.
    pub fn is_compensable(&self) -> bool {
        self.compensate.is_some()
    }

    /// Whether the step is a pivot (once it succeeded the saga only goes forward).
    pub fn is_pivot(&self) -> bool {
        self.pivot
    }

    /// Whether the step runs for `input` (always, unless [`StepBuilder::only_if`] says not).
    pub fn runs_for(&self, input: &I) -> bool {
        self.only_if.as_ref().is_none_or(|when| when(input))
    }
}

/// Sets up a [`Step`]; see [`Step::new`]. A saga builder takes it as it is.
#[must_use]
pub struct StepBuilder<I, O> {
    step: Step<I>,
    _output: PhantomData<fn() -> O>,
}

impl<I, O> fmt::Debug for StepBuilder<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.step.fmt(f)
    }
}

impl<I, O> StepBuilder<I, O>
where
    I: Send + Sync + 'static,
    O: Serialize + DeserializeOwned + Send + 'static,
{
    /// How to undo the step, given its recorded output. Run when a later step fails for good,
    /// in reverse order of completion; retried by the compensation policy. It must be
    /// idempotent: after a crash it may run again (with the same idempotency key).
    pub fn compensate<F, Fut>(mut self, compensate: F) -> Self
    where
        F: Fn(StepContext<I>, O) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), StepError>> + Send + 'static,
    {
        let compensate = Arc::new(compensate);
        self.step.compensate = Some(Arc::new(move |ctx, output| {
            let compensate = compensate.clone();
            Box::pin(async move {
                let output: O = serde_json::from_value(output).map_err(|e| {
                    StepError::permanent(format!("recorded output does not decode: {e}"))
                })?;
                compensate(ctx, output).await
            })
        }));
        self
    }

    /// Marks the step as the pivot: it cannot be undone, so once it succeeded the saga can
    /// only go forward. A later step that fails is retried under the saga's after-pivot
    /// policy, and parks the saga (`failed`) if it fails for good; nothing is compensated. A
    /// pivot's compensation, if one was set, is never run.
    pub fn pivot(mut self) -> Self {
        self.step.pivot = true;
        self
    }

    /// How the execute is retried (default: [`RetryPolicy::default`]).
    pub fn policy(mut self, policy: RetryPolicy) -> Self {
        self.step.policy = policy;
        self
    }

    /// How the compensation is retried (default: [`default_compensation_policy`]).
    pub fn compensation_policy(mut self, policy: RetryPolicy) -> Self {
        self.step.compensation_policy = policy;
        self
    }

    /// Runs the execute and the compensation through `breaker`. An open breaker is a wait
    /// (until it lets calls through again), not a failure and not an attempt; a failed
    /// half-open probe is recorded but spends no attempt either. A retryable error counts as a
    /// breaker failure, a permanent one is ignored (the downstream answered).
    pub fn breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.step.breaker = Some(breaker);
        self
    }

    /// Runs the step only for inputs where `when` holds. For any other input the step is
    /// recorded as skipped ([`Entry::StepSkipped`](crate::Entry::StepSkipped), output
    /// `null`) before the saga moves on: no attempt, no breaker permit (a skipped step neither
    /// waits on its breaker nor counts as a success in it), and nothing to compensate. A
    /// skipped pivot is not a pivot point. `when` must depend on the input alone, so that a
    /// resumed saga decides the same way.
    ///
    /// For a saga whose steps are a fixed menu of which each run uses some (the actions a
    /// request asks for).
    pub fn only_if(mut self, when: impl Fn(&I) -> bool + Send + Sync + 'static) -> Self {
        self.step.only_if = Some(Arc::new(when));
        self
    }

    /// The finished step.
    pub fn build(self) -> Step<I> {
        self.step
    }
}

impl<I, O> From<StepBuilder<I, O>> for Step<I> {
    fn from(builder: StepBuilder<I, O>) -> Step<I> {
        builder.step
    }
}
