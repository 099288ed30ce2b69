//! The comparison point for the webhook's throughput: a bare axum handler that reads the whole
//! body and answers 200, with nothing else (no signature check, no store).

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

/// The baseline router: `GET /health` and any `POST` path (reads the body, answers 200 `ok`).
pub fn baseline_router() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(|body: Bytes| async move {
            // Reading the body is the work being compared; its length keeps it from being skipped.
            if body.is_empty() {
                (StatusCode::OK, "empty")
            } else {
                (StatusCode::OK, "ok")
            }
        })
}

/// Serves [`baseline_router`] on `listener` until the process ends.
pub async fn serve_baseline(listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, baseline_router()).await
}
