//! `POST /momo/callback`: the checks in the contract's order, then one durable write.
//!
//! 1. the client IP (the peer, or `X-Forwarded-For` read `momo.trusted_proxy_hops` from the
//!    right) must be in `momo.allowed_ips`, else 403, logged as an unauthorized IP without
//!    the body;
//! 2. `X-Signature` must be the hex HMAC-SHA256 of the raw body, else 401;
//! 3. the per-IP rate limit, else 429 with `Retry-After` and `X-RateLimit-*`;
//! 4. the body must parse, else 400 `{"error":"invalid_payload"}`;
//! 5. the callback is enqueued (dedup key = `transactionId`): 200 `{"status":"success"}`
//!    only once that write is durable; a store error is 503 so the provider retries.
//!
//! The signature is checked before the rate limit so that unsigned floods from an allowed
//! network cannot use up the provider's own budget. No internal detail ever reaches the body.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;
use steadfast_dlq::NewMessage;
use steadfast_service_kit::ratelimit::Verdict;
use tracing::Instrument;

use crate::app::AppState;
use crate::callback::{CALLBACK_QUEUE, Callback};
use crate::signature::HEADER;

/// The largest callback body read (a callback is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

fn counted(outcome: &'static str) {
    metrics::counter!(crate::metrics::CALLBACKS, "outcome" => outcome).increment(1);
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({ "error": code }))).into_response()
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn rate_headers(headers: &mut HeaderMap, limit: u32, remaining: u32, reset: u64) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
}

/// The handler.
pub async fn receive(State(state): State<AppState>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let ip = state.limiter.client_ip(&headers, peer);
    if !state.config.momo.allows(ip) {
        counted("forbidden_ip");
        tracing::warn!(client_ip = %ip, "unauthorized IP on /momo/callback");
        return error(StatusCode::FORBIDDEN, "forbidden");
    }
    // Read only once the IP is allowed: a refused caller's body is never buffered.
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        counted("invalid_payload");
        return error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    };
    if let Err(e) = state
        .signer
        .verify(headers.get(HEADER).map(HeaderValue::as_bytes), &body)
    {
        counted("bad_signature");
        tracing::warn!(client_ip = %ip, reason = e.label(), "callback signature refused");
        return error(StatusCode::UNAUTHORIZED, "invalid_signature");
    }
    let rate = match state.limiter.check(ip) {
        Verdict::Limited { limit, retry_after } => {
            counted("rate_limited");
            let wait = secs_ceil(retry_after).max(1);
            let mut res = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
            res.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(wait));
            rate_headers(res.headers_mut(), limit, 0, wait);
            return res;
        }
        Verdict::Allowed {
            limit,
            remaining,
            reset,
        } => Some((limit, remaining, secs_ceil(reset))),
        Verdict::Off => None,
    };
    let mut res = accept(&state, &body).await;
    if let Some((limit, remaining, reset)) = rate {
        rate_headers(res.headers_mut(), limit, remaining, reset);
    }
    res
}

async fn accept(state: &AppState, body: &[u8]) -> Response {
    let cb = match Callback::parse(body) {
        Ok(cb) => cb,
        Err(e) => {
            counted("invalid_payload");
            tracing::warn!(error = %e, "invalid callback payload");
            return error(StatusCode::BAD_REQUEST, "invalid_payload");
        }
    };
    let payload = match serde_json::to_value(&cb) {
        Ok(v) => v,
        Err(_) => return error(StatusCode::BAD_REQUEST, "invalid_payload"),
    };
    let (span, carrier) =
        steadfast_service_kit::telemetry::send_span(CALLBACK_QUEUE, &cb.transaction_id);
    let mut message = NewMessage::new(CALLBACK_QUEUE, payload)
        .dedup_key(cb.transaction_id.clone())
        .correlation_id(cb.transaction_id.clone());
    if let Some(carrier) = carrier {
        // The callback worker's attempts continue this trace.
        message = message.trace_context(carrier);
    }
    let enqueued = state.queue.enqueue(message).instrument(span.clone()).await;
    if enqueued.is_err() {
        span.record("otel.status_code", "error");
    }
    match enqueued {
        Ok(enqueued) => {
            counted(if enqueued.is_duplicate() {
                "duplicate"
            } else {
                "accepted"
            });
            tracing::info!(transaction_id = %cb.transaction_id, duplicate = enqueued.is_duplicate(), "callback recorded");
            (StatusCode::OK, Json(json!({"status": "success"}))).into_response()
        }
        Err(e) => {
            counted("store_unavailable");
            tracing::error!(error = %e, "callback queue unavailable");
            let mut res = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
            res.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
    }
}
