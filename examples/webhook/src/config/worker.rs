//! `[worker]`: the worker that drains the queue, and the retry policy of the queue it drains.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use steadfast_dlq::QueueConfig;
use steadfast_retry::RetryPolicy;

use super::{ConfigError, check};

/// Default cap of a downstream response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Default retry horizon: an hour of retries and snoozes, then a dead letter.
pub const DEFAULT_RETRY_HORIZON: Duration = Duration::from_secs(3600);

/// The `[worker]` table as written in the file, before validation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorker {
    /// `enabled` (flag `--no-worker` turns it off); default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `concurrency` (env `WORKER_CONCURRENCY`, flag `--worker-concurrency`); default 16.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// `max_attempts`; default 3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// `backoff_initial_ms`; default 1 000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_initial_ms: Option<u64>,
    /// `backoff_multiplier`; default 2.0, at least 1.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_multiplier: Option<f64>,
    /// `backoff_max_ms`; default 60 000, at least `backoff_initial_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_max_ms: Option<u64>,
    /// `poll_interval_ms`; default 200.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval_ms: Option<u64>,
    /// `lease_seconds`; default 60.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
    /// `max_response_bytes`; default [`DEFAULT_MAX_RESPONSE_BYTES`], at least 1024.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<usize>,
    /// `retry_horizon_seconds`; default [`DEFAULT_RETRY_HORIZON`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_horizon_seconds: Option<u64>,
}

/// The worker that drains the queue.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Run the worker in this process.
    pub enabled: bool,
    /// Messages handled at once.
    pub concurrency: usize,
    /// Attempts before a message becomes a dead letter.
    pub max_attempts: u32,
    /// First retry delay.
    pub backoff_initial: Duration,
    /// Growth factor of the retry delay.
    pub backoff_multiplier: f64,
    /// Cap of one retry delay.
    pub backoff_max: Duration,
    /// How often an idle worker polls the queue.
    pub poll_interval: Duration,
    /// How long a claimed message stays leased before another worker may take it.
    pub lease: Duration,
    /// The largest downstream response body read; a larger one fails the attempt as
    /// `downstream_too_large` (not retried).
    pub max_response_bytes: usize,
    /// How long a message may wait (retrying, or snoozed behind an open breaker) from its
    /// first failure or snooze before it becomes a dead letter.
    pub retry_horizon: Duration,
}

impl TryFrom<RawWorker> for WorkerConfig {
    type Error = ConfigError;

    fn try_from(w: RawWorker) -> Result<Self, ConfigError> {
        let concurrency = w.concurrency.unwrap_or(16);
        if concurrency == 0 {
            return Err(ConfigError::invalid(
                "worker.concurrency",
                "must be greater than 0",
            ));
        }
        let max_attempts = w.max_attempts.unwrap_or(3);
        if max_attempts == 0 {
            return Err(ConfigError::invalid(
                "worker.max_attempts",
                "must be at least 1",
            ));
        }
        let backoff_multiplier = w.backoff_multiplier.unwrap_or(2.0);
        if !(backoff_multiplier.is_finite() && backoff_multiplier >= 1.0) {
            return Err(ConfigError::invalid(
                "worker.backoff_multiplier",
                "must be a number >= 1.0",
            ));
        }
        let backoff_initial =
            check::positive_ms("worker.backoff_initial_ms", w.backoff_initial_ms, 1_000)?;
        let backoff_max = check::positive_ms("worker.backoff_max_ms", w.backoff_max_ms, 60_000)?;
        if backoff_max < backoff_initial {
            return Err(ConfigError::invalid(
                "worker.backoff_max_ms",
                "must not be smaller than worker.backoff_initial_ms",
            ));
        }
        let worker = Self {
            enabled: w.enabled.unwrap_or(true),
            concurrency,
            max_attempts,
            backoff_initial,
            backoff_multiplier,
            backoff_max,
            poll_interval: check::positive_ms("worker.poll_interval_ms", w.poll_interval_ms, 200)?,
            lease: check::positive_secs(
                "worker.lease_seconds",
                w.lease_seconds,
                Duration::from_secs(60),
                "must be greater than 0",
            )?,
            max_response_bytes: match w.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES) {
                n if n < 1024 => {
                    return Err(ConfigError::invalid(
                        "worker.max_response_bytes",
                        "must be at least 1024",
                    ));
                }
                n => n,
            },
            retry_horizon: check::positive_secs(
                "worker.retry_horizon_seconds",
                w.retry_horizon_seconds,
                DEFAULT_RETRY_HORIZON,
                "must be greater than 0",
            )?,
        };
        // What the retry crate refuses beyond the checks above (a delay over a year) is
        // refused here too, naming the key.
        worker.retry_policy()?;
        Ok(worker)
    }
}

impl WorkerConfig {
    /// The queue's retry policy: exponential from `backoff_initial`, capped at `backoff_max`,
    /// `max_attempts` in all. Validated by the retry crate (its `try_from` of a builder);
    /// a refusal names the key.
    pub fn retry_policy(&self) -> Result<RetryPolicy, ConfigError> {
        let builder = RetryPolicy::builder()
            .exponential(self.backoff_initial, self.backoff_multiplier)
            .max_delay(self.backoff_max)
            .max_attempts(self.max_attempts);
        RetryPolicy::try_from(builder).map_err(|e| {
            use steadfast_retry::ConfigError as E;
            let key = match &e {
                E::ZeroAttempts(_) => "worker.max_attempts",
                E::InvalidMultiplier(_) => "worker.backoff_multiplier",
                E::DurationTooLong { name, .. } if name.contains("initial") => {
                    "worker.backoff_initial_ms"
                }
                _ => "worker.backoff_max_ms",
            };
            ConfigError::invalid(key, e.to_string())
        })
    }

    /// The queue's configuration: this worker's retry policy and horizon on `queue`, and done
    /// messages remembered, so a done message's key keeps refusing redeliveries for as long as
    /// it is retained (the dedup window): the ack is the processed marker.
    pub fn queue_config(&self, queue: &str) -> Result<QueueConfig, String> {
        QueueConfig::builder()
            .queue_policy(queue, self.retry_policy().map_err(|e| e.to_string())?)
            .queue_horizon(queue, self.retry_horizon)
            .remember_done(queue, true)
            .build()
            .map_err(|e| e.to_string())
    }
}
