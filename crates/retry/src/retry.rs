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

type Classifier<'a, E> = Box<dyn Fn(&E) -> Action + Send + Sync + 'a>;
type Hook<'a, E> = Box<dyn Fn(&RetryEvent<'_, E>) + Send + Sync + 'a>;

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
    budget: Option<&'a RetryBudget>,
}

impl<E> fmt::Debug for Retry<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("policy", self.policy)
            .field("classify", &self.classify.is_some())
            .field("hooks", &self.hooks.len())
            .field("budget", &self.budget)
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
            budget: None,
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

    /// Spend from a shared budget for each retry; deposits once per call.
    pub fn budget(mut self, budget: &'a RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Runs `op` until it succeeds or the loop stops. Waits with `tokio::time::sleep`, so a
    /// paused tokio clock makes the schedule exact in tests.
    pub async fn run<T, F, Fut>(self, mut op: F) -> Result<T, RetryError<E>>
    where
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
            let error = match op().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let action = self
                .classify
                .as_ref()
                .map_or(Action::Retry, |classify| classify(&error));
            let delay = match action {
                Action::Stop => return Err(give_up(error, attempt, StopReason::NotRetryable)),
                Action::RetryAfter(d) => d.min(self.policy.max_delay()),
                Action::Retry => self.policy.next_delay(attempt, previous, &mut rand::rng()),
            };
            if !self.policy.allows_another(attempt) {
                return Err(give_up(error, attempt, StopReason::AttemptsExhausted));
            }
            if let Some(limit) = self.policy.max_elapsed() {
                if start.elapsed().saturating_add(delay) > limit {
                    return Err(give_up(error, attempt, StopReason::ElapsedExceeded));
                }
            }
            if let Some(budget) = self.budget {
                if !budget.withdraw() {
                    return Err(give_up(error, attempt, StopReason::BudgetExhausted));
                }
            }
            let event = RetryEvent {
                attempt,
                delay,
                error: &error,
            };
            for hook in &self.hooks {
                hook(&event);
            }
            drop(error);
            previous = delay;
            tokio::time::sleep(delay).await;
        }
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
