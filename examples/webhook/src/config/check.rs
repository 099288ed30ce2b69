//! Checks more than one section makes: URLs and positive durations.

use std::time::Duration;

use super::ConfigError;

/// An `http://` or `https://` URL with a host. The error shows the URL redacted: a start-up
/// error is logged, and the URL may carry credentials.
pub(crate) fn url(key: &str, url: &str) -> Result<(), ConfigError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.split("://").nth(1).is_some_and(|rest| !rest.is_empty())
        && reqwest::Url::parse(url).is_ok();
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!(
                "{:?} is not an http:// or https:// URL",
                steadfast_service_registry::Endpoint::redact(url)
            ),
        ))
    }
}

/// Whether `url`'s host is a loopback address or `localhost`.
pub(crate) fn is_loopback_url(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A `*_ms` key: unset takes `default`, zero is refused.
pub(crate) fn positive_ms(
    key: &str,
    v: Option<u64>,
    default: u64,
) -> Result<Duration, ConfigError> {
    match v {
        Some(0) => Err(ConfigError::invalid(key, "must be greater than 0")),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Ok(Duration::from_millis(default)),
    }
}

/// A `*_seconds` key: unset takes `default`, zero is refused with `problem`.
pub(crate) fn positive_secs(
    key: &str,
    v: Option<u64>,
    default: Duration,
    problem: &str,
) -> Result<Duration, ConfigError> {
    match v {
        Some(0) => Err(ConfigError::invalid(key, problem)),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Ok(default),
    }
}
