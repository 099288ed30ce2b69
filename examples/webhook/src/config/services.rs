//! `[[services]]` and `[routing]`: the downstream services, their breakers and timeouts, which
//! one gets the messages no keyword matched, and the seed system's routing table used when the
//! file names no services.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use steadfast_retry::RetryPolicy;

use super::{Config, ConfigError, check};

/// Default fallback reply.
pub const DEFAULT_FALLBACK_REPLY: &str =
    "Sorry, we cannot answer right now. We will get back to you shortly.";

/// The calls a preset breaker judges: the last 10 calls of its endpoint, once it has seen 5.
///
/// A count window, not the crates' default 30 s time window, because the worker's rule is
/// that a failure through a closed breaker spends one of the message's attempts: a breaker
/// that waits for half of 30 s of traffic to fail lets every message of an outage's first
/// seconds spend all its attempts (1 s + 2 s of backoff) before it opens. Over the last 10
/// calls it opens after the first handful of failures, and from then on messages wait
/// (snoozed) instead of dying.
const PRESET_WINDOW: u32 = 10;
const PRESET_MINIMUM_CALLS: u32 = 5;

/// Which breaker guards a service's endpoints.
#[derive(Debug, Clone, PartialEq)]
pub enum BreakerSpec {
    /// 50% failures over the window opens it for 60 s.
    Standard,
    /// For slow AI agents: 60% failures opens it for 120 s.
    AiAgent,
    /// Explicit thresholds.
    Custom(CustomBreaker),
}

/// Thresholds of an inline `breaker = { ... }` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomBreaker {
    /// Failure rate (percent of calls in the window) that opens the breaker.
    pub failure_rate_percent: f64,
    /// How long the breaker stays open before probing.
    pub open_seconds: u64,
    /// Calls in the sliding window.
    #[serde(default = "default_window_size")]
    pub window_size: u32,
    /// Calls needed before the rate is judged.
    #[serde(default = "default_minimum_calls")]
    pub minimum_calls: u32,
}

impl CustomBreaker {
    /// Opens at `failure_rate_percent` for `open_seconds`, over the default window (the last
    /// 20 calls, judged once there are 5).
    pub fn new(failure_rate_percent: f64, open_seconds: u64) -> Self {
        Self {
            failure_rate_percent,
            open_seconds,
            window_size: default_window_size(),
            minimum_calls: default_minimum_calls(),
        }
    }
}

fn default_window_size() -> u32 {
    20
}

fn default_minimum_calls() -> u32 {
    5
}

impl BreakerSpec {
    /// The circuit breaker configuration this spec stands for.
    pub fn breaker_config(&self) -> Result<steadfast_circuit_breaker::Config, String> {
        let preset = |c: steadfast_circuit_breaker::Config| {
            c.to_builder()
                .count_window(PRESET_WINDOW)
                .minimum_calls(PRESET_MINIMUM_CALLS)
                .build()
                .map_err(|e| e.to_string())
        };
        match self {
            BreakerSpec::Standard => preset(steadfast_circuit_breaker::Config::standard()),
            BreakerSpec::AiAgent => preset(steadfast_circuit_breaker::Config::ai_agent()),
            BreakerSpec::Custom(c) => steadfast_circuit_breaker::Config::builder()
                .failure_rate_threshold(c.failure_rate_percent)
                .count_window(c.window_size)
                .minimum_calls(c.minimum_calls)
                .open_duration(Duration::from_secs(c.open_seconds))
                .build()
                .map_err(|e| e.to_string()),
        }
    }
}

/// A service's `breaker` as written: a preset's name or an inline table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(
    untagged,
    expecting = "breaker must be a preset name (\"standard\" or \"ai_agent\") or a table with failure_rate_percent (0-100], open_seconds, and optionally window_size and minimum_calls"
)]
pub enum RawBreaker {
    /// `"standard"` or `"ai_agent"` (also `"ai-agent"`).
    Preset(String),
    /// `{ failure_rate_percent = .., open_seconds = .., window_size = .., minimum_calls = .. }`.
    Custom(CustomBreaker),
}

