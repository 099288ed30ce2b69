//! The ops surface against hostile or broken inputs, in process on the in-memory stores:
//! metric labels from fixed sets whatever the request carries, no endpoint credentials in
//! anything shown, `/health` and `/metrics` served without touching a store, store errors
//! reported without the driver's text, failed admin authentications logged and counted.
//!
//! The metrics recorder and the log subscriber are process-wide, so the tests of this file
//! take [`SERIAL`] and run one at a time: a series count is exact only while no other test
//! adds series.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use common::*;
use http::{Method, Request, StatusCode};
use parking_lot::Mutex;
use serde_json::Value;
use steadfast_dlq::{
    Claimed, Enqueued, Failure, Filter, Lease, MemoryQueue, Message, MessageId, NewMessage, Page,
    Pruned, QueueAdmin, QueueStats, QueueStore, Retention,
};
use steadfast_idempotency::{DedupStore, Deduplicator, MemoryStore, Timestamp};
use steadfast_webhook::app::AppState;
use steadfast_webhook::assemble::App;
use steadfast_webhook::checks::Checks;
use steadfast_webhook::ingest::Ingestor;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every log line of this test binary (JSON, as in production).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock()).into_owned()
}

async fn get(r: &Router, path: &str) -> (StatusCode, String) {
    let (s, _, b) = send(r, Request::get(path).body(Body::empty()).unwrap()).await;
    (s, String::from_utf8_lossy(&b).into_owned())
}

async fn admin(r: &Router, method: &str, path: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let (s, _, b) = send(r, req).await;
    (s, String::from_utf8_lossy(&b).into_owned())
}

