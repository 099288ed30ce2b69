//! `GET /stats`: the queue's recent statistics and the breakers open, all from memory.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{BreakerSource, HistorySource};

#[derive(Clone)]
struct Stats {
    queue: String,
    history: HistorySource,
    breakers: Option<Arc<dyn BreakerSource>>,
}

pub(super) fn routes<S: Clone + Send + Sync + 'static>(
    queue: String,
    history: HistorySource,
    breakers: Option<Arc<dyn BreakerSource>>,
) -> Router<S> {
    Router::new().route("/stats", get(stats)).with_state(Stats {
        queue,
        history,
        breakers,
    })
}

async fn stats(State(s): State<Stats>) -> Response {
    let history = (s.history)();
    let open: Vec<String> = s
        .breakers
        .as_ref()
        .map(|b| {
            b.breakers()
                .into_iter()
                .filter(|b| {
                    use steadfast_circuit_breaker::State as B;
                    matches!(b.breaker.state(), B::Open | B::HalfOpen | B::ForcedOpen)
                })
                .map(|b| b.name)
                .collect()
        })
        .unwrap_or_default();
    Json(json!({
        "queue": s.queue,
        "latest": history.latest(),
        "throughput_per_minute": history.throughput_per_minute(),
        "samples": history.samples().collect::<Vec<_>>(),
        "breakers_open": open,
    }))
    .into_response()
}
