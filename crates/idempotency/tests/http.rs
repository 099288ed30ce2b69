//! The tower layer end to end with axum, on the memory store and on real Redis and Postgres.
#![cfg(feature = "tower")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::BodyExt;
use steadfast_idempotency::http::IdempotencyLayer;
use steadfast_idempotency::{Config, Idempotency, IdempotencyStore, MemoryStore, StoreDown};
use tokio::sync::Notify;
use tower::ServiceExt;

#[derive(Default)]
struct AppState {
    runs: AtomicUsize,
    started: Notify,
    gate: Notify,
    gate_open: AtomicBool,
}

async fn transfer(State(s): State<Arc<AppState>>, body: Bytes) -> impl IntoResponse {
    let n = s.runs.fetch_add(1, Ordering::SeqCst) + 1;
    (
        StatusCode::CREATED,
        [
            ("content-type", "application/json".to_owned()),
            ("x-run", n.to_string()),
        ],
        format!(
            "{{\"run\":{n},\"echo\":{}}}",
            String::from_utf8_lossy(&body)
        ),
    )
}

async fn login(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    s.runs.fetch_add(1, Ordering::SeqCst);
    ([("set-cookie", "session=secret"), ("x-kept", "yes")], "ok")
}

async fn broken(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    s.runs.fetch_add(1, Ordering::SeqCst);
    (StatusCode::BAD_GATEWAY, "downstream failed")
}

async fn slow(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    s.started.notify_one();
    if !s.gate_open.load(Ordering::SeqCst) {
        s.gate.notified().await;
    }
    s.runs.fetch_add(1, Ordering::SeqCst);
    "slow done"
}

fn app(idem: Idempotency, state: Arc<AppState>) -> Router {
    Router::new()
        .route("/transfers", post(transfer).get(|| async { "list" }))
        .route("/login", post(login))
        .route("/broken", post(broken))
        .route("/slow", post(slow))
        .layer(
            IdempotencyLayer::new(idem)
                .scope(|parts| {
                    parts
                        .headers
                        .get("x-tenant")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                })
                .max_request_bytes(1024),
        )
        .with_state(state)
}

