use std::time::Duration;

use rand::Rng;

/// How the base delay grows from one retry to the next, before jitter and the cap.
///
/// `attempt` is 1-based and names the attempt that just failed: `attempt = 1` gives the delay
/// before the second attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
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
                if !secs.is_finite() || secs >= max.as_secs_f64() {
                    return max;
                }
                Duration::from_secs_f64(secs)
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
