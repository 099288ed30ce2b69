//! Store configuration: retry policies per queue, the clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use steadfast_retry::{RetryPolicy, SystemClock, WallClock};

use crate::Error;
use crate::message::check_name;

/// How a store schedules retries and reads time. Shared by every adapter.
///
/// Defaults: the seed system's retry policy ([`RetryPolicy::default`]: 3 attempts, 1 s then
/// 2 s, capped at 30 s) for every queue, no horizon, done messages keep their dedup keys until
/// pruned ([`QueueConfigBuilder::remember_done`]), and the [`SystemClock`].
///
/// The policy's `max_delay` also caps every delay a caller asks for: a failure's own delay
/// ([`Failure::after`](crate::Failure::after), a downstream's `Retry-After`) and a snooze's.
///
/// ```
/// use std::time::Duration;
/// use steadfast_dlq::QueueConfig;
/// use steadfast_retry::RetryPolicy;
///
/// let slow = RetryPolicy::builder()
///     .exponential(Duration::from_secs(10), 3.0)
///     .max_delay(Duration::from_secs(3600))
///     .max_attempts(8)
///     .build()?;
/// let config = QueueConfig::builder().queue_policy("ai-agent", slow).build()?;
/// assert_eq!(config.policy("ai-agent").max_attempts(), 8);
/// assert_eq!(config.policy("other").max_attempts(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct QueueConfig {
    default_policy: RetryPolicy,
    policies: HashMap<String, RetryPolicy>,
    default_horizon: Option<Duration>,
    horizons: HashMap<String, Option<Duration>>,
    default_remember_done: bool,
    remember_done: HashMap<String, bool>,
    clock: Arc<dyn WallClock>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            default_policy: RetryPolicy::default(),
            policies: HashMap::new(),
            default_horizon: None,
            horizons: HashMap::new(),
            default_remember_done: true,
            remember_done: HashMap::new(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl QueueConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> QueueConfigBuilder {
        QueueConfigBuilder {
            config: QueueConfig::default(),
            error: None,
        }
    }

    /// The retry policy of `queue` (its own, or the default).
    pub fn policy(&self, queue: &str) -> &RetryPolicy {
        self.policies.get(queue).unwrap_or(&self.default_policy)
    }

    /// The longest delay a caller may ask for on `queue`: its policy's `max_delay`.
    pub fn max_delay(&self, queue: &str) -> Duration {
        self.policy(queue).max_delay()
    }

    /// How long a message of `queue` may keep waiting (retrying or snoozed) since its first
    /// failure or snooze before it is dead; `None` (the default) is no bound.
    pub fn horizon(&self, queue: &str) -> Option<Duration> {
        self.horizons
            .get(queue)
            .copied()
            .unwrap_or(self.default_horizon)
    }

    /// Whether `queue` remembers the dedup keys of its retained `done` messages (its own
    /// setting, or the default: `true`). See [`QueueConfigBuilder::remember_done`].
    pub fn remembers_done(&self, queue: &str) -> bool {
        self.remember_done
            .get(queue)
            .copied()
            .unwrap_or(self.default_remember_done)
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn WallClock> {
        &self.clock
    }

    /// The clock's time, as the stores keep it.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        crate::time::now(&*self.clock)
    }
}

/// Builds a [`QueueConfig`].
#[derive(Debug)]
pub struct QueueConfigBuilder {
    config: QueueConfig,
    error: Option<Error>,
}

impl QueueConfigBuilder {
    /// The policy of queues without their own: backoff between attempts and max attempts
    /// (a message's own `max_attempts` overrides the latter).
    pub fn default_policy(mut self, policy: RetryPolicy) -> Self {
        self.config.default_policy = policy;
        self
    }

    /// The policy of one queue.
    pub fn queue_policy(mut self, queue: impl Into<String>, policy: RetryPolicy) -> Self {
        let queue = queue.into();
        self.check_queue(&queue);
        self.config.policies.insert(queue, policy);
        self
    }

    /// The horizon of queues without their own (default: none). See
    /// [`queue_horizon`](Self::queue_horizon).
    pub fn default_horizon(mut self, horizon: Duration) -> Self {
        self.check_horizon(horizon);
        self.config.default_horizon = Some(horizon);
        self
    }

    /// The time horizon of one queue (default: none, messages wait as long as their attempts
    /// last). A message that has been waiting (retrying or snoozed) for longer than `horizon`
    /// since its first failure or snooze becomes dead at its next failure or snooze, with its
    /// history and a final [`HORIZON_PASSED`](crate::HORIZON_PASSED) entry. A non-retryable
    /// failure is dead at once anyway, and `max_attempts` still counts real attempts. Must be
    /// positive.
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast_dlq::QueueConfig;
    ///
    /// let config = QueueConfig::builder()
    ///     .queue_horizon("whatsapp", Duration::from_secs(3600))
    ///     .build()?;
    /// assert_eq!(config.horizon("whatsapp"), Some(Duration::from_secs(3600)));
    /// assert_eq!(config.horizon("other"), None);
    /// # Ok::<(), steadfast_dlq::Error>(())
    /// ```
    pub fn queue_horizon(mut self, queue: impl Into<String>, horizon: Duration) -> Self {
        let queue = queue.into();
        self.check_queue(&queue);
        self.check_horizon(horizon);
        self.config.horizons.insert(queue, Some(horizon));
        self
    }

    /// Whether queues without their own setting remember the dedup keys of their `done`
    /// messages (default `true`). See [`remember_done`](Self::remember_done).
    pub fn default_remember_done(mut self, remember: bool) -> Self {
        self.config.default_remember_done = remember;
        self
    }

    /// Whether `queue` remembers the dedup keys of its `done` messages (default `true`, as the
    /// seed's `message_id UNIQUE`, Oban's and River's unique jobs: a completed message stays
    /// unique until it is pruned). An enqueue whose dedup key belongs to a `done` message still
    /// retained (not yet [pruned](crate::QueueAdmin::prune)) is an
    /// [`Enqueued::Duplicate`](crate::Enqueued::Duplicate) of it, so the ack itself is a
    /// durable "processed" marker and a service needs no marker write of its own.
    ///
    /// `false` narrows uniqueness to messages that are not done: a key is free again once its
    /// message is done (for jobs meant to recur under the same key).
    ///
    /// ```
    /// use steadfast_dlq::QueueConfig;
    ///
    /// let config = QueueConfig::builder().remember_done("heartbeat", false).build()?;
    /// assert!(!config.remembers_done("heartbeat"));
    /// assert!(config.remembers_done("whatsapp"));
    /// # Ok::<(), steadfast_dlq::Error>(())
    /// ```
    pub fn remember_done(mut self, queue: impl Into<String>, remember: bool) -> Self {
        let queue = queue.into();
        self.check_queue(&queue);
        self.config.remember_done.insert(queue, remember);
        self
    }

    fn check_queue(&mut self, queue: &str) {
        if let Err(e) = check_name("queue name", queue) {
            self.error
                .get_or_insert(Error::InvalidConfig(e.to_string()));
        }
    }

    fn check_horizon(&mut self, horizon: Duration) {
        if horizon.is_zero() || chrono::Duration::from_std(horizon).is_err() {
            self.error.get_or_insert(Error::InvalidConfig(format!(
                "horizon must be positive and finite, got {horizon:?}"
            )));
        }
    }

    /// The clock (tests pass a [`ManualClock`](crate::ManualClock)).
    pub fn clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.config.clock = clock;
        self
    }

    /// The configuration, or the first invalid setting.
    pub fn build(self) -> Result<QueueConfig, Error> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.config),
        }
    }
}
