//! The request middleware: correlation id, the request's span (an OpenTelemetry server span
//! continuing the caller's `traceparent` when traces are on).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use tracing::Instrument;
use tracing::field::Empty;

use super::{CorrelationId, REQUEST_ID, accept_request_id, logged_path, method_label};

/// Middleware: picks the correlation id, runs the request in a span carrying it, echoes it.
///
/// The span (`request`) carries `correlation_id`, `http.request.method`, `url.path` (bounded),
/// `http.route` (the matched template, when the middleware is mounted with `Router::layer`)
/// and `http.response.status_code`. With traces on it is also a server span named
/// `"{method} {route}"`, whose parent is the caller's `traceparent` when it sent a valid one.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = accept_request_id(request.headers().get(REQUEST_ID))
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    request.extensions_mut().insert(CorrelationId(id.clone()));
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        correlation_id = %id,
        // The method as its metric label and the path bounded: both come from the caller.
        http.request.method = method,
        url.path = %logged_path(request.uri().path()),
        http.route = route.as_deref(),
        http.response.status_code = Empty,
        otel.name = Empty,
        otel.kind = Empty,
        otel.status_code = Empty,
    );
    if super::otel::enabled() {
        span.record("otel.kind", "server");
        match &route {
            Some(r) => span.record("otel.name", format!("{method} {r}")),
            None => span.record("otel.name", method),
        };
        let parent = super::propagation::extract(request.headers());
        if opentelemetry::trace::TraceContextExt::span(&parent)
            .span_context()
            .is_valid()
        {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let _ = span.set_parent(parent);
        }
    }
    let mut res = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", res.status().as_u16());
    // The conventions: a server span is an error on 5xx only (a 4xx is the caller's).
    if res.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}
