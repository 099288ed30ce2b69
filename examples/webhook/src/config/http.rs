//! `[http]`: ingestion limits, timeouts, client addresses behind a proxy.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, check};

/// Default body limit: 4 MiB (Meta sends up to 3 MB).
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Default cap of concurrent connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default header-read timeout: a real client sends its request head in milliseconds.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Default keep-alive idle timeout.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap of messages per delivery: Meta batches at most 1000 updates in one delivery.
pub const DEFAULT_MAX_MESSAGES_PER_DELIVERY: usize = 1000;

/// The `[http]` table as written in the file, before validation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// `body_limit_bytes`; default [`DEFAULT_BODY_LIMIT`], at least 1024.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_limit_bytes: Option<usize>,
    /// `request_timeout_ms`; default 10 000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    /// `trust_forwarded_for`; default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_forwarded_for: Option<bool>,
    /// `trusted_proxy_hops`; only with `trust_forwarded_for`, default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_proxy_hops: Option<usize>,
    /// `shutdown_grace_ms`; default 10 000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_ms: Option<u64>,
    /// `max_connections`; default [`DEFAULT_MAX_CONNECTIONS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// `header_read_timeout_ms`; default [`DEFAULT_HEADER_READ_TIMEOUT`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout_ms: Option<u64>,
    /// `keep_alive_timeout_ms`; default [`DEFAULT_KEEP_ALIVE_TIMEOUT`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive_timeout_ms: Option<u64>,
    /// `max_messages_per_delivery`; default [`DEFAULT_MAX_MESSAGES_PER_DELIVERY`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_messages_per_delivery: Option<usize>,
    /// `max_delivery_age_seconds`; default the de-duplication window
    /// (`storage.dedup_window_seconds`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delivery_age_seconds: Option<u64>,
}

/// HTTP ingestion.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted body; larger gets 413.
    pub body_limit_bytes: usize,
    /// A request still running after this answers 408.
    pub request_timeout: Duration,
    /// Take the client IP from `X-Forwarded-For` (behind a trusted proxy only).
    pub trust_forwarded_for: bool,
    /// How many trusted proxies append to `X-Forwarded-For`: the client is the entry this many
    /// places from the right (1 when `trust_forwarded_for` is on and the key is unset).
    pub trusted_proxy_hops: usize,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace: Duration,
    /// Connections served at once; further connections wait in the listen backlog.
    pub max_connections: usize,
    /// A connection that has not sent a complete request head within this is closed.
    pub header_read_timeout: Duration,
    /// A kept-alive connection idle (no request in flight) for this long is closed.
    pub keep_alive_timeout: Duration,
    /// Messages one delivery may carry; more answers 413 and stores nothing.
    pub max_messages_per_delivery: usize,
    /// A delivery whose every message and status timestamp is older than this is answered
    /// 200 and counted `stale`, not stored (a captured delivery replayed later).
    pub max_delivery_age: Duration,
}

impl TryFrom<RawHttp> for HttpConfig {
    type Error = ConfigError;

    /// An unset `max_delivery_age_seconds` comes out as the default de-duplication window;
    /// [`super::Config`] sets it to the configured one.
    fn try_from(raw: RawHttp) -> Result<Self, ConfigError> {
        let body_limit_bytes = raw.body_limit_bytes.unwrap_or(DEFAULT_BODY_LIMIT);
        if body_limit_bytes < 1024 {
            return Err(ConfigError::invalid(
                "http.body_limit_bytes",
                "must be at least 1024 (Meta sends up to 3 MB)",
            ));
        }
        let trust_forwarded_for = raw.trust_forwarded_for.unwrap_or(false);
        let trusted_proxy_hops = match (trust_forwarded_for, raw.trusted_proxy_hops) {
            (false, Some(_)) => {
                return Err(ConfigError::invalid(
                    "http.trusted_proxy_hops",
                    "has no effect unless http.trust_forwarded_for = true",
                ));
            }
            (true, Some(0)) => {
                return Err(ConfigError::invalid(
                    "http.trusted_proxy_hops",
                    "must be at least 1 (the proxy in front of this service)",
                ));
            }
            (_, Some(n)) => n,
            (_, None) => 1,
        };
        let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(ConfigError::invalid(
                "http.max_connections",
                "must be greater than 0",
            ));
        }
        let max_messages_per_delivery = raw
            .max_messages_per_delivery
            .unwrap_or(DEFAULT_MAX_MESSAGES_PER_DELIVERY);
        if max_messages_per_delivery == 0 {
            return Err(ConfigError::invalid(
                "http.max_messages_per_delivery",
                "must be greater than 0 (Meta sends up to 1000 per delivery)",
            ));
        }
        Ok(Self {
            body_limit_bytes,
            request_timeout: check::positive_ms(
                "http.request_timeout_ms",
                raw.request_timeout_ms,
                10_000,
            )?,
            trust_forwarded_for,
            trusted_proxy_hops,
            shutdown_grace: check::positive_ms(
                "http.shutdown_grace_ms",
                raw.shutdown_grace_ms,
                10_000,
            )?,
            max_connections,
            header_read_timeout: check::positive_ms(
                "http.header_read_timeout_ms",
                raw.header_read_timeout_ms,
                DEFAULT_HEADER_READ_TIMEOUT.as_millis() as u64,
            )?,
            keep_alive_timeout: check::positive_ms(
                "http.keep_alive_timeout_ms",
                raw.keep_alive_timeout_ms,
                DEFAULT_KEEP_ALIVE_TIMEOUT.as_millis() as u64,
            )?,
            max_messages_per_delivery,
            max_delivery_age: check::positive_secs(
                "http.max_delivery_age_seconds",
                raw.max_delivery_age_seconds,
                super::storage::DEFAULT_DEDUP_WINDOW,
                "must be greater than 0",
            )?,
        })
    }
}
