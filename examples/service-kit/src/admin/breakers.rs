//! `GET /breakers` and `POST /breakers/{name}/{open|close|reset}` over a service's breakers.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use steadfast_circuit_breaker::CircuitBreaker;

use super::{bad_request, not_found};

/// A breaker and what it guards.
#[derive(Debug, Clone)]
pub struct NamedBreaker {
    /// Its name (`momo-provider`, `jobs@10.0.0.7:8080`).
    pub name: String,
    /// The service, for an endpoint's breaker: an action on the service's name acts on every
    /// endpoint breaker of it.
    pub service: Option<String>,
    /// The breaker (state, metrics, manual control).
    pub breaker: CircuitBreaker,
}

/// Where a service's breakers are listed.
pub trait BreakerSource: Send + Sync + 'static {
    /// Every breaker, in the order to show them.
    fn breakers(&self) -> Vec<NamedBreaker>;

    /// Called after a manual change (to refresh gauges, say).
    fn changed(&self) {}
}

/// A fixed set of breakers is a source.
impl BreakerSource for Vec<NamedBreaker> {
    fn breakers(&self) -> Vec<NamedBreaker> {
        self.clone()
    }
}

type Source = Arc<dyn BreakerSource>;

pub(super) fn routes<S: Clone + Send + Sync + 'static>(source: Source) -> Router<S> {
    Router::new()
        .route("/breakers", get(list))
        .route("/breakers/{name}/{action}", post(action))
        .with_state(source)
}

async fn list(State(source): State<Source>) -> Response {
    let list: Vec<_> = source
        .breakers()
        .into_iter()
        .map(|b| {
            let mut m = serde_json::to_value(b.breaker.metrics()).unwrap_or_default();
            m["name"] = json!(b.name);
            m["service"] = json!(b.service);
            m
        })
        .collect();
    Json(json!({"breakers": list})).into_response()
}

async fn action(
    State(source): State<Source>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let targets: Vec<_> = source
        .breakers()
        .into_iter()
        .filter(|b| b.name == name || b.service.as_deref() == Some(name.as_str()))
        .collect();
    if targets.is_empty() {
        return not_found(format!("no breaker or service named {name:?}"));
    }
    for b in targets.iter().map(|t| &t.breaker) {
        match action.as_str() {
            "open" => b.force_open(),
            "close" => b.transition_to_closed(),
            "reset" => b.reset(),
            other => {
                return bad_request(format!("unknown action {other:?}: open, close or reset"));
            }
        }
    }
    tracing::warn!(breaker = %name, action = %action, count = targets.len(), "admin: breaker changed by hand");
    source.changed();
    let states: Vec<_> = targets
        .iter()
        .map(|b| json!({"name": b.name, "state": b.breaker.state().as_str()}))
        .collect();
    Json(json!({"breakers": states})).into_response()
}
