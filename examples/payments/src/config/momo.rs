//! `[momo]`: the mobile-money provider: who may call back, how callbacks are signed, and
//! where payouts are requested.

use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use steadfast_service_kit::secret::Secret;

use super::ConfigError;

/// The shortest callback secret accepted.
pub const MIN_SECRET_LEN: usize = 16;
/// Default timeout of one provider request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Where demo mode accepts callbacks from: loopback, where its fake provider runs.
pub const DEMO_ALLOWED_IPS: &[&str] = &["127.0.0.0/8", "::1/128"];

/// `[momo]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMomo {
    /// `callback_secret` (env `MOMO_CALLBACK_SECRET`): the HMAC-SHA256 key of `X-Signature`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<Secret>,
    /// `allowed_ips`: CIDRs (or single addresses) allowed to call `/momo/callback`; demo
    /// default [`DEMO_ALLOWED_IPS`], required with a database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_ips: Option<Vec<String>>,
    /// `trusted_proxy_hops`: proxies in front of the service that append to
    /// `X-Forwarded-For`; the client is the entry this many places from the right. Default 0:
    /// the socket's peer address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_proxy_hops: Option<usize>,
    /// `api_url`: the provider API; unset in demo mode runs the built-in fake provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// `api_key` (env `MOMO_API_KEY`): the provider API's bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// `request_timeout_ms`: one provider request; default 10 000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
}

/// The validated `[momo]` section.
#[derive(Debug, Clone)]
pub struct MomoConfig {
    /// The callback signature key.
    pub callback_secret: Secret,
    /// Networks allowed to call back.
    pub allowed_ips: Vec<IpNet>,
    /// Trusted proxies (0: the peer address is the client).
    pub trusted_proxy_hops: usize,
    /// The provider API; `None`: the built-in fake provider (demo mode only).
    pub api_url: Option<String>,
    /// The provider API key.
    pub api_key: Secret,
    /// One provider request's timeout.
    pub request_timeout: Duration,
}

impl MomoConfig {
    /// Whether `ip` may call `/momo/callback`. IPv4-mapped IPv6 peers are compared as IPv4.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        self.allowed_ips.iter().any(|net| net.contains(&ip))
    }
}

/// One `allowed_ips` entry: a CIDR, or a bare address (a /32 or /128).
fn network(key: &str, text: &str) -> Result<IpNet, ConfigError> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| {
            ConfigError::invalid(
                key,
                format!("{text:?} is not a CIDR like \"196.223.0.0/16\""),
            )
        })
}

impl MomoConfig {
    /// Validates `raw`; `demo` allows loopback defaults and the fake provider.
    pub(crate) fn from_raw(raw: RawMomo, demo: bool) -> Result<Self, ConfigError> {
        let callback_secret = raw.callback_secret.ok_or_else(|| {
            ConfigError::invalid(
                "momo.callback_secret",
                "is required when DATABASE_URL is set",
            )
        })?;
        if callback_secret.expose().len() < MIN_SECRET_LEN {
            return Err(ConfigError::invalid(
                "momo.callback_secret",
                format!("must be at least {MIN_SECRET_LEN} bytes"),
            ));
        }
        let allowed_ips = match raw.allowed_ips {
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, t)| network(&format!("momo.allowed_ips[{i}]"), t))
                .collect::<Result<Vec<_>, _>>()?,
            None if demo => DEMO_ALLOWED_IPS
                .iter()
                .map(|t| network("momo.allowed_ips", t))
                .collect::<Result<Vec<_>, _>>()?,
            None => {
                return Err(ConfigError::invalid(
                    "momo.allowed_ips",
                    "is required when DATABASE_URL is set: the provider's callback networks",
                ));
            }
        };
        let api_url = match raw
            .api_url
            .map(|u| u.trim().trim_end_matches('/').to_owned())
        {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => Some(u),
            Some(u) => {
                return Err(ConfigError::invalid(
                    "momo.api_url",
                    format!("{u:?} is not an http(s) URL"),
                ));
            }
            None if demo => None,
            None => {
                return Err(ConfigError::invalid(
                    "momo.api_url",
                    "is required when DATABASE_URL is set (demo mode runs a fake provider)",
                ));
            }
        };
        let api_key = raw
            .api_key
            .ok_or_else(|| ConfigError::invalid("momo.api_key", "is required"))?;
        let request_timeout = match raw.request_timeout_ms {
            None => DEFAULT_REQUEST_TIMEOUT,
            Some(0) => {
                return Err(ConfigError::invalid(
                    "momo.request_timeout_ms",
                    "must be greater than 0",
                ));
            }
            Some(ms) => Duration::from_millis(ms),
        };
        Ok(MomoConfig {
            callback_secret,
            allowed_ips,
            trusted_proxy_hops: raw.trusted_proxy_hops.unwrap_or(0),
            api_url,
            api_key,
            request_timeout,
        })
    }
}
