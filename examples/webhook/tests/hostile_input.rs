//! Input limits that protect an open port: the number of messages in one delivery, stale
//! (replayed) deliveries, and the client address behind proxies for the rate limit.
//!
//! In process, with the worker off: every stored message stays `pending` where the test can
//! count it.

mod common;

use axum::body::Body;
use common::*;
use http::{Request, StatusCode};
use serde_json::json;
use steadfast_dlq::{Filter, Page, State};
use steadfast_webhook::assemble::App;

async fn app(extra: &str) -> App {
    App::build(memory_config(&format!(
        "[worker]\nenabled = false\n{extra}"
    )))
    .await
    .unwrap()
}

async fn pending(app: &App) -> usize {
    app.state()
        .ingestor
        .queue()
        .list(
            &Filter::in_state(State::Pending),
            Page {
                limit: 1000,
                after: None,
            },
        )
        .await
        .unwrap()
        .len()
}

fn series(metrics: &str, name: &str, needle: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics_text(app: &App) -> String {
    let (_, _, b) = send(
        &app.router(),
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    String::from_utf8(b).unwrap()
}

#[tokio::test]
async fn a_delivery_over_the_message_cap_is_413_and_stores_nothing() {
    let app = app("[http]\nmax_messages_per_delivery = 50").await;
    let r = app.router();
    let (s, h, b) = send(&r, signed(&text_batch("CAP", 51, "hi"))).await;
    assert_eq!(
        s,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert_eq!(h["content-type"], "application/problem+json");
    assert!(json(&b)["detail"].as_str().unwrap().contains("at most 50"));
    assert_eq!(pending(&app).await, 0, "nothing stored");
    // At the cap: accepted whole.
    let (s, _, b) = send(&r, signed(&text_batch("CAP", 50, "hi"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["accepted"], 50);
    assert_eq!(pending(&app).await, 50);
    app.shutdown().await;
}

#[tokio::test]
async fn the_default_cap_is_metas_thousand() {
    let app = app("").await;
    let r = app.router();
    let (s, _, _) = send(&r, signed(&text_batch("K", 1001, "hi"))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(pending(&app).await, 0);
    app.shutdown().await;
}

/// A delivery whose items carry `ts` as their timestamp.
fn delivery_at(prefix: &str, message_ts: &[i64], status_ts: &[i64]) -> Vec<u8> {
    let messages: Vec<_> = message_ts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"from": "250788123456", "id": format!("wamid.{prefix}.{i}"),
                   "timestamp": t.to_string(), "type": "text", "text": {"body": "hi"}})
        })
        .collect();
    let statuses: Vec<_> = status_ts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": format!("wamid.out.{prefix}.{i}"), "status": "delivered",
                   "timestamp": t.to_string(), "recipient_id": "250788123456"})
        })
        .collect();
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "250780000100", "phone_number_id": "106540352242922"},
            "messages": messages, "statuses": statuses
        }}]}]
    }))
    .unwrap()
}

#[tokio::test]
async fn a_replayed_delivery_older_than_the_age_limit_is_200_stale_and_not_stored() {
    let app = app("[http]\nmax_delivery_age_seconds = 3600").await;
    let r = app.router();
    let now = now_unix();
    let old = now - 2 * 3600;
    let before = series(&metrics_text(&app).await, "webhook_messages_total", "stale");

    // Every item older than the limit: a captured delivery replayed. 200 (Meta must not
    // retry it), counted, nothing stored.
    let (s, _, b) = send(&r, signed(&delivery_at("OLD", &[old, old - 5], &[old]))).await;
    assert_eq!(s, StatusCode::OK);
    let report = json(&b);
    assert_eq!(
        (report["stale"].as_u64(), report["accepted"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(pending(&app).await, 0);
    let after = series(&metrics_text(&app).await, "webhook_messages_total", "stale");
    assert_eq!(after - before, 3.0);

    // One fresh item keeps the whole delivery: it is a real (late) delivery, not a replay.
    let (s, _, b) = send(&r, signed(&delivery_at("MIX", &[old, now - 10], &[]))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["accepted"], 2);
    // No timestamp at all cannot be shown old: stored.
    let mut v = json(&delivery_at("NOTS", &[old], &[]));
    v["entry"][0]["changes"][0]["value"]["messages"][0]
        .as_object_mut()
        .unwrap()
        .remove("timestamp");
    let (s, _, b) = send(&r, signed(&serde_json::to_vec(&v).unwrap())).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["accepted"], 1);
    assert_eq!(pending(&app).await, 3);
    app.shutdown().await;
}

#[tokio::test]
async fn the_default_age_limit_is_the_dedup_window() {
    let app = app("[storage]\ndedup_window_seconds = 86400").await;
    let r = app.router();
    let now = now_unix();
    let (_, _, b) = send(&r, signed(&delivery_at("D1", &[now - 86_400 - 60], &[]))).await;
    assert_eq!(json(&b)["stale"], 1);
    let (_, _, b) = send(&r, signed(&delivery_at("D2", &[now - 86_400 + 600], &[]))).await;
    assert_eq!(json(&b)["accepted"], 1);
    app.shutdown().await;
}

#[tokio::test]
async fn rotating_x_forwarded_for_does_not_escape_the_rate_limit() {
    let app = app(
        "[rate_limit]\nper_minute = 2\n[http]\ntrust_forwarded_for = true\ntrusted_proxy_hops = 1",
    )
    .await;
    let r = app.router();
    let body = fixture("status_delivered_read.json");
    let req = |fake: &str| {
        Request::post("/webhook")
            .header("x-hub-signature-256", sign(&body))
            // The client's made-up entry, then what our proxy appended.
            .header("x-forwarded-for", format!("{fake}, 198.51.100.7"))
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let statuses: Vec<StatusCode> = {
        let mut out = Vec::new();
        for fake in ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"] {
            out.push(send(&r, req(fake)).await.0);
        }
        out
    };
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Another client behind the same proxy has its own bucket.
    let other = Request::post("/webhook")
        .header("x-hub-signature-256", sign(&body))
        .header("x-forwarded-for", "1.1.1.1, 198.51.100.8")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(send(&r, other).await.0, StatusCode::OK);
    app.shutdown().await;
}
