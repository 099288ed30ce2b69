//! Cross-cutting middleware: request metrics, the header size limit (431) and the 408 request
//! timeout.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::metrics as m;
use crate::problem::Problem;

pub use steadfast_service_kit::telemetry::method_label;

/// The `route` label: the matched route template (`/admin/dlq/{id}`, never the path with its
/// id), or `unmatched`; either way a value from a fixed set.
fn route_label(request: &Request) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned())
}

/// Counts requests by route template, method and status, and records latency. Every label
/// comes from a fixed set, whatever the request carries.
pub async fn request_metrics(request: Request, next: Next) -> Response {
    let route = route_label(&request);
    let method = method_label(request.method());
    let start = Instant::now();
    let res = next.run(request).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!(m::HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(m::HTTP_DURATION, "route" => route).record(start.elapsed());
    res
}

// The most header bytes (names and values) a request may carry: one value for the check
// below and the server's head buffer. Meta's deliveries carry well under 2 KiB; hyper's own
// limit (about 400 KiB, 100 headers) would let a caller make every request hold that much.
// Above it: 431 before anything else runs.
pub use steadfast_service_kit::http::MAX_HEADER_BYTES;

/// Answers 431 (problem+json) when the headers total more than [`MAX_HEADER_BYTES`].
pub async fn header_limit(request: Request, next: Next) -> Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if size > MAX_HEADER_BYTES {
        tracing::warn!(header_bytes = size, "request headers too large");
        return Problem::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            .detail(format!(
                "request headers total {size} bytes; at most {MAX_HEADER_BYTES} are accepted"
            ))
            .into_response();
    }
    next.run(request).await
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

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn app(limit: Duration) -> Router {
        Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route("/fast", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(limit, timeout))
    }

    #[tokio::test(start_paused = true)]
    async fn slow_requests_get_408_problem_json() {
        let res = app(Duration::from_secs(10))
            .oneshot(http::Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            res.headers()[http::header::CONTENT_TYPE],
            crate::problem::CONTENT_TYPE
        );
        let res = app(Duration::from_secs(10))
            .oneshot(http::Request::get("/fast").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
