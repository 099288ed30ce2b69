//! Configuration: the builder, its validation, the defaults and the presets.

use std::sync::Arc;
use std::time::Duration;

use steadfast_retry::Backoff;

use crate::call::{Classifiers, Outcome};
use crate::error::ConfigError;
use crate::event::{StateListeners, Transition};

/// The largest count-based window accepted by the builder.
pub const MAX_COUNT_WINDOW: u32 = 1_000_000;
/// The longest time-based window accepted by the builder, in seconds.
pub const MAX_TIME_WINDOW_SECS: u64 = 3_600;
/// The most probes a half-open breaker may hand out.
pub const MAX_HALF_OPEN_PERMITS: u32 = 1_000;

/// Which calls the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingWindow {
    /// The last `n` recorded calls.
    Count(u32),
    /// The calls of the last `n` whole seconds, aggregated in one-second buckets.
    Time(Duration),
}

/// How long the breaker stays Open before it lets a probe through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpenDuration {
    /// The same wait after every opening.
    Fixed(Duration),
    /// A wait that grows with each consecutive opening (HalfOpen → Open again), capped at
    /// `max`; it falls back to the first value once the breaker closes.
    Backoff {
        /// The growth: opening number `n` (1-based) waits `backoff.base_delay(n, max)`.
        backoff: Backoff,
        /// The cap.
        max: Duration,
    },
}

impl OpenDuration {
    /// The wait for the `n`-th consecutive opening (1-based).
    pub fn for_opening(&self, n: u32) -> Duration {
        match *self {
            OpenDuration::Fixed(d) => d,
            OpenDuration::Backoff { backoff, max } => backoff.base_delay(n, max),
        }
    }
}

/// A validated breaker configuration. Build one with [`Config::builder`], or take a preset.
///
/// | setting | default | seed system |
/// |---|---|---|
/// | failure rate threshold | 30 % | `failureThreshold: 30` |
/// | minimum calls | 5 | `minimumRequests: 5` |
/// | window | time, 30 s | `windowMs: 30000` |
/// | open duration | fixed 60 s | `resetTimeoutMs: 60000` |
/// | call timeout | 10 s | `requestTimeoutMs: 10000` |
/// | half-open probes | 1 | one trial request |
/// | max wait in half-open | 60 s | (none: a lost probe wedged it) |
/// | slow calls | off | (none) |
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub(crate) failure_rate_threshold: f64,
    pub(crate) slow_call_rate_threshold: f64,
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) window: SlidingWindow,
    pub(crate) minimum_calls: u32,
    pub(crate) open_duration: OpenDuration,
    pub(crate) half_open_permits: u32,
    pub(crate) max_wait_in_half_open: Option<Duration>,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) event_capacity: usize,
    pub(crate) classifiers: Classifiers,
    pub(crate) state_listeners: StateListeners,
    pub(crate) automatic_half_open: bool,
}

impl Default for Config {
    /// The seed system's settings (see the table on [`Config`]).
    fn default() -> Self {
        Config {
            failure_rate_threshold: 30.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: None,
            window: SlidingWindow::Time(Duration::from_secs(30)),
            minimum_calls: 5,
            open_duration: OpenDuration::Fixed(Duration::from_secs(60)),
            half_open_permits: 1,
            max_wait_in_half_open: Some(Duration::from_secs(60)),
            call_timeout: Some(Duration::from_secs(10)),
            event_capacity: 64,
            classifiers: Classifiers::default(),
            state_listeners: StateListeners::default(),
            automatic_half_open: false,
        }
    }
}

impl Config {
    /// A builder starting from [`Config::default`].
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// The seed's "standard" preset: opens at 50 % failures, stays open 60 s.
    pub fn standard() -> Config {
        Config {
            failure_rate_threshold: 50.0,
            open_duration: OpenDuration::Fixed(Duration::from_secs(60)),
            ..Config::default()
        }
    }

    /// The seed's "AI agent" preset for slow, flaky model backends: opens at 60 % failures,
    /// stays open 120 s.
    pub fn ai_agent() -> Config {
        Config {
            failure_rate_threshold: 60.0,
            open_duration: OpenDuration::Fixed(Duration::from_secs(120)),
            ..Config::default()
        }
    }

    /// A builder starting from this configuration (to derive a variant of a preset).
    pub fn to_builder(&self) -> ConfigBuilder {
        ConfigBuilder {
            config: self.clone(),
        }
    }

