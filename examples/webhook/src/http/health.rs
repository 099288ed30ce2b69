//! `GET /health` and `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::checks::Status;

/// `GET /health`: 200 `{"status":"ok"|"degraded","checks":{...}}`; 503 when the queue store
/// is down (ingestion cannot accept anything). A down Redis only degrades: de-duplication
/// fails open onto the queue's own key.
///
/// Served from the last background check ([`crate::checks`]): no request touches a store, and
/// each check says only `ok` or `down` (the error detail is in the log).
pub async fn health(State(app): State<AppState>) -> Response {
    let snapshot = app.checks.current();
    let mut checks = serde_json::Map::new();
    checks.insert(
        "queue".into(),
        json!({"status": snapshot.queue, "store": app.store_kind}),
    );
    let mut degraded = false;
    if let Some(status) = snapshot.dedup {
        // Redis fronts Postgres only; memory and SQLite use the in-process fast path.
        let store = if app.store_kind == "postgres" {
            "redis"
        } else {
            "memory"
        };
        let mut check = json!({"status": status, "store": store});
        if status != Status::Ok {
            degraded = true;
            check["fail_open"] = json!(true);
        }
        checks.insert("dedup".into(), check);
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
    let (status, word) = match (snapshot.queue == Status::Ok, degraded) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, Status::Down),
        (true, true) => (StatusCode::OK, Status::Degraded),
        (true, false) => (StatusCode::OK, Status::Ok),
    };
    (
        status,
        Json(json!({
            "status": word,
            "demo": app.config.is_demo(),
            "checked_at": snapshot.checked_at,
            "checks": checks,
        })),
    )
        .into_response()
}

/// `GET /metrics`: Prometheus text exposition. The queue gauges come from the background
/// checks; only in-memory state (breakers) is read here.
pub async fn metrics(State(app): State<AppState>) -> Response {
    app.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
