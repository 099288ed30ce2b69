//! `run` end to end against in-process servers: the bare baseline, and a small stand-in webhook
//! that verifies signatures and forwards each message to the fakes. Counts only, never timings.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::Sha256;
use steadfast_loadgen::{
    Fakes, FakesConfig, FakesMode, GeneratorConfig, LoadConfig, LoadConfigBuilder, Report,
    RunConfig, baseline_router,
};

const SECRET: &str = "e2e-secret";

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

fn load(target: &str) -> LoadConfigBuilder {
    LoadConfig::builder()
        .target(target)
        .rate(150.0)
        .duration(Duration::from_millis(800))
        .concurrency(8)
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .generator(GeneratorConfig {
            app_secret: SECRET.into(),
            mix: "text=4,interactive=2,batch=2,status=1".parse().unwrap(),
            ..GeneratorConfig::default()
        })
}

async fn run(load: LoadConfig, fakes: FakesMode, strict: bool) -> Report {
    let mut rc = RunConfig::new(load);
    rc.fakes = fakes;
    rc.drain_timeout = Duration::from_secs(5);
    rc.drain_settle = Duration::ZERO;
    rc.strict = strict;
    steadfast_loadgen::run(rc).await.unwrap()
}

/// A run against the baseline, which delivers nothing: no point waiting for deliveries.
async fn run_without_drain(load: LoadConfig) -> Report {
    let mut rc = RunConfig::new(load);
    rc.drain_timeout = Duration::ZERO;
    rc.drain_settle = Duration::ZERO;
    steadfast_loadgen::run(rc).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_accepts_everything_and_nothing_is_delivered() {
    let target = serve(baseline_router()).await;
    let mut rc = RunConfig::new(load(&target).duplicate_share(0.3).build().unwrap());
    rc.drain_timeout = Duration::from_millis(200);
    rc.drain_settle = Duration::ZERO;
    let r = steadfast_loadgen::run(rc).await.unwrap();
    let s = &r.send;
    assert!(s.payloads > 10, "sent {}", s.payloads);
    assert!(s.duplicate_sends > 0);
    assert_eq!(s.sends_accepted, s.payloads + s.duplicate_sends);
    assert_eq!(s.sends_never_accepted, 0);
    assert_eq!(s.status.ok_200, s.sends_accepted);
    assert_eq!(s.requests, s.status.ok_200);
    assert_eq!(s.retries, 0);
    assert_eq!(s.latency.count, s.requests);
    assert_eq!(s.latency_accepted.count, s.status.ok_200);
    let d = r.delivery.as_ref().unwrap();
    assert!(d.messages_sent > 0);
    assert_eq!(d.messages_accepted, d.messages_sent);
    // The baseline forwards nothing: every accepted message is lost, and the run fails.
    assert_eq!(d.lost, d.messages_accepted);
    assert_eq!(d.delivered, 0);
    assert!(!r.drained);
    assert!(!r.ok);
    // The report serializes with the fields drill scripts read.
    let v = serde_json::to_value(&r).unwrap();
    for key in [
        "send",
        "delivery",
        "fakes",
        "ok",
        "config",
        "drained",
        "drain_secs",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["delivery"]["lost"], json!(d.lost));
}

/// A stand-in for the webhook: checks the signature, answers 503 to every `fail_every`-th
/// request, forwards each message (once, or every time without `dedup`) to the downstream and
/// the reply to the Graph API, then answers 200 (503 when the downstream failed).
struct Stub {
    client: reqwest::Client,
    downstream: String,
    graph: String,
    dedup: bool,
    fail_every: u64,
    requests: AtomicU64,
    answered_503: AtomicU64,
    bad_signatures: AtomicU64,
    forwarded_again: AtomicU64,
    downstream_failures: AtomicU64,
    seen: Mutex<HashSet<String>>,
}

async fn stub(State(s): State<Arc<Stub>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = s.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let sig = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok());
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    if sig.is_none_or(|sig| mac.verify_slice(&sig).is_err()) {
        s.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::FORBIDDEN;
    }
    if s.fail_every > 0 && n % s.fail_every == 0 {
        s.answered_503.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let doc: Value = serde_json::from_slice(&body).unwrap();
    for entry in doc["entry"].as_array().unwrap() {
        for change in entry["changes"].as_array().unwrap() {
            let value = &change["value"];
            let phone_id = value["metadata"]["phone_number_id"].as_str().unwrap();
            for m in value["messages"].as_array().into_iter().flatten() {
                let id = m["id"].as_str().unwrap().to_owned();
                let first = s.seen.lock().insert(id.clone());
                if !first {
                    if s.dedup {
                        continue;
                    }
                    s.forwarded_again.fetch_add(1, Ordering::SeqCst);
                }
                let call = json!({
                    "message_id": id, "from": m["from"], "type": m["type"],
                    "text": m["text"]["body"], "conversation_state": "idle",
                    "correlation_id": "e2e", "history": [],
                });
                let answer = s
                    .client
                    .post(format!("{}/ai-agent/handle", s.downstream))
                    .header("idempotency-key", &id)
                    .json(&call)
                    .send()
                    .await
                    .unwrap();
                if !answer.status().is_success() {
                    // Not processed: forget it and let the sender retry.
                    s.seen.lock().remove(&id);
                    s.downstream_failures.fetch_add(1, Ordering::SeqCst);
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let reply: Value = answer.json().await.unwrap();
                let out = json!({
                    "messaging_product": "whatsapp", "to": m["from"], "type": "text",
                    "text": { "body": reply["reply"] },
                });
                let status = s
                    .client
                    .post(format!("{}/{phone_id}/messages", s.graph))
                    .json(&out)
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, StatusCode::OK);
            }
        }
    }
    StatusCode::OK
}

async fn start_stub(fakes: &Fakes, dedup: bool, fail_every: u64) -> (String, Arc<Stub>) {
    let s = Arc::new(Stub {
        client: reqwest::Client::new(),
        downstream: fakes.downstream_url(),
        graph: fakes.graph_url(),
        dedup,
        fail_every,
        requests: AtomicU64::new(0),
        answered_503: AtomicU64::new(0),
        bad_signatures: AtomicU64::new(0),
        forwarded_again: AtomicU64::new(0),
        downstream_failures: AtomicU64::new(0),
        seen: Mutex::new(HashSet::new()),
    });
    let url = serve(Router::new().fallback(stub).with_state(Arc::clone(&s))).await;
    (url, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_503s_end_accepted_and_every_message_is_delivered_once() {
    let fakes = Fakes::start(FakesConfig::default()).await.unwrap();
    let (target, stub) = start_stub(&fakes, true, 4).await;
    let load = load(&target).duplicate_share(0.2).build().unwrap();
    // Through the HTTP stats API, as a drill script using `fakes` would.
    let r = run(load, FakesMode::External(fakes.downstream_url()), true).await;
    let s = &r.send;
    assert_eq!(stub.bad_signatures.load(Ordering::SeqCst), 0);
    assert!(stub.answered_503.load(Ordering::SeqCst) > 0);
    assert_eq!(
        s.status.unavailable_503,
        stub.answered_503.load(Ordering::SeqCst)
    );
    assert_eq!(s.requests, stub.requests.load(Ordering::SeqCst));
    assert_eq!(s.retries, s.status.unavailable_503);
    assert_eq!(s.latency.count, s.requests);
    assert_eq!(s.latency_accepted.count, s.sends_accepted);
    assert_eq!(s.sends_never_accepted, 0);
    assert_eq!(s.sends_accepted, s.payloads + s.duplicate_sends);
    let d = r.delivery.as_ref().unwrap();
    assert_eq!(d.lost, 0);
    assert_eq!(d.delivered, d.messages_sent);
    assert_eq!(d.duplicate_deliveries, 0);
    assert_eq!(d.unknown_ids_delivered, 0);
    let f = r.fakes.as_ref().unwrap();
    assert_eq!(f.graph_replies, d.delivered);
    assert_eq!(f.idempotency_key_mismatches, 0);
    assert_eq!(
        f.deliveries_by_path.get("/ai-agent/handle"),
        Some(&d.delivered)
    );
    // Delivery times come from the fakes' clock, in order, and give the backlog's lag.
    assert!(f.first_delivery_unix_ms > 0);
    assert!(f.last_new_delivery_unix_ms >= f.first_delivery_unix_ms);
    assert!(s.send_ended_unix_ms > 0);
    assert!(r.last_delivery_after_load_secs.is_some());
    assert!(r.drained);
    assert!(r.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_messages_stops_the_load_after_that_many_messages() {
    let target = serve(baseline_router()).await;
    let batches = GeneratorConfig {
        app_secret: SECRET.into(),
        mix: "batch=1".parse().unwrap(),
        batch_size: 5,
        ..GeneratorConfig::default()
    };
    let load = load(&target)
        .rate(0.0)
        .duration(Duration::from_secs(30))
        .duplicate_share(0.0)
        .generator(batches)
        .max_messages(Some(12))
        .build()
        .unwrap();
    let r = run_without_drain(load).await;
    // 5 + 5 + 5: the send that reaches 12 is the last one started.
    assert_eq!(r.send.payloads, 3);
    assert_eq!(r.delivery.as_ref().unwrap().messages_sent, 15);
    assert_eq!(r.config["max_messages"], json!(12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_per_sec_paces_by_messages_not_sends() {
    let target = serve(baseline_router()).await;
    let batches = GeneratorConfig {
        app_secret: SECRET.into(),
        mix: "batch=1".parse().unwrap(),
        batch_size: 5,
        ..GeneratorConfig::default()
    };
    // --rate 1000 would start ~1000 sends in the second; 50 messages/s in batches of 5 is one
    // send every 100 ms, so at most 10 (the schedule never runs ahead).
    let load = load(&target)
        .rate(1000.0)
        .messages_per_sec(Some(50.0))
        .duration(Duration::from_secs(1))
        .duplicate_share(0.0)
        .generator(batches)
        .build()
        .unwrap();
    let r = run_without_drain(load).await;
    assert!((1..=10).contains(&r.send.payloads), "{}", r.send.payloads);
    assert_eq!(
        r.delivery.as_ref().unwrap().messages_sent,
        r.send.payloads * 5
    );
    assert_eq!(r.config["messages_per_sec"], json!(50.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_deliveries_are_counted() {
    let fakes = Fakes::start(FakesConfig::default()).await.unwrap();
    let (target, stub) = start_stub(&fakes, false, 0).await;
    let load = load(&target).duplicate_share(0.5).build().unwrap();
    let r = run(load, FakesMode::External(fakes.downstream_url()), false).await;
    let d = r.delivery.as_ref().unwrap();
    assert!(r.send.duplicate_sends > 0);
    assert!(d.duplicate_deliveries > 0);
    assert_eq!(
        d.duplicate_deliveries,
        stub.forwarded_again.load(Ordering::SeqCst)
    );
    assert_eq!(d.lost, 0);
    // Duplicates alone do not fail a run; losses do.
    assert!(r.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_never_accepts_gives_up_and_reports_never_accepted() {
    let fakes = Fakes::start(FakesConfig::default()).await.unwrap();
    let (target, stub) = start_stub(&fakes, true, 1).await;
    let load = load(&target)
        .rate(40.0)
        .duration(Duration::from_millis(300))
        .give_up_after(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut rc = RunConfig::new(load);
    rc.fakes = FakesMode::External(fakes.downstream_url());
    rc.drain_timeout = Duration::from_millis(100);
    rc.strict = true;
    let r = steadfast_loadgen::run(rc).await.unwrap();
    let s = &r.send;
    assert!(s.payloads > 0);
    assert_eq!(s.sends_accepted, 0);
    assert_eq!(s.sends_never_accepted, s.payloads + s.duplicate_sends);
    assert_eq!(
        s.status.unavailable_503,
        stub.requests.load(Ordering::SeqCst)
    );
    assert!(s.retries > 0);
    let d = r.delivery.as_ref().unwrap();
    assert_eq!(d.messages_accepted, 0);
    assert_eq!(d.lost, 0);
    assert_eq!(d.messages_never_accepted, d.messages_sent);
    // Nothing lost, but --strict also fails on messages never accepted.
    assert!(!r.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_retried_then_given_up() {
    // A port with nothing listening: bind, read the port, close.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let load = load(&format!("http://{addr}"))
        .rate(20.0)
        .duration(Duration::from_millis(200))
        .give_up_after(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut rc = RunConfig::new(load);
    rc.drain_timeout = Duration::ZERO;
    let r = steadfast_loadgen::run(rc).await.unwrap();
    assert!(r.send.status.connection_errors > 0);
    assert_eq!(r.send.status.ok_200, 0);
    assert_eq!(
        r.send.sends_never_accepted,
        r.send.payloads + r.send.duplicate_sends
    );
    assert_eq!(r.send.requests, r.send.status.connection_errors);
    assert!(r.ok, "nothing accepted, nothing lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_downstream_fails_on_command_and_records_deliveries() {
    let fakes = Fakes::start(FakesConfig::default()).await.unwrap();
    let c = reqwest::Client::new();
    let base = fakes.downstream_url();
    let call = |key: &'static str| {
        c.post(format!("{base}/jobs/handle"))
            .header("idempotency-key", key)
            .json(&json!({ "message_id": "wamid.A" }))
            .send()
    };
    assert_eq!(
        call("wamid.A")
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
        json!({ "reply": "ok" })
    );
    c.post(format!("{base}/_control/fail"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        call("wamid.A").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    c.post(format!("{base}/_control/recover"))
        .send()
        .await
        .unwrap();
    assert_eq!(call("other").await.unwrap().status(), StatusCode::OK);
    let bad = c
        .post(format!("{base}/x"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let stats: Value = c
        .get(format!("{base}/_stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["deliveries_total"], 2);
    assert_eq!(stats["unique_messages"], 1);
    assert_eq!(stats["duplicate_deliveries"], 1);
    assert_eq!(stats["failed_requests"], 1);
    assert_eq!(stats["bad_requests"], 1);
    assert_eq!(stats["idempotency_key_mismatches"], 1);
    assert_eq!(stats["deliveries_by_path"]["/jobs/handle"], 2);
    assert_eq!(stats["failing"], false);
    // Only the first delivery of wamid.A was new: both times are that one delivery's.
    assert!(stats["first_delivery_unix_ms"].as_u64().unwrap() > 0);
    assert_eq!(
        stats["last_new_delivery_unix_ms"],
        stats["first_delivery_unix_ms"]
    );
    let d: Value = c
        .get(format!("{base}/_stats/deliveries"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["deliveries"]["wamid.A"], 2);
    // The Graph API fake refuses what is not a text reply.
    let g = c
        .post(format!("{}/1/messages", fakes.graph_url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), StatusCode::BAD_REQUEST);
    c.post(format!("{base}/_control/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(fakes.state().stats().deliveries_total, 0);
    assert_eq!(fakes.state().stats().graph_bad_requests, 0);
    assert_eq!(fakes.state().stats().last_new_delivery_unix_ms, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_window_fails_the_downstream_then_recovers() {
    let fakes = Fakes::start(FakesConfig::default()).await.unwrap();
    let (target, stub) = start_stub(&fakes, true, 0).await;
    let load = load(&target)
        .rate(40.0)
        .duration(Duration::from_millis(600))
        .build()
        .unwrap();
    let mut rc = RunConfig::new(load);
    rc.fakes = FakesMode::External(fakes.downstream_url());
    // The downstream fails for the first 300 ms of the load, then recovers.
    rc.downstream_fail_window = Some((Duration::ZERO, Duration::from_millis(300)));
    rc.drain_timeout = Duration::from_secs(5);
    rc.drain_settle = Duration::ZERO;
    let r = steadfast_loadgen::run(rc).await.unwrap();
    let f = r.fakes.as_ref().unwrap();
    assert!(f.failed_requests > 0);
    assert_eq!(
        f.failed_requests,
        stub.downstream_failures.load(Ordering::SeqCst)
    );
    assert!(r.send.status.unavailable_503 > 0);
    assert!(!f.failing);
    // Retried like Meta retries: everything accepted in the end and delivered exactly once.
    let d = r.delivery.as_ref().unwrap();
    assert_eq!(d.messages_never_accepted, 0);
    assert_eq!(d.lost, 0);
    assert_eq!(d.duplicate_deliveries, 0);
    assert!(r.ok);
}
