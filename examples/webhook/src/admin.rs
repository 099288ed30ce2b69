//! The admin API, behind `Authorization: Bearer <ADMIN_TOKEN>` (401 without it), or the
//! console's session cookie (see [`steadfast_service_kit::admin::guard`]; a state-changing request on the
//! cookie must also carry `X-Steadfast-CSRF`, else 403). Disabled (routes absent) when no
//! token is configured. Stats, dead letters, breakers and sagas are the kit's shared endpoints.
//!
//! - `GET /admin/stats`: queue depth by state (last reading, one sample a minute over the last
//!   hour), throughput, breakers open; from memory (the background checks), no store query
//! - `GET /admin/dlq?state=dead&error_kind=&since=&until=&limit=&after=`: list (paged by id)
//! - `GET /admin/dlq/{id}`, `DELETE /admin/dlq/{id}`, `POST /admin/dlq/{id}/replay` (dead or
//!   retrying), `POST /admin/dlq/{id}/run-now` (retrying: due now, attempts kept)
//! - `POST /admin/dlq/replay` (bulk, same filters), `POST /admin/dlq/purge` (same filters)
//! - `GET /admin/breakers`, `POST /admin/breakers/{name}/{open|close|reset}`
//! - `GET /admin/registry`, `GET /admin/conversations/{wa_id}`
//! - `GET /admin/sagas?state=failed&limit=`, `GET /admin/sagas/{id}`,
//!   `POST /admin/sagas/{id}/retry`, `POST /admin/sagas/{id}/resolve?note=` (reply-action
//!   sagas; `{id}` is the saga id, `/` as `%2F`, or just the message's `wamid`)

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::json;
use steadfast_service_kit::admin::{
    AdminApi, BreakerSource, DeadLetters, NamedBreaker, Sagas, guard,
};

use crate::app::AppState;
use crate::problem::Problem;

/// The admin routes, or `None` when no admin token is configured: the kit's shared endpoints
/// ([`steadfast_service_kit::admin`]: stats, dead letters, breakers, sagas) and the webhook's
/// own (registry, conversations), behind the kit's token check.
pub fn router(state: &AppState) -> Option<Router<AppState>> {
    let token = state.config.admin_token.clone()?;
    let mut api = AdminApi::new(token).dead_letters(DeadLetters::new(
        state.ingestor.queue().clone(),
        state.config.storage.queue_name.clone(),
    ));
    let checks = state.checks.clone();
    api = api.queue_history(Arc::new(move || checks.history()));
    if let Some(services) = &state.services {
        api = api
            .breakers(Arc::new(WorkerBreakers(services.clone())))
            .sagas(Sagas::new(services.actions.operator().clone()).id_parser(Arc::new(saga_id)));
    }
    Some(
        api.routes()
            .route("/registry", get(registry))
            .route("/conversations/{wa_id}", get(conversation))
            .route_layer(axum::middleware::from_fn_with_state(
                api.guard(),
                guard::require,
            )),
    )
}

/// The worker side's breakers (the Graph API's, Redis's, every endpoint's).
struct WorkerBreakers(Arc<crate::worker::Services>);

impl BreakerSource for WorkerBreakers {
    fn breakers(&self) -> Vec<NamedBreaker> {
        self.0
            .all_breakers()
            .into_iter()
            .map(|b| NamedBreaker {
                name: b.name,
                service: b.service,
                breaker: b.breaker,
            })
            .collect()
    }

    fn changed(&self) {
        self.0.refresh_gauges();
    }
}

/// A saga id from the path: the id itself (`reply-actions/<wamid>`, the `/` sent as `%2F`),
/// or a message's `wamid`, whose reply-actions saga is meant.
fn saga_id(id: &str) -> Result<steadfast_saga::SagaId, steadfast_saga::Error> {
    if id.contains('/') {
        steadfast_saga::SagaId::new(id)
    } else {
        steadfast_saga::SagaId::derive(crate::actions::SAGA_NAME, id)
    }
}

/// 503 for a store error. The driver's text (hosts, users, SQL) goes to the log only.
fn unavailable(store: &'static str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(store, error = %error, "admin: store error");
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .detail(format!("{store} store unavailable; retry later"))
        .into_response()
}

fn no_worker_side() -> Response {
    Problem::new(StatusCode::NOT_FOUND)
        .detail("this process does not run the worker side")
        .into_response()
}

async fn registry(State(app): State<AppState>) -> Response {
    let Some(s) = &app.services else {
        return no_worker_side();
    };
    Json(s.registry.report()).into_response()
}

async fn conversation(State(app): State<AppState>, Path(wa_id): Path<String>) -> Response {
    let Some(s) = &app.services else {
        return no_worker_side();
    };
    match s.conversations.load(&wa_id).await {
        Ok(Some(c)) => Json(json!({
            "wa_id": wa_id,
            "state": crate::worker::conversation::state_name(c.state()),
            "version": c.version(),
            "entered_at": c.entered_at(),
            "context": c.context(),
            "history": c.history(),
        }))
        .into_response(),
        Ok(None) => Problem::new(StatusCode::NOT_FOUND)
            .detail("no conversation for this sender")
            .into_response(),
        Err(e) => unavailable("conversation", &e),
    }
}
