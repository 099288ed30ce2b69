//! The HTTP-surface checks, written once and run against every store setup (in-memory in
//! `http_memory.rs`, Postgres + Redis in `postgres_redis.rs`).

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};

use super::*;

pub async fn handshake(r: &Router) {
    let ok = format!(
        "/webhook?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    );
    let (s, h, body) = send(r, Request::get(ok).body(Body::empty()).unwrap()).await;
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
        let (s, h, _) = send(r, Request::get(bad).body(Body::empty()).unwrap()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{bad}");
        assert_eq!(h["content-type"], "application/problem+json");
    }
}

/// `unique` makes the message ids of this run unique (shared stores).
pub async fn signatures(r: &Router, unique: &str) {
    let body = String::from_utf8(fixture("text_message.json"))
        .unwrap()
        .replace("wamid.HBgM", &format!("wamid.{unique}.HBgM"))
        .into_bytes();
    let (s, _, b) = send(r, signed(&body)).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json(&b)["accepted"], 1);

    let (s, h, b) = send(r, post_webhook(&body, None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(json(&b)["status"], 401);
    for malformed in ["sha256=nothex", "md5=abcd", "sha256=", "sha256"] {
        let (s, _, _) = send(r, post_webhook(&body, Some(malformed))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{malformed}");
    }
    let wrong = steadfast_webhook::signature::Verifier::new(b"other").sign(&body);
    let (s, h, b) = send(r, post_webhook(&body, Some(&wrong))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(json(&b)["status"], 403);
    // upper-case hex is the same digest: accepted (and a duplicate by now)
    let upper = format!("sha256={}", sign(&body)[7..].to_ascii_uppercase());
    let (s, _, b) = send(r, post_webhook(&body, Some(&upper))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["duplicates"], 1);

    // Meta escapes non-ASCII as \uXXXX and signs those bytes; raw UTF-8 is other bytes.
    let escaped = String::from_utf8(fixture("text_escaped_unicode.json"))
        .unwrap()
        .replace("wamid.HBgM", &format!("wamid.{unique}.ESC.HBgM"));
    assert!(escaped.contains("\\u00e9"));
    let raw = escaped
        .replace("\\u00e9", "é")
        .replace("\\u2615", "☕")
        .replace(".ESC.", ".RAW.");
    let (s, _, _) = send(r, signed(escaped.as_bytes())).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = send(r, signed(raw.as_bytes())).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["accepted"], 1);
    let (s, _, _) = send(
        r,
        post_webhook(raw.as_bytes(), Some(&sign(escaped.as_bytes()))),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "no re-serialization: the raw bytes are verified"
    );
}

/// Needs an app with `[http] body_limit_bytes = 2048`.
pub async fn body_limit(r: &Router) {
    let big = text_batch("BIG", 40, "x");
    assert!(big.len() > 2048);
    let (s, h, _) = send(r, signed(&big)).await;
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
    let (s, _, _) = send(r, req).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

/// Needs an app with `[rate_limit] per_minute = 3`.
pub async fn rate_limit(r: &Router) {
    let body = fixture("status_delivered_read.json");
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let (s, h, _) = send(r, signed(&body)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["x-ratelimit-limit"], "3");
        assert!(h.contains_key("x-ratelimit-reset"));
        remaining.push(h["x-ratelimit-remaining"].to_str().unwrap().to_owned());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let (s, h, b) = send(r, signed(&body)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert_eq!(h["x-ratelimit-limit"], "3");
    assert!(h.contains_key("x-ratelimit-reset"));
    assert_eq!(json(&b)["status"], 429);
    // health is not rate limited
    let (s, _, _) = send(r, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
}

pub async fn bad_json_and_unknown_field(r: &Router) {
    let (s, h, b) = send(r, signed(b"{not json")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(json(&b)["status"], 400);
    let (s, _, b) = send(r, signed(&fixture("unknown_field.json"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["ignored"], 1);
    assert_eq!(json(&b)["accepted"], 0);
}