/// The lines of `/metrics` that are samples of `metric` (one per series).
async fn series(r: &Router, metric: &str) -> Vec<String> {
    let (s, text) = get(r, "/metrics").await;
    assert_eq!(s, StatusCode::OK);
    let prefix = format!("{metric}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// The value of one sample line of `/metrics`, 0 when absent.
async fn sample(r: &Router, line_prefix: &str) -> f64 {
    let (_, text) = get(r, "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn token(i: usize, len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let tail: String = (0..len)
        .map(|_| rng.random_range(b'A'..=b'Z') as char)
        .collect();
    format!("ODD{i}{tail}")
}

/// One round of odd requests: extension methods (long random tokens) on real routes and on
/// random paths, and standard methods on random paths. Returns the tokens sent.
async fn odd_requests(r: &Router, round: usize) -> Vec<String> {
    let mut sent = Vec::new();
    for i in 0..40 {
        let method = token(round * 1000 + i, if i % 2 == 0 { 4000 } else { 12 });
        // Longer than the 256 bytes of a path that a log line keeps.
        let path = format!("/{}", token(round * 1000 + i, 400).to_lowercase());
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        for uri in [
            "/health",
            "/webhook",
            "/metrics",
            "/admin/dlq",
            path.as_str(),
        ] {
            let req = Request::builder()
                .method(m.clone())
                .uri(uri)
                .body(Body::empty())
                .unwrap();
            send(r, req).await;
        }
        for m in [Method::GET, Method::POST, Method::DELETE] {
            for uri in [
                path.clone(),
                format!("/admin{path}"),
                format!("/webhook{path}"),
            ] {
                let req = Request::builder()
                    .method(m.clone())
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap();
                send(r, req).await;
            }
        }
        sent.push(method);
        sent.push(path);
    }
    sent
}

#[tokio::test]
async fn odd_methods_and_paths_add_no_series() {
    let _serial = SERIAL.lock().await;
    logs();
    let app = App::build(memory_config("")).await.unwrap();
    let r = app.router();
    // The first round creates the `other` / `unmatched` series that odd requests map to.
    odd_requests(&r, 1).await;
    let before = series(&r, "webhook_http_requests_total").await;
    let before_hist = series(&r, "webhook_http_request_duration_seconds_bucket").await;
    let sent = odd_requests(&r, 2).await;
    let after = series(&r, "webhook_http_requests_total").await;
    assert_eq!(
        before.len(),
        after.len(),
        "new series: {:?}",
        after
            .iter()
            .filter(|l| !before
                .iter()
                .any(|b| b.split(' ').next() == l.split(' ').next()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        before_hist.len(),
        series(&r, "webhook_http_request_duration_seconds_bucket")
            .await
            .len()
    );
    let (_, text) = get(&r, "/metrics").await;
    for t in &sent {
        assert!(!text.contains(t.as_str()), "{t} is in /metrics");
    }
    assert!(
        after
            .iter()
            .any(|l| l.contains("method=\"other\"") && l.contains("route=\"/health\""))
    );
    assert!(after.iter().any(|l| l.contains("route=\"unmatched\"")));
    // Logs name the method by its label and cut the path.
    let logs = log_text();
    for t in &sent {
        assert!(!logs.contains(t.as_str()), "{} is logged", &t[..20]);
    }
    app.shutdown().await;
}

/// A fake downstream behind a URL with credentials, failing so that errors are logged and
/// dead-lettered: the password shows nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_credentials_appear_nowhere() {
    const SECRET: &str = "s3cretpass";
    let _serial = SERIAL.lock().await;
    logs();
    let (down_url, downstream) = fakes::start_downstream().await;
    downstream.fail_with.store(503, Ordering::SeqCst);
    let hostport = down_url.trim_start_matches("http://").to_owned();
    let extra = format!(
        r#"
[worker]
poll_interval_ms = 20
backoff_initial_ms = 20
backoff_max_ms = 50
max_attempts = 2
[[services]]
name = "jobs"
endpoints = ["http://user:{SECRET}@{hostport}/x?token={SECRET}", "http://{hostport}/jobs"]
keywords = ["jobs"]
[[services]]
name = "ai-agent"
endpoints = ["http://agent:{SECRET}@{hostport}/ai-agent"]
[routing]
default_service = "ai-agent"
"#
    );
    let app = App::build(memory_config(&extra)).await.unwrap();
    let r = app.router();
    for (i, text) in ["jobs please", "hello"].into_iter().enumerate() {
        let body = text_batch(&format!("CRED{i}"), 1, text);
        assert_eq!(send(&r, signed(&body)).await.0, StatusCode::OK);
    }
    let mut dead = 0;
    for _ in 0..500 {
        let (_, list) = admin(&r, "GET", "/admin/dlq").await;
        dead = json(list.as_bytes())["messages"]
            .as_array()
            .map_or(0, Vec::len);
        if dead == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dead, 2, "both messages dead-lettered");

    let mut shown = vec![
        ("/metrics", get(&r, "/metrics").await.1),
        ("/health", get(&r, "/health").await.1),
    ];
    for path in ["/admin/breakers", "/admin/registry", "/admin/dlq"] {
        let (s, body) = admin(&r, "GET", path).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        shown.push((path, body));
    }
    shown.push(("logs", log_text()));
    for (what, text) in &shown {
        assert!(!text.contains(SECRET), "{what} shows the password:\n{text}");
    }
    let metrics = &shown[0].1;
    for name in [
        format!("jobs.0@{hostport}"),
        format!("jobs.1@{hostport}"),
        format!("ai-agent@{hostport}"),
    ] {
        assert!(
            metrics.contains(&format!("webhook_breaker_state{{name=\"{name}\"}}")),
            "{name}: {metrics}"
        );
    }

    // The breakers are addressed by those names, or all of a service's by its name.
    let name = format!("jobs.0@{hostport}");
    let (s, body) = admin(&r, "POST", &format!("/admin/breakers/{name}/open")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v = json(body.as_bytes());
    assert_eq!(v["breakers"].as_array().unwrap().len(), 1);
    assert_eq!(v["breakers"][0]["name"], name.as_str());
    assert_eq!(v["breakers"][0]["state"], "forced_open");
    let (_, list) = admin(&r, "GET", "/admin/breakers").await;
    let list = json(list.as_bytes());
    let one = list["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name.as_str())
        .unwrap();
    assert_eq!(
        (one["state"].as_str(), one["service"].as_str()),
        (Some("forced_open"), Some("jobs"))
    );
    let (s, body) = admin(&r, "POST", "/admin/breakers/jobs/reset").await;
    assert_eq!(s, StatusCode::OK);
    let v = json(body.as_bytes());
    assert_eq!(v["breakers"].as_array().unwrap().len(), 2);
    assert!(
        v["breakers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["state"] == "closed")
    );
    let (s, _) = admin(
        &r,
        "POST",
        &format!("/admin/breakers/ai-agent@{hostport}/close"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    app.shutdown().await;
}

/// A [`QueueStore`] that counts its calls and, on demand, fails like a driver whose error
/// text names the host and user.
#[derive(Debug, Default)]
struct CountingQueue {
    inner: MemoryQueue,
    calls: AtomicUsize,
    fail: AtomicBool,
}

const DRIVER_TEXT: &str = "connection to db.internal:5432 as user app_rw refused";

impl CountingQueue {
    fn enter(&self) -> Result<(), steadfast_dlq::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(steadfast_dlq::Error::StoreUnavailable(DRIVER_TEXT.into()));
        }
        Ok(())
    }
}

#[async_trait]
impl QueueStore for CountingQueue {
    async fn enqueue_batch(
        &self,
        m: Vec<NewMessage>,
    ) -> Result<Vec<Enqueued>, steadfast_dlq::Error> {
        self.enter()?;
        self.inner.enqueue_batch(m).await
    }

    async fn claim(
        &self,
        q: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, steadfast_dlq::Error> {
        self.enter()?;
        self.inner.claim(q, limit, lease).await
    }

    async fn ack(&self, l: &Lease) -> Result<(), steadfast_dlq::Error> {
        self.enter()?;
        self.inner.ack(l).await
    }

    async fn ack_batch(&self, l: &[Lease]) -> Result<u64, steadfast_dlq::Error> {
        self.enter()?;
        self.inner.ack_batch(l).await
    }

    async fn fail(
        &self,
        l: &Lease,
        f: Failure,
    ) -> Result<steadfast_dlq::State, steadfast_dlq::Error> {
        self.enter()?;
        self.inner.fail(l, f).await
    }

    async fn extend(&self, l: &Lease, d: Duration) -> Result<Lease, steadfast_dlq::Error> {
        self.enter()?;
        self.inner.extend(l, d).await
    }

    async fn release(&self, l: &Lease) -> Result<(), steadfast_dlq::Error> {
        self.enter()?;
        self.inner.release(l).await
    }

    async fn snooze(
        &self,
        l: &Lease,
        s: steadfast_dlq::Snooze,
    ) -> Result<steadfast_dlq::State, steadfast_dlq::Error> {
        self.enter()?;
        self.inner.snooze(l, s).await
    }

    async fn wait_for_work(&self, q: &str, timeout: Duration) {
        self.inner.wait_for_work(q, timeout).await;
    }
}

#[async_trait]
impl QueueAdmin for CountingQueue {
    async fn run_now(&self, id: MessageId) -> Result<(), steadfast_dlq::Error> {
        self.enter()?;
        self.inner.run_now(id).await
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>, steadfast_dlq::Error> {
        self.enter()?;
        self.inner.get(id).await
    }

    async fn list(&self, f: &Filter, p: Page) -> Result<Vec<Message>, steadfast_dlq::Error> {
        self.enter()?;
        self.inner.list(f, p).await
    }

    async fn replay(&self, id: MessageId) -> Result<(), steadfast_dlq::Error> {
        self.enter()?;
        self.inner.replay(id).await
    }

    async fn replay_matching(&self, f: &Filter) -> Result<u64, steadfast_dlq::Error> {
        self.enter()?;
        self.inner.replay_matching(f).await
    }

    async fn delete(&self, id: MessageId) -> Result<bool, steadfast_dlq::Error> {
        self.enter()?;
        self.inner.delete(id).await
    }

    async fn purge(&self, f: &Filter) -> Result<u64, steadfast_dlq::Error> {
        self.enter()?;
        self.inner.purge(f).await
    }

    async fn prune(&self, r: &Retention) -> Result<Pruned, steadfast_dlq::Error> {
        self.enter()?;
        self.inner.prune(r).await
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, steadfast_dlq::Error> {
        self.enter()?;
        self.inner.stats().await
    }
}

/// A [`DedupStore`] that counts its calls.
#[derive(Default)]
struct CountingDedup {
    inner: MemoryStore,
    calls: AtomicUsize,
}

#[async_trait]
impl DedupStore for CountingDedup {
    async fn insert_if_absent(
        &self,
        id: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<bool, steadfast_idempotency::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.insert_if_absent(id, window, now).await
    }
    async fn contains(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<bool, steadfast_idempotency::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.contains(id, now).await
    }
    async fn mark(
        &self,
        id: &str,
        window: Duration,
        now: Timestamp,
        processing_time: Option<Duration>,
    ) -> Result<(), steadfast_idempotency::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.mark(id, window, now, processing_time).await
    }
}

/// The router of `app` with its queue and fast path replaced by counting ones.
async fn counted(app: &App) -> (Router, Arc<CountingQueue>, Arc<CountingDedup>, Checks) {
    let queue = Arc::new(CountingQueue::default());
    let dedup = Arc::new(CountingDedup::default());
    let config = &app.state().config;
    let ingestor = Ingestor::new(
        queue.clone(),
        config.storage.queue_name.clone(),
        Some(Deduplicator::new(
            dedup.clone(),
            config.storage.dedup_window,
        )),
        None,
    );
    let checks = Checks::new(ingestor.clone(), config.storage.queue_name.clone());
    checks.refresh_all().await;
    let state = AppState {
        ingestor,
        checks: checks.clone(),
        ..app.state().clone()
    };
    (steadfast_webhook::http::router(state), queue, dedup, checks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_floods_do_not_reach_the_stores() {
    let _serial = SERIAL.lock().await;
    logs();
    let app = App::build(memory_config("[worker]\nenabled = false"))
        .await
        .unwrap();
    let (r, queue, dedup, _checks) = counted(&app).await;
    assert!(
        queue.calls.load(Ordering::SeqCst) > 0,
        "start-up checked the queue"
    );
    assert!(
        dedup.calls.load(Ordering::SeqCst) > 0,
        "start-up checked the fast path"
    );
    let (q0, d0) = (
        queue.calls.load(Ordering::SeqCst),
        dedup.calls.load(Ordering::SeqCst),
    );
    let answers = futures::future::join_all((0..400).map(|i| {
        let r = r.clone();
        tokio::spawn(async move {
            let path = if i % 2 == 0 { "/health" } else { "/metrics" };
            get(&r, path).await.0
        })
    }))
    .await;
    assert!(answers.into_iter().all(|a| a.unwrap() == StatusCode::OK));
    // The background refresh of the app's own checks runs on the app's stores, not these;
    // these are touched only by /webhook (and by `Checks::refresh`, not called here).
    assert_eq!(
        queue.calls.load(Ordering::SeqCst),
        q0,
        "queue calls by /health or /metrics"
    );
    assert_eq!(
        dedup.calls.load(Ordering::SeqCst),
        d0,
        "fast-path calls by /health or /metrics"
    );
    // /webhook does reach them.
    let body = text_batch("FLOOD", 1, "hello");
    assert_eq!(send(&r, signed(&body)).await.0, StatusCode::OK);
    assert!(queue.calls.load(Ordering::SeqCst) > q0);
    app.shutdown().await;
}

#[tokio::test]
async fn a_failing_store_is_down_without_its_error_text() {
    let _serial = SERIAL.lock().await;
    logs();
    let app = App::build(memory_config("[worker]\nenabled = false"))
        .await
        .unwrap();
    let (r, queue, _, checks) = counted(&app).await;
    queue.fail.store(true, Ordering::SeqCst);
    // Until the next refresh /health keeps the last outcome.
    assert_eq!(get(&r, "/health").await.0, StatusCode::OK);
    checks.refresh().await;
    let (s, body) = get(&r, "/health").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let v = json(body.as_bytes());
    assert_eq!(v["status"], "down");
    let queue_check = v["checks"]["queue"].as_object().unwrap();
    let keys: Vec<_> = queue_check.keys().map(String::as_str).collect();
    assert_eq!(keys, ["status", "store"], "{body}");
    assert_eq!(queue_check["status"], "down");
    assert!(
        !body.contains("db.internal") && !body.contains("app_rw"),
        "{body}"
    );
    // The log has the detail, once.
    assert_eq!(log_text().matches(DRIVER_TEXT).count(), 1);
    checks.refresh().await;
    assert_eq!(
        log_text().matches(DRIVER_TEXT).count(),
        1,
        "logged on change only"
    );

    for path in ["/admin/dlq", &format!("/admin/dlq/{}", MessageId::new())] {
        let (s, body) = admin(&r, "GET", path).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let v: Value = json(body.as_bytes());
        assert_eq!(v["detail"], "queue store unavailable; retry later");
        assert!(!body.contains("db.internal"), "{body}");
    }
    queue.fail.store(false, Ordering::SeqCst);
    checks.refresh().await;
    assert_eq!(get(&r, "/health").await.0, StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test]
async fn failed_admin_authentications_are_logged_without_the_token_and_counted() {
    let _serial = SERIAL.lock().await;
    logs();
    let app = App::build(memory_config("")).await.unwrap();
    let r = app.router();
    let missing = "webhook_admin_auth_failures_total{reason=\"missing\"} ";
    let mismatch = "webhook_admin_auth_failures_total{reason=\"mismatch\"} ";
    let (m0, w0) = (sample(&r, missing).await, sample(&r, mismatch).await);
    let presented = "Bearer wrong-token-XyZ-0123456789";
    let near_miss = format!("Bearer {}x", ADMIN_TOKEN);
    for auth in [
        None,
        Some("Basic abc"),
        Some(presented),
        Some(near_miss.as_str()),
    ] {
        let mut req = Request::get("/admin/dlq");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let (s, _, _) = send(&r, req.body(Body::empty()).unwrap()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(sample(&r, missing).await - m0, 2.0);
    assert_eq!(sample(&r, mismatch).await - w0, 2.0);
    let logs = log_text();
    assert!(logs.matches("admin API: authentication failed").count() >= 4);
    assert!(!logs.contains("wrong-token-XyZ"));
    assert!(!logs.contains(ADMIN_TOKEN));
    // The right token is not counted.
    assert_eq!(admin(&r, "GET", "/admin/dlq").await.0, StatusCode::OK);
    assert_eq!(sample(&r, mismatch).await - w0, 2.0);
    app.shutdown().await;
}
