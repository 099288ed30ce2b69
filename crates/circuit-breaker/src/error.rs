//! The crate's errors: invalid configuration, rejected calls, and failed calls.

use std::fmt;
use std::time::Duration;

use crate::state::State;

/// A configuration the builder refused. Each variant names the setting to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A rate threshold must be in `(0, 100]` percent.
    #[error("{name} must be in (0, 100] percent, got {value}")]
    Threshold {
        /// Which threshold (`failure_rate_threshold` or `slow_call_rate_threshold`).
        name: &'static str,
        /// The refused value.
        value: f64,
    },
    /// A count-based window needs between 1 and [`crate::MAX_COUNT_WINDOW`] calls.
    #[error("count window size must be in 1..={max}, got {value}")]
    CountWindow {
        /// The refused value.
        value: u32,
        /// The largest accepted size.
        max: u32,
    },
    /// A time-based window needs between 1 second and [`crate::MAX_TIME_WINDOW_SECS`] seconds.
    #[error("time window must be between 1 s and {max_secs} s, got {value:?}")]
    TimeWindow {
        /// The refused value.
        value: Duration,
        /// The longest accepted window in seconds.
        max_secs: u64,
    },
    /// `minimum_calls` must be at least 1.
    #[error("minimum_calls must be at least 1")]
    MinimumCalls,
    /// Half-open probes must be between 1 and [`crate::MAX_HALF_OPEN_PERMITS`].
    #[error("half_open_permits must be in 1..={max}, got {value}")]
    HalfOpenPermits {
        /// The refused value.
        value: u32,
        /// The largest accepted value.
        max: u32,
    },
    /// A duration that must be positive was zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// The growing open duration's cap is below its first value.
    #[error("max_open_duration ({max:?}) is below the first open duration ({initial:?})")]
    OpenBackoffCap {
        /// The first open duration of the backoff.
        initial: Duration,
        /// The refused cap.
        max: Duration,
    },
    /// The open backoff cannot be used (a multiplier that is not finite or below 1.0, a
    /// duration above [`steadfast_retry::MAX_DURATION`]); refused here so that a later opening
    /// cannot fail inside `permit.failure()`.
    #[error("open_backoff: {0}")]
    OpenBackoff(steadfast_retry::ConfigError),
}

/// A call the breaker did not let through. Retry after `retry_after` when it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// The state that refused the call: `Open`, `HalfOpen` (all probes in flight) or `ForcedOpen`.
    pub state: State,
    /// Time until the breaker lets a probe through, when the breaker knows it (Open).
    pub retry_after: Option<Duration>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker is {}: call not permitted", self.state)?;
        if let Some(d) = self.retry_after {
            write!(f, " (next probe in {} ms)", d.as_millis())?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

/// Why [`crate::CircuitBreaker::call`] did not return the operation's value.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The breaker refused the call; the operation did not run.
    #[error(transparent)]
    Rejected(Rejected),
    /// The operation exceeded the configured call timeout; it was cancelled and counted as a
    /// failure.
    #[error("call timed out")]
    Timeout,
    /// The operation's own error (counted as the classifier decided).
    #[error(transparent)]
    Inner(E),
}

impl<E> CallError<E> {
    /// The operation's error, if that is what this is.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CallError::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// True when the breaker refused the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self, CallError::Rejected(_))
    }
}
