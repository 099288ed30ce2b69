//! The breaker: its state word, its transitions, and where outcomes go.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::ReentrantMutex;

use crate::clock::{ClockSource, MonotonicClock, nanos};
use crate::config::Config;
use crate::error::Rejected;
use crate::event::{Event, EventHub, EventReceiver, Transition};
use crate::half_open::{HalfOpen, Probes, Recorded};
use crate::metrics::{Metrics, rate};
use crate::permit::{OwnedPermit, Permit, PermitData, PermitKind};
use crate::state::State;
use crate::window::{Stats, Window};

/// The low bits of the state word hold the state; the rest count transitions (the
/// generation), so a permit can tell whether the episode it came from is still current.
const STATE_BITS: u64 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

const CLOSED: u64 = State::Closed.code();
const OPEN: u64 = State::Open.code();
const HALF_OPEN: u64 = State::HalfOpen.code();
const DISABLED: u64 = State::Disabled.code();
const FORCED_OPEN: u64 = State::ForcedOpen.code();
const METRICS_ONLY: u64 = State::MetricsOnly.code();

/// A circuit breaker. Cheap to clone: clones share one breaker.
///
/// See the crate documentation for the state machine. The two levels of use:
/// [`CircuitBreaker::try_acquire`] then [`Permit::success`] / [`Permit::failure`] (sync, the
/// hot path), or [`CircuitBreaker::call`] around an async operation.
#[derive(Clone)]
pub struct CircuitBreaker {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    state: CachePadded<AtomicU64>,
    window: Window,
    /// 0 when slow-call detection is off.
    slow_nanos: u64,
    clock: ClockSource,
    /// Coarse-clock instant at which Open lets the next call through as a probe.
    open_until: AtomicU64,
    half_open: CachePadded<HalfOpen>,
    half_open_since: AtomicU64,
    consecutive_opens: AtomicU32,
    not_permitted: CachePadded<AtomicU64>,
    /// Serialises transitions and their publication; no call path takes it in Closed.
    /// Reentrant so that a state-change observer may itself move the breaker.
    transition: ReentrantMutex<()>,
    events: EventHub,
    /// For the automatic HalfOpen timer, which must not keep the breaker alive.
    me: Weak<Inner>,
    name: Arc<str>,
    pub(crate) config: Config,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A breaker named `"default"` on the system clock.
    pub fn new(config: Config) -> CircuitBreaker {
        Self::build("default", config, ClockSource::System)
    }

    /// A named breaker (the name appears in events and metrics) on the system clock.
    pub fn named(name: impl AsRef<str>, config: Config) -> CircuitBreaker {
        Self::build(name.as_ref(), config, ClockSource::System)
    }

    /// A breaker on the given clock (e.g. a [`crate::ManualMonotonicClock`] in tests).
    pub fn with_clock(config: Config, clock: impl MonotonicClock) -> CircuitBreaker {
        Self::build("default", config, ClockSource::new(clock))
    }

    /// A named breaker on the given clock.
    pub fn named_with_clock(
        name: impl AsRef<str>,
        config: Config,
        clock: impl MonotonicClock,
    ) -> CircuitBreaker {
        Self::build(name.as_ref(), config, ClockSource::new(clock))
    }

