//! The service on the real Postgres + Redis (steadfast-testkit isolates each test in its own
//! schema and key prefix), with a fake downstream and a fake Graph API on loopback ports.
//! Fault tests put a cuttable TCP proxy in front of Postgres or Redis.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use common::fakes::{DownstreamLog, GraphLog};
use common::proxy::Proxy;
use common::*;
use http::{Request, StatusCode};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use steadfast_testkit::{PgSchema, RedisPrefix};
use steadfast_webhook::assemble::App;
use steadfast_webhook::config::{Config, DEFAULT_FALLBACK_REPLY, Overrides};

struct Env {
    app: App,
    router: Router,
    downstream: Arc<DownstreamLog>,
    graph: Arc<GraphLog>,
    pg_proxy: Option<Proxy>,
    redis_proxy: Option<Proxy>,
    toml: String,
    _pg: PgSchema,
    _redis: RedisPrefix,
}

#[derive(Default)]
struct Opts {
    extra: &'static str,
    proxy_pg: bool,
    proxy_redis: bool,
    /// The proxied pool's acquire timeout (default 2 s).
    pg_acquire_timeout: Option<Duration>,
    /// The proxied pool's size (default 8).
    pg_pool_size: Option<u32>,
}

async fn env(opts: Opts) -> Option<Env> {
    let pg = steadfast_testkit::postgres().await?;
    let redis = steadfast_testkit::redis().await?;
    let (down_url, downstream) = fakes::start_downstream().await;
    let (graph_url, graph) = fakes::start_graph().await;

    let (pool, pg_proxy) = if opts.proxy_pg {
        let base: PgConnectOptions = steadfast_testkit::database_url().parse().unwrap();
        let proxy = Proxy::start(&format!("{}:{}", base.get_host(), base.get_port())).await;
        let pool = PgPoolOptions::new()
            .max_connections(opts.pg_pool_size.unwrap_or(8))
            .acquire_timeout(opts.pg_acquire_timeout.unwrap_or(Duration::from_secs(2)))
            .connect_with(pg.connect_options().host("127.0.0.1").port(proxy.port))
            .await
            .unwrap();
        (pool, Some(proxy))
    } else {
        (pg.pool().clone(), None)
    };
    let (redis_url, redis_proxy) = if opts.proxy_redis {
        let url = steadfast_testkit::redis_url();
        let hostport = url.trim_start_matches("redis://").trim_end_matches('/');
        let proxy = Proxy::start(hostport).await;
        (format!("redis://127.0.0.1:{}", proxy.port), Some(proxy))
    } else {
        (steadfast_testkit::redis_url(), None)
    };
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
database_url = "{db}"
redis_url = "{redis_url}"
redis_prefix = "{prefix}"
[worker]
poll_interval_ms = 20
backoff_initial_ms = 50
backoff_max_ms = 200
max_attempts = 3
[conversation]
sweep_interval_seconds = 3600
[[services]]
name = "jobs"
endpoints = ["{down_url}/jobs"]
keywords = ["jobs", "job"]
[[services]]
name = "ai-agent"
endpoints = ["{down_url}/ai-agent"]
breaker = "ai_agent"
[routing]
default_service = "ai-agent"
{extra}
"#,
        db = steadfast_testkit::database_url(),
        prefix = redis.key("seen"),
        extra = opts.extra,
    );
    let config = Config::from_toml(&toml, &Default::default(), &Overrides::default()).unwrap();
    let app = App::build_with_pool(config, Some(pool)).await.unwrap();
    let router = app.router();
    Some(Env {
        app,
        router,
        downstream,
        graph,
        pg_proxy,
        redis_proxy,
        toml,
        _pg: pg,
        _redis: redis,
    })
}

/// `/health`'s status and body.
async fn health(r: &Router) -> (StatusCode, Value) {
    let (s, _, b) = send(r, Request::get("/health").body(Body::empty()).unwrap()).await;
    (s, json(&b))
}

/// Polls `/health` until it answers `status` (15 s at most, a few of the background checks'
/// refresh periods); returns the body.
async fn health_turns(r: &Router, status: StatusCode) -> Value {
    let mut last = Value::Null;
    eventually(&format!("/health answers {status}"), async || {
        let (s, b) = health(r).await;
        last = b;
        s == status
    })
    .await;
    last
}

