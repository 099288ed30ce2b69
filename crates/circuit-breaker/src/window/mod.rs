//! Sliding windows: where Closed (and MetricsOnly) record outcomes and read their rates.
//!
//! Both windows keep successes, the common case, on one relaxed `fetch_add` with no lock and
//! no clock reading beyond the breaker's coarse one. Failures and slow calls take a short
//! mutex: they are the rare case, and they are the only outcomes that can raise a rate (a
//! success can only trip the breaker by bringing the window up to its minimum calls, which the
//! success path detects from the value its `fetch_add` returns).

mod count;
mod time;

pub(crate) use count::CountWindow;
pub(crate) use time::TimeWindow;

use crate::config::{Config, SlidingWindow};

/// What a window holds at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    pub calls: u64,
    pub failures: u64,
    pub slow: u64,
}

pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn new(config: &Config, now: u64) -> Window {
        match config.window {
            SlidingWindow::Count(n) => Window::Count(CountWindow::new(n, config)),
            SlidingWindow::Time(d) => Window::Time(TimeWindow::new(d, config, now)),
        }
    }

    /// Whether recording needs the clock (time windows do; count windows never).
    #[inline]
    pub(crate) fn needs_clock(&self) -> bool {
        matches!(self, Window::Time(_))
    }

    /// Records a fast success; returns true when the caller must evaluate the rates.
    #[inline]
    pub(crate) fn record_success(&self, now: u64) -> bool {
        match self {
            Window::Count(w) => w.record_success(),
            Window::Time(w) => w.record_success(now),
        }
    }

    /// Records a failure and/or a slow call and returns the window afterwards.
    pub(crate) fn record_other(&self, failure: bool, slow: bool, now: u64) -> Stats {
        match self {
            Window::Count(w) => w.record_other(failure, slow),
            Window::Time(w) => w.record_other(failure, slow, now),
        }
    }

    pub(crate) fn stats(&self, now: u64) -> Stats {
        match self {
            Window::Count(w) => w.stats(),
            Window::Time(w) => w.stats(now),
        }
    }

    pub(crate) fn reset(&self, now: u64) {
        match self {
            Window::Count(w) => w.reset(),
            Window::Time(w) => w.reset(now),
        }
    }
}
