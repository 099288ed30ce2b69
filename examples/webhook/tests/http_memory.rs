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
async fn handshake_echoes_the_challenge_only_for_the_right_token() {
    let app = app("").await;
    let r = app.router();
    let ok = format!(
        "/webhook?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    );
    let (s, h, body) = send(&r, Request::get(ok).body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, b"1158201444");
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    for bad in [
        "/webhook?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        "/webhook?hub.mode=unsubscribe&hub.verify_token=test-verify-token&hub.challenge=1",
        "/webhook?hub.mode=subscribe&hub.challenge=1",
    ] {
        let (s, h, _) = send(&r, Request::get(bad).body(Body::empty()).unwrap()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{bad}");
        assert_eq!(h["content-type"], "application/problem+json");
    }
}

#[tokio::test]
async fn signature_valid_invalid_missing_malformed() {
    let app = app("").await;
    let r = app.router();
    let body = fixture("text_message.json");
    let (s, _, b) = send(&r, signed(&body)).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json(&b)["accepted"], 1);

    let (s, _, _) = send(&r, post_webhook(&body, None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = send(&r, post_webhook(&body, Some("sha256=nothex"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = send(&r, post_webhook(&body, Some("md5=abcd"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let wrong = steadfast_webhook::signature::Verifier::new(b"other").sign(&body);
    let (s, h, b) = send(&r, post_webhook(&body, Some(&wrong))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(json(&b)["status"], 403);
    // upper-case hex is accepted
    let upper = format!("sha256={}", sign(&body)[7..].to_ascii_uppercase());
    let (s, _, b) = send(&r, post_webhook(&body, Some(&upper))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["duplicates"], 1);
}

#[tokio::test]
async fn signature_is_over_the_raw_bytes_escaped_or_not() {
    let app = app("").await;
    let r = app.router();
    let escaped = fixture("text_escaped_unicode.json");
    assert!(escaped.windows(6).any(|w| w == b"\\u00e9"));
    let raw = String::from_utf8(escaped.clone())
        .unwrap()
        .replace("\\u00e9", "é")
        .replace("\\u2615", "☕")
        .replace("wamid.HBgM", "wamid.RAW.HBgM");
    // each body verifies under its own signature...
    let (s, _, _) = send(&r, signed(&escaped)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = send(&r, signed(raw.as_bytes())).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["accepted"], 1);
    // ...and not under the other's (no re-serialization on our side)
    let (s, _, _) = send(&r, post_webhook(raw.as_bytes(), Some(&sign(&escaped)))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = app("[http]\nbody_limit_bytes = 2048").await;
    let r = app.router();
    let big = text_batch("BIG", 40, "x");
    assert!(big.len() > 2048);
    let (s, h, _) = send(&r, signed(&big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h["content-type"], "application/problem+json");
    // without a Content-Length (streamed) the limit still holds
    let stream = futures::stream::iter(
        big.chunks(512)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let req = Request::post("/webhook")
        .header("x-hub-signature-256", sign(&big))
        .body(Body::from_stream(stream))
        .unwrap();
    let (s, _, _) = send(&r, req).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn rate_limit_answers_429_with_headers() {
    let app = app("[rate_limit]\nper_minute = 3").await;
    let r = app.router();
    let body = fixture("status_delivered_read.json");
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let (s, h, _) = send(&r, signed(&body)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["x-ratelimit-limit"], "3");
        assert!(h.contains_key("x-ratelimit-reset"));
        remaining.push(h["x-ratelimit-remaining"].to_str().unwrap().to_owned());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let (s, h, b) = send(&r, signed(&body)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert_eq!(h["x-ratelimit-limit"], "3");
    assert_eq!(json(&b)["status"], 429);
    // health is not rate limited
    let (s, _, _) = send(&r, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn invalid_json_is_400_unknown_field_is_200_ignored() {
    let app = app("").await;
    let r = app.router();
    let (s, h, b) = send(&r, signed(b"{not json")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(json(&b)["status"], 400);
    let (s, _, b) = send(&r, signed(&fixture("unknown_field.json"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["ignored"], 1);
    assert_eq!(json(&b)["accepted"], 0);
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
