//! `GET /health` and `GET /metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde_json::{Value, json};

use crate::app::AppState;

/// How long each dependency check may take. The checks run concurrently, so `/health` answers
/// within about this long even when a store stalls: load balancers and operators typically
/// give a probe one or two seconds, and a health check that hangs hides the outage it
/// should report.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

async fn probe<F, T, E>(f: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(PROBE_TIMEOUT, f).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// `GET /health`: 200 `{"status":"ok"|"degraded","checks":{...}}`; 503 when the queue store
/// is down (ingestion cannot accept anything). A down Redis only degrades: de-duplication
/// fails open onto the queue's own key.
pub async fn health(State(app): State<AppState>) -> Response {
    let mut checks = serde_json::Map::new();
    // A primary-key lookup of an id that cannot exist: cheap, and it needs the store.
    let queue = probe(app.ingestor.queue().get(steadfast_dlq::MessageId::new()));
    let dedup = async {
        match app.ingestor.dedup() {
            Some(d) => Some(probe(d.seen("health-probe")).await),
            None => None,
        }
    };
    let (queue, dedup) = tokio::join!(queue, dedup);
    let queue_ok = queue.is_ok();
    checks.insert(
        "queue".into(),
        match queue {
            Ok(()) => json!({"status": "ok", "store": app.store_kind}),
            Err(e) => json!({"status": "down", "store": app.store_kind, "error": e}),
        },
    );
    let mut degraded = false;
    if let Some(r) = dedup {
        degraded |= r.is_err();
        let store = if app.store_kind == "memory" {
            "memory"
        } else {
            "redis"
        };
        checks.insert(
            "dedup".into(),
            match r {
                Ok(()) => json!({"status": "ok", "store": store}),
                Err(e) => {
                    json!({"status": "down", "store": store, "fail_open": true, "error": e})
                }
            },
        );
    } else {
        checks.insert(
            "dedup".into(),
            json!({"status": "ok", "store": "queue key only"}),
        );
    }
    for (name, check) in app.extra_health().await {
        if check.get("status").and_then(Value::as_str) != Some("ok") {
            degraded = true;
        }
        checks.insert(name, check);
    }
    let (status, word) = match (queue_ok, degraded) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "down"),
        (true, true) => (StatusCode::OK, "degraded"),
        (true, false) => (StatusCode::OK, "ok"),
    };
    (
        status,
        Json(json!({"status": word, "demo": app.config.is_demo(), "checks": checks})),
    )
        .into_response()
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(app): State<AppState>) -> Response {
    app.refresh_gauges().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
