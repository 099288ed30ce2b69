//! `[admin]`: the admin API's bearer token.

use serde::{Deserialize, Serialize};

use super::{ConfigError, MIN_SECRET_LEN, Secret};

/// The `[admin]` table as written in the file, before validation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `token` (env `ADMIN_TOKEN`): the admin API's bearer token. Unset disables the admin API,
    /// except in demo mode, which generates one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
}

/// The validated `[admin]` table.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// The bearer token; `None` disables the admin API (404).
    pub token: Option<Secret>,
}

impl TryFrom<RawAdmin> for AdminConfig {
    type Error = ConfigError;

    fn try_from(raw: RawAdmin) -> Result<Self, ConfigError> {
        if raw
            .token
            .as_ref()
            .is_some_and(|t| t.trimmed_len() < MIN_SECRET_LEN)
        {
            return Err(ConfigError::invalid(
                "admin.token",
                format!("must be at least {MIN_SECRET_LEN} characters, not counting spaces"),
            ));
        }
        Ok(Self { token: raw.token })
    }
}