    pub(crate) fn build(name: &str, config: Config, clock: ClockSource) -> CircuitBreaker {
        if matches!(clock, ClockSource::System) {
            crate::clock::InstantClock::start_coarse();
        }
        let now = clock.now();
        CircuitBreaker {
            inner: Arc::new_cyclic(|me| Inner {
                state: CachePadded::new(AtomicU64::new(CLOSED)),
                window: Window::new(&config, now),
                slow_nanos: config.slow_call_duration.map_or(0, nanos),
                clock,
                open_until: AtomicU64::new(0),
                half_open: CachePadded::new(HalfOpen::new()),
                half_open_since: AtomicU64::new(0),
                consecutive_opens: AtomicU32::new(0),
                not_permitted: CachePadded::new(AtomicU64::new(0)),
                transition: ReentrantMutex::new(()),
                events: EventHub::new(config.event_capacity),
                me: me.clone(),
                name: Arc::from(name),
                config,
            }),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The breaker's clock (shared, for components that must agree with it).
    pub fn clock(&self) -> Arc<dyn MonotonicClock> {
        self.inner.clock.shared()
    }

    /// Asks for permission to make one call.
    ///
    /// On `Ok`, make the call and report it on the permit; a permit dropped without an outcome
    /// records nothing and gives a HalfOpen probe back. On `Err`, do not make the call.
    #[inline(always)]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        self.inner
            .acquire()
            .map(|data| Permit::new(&self.inner, data))
    }

    /// Like [`CircuitBreaker::try_acquire`], with a permit that owns a handle on the breaker
    /// (`'static`, to move into a spawned task or a response future).
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, Rejected> {
        self.inner
            .acquire()
            .map(|data| OwnedPermit::new(self.clone(), data))
    }

    /// The current state. An Open breaker whose wait is over still reads Open until the next
    /// call turns it HalfOpen.
    pub fn state(&self) -> State {
        State::from_code(self.inner.state.load(Ordering::Acquire) & STATE_MASK)
    }

    /// A snapshot of the state and the window.
    pub fn metrics(&self) -> Metrics {
        self.inner.metrics()
    }

    /// Subscribes to transition and rejection events.
    pub fn subscribe(&self) -> EventReceiver {
        self.inner.events.subscribe()
    }

    /// Moves to Closed with an empty window.
    pub fn transition_to_closed(&self) {
        self.inner.transition(None, CLOSED);
    }

    /// Moves to Open for the configured open duration.
    pub fn transition_to_open(&self) {
        self.inner.transition(None, OPEN);
    }

    /// Moves to HalfOpen with a fresh set of probes.
    pub fn transition_to_half_open(&self) {
        self.inner.transition(None, HALF_OPEN);
    }

    /// Moves to Disabled: every call passes, nothing is recorded.
    pub fn transition_to_disabled(&self) {
        self.inner.transition(None, DISABLED);
    }

    /// Moves to ForcedOpen: every call is rejected until another manual transition.
    pub fn transition_to_forced_open(&self) {
        self.inner.transition(None, FORCED_OPEN);
    }

    /// Moves to MetricsOnly, with an empty window: calls are recorded, the breaker never opens.
    pub fn transition_to_metrics_only(&self) {
        self.inner.transition(None, METRICS_ONLY);
    }

    /// Same as [`CircuitBreaker::transition_to_forced_open`].
    pub fn force_open(&self) {
        self.transition_to_forced_open();
    }

    /// Same as [`CircuitBreaker::transition_to_disabled`].
    pub fn disable(&self) {
        self.transition_to_disabled();
    }

    /// Back to a new breaker's condition: Closed, empty window, counters and open growth at zero.
    ///
    /// Publishes the transition to Closed first (when the breaker was not Closed), then
    /// [`Event::Reset`], as resilience4j does.
    pub fn reset(&self) {
        self.inner.reset();
    }
}

impl Inner {
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    #[inline]
    fn start_time(&self) -> u64 {
        if self.slow_nanos == 0 { 0 } else { self.now() }
    }

    #[inline(always)]
    pub(crate) fn acquire(&self) -> Result<PermitData, Rejected> {
        // The hot path, kept small enough to inline into the caller: Closed, no slow-call
        // timing. Everything else is out of line.
        let word = self.state.load(Ordering::Acquire);
        if word & STATE_MASK == CLOSED && self.slow_nanos == 0 {
            return Ok(PermitData::new(word, 0));
        }
        self.acquire_slow()
    }

    #[inline(never)]
    fn acquire_slow(&self) -> Result<PermitData, Rejected> {
        loop {
            let word = self.state.load(Ordering::Acquire);
            match word & STATE_MASK {
                CLOSED | METRICS_ONLY => {
                    return Ok(PermitData::new(word, self.start_time()));
                }
                DISABLED => return Ok(PermitData::new(word, 0)),
                OPEN => {
                    let now = self.now();
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        return Err(self.reject(State::Open, Some(until - now)));
                    }
                    // The wait is over: the first caller moves to HalfOpen and everyone retries.
                    self.transition(Some(word), HALF_OPEN);
                }
                HALF_OPEN => {
                    let epoch = word >> STATE_BITS;
                    if self.half_open.acquire(epoch) {
                        return Ok(PermitData::new(word, self.start_time()));
                    }
                    if self.state.load(Ordering::Acquire) != word {
                        continue;
                    }
                    let waited_too_long = self.config.max_wait_in_half_open.is_some_and(|max| {
                        let since = self.half_open_since.load(Ordering::Acquire);
                        self.now().saturating_sub(since) >= nanos(max)
                    });
                    if !waited_too_long {
                        return Err(self.reject(State::HalfOpen, None));
                    }
                    // Probes have been out too long (hung or leaked): give up on them.
                    self.transition(Some(word), OPEN);
                }
                _ => return Err(self.reject(State::ForcedOpen, None)),
            }
        }
    }

