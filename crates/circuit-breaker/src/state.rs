//! The breaker's states.

use std::fmt;

use serde::Serialize;

/// The state of a breaker.
///
/// `Closed`, `Open` and `HalfOpen` are the automatic cycle; the other three are entered only
/// by hand and left only by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Calls pass and are recorded; the breaker opens when the window's rates cross a threshold.
    Closed,
    /// Calls are rejected until the open duration has passed.
    Open,
    /// A fixed number of probe calls pass; their outcome closes or reopens the breaker.
    HalfOpen,
    /// Calls always pass and nothing is recorded.
    Disabled,
    /// Calls are always rejected.
    ForcedOpen,
    /// Calls always pass and are recorded, but the breaker never opens.
    MetricsOnly,
}

impl State {
    pub(crate) const fn code(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::Disabled => 3,
            State::ForcedOpen => 4,
            State::MetricsOnly => 5,
        }
    }

    pub(crate) const fn from_code(code: u64) -> State {
        match code {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::Disabled,
            4 => State::ForcedOpen,
            _ => State::MetricsOnly,
        }
    }

    /// The lowercase name used in metrics and logs (`closed`, `half_open`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::Disabled => "disabled",
            State::ForcedOpen => "forced_open",
            State::MetricsOnly => "metrics_only",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
