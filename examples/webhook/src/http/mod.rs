//! The HTTP surface: routes and middleware, and the server that runs them.

pub mod health;
pub mod middleware;
pub mod webhook;

pub use steadfast_service_kit::http::server;

use axum::Router;
use axum::routing::get;

use crate::app::AppState;
use crate::config::HttpConfig;

/// The full router: `/webhook`, `/health`, `/metrics` and (when a token is set) `/admin` and
/// the console (`/admin/ui`), all
/// on one listener (`ops_listen` unset; in-process tests).
pub fn router(state: AppState) -> Router {
    let routes = webhook_routes(&state)
        .merge(health_routes())
        .merge(ops_routes(&state));
    finish(routes, state)
}

/// The public listener's router when `ops_listen` is set: `/webhook` and `/health` (for load
/// balancers); `/metrics` and `/admin` are 404 here.
pub fn public_router(state: AppState) -> Router {
    let routes = webhook_routes(&state).merge(health_routes());
    finish(routes, state)
}

/// The ops listener's router (`ops_listen`): `/health`, `/metrics`, `/admin` and the console.
pub fn ops_router(state: AppState) -> Router {
    let routes = health_routes().merge(ops_routes(&state));
    finish(routes, state)
}

fn webhook_routes(state: &AppState) -> Router<AppState> {
    if !state.config.ingest_enabled {
        return Router::new();
    }
    Router::new()
        .route("/webhook", get(webhook::verify).post(webhook::receive))
        .route_layer(axum::middleware::from_fn_with_state(
            state.limiter.clone(),
            crate::ratelimit::middleware,
        ))
}

fn health_routes() -> Router<AppState> {
    Router::new().route("/health", get(health::health))
}

fn ops_routes(state: &AppState) -> Router<AppState> {
    let app = Router::new().route("/metrics", get(health::metrics));
    match (crate::admin::router(state), crate::console::router(state)) {
        (Some(admin), Some(console)) => app.nest("/admin", admin).merge(console),
        (Some(admin), None) => app.nest("/admin", admin),
        _ => app,
    }
}

/// The middleware every listener shares.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .with_state(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state.config.http.request_timeout,
            middleware::timeout,
        ))
        .layer(axum::middleware::from_fn(middleware::header_limit))
        .layer(axum::middleware::from_fn(middleware::request_metrics))
        .layer(axum::middleware::from_fn(crate::telemetry::middleware))
}

/// The connection limits of the `[http]` configuration, for [`server::serve`].
pub fn limits(http: &HttpConfig) -> server::Limits {
    server::Limits {
        max_connections: http.max_connections,
        header_read_timeout: http.header_read_timeout,
        keep_alive_timeout: http.keep_alive_timeout,
    }
}
