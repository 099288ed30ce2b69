//! A downstream reply's `actions` run as a saga: on the in-memory stores and on Postgres
//! (skipped like the other Postgres tests when it is unreachable outside CI), against local
//! fake action endpoints that record every call.

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::*;
use http::Request;
use parking_lot::Mutex;
use serde_json::{Value, json};
use steadfast_saga::{SagaId, State as SagaState};
use steadfast_webhook::assemble::App;
use steadfast_webhook::config::{Config, Overrides};

/// One call an action endpoint received.
#[derive(Debug, Clone)]
struct Call {
    method: Method,
    kind: String,
    key: Option<String>,
    request_id: Option<String>,
    body: Value,
}

/// Fake action endpoints at `/<type>`: POST and DELETE, answering scripted statuses (then
/// 201 for a POST, 200 for a DELETE).
#[derive(Default)]
struct Endpoints {
    calls: Mutex<Vec<Call>>,
    script: Mutex<HashMap<(Method, String), VecDeque<u16>>>,
}

impl Endpoints {
    fn answer(&self, method: Method, kind: &str, statuses: &[u16]) {
        self.script.lock().insert(
            (method, kind.to_owned()),
            statuses.iter().copied().collect(),
        );
    }
    fn calls(&self, method: &Method) -> Vec<Call> {
        self.calls
            .lock()
            .iter()
            .filter(|c| c.method == *method)
            .cloned()
            .collect()
    }
    fn of(&self, method: &Method, kind: &str) -> Vec<Call> {
        self.calls(method)
            .into_iter()
            .filter(|c| c.kind == kind)
            .collect()
    }
}

async fn endpoint(
    State(log): State<Arc<Endpoints>>,
    Path(kind): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    log.calls.lock().push(Call {
        method: method.clone(),
        kind: kind.clone(),
        key: header("idempotency-key"),
        request_id: header("x-request-id"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let scripted = log
        .script
        .lock()
        .get_mut(&(method.clone(), kind.clone()))
        .and_then(VecDeque::pop_front);
    let status = scripted.unwrap_or(if method == Method::POST { 201 } else { 200 });
    let status = StatusCode::from_u16(status).unwrap();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return (status, [("retry-after", "1")], "down").into_response();
    }
    (status, Json(json!({"id": format!("{kind}-1")}))).into_response()
}

async fn start_endpoints() -> (String, Arc<Endpoints>) {
    let log = Arc::new(Endpoints::default());
    let app = Router::new()
        .route("/{kind}", post(endpoint).delete(endpoint))
        .with_state(log.clone());
    (serve(app).await, log)
}

/// A downstream whose reply carries the actions written (as JSON) in the message's text;
/// counts its calls per message id.
async fn start_downstream() -> (String, Arc<Mutex<HashMap<String, u32>>>) {
    let calls = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let c = calls.clone();
    let app = Router::new().route(
        "/{service}",
        post(move |Json(body): Json<Value>| {
            let c = c.clone();
            async move {
                let id = body["message_id"].as_str().unwrap_or_default().to_owned();
                *c.lock().entry(id).or_default() += 1;
                let actions: Value = body["text"]
                    .as_str()
                    .and_then(|t| serde_json::from_str(t).ok())
                    .unwrap_or(Value::Null);
                Json(json!({"reply": "on it", "done": false, "actions": actions}))
            }
        }),
    );
    (serve(app).await, calls)
}

/// A Graph API that answers 503 to the first `fail_first` sends, then 200; records the texts.
async fn start_graph(fail_first: u32) -> (String, Arc<Mutex<Vec<String>>>) {
    let texts = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(fail_first));
    let t = texts.clone();
    let app = Router::new().route(
        "/{phone_number_id}/messages",
        post(move |Json(body): Json<Value>| {
            let (t, failures) = (t.clone(), failures.clone());
            async move {
                {
                    let mut left = failures.lock();
                    if *left > 0 {
                        *left -= 1;
                        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({}))).into_response();
                    }
                }
                t.lock()
                    .push(body["text"]["body"].as_str().unwrap_or_default().to_owned());
                Json(json!({"messages": [{"id": "wamid.OUT"}]})).into_response()
            }
        }),
    );
    (serve(app).await, texts)
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[derive(Debug, Clone, Copy)]
enum Backend {
    Memory,
    Postgres,
}

struct Env {
    app: App,
    router: Router,
    endpoints: Arc<Endpoints>,
    downstream: Arc<Mutex<HashMap<String, u32>>>,
    replies: Arc<Mutex<Vec<String>>>,
    _pg: Option<steadfast_testkit::PgSchema>,
}