    /// Failure rate, in percent, at or above which the breaker opens.
    pub fn failure_rate_threshold(&self) -> f64 {
        self.failure_rate_threshold
    }
    /// Slow-call rate, in percent, at or above which the breaker opens.
    pub fn slow_call_rate_threshold(&self) -> f64 {
        self.slow_call_rate_threshold
    }
    /// Calls longer than this count as slow; `None` turns slow-call detection off.
    pub fn slow_call_duration(&self) -> Option<Duration> {
        self.slow_call_duration
    }
    /// The sliding window.
    pub fn window(&self) -> SlidingWindow {
        self.window
    }
    /// Calls the window must hold before the rates are evaluated.
    pub fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }
    /// The wait in Open.
    pub fn open_duration(&self) -> OpenDuration {
        self.open_duration
    }
    /// The number of probes in HalfOpen.
    pub fn half_open_permits(&self) -> u32 {
        self.half_open_permits
    }
    /// How long HalfOpen may wait for its probes before it opens again.
    pub fn max_wait_in_half_open(&self) -> Option<Duration> {
        self.max_wait_in_half_open
    }
    /// Whether an Open breaker moves to HalfOpen on a timer (see
    /// [`ConfigBuilder::automatic_transition_to_half_open`]).
    pub fn automatic_transition_to_half_open(&self) -> bool {
        self.automatic_half_open
    }
    /// The per-call timeout applied by `call` and the tower layer.
    pub fn call_timeout(&self) -> Option<Duration> {
        self.call_timeout
    }

    /// The minimum calls that can actually be reached (a count window of 10 cannot hold 20).
    pub(crate) fn effective_minimum_calls(&self) -> u64 {
        match self.window {
            SlidingWindow::Count(n) => u64::from(self.minimum_calls.min(n)),
            SlidingWindow::Time(_) => u64::from(self.minimum_calls),
        }
    }
}

