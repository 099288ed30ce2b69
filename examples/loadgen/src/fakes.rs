//! The fake downstream service and the fake WhatsApp Graph API the webhook's worker calls.
//!
//! The downstream accepts `POST` on any path (so each routed service can get its own path),
//! records one delivery per `message_id` and every duplicate, and answers `{"reply":"ok"}`.
//! It can be switched to fail every call (`POST /_control/fail`, `/_control/recover`, or a
//! scheduled window) for the downstream-outage drill. `GET /_stats` gives a summary and
//! `GET /_stats/deliveries` the count per message id.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Error;

/// Where the fakes listen and how the downstream behaves.
#[derive(Debug, Clone)]
pub struct FakesConfig {
    /// Downstream listen address (default `127.0.0.1:0`, a free port).
    pub downstream_listen: SocketAddr,
    /// Graph API listen address (default `127.0.0.1:0`).
    pub graph_listen: SocketAddr,
    /// Status answered while failing (default 503).
    pub fail_status: StatusCode,
    /// Delay before each downstream answer (default none), to model a slow service.
    pub downstream_delay: Duration,
}

impl Default for FakesConfig {
    fn default() -> Self {
        FakesConfig {
            downstream_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            graph_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            fail_status: StatusCode::SERVICE_UNAVAILABLE,
            downstream_delay: Duration::ZERO,
        }
    }
}

/// A summary of what the fakes saw (`GET /_stats`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FakeStats {
    /// Base URL of the fake downstream.
    pub downstream_url: String,
    /// Base URL of the fake Graph API (`graph_api_url`).
    pub graph_url: String,
    /// Seconds since the fakes started.
    pub uptime_secs: f64,
    /// Whether the downstream currently fails every call.
    pub failing: bool,
    /// Successful downstream calls, duplicates included.
    pub deliveries_total: u64,
    /// Distinct message ids delivered.
    pub unique_messages: u64,
    /// Deliveries beyond the first, summed over message ids.
    pub duplicate_deliveries: u64,
    /// Message ids delivered more than once.
    pub messages_with_duplicates: u64,
    /// Calls answered with the failure status.
    pub failed_requests: u64,
    /// Calls whose body was not the expected JSON (no `message_id`).
    pub bad_requests: u64,
    /// Calls whose `Idempotency-Key` header was missing or differed from `message_id`.
    pub idempotency_key_mismatches: u64,
    /// Successful deliveries per request path (one path per routed service).
    pub deliveries_by_path: BTreeMap<String, u64>,
    /// Well-formed replies received by the fake Graph API.
    pub graph_replies: u64,
    /// Graph API calls that were not a well-formed text reply.
    pub graph_bad_requests: u64,
    /// Wall clock of the first successful delivery, in milliseconds since the Unix epoch (0:
    /// none yet).
    #[serde(default)]
    pub first_delivery_unix_ms: u64,
    /// Wall clock of the latest delivery of a message id not delivered before (duplicates do
    /// not move it), in milliseconds since the Unix epoch (0: none yet): when the backlog was
    /// cleared, once every message is in.
    #[serde(default)]
    pub last_new_delivery_unix_ms: u64,
}

/// `GET /_stats/deliveries`: successful deliveries per message id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Deliveries {
    /// Message id -> number of successful deliveries.
    pub deliveries: HashMap<String, u32>,
}

/// Shared state of the fakes; cheap to clone.
#[derive(Debug, Clone)]
pub struct FakeState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    urls: Mutex<(String, String)>,
    deliveries: Mutex<HashMap<String, u32>>,
    by_path: Mutex<BTreeMap<String, u64>>,
    failing: AtomicBool,
    fail_status: StatusCode,
    delay: Duration,
    failed: AtomicU64,
    bad: AtomicU64,
    key_mismatch: AtomicU64,
    graph_replies: AtomicU64,
    graph_bad: AtomicU64,
    first_delivery_ms: AtomicU64,
    last_new_delivery_ms: AtomicU64,
}

