//! Outbound calls on the in-memory stores, against loopback fakes: redirects are not
//! followed, reply bodies are capped, reply texts are cut to WhatsApp's 4096 characters.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use common::fakes::{self, GraphLog, Script};
use common::*;
use http::{Request, StatusCode};
use serde_json::Value;
use steadfast_webhook::assemble::App;
use steadfast_webhook::config::{Config, Overrides};

struct Env {
    app: App,
    router: Router,
    graph: Arc<GraphLog>,
}

/// The service in demo mode (memory stores) with one service, `jobs`, at `downstream`, and
/// replies sent to a fake Graph API; `[worker]` keys in `extra`.
async fn env(downstream: &str, extra: &str) -> Env {
    let (graph_url, graph) = fakes::start_graph().await;
    env_with_graph(downstream, &graph_url, graph, extra).await
}

/// As [`env`], with replies sent to `graph_url` (`graph` is what the test inspects).
async fn env_with_graph(
    downstream: &str,
    graph_url: &str,
    graph: Arc<GraphLog>,
    extra: &str,
) -> Env {
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
backoff_initial_ms = 50
backoff_max_ms = 200
max_attempts = 3
{extra}
[[services]]
name = "jobs"
endpoints = ["{downstream}"]
keywords = ["jobs"]
[routing]
default_service = "jobs"
"#
    );
    let config = Config::from_toml(&toml, &Default::default(), &Overrides::default()).unwrap();
    let app = App::build(config).await.unwrap();
    let router = app.router();
    Env { app, router, graph }
}

impl Env {
    async fn admin(&self, path: &str) -> Value {
        let req = Request::get(path)
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let (s, _, b) = send(&self.router, req).await;
        assert_eq!(s, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&b));
        json(&b)
    }

    async fn deliver(&self, id: &str, from: &str, text: &str) {
        let (s, _, b) = send(&self.router, signed(&text_message(id, from, text))).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        assert_eq!(json(&b)["accepted"], 1);
    }

    /// The one dead letter, once there is one.
    async fn dead_letter(&self) -> Value {
        eventually("a dead letter", async || {
            self.admin("/admin/dlq").await["messages"]
                .as_array()
                .is_some_and(|m| m.len() == 1)
        })
        .await;
        self.admin("/admin/dlq").await["messages"][0].clone()
    }
}

/// A text message from `from`, timestamped now.
fn text_message(id: &str, from: &str, text: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("text_message.json")).unwrap();
    let value = &mut v["entry"][0]["changes"][0]["value"];
    value["contacts"][0]["wa_id"] = from.into();
    let m = &mut value["messages"][0];
    m["id"] = id.into();
    m["from"] = from.into();
    m["timestamp"] = chrono::Utc::now().timestamp().to_string().into();
    m["text"]["body"] = text.into();
    serde_json::to_vec(&v).unwrap()
}

