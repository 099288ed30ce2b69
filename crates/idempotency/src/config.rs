//! Policies: TTLs, lease duration, body limit, key rules, store-down behaviour.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::key::KeyRules;

/// What to do when the store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDown {
    /// Refuse to run the operation (HTTP: 503 with `Retry-After`). The default for HTTP,
    /// where running twice can move money twice.
    FailClosed,
    /// Run the operation without protection and count it (`Stats::fail_open`). The default
    /// for message de-duplication, where a durable queue downstream is idempotent anyway.
    FailOpen,
}

type StatusPolicy = Arc<dyn Fn(u16) -> bool + Send + Sync>;

/// Idempotency policies. Build with [`Config::builder`]; [`Config::default`] holds the
/// documented defaults.
#[derive(Clone)]
pub struct Config {
    pub(crate) completed_ttl: Duration,
    pub(crate) lease_duration: Duration,
    pub(crate) max_response_bytes: usize,
    pub(crate) key_rules: KeyRules,
    pub(crate) store_down: StoreDown,
    pub(crate) store_status: StatusPolicy,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("completed_ttl", &self.completed_ttl)
            .field("lease_duration", &self.lease_duration)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("key_rules", &self.key_rules)
            .field("store_down", &self.store_down)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        ConfigBuilder::default().config
    }
}

impl Config {
    /// Default: completed TTL 24 h, lease 60 s, bodies up to 1 MiB stored, keys of 16–255
    /// visible ASCII characters, fail closed, 2xx and 4xx stored (5xx release the key).
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// How long a completed response is replayed.
    pub fn completed_ttl(&self) -> Duration {
        self.completed_ttl
    }

    /// How long a claim holds a key before another caller may take it over (crash recovery).
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// Largest response body stored; larger ones release the key instead.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// Key syntax.
    pub fn key_rules(&self) -> KeyRules {
        self.key_rules
    }

    /// Store-down behaviour.
    pub fn store_down(&self) -> StoreDown {
        self.store_down
    }

    /// Whether a response with this status is stored (otherwise the key is released so the
    /// client may retry).
    pub fn should_store(&self, status: u16) -> bool {
        (self.store_status)(status)
    }
}

/// Builder for [`Config`].
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        ConfigBuilder {
            config: Config {
                completed_ttl: Duration::from_secs(24 * 60 * 60),
                lease_duration: Duration::from_secs(60),
                max_response_bytes: 1024 * 1024,
                key_rules: KeyRules::default(),
                store_down: StoreDown::FailClosed,
                store_status: Arc::new(|s| (200..300).contains(&s) || (400..500).contains(&s)),
            },
        }
    }
}

impl ConfigBuilder {
    /// How long completed responses are replayed (default 24 h).
    pub fn completed_ttl(mut self, ttl: Duration) -> Self {
        self.config.completed_ttl = ttl;
        self
    }

    /// Lease duration (default 60 s). Longer than your slowest handler, or a slow handler
    /// loses its claim to a retry and its result is rejected as stale.
    pub fn lease_duration(mut self, lease: Duration) -> Self {
        self.config.lease_duration = lease;
        self
    }

    /// Largest response body stored (default 1 MiB).
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.config.max_response_bytes = limit;
        self
    }

    /// Key syntax (default 16–255 visible ASCII characters).
    pub fn key_rules(mut self, rules: KeyRules) -> Self {
        self.config.key_rules = rules;
        self
    }

    /// Store-down behaviour (default [`StoreDown::FailClosed`]).
    pub fn store_down(mut self, policy: StoreDown) -> Self {
        self.config.store_down = policy;
        self
    }

    /// Which statuses are stored (default 2xx and 4xx; 5xx release the key).
    pub fn store_status(mut self, policy: impl Fn(u16) -> bool + Send + Sync + 'static) -> Self {
        self.config.store_status = Arc::new(policy);
        self
    }

    /// Validate and build.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = &self.config;
        if c.completed_ttl.is_zero() {
            return Err(ConfigError::ZeroDuration {
                name: "completed_ttl",
            });
        }
        if c.lease_duration.as_millis() == 0 {
            return Err(ConfigError::ZeroDuration {
                name: "lease_duration",
            });
        }
        if c.lease_duration > c.completed_ttl {
            return Err(ConfigError::LeaseLongerThanTtl {
                lease: c.lease_duration,
                ttl: c.completed_ttl,
            });
        }
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.completed_ttl(), Duration::from_secs(86_400));
        assert_eq!(c.lease_duration(), Duration::from_secs(60));
        assert_eq!(c.store_down(), StoreDown::FailClosed);
        assert!(c.should_store(201) && c.should_store(404) && !c.should_store(503));
    }

    #[test]
    fn invalid_values_rejected() {
        assert!(matches!(
            Config::builder().lease_duration(Duration::ZERO).build(),
            Err(ConfigError::ZeroDuration { .. })
        ));
        assert!(matches!(
            Config::builder()
                .completed_ttl(Duration::from_secs(1))
                .build(),
            Err(ConfigError::LeaseLongerThanTtl { .. })
        ));
    }
}