/// The service on `backend`, with the action types `kinds` configured; `None` when Postgres
/// is wanted and unreachable (outside CI).
async fn env(backend: Backend, kinds: &[&str], graph_fails: u32) -> Option<Env> {
    let pg = match backend {
        Backend::Memory => None,
        Backend::Postgres => Some(steadfast_testkit::postgres().await?),
    };
    let (actions_url, endpoints) = start_endpoints().await;
    let (down_url, downstream) = start_downstream().await;
    let (graph_url, replies) = start_graph(graph_fails).await;
    let storage = match backend {
        Backend::Memory => "[storage]\nbackend = \"memory\"\n".to_owned(),
        Backend::Postgres => format!(
            "[storage]\ndatabase_url = \"{}\"\n",
            steadfast_testkit::database_url()
        ),
    };
    let urls: String = kinds
        .iter()
        .map(|k| format!("{k} = \"{actions_url}/{k}\"\n"))
        .collect();
    let toml = format!(
        r#"
[whatsapp]
app_secret = "{SECRET}"
verify_token = "{VERIFY_TOKEN}"
access_token = "test-access-token"
graph_api_url = "{graph_url}"
[admin]
token = "{ADMIN_TOKEN}"
{storage}
[worker]
poll_interval_ms = 20
backoff_initial_ms = 50
backoff_max_ms = 200
[conversation]
sweep_interval_seconds = 3600
[[services]]
name = "shop"
endpoints = ["{down_url}/shop"]
[actions]
{urls}timeout_ms = 2000
backoff_initial_ms = 50
backoff_max_ms = 200
recovery_poll_ms = 50
"#
    );
    let config = Config::from_toml(&toml, &HashMap::new(), &Overrides::default()).unwrap();
    let pool = pg.as_ref().map(|p| p.pool().clone());
    let app = App::build_with_pool(config, pool).await.unwrap();
    let router = app.router();
    Some(Env {
        app,
        router,
        endpoints,
        downstream,
        replies,
        _pg: pg,
    })
}

fn text_message(id: &str, text: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("text_message.json")).unwrap();
    let m = &mut v["entry"][0]["changes"][0]["value"]["messages"][0];
    m["id"] = id.into();
    m["text"]["body"] = text.into();
    serde_json::to_vec(&v).unwrap()
}

