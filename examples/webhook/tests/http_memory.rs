//! The HTTP surface on the in-memory stores (no servers needed): handshake, signatures,
//! limits, parsing. The same behaviours on Postgres + Redis are in `postgres_redis.rs`.

mod common;

use axum::body::Body;
use common::*;
use http::{Request, StatusCode};
use steadfast_webhook::assemble::App;

async fn app(extra: &str) -> App {
    App::build(memory_config(extra)).await.unwrap()
}

#[tokio::test]
async fn handshake() {
    surface::handshake(&app("").await.router()).await;
}

#[tokio::test]
async fn signatures() {
    surface::signatures(&app("").await.router(), "MEM").await;
}

#[tokio::test]
async fn body_limit() {
    surface::body_limit(&app("[http]\nbody_limit_bytes = 2048").await.router()).await;
}

#[tokio::test]
async fn rate_limit() {
    surface::rate_limit(&app("[rate_limit]\nper_minute = 3").await.router()).await;
}

#[tokio::test]
async fn bad_json_and_unknown_field() {
    surface::bad_json_and_unknown_field(&app("").await.router()).await;
}

#[tokio::test]
async fn batch_is_one_write_and_duplicates_are_reported() {
    let app = app("").await;
    let r = app.router();
    let body = text_batch("B", 500, "hello");
    let (s, _, b) = send(&r, signed(&body)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["accepted"], 500);
    let (s, _, b) = send(&r, signed(&body)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["accepted"], 0);
    assert_eq!(json(&b)["duplicates"], 500);
    let mixed = fixture("batch_mixed.json");
    let (_, _, b) = send(&r, signed(&mixed)).await;
    let v = json(&b);
    assert_eq!(
        (
            v["accepted"].as_u64(),
            v["statuses"].as_u64(),
            v["ignored"].as_u64(),
            v["malformed"].as_u64()
        ),
        (Some(4), Some(1), Some(1), Some(1))
    );
}

#[tokio::test]
async fn correlation_id_is_taken_or_made_and_echoed() {
    let app = app("").await;
    let r = app.router();
    let req = Request::get("/health")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let (_, h, _) = send(&r, req).await;
    assert_eq!(h["x-request-id"], "abc-123");
    let (_, h, _) = send(&r, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(h["x-request-id"].len(), 36);
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let app = app("").await;
    let r = app.router();
    let _ = send(&r, signed(&fixture("status_failed.json"))).await;
    let (s, h, b) = send(&r, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(b).unwrap();
    assert!(
        text.contains("webhook_statuses_total{status=\"failed\"}"),
        "{text}"
    );
    assert!(text.contains("webhook_queue_depth{state=\"pending\"}"));
}
