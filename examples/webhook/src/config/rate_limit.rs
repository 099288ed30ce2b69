//! `[rate_limit]`: requests per client IP (the table and its validation are the kit's:
//! `steadfast_service_kit::ratelimit::{RawRateLimit, RateLimitConfig}`).

/// Default rate limit per client IP (env `RATE_LIMIT_PER_MINUTE`, flag
/// `--rate-limit-per-minute`).
pub const DEFAULT_RATE_PER_MINUTE: u32 = 300;
