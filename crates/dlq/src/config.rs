//! Store configuration: retry policies per queue, the clock.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use steadfast_retry::{Clock, RetryPolicy, SystemClock};

use crate::Error;
use crate::message::check_name;

/// How a store schedules retries and reads time. Shared by every adapter.
///
/// Defaults: the seed system's retry policy ([`RetryPolicy::default`]: 3 attempts, 1 s then
/// 2 s, capped at 30 s) for every queue, and the [`SystemClock`].
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
    clock: Arc<dyn Clock>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            default_policy: RetryPolicy::default(),
            policies: HashMap::new(),
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

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
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
        if let Err(e) = check_name("queue name", &queue) {
            self.error
                .get_or_insert(Error::InvalidConfig(e.to_string()));
        }
        self.config.policies.insert(queue, policy);
        self
    }

    /// The clock (tests pass a [`ManualClock`](crate::ManualClock)).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
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
