//! Issue 19's acceptance test: one trace from the POST through the queue to the downstream.
//!
//! The webhook exports to an in-test OTLP/HTTP receiver (protobuf decoded with
//! `opentelemetry-proto`). A signed delivery carrying a caller's `traceparent` holds one
//! message whose downstream answers 503 once, then 200. Asserted: the server span continues
//! the caller's trace; the enqueue ("send") span is its child; both worker attempts are
//! `process` spans of the same trace, children of (and linked to) the send span; each
//! downstream call is a client span under its attempt; the downstream and the Graph API saw a
//! `traceparent` naming that trace and their client span. Its own test binary: the tracer
//! provider and the subscriber are process-global.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use common::*;
use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::json;
use steadfast_service_kit::testing::{OtlpReceiver, Span, SpanKind, attr, hex_id, kind};
use steadfast_webhook::assemble::App;
use steadfast_webhook::config::{Config, Overrides};
use steadfast_webhook::telemetry;

/// The caller's trace: the webhook must continue it.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// `traceparent` headers a fake was called with, and how it answered.
#[derive(Default)]
struct Calls {
    seen: Mutex<Vec<(Option<String>, u16)>>,
    count: AtomicUsize,
}

/// The downstream: 503 on its first call, then a reply.
async fn downstream(State(calls): State<Arc<Calls>>, headers: HeaderMap) -> (StatusCode, String) {
    let tp = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let first = calls.count.fetch_add(1, Ordering::SeqCst) == 0;
    let status = if first { 503 } else { 200 };
    calls.seen.lock().push((tp, status));
    if first {
        (StatusCode::SERVICE_UNAVAILABLE, "{}".into())
    } else {
        (StatusCode::OK, json!({"reply": "traced"}).to_string())
    }
}