/// The check words `/health` may answer, and nothing of a driver's error text.
fn assert_no_error_text(body: &Value) {
    for (name, check) in body["checks"].as_object().unwrap() {
        assert!(check.get("error").is_none(), "{name}: {check}");
    }
    let text = body.to_string();
    for driver_word in ["pool", "timed out", "connection", "refused", "error"] {
        assert!(!text.to_lowercase().contains(driver_word), "{text}");
    }
}

impl Env {
    async fn admin(&self, method: &str, path: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let (s, _, b) = send(&self.router, req).await;
        (s, if b.is_empty() { Value::Null } else { json(&b) })
    }

    /// Nothing pending, running or retrying in the queue.
    async fn queue_idle(&self) -> bool {
        let stats = self.app.state().ingestor.queue().stats().await.unwrap();
        stats.iter().all(|s| {
            use steadfast_dlq::State::*;
            s.count(Pending) + s.count(Running) + s.count(Retrying) == 0
        })
    }

    /// Another instance on the same Postgres schema and Redis prefix.
    async fn second_instance(&self) -> App {
        let config =
            Config::from_toml(&self.toml, &Default::default(), &Overrides::default()).unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(self._pg.connect_options())
            .await
            .unwrap();
        App::build_with_pool(config, Some(pool)).await.unwrap()
    }

    async fn stop(self) {
        self.app.shutdown().await;
    }
}

