use std::time::Duration;

use rand::Rng;

use crate::backoff::within_limit;
use crate::{Backoff, ConfigError, Jitter};

/// When to retry and how long to wait: a backoff, a jitter, a cap on each delay, and the stop
/// conditions (attempts, total elapsed time).
///
/// A policy is a plain value: it computes its delay schedule without running anything, so a
/// durable queue can store `next_retry_at = now + policy.delay(attempt)`.
///
/// The default is the seed system's: 3 attempts in all, exponential from 1 s doubling, each delay
/// capped at 30 s, no jitter, no elapsed-time limit.
///
/// ```
/// use std::time::Duration;
/// use steadfast_retry::{Jitter, RetryPolicy};
///
/// let policy = RetryPolicy::builder()
///     .exponential(Duration::from_millis(100), 2.0)
///     .max_delay(Duration::from_secs(5))
///     .max_attempts(5)
///     .jitter(Jitter::None)
///     .build()?;
/// assert_eq!(policy.delay(1), Duration::from_millis(100));
/// assert_eq!(policy.delay(3), Duration::from_millis(400));
/// assert_eq!(policy.schedule().count(), 4); // 5 attempts => 4 waits
/// # Ok::<(), steadfast_retry::ConfigError>(())
/// ```
///
/// Every policy is valid: the builder checks, and with feature `serde` deserialisation goes
/// through the same checks (an unchecked form, then [`RetryPolicyBuilder::build`]), so
/// `max_attempts = 0` or a negative multiplier in a config file is a [`ConfigError`], not a
/// policy that misbehaves or panics later.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "raw::RawPolicy"))]
pub struct RetryPolicy {
    backoff: Backoff,
    jitter: Jitter,
    max_delay: Duration,
    max_attempts: u32,
    max_elapsed: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff: Backoff::exponential(Duration::from_secs(1), 2.0),
            jitter: Jitter::None,
            max_delay: Duration::from_secs(30),
            max_attempts: 3,
            max_elapsed: None,
        }
    }
}

impl RetryPolicy {
    /// A builder starting from [`RetryPolicy::default`].
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            policy: RetryPolicy::default(),
        }
    }

    /// A policy that never retries (one attempt).
    pub fn no_retry() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The backoff.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The jitter.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The cap on any single delay.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// Attempts in all, the first one included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The limit on time spent from the first attempt, if any.
    pub fn max_elapsed(&self) -> Option<Duration> {
        self.max_elapsed
    }

    /// Whether another attempt is allowed after `attempts` attempts were made.
    pub fn allows_another(&self, attempts: u32) -> bool {
        attempts < self.max_attempts
    }

    /// The capped delay after failed attempt `attempt` (1-based), before jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        self.backoff.base_delay(attempt, self.max_delay)
    }

    /// The delay after failed attempt `attempt` (1-based), jitter applied with the thread-local
    /// RNG. Without jitter this is deterministic.
    pub fn delay(&self, attempt: u32) -> Duration {
        // Without jitter there is nothing to draw: skip the thread-local RNG.
        if self.jitter == Jitter::None {
            return self.base_delay(attempt);
        }
        self.delay_with_rng(attempt, &mut rand::rng())
    }

    /// Like [`delay`](Self::delay) with a caller-supplied RNG (seed one for reproducible tests).
    ///
    /// For `Jitter::Decorrelated`, which depends on the previous delay, this uses the previous
    /// *base* delay; [`schedule_with_rng`](Self::schedule_with_rng) chains real delays instead.
    pub fn delay_with_rng<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let base = self.base_delay(attempt);
        let previous = if attempt <= 1 {
            self.backoff.initial()
        } else {
            self.base_delay(attempt - 1)
        };
        self.jitter
            .apply(base, self.backoff.initial(), previous, self.max_delay, rng)
    }

    /// The waits between attempts, in order: `max_attempts - 1` delays.
    pub fn schedule(&self) -> Schedule<'_, rand::rngs::ThreadRng> {
        self.schedule_with_rng(rand::rng())
    }

    /// The waits between attempts, jitter drawn from `rng`.
    pub fn schedule_with_rng<R: Rng>(&self, rng: R) -> Schedule<'_, R> {
        Schedule {
            policy: self,
            rng,
            attempt: 0,
            previous: self.backoff.initial(),
        }
    }

    /// The delay after `attempt` given the delay actually used before it (for decorrelated
    /// jitter); used by the retry loop and the schedule.
    pub(crate) fn next_delay<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        previous: Duration,
        rng: &mut R,
    ) -> Duration {
        let base = self.base_delay(attempt);
        self.jitter
            .apply(base, self.backoff.initial(), previous, self.max_delay, rng)
    }
}

