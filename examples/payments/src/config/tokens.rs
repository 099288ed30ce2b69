//! `[api]` and `[admin]`: the bearer tokens of `/v1` and `/admin`.

use serde::{Deserialize, Serialize};
use steadfast_service_kit::secret::Secret;

use super::ConfigError;

/// The shortest token accepted: a bearer token is the only thing between the internet and
/// the money.
pub const MIN_TOKEN_LEN: usize = 16;

/// `[api]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// `token` (env `PAYMENTS_API_TOKEN`): the bearer token of every `/v1` route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
}

/// `[admin]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `token` (env `ADMIN_TOKEN`): the bearer token of `/admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
}

/// A required token of at least [`MIN_TOKEN_LEN`] characters.
pub(crate) fn token(key: &str, value: Option<Secret>) -> Result<Secret, ConfigError> {
    let value = value.ok_or_else(|| {
        ConfigError::invalid(
            key,
            "is required when DATABASE_URL is set (demo mode generates it)",
        )
    })?;
    if value.expose().chars().count() < MIN_TOKEN_LEN {
        return Err(ConfigError::invalid(
            key,
            format!("must be at least {MIN_TOKEN_LEN} characters"),
        ));
    }
    Ok(value)
}
