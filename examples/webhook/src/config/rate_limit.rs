//! `[rate_limit]`: requests per client IP.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Default rate limit per client IP.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 300;

/// The `[rate_limit]` table as written in the file, before validation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// `per_minute` (env `RATE_LIMIT_PER_MINUTE`, flag `--rate-limit-per-minute`); default
    /// [`DEFAULT_RATE_PER_MINUTE`]; 0 disables the limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    /// `burst`; default `per_minute`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// Per-client-IP rate limit.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// Requests per minute per client IP; 0 disables the limit.
    pub per_minute: u32,
    /// Requests allowed back to back (GCRA burst). Defaults to `per_minute`.
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
                "must be greater than 0 when the limit is on",
            ));
        }
        Ok(Self { per_minute, burst })
    }
}
