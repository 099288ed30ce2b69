//! The HTTP surface: routes and middleware. The server that runs them is the kit's
//! hardened hyper server ([`steadfast_service_kit::http::server`]).

pub mod auth;
pub mod callback;
pub mod ops;
pub mod v1;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response;
use axum::routing::{get, post};
use steadfast_idempotency::Idempotency;
use steadfast_idempotency::http::IdempotencyLayer;

use crate::app::AppState;
use auth::Token;

/// Routes beyond the contract.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    /// Mount `POST /bench/transfers`: the same transfer as `/v1/transfers` (same token) but
    /// without the idempotency layer, so `scripts/bench-payments` can measure the layer's
    /// cost. Off unless the binary gets `--bench-route`; not part of the API.
    pub bench_route: bool,
}

/// The full router: `/v1` (API token), `/admin` and the console at `/admin/ui` (admin
/// token), `/momo/callback`, `/health`, `/metrics`.
pub fn router(state: AppState, idempotency: Idempotency, extras: Extras) -> Router {
    let api_token = Token(Arc::from(state.config.api_token.expose().as_bytes()));
    // Layers run outside-in in reverse order of `.layer` calls: the token check first, then
    // the idempotency layer (required keys, scoped per token), then the handler.
    let v1 = Router::new()
        .route("/accounts/{id}", get(v1::account))
        .route("/transfers", post(v1::transfer))
        .route("/payouts", post(v1::create_payout))
        .route("/payouts/{id}", get(v1::payout))
        .layer(IdempotencyLayer::new(idempotency).scope(|parts| auth::scope(&parts.headers)))
        .layer(from_fn_with_state(api_token.clone(), auth::require));
    let admin = crate::admin::router(&state);
    let console = crate::console::console(&state, admin.clone());
    let mut app = Router::new()
        .nest("/v1", v1)
        .nest("/admin", admin)
        .merge(console.router())
        .route("/momo/callback", post(callback::receive))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics));
    if extras.bench_route {
        app = app.route(
            "/bench/transfers",
            post(v1::transfer).layer(from_fn_with_state(api_token, auth::require)),
        );
    }
    app.with_state(state)
        .layer(from_fn(count_requests))
        // Correlation id and the request's (server) span, continuing a caller's traceparent.
        .layer(from_fn(steadfast_service_kit::telemetry::middleware))
}

async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let res = next.run(request).await;
    metrics::counter!(
        crate::metrics::HTTP_REQUESTS,
        "route" => route,
        "status" => res.status().as_u16().to_string()
    )
    .increment(1);
    res
}
