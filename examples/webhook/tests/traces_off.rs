//! Without an OTLP endpoint nothing of OpenTelemetry runs: no layer installed, no span
//! context stored with queued messages, no `traceparent` sent downstream (even when the caller
//! sent one). Its own test binary: the subscriber is process-global.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use common::*;
use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::json;
use steadfast_dlq::{Filter, MemoryQueue, Page, Queue, State as MessageState};
use steadfast_webhook::assemble::App;
use steadfast_webhook::config::{Config, Overrides};
use steadfast_webhook::ingest::Ingestor;
use steadfast_webhook::payload;
use steadfast_webhook::telemetry;

/// The headers the fake downstream was called with.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

async fn downstream(State(seen): State<Seen>, headers: HeaderMap) -> String {
    seen.lock().push(headers);
    json!({"reply": "untraced"}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_traced_stored_or_sent() {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let down_url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/jobs", post(downstream))
        .with_state(seen.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let toml = format!(
        r#"
[whatsapp]
app_secret = "{SECRET}"
verify_token = "{VERIFY_TOKEN}"
[storage]
backend = "memory"
[worker]
poll_interval_ms = 20
[[services]]
name = "jobs"
endpoints = ["{down_url}/jobs"]
[routing]
default_service = "jobs"
"#
    );
    let config = Config::from_toml(&toml, &HashMap::new(), &Overrides::default()).unwrap();
    assert_eq!(config.telemetry.traces_endpoint, None);
    let guard = telemetry::init(&config.telemetry).unwrap();
    assert!(!guard.exporting());
    assert!(!telemetry::enabled(), "no OpenTelemetry layer");
    let app = App::build(config).await.unwrap();
    let router = app.router();

    let mut request = signed(&text_batch("off", 1, "hello"));
    request.headers_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let (status, _, _) = send(&router, request).await;
    assert_eq!(status, StatusCode::OK);
    eventually("the downstream was called", async || {
        !seen.lock().is_empty()
    })
    .await;

    let headers = seen.lock()[0].clone();
    assert!(headers.get("traceparent").is_none(), "{headers:?}");
    assert!(headers.get("tracestate").is_none());
    app.shutdown().await;

    // What ingestion stores, on a queue no worker drains: no carrier, even inside a span.
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::new());
    let ingestor = Ingestor::new(queue.clone(), "inbound", None, None);
    let delivery = payload::parse(&text_batch("off-stored", 2, "hi")).unwrap();
    let _request = tracing::info_span!("request").entered();
    let report = ingestor.ingest(&delivery, "corr-off").await.unwrap();
    assert_eq!(report.accepted, 2);
    let queued = queue
        .list(
            &Filter::in_state(MessageState::Pending),
            Page {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(queued.len(), 2);
    assert!(
        queued.iter().all(|m| m.trace_context.is_none()),
        "{queued:?}"
    );
}