impl FakeState {
    /// Fresh state for a downstream answering `fail_status` while failing.
    pub fn new(fail_status: StatusCode, delay: Duration) -> Self {
        FakeState {
            inner: Arc::new(Inner {
                started: Instant::now(),
                urls: Mutex::new((String::new(), String::new())),
                deliveries: Mutex::new(HashMap::new()),
                by_path: Mutex::new(BTreeMap::new()),
                failing: AtomicBool::new(false),
                fail_status,
                delay,
                failed: AtomicU64::new(0),
                bad: AtomicU64::new(0),
                key_mismatch: AtomicU64::new(0),
                graph_replies: AtomicU64::new(0),
                graph_bad: AtomicU64::new(0),
                first_delivery_ms: AtomicU64::new(0),
                last_new_delivery_ms: AtomicU64::new(0),
            }),
        }
    }

    /// Makes the downstream fail (`true`) or succeed (`false`) from now on.
    pub fn set_failing(&self, failing: bool) {
        self.inner.failing.store(failing, Ordering::SeqCst);
    }

    /// A copy of the deliveries per message id.
    pub fn deliveries(&self) -> HashMap<String, u32> {
        self.inner.deliveries.lock().clone()
    }

    /// Forgets everything seen so far (the failing switch is left as is).
    pub fn reset(&self) {
        self.inner.deliveries.lock().clear();
        self.inner.by_path.lock().clear();
        for c in [
            &self.inner.failed,
            &self.inner.bad,
            &self.inner.key_mismatch,
            &self.inner.graph_replies,
            &self.inner.graph_bad,
            &self.inner.first_delivery_ms,
            &self.inner.last_new_delivery_ms,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// The summary served at `GET /_stats`.
    pub fn stats(&self) -> FakeStats {
        let (downstream_url, graph_url) = self.inner.urls.lock().clone();
        let deliveries = self.inner.deliveries.lock();
        let total: u64 = deliveries.values().map(|&c| u64::from(c)).sum();
        FakeStats {
            downstream_url,
            graph_url,
            uptime_secs: self.inner.started.elapsed().as_secs_f64(),
            failing: self.inner.failing.load(Ordering::SeqCst),
            deliveries_total: total,
            unique_messages: deliveries.len() as u64,
            duplicate_deliveries: total - deliveries.len() as u64,
            messages_with_duplicates: deliveries.values().filter(|&&c| c > 1).count() as u64,
            failed_requests: self.inner.failed.load(Ordering::Relaxed),
            bad_requests: self.inner.bad.load(Ordering::Relaxed),
            idempotency_key_mismatches: self.inner.key_mismatch.load(Ordering::Relaxed),
            deliveries_by_path: self.inner.by_path.lock().clone(),
            graph_replies: self.inner.graph_replies.load(Ordering::Relaxed),
            graph_bad_requests: self.inner.graph_bad.load(Ordering::Relaxed),
            first_delivery_unix_ms: self.inner.first_delivery_ms.load(Ordering::Relaxed),
            last_new_delivery_unix_ms: self.inner.last_new_delivery_ms.load(Ordering::Relaxed),
        }
    }
}

/// Running fakes; they stop when this is dropped (or on [`Fakes::shutdown`]).
#[derive(Debug)]
pub struct Fakes {
    state: FakeState,
    downstream_addr: SocketAddr,
    graph_addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Fakes {
    /// Binds both listeners and serves them in the background.
    pub async fn start(config: FakesConfig) -> Result<Fakes, Error> {
        let state = FakeState::new(config.fail_status, config.downstream_delay);
        let ds = bind(config.downstream_listen).await?;
        let gr = bind(config.graph_listen).await?;
        let downstream_addr = ds.local_addr().map_err(|source| Error::Bind {
            addr: config.downstream_listen,
            source,
        })?;
        let graph_addr = gr.local_addr().map_err(|source| Error::Bind {
            addr: config.graph_listen,
            source,
        })?;
        *state.inner.urls.lock() = (
            format!("http://{downstream_addr}"),
            format!("http://{graph_addr}"),
        );
        let (stop, rx) = watch::channel(false);
        for (listener, router) in [
            (ds, downstream_router(state.clone())),
            (gr, graph_router(state.clone())),
        ] {
            let mut rx = rx.clone();
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                // A serve error here only means the listener died; the run reports missing deliveries.
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await;
            });
        }
        Ok(Fakes {
            state,
            downstream_addr,
            graph_addr,
            stop,
        })
    }

    /// The shared state (stats, failing switch).
    pub fn state(&self) -> &FakeState {
        &self.state
    }

    /// `http://ADDR` of the fake downstream.
    pub fn downstream_url(&self) -> String {
        format!("http://{}", self.downstream_addr)
    }

    /// `http://ADDR` of the fake Graph API, to use as `graph_api_url`.
    pub fn graph_url(&self) -> String {
        format!("http://{}", self.graph_addr)
    }

    /// Stops both servers.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Fakes {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

fn control_routes() -> Router<FakeState> {
    Router::new()
        .route(
            "/_stats",
            get(|State(s): State<FakeState>| async move { axum::Json(s.stats()) }),
        )
        .route(
            "/_stats/deliveries",
            get(|State(s): State<FakeState>| async move {
                axum::Json(Deliveries {
                    deliveries: s.deliveries(),
                })
            }),
        )
        .route(
            "/_control/fail",
            post(|State(s): State<FakeState>| async move {
                s.set_failing(true);
                axum::Json(json!({ "failing": true }))
            }),
        )
        .route(
            "/_control/recover",
            post(|State(s): State<FakeState>| async move {
                s.set_failing(false);
                axum::Json(json!({ "failing": false }))
            }),
        )
        .route(
            "/_control/reset",
            post(|State(s): State<FakeState>| async move {
                s.reset();
                axum::Json(json!({ "reset": true }))
            }),
        )
}

fn downstream_router(state: FakeState) -> Router {
    control_routes().fallback(downstream).with_state(state)
}

fn graph_router(state: FakeState) -> Router {
    control_routes().fallback(graph).with_state(state)
}

async fn downstream(
    State(state): State<FakeState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "POST only").into_response();
    }
    let s = &state.inner;
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    if s.failing.load(Ordering::SeqCst) {
        s.failed.fetch_add(1, Ordering::Relaxed);
        return (
            s.fail_status,
            axum::Json(json!({ "error": "injected failure" })),
        )
            .into_response();
    }
    let message_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("message_id")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        });
    let Some(message_id) = message_id else {
        s.bad.fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "expected JSON with message_id" })),
        )
            .into_response();
    };
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    if key != Some(message_id.as_str()) {
        s.key_mismatch.fetch_add(1, Ordering::Relaxed);
    }
    let first_of_id = {
        let mut deliveries = s.deliveries.lock();
        let count = deliveries.entry(message_id).or_insert(0);
        *count += 1;
        *count == 1
    };
    let now = crate::load::unix_ms(SystemTime::now());
    let _ = s
        .first_delivery_ms
        .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    if first_of_id {
        s.last_new_delivery_ms.fetch_max(now, Ordering::Relaxed);
    }
    *s.by_path.lock().entry(uri.path().to_owned()).or_insert(0) += 1;
    axum::Json(json!({ "reply": "ok" })).into_response()
}

async fn graph(State(state): State<FakeState>, method: Method, uri: Uri, body: Bytes) -> Response {
    let s = &state.inner;
    let reply = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .filter(|v| {
            method == Method::POST
                && uri.path().ends_with("/messages")
                && v["messaging_product"] == "whatsapp"
                && v["type"] == "text"
                && v["to"].is_string()
                && v["text"]["body"].is_string()
        });
    let Some(reply) = reply else {
        s.graph_bad.fetch_add(1, Ordering::Relaxed);
        let error = json!({ "error": { "message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100 } });
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    };
    let n = s.graph_replies.fetch_add(1, Ordering::Relaxed) + 1;
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": reply["to"], "wa_id": reply["to"] }],
        "messages": [{ "id": format!("wamid.HBgMreply{n:012}") }],
    }))
    .into_response()
}
