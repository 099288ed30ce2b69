//! Per-client-IP rate limiting (GCRA, via `governor`) with `X-RateLimit-*` headers on every
//! answer and `Retry-After` on 429.
//!
//! `X-RateLimit-Limit` is the burst (requests allowed back to back), `X-RateLimit-Remaining`
//! what is left of it now, `X-RateLimit-Reset` the seconds until it is whole again. GCRA has no
//! fixed windows, so "reset" is when the bucket refills, not a window boundary.
//!
//! Behind proxies, the client is read from `X-Forwarded-For` counting from the RIGHT: each
//! proxy appends the address it received the request from, so only the last `hops` entries
//! were written by proxies we trust; everything left of them was sent by the client and may be
//! made up. Taking the leftmost entry would let one client rotate that value to escape its
//! limit, or name Meta's addresses to get them limited.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::problem::Problem;

type Keyed =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

/// A keyed GCRA limiter. Cheap to clone.
#[derive(Clone)]
pub struct IpRateLimiter {
    inner: Option<Arc<Keyed>>,
    burst: u32,
    per_cell: Duration,
    proxy_hops: Option<usize>,
}

impl std::fmt::Debug for IpRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpRateLimiter")
            .field("enabled", &self.inner.is_some())
            .field("burst", &self.burst)
            .finish()
    }
}

/// The limiter's verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; `remaining` of `limit` left, whole again in `reset`.
    Allowed {
        /// The burst.
        limit: u32,
        /// What is left.
        remaining: u32,
        /// Until the bucket is full again.
        reset: Duration,
    },
    /// Refused; the next request is allowed after `retry_after`.
    Limited {
        /// The burst.
        limit: u32,
        /// Until one request is allowed again.
        retry_after: Duration,
    },
    /// The limit is off.
    Off,
}

impl IpRateLimiter {
    /// `per_minute` requests per minute per IP with `burst` back to back; `per_minute == 0`
    /// turns the limiter off. `proxy_hops`: `None` keys by the socket's address; `Some(n)`
    /// trusts `n` proxies in front of the service (see [`IpRateLimiter::client_ip`]).
    pub fn new(per_minute: u32, burst: u32, proxy_hops: Option<usize>) -> Self {
        let Some(rate) = NonZeroU32::new(per_minute) else {
            return Self {
                inner: None,
                burst: 0,
                per_cell: Duration::ZERO,
                proxy_hops,
            };
        };
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        let quota = Quota::per_minute(rate).allow_burst(burst);
        Self {
            inner: Some(Arc::new(
                RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            )),
            burst: burst.get(),
            per_cell: quota.replenish_interval(),
            proxy_hops,
        }
    }

    /// Checks (and counts) one request from `ip`.
    pub fn check(&self, ip: IpAddr) -> Verdict {
        let Some(limiter) = &self.inner else {
            return Verdict::Off;
        };
        match limiter.check_key(&ip) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Verdict::Allowed {
                    limit: self.burst,
                    remaining,
                    reset: self.per_cell * (self.burst - remaining.min(self.burst)),
                }
            }
            Err(not_until) => Verdict::Limited {
                limit: self.burst,
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            },
        }
    }

    /// Forgets IPs whose buckets are full again (keeps memory bounded); run periodically.
    pub fn retain_recent(&self) {
        if let Some(l) = &self.inner {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// The client IP of a request. Without trusted proxies: the socket's address. With
    /// `hops` trusted proxies: the `X-Forwarded-For` entry `hops` places from the right (all
    /// `X-Forwarded-For` headers read in order, as one list), which the outermost trusted
    /// proxy wrote. When the list is shorter than that, or that entry is not an IP address,
    /// the socket's address is used: the request did not come through the proxies as
    /// configured, and nothing the client wrote is trusted.
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
        let socket = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
        let Some(hops) = self.proxy_hops.filter(|h| *h > 0) else {
            return socket;
        };
        let mut entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect::<Vec<_>>();
        if entries.len() < hops {
            return socket;
        }
        let entry = entries.swap_remove(entries.len() - hops);
        parse_forwarded_ip(entry).unwrap_or(socket)
    }
}

/// An `X-Forwarded-For` entry: an IP address, possibly with a port (`1.2.3.4:5678`,
/// `[::1]:80`) as some proxies write it.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    entry.parse::<SocketAddr>().ok().map(|s| s.ip())
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn set(headers: &mut HeaderMap, name: &'static str, value: u64) {
    headers.insert(name, HeaderValue::from(value));
}

/// Axum middleware: refuse with 429 over the limit; add the headers to every answer.
pub async fn middleware(
    State(limiter): State<IpRateLimiter>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ip = limiter.client_ip(request.headers(), peer);
    match limiter.check(ip) {
        Verdict::Off => next.run(request).await,
        Verdict::Allowed {
            limit,
            remaining,
            reset,
        } => {
            let mut res = next.run(request).await;
            let h = res.headers_mut();
            set(h, "x-ratelimit-limit", u64::from(limit));
            set(h, "x-ratelimit-remaining", u64::from(remaining));
            set(h, "x-ratelimit-reset", secs_ceil(reset));
            res
        }
        Verdict::Limited { limit, retry_after } => {
            metrics::counter!(crate::metrics::RATE_LIMITED).increment(1);
            tracing::warn!(client_ip = %ip, "rate limited");
            let wait = secs_ceil(retry_after).max(1);
            let mut res = Problem::new(StatusCode::TOO_MANY_REQUESTS)
                .detail(format!(
                    "more than {limit} requests from this client; retry in {wait} s"
                ))
                .into_response();
            let h = res.headers_mut();
            set(h, "retry-after", wait);
            set(h, "x-ratelimit-limit", u64::from(limit));
            set(h, "x-ratelimit-remaining", 0);
            set(h, "x-ratelimit-reset", wait);
            res
        }
    }
}

