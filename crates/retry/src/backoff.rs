use std::time::Duration;

use rand::Rng;

use crate::ConfigError;

/// The longest duration any policy or backoff setting may hold: 365 days.
///
/// Far beyond any sensible retry wait, and far enough below the limits of `Duration`,
/// `Instant` and `SystemTime` arithmetic that `now + delay` can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How the base delay grows from one retry to the next, before jitter and the cap.
///
/// `attempt` is 1-based and names the attempt that just failed: `attempt = 1` gives the delay
/// before the second attempt.
///
/// The constructors ([`Backoff::exponential`] and friends) are infallible `const fn`s so that
/// presets can be constants; a backoff is checked where it is used: by
/// [`RetryPolicyBuilder::build`](crate::RetryPolicyBuilder::build), by serde (feature `serde`,
/// which goes through [`Backoff::validate`]), by [`Backoff::validated`], and by the circuit
/// breaker's `open_backoff` option. [`base_delay`](Backoff::base_delay) never panics even on an
/// unchecked backoff: it saturates at the cap and treats a negative or NaN delay as zero.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(rename_all = "snake_case", try_from = "raw::RawBackoff")
)]
#[non_exhaustive]
pub enum Backoff {
    /// The same delay before every retry.
    Constant {
        /// The delay.
        delay: Duration,
    },
    /// `initial + step * (attempt - 1)`.
    Linear {
        /// The delay before the first retry.
        initial: Duration,
        /// Added for each further retry.
        step: Duration,
    },
    /// `initial * multiplier^(attempt - 1)`.
    Exponential {
        /// The delay before the first retry.
        initial: Duration,
        /// Growth factor per retry (at least 1.0).
        multiplier: f64,
    },
}

impl Backoff {
    /// Exponential backoff starting at `initial`, multiplied by `multiplier` per retry.
    pub const fn exponential(initial: Duration, multiplier: f64) -> Self {
        Backoff::Exponential {
            initial,
            multiplier,
        }
    }

    /// The same `delay` before every retry.
    pub const fn constant(delay: Duration) -> Self {
        Backoff::Constant { delay }
    }

    /// `initial`, then `initial + step`, `initial + 2 * step`, ...
    pub const fn linear(initial: Duration, step: Duration) -> Self {
        Backoff::Linear { initial, step }
    }

    /// Checks that every value of this backoff can be used: the durations are at most
    /// [`MAX_DURATION`] and an exponential multiplier is finite and at least 1.0.
    ///
    /// Zero delays are accepted (an immediate retry is legitimate, as in Polly); callers that
    /// need a positive first delay (the circuit breaker's open backoff) check that themselves.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Backoff::Constant { delay } => within_limit("backoff delay", delay),
            Backoff::Linear { initial, step } => {
                within_limit("backoff initial", initial)?;
                within_limit("backoff step", step)
            }
            Backoff::Exponential {
                initial,
                multiplier,
            } => {
                within_limit("backoff initial", initial)?;
                if !multiplier.is_finite() || multiplier < 1.0 {
                    return Err(ConfigError::InvalidMultiplier(multiplier));
                }
                Ok(())
            }
        }
    }

    /// This backoff if [`validate`](Self::validate) accepts it.
    pub fn validated(self) -> Result<Self, ConfigError> {
        self.validate().map(|()| self)
    }

    /// The first delay of the schedule.
    pub fn initial(&self) -> Duration {
        match *self {
            Backoff::Constant { delay } => delay,
            Backoff::Linear { initial, .. } | Backoff::Exponential { initial, .. } => initial,
        }
    }

    /// The base delay after failed attempt `attempt` (1-based), capped at `max`.
    ///
    /// Saturates instead of overflowing, so any `attempt` is safe.
    pub fn base_delay(&self, attempt: u32, max: Duration) -> Duration {
        let n = attempt.max(1) - 1;
        let raw = match *self {
            Backoff::Constant { delay } => delay,
            Backoff::Linear { initial, step } => initial.saturating_add(step.saturating_mul(n)),
            Backoff::Exponential {
                initial,
                multiplier,
            } => {
                let factor = multiplier.powi(n.min(i32::MAX as u32) as i32);
                let secs = initial.as_secs_f64() * factor;
                // Only an unvalidated multiplier (negative, NaN) gets here with a negative or
                // NaN product; zero is the one safe reading, `from_secs_f64` would panic.
                if secs.is_nan() || secs <= 0.0 {
                    return Duration::ZERO;
                }
                if secs >= max.as_secs_f64() {
                    return max;
                }
                Duration::try_from_secs_f64(secs).map_or(max, |d| d.min(max))
            }
        };
        raw.min(max)
    }
}

