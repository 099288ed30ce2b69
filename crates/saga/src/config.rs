//! Runner settings: lease, heartbeat, clock, owner, recovery, with documented defaults.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use steadfast_retry::{Jitter, RetryPolicy, SystemClock};

use crate::events::{EventHook, SagaEvent};
use crate::time::WallClock;
use crate::{ConfigError, Error};

/// The policy compensations (and steps after a pivot) get by default: they must eventually
/// succeed, so it retries hard: exponential from 1 s doubling, each wait capped at 5 minutes,
/// equal jitter, up to 100 attempts within 24 hours. Past that the saga is parked for an
/// operator.
pub fn default_compensation_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .exponential(Duration::from_secs(1), 2.0)
        .max_delay(Duration::from_secs(300))
        .jitter(Jitter::Equal)
        .max_attempts(100)
        .max_elapsed(Duration::from_secs(24 * 3600))
        .build()
        .unwrap_or_default()
}

/// How a [`SagaRunner`](crate::SagaRunner) and its recovery loop behave.
#[derive(Clone)]
pub struct RunnerConfig {
    pub(crate) owner: String,
    pub(crate) lease: Duration,
    /// `None`: a third of the lease.
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) breaker_wait: Duration,
    pub(crate) clock: Arc<dyn WallClock>,
    pub(crate) poll_interval: Duration,
    pub(crate) claim_batch: usize,
    pub(crate) max_concurrent: usize,
    pub(crate) shutdown_grace: Duration,
    pub(crate) hooks: Vec<EventHook>,
}

impl fmt::Debug for RunnerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerConfig")
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .field("heartbeat", &self.heartbeat)
            .field("breaker_wait", &self.breaker_wait)
            .field("poll_interval", &self.poll_interval)
            .field("claim_batch", &self.claim_batch)
            .field("max_concurrent", &self.max_concurrent)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            owner: format!("runner-{}", uuid::Uuid::new_v4().simple()),
            lease: Duration::from_secs(30),
            heartbeat: None,
            breaker_wait: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
            poll_interval: Duration::from_secs(5),
            claim_batch: 16,
            max_concurrent: 16,
            shutdown_grace: Duration::from_secs(10),
            hooks: Vec::new(),
        }
    }
}

impl RunnerConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> RunnerConfigBuilder {
        RunnerConfigBuilder {
            config: RunnerConfig::default(),
        }
    }

    /// Who this runner is in leases (default: `runner-<uuid>`).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease length.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How often a runner extends its lease while a step runs or waits.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat.unwrap_or(self.lease / 3)
    }

    /// The wall clock.
    pub fn clock(&self) -> &Arc<dyn WallClock> {
        &self.clock
    }

    pub(crate) fn emit(&self, event: &SagaEvent) {
        for hook in &self.hooks {
            hook(event);
        }
    }
}

/// Builds a validated [`RunnerConfig`]; see [`RunnerConfig::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RunnerConfigBuilder {
    config: RunnerConfig,
}

impl RunnerConfigBuilder {
    /// The name this runner holds leases under (default: `runner-<uuid>`): one per process.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.config.owner = owner.into();
        self
    }

    /// How long a lease lasts without a write or heartbeat (default: 30 s). A crashed
    /// runner's sagas are resumed this long after its last write.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// How often a runner extends its lease while a step runs or waits (default: a third of
    /// the lease; must be below the lease).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.config.heartbeat = Some(every);
        self
    }

    /// How long to wait on an open breaker that does not say when it lets calls through
    /// (default: 1 s).
    pub fn breaker_wait(mut self, wait: Duration) -> Self {
        self.config.breaker_wait = wait;
        self
    }

    /// The wall clock for leases and log timestamps (default: the system clock). Waits use
    /// tokio's timer, so tests pair a paused runtime with [`TokioClock`](crate::TokioClock).
    pub fn clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.config.clock = clock;
        self
    }

    /// How often the recovery loop looks for sagas whose lease expired (default: 5 s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }

    /// How many sagas the recovery loop claims at once (default: 16).
    pub fn claim_batch(mut self, n: usize) -> Self {
        self.config.claim_batch = n;
        self
    }

    /// How many sagas the recovery loop runs at once (default: 16).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.config.max_concurrent = n;
        self
    }

    /// On shutdown, how long the recovery loop lets running sagas finish before it cancels
    /// them (default: 10 s). A cancelled saga's lease is given back, so another runner resumes
    /// it at once.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// Calls `hook` with every [`SagaEvent`] (for metrics). Hooks run inline: keep them quick.
    pub fn on_event(mut self, hook: impl Fn(&SagaEvent) + Send + Sync + 'static) -> Self {
        self.config.hooks.push(Arc::new(hook));
        self
    }

    /// Validates and returns the configuration. Refused: a zero lease, heartbeat, breaker
    /// wait or poll interval; a heartbeat not below the lease; a zero claim batch or
    /// concurrency; an empty or over-long owner.
    pub fn build(self) -> Result<RunnerConfig, Error> {
        let c = self.config;
        for (what, d) in [
            ("lease", c.lease),
            ("heartbeat", c.heartbeat()),
            ("breaker_wait", c.breaker_wait),
            ("poll_interval", c.poll_interval),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration(what).into());
            }
        }
        if c.heartbeat() >= c.lease {
            return Err(ConfigError::HeartbeatNotBelowLease {
                heartbeat: c.heartbeat(),
                lease: c.lease,
            }
            .into());
        }
        if c.claim_batch == 0 {
            return Err(ConfigError::Zero("claim_batch").into());
        }
        if c.max_concurrent == 0 {
            return Err(ConfigError::Zero("max_concurrent").into());
        }
        if c.owner.is_empty() || c.owner.len() > 200 {
            return Err(ConfigError::InvalidOwner.into());
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_settings_refused() {
        assert!(RunnerConfig::builder().build().is_ok());
        let p = default_compensation_policy();
        assert_eq!(p.max_attempts(), 100);
        let refused = |b: RunnerConfigBuilder| matches!(b.build(), Err(Error::InvalidConfig(_)));
        assert!(refused(RunnerConfig::builder().lease(Duration::ZERO)));
        assert!(refused(
            RunnerConfig::builder()
                .lease(Duration::from_secs(5))
                .heartbeat(Duration::from_secs(5))
        ));
        assert!(refused(RunnerConfig::builder().claim_batch(0)));
        let short = RunnerConfig::builder()
            .lease(Duration::from_secs(3))
            .build()
            .unwrap();
        assert_eq!(short.heartbeat(), Duration::from_secs(1));
        assert!(refused(RunnerConfig::builder().max_concurrent(0)));
        assert!(refused(RunnerConfig::builder().owner("")));
    }
}
