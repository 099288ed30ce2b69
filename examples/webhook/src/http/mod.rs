//! The HTTP surface: routes and middleware.

pub mod health;
pub mod middleware;
pub mod webhook;

use axum::Router;
use axum::routing::get;

use crate::app::AppState;

/// The full router: `/webhook`, `/health`, `/metrics` and (when a token is set) `/admin`.
pub fn router(state: AppState) -> Router {
    let webhook = Router::new()
        .route("/webhook", get(webhook::verify).post(webhook::receive))
        .route_layer(axum::middleware::from_fn_with_state(
            state.limiter.clone(),
            crate::ratelimit::middleware,
        ));
    let app = if state.config.ingest_enabled {
        Router::new().merge(webhook)
    } else {
        Router::new()
    };
    let mut app = app
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics));
    if let Some(admin) = crate::admin::router(&state) {
        app = app.nest("/admin", admin);
    }
    app.with_state(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state.config.http.request_timeout,
            middleware::timeout,
        ))
        .layer(axum::middleware::from_fn(middleware::header_limit))
        .layer(axum::middleware::from_fn(middleware::request_metrics))
        .layer(axum::middleware::from_fn(crate::telemetry::middleware))
}
