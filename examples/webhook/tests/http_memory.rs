//! The HTTP surface without servers, each test twice: on the in-memory stores (`memory::*`)
//! and on a temp-file SQLite database (`sqlite::*`): handshake, signatures, limits, parsing.
//! The same behaviours on Postgres + Redis are in `postgres_redis.rs`.

mod common;

use axum::body::Body;
use common::*;
use http::{Request, StatusCode};

on_every_store!(
    handshake,
    signatures,
    body_limit,
    rate_limit,
    bad_json_and_unknown_field,
    batch_is_one_write_and_duplicates_are_reported,
    correlation_id_is_taken_or_made_and_echoed,
    metrics_are_prometheus_text,
);

async fn handshake(store: Store) {
    surface::handshake(&TestApp::build(store, "").await.router()).await;
}

async fn signatures(store: Store) {
    surface::signatures(&TestApp::build(store, "").await.router(), "MEM").await;
}

async fn body_limit(store: Store) {
    surface::body_limit(
        &TestApp::build(store, "[http]\nbody_limit_bytes = 2048")
            .await
            .router(),
    )
    .await;
}

async fn rate_limit(store: Store) {
    surface::rate_limit(
        &TestApp::build(store, "[rate_limit]\nper_minute = 3")
            .await
            .router(),
    )
    .await;
}

async fn bad_json_and_unknown_field(store: Store) {
    surface::bad_json_and_unknown_field(&TestApp::build(store, "").await.router()).await;
}

async fn batch_is_one_write_and_duplicates_are_reported(store: Store) {
    let app = TestApp::build(store, "").await;
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

async fn correlation_id_is_taken_or_made_and_echoed(store: Store) {
    let app = TestApp::build(store, "").await;
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

async fn metrics_are_prometheus_text(store: Store) {
    let app = TestApp::build(store, "").await;
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
