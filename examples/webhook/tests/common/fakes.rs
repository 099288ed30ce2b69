//! A fake downstream and a fake Graph API: tiny axum servers on 127.0.0.1 ports that record
//! what they receive.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use parking_lot::Mutex;
use serde_json::{Value, json};

#[derive(Default)]
pub struct DownstreamLog {
    /// Successful deliveries per message id.
    pub delivered: Mutex<HashMap<String, u32>>,
    /// Every request: (service, idempotency key, body), failed ones included.
    pub requests: Mutex<Vec<(String, Option<String>, Value)>>,
    /// 0: answer 200 with a reply; otherwise answer this status.
    pub fail_with: AtomicU16,
    /// How long each call takes before it answers, in ms (a slow downstream).
    pub delay_ms: std::sync::atomic::AtomicU64,
}

impl DownstreamLog {
    pub fn delivered(&self, id: &str) -> u32 {
        self.delivered.lock().get(id).copied().unwrap_or(0)
    }
    pub fn total_delivered(&self) -> u32 {
        self.delivered.lock().values().sum()
    }
    pub fn attempts(&self, id: &str) -> usize {
        self.requests
            .lock()
            .iter()
            .filter(|(_, _, b)| b["message_id"] == id)
            .count()
    }
}

async fn downstream(
    State(log): State<Arc<DownstreamLog>>,
    Path(service): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    log.requests
        .lock()
        .push((service.clone(), key, body.clone()));
    let delay = log.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let fail = log.fail_with.load(Ordering::SeqCst);
    if fail != 0 {
        return (
            StatusCode::from_u16(fail).unwrap(),
            Json(json!({"error": "down"})),
        );
    }
    let id = body["message_id"].as_str().unwrap_or_default().to_owned();
    *log.delivered.lock().entry(id).or_default() += 1;
    (
        StatusCode::OK,
        Json(json!({"reply": format!("{service} got: {}", body["text"].as_str().unwrap_or(""))})),
    )
}

/// Starts the fake downstream; `http://addr` — services live at `/<name>`.
pub async fn start_downstream() -> (String, Arc<DownstreamLog>) {
    let log = Arc::new(DownstreamLog::default());
    let app = Router::new()
        .route("/{service}", post(downstream))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), log)
}

#[derive(Default)]
pub struct GraphLog {
    /// (path, authorization header, body)
    pub sent: Mutex<Vec<(String, Option<String>, Value)>>,
}

impl GraphLog {
    pub fn texts_to(&self, to: &str) -> Vec<String> {
        self.sent
            .lock()
            .iter()
            .filter(|(_, _, b)| b["to"] == to)
            .filter_map(|(_, _, b)| b["text"]["body"].as_str().map(str::to_owned))
            .collect()
    }
}

async fn graph(
    State(log): State<Arc<GraphLog>>,
    Path(phone_number_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    log.sent
        .lock()
        .push((format!("/{phone_number_id}/messages"), auth, body));
    Json(json!({"messaging_product": "whatsapp", "messages": [{"id": "wamid.OUT"}]}))
}

/// Starts the fake Graph API; returns its base URL (`graph_api_url`).
pub async fn start_graph() -> (String, Arc<GraphLog>) {
    let log = Arc::new(GraphLog::default());
    let app = Router::new()
        .route("/{phone_number_id}/messages", post(graph))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), log)
}

/// What a scripted downstream answers to every POST.
#[derive(Clone)]
pub enum Script {
    /// `307 Temporary Redirect` to this URL.
    Redirect(String),
    /// `200` with `{"reply": text}`.
    Reply(String),
    /// `200` with a JSON body of about `bytes` bytes: with a `Content-Length` when `declared`,
    /// else streamed in 64 KiB chunks (chunked, no length up front).
    Huge { bytes: usize, declared: bool },
}

/// A downstream that answers by `script`; returns its URL and how many requests it got.
pub async fn start_scripted(script: Script) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::body::Body;
    use axum::response::Response;
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().fallback(move || {
        let (script, h) = (script.clone(), h.clone());
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            match script {
                Script::Redirect(to) => Response::builder()
                    .status(StatusCode::TEMPORARY_REDIRECT)
                    .header("location", to)
                    .body(Body::empty())
                    .unwrap(),
                Script::Reply(text) => Json(json!({ "reply": text })).into_response(),
                Script::Huge { bytes, declared } => {
                    const CHUNK: usize = 64 * 1024;
                    let chunk = bytes::Bytes::from(vec![b'x'; CHUNK]);
                    let n = bytes / CHUNK;
                    let parts = std::iter::once(bytes::Bytes::from_static(b"{\"reply\": \""))
                        .chain(std::iter::repeat_n(chunk, n))
                        .chain(std::iter::once(bytes::Bytes::from_static(b"\"}")));
                    if declared {
                        let mut whole = Vec::with_capacity(bytes + 16);
                        for part in parts {
                            whole.extend_from_slice(&part);
                        }
                        Body::from(whole).into_response()
                    } else {
                        Body::from_stream(futures::stream::iter(parts.map(Ok::<_, std::io::Error>)))
                            .into_response()
                    }
                }
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), hits)
}