fn sender() -> String {
    let v: Value = serde_json::from_slice(&fixture("text_message.json")).unwrap();
    v["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
        .as_str()
        .unwrap()
        .to_owned()
}

impl Env {
    /// Delivers message `id` whose reply asks for `actions`.
    async fn deliver(&self, id: &str, actions: Value) {
        let body = text_message(id, &actions.to_string());
        let (status, _, _) = send(&self.router, signed(&body)).await;
        assert_eq!(status, StatusCode::OK);
    }

    async fn saga_state(&self, id: &str) -> Option<SagaState> {
        let id = SagaId::derive("reply-actions", id).unwrap();
        let ops = self.app.services().actions.operator();
        ops.inspect(&id).await.ok().map(|log| log.state())
    }

    async fn wait_for_state(&self, id: &str, state: SagaState) {
        eventually(&format!("saga of {id} {state}"), async || {
            self.saga_state(id).await == Some(state)
        })
        .await;
    }

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

    async fn metric(&self, line_start: &str) -> f64 {
        let req = Request::get("/metrics").body(Body::empty()).unwrap();
        let (_, _, b) = send(&self.router, req).await;
        String::from_utf8(b)
            .unwrap()
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

fn key(id: &str, step: &str) -> Option<String> {
    Some(format!("reply-actions/{id}:{step}"))
}

/// (1) Two actions: one POST each, with the step's key, the correlation id and the body
/// fields; the saga completes; the user gets the reply.
async fn two_actions_each_run_once(backend: Backend) {
    let Some(e) = env(backend, &["create_order", "notify_sales"], 0).await else {
        return;
    };
    let id = format!("wamid.ACT1.{backend:?}");
    e.deliver(
        &id,
        json!([
            {"type": "notify_sales", "data": {"lead": "hot"}},
            {"type": "create_order", "data": {"sku": "A1", "qty": 2}}
        ]),
    )
    .await;
    e.wait_for_state(&id, SagaState::Completed).await;
    let posts = e.endpoints.calls(&Method::POST);
    assert_eq!(posts.len(), 2, "{posts:?}");
    // The fixed step order, not the reply's.
    assert_eq!(posts[0].kind, "create_order");
    assert_eq!(posts[1].kind, "notify_sales");
    for (call, data) in posts
        .iter()
        .zip([json!({"sku": "A1", "qty": 2}), json!({"lead": "hot"})])
    {
        assert_eq!(call.key, key(&id, &call.kind));
        assert!(call.request_id.as_deref().is_some_and(|r| !r.is_empty()));
        assert_eq!(call.body["message_id"], id.as_str());
        assert_eq!(call.body["from"], sender().as_str());
        assert_eq!(call.body["service"], "shop");
        assert_eq!(call.body["type"], call.kind.as_str());
        assert_eq!(call.body["data"], data);
    }
    assert!(e.endpoints.calls(&Method::DELETE).is_empty());
    eventually("the reply", async || e.replies.lock().len() == 1).await;
    // The step's output is the endpoint's answer.
    let (status, saga) = e.admin("GET", &format!("/admin/sagas/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(saga["saga"]["state"], "completed");
    assert_eq!(saga["steps"][0]["output"], json!({"id": "create_order-1"}));
    e.app.shutdown().await;
}

/// (2) The third action is refused (400): the first two are cancelled, last first, with their
/// keys; the saga is compensated and the user still got the reply.
async fn a_refused_action_cancels_the_earlier_ones_in_reverse(backend: Backend) {
    let kinds = ["create_order", "create_support_ticket", "notify_sales"];
    let Some(e) = env(backend, &kinds, 0).await else {
        return;
    };
    e.endpoints.answer(Method::POST, "notify_sales", &[400]);
    let id = format!("wamid.ACT2.{backend:?}");
    e.deliver(
        &id,
        json!([
            {"type": "notify_sales", "data": {}},
            {"type": "create_support_ticket", "data": {"topic": "refund"}},
            {"type": "create_order", "data": {"sku": "A1"}}
        ]),
    )
    .await;
    e.wait_for_state(&id, SagaState::Compensated).await;
    let posts: Vec<_> = e
        .endpoints
        .calls(&Method::POST)
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(posts, kinds, "a 400 is not retried");
    let deletes: Vec<_> = e
        .endpoints
        .calls(&Method::DELETE)
        .into_iter()
        .map(|c| (c.kind.clone(), c.key))
        .collect();
    assert_eq!(
        deletes,
        [
            (
                "create_support_ticket".to_owned(),
                key(&id, "create_support_ticket")
            ),
            ("create_order".to_owned(), key(&id, "create_order")),
        ]
    );
    eventually("the reply", async || {
        e.replies.lock().as_slice() == ["on it"]
    })
    .await;
    e.app.shutdown().await;
}

/// (3) The reply's send fails once, so the message is retried after its saga was created:
/// the downstream is called again, the action is not.
async fn a_retried_message_starts_no_second_saga(backend: Backend) {
    let Some(e) = env(backend, &["create_order"], 1).await else {
        return;
    };
    let id = format!("wamid.ACT3.{backend:?}");
    e.deliver(
        &id,
        json!([{"type": "create_order", "data": {"sku": "A1"}}]),
    )
    .await;
    eventually("the reply after a retry", async || {
        e.replies.lock().len() == 1
    })
    .await;
    e.wait_for_state(&id, SagaState::Completed).await;
    assert_eq!(e.downstream.lock().get(&id).copied(), Some(2));
    // The same delivery again (Meta's retry): a duplicate at ingestion.
    e.deliver(
        &id,
        json!([{"type": "create_order", "data": {"sku": "A1"}}]),
    )
    .await;
    eventually("the queue idle", async || {
        let stats = e.app.state().ingestor.queue().stats().await.unwrap();
        stats.iter().all(|s| {
            use steadfast_dlq::State::*;
            s.count(Pending) + s.count(Running) + s.count(Retrying) == 0
        })
    })
    .await;
    assert_eq!(e.endpoints.of(&Method::POST, "create_order").len(), 1);
    e.app.shutdown().await;
}

/// (4) 503 (with `Retry-After`) then 201: retried with the same key, the saga completes.
async fn an_unavailable_action_is_retried_with_the_same_key(backend: Backend) {
    let Some(e) = env(backend, &["create_order"], 0).await else {
        return;
    };
    e.endpoints.answer(Method::POST, "create_order", &[503]);
    let id = format!("wamid.ACT4.{backend:?}");
    e.deliver(
        &id,
        json!([{"type": "create_order", "data": {"sku": "A1"}}]),
    )
    .await;
    e.wait_for_state(&id, SagaState::Completed).await;
    let posts = e.endpoints.of(&Method::POST, "create_order");
    assert_eq!(posts.len(), 2);
    assert!(posts.iter().all(|c| c.key == key(&id, "create_order")));
    assert!(e.endpoints.calls(&Method::DELETE).is_empty());
    e.app.shutdown().await;
}

/// (5) An unknown type and a known but unconfigured one are ignored and counted; the
/// configured one runs.
async fn unknown_and_unconfigured_actions_are_ignored_and_counted(backend: Backend) {
    let Some(e) = env(backend, &["create_order"], 0).await else {
        return;
    };
    let unknown = "webhook_actions_ignored_total{reason=\"unknown_type\"}";
    let unconfigured = "webhook_actions_ignored_total{reason=\"not_configured\"}";
    let before = (e.metric(unknown).await, e.metric(unconfigured).await);
    let id = format!("wamid.ACT5.{backend:?}");
    e.deliver(
        &id,
        json!([
            {"type": "launch_rocket", "data": {"secret": "never logged"}},
            {"type": "flag_for_review", "data": {}},
            {"type": "create_order", "data": {"sku": "A1"}}
        ]),
    )
    .await;
    e.wait_for_state(&id, SagaState::Completed).await;
    let kinds: Vec<_> = e
        .endpoints
        .calls(&Method::POST)
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(kinds, ["create_order"]);
    assert!(e.metric(unknown).await >= before.0 + 1.0);
    assert!(e.metric(unconfigured).await >= before.1 + 1.0);
    // A reply with only ignored actions starts no saga.
    let id = format!("wamid.ACT5b.{backend:?}");
    e.deliver(&id, json!([{"type": "launch_rocket"}])).await;
    eventually("the second reply", async || e.replies.lock().len() == 2).await;
    assert_eq!(e.saga_state(&id).await, None);
    e.app.shutdown().await;
}

/// (6) A cancellation refused (400) parks the saga; the admin API lists and inspects it and,
/// once the endpoint is fixed, retries it to `compensated`.
async fn a_parked_saga_is_listed_inspected_and_retried(backend: Backend) {
    let Some(e) = env(backend, &["create_order", "notify_sales"], 0).await else {
        return;
    };
    e.endpoints.answer(Method::POST, "notify_sales", &[400]);
    e.endpoints.answer(Method::DELETE, "create_order", &[400]);
    let id = format!("wamid.ACT6.{backend:?}");
    e.deliver(
        &id,
        json!([{"type": "create_order", "data": {}}, {"type": "notify_sales", "data": {}}]),
    )
    .await;
    e.wait_for_state(&id, SagaState::Failed).await;
    let (status, list) = e.admin("GET", "/admin/sagas?state=failed").await;
    assert_eq!(status, StatusCode::OK);
    let saga_id = format!("reply-actions/{id}");
    assert!(
        list["sagas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == saga_id.as_str()),
        "{list}"
    );
    // By its saga id (`/` encoded) or by the message id.
    let encoded = saga_id.replace('/', "%2F");
    let (status, saga) = e.admin("GET", &format!("/admin/sagas/{encoded}")).await;
    assert_eq!(status, StatusCode::OK, "{saga}");
    assert_eq!(saga["saga"]["state"], "failed");
    let steps = saga["steps"].as_array().unwrap();
    assert_eq!(steps[0]["name"], "create_order");
    assert_eq!(steps[0]["status"], "compensation_failed");
    assert!(
        steps[0]["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("400")
    );
    assert_eq!(steps[1]["status"], "failed");
    // Resolving needs a parked saga; an unknown one is 404; a bad state 400.
    let (status, _) = e.admin("POST", "/admin/sagas/wamid.NOPE/retry").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = e.admin("GET", "/admin/sagas?state=stuck").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The endpoint is fixed (the script is spent): retry.
    let (status, body) = e.admin("POST", &format!("/admin/sagas/{id}/retry")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["resumes"], "compensating");
    e.wait_for_state(&id, SagaState::Compensated).await;
    let deletes = e.endpoints.of(&Method::DELETE, "create_order");
    assert_eq!(deletes.len(), 2);
    assert!(deletes.iter().all(|c| c.key == key(&id, "create_order")));
    let (status, body) = e.admin("POST", &format!("/admin/sagas/{id}/retry")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    e.app.shutdown().await;
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Memory).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both!(
    two_actions_each_run_once,
    a_refused_action_cancels_the_earlier_ones_in_reverse,
    a_retried_message_starts_no_second_saga,
    an_unavailable_action_is_retried_with_the_same_key,
    unknown_and_unconfigured_actions_are_ignored_and_counted,
    a_parked_saga_is_listed_inspected_and_retried,
);
