//! The worker rides out a downstream outage by itself: a call an open breaker refuses, and a
//! failed half-open probe, snooze the message without spending an attempt; when the
//! downstream is back, every message is delivered, with no dead letter and no operator. A
//! poison message (the downstream fails it while its breaker is closed) still dead-letters
//! after its real attempts, and a message waiting longer than the horizon becomes a dead
//! letter too. In-memory stores, loopback fakes.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use common::fakes::{self, DownstreamLog, GraphLog};
use common::*;
use http::{Request, StatusCode};
use serde_json::Value;
use steadfast_webhook::assemble::App;
use steadfast_webhook::config::{Config, Overrides};

struct Env {
    app: App,
    router: Router,
    downstream: Arc<DownstreamLog>,
    _graph: Arc<GraphLog>,
}

/// Short backoffs: retries come quickly.
const FAST: &str = "backoff_initial_ms = 50\nbackoff_max_ms = 1000";

/// One service, `jobs`, whose breaker opens after 2 failed calls of 4 for `open_seconds`;
/// `worker` holds the `[worker]` backoff keys (and any other).
async fn env(open_seconds: u64, worker: &str) -> Env {
    let (down_url, downstream) = fakes::start_downstream().await;
    let (graph_url, graph) = fakes::start_graph().await;
    let toml = format!(
        r#"
[whatsapp]
app_secret = "{SECRET}"
verify_token = "{VERIFY_TOKEN}"
access_token = "test-access-token"
graph_api_url = "{graph_url}"
[admin]
token = "{ADMIN_TOKEN}"
[storage]
backend = "memory"
[worker]
poll_interval_ms = 20
max_attempts = 3
{worker}
[[services]]
name = "jobs"
endpoints = ["{down_url}/jobs"]
keywords = ["jobs"]
breaker = {{ failure_rate_percent = 50.0, open_seconds = {open_seconds}, window_size = 4, minimum_calls = 2 }}
[routing]
default_service = "jobs"
"#
    );
    let config = Config::from_toml(&toml, &Default::default(), &Overrides::default()).unwrap();
    let app = App::build(config).await.unwrap();
    let router = app.router();
    Env {
        app,
        router,
        downstream,
        _graph: graph,
    }
}