fn text_message(id: &str, from: &str, text: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("text_message.json")).unwrap();
    let value = &mut v["entry"][0]["changes"][0]["value"];
    value["contacts"][0]["wa_id"] = from.into();
    let m = &mut value["messages"][0];
    m["id"] = id.into();
    m["from"] = from.into();
    m["text"]["body"] = text.into();
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_surface() {
    let Some(e) = env(Opts::default()).await else {
        return;
    };
    surface::handshake(&e.router).await;
    surface::signatures(&e.router, "PG").await;
    surface::bad_json_and_unknown_field(&e.router).await;
    e.stop().await;
    let Some(e) = env(Opts {
        extra: "[http]\nbody_limit_bytes = 2048",
        ..Opts::default()
    })
    .await
    else {
        return;
    };
    surface::body_limit(&e.router).await;
    e.stop().await;
    let Some(e) = env(Opts {
        extra: "[rate_limit]\nper_minute = 3",
        ..Opts::default()
    })
    .await
    else {
        return;
    };
    surface::rate_limit(&e.router).await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_goes_downstream_and_the_reply_to_the_graph_api() {
    let Some(e) = env(Opts::default()).await else {
        return;
    };
    let id = "wamid.FLOW.1";
    let body = text_message(id, "250788123456", "any jobs in Kigali?");
    let req = Request::post("/webhook")
        .header("x-hub-signature-256", sign(&body))
        .header("x-request-id", "corr-flow-1")
        .body(Body::from(body))
        .unwrap();
    let (s, _, b) = send(&e.router, req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["accepted"], 1);
    eventually("delivery downstream", async || {
        e.downstream.delivered(id) == 1
    })
    .await;
    eventually("reply sent", async || {
        !e.graph.texts_to("250788123456").is_empty()
    })
    .await;

    let (service, key, req_body) = e.downstream.requests.lock()[0].clone();
    assert_eq!(service, "jobs");
    assert_eq!(key.as_deref(), Some(id), "Idempotency-Key is the wamid");
    let mut keys: Vec<_> = req_body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "conversation_state",
            "correlation_id",
            "from",
            "history",
            "message_id",
            "text",
            "type"
        ]
    );
    assert_eq!(req_body["from"], "250788123456");
    assert_eq!(req_body["type"], "text");
    assert_eq!(req_body["text"], "any jobs in Kigali?");
    assert_eq!(req_body["correlation_id"], "corr-flow-1");
    assert_eq!(req_body["conversation_state"], "agent_active");
    assert_eq!(req_body["history"][0]["text"], "any jobs in Kigali?");

    let (path, auth, out) = e.graph.sent.lock()[0].clone();
    assert_eq!(path, "/106540352242922/messages");
    assert_eq!(auth.as_deref(), Some("Bearer test-access-token"));
    assert_eq!(
        out,
        serde_json::json!({"messaging_product": "whatsapp", "to": "250788123456", "type": "text",
                           "text": {"body": "jobs got: any jobs in Kigali?"}})
    );

    // The conversation is persisted, with the reply in its history.
    eventually("reply recorded", async || {
        e.admin("GET", "/admin/conversations/250788123456").await.1["context"]["last_messages"]
            .as_array()
            .is_some_and(|m| m.len() == 2)
    })
    .await;
    let (s, conv) = e.admin("GET", "/admin/conversations/250788123456").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(conv["state"], "agent_active");
    assert_eq!(conv["context"]["intent"], "jobs");
    // A second message without a keyword stays with the conversation's service.
    let body = text_message("wamid.FLOW.2", "250788123456", "tomorrow morning");
    assert_eq!(send(&e.router, signed(&body)).await.0, StatusCode::OK);
    eventually("second delivery", async || {
        e.downstream.delivered("wamid.FLOW.2") == 1
    })
    .await;
    let last = e.downstream.requests.lock().last().cloned().unwrap();
    assert_eq!(last.0, "jobs");
    assert_eq!(last.2["history"].as_array().unwrap().len(), 3);

    // 30 idle minutes later the sweeper fires the state machine's timeout: back to idle.
    eventually("queue idle", async || e.queue_idle().await).await;
    let later = chrono::Utc::now() + chrono::Duration::minutes(31);
    assert_eq!(e.app.services().sweep(later).await.unwrap(), 1);
    let (_, conv) = e.admin("GET", "/admin/conversations/250788123456").await;
    assert_eq!(conv["state"], "idle");
    assert_eq!(
        conv["context"]["last_messages"].as_array().unwrap().len(),
        4,
        "history survives"
    );

    // Admin needs the token.
    let (s, _, _) = send(
        &e.router,
        Request::get("/admin/dlq").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_deliveries_reach_the_downstream_once() {
    let Some(e) = env(Opts::default()).await else {
        return;
    };
    let body = text_message("wamid.DUP.1", "250788000001", "jobs");
    // Meta retries and several subscribed apps: the same delivery at once...
    let results = futures::future::join_all((0..5).map(|_| send(&e.router, signed(&body)))).await;
    let mut accepted = 0;
    for (s, _, b) in &results {
        assert_eq!(*s, StatusCode::OK);
        accepted += json(b)["accepted"].as_u64().unwrap();
    }
    assert_eq!(accepted, 1, "the queue's dedup key admits one copy");
    eventually("delivered", async || {
        e.downstream.delivered("wamid.DUP.1") == 1
    })
    .await;
    eventually("queue idle", async || e.queue_idle().await).await;
    // ...and again after it was processed: the Redis fast path answers.
    for _ in 0..3 {
        let (s, _, b) = send(&e.router, signed(&body)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(json(&b)["duplicates"], 1);
    }
    eventually("queue idle", async || e.queue_idle().await).await;
    assert_eq!(e.downstream.delivered("wamid.DUP.1"), 1);
    assert_eq!(e.downstream.attempts("wamid.DUP.1"), 1);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_many_messages_is_stored_and_delivered_once_each() {
    let Some(e) = env(Opts::default()).await else {
        return;
    };
    let n = 300;
    let body = text_batch("BATCH", n, "hello");
    let (s, _, b) = send(&e.router, signed(&body)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["accepted"], n);
    eventually("all delivered", async || {
        e.downstream.total_delivered() == n as u32
    })
    .await;
    for i in 0..n {
        assert_eq!(e.downstream.delivered(&format!("wamid.BATCH.{i}")), 1);
    }
    eventually("all replied", async || e.graph.sent.lock().len() == n).await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_downstream_retries_dead_letters_and_admin_replay_delivers() {
    let Some(e) = env(Opts::default()).await else {
        return;
    };
    e.downstream.fail_with.store(503, Ordering::SeqCst);
    // Two services, so that neither breaker sees enough failed calls to open (it would then
    // snooze the messages instead: an open breaker spends no attempt): each message makes its
    // 3 real attempts through a closed breaker and dead-letters.
    for (id, from, text) in [
        ("wamid.DEAD.1", "250788000011", "jobs please"),
        ("wamid.DEAD.2", "250788000022", "hello there"),
    ] {
        let body = text_message(id, from, text);
        assert_eq!(send(&e.router, signed(&body)).await.0, StatusCode::OK);
    }
    eventually("two dead letters", async || {
        e.admin("GET", "/admin/dlq").await.1["messages"]
            .as_array()
            .is_some_and(|m| m.len() == 2)
    })
    .await;
    let (_, list) = e.admin("GET", "/admin/dlq").await;
    let dead = &list["messages"][0];
    assert_eq!(dead["state"], "dead");
    let errors = dead["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "every attempt's error is kept: {errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e["kind"].as_str().unwrap().starts_with("downstream_"))
    );
    assert_eq!(errors[0]["kind"], "downstream_http_503");
    assert!(e.downstream.attempts("wamid.DEAD.1") >= 1);
    // The user heard something on the last attempt.
    assert_eq!(e.graph.texts_to("250788000011"), [DEFAULT_FALLBACK_REPLY]);
    let (_, conv) = e.admin("GET", "/admin/conversations/250788000011").await;
    assert_eq!(conv["state"], "fallback");
    // Inspect one.
    let id = dead["id"].as_str().unwrap().to_owned();
    let (s, one) = e.admin("GET", &format!("/admin/dlq/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["dedup_key"], dead["dedup_key"]);

    // The downstream is fixed; the operator resets its breaker and replays.
    e.downstream.fail_with.store(0, Ordering::SeqCst);
    let (s, _) = e.admin("POST", "/admin/breakers/jobs/reset").await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = e.admin("POST", &format!("/admin/dlq/{id}/replay")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let first = dead["dedup_key"].as_str().unwrap().to_owned();
    eventually("replayed one delivered", async || {
        e.downstream.delivered(&first) == 1
    })
    .await;
    let (s, r) = e.admin("POST", "/admin/dlq/replay").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["replayed"], 1);
    eventually("bulk replay delivered", async || {
        e.downstream.total_delivered() == 2
    })
    .await;
    eventually("dead letters empty", async || {
        e.admin("GET", "/admin/dlq").await.1["messages"]
            .as_array()
            .is_some_and(Vec::is_empty)
    })
    .await;
    eventually("replies sent", async || {
        e.graph.texts_to("250788000011").len() == 2 && e.graph.texts_to("250788000022").len() == 2
    })
    .await;
    let (s, b) = e.admin("GET", "/admin/breakers").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        b["breakers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == "whatsapp-graph-api")
    );
    let (s, reg) = e.admin("GET", "/admin/registry").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(reg["services"].as_array().unwrap().len(), 2);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_answers_503_and_the_retry_is_processed() {
    let Some(e) = env(Opts {
        proxy_pg: true,
        ..Opts::default()
    })
    .await
    else {
        return;
    };
    let proxy = e.pg_proxy.as_ref().unwrap();
    let body = text_message("wamid.PGDOWN.1", "250788000033", "jobs");
    proxy.cut();
    let (s, h, b) = send(&e.router, signed(&body)).await;
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert_eq!(h["content-type"], "application/problem+json");
    // /health reads the background checks: down within a few refresh periods, saying only
    // which check failed.
    let h = health_turns(&e.router, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(h["status"], "down");
    assert_eq!(h["checks"]["queue"]["status"], "down");
    assert_eq!(h["checks"]["queue"]["store"], "postgres");
    assert_no_error_text(&h);
    let (s, b) = e.admin("GET", "/admin/dlq").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(b["detail"], "queue store unavailable; retry later");
    assert_eq!(e.downstream.attempts("wamid.PGDOWN.1"), 0);

    proxy.restore();
    // Meta retries the same delivery until it gets a 200.
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = send(&e.router, signed(&body)).await.0;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK);
    eventually("processed after recovery", async || {
        e.downstream.delivered("wamid.PGDOWN.1") == 1
    })
    .await;
    health_turns(&e.router, StatusCode::OK).await;
    e.stop().await;
}

/// A Postgres that swallows packets (connections accepted, nothing answered: what the
/// postgres-outage drill saw while the server shut down) must not hold `/health` or `/webhook`
/// open. The pool here waits 30 s for a connection (sqlx's default), so the prompt 503s come
/// from the service's own bounds. The `timeout`s only fail the test instead of hanging it:
/// `/health` used to take its 2 s probe timeout (`curl -m 2` got nothing), `/webhook` the
/// pool's whole acquire timeout. `/health` now answers from memory at once, and turns 503
/// when the background check (bounded to 1 s) next runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stalled_answers_503_promptly() {
    let Some(e) = env(Opts {
        proxy_pg: true,
        pg_acquire_timeout: Some(Duration::from_secs(30)),
        ..Opts::default()
    })
    .await
    else {
        return;
    };
    let proxy = e.pg_proxy.as_ref().unwrap();
    let body = text_message("wamid.PGSTALL.1", "250788000034", "jobs");
    proxy.stall();

    let health = Request::get("/health").body(Body::empty()).unwrap();
    let (_, h, _) = tokio::time::timeout(Duration::from_millis(1900), send(&e.router, health))
        .await
        .expect("/health answers while Postgres stalls");
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let b = health_turns(&e.router, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(b["status"], "down");
    assert_eq!(b["checks"]["queue"]["status"], "down");
    assert_eq!(b["checks"]["dedup"]["status"], "ok", "Redis is fine");
    assert_no_error_text(&b);

    let (s, h, b) = tokio::time::timeout(Duration::from_secs(4), send(&e.router, signed(&body)))
        .await
        .expect("/webhook answers while Postgres stalls");
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(h["retry-after"], "5");
    assert_eq!(json(&b)["status"], 503);

    proxy.restore();
    // Meta retries the same delivery until it gets a 200: stored and processed once.
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = send(&e.router, signed(&body)).await.0;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK);
    eventually("processed after recovery", async || {
        e.downstream.delivered("wamid.PGSTALL.1") == 1
    })
    .await;
    health_turns(&e.router, StatusCode::OK).await;
    e.stop().await;
}

/// `/health` and `/metrics` answer anyone. When each took a pooled connection (a probe, a
/// `GROUP BY` over the queue), a flood of them left `/webhook` none, and it answered 503. They
/// now read the background checks: on a pool of 2 connections (250 ms to get one), 1000
/// concurrent requests to them leave `/webhook` accepting (with a store query each, as
/// before, `/webhook` got 503 here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_floods_leave_the_pool_to_the_webhook() {
    let Some(e) = env(Opts {
        proxy_pg: true,
        pg_pool_size: Some(2),
        pg_acquire_timeout: Some(Duration::from_millis(250)),
        ..Opts::default()
    })
    .await
    else {
        return;
    };
    let router = e.router.clone();
    let flood: Vec<_> = (0..1000)
        .map(|i| {
            let r = router.clone();
            tokio::spawn(async move {
                let path = if i % 2 == 0 { "/health" } else { "/metrics" };
                send(&r, Request::get(path).body(Body::empty()).unwrap())
                    .await
                    .0
            })
        })
        .collect();
    let deliveries: Vec<_> = (0..5)
        .map(|i| {
            let r = router.clone();
            tokio::spawn(async move {
                let body = text_message(&format!("wamid.FLOOD.{i}"), "250788000066", "jobs");
                send(&r, signed(&body)).await.0
            })
        })
        .collect();
    for answer in futures::future::join_all(flood).await {
        assert_eq!(answer.unwrap(), StatusCode::OK);
    }
    for answer in futures::future::join_all(deliveries).await {
        assert_eq!(answer.unwrap(), StatusCode::OK, "/webhook got a connection");
    }
    eventually("flood deliveries processed", async || {
        e.downstream.total_delivered() == 5
    })
    .await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_still_accepts_without_duplicate_processing() {
    let Some(e) = env(Opts {
        proxy_redis: true,
        ..Opts::default()
    })
    .await
    else {
        return;
    };
    let proxy = e.redis_proxy.as_ref().unwrap();
    let a = text_message("wamid.REDIS.A", "250788000044", "jobs");
    assert_eq!(send(&e.router, signed(&a)).await.0, StatusCode::OK);
    eventually("A delivered", async || {
        e.downstream.delivered("wamid.REDIS.A") == 1
    })
    .await;
    eventually("queue idle", async || e.queue_idle().await).await;

    proxy.cut();
    // A again, after it was processed and with the fast path down: accepted (fail-open), and
    // the durable processed marker keeps it from the downstream.
    let (s, _, _) = send(&e.router, signed(&a)).await;
    assert_eq!(s, StatusCode::OK);
    // B, new, twice while Redis is down.
    let b = text_message("wamid.REDIS.B", "250788000055", "jobs");
    for _ in 0..2 {
        let (s, _, _) = send(&e.router, signed(&b)).await;
        assert_eq!(s, StatusCode::OK);
    }
    // A batch while Redis stays down: the fast path's breaker opens and Redis is skipped
    // instead of timing out on every message; everything is still accepted.
    let batch = text_batch("REDIS.C", 12, "jobs");
    let (s, _, body) = send(&e.router, signed(&batch)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["accepted"], 12);
    let (_, breakers) = e.admin("GET", "/admin/breakers").await;
    let fast_path = breakers["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "redis-dedup")
        .cloned()
        .unwrap();
    assert_eq!(fast_path["state"], "open", "{fast_path}");
    eventually("B delivered", async || {
        e.downstream.delivered("wamid.REDIS.B") == 1
    })
    .await;
    eventually("batch delivered", async || {
        e.downstream.total_delivered() == 14
    })
    .await;
    eventually("queue idle", async || e.queue_idle().await).await;
    assert_eq!(e.downstream.delivered("wamid.REDIS.A"), 1);
    assert_eq!(e.downstream.delivered("wamid.REDIS.B"), 1);
    let mut health = Value::Null;
    eventually("/health degraded", async || {
        let (s, b) = self::health(&e.router).await;
        assert_eq!(s, StatusCode::OK, "a down Redis only degrades: {b}");
        health = b;
        health["status"] == "degraded"
    })
    .await;
    assert_eq!(health["checks"]["dedup"]["status"], "down");
    assert_eq!(health["checks"]["dedup"]["fail_open"], true);
    assert_no_error_text(&health);
    proxy.restore();
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_queue_and_conversations() {
    let Some(e) = env(Opts::default()).await else {
        return;
    };
    let other = e.second_instance().await;
    let other_router = other.router();
    let n = 24;
    let sends = (0..n).map(|i| {
        let body = text_message(
            &format!("wamid.TWO.{i}"),
            "250788000066",
            &format!("jobs {i}"),
        );
        // every message to both instances, as Meta's retries to a load balancer would
        let (a, b) = (e.router.clone(), other_router.clone());
        async move {
            let (s1, _, b1) = send(&a, signed(&body)).await;
            let (s2, _, b2) = send(&b, signed(&body)).await;
            assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
            json(&b1)["accepted"].as_u64().unwrap() + json(&b2)["accepted"].as_u64().unwrap()
        }
    });
    let accepted: u64 = futures::future::join_all(sends).await.into_iter().sum();
    assert_eq!(
        accepted, n as u64,
        "each message stored once across instances"
    );
    eventually("all delivered", async || {
        e.downstream.total_delivered() == n as u32
    })
    .await;
    eventually("queue idle", async || e.queue_idle().await).await;
    for i in 0..n {
        assert_eq!(e.downstream.delivered(&format!("wamid.TWO.{i}")), 1);
    }
    // One conversation, saved by both instances (version-checked): no update is lost. Each
    // message is one save (message and reply together) and two transitions, plus the first
    // intent; agent_active's repeated transitions are counted on their records.
    let (s, conv) = e.admin("GET", "/admin/conversations/250788000066").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(conv["version"], n as u64);
    let transitions: u64 = conv["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repeats"].as_u64().unwrap_or(0) + 1)
        .sum();
    assert_eq!(transitions, 2 * n as u64 + 1);
    let last = conv["context"]["last_messages"].as_array().unwrap();
    assert_eq!(last.len(), 20);
    other.shutdown().await;
    e.stop().await;
}