    #[cold]
    fn reject(&self, state: State, retry_after: Option<u64>) -> Rejected {
        self.not_permitted.fetch_add(1, Ordering::Relaxed);
        self.events.emit(|| Event::Rejected {
            name: Arc::clone(&self.name),
            state,
        });
        Rejected {
            state,
            retry_after: retry_after.map(Duration::from_nanos),
        }
    }

    /// Records a permitted call's outcome. `failure == None` means ignored.
    #[inline(always)]
    pub(crate) fn record(&self, data: &PermitData, failure: Option<bool>) {
        // The hot path (a success in Closed without slow-call timing) inlines into the caller.
        if data.kind() == PermitKind::Closed && failure == Some(false) && self.slow_nanos == 0 {
            let check = match &self.window {
                Window::Count(w) => w.record_success(),
                Window::Time(w) => w.record_success(self.now()),
            };
            if check {
                self.evaluate_now();
            }
            return;
        }
        self.record_slow(data, failure);
    }

    #[cold]
    #[inline(never)]
    fn evaluate_now(&self) {
        self.evaluate_closed(self.window.stats(self.now()));
    }

    #[inline(never)]
    fn record_slow(&self, data: &PermitData, failure: Option<bool>) {
        match data.kind() {
            PermitKind::Disabled => {}
            PermitKind::Closed => {
                let Some(failure) = failure else { return };
                let (slow, now) = self.slow(data);
                if !failure && !slow {
                    let now = if self.window.needs_clock() {
                        now.unwrap_or_else(|| self.now())
                    } else {
                        0
                    };
                    if self.window.record_success(now) {
                        self.evaluate_closed(self.window.stats(now));
                    }
                } else {
                    let now = now.unwrap_or_else(|| self.now());
                    self.evaluate_closed(self.window.record_other(failure, slow, now));
                }
            }
            PermitKind::HalfOpen => {
                let epoch = data.word >> STATE_BITS;
                let Some(failure) = failure else {
                    self.half_open.release(epoch);
                    return;
                };
                let (slow, _) = self.slow(data);
                let permits = self.config.half_open_permits;
                if let Recorded::Complete(probes) =
                    self.half_open.record(epoch, permits, failure, slow)
                {
                    let stats = Stats {
                        calls: u64::from(permits),
                        failures: probes.failures,
                        slow: probes.slow,
                    };
                    let to = if self.over_threshold(&stats) {
                        OPEN
                    } else {
                        CLOSED
                    };
                    self.transition(Some(data.word), to);
                }
            }
        }
    }

    /// Gives back a permit that ends without an outcome.
    pub(crate) fn release(&self, data: &PermitData) {
        if data.kind() == PermitKind::HalfOpen {
            self.half_open.release(data.word >> STATE_BITS);
        }
    }

    #[inline]
    fn slow(&self, data: &PermitData) -> (bool, Option<u64>) {
        if self.slow_nanos == 0 {
            return (false, None);
        }
        let now = self.now();
        // Strictly longer, as resilience4j: a call lasting exactly the threshold is not slow.
        (now.saturating_sub(data.start) > self.slow_nanos, Some(now))
    }

    fn over_threshold(&self, s: &Stats) -> bool {
        let c = &self.config;
        if s.calls == 0 {
            return false;
        }
        let calls = s.calls as f64;
        s.failures as f64 * 100.0 >= c.failure_rate_threshold * calls
            || (self.slow_nanos != 0 && s.slow as f64 * 100.0 >= c.slow_call_rate_threshold * calls)
    }

    fn evaluate_closed(&self, stats: Stats) {
        if stats.calls < self.config.effective_minimum_calls() || !self.over_threshold(&stats) {
            return;
        }
        let word = self.state.load(Ordering::Acquire);
        // MetricsOnly records but never trips; outcomes arriving after a transition are moot.
        if word & STATE_MASK == CLOSED {
            self.transition(Some(word), OPEN);
        }
    }