impl TryFrom<RawBreaker> for BreakerSpec {
    type Error = ConfigError;

    /// Keys are relative to the service (`breaker`, `breaker.open_seconds`).
    fn try_from(raw: RawBreaker) -> Result<Self, ConfigError> {
        let spec = match raw {
            RawBreaker::Preset(p) => match p.as_str() {
                "standard" => BreakerSpec::Standard,
                "ai_agent" | "ai-agent" => BreakerSpec::AiAgent,
                other => {
                    return Err(ConfigError::invalid(
                        "breaker",
                        format!(
                            "unknown preset {other:?}: use \"standard\", \"ai_agent\" or an inline table"
                        ),
                    ));
                }
            },
            RawBreaker::Custom(c) => {
                if !(c.failure_rate_percent > 0.0 && c.failure_rate_percent <= 100.0) {
                    return Err(ConfigError::invalid(
                        "breaker.failure_rate_percent",
                        "must be in (0, 100]",
                    ));
                }
                if c.open_seconds == 0 {
                    return Err(ConfigError::invalid(
                        "breaker.open_seconds",
                        "must be greater than 0",
                    ));
                }
                if c.window_size == 0 || c.minimum_calls == 0 {
                    return Err(ConfigError::invalid(
                        "breaker.window_size",
                        "window_size and minimum_calls must be greater than 0",
                    ));
                }
                BreakerSpec::Custom(c)
            }
        };
        // What the breaker crate refuses is refused here, naming the key, not at start-up.
        spec.breaker_config()
            .map_err(|e| ConfigError::invalid("breaker", e))?;
        Ok(spec)
    }
}

/// One `[[services]]` entry as written in the file, before validation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// `name`: letters, digits, `-` and `_`; also the route target.
    pub name: String,
    /// `endpoints`: full URLs (env `DOWNSTREAM_URL`, `SERVICE_<NAME>_ENDPOINTS`). Empty is
    /// allowed in demo mode only, where the built-in echo downstream answers.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// `keywords`: words or phrases that route a message here.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// `breaker`; default the standard preset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<RawBreaker>,
    /// `timeout_ms`; default 5 000, 30 000 with the AI agent preset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// `fallback_reply`; overrides `routing.fallback_reply` for this service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reply: Option<String>,
}

/// One downstream service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The service's name (also the route target).
    pub name: String,
    /// Full URLs the message is POSTed to; the registry balances over the healthy ones.
    pub endpoints: Vec<String>,
    /// Lower-case keywords or phrases that route a message here.
    pub keywords: Vec<String>,
    /// The breaker guarding each endpoint.
    pub breaker: BreakerSpec,
    /// Timeout of one call to one endpoint.
    pub timeout: Duration,
    /// Reply sent to the user when the last attempt failed because every endpoint was down
    /// (overrides `routing.fallback_reply`).
    pub fallback_reply: Option<String>,
}

impl TryFrom<RawService> for ServiceConfig {
    type Error = ConfigError;

    /// Keys are relative to the entry (`endpoints[0]`); the list puts `services[i]` in front.
    /// An empty `endpoints` passes: whether that is allowed depends on the mode.
    fn try_from(s: RawService) -> Result<Self, ConfigError> {
        let name = s.name.trim().to_owned();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::invalid(
                "name",
                format!("{:?} must be non-empty letters, digits, '-' or '_'", s.name),
            ));
        }
        for (j, e) in s.endpoints.iter().enumerate() {
            check::url(&format!("endpoints[{j}]"), e)?;
        }
        let mut keywords = Vec::new();
        for (j, k) in s.keywords.iter().enumerate() {
            let k = crate::routing::normalize(k);
            if k.is_empty() {
                return Err(ConfigError::invalid(
                    format!("keywords[{j}]"),
                    "must contain a letter or digit",
                ));
            }
            keywords.push(k);
        }
        let breaker = match s.breaker {
            None => BreakerSpec::Standard,
            Some(b) => BreakerSpec::try_from(b)?,
        };
        let default_timeout = if breaker == BreakerSpec::AiAgent {
            30_000
        } else {
            5_000
        };
        let timeout = check::positive_ms("timeout_ms", s.timeout_ms, default_timeout)?;
        Ok(Self {
            name,
            endpoints: s.endpoints,
            keywords,
            breaker,
            timeout,
            fallback_reply: s.fallback_reply,
        })
    }
}

