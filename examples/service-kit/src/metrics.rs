//! The names of the metrics the kit records. They keep the `webhook_` prefix they had when the
//! code lived in the webhook (dashboards and alerts use them); the payments service records
//! them under the same names.

/// Requests refused by the per-IP rate limit ([`crate::ratelimit`]).
pub const RATE_LIMITED: &str = "webhook_rate_limited_total";
/// Connections closed by the server ([`crate::http::server`]), labelled `reason`.
pub const CONNECTIONS_CLOSED: &str = "webhook_http_connections_closed_total";
/// Admin API and console requests refused for their token, labelled `reason` (`missing`,
/// `mismatch`, `csrf`).
pub const ADMIN_AUTH_FAILURES: &str = "webhook_admin_auth_failures_total";