fn post_req(path: &str, key: Option<&str>, body: &str) -> Request<Body> {
    let mut req = Request::post(path);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.body(Body::from(body.to_owned())).unwrap()
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn problem_code(a: &Answer) -> String {
    assert_eq!(a.headers["content-type"], "application/problem+json");
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert!(v["type"].is_string() && v["title"].is_string() && v["detail"].is_string());
    v["code"].as_str().unwrap().to_owned()
}

/// Every behaviour of the layer, on one store. `tag` keeps keys apart between runs.
async fn layer_scenario(store: Arc<dyn IdempotencyStore>, tag: &str) {
    let idem = Idempotency::new(store, Config::default());
    let state = Arc::new(AppState::default());
    let app = app(idem.clone(), Arc::clone(&state));
    let key = format!("key-{tag}-0000000001");

    // First request executes; the retry replays byte-identical, with the replay header.
    let first = send(&app, post_req("/transfers", Some(&key), "{\"amount\":5}")).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let retry = send(&app, post_req("/transfers", Some(&key), "{\"amount\":5}")).await;
    assert_eq!(retry.status, first.status);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let mut replayed_headers = retry.headers.clone();
    replayed_headers.remove("idempotent-replayed");
    assert_eq!(replayed_headers, first.headers);
    assert_eq!(state.runs.load(Ordering::SeqCst), 1);

    // Changed body: 422. Missing / invalid key: 400. Safe method: untouched.
    let changed = send(&app, post_req("/transfers", Some(&key), "{\"amount\":6}")).await;
    assert_eq!(changed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem_code(&changed), "idempotency_key_reused");
    let missing = send(&app, post_req("/transfers", None, "{}")).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(problem_code(&missing), "missing_idempotency_key");
    let invalid = send(&app, post_req("/transfers", Some("too-short"), "{}")).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(problem_code(&invalid), "invalid_idempotency_key");
    let detail: serde_json::Value = serde_json::from_slice(&invalid.body).unwrap();
    let detail = detail["detail"].as_str().unwrap();
    assert!(
        detail.contains("16 to 255") && detail.contains("9 characters"),
        "the detail names the whole rule and what was wrong: {detail}"
    );
    let list = send(
        &app,
        Request::get("/transfers").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    let big = send(&app, post_req("/transfers", Some(&key), &"x".repeat(2000))).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(state.runs.load(Ordering::SeqCst), 1);

    // Another tenant's identical key is another key.
    let mut other = post_req("/transfers", Some(&key), "{\"amount\":5}");
    other
        .headers_mut()
        .insert("x-tenant", "t2".parse().unwrap());
    assert_eq!(send(&app, other).await.status, StatusCode::CREATED);
    assert_eq!(state.runs.load(Ordering::SeqCst), 2);

    // Set-Cookie is never replayed.
    let login_key = format!("login-{tag}-000000001");
    let a = send(&app, post_req("/login", Some(&login_key), "")).await;
    assert_eq!(a.headers["set-cookie"], "session=secret");
    let b = send(&app, post_req("/login", Some(&login_key), "")).await;
    assert!(b.headers.get("set-cookie").is_none());
    assert_eq!(b.headers["x-kept"], "yes");

    // 5xx releases the key: the retry runs the handler again.
    let runs = state.runs.load(Ordering::SeqCst);
    let broken_key = format!("broken-{tag}-00000001");
    for _ in 0..2 {
        let r = send(&app, post_req("/broken", Some(&broken_key), "")).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert!(r.headers.get("idempotent-replayed").is_none());
    }
    assert_eq!(state.runs.load(Ordering::SeqCst), runs + 2);

    // A concurrent duplicate gets 409 with Retry-After; after completion it replays.
    let slow_key = format!("slow-{tag}-000000001");
    let first = tokio::spawn({
        let app = app.clone();
        let req = post_req("/slow", Some(&slow_key), "");
        async move { send(&app, req).await }
    });
    state.started.notified().await;
    let dup = send(&app, post_req("/slow", Some(&slow_key), "")).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(problem_code(&dup), "request_in_flight");
    let retry_after: u64 = dup.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    state.gate.notify_one();
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    let replay = send(&app, post_req("/slow", Some(&slow_key), "")).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body, first.body);

    // A cancelled request (client gone) releases its claim: the retry executes.
    let cancel_key = format!("cancel-{tag}-00000001");
    let runs = state.runs.load(Ordering::SeqCst);
    let doomed = tokio::spawn({
        let app = app.clone();
        let req = post_req("/slow", Some(&cancel_key), "");
        async move { send(&app, req).await }
    });
    state.started.notified().await;
    doomed.abort();
    assert!(doomed.await.unwrap_err().is_cancelled());
    state.gate_open.store(true, Ordering::SeqCst);
    // The release runs in a background task (a store round trip); poll until it landed.
    let mut answer = send(&app, post_req("/slow", Some(&cancel_key), "")).await;
    for _ in 0..200 {
        if answer.status != StatusCode::CONFLICT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        answer = send(&app, post_req("/slow", Some(&cancel_key), "")).await;
    }
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers.get("idempotent-replayed").is_none());
    assert_eq!(state.runs.load(Ordering::SeqCst), runs + 1);

    let stats = idem.stats();
    assert!(stats.executed >= 6 && stats.replayed >= 3 && stats.in_flight >= 1);
    assert_eq!(stats.mismatch, 1);
}