/// A service's `[rate_limit]` table as written in the file, before validation.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// `per_minute`; the service's default when unset; 0 turns the limit off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    /// `burst`: requests allowed back to back; default `per_minute`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// The validated per-client-IP limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Requests per minute per client IP; 0 turns the limit off.
    pub per_minute: u32,
    /// Requests allowed back to back (GCRA burst). Defaults to `per_minute`.
    pub burst: u32,
}

impl RateLimitConfig {
    /// `raw` validated, with `default_per_minute` for an unset `per_minute` (each service
    /// has its own: the webhook 300, the payments callback 100).
    pub fn resolve(
        raw: RawRateLimit,
        default_per_minute: u32,
    ) -> Result<Self, crate::config::ConfigError> {
        let per_minute = raw.per_minute.unwrap_or(default_per_minute);
        let burst = raw.burst.unwrap_or(per_minute);
        if per_minute > 0 && burst == 0 {
            return Err(crate::config::ConfigError::invalid(
                "rate_limit.burst",
                "must be greater than 0 when the limit is on",
            ));
        }
        Ok(Self { per_minute, burst })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited_with_a_wait() {
        let l = IpRateLimiter::new(60, 3, None);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let remaining: Vec<u32> = (0..3)
            .map(|_| match l.check(ip) {
                Verdict::Allowed { remaining, .. } => remaining,
                v => panic!("{v:?}"),
            })
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        match l.check(ip) {
            Verdict::Limited { limit, retry_after } => {
                assert_eq!(limit, 3);
                assert!(retry_after <= Duration::from_secs(1));
            }
            v => panic!("{v:?}"),
        }
        // another client has its own bucket
        assert!(matches!(
            l.check("10.0.0.2".parse().unwrap()),
            Verdict::Allowed { remaining: 2, .. }
        ));
    }

    #[test]
    fn zero_turns_it_off() {
        let l = IpRateLimiter::new(0, 0, None);
        assert_eq!(l.check("10.0.0.1".parse().unwrap()), Verdict::Off);
    }

    fn xff(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_only_when_trusted() {
        let h = xff(&["203.0.113.9, 10.0.0.1"]);
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        // One proxy appended the address it saw: the rightmost entry.
        assert_eq!(
            IpRateLimiter::new(1, 1, Some(1)).client_ip(&h, Some(peer)),
            ip("10.0.0.1")
        );
        assert_eq!(
            IpRateLimiter::new(1, 1, Some(2)).client_ip(&h, Some(peer)),
            ip("203.0.113.9")
        );
        assert_eq!(
            IpRateLimiter::new(1, 1, None).client_ip(&h, Some(peer)),
            peer.ip()
        );
    }

    #[test]
    fn a_client_rotating_its_own_forwarded_for_stays_one_client() {
        // The client sends a made-up X-Forwarded-For; the trusted proxy appends the real
        // address. Whatever the client writes, the key is the proxy's entry.
        let l = IpRateLimiter::new(60, 2, Some(1));
        let peer: SocketAddr = "10.1.1.1:443".parse().unwrap();
        for fake in ["1.1.1.1", "2.2.2.2", "3.3.3.3", "31.13.24.1"] {
            let h: HeaderMap = [(
                http::header::HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(&format!("{fake}, 198.51.100.7")).unwrap(),
            )]
            .into_iter()
            .collect();
            assert_eq!(l.client_ip(&h, Some(peer)), ip("198.51.100.7"));
        }
        let h = xff(&["1.1.1.1, 198.51.100.7"]);
        let key = l.client_ip(&h, Some(peer));
        assert!(matches!(l.check(key), Verdict::Allowed { .. }));
        assert!(matches!(l.check(key), Verdict::Allowed { .. }));
        let h = xff(&["9.9.9.9, 198.51.100.7"]);
        assert!(matches!(
            l.check(l.client_ip(&h, Some(peer))),
            Verdict::Limited { .. }
        ));
    }

    #[test]
    fn several_headers_ports_and_short_or_bad_lists() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let two = IpRateLimiter::new(1, 1, Some(2));
        // Two headers are one list, in order.
        let h = xff(&["203.0.113.1", "198.51.100.2, 192.0.2.3"]);
        assert_eq!(two.client_ip(&h, Some(peer)), ip("198.51.100.2"));
        // Entries with ports, IPv6 in brackets.
        let one = IpRateLimiter::new(1, 1, Some(1));
        assert_eq!(
            one.client_ip(&xff(&["198.51.100.2:1234"]), Some(peer)),
            ip("198.51.100.2")
        );
        assert_eq!(
            one.client_ip(&xff(&["[2001:db8::1]:80"]), Some(peer)),
            ip("2001:db8::1")
        );
        // Fewer entries than trusted hops, garbage, or no header: the socket's address.
        assert_eq!(two.client_ip(&xff(&["203.0.113.1"]), Some(peer)), peer.ip());
        assert_eq!(one.client_ip(&xff(&["not-an-ip"]), Some(peer)), peer.ip());
        assert_eq!(one.client_ip(&xff(&[" , "]), Some(peer)), peer.ip());
        assert_eq!(one.client_ip(&HeaderMap::new(), Some(peer)), peer.ip());
    }
}