impl Env {
    async fn admin(&self, method: &str, path: &str) -> Value {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let (s, _, b) = send(&self.router, req).await;
        assert_eq!(s, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&b));
        json(&b)
    }

    async fn messages(&self, state: &str) -> Vec<Value> {
        self.admin("GET", &format!("/admin/dlq?state={state}&limit=500"))
            .await["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `n` messages (at most 10) from `n` senders, in one delivery.
    async fn deliver(&self, n: usize, prefix: &str) {
        let body = text_batch(prefix, n, "jobs please");
        let (s, _, b) = send(&self.router, signed(&body)).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        assert_eq!(json(&b)["accepted"], n);
    }
}

fn snoozes(m: &Value) -> usize {
    m["errors"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["snoozed"] == true).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_ridden_out_without_dead_letters_or_an_operator() {
    let e = env(1, FAST).await;
    e.downstream.fail_with.store(503, Ordering::SeqCst);
    e.deliver(8, "OUT").await;
    // The breaker opens after the first failed calls; from then on the messages wait behind
    // it, snoozed, their attempts untouched.
    eventually(
        "several messages snoozed behind the open breaker",
        async || {
            let waiting = [e.messages("retrying").await, e.messages("pending").await].concat();
            waiting.iter().filter(|m| snoozes(m) > 0).count() >= 4
        },
    )
    .await;
    // Long enough for three attempts each if refusals counted: still no dead letter.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        e.messages("dead").await.is_empty(),
        "no dead letter during the outage"
    );
    for m in [e.messages("retrying").await, e.messages("pending").await].concat() {
        let real = m["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["snoozed"] != true)
            .count() as u64;
        assert!(real < 3, "at most 2 real attempts before recovery: {m}");
        assert!(m["attempts"].as_u64().unwrap() <= real + 1, "{m}");
    }
    e.downstream.fail_with.store(0, Ordering::SeqCst);
    eventually("every message delivered after recovery", async || {
        e.downstream.total_delivered() == 8
    })
    .await;
    assert!(e.messages("dead").await.is_empty(), "no operator needed");
    e.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_past_the_horizon_dead_letters_and_one_replay_delivers() {
    let e = env(1, &format!("{FAST}\nretry_horizon_seconds = 1")).await;
    e.downstream.fail_with.store(503, Ordering::SeqCst);
    e.deliver(4, "HOR").await;
    eventually("all four dead after the horizon", async || {
        e.messages("dead").await.len() == 4
    })
    .await;
    let dead = e.messages("dead").await;
    assert!(
        dead.iter().all(|m| m["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "horizon_passed")),
        "{dead:?}"
    );
    e.downstream.fail_with.store(0, Ordering::SeqCst);
    let r = e.admin("POST", "/admin/breakers/jobs/reset").await;
    assert!(r.is_object());
    let r = e.admin("POST", "/admin/dlq/replay").await;
    assert_eq!(r["replayed"], 4);
    eventually("the replay delivered all four", async || {
        e.downstream.total_delivered() == 4
    })
    .await;
    e.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_after_processing_is_a_duplicate_and_reaches_nobody() {
    // The queue remembers a done message's key (no separate processed marker): Meta's retry
    // of a delivery that was already processed is answered as a duplicate and stored nowhere.
    let e = env(60, FAST).await;
    let body = text_batch("AGAIN", 3, "jobs please");
    let (s, _, b) = send(&e.router, signed(&body)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["accepted"], 3);
    eventually("processed", async || e.downstream.total_delivered() == 3).await;
    eventually("acked", async || e.messages("done").await.len() == 3).await;
    let (s, _, b) = send(&e.router, signed(&body)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            json(&b)["accepted"].as_u64(),
            json(&b)["duplicates"].as_u64()
        ),
        (Some(0), Some(3))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(e.downstream.total_delivered(), 3, "nothing processed twice");
    e.app.shutdown().await;
}

/// One message that failed its first attempt (through a closed breaker: one failure does not
/// open it) and would now wait out a one-minute backoff; the downstream is fixed.
async fn one_retrying(prefix: &str) -> (Env, String) {
    let e = env(60, "backoff_initial_ms = 60000\nbackoff_max_ms = 60000").await;
    e.downstream.fail_with.store(503, Ordering::SeqCst);
    e.deliver(1, prefix).await;
    eventually("retrying", async || e.messages("retrying").await.len() == 1).await;
    e.downstream.fail_with.store(0, Ordering::SeqCst);
    let id = e.messages("retrying").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (e, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_can_run_a_retrying_message_now() {
    let (e, id) = one_retrying("NOW").await;
    let r = e.admin("POST", &format!("/admin/dlq/{id}/run-now")).await;
    assert_eq!(r["due_now"], 1);
    eventually("delivered long before its backoff", async || {
        e.downstream.total_delivered() == 1
    })
    .await;
    eventually("acked", async || e.messages("done").await.len() == 1).await;
    let done = e.messages("done").await;
    assert_eq!(done[0]["attempts"], 2, "run-now keeps the attempt count");
    e.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_can_replay_a_retrying_message() {
    let (e, id) = one_retrying("REPLAY").await;
    let r = e.admin("POST", &format!("/admin/dlq/{id}/replay")).await;
    assert_eq!(r["replayed"], 1);
    eventually("delivered long before its backoff", async || {
        e.downstream.total_delivered() == 1
    })
    .await;
    eventually("acked", async || e.messages("done").await.len() == 1).await;
    let done = e.messages("done").await;
    assert_eq!(done[0]["attempts"], 1, "replay resets the attempts");
    e.app.shutdown().await;
}

/// `n` messages from one sender, in one delivery.
fn burst(prefix: &str, from: &str, n: usize) -> Vec<u8> {
    let mut v = json(&text_batch(prefix, n, "jobs please"));
    for m in v["entry"][0]["changes"][0]["value"]["messages"]
        .as_array_mut()
        .unwrap()
    {
        m["from"] = from.into();
    }
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_sender_takes_one_slot_and_others_go_past_it() {
    // Concurrency 4 and a slow downstream (300 ms a call): one sender's 16 messages run one at
    // a time, in one slot, and another sender's message reaches the downstream within about
    // one call, not after the burst.
    let e = env(60, &format!("{FAST}\nconcurrency = 4")).await;
    e.downstream.delay_ms.store(300, Ordering::SeqCst);
    let (s, _, _) = send(&e.router, signed(&burst("BUSY", "250788000900", 16))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = send(&e.router, signed(&burst("OTHER", "250788000901", 1))).await;
    assert_eq!(s, StatusCode::OK);
    eventually("the other sender's message delivered", async || {
        e.downstream.delivered("wamid.OTHER.0") == 1
    })
    .await;
    let busy_done = (0..16)
        .filter(|i| e.downstream.delivered(&format!("wamid.BUSY.{i}")) == 1)
        .count();
    assert!(
        busy_done <= 2,
        "the other sender waited for {busy_done} of the busy sender's calls"
    );
    // The busy sender's messages reached the downstream in order, one at a time.
    eventually("the burst delivered", async || {
        e.downstream.total_delivered() == 17
    })
    .await;
    let order: Vec<String> = e
        .downstream
        .requests
        .lock()
        .iter()
        .filter_map(|(_, _, b)| b["message_id"].as_str().map(str::to_owned))
        .filter(|id| id.starts_with("wamid.BUSY."))
        .collect();
    let expected: Vec<String> = (0..16).map(|i| format!("wamid.BUSY.{i}")).collect();
    assert_eq!(order, expected);
    e.app.shutdown().await;
}