/// Store down: 503 with Retry-After under FailClosed; the handler runs under FailOpen.
async fn store_down_scenario(store: Arc<dyn IdempotencyStore>) {
    let state = Arc::new(AppState::default());
    let closed = app(
        Idempotency::new(Arc::clone(&store), Config::default()),
        Arc::clone(&state),
    );
    let r = send(
        &closed,
        post_req("/transfers", Some("down-key-0000000001"), "{}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem_code(&r), "idempotency_store_unavailable");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(state.runs.load(Ordering::SeqCst), 0);

    let open_idem = Idempotency::new(
        store,
        Config::builder()
            .store_down(StoreDown::FailOpen)
            .build()
            .unwrap(),
    );
    let open = app(open_idem.clone(), Arc::clone(&state));
    let r = send(
        &open,
        post_req("/transfers", Some("down-key-0000000001"), "{}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(state.runs.load(Ordering::SeqCst), 1);
    assert_eq!(open_idem.stats().fail_open, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_on_memory() {
    layer_scenario(Arc::new(MemoryStore::new()), "mem").await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_on_redis() {
    use steadfast_idempotency::RedisStore;
    let Some(r) = steadfast_testkit::redis().await else {
        return;
    };
    layer_scenario(Arc::new(RedisStore::new(r.conn(), r.prefix())), "redis").await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_with_redis_down() {
    use steadfast_idempotency::RedisStore;
    // Port 1 on localhost: nothing listens, connections are refused.
    let store = RedisStore::lazy("redis://127.0.0.1:1", "down").unwrap();
    store_down_scenario(Arc::new(store)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_on_postgres() {
    use steadfast_idempotency::PostgresStore;
    let Some(pg) = steadfast_testkit::postgres().await else {
        return;
    };
    let store = PostgresStore::new(pg.pool().clone());
    store.migrate().await.unwrap();
    layer_scenario(Arc::new(store), "pg").await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_with_postgres_down() {
    use steadfast_idempotency::PostgresStore;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/test")
        .unwrap();
    store_down_scenario(Arc::new(PostgresStore::new(pool))).await;
}

fn memory_app(config: Config) -> (Idempotency, Arc<AppState>, Router) {
    let idem = Idempotency::new(Arc::new(MemoryStore::new()), config);
    let state = Arc::new(AppState::default());
    let app = app(idem.clone(), Arc::clone(&state));
    (idem, state, app)
}

#[tokio::test]
async fn two_key_fields_are_refused() {
    let (_, state, app) = memory_app(Config::default());
    for keys in [
        ["key-two-fields-00001", "key-two-fields-00002"],
        ["key-two-fields-00001", "key-two-fields-00001"],
    ] {
        let mut req = post_req("/transfers", Some(keys[0]), "{}");
        req.headers_mut()
            .append("idempotency-key", keys[1].parse().unwrap());
        let r = send(&app, req).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(problem_code(&r), "invalid_idempotency_key");
        let detail: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(
            detail["detail"].as_str().unwrap().contains("got 2"),
            "{detail}"
        );
    }
    assert_eq!(
        state.runs.load(Ordering::SeqCst),
        0,
        "the handler never ran"
    );
    // One field still works.
    let r = send(
        &app,
        post_req("/transfers", Some("key-two-fields-00001"), "{}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn structured_field_string_keys_are_unquoted() {
    let (_, state, app) = memory_app(Config::default());
    let key = "8e03978e-40d5-43e8-bc93-6894a57f9324";
    let quoted = format!("\"{key}\"");
    let first = send(&app, post_req("/transfers", Some(&quoted), "{}")).await;
    assert_eq!(first.status, StatusCode::CREATED);
    // The quoted and the bare form are the same key.
    let bare = send(&app, post_req("/transfers", Some(key), "{}")).await;
    assert_eq!(bare.headers["idempotent-replayed"], "true");
    assert_eq!(bare.body, first.body);
    assert_eq!(state.runs.load(Ordering::SeqCst), 1);

    for malformed in [
        format!("\"{key}"),
        format!("\"{key}\\n\""),
        format!("\"{key}\";p=1"),
        format!("\"{key}\", \"{key}\""),
    ] {
        let r = send(&app, post_req("/transfers", Some(&malformed), "{}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{malformed}");
        assert_eq!(problem_code(&r), "invalid_idempotency_key");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("structured-field string"),
            "{body}"
        );
    }
    assert_eq!(state.runs.load(Ordering::SeqCst), 1);
}

/// A storable response over `max_response_bytes`: the client gets its head before the handler
/// has produced the rest (no whole-body buffering), then all of it; the key is recorded as
/// done but not replayable, so a retry neither replays nor runs the handler again.
#[tokio::test]
async fn large_responses_stream_and_are_not_replayed() {
    use futures::channel::mpsc;
    use futures::{SinkExt, StreamExt};
    use std::convert::Infallible;
    use std::sync::Mutex;

    const LIMIT: usize = 64;
    let config = Config::builder().max_response_bytes(LIMIT).build().unwrap();
    let idem = Idempotency::new(Arc::new(MemoryStore::new()), config);
    let runs = Arc::new(AtomicUsize::new(0));
    let feeds: Arc<Mutex<Vec<mpsc::Sender<Bytes>>>> = Arc::default();
    let app = Router::new()
        .route(
            "/export",
            post({
                let (runs, feeds) = (Arc::clone(&runs), Arc::clone(&feeds));
                move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let (tx, rx) = mpsc::channel::<Bytes>(4);
                    feeds.lock().unwrap().push(tx);
                    (
                        StatusCode::CREATED,
                        Body::from_stream(rx.map(Ok::<_, Infallible>)),
                    )
                }
            }),
        )
        .route(
            "/fits",
            post(|| async { (StatusCode::CREATED, "y".repeat(LIMIT)) }),
        )
        .route(
            "/declared",
            post(|| async { (StatusCode::CREATED, "z".repeat(LIMIT + 1)) }),
        )
        .layer(IdempotencyLayer::new(idem.clone()));

    let key = "export-key-00000001";
    let request = tokio::spawn({
        let app = app.clone();
        async move {
            app.oneshot(post_req("/export", Some(key), ""))
                .await
                .unwrap()
        }
    });
    // Wait for the handler, then feed more than the limit but not the end of the body.
    let mut feed = loop {
        if let Some(tx) = feeds.lock().unwrap().pop() {
            break tx;
        }
        tokio::task::yield_now().await;
    };
    feed.send(Bytes::from(vec![b'a'; 40])).await.unwrap();
    feed.send(Bytes::from(vec![b'b'; 40])).await.unwrap();
    // The response arrives while the body is still open: it was not buffered whole.
    let response = tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .expect("the response head comes before the body ends")
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    feed.send(Bytes::from(vec![b'c'; 1000])).await.unwrap();
    drop(feed);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let mut expected = vec![b'a'; 40];
    expected.extend([b'b'; 40]);
    expected.extend([b'c'; 1000]);
    assert_eq!(body, Bytes::from(expected), "the whole response is sent");

    // The retry: recorded as done, not replayable; the handler does not run again.
    let retry = send(&app, post_req("/export", Some(key), "")).await;
    assert_eq!(retry.status, StatusCode::CONFLICT);
    assert_eq!(problem_code(&retry), "response_not_replayable");
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert!(retry.headers.get("retry-after").is_none());
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // A declared length over the limit: sent whole, not replayable either.
    let declared = send(&app, post_req("/declared", Some("declared-key-000001"), "")).await;
    assert_eq!(declared.body.len(), LIMIT + 1);
    let again = send(&app, post_req("/declared", Some("declared-key-000001"), "")).await;
    assert_eq!(problem_code(&again), "response_not_replayable");

    // Exactly at the limit: stored and replayed byte for byte.
    let fits = send(&app, post_req("/fits", Some("fits-key-0000000001"), "")).await;
    let replay = send(&app, post_req("/fits", Some("fits-key-0000000001"), "")).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(
        (replay.status, replay.body.len()),
        (StatusCode::CREATED, LIMIT)
    );
    assert_eq!(replay.body, fits.body);

    assert_eq!(idem.stats().too_large, 2);
}
