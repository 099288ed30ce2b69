//! Tiny axum servers on 127.0.0.1 that tests can make fail, hang and recover.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use steadfast_service_registry::{Registry, RegistryEvent};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// How a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Ok = 0,
    Fail = 1,
    Hang = 2,
}

#[derive(Clone)]
struct Shared {
    name: &'static str,
    health: Arc<AtomicU8>,
    work: Arc<AtomicU8>,
    hits: Arc<AtomicUsize>,
}

/// A server with `GET /health` and `POST /work` (answers its name), each with its own mode.
pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    shared: Shared,
    handle: JoinHandle<()>,
}

async fn answer(mode: &AtomicU8, body: &'static str) -> (StatusCode, &'static str) {
    match mode.load(Ordering::SeqCst) {
        0 => (StatusCode::OK, body),
        1 => (StatusCode::INTERNAL_SERVER_ERROR, "failing"),
        _ => std::future::pending().await,
    }
}

async fn health(State(s): State<Shared>) -> (StatusCode, &'static str) {
    answer(&s.health, "ok").await
}

async fn work_route(State(s): State<Shared>) -> (StatusCode, &'static str) {
    s.hits.fetch_add(1, Ordering::SeqCst);
    answer(&s.work, s.name).await
}

impl TestServer {
    /// Binds 127.0.0.1 on a port the OS picks and serves until dropped.
    pub async fn start(name: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let shared = Shared {
            name,
            health: Arc::new(AtomicU8::new(0)),
            work: Arc::new(AtomicU8::new(0)),
            hits: Arc::new(AtomicUsize::new(0)),
        };
        let app = Router::new()
            .route("/health", get(health))
            .route("/work", post(work_route))
            .with_state(shared.clone());
        let handle = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            addr,
            url: format!("http://{addr}"),
            shared,
            handle,
        }
    }

    /// Sets both routes.
    pub fn set(&self, mode: Mode) {
        self.set_health(mode);
        self.set_work(mode);
    }

    pub fn set_health(&self, mode: Mode) {
        self.shared.health.store(mode as u8, Ordering::SeqCst);
    }

    pub fn set_work(&self, mode: Mode) {
        self.shared.work.store(mode as u8, Ordering::SeqCst);
    }

    /// Requests received on `/work`.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// An address on which nothing listens (bound, then released).
pub async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

/// POSTs `/work` on the endpoint the registry picks; a 5xx is an error.
pub async fn work(
    registry: &Registry,
    client: &reqwest::Client,
    service: &str,
) -> Result<String, steadfast_service_registry::CallError<reqwest::Error>> {
    registry
        .call(service, |endpoint| {
            let request = client.post(endpoint.join("/work"));
            async move { request.send().await?.error_for_status()?.text().await }
        })
        .await
}

/// Waits (bounded, so a bug fails instead of hanging) for an event matching `pred`.
pub async fn wait_for(
    rx: &mut broadcast::Receiver<RegistryEvent>,
    mut pred: impl FnMut(&RegistryEvent) -> bool,
) -> RegistryEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Ok(event) if pred(&event) => return event,
                Ok(_) => {}
                Err(e) => panic!("event stream failed: {e}"),
            }
        }
    })
    .await
    .expect("event did not arrive within 10 s")
}

/// Whether `event` says `endpoint` moved to `to`.
pub fn moved_to(
    event: &RegistryEvent,
    endpoint: &str,
    to: steadfast_service_registry::HealthState,
) -> bool {
    matches!(event, RegistryEvent::EndpointStateChanged { endpoint: e, to: t, .. } if e == endpoint && *t == to)
}
