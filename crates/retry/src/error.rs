use std::time::Duration;

/// A retry policy or budget was configured with values that cannot work.
///
/// Returned by the builders' `build()`, by [`crate::Backoff::validate`] and by serde when a
/// policy or backoff is deserialised; the message names the setting to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_attempts` must be at least 1 (1 means "no retries").
    #[error("max_attempts must be at least 1, got {0}")]
    ZeroAttempts(u32),
    /// The exponential multiplier must be finite and at least 1.0.
    #[error("multiplier must be a finite number >= 1.0, got {0}")]
    InvalidMultiplier(f64),
    /// `max_delay` must be at least the initial delay.
    #[error("max_delay ({max_delay:?}) must be >= the initial delay ({initial:?})")]
    MaxDelayBelowInitial {
        /// The configured initial delay.
        initial: Duration,
        /// The configured maximum delay.
        max_delay: Duration,
    },
    /// A duration is longer than [`crate::MAX_DURATION`] (365 days): no retry wait is meant
    /// to be that long, and `now + delay` must not overflow.
    #[error("{name} must be at most {max:?}, got {value:?}")]
    DurationTooLong {
        /// The setting.
        name: &'static str,
        /// The refused value.
        value: Duration,
        /// The longest accepted value.
        max: Duration,
    },
    /// A duration that must be positive was zero (`max_elapsed`: zero would forbid every
    /// retry; use `max_attempts(1)` for that).
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A retry budget's ratio must be within 0..=1000 percent.
    #[error("retry ratio must be within 0..=1000 percent, got {0}")]
    InvalidRatio(u32),
    /// A retry budget's window must be longer than zero.
    #[error("budget window must be longer than zero")]
    ZeroWindow,
}
