use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::{RetryBudget, RetryPolicy};

/// What to do after an attempt failed with a given error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Retry after the policy's next delay.
    Retry,
    /// Retry after this server-given delay (e.g. `Retry-After` on a 429 or 503) instead of the
    /// backoff; still capped by the policy's `max_delay`.
    RetryAfter(Duration),
    /// Do not retry: the error is permanent.
    Stop,
}

/// Why the retry loop gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The classifier said [`Action::Stop`].
    NotRetryable,
    /// The policy's `max_attempts` were used.
    AttemptsExhausted,
    /// The next wait would pass the policy's `max_elapsed`.
    ElapsedExceeded,
    /// The shared [`RetryBudget`] refused the retry.
    BudgetExhausted,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::NotRetryable => "error is not retryable",
            StopReason::AttemptsExhausted => "attempts exhausted",
            StopReason::ElapsedExceeded => "maximum elapsed time reached",
            StopReason::BudgetExhausted => "retry budget exhausted",
        })
    }
}

/// The operation's last error, with how many attempts were made and why the loop stopped.
#[derive(Debug)]
pub struct RetryError<E> {
    /// The error of the last attempt.
    pub error: E,
    /// Attempts made, the first included.
    pub attempts: u32,
    /// Why no further attempt was made.
    pub reason: StopReason,
}

impl<E> RetryError<E> {
    /// The last attempt's error.
    pub fn into_inner(self) -> E {
        self.error
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gave up after {} attempt(s) ({}): {}",
            self.attempts, self.reason, self.error
        )
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// What a retry hook sees before each wait.
#[derive(Debug)]
pub struct RetryEvent<'a, E> {
    /// The attempt that just failed (1-based).
    pub attempt: u32,
    /// How long the loop will now wait.
    pub delay: Duration,
    /// The error of that attempt.
    pub error: &'a E,
}

/// An attempt ran longer than the loop's per-attempt timeout ([`Retry::attempt_timeout`]) and
/// was cancelled.
///
/// The loop turns it into the operation's error type (`E: From<AttemptTimeout>`, or the
/// function given to [`Retry::attempt_timeout_with`]), so that the last error, the hooks and
/// [`RetryError`] see one type. A timed-out attempt is always retryable: the classifier is not
/// asked, since it judges what the operation returned and a cancelled attempt returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("attempt {attempt} timed out after {limit:?}")]
pub struct AttemptTimeout {
    /// The attempt that timed out (1-based).
    pub attempt: u32,
    /// The configured per-attempt timeout.
    pub limit: Duration,
}

type Classifier<'a, E> = Box<dyn Fn(&E) -> Action + Send + Sync + 'a>;
type Hook<'a, E> = Box<dyn Fn(&RetryEvent<'_, E>) + Send + Sync + 'a>;
type ResultHook<'a> = Box<dyn Fn(u32, Duration) + Send + Sync + 'a>;
type OnTimeout<'a, E> = Box<dyn Fn(AttemptTimeout) -> E + Send + Sync + 'a>;

/// What one attempt ended with, before the loop decides.
enum Outcome<T, E> {
    /// The operation returned this error.
    Failed(E),
    /// The operation was cancelled by the per-attempt timeout (already converted to `E`).
    TimedOut(E),
    /// The operation returned a value the result predicate wants retried.
    Unwanted(T),
}

/// A configured retry loop: a policy, a classifier, hooks, and an optional budget.
///
/// ```
/// use std::time::Duration;
/// use steadfast_retry::{Action, Retry, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let policy = RetryPolicy::builder()
///     .constant(Duration::from_millis(10))
///     .max_attempts(4)
///     .build()
///     .unwrap();
/// let mut calls = 0;
/// let result: Result<u32, _> = Retry::new(&policy)
///     .classify(|e: &&str| if *e == "fatal" { Action::Stop } else { Action::Retry })
///     .on_retry(|ev| eprintln!("attempt {} failed, waiting {:?}", ev.attempt, ev.delay))
///     .run(|| {
///         calls += 1;
///         let n = calls;
///         async move { if n < 3 { Err("busy") } else { Ok(n) } }
///     })
///     .await;
/// assert_eq!(result.unwrap(), 3);
/// # }
/// ```
#[must_use]
pub struct Retry<'a, E> {
    policy: &'a RetryPolicy,
    classify: Option<Classifier<'a, E>>,
    hooks: Vec<Hook<'a, E>>,
    result_hooks: Vec<ResultHook<'a>>,
    budget: Option<&'a RetryBudget>,
    timeout: Option<(Duration, OnTimeout<'a, E>)>,
}

