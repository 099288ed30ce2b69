//! `[whatsapp]`: the WhatsApp Cloud API side (signatures, the handshake, outbound replies).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret, check};

/// Default Graph API base URL.
pub const DEFAULT_GRAPH_API_URL: &str = "https://graph.facebook.com/v21.0";
/// Shortest accepted app secret, verify token and admin token.
pub const MIN_SECRET_LEN: usize = 16;
/// Default timeout of one Graph API call, in milliseconds.
const DEFAULT_GRAPH_TIMEOUT_MS: u64 = 10_000;

/// The `[whatsapp]` table as written in the file, before validation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWhatsApp {
    /// `app_secret` (env `WHATSAPP_APP_SECRET`); generated in demo mode when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_secret: Option<Secret>,
    /// `verify_token` (env `WHATSAPP_VERIFY_TOKEN`); generated in demo mode when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_token: Option<Secret>,
    /// `access_token` (env `WHATSAPP_ACCESS_TOKEN`); unset logs replies instead of sending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    /// `graph_api_url` (env `WHATSAPP_GRAPH_API_URL`); default [`DEFAULT_GRAPH_API_URL`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_api_url: Option<String>,
    /// `graph_timeout_ms`; default 10 000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_timeout_ms: Option<u64>,
}

/// The WhatsApp Cloud API side.
#[derive(Debug, Clone)]
pub struct WhatsAppConfig {
    /// The app secret that signs deliveries (`X-Hub-Signature-256`).
    pub app_secret: Secret,
    /// The token Meta sends in the GET handshake.
    pub verify_token: Secret,
    /// Bearer token for outbound Graph API calls. `None` (demo mode) logs replies instead.
    pub access_token: Option<Secret>,
    /// Graph API base URL, e.g. `https://graph.facebook.com/v21.0`.
    pub graph_api_url: String,
    /// Timeout of one Graph API call.
    pub graph_timeout: Duration,
}

/// A secret the service cannot run without: present (demo mode generates a missing one before
/// this check), not blank, long enough not to be guessed.
pub(crate) fn required_secret(key: &str, value: Option<Secret>) -> Result<Secret, ConfigError> {
    match value {
        Some(s) if s.expose().trim().is_empty() => {
            Err(ConfigError::invalid(key, "must not be empty"))
        }
        Some(s) if s.trimmed_len() < MIN_SECRET_LEN => Err(ConfigError::invalid(
            key,
            format!("must be at least {MIN_SECRET_LEN} characters (a short secret can be guessed)"),
        )),
        Some(s) => Ok(s),
        None => Err(ConfigError::invalid(
            key,
            "is required when storage.database_url (DATABASE_URL) is set",
        )),
    }
}

impl TryFrom<RawWhatsApp> for WhatsAppConfig {
    type Error = ConfigError;

    fn try_from(raw: RawWhatsApp) -> Result<Self, ConfigError> {
        let app_secret = required_secret("whatsapp.app_secret", raw.app_secret)?;
        let verify_token = required_secret("whatsapp.verify_token", raw.verify_token)?;
        let graph_api_url = raw
            .graph_api_url
            .unwrap_or_else(|| DEFAULT_GRAPH_API_URL.to_owned());
        check::url("whatsapp.graph_api_url", &graph_api_url)?;
        if !graph_api_url.starts_with("https://") && !check::is_loopback_url(&graph_api_url) {
            return Err(ConfigError::invalid(
                "whatsapp.graph_api_url",
                format!(
                    "{:?} must be https:// (the access token and users' messages travel on it); \
                     http:// is accepted only for a loopback host",
                    steadfast_service_registry::Endpoint::redact(&graph_api_url)
                ),
            ));
        }
        Ok(Self {
            app_secret,
            verify_token,
            access_token: raw.access_token,
            graph_api_url: graph_api_url.trim_end_matches('/').to_owned(),
            graph_timeout: check::positive_ms(
                "whatsapp.graph_timeout_ms",
                raw.graph_timeout_ms,
                DEFAULT_GRAPH_TIMEOUT_MS,
            )?,
        })
    }
}
