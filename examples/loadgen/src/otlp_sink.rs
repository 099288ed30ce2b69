//! An OTLP/HTTP collector that accepts every export and drops it: what the webhook exports to
//! when its cost of tracing is measured (the export is paid for; nothing is stored or
//! decoded, so the sink costs the shared cores as little as it can).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::post;
use tokio::net::TcpListener;

/// What the sink was sent.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Export requests (`POST /v1/traces`).
    pub requests: AtomicU64,
    /// Their body bytes.
    pub bytes: AtomicU64,
}

/// The sink's router: `POST /v1/traces` answered 200 (an empty
/// `ExportTraceServiceResponse`, which encodes to no bytes).
pub fn otlp_sink_router(stats: Arc<SinkStats>) -> Router {
    Router::new()
        .route(
            "/v1/traces",
            post(
                |State(stats): State<Arc<SinkStats>>, body: Bytes| async move {
                    stats.requests.fetch_add(1, Ordering::Relaxed);
                    stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/x-protobuf")],
                        Bytes::new(),
                    )
                },
            ),
        )
        .with_state(stats)
}

/// Serves [`otlp_sink_router`] on `listener` until the process ends.
pub async fn serve_otlp_sink(listener: TcpListener, stats: Arc<SinkStats>) -> std::io::Result<()> {
    axum::serve(listener, otlp_sink_router(stats)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_and_counts_exports() {
        let stats = Arc::new(SinkStats::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        tokio::spawn(serve_otlp_sink(listener, stats.clone()));
        let res = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/x-protobuf")
            .body(vec![1u8, 2, 3])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(stats.requests.load(Ordering::Relaxed), 1);
        assert_eq!(stats.bytes.load(Ordering::Relaxed), 3);
    }
}