impl ServiceConfig {
    /// The service registry's entry for this service on `endpoints` (its own, or the echo
    /// downstream's in demo mode).
    pub fn registry_config(
        &self,
        endpoints: Vec<String>,
    ) -> Result<steadfast_service_registry::ServiceConfig, String> {
        // Inside one attempt the registry only tries the other endpoints, quickly; the queue
        // does the slow retries with backoff.
        let attempts = u32::try_from(endpoints.len().clamp(1, 3)).unwrap_or(3);
        let retry = RetryPolicy::builder()
            .exponential(Duration::from_millis(50), 2.0)
            .max_attempts(attempts);
        let retry = RetryPolicy::try_from(retry).map_err(|e| format!("retry policy: {e}"))?;
        steadfast_service_registry::ServiceConfig::builder(self.name.clone())
            .endpoints(endpoints)
            .call_timeout(self.timeout)
            .breaker(self.breaker.breaker_config()?)
            .retry(retry)
            .build()
            .map_err(|e| e.to_string())
    }
}

/// The `[[services]]` entries, each checked, names unique, at least one.
pub(crate) fn services(raw: Vec<RawService>) -> Result<Vec<ServiceConfig>, ConfigError> {
    let mut services: Vec<ServiceConfig> = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let at = format!("services[{i}]");
        let s = ServiceConfig::try_from(s).map_err(|e| e.within(&at))?;
        if services.iter().any(|o| o.name == s.name) {
            return Err(ConfigError::invalid(
                format!("{at}.name"),
                format!("{:?} is defined twice", s.name),
            ));
        }
        services.push(s);
    }
    if services.is_empty() {
        return Err(ConfigError::invalid(
            "services",
            "at least one [[services]] entry is required",
        ));
    }
    Ok(services)
}

/// The seed system's routing table, used when the config names no services: their names,
/// keywords and breakers, no endpoints.
pub fn seed_services() -> Vec<RawService> {
    let seed: [(&str, &[&str], &str); 5] = [
        ("jobs", &["jobs", "job"], "standard"),
        (
            "property",
            &["rent property", "property", "rent"],
            "standard",
        ),
        ("mobility", &["book ride", "ride"], "standard"),
        ("marketplace", &["shop"], "standard"),
        ("ai-agent", &[], "ai_agent"),
    ];
    seed.into_iter()
        .map(|(name, keywords, breaker)| RawService {
            name: name.to_owned(),
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
            breaker: Some(RawBreaker::Preset(breaker.to_owned())),
            ..RawService::default()
        })
        .collect()
}

/// The seed's default service: the AI agent gets what no keyword matched.
pub const SEED_DEFAULT_SERVICE: &str = "ai-agent";

/// The `[routing]` table as written in the file, before validation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// `default_service`: gets the messages no keyword matched; default the last service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_service: Option<String>,
    /// `fallback_reply`: sent when a message's service was down; blank sends nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reply: Option<String>,
}

/// The validated `[routing]` table.
#[derive(Debug, Clone)]
pub(crate) struct Routing {
    /// `None`: the last service.
    pub(crate) default_service: Option<String>,
    pub(crate) fallback_reply: Option<String>,
}

impl From<RawRouting> for Routing {
    fn from(raw: RawRouting) -> Self {
        Self {
            default_service: raw.default_service,
            fallback_reply: match raw.fallback_reply {
                Some(t) if t.trim().is_empty() => None,
                Some(t) => Some(t),
                None => Some(DEFAULT_FALLBACK_REPLY.to_owned()),
            },
        }
    }
}

impl Config {
    /// The keyword router over the configured services, in priority order.
    pub fn keyword_router(&self) -> crate::routing::Router {
        crate::routing::Router::new(
            self.services
                .iter()
                .map(|s| (s.name.clone(), s.keywords.clone()))
                .collect(),
            self.default_service.clone(),
        )
    }
}