/// Builds a [`Config`]; [`ConfigBuilder::build`] validates every setting.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Failure rate in percent, `(0, 100]`, at or above which the breaker opens. Default 30.
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.config.failure_rate_threshold = percent;
        self
    }

    /// Slow-call rate in percent, `(0, 100]`, at or above which the breaker opens. Default 100.
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.config.slow_call_rate_threshold = percent;
        self
    }

    /// Turns slow-call detection on: calls lasting longer than `duration` count as slow (a
    /// call of exactly `duration` is not slow, as in resilience4j).
    /// Durations are measured on the breaker's coarse clock (millisecond resolution).
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.config.slow_call_duration = Some(duration);
        self
    }

    /// Rates over the last `calls` recorded calls.
    pub fn count_window(mut self, calls: u32) -> Self {
        self.config.window = SlidingWindow::Count(calls);
        self
    }

    /// Rates over the calls of the last `window`, rounded up to whole seconds. Default 30 s.
    pub fn time_window(mut self, window: Duration) -> Self {
        self.config.window = SlidingWindow::Time(window);
        self
    }

    /// Calls the window must hold before the breaker may open. Default 5.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// A fixed wait in Open. Default 60 s.
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.config.open_duration = OpenDuration::Fixed(duration);
        self
    }

    /// A wait in Open that grows with consecutive openings, following `backoff`, capped at
    /// `max`.
    pub fn open_backoff(mut self, backoff: Backoff, max: Duration) -> Self {
        self.config.open_duration = OpenDuration::Backoff { backoff, max };
        self
    }

    /// Probes let through in HalfOpen. Default 1.
    pub fn half_open_permits(mut self, permits: u32) -> Self {
        self.config.half_open_permits = permits;
        self
    }

    /// How long HalfOpen waits for its probes before opening again; `None` waits forever.
    /// Default 60 s.
    pub fn max_wait_in_half_open(mut self, wait: Option<Duration>) -> Self {
        self.config.max_wait_in_half_open = wait;
        self
    }

    /// Per-call timeout for `call` and the tower layer; `None` for no timeout. Default 10 s.
    pub fn call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.call_timeout = timeout;
        self
    }

    /// Buffered events per subscriber before a slow subscriber starts missing some. Default 64.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.config.event_capacity = capacity.max(1);
        self
    }

    /// Decides how results of type `Result<T, E>` count in [`crate::CircuitBreaker::call`]
    /// (resilience4j's `recordException` / `ignoreException` / `recordResult`, set once
    /// instead of passed to every call). One classifier per result type: setting another for
    /// the same type replaces it; results of other types keep the default (`Ok` a success,
    /// `Err` a failure). [`crate::CircuitBreaker::call_with`] still overrides it per call.
    ///
    /// ```
    /// # use steadfast_circuit_breaker::{Config, Outcome};
    /// let config = Config::builder()
    ///     .classifier(|r: &Result<u16, std::io::Error>| match r {
    ///         Ok(status) if *status >= 500 => Outcome::Failure,
    ///         Ok(_) => Outcome::Success,
    ///         Err(_) => Outcome::Failure,
    ///     })
    ///     .build()?;
    /// # Ok::<(), steadfast_circuit_breaker::ConfigError>(())
    /// ```
    pub fn classifier<T, E, F>(mut self, classifier: F) -> Self
    where
        T: 'static,
        E: 'static,
        F: Fn(&Result<T, E>) -> Outcome + Send + Sync + 'static,
    {
        self.config.classifiers.set::<T, E>(Box::new(classifier));
        self
    }

    /// Calls `callback` on every state change, synchronously, besides the broadcast of
    /// [`crate::CircuitBreaker::subscribe`] (whose slow subscribers may miss events): a
    /// callback never misses one.
    ///
    /// It runs on the thread that made the transition (a caller reporting an outcome or asking
    /// for a permit, or a manual transition), after the new state is in place and before any
    /// other transition of this breaker, so callbacks see transitions in order. Keep it short
    /// and non-blocking: that caller waits for it. It may call the breaker, even move it (the
    /// nested transition is published from inside this callback). A panic in it reaches that
    /// caller; the transition has happened regardless. Several callbacks run in the order they
    /// were added. A [`crate::CircuitBreaker::reset`] from a state other than Closed is
    /// reported as a transition to Closed.
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use steadfast_circuit_breaker::{CircuitBreaker, Config, State};
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// let breaker = CircuitBreaker::new(Config::builder()
    ///     .on_state_change(move |t| log.lock().unwrap().push((t.from, t.to)))
    ///     .build()?);
    /// breaker.force_open();
    /// assert_eq!(*seen.lock().unwrap(), [(State::Closed, State::ForcedOpen)]);
    /// # Ok::<(), steadfast_circuit_breaker::ConfigError>(())
    /// ```
    pub fn on_state_change<F>(mut self, callback: F) -> Self
    where
        F: Fn(Transition) + Send + Sync + 'static,
    {
        self.config.state_listeners.0.push(Arc::new(callback));
        self
    }

    /// With `true`, an Open breaker moves to HalfOpen on a timer when its wait is over, so
    /// that observers (state callbacks, events, metrics) see HalfOpen without waiting for a
    /// call (resilience4j's `automaticTransitionFromOpenToHalfOpenEnabled`). Default `false`:
    /// the first call after the wait makes the move, and no timer runs.
    ///
    /// The timer is a task spawned on the tokio runtime current at the opening; opened outside
    /// a runtime, the breaker falls back to the move on the next call. The timer runs on
    /// tokio's clock (it follows `tokio::time::pause`), not on a custom [`crate::MonotonicClock`]. It
    /// holds no strong reference: a dropped breaker cancels nothing and leaks nothing.
    pub fn automatic_transition_to_half_open(mut self, enabled: bool) -> Self {
        self.config.automatic_half_open = enabled;
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = self.config;
        for (name, value) in [
            ("failure_rate_threshold", c.failure_rate_threshold),
            ("slow_call_rate_threshold", c.slow_call_rate_threshold),
        ] {
            if !(value > 0.0 && value <= 100.0) {
                return Err(ConfigError::Threshold { name, value });
            }
        }
        match c.window {
            SlidingWindow::Count(n) if n == 0 || n > MAX_COUNT_WINDOW => {
                return Err(ConfigError::CountWindow {
                    value: n,
                    max: MAX_COUNT_WINDOW,
                });
            }
            SlidingWindow::Time(d)
                if d < Duration::from_secs(1) || d > Duration::from_secs(MAX_TIME_WINDOW_SECS) =>
            {
                return Err(ConfigError::TimeWindow {
                    value: d,
                    max_secs: MAX_TIME_WINDOW_SECS,
                });
            }
            _ => {}
        }
        if c.minimum_calls == 0 {
            return Err(ConfigError::MinimumCalls);
        }
        if c.half_open_permits == 0 || c.half_open_permits > MAX_HALF_OPEN_PERMITS {
            return Err(ConfigError::HalfOpenPermits {
                value: c.half_open_permits,
                max: MAX_HALF_OPEN_PERMITS,
            });
        }
        match c.open_duration {
            OpenDuration::Fixed(d) if d.is_zero() => {
                return Err(ConfigError::ZeroDuration("open_duration"));
            }
            OpenDuration::Backoff { backoff, max } => {
                backoff.validate().map_err(ConfigError::OpenBackoff)?;
                if max > steadfast_retry::MAX_DURATION {
                    return Err(ConfigError::OpenBackoff(
                        steadfast_retry::ConfigError::DurationTooLong {
                            name: "max_open_duration",
                            value: max,
                            max: steadfast_retry::MAX_DURATION,
                        },
                    ));
                }
                if backoff.initial().is_zero() {
                    return Err(ConfigError::ZeroDuration("open_backoff initial"));
                }
                if max < backoff.initial() {
                    return Err(ConfigError::OpenBackoffCap {
                        initial: backoff.initial(),
                        max,
                    });
                }
            }
            _ => {}
        }
        if c.slow_call_duration.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroDuration("slow_call_duration"));
        }
        if c.max_wait_in_half_open.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroDuration("max_wait_in_half_open"));
        }
        if c.call_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroDuration("call_timeout"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_seed() {
        let c = Config::default();
        assert_eq!(c.failure_rate_threshold(), 30.0);
        assert_eq!(c.minimum_calls(), 5);
        assert_eq!(c.window(), SlidingWindow::Time(Duration::from_secs(30)));
        assert_eq!(
            c.open_duration(),
            OpenDuration::Fixed(Duration::from_secs(60))
        );
        assert_eq!(c.call_timeout(), Some(Duration::from_secs(10)));
        assert_eq!(Config::builder().build().unwrap(), c);
    }

    #[test]
    fn presets() {
        assert_eq!(Config::standard().failure_rate_threshold(), 50.0);
        assert_eq!(
            Config::standard().open_duration().for_opening(1),
            Duration::from_secs(60)
        );
        assert_eq!(Config::ai_agent().failure_rate_threshold(), 60.0);
        assert_eq!(
            Config::ai_agent().open_duration().for_opening(3),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn invalid_settings_are_typed_errors() {
        let b = Config::builder;
        assert!(matches!(
            b().failure_rate_threshold(0.0).build(),
            Err(ConfigError::Threshold { .. })
        ));
        assert!(matches!(
            b().failure_rate_threshold(100.5).build(),
            Err(ConfigError::Threshold { .. })
        ));
        assert!(matches!(
            b().slow_call_rate_threshold(f64::NAN).build(),
            Err(ConfigError::Threshold { .. })
        ));
        assert!(matches!(
            b().count_window(0).build(),
            Err(ConfigError::CountWindow { .. })
        ));
        assert!(matches!(
            b().time_window(Duration::from_millis(500)).build(),
            Err(ConfigError::TimeWindow { .. })
        ));
        assert_eq!(b().minimum_calls(0).build(), Err(ConfigError::MinimumCalls));
        assert!(matches!(
            b().half_open_permits(0).build(),
            Err(ConfigError::HalfOpenPermits { .. })
        ));
        assert!(matches!(
            b().open_duration(Duration::ZERO).build(),
            Err(ConfigError::ZeroDuration(_))
        ));
        assert!(matches!(
            b().open_backoff(
                Backoff::exponential(Duration::from_secs(10), 2.0),
                Duration::from_secs(1)
            )
            .build(),
            Err(ConfigError::OpenBackoffCap { .. })
        ));
        assert!(matches!(
            b().call_timeout(Some(Duration::ZERO)).build(),
            Err(ConfigError::ZeroDuration(_))
        ));
    }

    #[test]
    fn open_backoff_is_validated_by_the_retry_crate() {
        let b = || Config::builder();
        // The reported case: accepted before, then a panic in `permit.failure()` on opening 2.
        assert_eq!(
            b().open_backoff(
                Backoff::exponential(Duration::from_secs(10), -2.0),
                Duration::from_secs(60)
            )
            .build(),
            Err(ConfigError::OpenBackoff(
                steadfast_retry::ConfigError::InvalidMultiplier(-2.0)
            ))
        );
        for multiplier in [f64::NAN, f64::INFINITY, 0.5] {
            assert!(matches!(
                b().open_backoff(
                    Backoff::exponential(Duration::from_secs(1), multiplier),
                    Duration::from_secs(60)
                )
                .build(),
                Err(ConfigError::OpenBackoff(_))
            ));
        }
        assert!(matches!(
            b().open_backoff(Backoff::constant(Duration::from_secs(1)), Duration::MAX)
                .build(),
            Err(ConfigError::OpenBackoff(
                steadfast_retry::ConfigError::DurationTooLong { .. }
            ))
        ));
        assert!(matches!(
            b().open_backoff(
                Backoff::linear(Duration::from_secs(1), Duration::MAX),
                Duration::from_secs(60)
            )
            .build(),
            Err(ConfigError::OpenBackoff(_))
        ));
    }

    #[test]
    fn growing_open_duration() {
        let c = Config::builder()
            .open_backoff(
                Backoff::exponential(Duration::from_secs(10), 2.0),
                Duration::from_secs(60),
            )
            .build()
            .unwrap();
        let d = c.open_duration();
        assert_eq!(d.for_opening(1), Duration::from_secs(10));
        assert_eq!(d.for_opening(2), Duration::from_secs(20));
        assert_eq!(d.for_opening(3), Duration::from_secs(40));
        assert_eq!(d.for_opening(4), Duration::from_secs(60));
    }
}