/// An iterator over a policy's delays; see [`RetryPolicy::schedule`].
#[derive(Debug)]
pub struct Schedule<'a, R> {
    policy: &'a RetryPolicy,
    rng: R,
    attempt: u32,
    previous: Duration,
}

impl<R: Rng> Iterator for Schedule<'_, R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // Saturating: with `max_attempts = u32::MAX` an exhausted schedule is polled again.
        self.attempt = self.attempt.saturating_add(1);
        if !self.policy.allows_another(self.attempt) {
            self.attempt = self.policy.max_attempts;
            return None;
        }
        let delay = self
            .policy
            .next_delay(self.attempt, self.previous, &mut self.rng);
        self.previous = delay;
        Some(delay)
    }
}

/// Builds a validated [`RetryPolicy`]; see [`RetryPolicy::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryPolicyBuilder {
    policy: RetryPolicy,
}

impl RetryPolicyBuilder {
    /// Any backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.backoff = backoff;
        self
    }

    /// Exponential backoff (default: 1 s, ×2).
    pub fn exponential(self, initial: Duration, multiplier: f64) -> Self {
        self.backoff(Backoff::exponential(initial, multiplier))
    }

    /// A constant delay.
    pub fn constant(self, delay: Duration) -> Self {
        self.backoff(Backoff::constant(delay))
    }

    /// A linearly growing delay.
    pub fn linear(self, initial: Duration, step: Duration) -> Self {
        self.backoff(Backoff::linear(initial, step))
    }

    /// Jitter (default: none).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.policy.jitter = jitter;
        self
    }

    /// Cap on any single delay (default: 30 s).
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.policy.max_delay = max_delay;
        self
    }

    /// Attempts in all, the first included (default: 3).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.policy.max_attempts = attempts;
        self
    }

    /// Stop retrying once this much time has passed since the first attempt (default: none).
    pub fn max_elapsed(mut self, limit: Duration) -> Self {
        self.policy.max_elapsed = Some(limit);
        self
    }

    /// Validates and returns the policy.
    ///
    /// Refused: `max_attempts = 0`; a backoff [`Backoff::validate`] refuses (multiplier not
    /// finite or below 1.0, a duration above [`MAX_DURATION`](crate::MAX_DURATION));
    /// `max_delay` below the first delay or above `MAX_DURATION`; `max_elapsed` zero or above
    /// `MAX_DURATION`.
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        let p = self.policy;
        if p.max_attempts == 0 {
            return Err(ConfigError::ZeroAttempts(0));
        }
        p.backoff.validate()?;
        within_limit("max_delay", p.max_delay)?;
        if let Some(limit) = p.max_elapsed {
            if limit.is_zero() {
                return Err(ConfigError::ZeroDuration("max_elapsed"));
            }
            within_limit("max_elapsed", limit)?;
        }
        if p.max_delay < p.backoff.initial() {
            return Err(ConfigError::MaxDelayBelowInitial {
                initial: p.backoff.initial(),
                max_delay: p.max_delay,
            });
        }
        Ok(p)
    }
}

impl TryFrom<RetryPolicyBuilder> for RetryPolicy {
    type Error = ConfigError;

    fn try_from(builder: RetryPolicyBuilder) -> Result<Self, ConfigError> {
        builder.build()
    }
}

/// The unchecked serde form of [`RetryPolicy`], same fields; deserialised, then built.
#[cfg(feature = "serde")]
mod raw {
    use std::time::Duration;

    use super::RetryPolicy;
    use crate::{Backoff, ConfigError, Jitter};

    #[derive(serde::Deserialize)]
    pub(crate) struct RawPolicy {
        backoff: Backoff,
        jitter: Jitter,
        max_delay: Duration,
        max_attempts: u32,
        max_elapsed: Option<Duration>,
    }

    impl TryFrom<RawPolicy> for RetryPolicy {
        type Error = ConfigError;

        fn try_from(raw: RawPolicy) -> Result<Self, ConfigError> {
            let mut builder = RetryPolicy::builder()
                .backoff(raw.backoff)
                .jitter(raw.jitter)
                .max_delay(raw.max_delay)
                .max_attempts(raw.max_attempts);
            builder.policy.max_elapsed = raw.max_elapsed;
            builder.build()
        }
    }
}