/// The attempts' error kinds of a dead letter.
fn kinds(dead: &Value) -> Vec<String> {
    dead["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_redirect_is_not_followed_and_dead_letters_at_once() {
    // The redirect's target: a working downstream that would answer the user.
    let (target, target_log) = fakes::start_downstream().await;
    let (redirecting, hits) = start(Script::Redirect(format!("{target}/jobs"))).await;
    let e = env(&redirecting, "").await;
    e.deliver("wamid.REDIR.1", "250788000101", "jobs in Kigali?")
        .await;

    let dead = e.dead_letter().await;
    assert_eq!(dead["state"], "dead");
    assert_eq!(
        kinds(&dead),
        ["downstream_redirect"],
        "one attempt: not retried"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(
        target_log.requests.lock().is_empty(),
        "the user's number, text and history never reach the redirect's target"
    );
    assert!(
        e.graph.texts_to("250788000101").is_empty(),
        "no reply from the target reaches the user"
    );
    let conv = e.admin("/admin/conversations/250788000101").await;
    assert_eq!(conv["state"], "fallback", "the conversation's failure path");
    let reason = conv["context"]["last_error"].as_str().unwrap();
    assert!(reason.contains("redirects are not followed"), "{reason}");
    assert!(
        !reason.contains(&target),
        "the Location is not echoed: {reason}"
    );
    e.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_api_redirect_is_not_followed_and_dead_letters() {
    let (graph_target, graph_target_log) = fakes::start_graph().await;
    let (redirecting_graph, hits) = start(Script::Redirect(format!(
        "{graph_target}/106540352242922/messages"
    )))
    .await;
    let (downstream, _) = fakes::start_downstream().await;
    let e = env_with_graph(
        &format!("{downstream}/jobs"),
        &redirecting_graph,
        graph_target_log.clone(),
        "",
    )
    .await;
    e.deliver("wamid.GREDIR.1", "250788000102", "jobs").await;
    let dead = e.dead_letter().await;
    assert_eq!(kinds(&dead), ["graph_redirect"], "one attempt: not retried");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(
        e.graph.sent.lock().is_empty(),
        "the reply and the token never reach the redirect's target"
    );
    e.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_reply_is_refused_and_nothing_of_it_is_stored() {
    for (n, declared) in [(1, true), (2, false)] {
        let (url, hits) = start(Script::Huge {
            bytes: 20 * 1024 * 1024,
            declared,
        })
        .await;
        let e = env(&url, "").await;
        let from = format!("25078800020{n}");
        e.deliver(&format!("wamid.HUGE.{n}"), &from, "jobs").await;
        let dead = e.dead_letter().await;
        assert_eq!(
            kinds(&dead),
            ["downstream_too_large"],
            "declared: {declared}; one attempt, not retried"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert!(e.graph.texts_to(&from).is_empty(), "nothing sent");
        // The conversation holds the user's message only: no reply, no 20 MB.
        let conv = e.admin(&format!("/admin/conversations/{from}")).await;
        let history = conv["context"]["last_messages"].as_array().unwrap();
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(history[0]["text"], "jobs");
        assert!(serde_json::to_vec(&conv).unwrap().len() < 16 * 1024);
        e.app.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_at_most_max_response_bytes_is_read_and_over_it_refused() {
    // 2 KiB cap: a 1 KiB reply passes, a 3 KiB one does not.
    let (small, _) = start(Script::Reply("y".repeat(1024))).await;
    let e = env(&small, "max_response_bytes = 2048").await;
    e.deliver("wamid.CAP.1", "250788000301", "jobs").await;
    eventually("reply sent", async || {
        !e.graph.texts_to("250788000301").is_empty()
    })
    .await;
    assert_eq!(e.graph.texts_to("250788000301")[0].len(), 1024);
    e.app.shutdown().await;

    let (big, _) = start(Script::Reply("y".repeat(3 * 1024))).await;
    let e = env(&big, "max_response_bytes = 2048").await;
    e.deliver("wamid.CAP.2", "250788000302", "jobs").await;
    assert_eq!(kinds(&e.dead_letter().await), ["downstream_too_large"]);
    e.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5000_character_reply_is_sent_and_recorded_as_its_first_4096() {
    // Two-byte characters: the cut is by characters, not bytes (10 000 bytes under the
    // 64 KiB response cap).
    let reply: String = "é".repeat(4000) + &"z".repeat(1000);
    let (url, _) = start(Script::Reply(reply.clone())).await;
    let e = env(&url, "").await;
    e.deliver("wamid.LONG.1", "250788000401", "jobs").await;
    eventually("reply sent", async || {
        !e.graph.texts_to("250788000401").is_empty()
    })
    .await;
    let sent = e.graph.texts_to("250788000401");
    assert_eq!(sent.len(), 1);
    let expected: String = reply.chars().take(4096).collect();
    assert_eq!(sent[0].chars().count(), 4096);
    assert_eq!(sent[0], expected);
    eventually("reply recorded", async || {
        e.admin("/admin/conversations/250788000401").await["context"]["last_messages"]
            .as_array()
            .is_some_and(|m| m.len() == 2)
    })
    .await;
    let conv = e.admin("/admin/conversations/250788000401").await;
    assert_eq!(conv["context"]["last_messages"][1]["text"], expected);
    e.app.shutdown().await;
}

async fn start(script: Script) -> (String, Arc<AtomicUsize>) {
    fakes::start_scripted(script).await
}
