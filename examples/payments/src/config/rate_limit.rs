//! `[rate_limit]`: requests per client IP on `/momo/callback`.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The seeds' limit: 100 callbacks a minute per client IP.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 100;

/// `[rate_limit]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// `per_minute`; default [`DEFAULT_RATE_PER_MINUTE`]; 0 turns the limit off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    /// `burst`: requests allowed back to back; default `per_minute`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// The validated limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Requests per minute per client IP; 0: off.
    pub per_minute: u32,
    /// Requests allowed back to back.
    pub burst: u32,
}

impl TryFrom<RawRateLimit> for RateLimitConfig {
    type Error = ConfigError;

    fn try_from(raw: RawRateLimit) -> Result<Self, ConfigError> {
        let per_minute = raw.per_minute.unwrap_or(DEFAULT_RATE_PER_MINUTE);
        let burst = raw.burst.unwrap_or(per_minute);
        if per_minute > 0 && burst == 0 {
            return Err(ConfigError::invalid(
                "rate_limit.burst",
                "must be greater than 0 while the limit is on",
            ));
        }
        Ok(RateLimitConfig { per_minute, burst })
    }
}