impl<E> fmt::Debug for Retry<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("policy", self.policy)
            .field("classify", &self.classify.is_some())
            .field("hooks", &self.hooks.len())
            .field("budget", &self.budget)
            .field("attempt_timeout", &self.timeout.as_ref().map(|(d, _)| d))
            .finish()
    }
}

impl<'a, E> Retry<'a, E> {
    /// A loop that retries every error per `policy`.
    pub fn new(policy: &'a RetryPolicy) -> Self {
        Retry {
            policy,
            classify: None,
            hooks: Vec::new(),
            result_hooks: Vec::new(),
            budget: None,
            timeout: None,
        }
    }

    /// Decide per error whether to retry (default: retry every error).
    pub fn classify(mut self, f: impl Fn(&E) -> Action + Send + Sync + 'a) -> Self {
        self.classify = Some(Box::new(f));
        self
    }

    /// Observe each retry before its wait (for logs and metrics; the crate logs nothing).
    pub fn on_retry(mut self, f: impl Fn(&RetryEvent<'_, E>) + Send + Sync + 'a) -> Self {
        self.hooks.push(Box::new(f));
        self
    }

    /// Observe each retry of a value [`run_until`](Self::run_until)'s predicate refused, before
    /// its wait: the attempt number (1-based) and the coming delay.
    pub fn on_result_retry(mut self, f: impl Fn(u32, Duration) + Send + Sync + 'a) -> Self {
        self.result_hooks.push(Box::new(f));
        self
    }

    /// Cancel an attempt that runs longer than `limit` and count it as a retryable failure:
    /// the loop goes on as if the attempt had failed with `E::from(AttemptTimeout)`.
    ///
    /// The timeout bounds one attempt, not the loop; bound the whole loop with the policy's
    /// `max_elapsed` or an outer `tokio::time::timeout`. A zero `limit` still lets an attempt
    /// that is ready at once succeed (tokio polls the operation before the timer).
    pub fn attempt_timeout(self, limit: Duration) -> Self
    where
        E: From<AttemptTimeout> + 'a,
    {
        self.attempt_timeout_with(limit, E::from)
    }

    /// Like [`attempt_timeout`](Self::attempt_timeout), with `to_error` making the operation's
    /// error from the timeout (for error types without `From<AttemptTimeout>`).
    pub fn attempt_timeout_with(
        mut self,
        limit: Duration,
        to_error: impl Fn(AttemptTimeout) -> E + Send + Sync + 'a,
    ) -> Self {
        self.timeout = Some((limit, Box::new(to_error)));
        self
    }

    /// Spend from a shared budget for each retry; deposits once per call.
    pub fn budget(mut self, budget: &'a RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Runs `op` until it succeeds or the loop stops. Waits with `tokio::time::sleep`, so a
    /// paused tokio clock makes the schedule exact in tests.
    pub async fn run<T, F, Fut>(self, op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_until(|_| false, op).await
    }

    /// Like [`run`](Self::run), and also retries a successful value for which `retry_on`
    /// returns true (a "try again" answer: a job still pending, a 202), as Polly's
    /// `ShouldHandle` on results and resilience4j's `retryOnResult` do.
    ///
    /// Such a retry follows the policy like an error's (backoff, attempts, elapsed limit,
    /// budget) and is seen by [`on_result_retry`](Self::on_result_retry) hooks. When the loop
    /// stops on a refused value, that last value is returned as `Ok`, as in Polly and
    /// resilience4j: the caller inspects it, no error is invented.
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast_retry::{Retry, RetryPolicy};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let policy = RetryPolicy::builder().constant(Duration::from_millis(10)).max_attempts(5).build().unwrap();
    /// let mut polls = 0;
    /// let status = Retry::<()>::new(&policy)
    ///     .run_until(|s: &&str| *s == "pending", || {
    ///         polls += 1;
    ///         let s = if polls < 3 { "pending" } else { "done" };
    ///         async move { Ok(s) }
    ///     })
    ///     .await;
    /// assert_eq!(status.unwrap(), "done");
    /// # }
    /// ```
    pub async fn run_until<T, P, F, Fut>(self, retry_on: P, mut op: F) -> Result<T, RetryError<E>>
    where
        P: Fn(&T) -> bool,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let start = tokio::time::Instant::now();
        if let Some(budget) = self.budget {
            budget.deposit();
        }
        let mut attempt = 0u32;
        let mut previous = self.policy.backoff().initial();
        loop {
            attempt += 1;
            let result = match &self.timeout {
                None => op().await.map_err(Outcome::Failed),
                Some((limit, to_error)) => match tokio::time::timeout(*limit, op()).await {
                    Ok(result) => result.map_err(Outcome::Failed),
                    Err(_) => Err(Outcome::TimedOut(to_error(AttemptTimeout {
                        attempt,
                        limit: *limit,
                    }))),
                },
            };
            let outcome = match result {
                Ok(value) if !retry_on(&value) => return Ok(value),
                Ok(value) => Outcome::Unwanted(value),
                Err(outcome) => outcome,
            };
            let action = match &outcome {
                Outcome::Failed(error) => self
                    .classify
                    .as_ref()
                    .map_or(Action::Retry, |classify| classify(error)),
                Outcome::TimedOut(_) | Outcome::Unwanted(_) => Action::Retry,
            };
            let delay = match action {
                Action::Stop => return stop(outcome, attempt, StopReason::NotRetryable),
                Action::RetryAfter(d) => d.min(self.policy.max_delay()),
                Action::Retry => self.policy.next_delay(attempt, previous, &mut rand::rng()),
            };
            if !self.policy.allows_another(attempt) {
                return stop(outcome, attempt, StopReason::AttemptsExhausted);
            }
            if let Some(limit) = self.policy.max_elapsed() {
                if start.elapsed().saturating_add(delay) > limit {
                    return stop(outcome, attempt, StopReason::ElapsedExceeded);
                }
            }
            if let Some(budget) = self.budget {
                if !budget.withdraw() {
                    return stop(outcome, attempt, StopReason::BudgetExhausted);
                }
            }
            match &outcome {
                Outcome::Failed(error) | Outcome::TimedOut(error) => {
                    let event = RetryEvent {
                        attempt,
                        delay,
                        error,
                    };
                    for hook in &self.hooks {
                        hook(&event);
                    }
                }
                Outcome::Unwanted(_) => {
                    for hook in &self.result_hooks {
                        hook(attempt, delay);
                    }
                }
            }
            drop(outcome);
            previous = delay;
            tokio::time::sleep(delay).await;
        }
    }
}

/// Ends the loop: an error becomes a [`RetryError`], a refused value is handed back as is.
fn stop<T, E>(
    outcome: Outcome<T, E>,
    attempts: u32,
    reason: StopReason,
) -> Result<T, RetryError<E>> {
    match outcome {
        Outcome::Failed(error) | Outcome::TimedOut(error) => Err(give_up(error, attempts, reason)),
        Outcome::Unwanted(value) => Ok(value),
    }
}

fn give_up<E>(error: E, attempts: u32, reason: StopReason) -> RetryError<E> {
    RetryError {
        error,
        attempts,
        reason,
    }
}

/// Retries `op` per `policy`, every error considered retryable.
///
/// Use [`Retry`] for a classifier, hooks or a budget.
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy, op: F) -> Result<T, RetryError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    Retry::new(policy).run(op).await
}
