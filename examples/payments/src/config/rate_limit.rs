//! `[rate_limit]`: requests per client IP on `/momo/callback` (the table and its validation
//! are the kit's: `steadfast_service_kit::ratelimit::{RawRateLimit, RateLimitConfig}`).

/// The seeds' limit: 100 callbacks a minute per client IP.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 100;
