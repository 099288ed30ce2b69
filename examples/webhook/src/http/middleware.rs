//! Cross-cutting middleware: request metrics and the 408 request timeout.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::metrics as m;
use crate::problem::Problem;

/// Counts requests by route template, method and status, and records latency.
pub async fn request_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let res = next.run(request).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!(m::HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(m::HTTP_DURATION, "route" => route).record(start.elapsed());
    res
}

/// Answers 408 (problem+json) when the request takes longer than the configured timeout.
/// A delivery cut short is retried by Meta and de-duplicated by its message ids.
pub async fn timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out");
            Problem::new(StatusCode::REQUEST_TIMEOUT)
                .detail(format!(
                    "request not completed within {} ms",
                    limit.as_millis()
                ))
                .into_response()
        }
    }
}