/// Randomisation applied to each base delay, so that many clients retrying the same outage do
/// not arrive in lock-step.
///
/// With `d` the capped base delay and `cap` the policy's `max_delay`:
///
/// | jitter | delay |
/// |---|---|
/// | `None` | `d` |
/// | `Full` | uniform in `[0, d]` |
/// | `Equal` | `d/2` + uniform in `[0, d/2]` |
/// | `Decorrelated` | uniform in `[initial, min(cap, 3 * previous)]` (AWS's "decorrelated jitter") |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Jitter {
    /// No randomisation: the schedule is exactly the backoff's.
    #[default]
    None,
    /// Uniform between zero and the base delay; spreads load best, may retry immediately.
    Full,
    /// Half the base delay plus a uniform share of the other half; never shorter than `d/2`.
    Equal,
    /// Each delay drawn between the initial delay and three times the previous one.
    Decorrelated,
}

impl Jitter {
    /// Applies this jitter to `base`. `previous` is the delay used before the last retry (or
    /// the backoff's initial delay for the first), used only by `Decorrelated`.
    pub(crate) fn apply<R: Rng + ?Sized>(
        self,
        base: Duration,
        initial: Duration,
        previous: Duration,
        cap: Duration,
        rng: &mut R,
    ) -> Duration {
        match self {
            Jitter::None => base,
            Jitter::Full => uniform(rng, Duration::ZERO, base),
            Jitter::Equal => {
                let half = base / 2;
                half + uniform(rng, Duration::ZERO, base - half)
            }
            Jitter::Decorrelated => {
                let low = initial.min(cap);
                let high = previous.saturating_mul(3).min(cap).max(low);
                uniform(rng, low, high)
            }
        }
    }
}

fn uniform<R: Rng + ?Sized>(rng: &mut R, low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let span = (high - low).as_nanos().min(u64::MAX as u128) as u64;
    low + Duration::from_nanos(rng.random_range(0..=span))
}

/// Refuses a duration above [`MAX_DURATION`], naming the setting.
pub(crate) fn within_limit(name: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value > MAX_DURATION {
        return Err(ConfigError::DurationTooLong {
            name,
            value,
            max: MAX_DURATION,
        });
    }
    Ok(())
}

/// The unchecked serde form of [`Backoff`]: deserialised first, then validated, so a config
/// file cannot skip the checks the builder makes.
#[cfg(feature = "serde")]
mod raw {
    use std::time::Duration;

    use super::Backoff;
    use crate::ConfigError;

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub(crate) enum RawBackoff {
        Constant { delay: Duration },
        Linear { initial: Duration, step: Duration },
        Exponential { initial: Duration, multiplier: f64 },
    }

    impl TryFrom<RawBackoff> for Backoff {
        type Error = ConfigError;

        fn try_from(raw: RawBackoff) -> Result<Self, ConfigError> {
            match raw {
                RawBackoff::Constant { delay } => Backoff::constant(delay),
                RawBackoff::Linear { initial, step } => Backoff::linear(initial, step),
                RawBackoff::Exponential {
                    initial,
                    multiplier,
                } => Backoff::exponential(initial, multiplier),
            }
            .validated()
        }
    }
}