    /// Moves to `to`. With `expected`, only if the state word is still exactly that (so that
    /// racing callers make one transition, not several). Returns whether it moved.
    fn transition(&self, expected: Option<u64>, to: u64) -> bool {
        let guard = self.transition.lock();
        let word = self.state.load(Ordering::Acquire);
        let from = word & STATE_MASK;
        if expected.is_some_and(|e| e != word) || (expected.is_none() && from == to) {
            return false;
        }
        let epoch = (word >> STATE_BITS) + 1;
        let now = self.now();
        // Prepare the new state's data before publishing the state word (Release below).
        match to {
            CLOSED | METRICS_ONLY => {
                self.window.reset(now);
                if to == CLOSED {
                    self.consecutive_opens.store(0, Ordering::Relaxed);
                }
            }
            OPEN => {
                let n = self
                    .consecutive_opens
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                let wait = nanos(self.config.open_duration.for_opening(n));
                self.open_until
                    .store(now.saturating_add(wait), Ordering::Release);
                if self.config.automatic_half_open {
                    self.schedule_half_open((epoch << STATE_BITS) | OPEN, wait);
                }
            }
            HALF_OPEN => {
                self.half_open.start(epoch, self.config.half_open_permits);
                self.half_open_since.store(now, Ordering::Release);
            }
            _ => {}
        }
        // resilience4j keeps one metrics object per state, and Open inherits the one of the
        // state it came from: rejections count from the last Closed (or HalfOpen, ...) episode
        // until the breaker leaves it for anything but Open.
        if to != OPEN {
            self.not_permitted.store(0, Ordering::Relaxed);
        }
        self.state
            .store((epoch << STATE_BITS) | to, Ordering::Release);
        // Published under the lock so that observers see transitions in the order they
        // happened (the lock is reentrant: an observer may itself move the breaker).
        self.publish_transition(from, to);
        drop(guard);
        true
    }

    /// Moves this Open episode (`word`) to HalfOpen after `wait`, unless something else moved
    /// the breaker first (the word then differs and the timer does nothing).
    fn schedule_half_open(&self, word: u64, wait: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: the next call makes the move, as without the option
        };
        let me = self.me.clone();
        runtime.spawn(async move {
            tokio::time::sleep(Duration::from_nanos(wait)).await;
            if let Some(inner) = me.upgrade() {
                inner.transition(Some(word), HALF_OPEN);
            }
        });
    }

    fn publish_transition(&self, from: u64, to: u64) {
        for listener in &self.config.state_listeners.0 {
            listener(Transition {
                name: Arc::clone(&self.name),
                from: State::from_code(from),
                to: State::from_code(to),
            });
        }
        self.events.emit(|| Event::Transition {
            name: Arc::clone(&self.name),
            from: State::from_code(from),
            to: State::from_code(to),
        });
    }

    fn reset(&self) {
        let guard = self.transition.lock();
        let word = self.state.load(Ordering::Acquire);
        let from = word & STATE_MASK;
        let epoch = (word >> STATE_BITS) + 1;
        self.window.reset(self.now());
        self.consecutive_opens.store(0, Ordering::Relaxed);
        self.not_permitted.store(0, Ordering::Relaxed);
        self.state
            .store((epoch << STATE_BITS) | CLOSED, Ordering::Release);
        // As resilience4j: the transition first (when the state changed), then the reset, so
        // that an observer tracking the state from transitions stays right.
        if from != CLOSED {
            self.publish_transition(from, CLOSED);
        }
        self.events.emit(|| Event::Reset {
            name: Arc::clone(&self.name),
        });
        drop(guard);
    }

    fn metrics(&self) -> Metrics {
        let word = self.state.load(Ordering::Acquire);
        let state = State::from_code(word & STATE_MASK);
        let now = self.now();
        let stats = match state {
            State::HalfOpen => {
                let Probes {
                    successes,
                    failures,
                    slow,
                } = self.half_open.probes(word >> STATE_BITS);
                Stats {
                    calls: successes + failures,
                    failures,
                    slow,
                }
            }
            _ => self.window.stats(now),
        };
        let minimum = match state {
            State::HalfOpen => u64::from(self.config.half_open_permits),
            _ => self.config.effective_minimum_calls(),
        };
        let time_until_half_open_ms = (state == State::Open).then(|| {
            let left = self.open_until.load(Ordering::Acquire).saturating_sub(now);
            left.div_ceil(1_000_000)
        });
        Metrics {
            name: self.name.to_string(),
            state,
            calls: stats.calls,
            successes: stats.calls - stats.failures.min(stats.calls),
            failures: stats.failures,
            slow_calls: stats.slow,
            not_permitted: self.not_permitted.load(Ordering::Relaxed),
            failure_rate: rate(stats.failures, stats.calls, minimum),
            slow_call_rate: rate(stats.slow, stats.calls, minimum),
            time_until_half_open_ms,
            consecutive_opens: self.consecutive_opens.load(Ordering::Relaxed),
        }
    }
}
