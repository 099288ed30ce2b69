//! `[actions]`: where the actions a downstream reply asks for are sent (one URL per action
//! type), how long one call may take, the breaker each type runs through, and how a step is
//! retried. See [`crate::actions`] for what happens with them.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use steadfast_retry::RetryPolicy;

use super::{BreakerSpec, ConfigError, RawBreaker, check};
use crate::actions::ActionType;

/// Default timeout of one action call (execute or compensation), in milliseconds.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default attempts of an action's execute (compensations use the saga crate's own, harder
/// policy).
const DEFAULT_MAX_ATTEMPTS: u32 = 5;
const DEFAULT_BACKOFF_INITIAL_MS: u64 = 1_000;
const DEFAULT_BACKOFF_MAX_MS: u64 = 60_000;
const DEFAULT_RECOVERY_POLL_MS: u64 = 5_000;

/// The `[actions]` table as written in the file, before validation. No environment
/// overrides.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawActions {
    /// `create_order`: the URL `create_order` actions are POSTed to; unset ignores them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_order: Option<String>,
    /// `create_support_ticket`: as `create_order`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_support_ticket: Option<String>,
    /// `notify_sales`: as `create_order`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_sales: Option<String>,
    /// `flag_for_review`: as `create_order`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag_for_review: Option<String>,
    /// `timeout_ms`; default 10 000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// `breaker`: a preset or an inline table, as a service's; default `"standard"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<RawBreaker>,
    /// `max_attempts` of an action's execute; default 5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// `backoff_initial_ms`; default 1 000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_initial_ms: Option<u64>,
    /// `backoff_max_ms`; default 60 000, at least `backoff_initial_ms`; also caps a
    /// `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_max_ms: Option<u64>,
    /// `recovery_poll_ms`: how often the recovery loop looks for sagas to carry on (a crashed
    /// instance's, or one an operator retried); default 5 000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_poll_ms: Option<u64>,
}

impl RawActions {
    fn url_of(&self, kind: ActionType) -> Option<&String> {
        match kind {
            ActionType::CreateOrder => self.create_order.as_ref(),
            ActionType::CreateSupportTicket => self.create_support_ticket.as_ref(),
            ActionType::NotifySales => self.notify_sales.as_ref(),
            ActionType::FlagForReview => self.flag_for_review.as_ref(),
        }
    }
}

/// The validated `[actions]` table.
#[derive(Debug, Clone)]
pub struct ActionsConfig {
    /// The configured action types and their URLs, in the fixed step order
    /// ([`ActionType::ALL`]).
    pub endpoints: Vec<(ActionType, String)>,
    /// Timeout of one call.
    pub timeout: Duration,
    /// The breaker each action type runs through (one breaker per type).
    pub breaker: BreakerSpec,
    /// Attempts of an action's execute.
    pub max_attempts: u32,
    /// First retry delay.
    pub backoff_initial: Duration,
    /// Cap of one retry delay (and of a `Retry-After`).
    pub backoff_max: Duration,
    /// How often the recovery loop polls.
    pub recovery_poll: Duration,
}

/// An action URL: http(s) with a host, `https://` unless the host is loopback (the user's
/// number and the action's data travel on it), no user info (it would be logged with
/// errors and shown in breaker names).
fn action_url(key: &str, url: &str) -> Result<(), ConfigError> {
    check::url(key, url)?;
    let redacted = || steadfast_service_registry::Endpoint::redact(url);
    if !url.starts_with("https://") && !check::is_loopback_url(url) {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{:?} must be https:// (users' numbers and the action's data travel on it); \
                 http:// is accepted only for a loopback host",
                redacted()
            ),
        ));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| ConfigError::invalid(key, e.to_string()))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{:?} must not carry user info (user:password@); authenticate the network path instead",
                redacted()
            ),
        ));
    }
    Ok(())
}

impl TryFrom<RawActions> for ActionsConfig {
    type Error = ConfigError;

    fn try_from(raw: RawActions) -> Result<Self, ConfigError> {
        let mut endpoints = Vec::new();
        for kind in ActionType::ALL {
            if let Some(url) = raw.url_of(kind) {
                let key = format!("actions.{}", kind.as_str());
                action_url(&key, url)?;
                endpoints.push((kind, url.clone()));
            }
        }
        let breaker = match raw.breaker {
            None => BreakerSpec::Standard,
            Some(b) => BreakerSpec::try_from(b).map_err(|e| e.within("actions"))?,
        };
        let max_attempts = raw.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if max_attempts == 0 {
            return Err(ConfigError::invalid(
                "actions.max_attempts",
                "must be at least 1",
            ));
        }
        let backoff_initial = check::positive_ms(
            "actions.backoff_initial_ms",
            raw.backoff_initial_ms,
            DEFAULT_BACKOFF_INITIAL_MS,
        )?;
        let backoff_max = check::positive_ms(
            "actions.backoff_max_ms",
            raw.backoff_max_ms,
            DEFAULT_BACKOFF_MAX_MS,
        )?;
        if backoff_max < backoff_initial {
            return Err(ConfigError::invalid(
                "actions.backoff_max_ms",
                "must not be smaller than actions.backoff_initial_ms",
            ));
        }
        let config = Self {
            endpoints,
            timeout: check::positive_ms("actions.timeout_ms", raw.timeout_ms, DEFAULT_TIMEOUT_MS)?,
            breaker,
            max_attempts,
            backoff_initial,
            backoff_max,
            recovery_poll: check::positive_ms(
                "actions.recovery_poll_ms",
                raw.recovery_poll_ms,
                DEFAULT_RECOVERY_POLL_MS,
            )?,
        };
        config.step_policy()?;
        Ok(config)
    }
}

impl ActionsConfig {
    /// The URL of `kind`, when it is configured.
    pub fn url(&self, kind: ActionType) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, u)| u.as_str())
    }

    /// Whether `kind` is configured.
    pub fn is_configured(&self, kind: ActionType) -> bool {
        self.url(kind).is_some()
    }

    /// How an action's execute is retried: exponential from `backoff_initial` (doubling),
    /// capped at `backoff_max`, `max_attempts` in all. A refusal by the retry crate names the
    /// key.
    pub fn step_policy(&self) -> Result<RetryPolicy, ConfigError> {
        let builder = RetryPolicy::builder()
            .exponential(self.backoff_initial, 2.0)
            .max_delay(self.backoff_max)
            .max_attempts(self.max_attempts);
        RetryPolicy::try_from(builder).map_err(|e| {
            let key = match &e {
                steadfast_retry::ConfigError::DurationTooLong { name, .. }
                    if name.contains("initial") =>
                {
                    "actions.backoff_initial_ms"
                }
                steadfast_retry::ConfigError::ZeroAttempts(_) => "actions.max_attempts",
                _ => "actions.backoff_max_ms",
            };
            ConfigError::invalid(key, e.to_string())
        })
    }
}
