//! Per-client-IP rate limiting (GCRA, via `governor`) with `X-RateLimit-*` headers on every
//! answer and `Retry-After` on 429.
//!
//! `X-RateLimit-Limit` is the burst (requests allowed back to back), `X-RateLimit-Remaining`
//! what is left of it now, `X-RateLimit-Reset` the seconds until it is whole again. GCRA has no
//! fixed windows, so "reset" is when the bucket refills, not a window boundary.

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
    trust_forwarded_for: bool,
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
    /// turns the limiter off.
    pub fn new(per_minute: u32, burst: u32, trust_forwarded_for: bool) -> Self {
        let Some(rate) = NonZeroU32::new(per_minute) else {
            return Self {
                inner: None,
                burst: 0,
                per_cell: Duration::ZERO,
                trust_forwarded_for,
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
            trust_forwarded_for,
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

    /// The client IP of a request: the socket's, or the first `X-Forwarded-For` entry when
    /// configured to trust a proxy.
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
        if self.trust_forwarded_for {
            if let Some(ip) = headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
            {
                return ip;
            }
        }
        peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited_with_a_wait() {
        let l = IpRateLimiter::new(60, 3, false);
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
        let l = IpRateLimiter::new(0, 0, false);
        assert_eq!(l.check("10.0.0.1".parse().unwrap()), Verdict::Off);
    }

    #[test]
    fn forwarded_for_only_when_trusted() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.1"),
        );
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            IpRateLimiter::new(1, 1, true).client_ip(&h, Some(peer)),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            IpRateLimiter::new(1, 1, false).client_ip(&h, Some(peer)),
            peer.ip()
        );
    }
}