async fn graph(State(calls): State<Arc<Calls>>, headers: HeaderMap) -> String {
    let tp = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    calls.seen.lock().push((tp, 200));
    json!({"messaging_product": "whatsapp", "messages": [{"id": "wamid.OUT"}]}).to_string()
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// The `(trace id, parent span id)` of a `traceparent` header.
fn parse_traceparent(tp: &str) -> (String, String) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_post_through_the_queue_to_the_downstream() {
    let receiver = OtlpReceiver::start().await;
    let otlp_url = receiver.url();
    let down_calls = Arc::new(Calls::default());
    let down_url = serve(
        Router::new()
            .route("/jobs", post(downstream))
            .with_state(down_calls.clone()),
    )
    .await;
    let graph_calls = Arc::new(Calls::default());
    let graph_url = serve(
        Router::new()
            .route("/{phone}/messages", post(graph))
            .with_state(graph_calls.clone()),
    )
    .await;

    let toml = format!(
        r#"
[whatsapp]
app_secret = "{SECRET}"
verify_token = "{VERIFY_TOKEN}"
access_token = "test-access-token"
graph_api_url = "{graph_url}"
[storage]
backend = "memory"
[worker]
poll_interval_ms = 20
max_attempts = 3
backoff_initial_ms = 50
backoff_max_ms = 200
[[services]]
name = "jobs"
endpoints = ["{down_url}/jobs"]
keywords = ["jobs"]
[routing]
default_service = "jobs"
[telemetry]
otlp_endpoint = "{otlp_url}"
sample_ratio = 1.0
"#
    );
    // An empty environment: the machine's own OTEL_* variables must not redirect the test.
    let config = Config::from_toml(&toml, &HashMap::new(), &Overrides::default()).unwrap();
    assert_eq!(
        config.telemetry.traces_endpoint.as_deref(),
        Some(format!("{otlp_url}/v1/traces").as_str())
    );
    let queue = config.storage.queue_name.clone();
    let guard = telemetry::init(&config.telemetry).unwrap();
    assert!(guard.exporting() && telemetry::enabled());
    let app = App::build(config).await.unwrap();
    let router = app.router();

    let body = text_batch("trace", 1, "hello");
    let mut request = signed(&body);
    request.headers_mut().insert(
        "traceparent",
        format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
            .parse()
            .unwrap(),
    );
    let (status, _, _) = send(&router, request).await;
    assert_eq!(status, StatusCode::OK);

    // Both attempts have run and the reply went out; then wait for their spans to arrive.
    eventually("a reply sent after the retry", async || {
        !graph_calls.seen.lock().is_empty()
    })
    .await;
    eventually("both process spans exported", async || {
        guard.flush().await;
        receiver
            .spans()
            .iter()
            .filter(|(_, s)| s.name.starts_with("process ") && attr(s, "outcome").is_some())
            .count()
            >= 2
    })
    .await;
    app.shutdown().await;
    guard.flush().await;

    let spans = receiver.spans();
    assert!(spans.iter().all(|(svc, _)| svc == "steadfast-webhook"));
    let spans: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();
    let by_id: HashMap<String, &Span> = spans.iter().map(|s| (hex_id(&s.span_id), s)).collect();
    let one = |pred: &dyn Fn(&Span) -> bool, what: &str| -> Span {
        let found: Vec<&Span> = spans.iter().filter(|s| pred(s)).collect();
        assert_eq!(found.len(), 1, "{what}: {found:#?}");
        found[0].clone()
    };

    // The server span continues the caller's trace.
    let server = one(&|s| kind(s) == SpanKind::Server, "server span");
    assert_eq!(server.name, "POST /webhook");
    assert_eq!(hex_id(&server.trace_id), CALLER_TRACE);
    assert_eq!(hex_id(&server.parent_span_id), CALLER_SPAN);
    assert_eq!(
        attr(&server, "http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(attr(&server, "http.route").as_deref(), Some("/webhook"));
    assert_eq!(attr(&server, "url.path").as_deref(), Some("/webhook"));
    assert_eq!(
        attr(&server, "http.response.status_code").as_deref(),
        Some("200")
    );

    // The enqueue: a producer span under the server span.
    let send_span = one(&|s| kind(s) == SpanKind::Producer, "send span");
    assert_eq!(send_span.name, format!("send {queue}"));
    assert_eq!(send_span.parent_span_id, server.span_id);
    assert_eq!(send_span.trace_id, server.trace_id);
    assert_eq!(
        attr(&send_span, "messaging.operation.type").as_deref(),
        Some("send")
    );
    assert_eq!(
        attr(&send_span, "messaging.destination.name").as_deref(),
        Some(queue.as_str())
    );
    assert_eq!(
        attr(&send_span, "messaging.batch.message_count").as_deref(),
        Some("1")
    );

    // Two attempts: consumer spans of the same trace, children of and linked to the send.
    let mut process: Vec<Span> = spans
        .iter()
        .filter(|s| kind(s) == SpanKind::Consumer)
        .cloned()
        .collect();
    process.sort_by_key(|s| attr(s, "attempt"));
    assert_eq!(process.len(), 2, "{process:#?}");
    for (n, p) in process.iter().enumerate() {
        assert_eq!(p.name, format!("process {queue}"));
        assert_eq!(hex_id(&p.trace_id), CALLER_TRACE, "attempt {}", n + 1);
        assert_eq!(p.parent_span_id, send_span.span_id, "attempt {}", n + 1);
        assert!(
            p.links
                .iter()
                .any(|l| l.span_id == send_span.span_id && l.trace_id == send_span.trace_id),
            "attempt {} links to the send span: {:?}",
            n + 1,
            p.links
        );
        assert_eq!(attr(p, "attempt"), Some((n + 1).to_string()));
        assert_eq!(
            attr(p, "messaging.operation.type").as_deref(),
            Some("process")
        );
        assert_eq!(
            attr(p, "messaging.destination.name").as_deref(),
            Some(queue.as_str())
        );
        assert!(attr(p, "messaging.message.id").is_some());
    }
    assert_eq!(attr(&process[0], "outcome").as_deref(), Some("retry"));
    assert_eq!(attr(&process[1], "outcome").as_deref(), Some("ack"));

    // Which attempt a span ran under: walk up to the nearest process span.
    let attempt_of = |span: &Span| -> Option<String> {
        let mut cur = span;
        for _ in 0..32 {
            if kind(cur) == SpanKind::Consumer {
                return attr(cur, "attempt");
            }
            cur = by_id.get(&hex_id(&cur.parent_span_id))?;
        }
        None
    };

    // The downstream calls: client spans, one per attempt, and the traceparent it saw.
    let mut clients: Vec<Span> = spans
        .iter()
        .filter(|s| {
            kind(s) == SpanKind::Client && attr(s, "url.full").is_some_and(|u| u.ends_with("/jobs"))
        })
        .cloned()
        .collect();
    clients.sort_by_key(|s| attempt_of(s));
    assert_eq!(clients.len(), 2, "{clients:#?}");
    let seen = down_calls.seen.lock().clone();
    assert_eq!(seen.len(), 2);
    for (n, (client, (tp, status))) in clients.iter().zip(&seen).enumerate() {
        assert_eq!(attempt_of(client), Some((n + 1).to_string()));
        assert_eq!(client.name, "POST");
        assert_eq!(hex_id(&client.trace_id), CALLER_TRACE);
        assert_eq!(attr(client, "http.request.method").as_deref(), Some("POST"));
        assert_eq!(attr(client, "server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(
            attr(client, "http.response.status_code"),
            Some(status.to_string())
        );
        let tp = tp.as_deref().expect("the downstream got a traceparent");
        let (trace, parent) = parse_traceparent(tp);
        assert_eq!(trace, CALLER_TRACE);
        assert_eq!(
            parent,
            hex_id(&client.span_id),
            "its parent is the client span"
        );
    }
    assert_eq!(attr(&clients[0], "error.type").as_deref(), Some("503"));

    // The conversation store calls: db client spans under each attempt.
    for (op, attempt) in [("load", "1"), ("load", "2"), ("save", "2")] {
        assert!(
            spans.iter().any(|s| s.name == format!("conversation {op}")
                && kind(s) == SpanKind::Client
                && attr(s, "db.operation.name").as_deref() == Some(op)
                && attempt_of(s).as_deref() == Some(attempt)),
            "no conversation {op} span under attempt {attempt}"
        );
    }

    // The reply: a client span under the second attempt, its traceparent at the Graph API.
    let graph_span = one(
        &|s| {
            kind(s) == SpanKind::Client
                && attr(s, "url.full").is_some_and(|u| u.ends_with("/messages"))
        },
        "graph client span",
    );
    assert_eq!(attempt_of(&graph_span).as_deref(), Some("2"));
    let graph_seen = graph_calls.seen.lock().clone();
    let (trace, parent) = parse_traceparent(graph_seen[0].0.as_deref().expect("traceparent"));
    assert_eq!(trace, CALLER_TRACE);
    assert_eq!(parent, hex_id(&graph_span.span_id));
    guard.shutdown().await;
}
