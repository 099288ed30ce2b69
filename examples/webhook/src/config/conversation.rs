//! `[conversation]`: the conversation sweeper and personal-data retention.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, check};

/// Default conversation retention, in days.
pub const DEFAULT_CONVERSATION_RETENTION_DAYS: u64 = 30;

/// The `[conversation]` table as written in the file, before validation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConversation {
    /// `sweep_interval_seconds`; default 30.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep_interval_seconds: Option<u64>,
    /// `retention_days`; default [`DEFAULT_CONVERSATION_RETENTION_DAYS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u64>,
}

/// Conversations. The idle timeout (30 minutes in `awaiting_input` / `agent_active`) and the
/// history length (20 messages) are those of the conversation machine.
#[derive(Debug, Clone)]
pub struct ConversationConfig {
    /// How often the sweeper looks for conversations whose state timed out.
    pub sweep_interval: Duration,
    /// Conversations (message bodies keyed by phone number) idle for longer than this are
    /// deleted by the retention loop: the service's personal-data retention.
    pub retention: Duration,
}

impl TryFrom<RawConversation> for ConversationConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConversation) -> Result<Self, ConfigError> {
        let sweep_interval = check::positive_secs(
            "conversation.sweep_interval_seconds",
            raw.sweep_interval_seconds,
            Duration::from_secs(30),
            "must be greater than 0",
        )?;
        let retention = match raw
            .retention_days
            .unwrap_or(DEFAULT_CONVERSATION_RETENTION_DAYS)
        {
            0 => {
                return Err(ConfigError::invalid(
                    "conversation.retention_days",
                    "must be at least 1",
                ));
            }
            d => Duration::from_secs(d.saturating_mul(24 * 3600)),
        };
        Ok(Self {
            sweep_interval,
            retention,
        })
    }
}
