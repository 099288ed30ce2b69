//! The worker's pipeline driven message by message, on memory stores, against loopback fakes:
//! what it costs the conversation store, what a retry leaves behind, and how a breaker's
//! refusal and a failed half-open probe are told apart from a failed call. Breakers run on a
//! manual clock: nothing here sleeps.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use common::fakes::{self, DownstreamLog, GraphLog};
use common::*;
use steadfast_circuit_breaker::{CircuitBreaker, ManualMonotonicClock};
use steadfast_dlq::Outcome;
use steadfast_retry::{ManualClock, RetryPolicy};
use steadfast_service_registry::{Registry, ServiceConfig};
use steadfast_state_machine::{MemorySnapshots, Snapshot, SnapshotStore};
use steadfast_webhook::payload::InboundMessage;
use steadfast_webhook::routing::Router;
use steadfast_webhook::worker::downstream::{self, DownstreamError, DownstreamRequest};
use steadfast_webhook::worker::graph::{GraphClient, SendError};
use steadfast_webhook::worker::{SenderLocks, Services, conversation};

/// A snapshot store that counts the calls the worker makes.
#[derive(Default)]
struct Counting {
    inner: MemorySnapshots,
    loads: AtomicUsize,
    saves: AtomicUsize,
}

impl Counting {
    fn take(&self) -> (usize, usize) {
        (
            self.loads.swap(0, Ordering::SeqCst),
            self.saves.swap(0, Ordering::SeqCst),
        )
    }
}

#[async_trait::async_trait]
impl SnapshotStore for Counting {
    async fn load(&self, key: &str) -> Result<Option<Snapshot>, steadfast_state_machine::Error> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key).await
    }
    async fn save(
        &self,
        key: &str,
        expected_version: u64,
        instance: &serde_json::Value,
        due_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<u64, steadfast_state_machine::Error> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner
            .save(key, expected_version, instance, due_at)
            .await
    }
    async fn due(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<Snapshot>, steadfast_state_machine::Error> {
        self.inner.due(now, limit).await
    }
    async fn delete(&self, key: &str) -> Result<bool, steadfast_state_machine::Error> {
        self.inner.delete(key).await
    }
    async fn prune_idle(
        &self,
        saved_before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<u64, steadfast_state_machine::Error> {
        self.inner.prune_idle(saved_before, limit).await
    }
}

/// Opens after 2 failures in a row of 4 calls, for 60 s (on the manual clock).
fn touchy() -> steadfast_circuit_breaker::Config {
    steadfast_circuit_breaker::Config::builder()
        .count_window(4)
        .minimum_calls(2)
        .failure_rate_threshold(50.0)
        .open_duration(Duration::from_secs(60))
        .call_timeout(Some(Duration::from_secs(5)))
        .build()
        .unwrap()
}

struct Env {
    services: Services,
    store: Arc<Counting>,
    downstream: Arc<DownstreamLog>,
    graph: Arc<GraphLog>,
    /// The breakers' clock.
    breakers: ManualMonotonicClock,
}

/// Never opens (for tests about attempts, not breakers).
fn lenient() -> steadfast_circuit_breaker::Config {
    steadfast_circuit_breaker::Config::builder()
        .count_window(100)
        .minimum_calls(100)
        .build()
        .unwrap()
}

/// Services with one downstream service, `jobs` (the fake downstream), replies to the fake
/// Graph API, conversations in a counting memory store; the downstream's breaker is
/// [`touchy`].
async fn env() -> Env {
    env_with(touchy()).await
}

async fn env_with(breaker: steadfast_circuit_breaker::Config) -> Env {
    let (down_url, downstream) = fakes::start_downstream().await;
    let (graph_url, graph) = fakes::start_graph().await;
    let breakers = ManualMonotonicClock::new();
    let registry = Registry::with_breaker_clock(breakers.clone());
    registry
        .register(
            ServiceConfig::builder("jobs")
                .endpoint(format!("{down_url}/jobs").as_str())
                .call_timeout(Duration::from_secs(5))
                .breaker(breaker)
                .retry(
                    RetryPolicy::builder()
                        .constant(Duration::from_millis(1))
                        .max_attempts(1)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .unwrap();
    let config = memory_config(&format!(
        "[[services]]\nname = \"jobs\"\nendpoints = [\"{down_url}/jobs\"]\nkeywords = [\"jobs\"]\n[routing]\ndefault_service = \"jobs\"\n"
    ));
    let store = Arc::new(Counting::default());
    let http = reqwest::Client::new();
    let services = Services {
        router: Router::new(vec![("jobs".into(), vec!["jobs".into()])], "jobs".into()),
        registry,
        breakers: steadfast_circuit_breaker::Registry::new(),
        conversations: conversation::conversations(store.clone()),
        graph: GraphClient::new(
            http.clone(),
            graph_url,
            Some(steadfast_webhook::config::Secret::new("test-access-token")),
            Duration::from_secs(5),
            CircuitBreaker::with_clock(touchy(), breakers.clone()),
        ),
        http,
        sender_locks: SenderLocks::default(),
        clock: Arc::new(ManualClock::new(
            std::time::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
        )),
        actions: steadfast_webhook::actions::Actions::disabled(&config),
        config: Arc::new(config),
    };
    Env {
        services,
        store,
        downstream,
        graph,
        breakers,
    }
}

fn job(id: &str, from: &str, text: &str) -> InboundMessage {
    serde_json::from_value(serde_json::json!({
        "message_id": id, "from": from, "type": "text", "text": text,
        "phone_number_id": "106540352242922", "correlation_id": "corr", "timestamp": 0,
    }))
    .unwrap()
}

fn texts(conv: &conversation::Conversation) -> Vec<String> {
    conv.context()
        .last_messages
        .iter()
        .map(|m| m.text.clone())
        .collect()
}

async fn stored(e: &Env, from: &str) -> Option<conversation::Conversation> {
    let conv = e.services.conversations.load(from).await.unwrap();
    e.store.take();
    conv
}

/// A snooze's kind and delay (to the second): no attempt spent.
fn snooze_of(o: &Outcome) -> (&str, Duration) {
    match o {
        Outcome::Snooze(s) => {
            let d = s.delay_from(chrono::Utc::now());
            (
                s.kind(),
                Duration::from_secs(d.as_secs_f64().round() as u64),
            )
        }
        other => panic!("not a snooze: {other:?}"),
    }
}

fn retry_of(o: &Outcome) -> (&str, Option<Duration>) {
    match o {
        Outcome::Retry(f) => (f.kind(), f.retry_after()),
        other => panic!("not a retry: {other:?}"),
    }
}

#[tokio::test]
async fn the_happy_path_loads_and_saves_the_conversation_once() {
    let e = env().await;
    let from = "250788000701";
    for (n, text) in ["jobs in Kigali?", "tomorrow", "thanks"].iter().enumerate() {
        let outcome = e
            .services
            .process(&job(&format!("wamid.ONE.{n}"), from, text), 1, 3)
            .await;
        assert!(matches!(outcome, Outcome::Ack), "{outcome:?}");
        assert_eq!(
            e.store.take(),
            (1, 1),
            "one load and one save for message {n}"
        );
    }
    let conv = stored(&e, from).await.unwrap();
    assert_eq!(conv.version(), 3, "one version per message");
    assert_eq!(
        texts(&conv),
        [
            "jobs in Kigali?",
            "jobs got: jobs in Kigali?",
            "tomorrow",
            "jobs got: tomorrow",
            "thanks",
            "jobs got: thanks"
        ]
    );
    assert_eq!(conv.context().intent.as_deref(), Some("jobs"));
    // What the downstream saw: the conversation with this message in it, as before.
    let requests = e.downstream.requests.lock().clone();
    assert_eq!(requests[0].2["conversation_state"], "agent_active");
    assert_eq!(requests[2].2["history"].as_array().unwrap().len(), 5);
    assert_eq!(e.graph.texts_to(from).len(), 3);
}

#[tokio::test]
async fn a_retried_message_is_recorded_once() {
    let e = env_with(lenient()).await;
    let from = "250788000702";
    assert!(matches!(
        e.services
            .process(&job("wamid.R.0", from, "jobs"), 1, 3)
            .await,
        Outcome::Ack
    ));
    e.store.take();
    let before = stored(&e, from).await.unwrap();

    // The downstream fails: the attempt reads the conversation and writes nothing.
    e.downstream.fail_with.store(503, Ordering::SeqCst);
    let outcome = e
        .services
        .process(&job("wamid.R.1", from, "any news?"), 1, 3)
        .await;
    assert_eq!(retry_of(&outcome), ("downstream_http_503", None));
    assert_eq!(e.store.take(), (1, 0), "a failed attempt saves nothing");
    assert_eq!(stored(&e, from).await.unwrap(), before);

    // It works on the retry: the message and its reply are in the history once.
    e.downstream.fail_with.store(0, Ordering::SeqCst);
    let outcome = e
        .services
        .process(&job("wamid.R.1", from, "any news?"), 2, 3)
        .await;
    assert!(matches!(outcome, Outcome::Ack), "{outcome:?}");
    let conv = stored(&e, from).await.unwrap();
    assert_eq!(
        texts(&conv),
        ["jobs", "jobs got: jobs", "any news?", "jobs got: any news?"]
    );
    assert_eq!(conv.version(), before.version() + 1);
    assert_eq!(e.graph.texts_to(from).len(), 2, "one reply per message");
}

#[tokio::test]
async fn the_last_attempt_records_the_failure_and_sends_the_fallback_once() {
    let e = env_with(lenient()).await;
    let from = "250788000703";
    // The breaker stays closed (another sender's messages go through in between): each
    // failure is an attempt.
    for attempt in 1..=3 {
        e.downstream.fail_with.store(500, Ordering::SeqCst);
        let outcome = e
            .services
            .process(&job("wamid.F.1", from, "jobs please"), attempt, 3)
            .await;
        assert_eq!(retry_of(&outcome).0, "downstream_http_500");
        if attempt < 3 {
            assert!(e.graph.texts_to(from).is_empty(), "nothing per retry");
            assert!(stored(&e, from).await.is_none(), "nothing saved per retry");
        }
        e.downstream.fail_with.store(0, Ordering::SeqCst);
        let other = format!("wamid.F.ok.{attempt}");
        assert!(matches!(
            e.services
                .process(&job(&other, "250788000799", "jobs"), 1, 3)
                .await,
            Outcome::Ack
        ));
    }
    assert_eq!(
        e.graph.texts_to(from),
        [steadfast_webhook::config::DEFAULT_FALLBACK_REPLY],
        "the fallback, once, on the last attempt"
    );
    let conv = stored(&e, from).await.unwrap();
    assert_eq!(conv.state(), conversation_state("fallback"));
    assert_eq!(texts(&conv), ["jobs please"]);
    assert!(
        conv.context()
            .last_error
            .as_deref()
            .unwrap()
            .contains("HTTP 500")
    );
}

fn conversation_state(name: &str) -> steadfast_state_machine::conversation::ConvState {
    serde_json::from_value(serde_json::json!(name)).unwrap()
}

/// Through the pipeline: a failed call spends an attempt (no wait of its own), a refusal and
/// a failed probe carry the breaker's wait, and only the probe reaches the downstream.
#[tokio::test]
async fn a_refusal_and_a_failed_probe_snooze_for_the_breakers_wait() {
    let e = env().await;
    e.downstream.fail_with.store(503, Ordering::SeqCst);
    for n in 0..2 {
        let o = e
            .services
            .process(&job(&format!("wamid.B.{n}"), "250788000704", "jobs"), 1, 3)
            .await;
        assert_eq!(retry_of(&o), ("downstream_http_503", None), "attempt {n}");
    }
    assert_eq!(e.downstream.requests.lock().len(), 2);
    // Open: refused, no call made.
    e.breakers.advance(Duration::from_secs(15));
    let o = e
        .services
        .process(&job("wamid.B.2", "250788000705", "jobs"), 1, 3)
        .await;
    assert_eq!(
        snooze_of(&o),
        ("downstream_unavailable", Duration::from_secs(45))
    );
    assert_eq!(e.downstream.requests.lock().len(), 2, "no call");
    // The wait is over: one probe, which fails, and the breaker opens for another 60 s.
    e.breakers.advance(Duration::from_secs(45));
    let o = e
        .services
        .process(&job("wamid.B.3", "250788000706", "jobs"), 1, 3)
        .await;
    assert_eq!(
        snooze_of(&o),
        ("downstream_http_503", Duration::from_secs(60))
    );
    assert_eq!(e.downstream.requests.lock().len(), 3, "the probe");
    // Nothing of these reached a conversation.
    assert!(stored(&e, "250788000706").await.is_none());
}

/// The classification itself, for the downstream (through the service registry).
#[tokio::test]
async fn downstream_errors_say_attempt_refusal_or_probe() {
    let e = env().await;
    e.downstream.fail_with.store(503, Ordering::SeqCst);
    let call = || async {
        let request = DownstreamRequest {
            message_id: "wamid.C".into(),
            from: "250788000707".into(),
            kind: "text".into(),
            text: Some("jobs".into()),
            conversation_state: "agent_active".into(),
            correlation_id: "corr".into(),
            history: Vec::new(),
        };
        downstream::call(
            &e.services.registry,
            &e.services.http,
            "jobs",
            &request,
            64 * 1024,
        )
        .await
        .unwrap_err()
    };
    for _ in 0..2 {
        let err = call().await;
        assert!(
            matches!(err, DownstreamError::Failed { ref kind, retry_after: None, .. } if kind == "downstream_http_503"),
            "{err:?}"
        );
    }
    let err = call().await;
    assert!(
        matches!(err, DownstreamError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(60)),
        "{err:?}"
    );
    assert_eq!(err.kind(), "downstream_unavailable");
    e.breakers.advance(Duration::from_secs(60));
    let err = call().await;
    assert!(
        matches!(err, DownstreamError::ProbeFailed { ref kind, retry_after: Some(d), .. } if kind == "downstream_http_503" && d == Duration::from_secs(60)),
        "{err:?}"
    );
    // A 4xx is the message's, whatever the breaker: permanent.
    e.breakers.advance(Duration::from_secs(60));
    e.downstream.fail_with.store(404, Ordering::SeqCst);
    let err = call().await;
    assert!(
        matches!(err, DownstreamError::Rejected { status: 404 }),
        "{err:?}"
    );
}

/// A Graph API that answers `status` (0: 200) and counts the requests.
async fn graph_answering() -> (String, Arc<AtomicU16>, Arc<AtomicUsize>) {
    let status = Arc::new(AtomicU16::new(0));
    let hits = Arc::new(AtomicUsize::new(0));
    let (s, h) = (status.clone(), hits.clone());
    let app = axum::Router::new().fallback(move || {
        let (s, h) = (s.clone(), h.clone());
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            match s.load(Ordering::SeqCst) {
                0 => StatusCode::OK,
                n => StatusCode::from_u16(n).unwrap(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), status, hits)
}

/// The same classification for the Graph API's breaker.
#[tokio::test]
async fn reply_errors_say_attempt_refusal_or_probe() {
    let (url, status, hits) = graph_answering().await;
    let clock = ManualMonotonicClock::new();
    let client = GraphClient::new(
        reqwest::Client::new(),
        url,
        Some(steadfast_webhook::config::Secret::new("test-access-token")),
        Duration::from_secs(5),
        CircuitBreaker::with_clock(touchy(), clock.clone()),
    );
    let send = || client.send_text("106540352242922", "250788000708", "hi");
    status.store(503, Ordering::SeqCst);
    for _ in 0..2 {
        let err = send().await.unwrap_err();
        assert!(
            matches!(err, SendError::Failed { ref kind, .. } if kind == "graph_http_503"),
            "{err:?}"
        );
    }
    clock.advance(Duration::from_secs(10));
    let err = send().await.unwrap_err();
    assert!(
        matches!(err, SendError::BreakerOpen { state: "open", retry_after: Some(d) } if d == Duration::from_secs(50)),
        "{err:?}"
    );
    assert_eq!(err.kind(), "graph_breaker_open");
    assert_eq!(hits.load(Ordering::SeqCst), 2, "refused: nothing sent");
    clock.advance(Duration::from_secs(50));
    let err = send().await.unwrap_err();
    assert!(
        matches!(err, SendError::ProbeFailed { ref kind, retry_after: Some(d), .. } if kind == "graph_http_503" && d == Duration::from_secs(60)),
        "{err:?}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // The Graph API is back: the next probe closes the breaker; a 4xx after that is the
    // reply's own, and counts neither way.
    clock.advance(Duration::from_secs(60));
    status.store(0, Ordering::SeqCst);
    send().await.unwrap();
    status.store(400, Ordering::SeqCst);
    assert!(matches!(
        send().await.unwrap_err(),
        SendError::Refused { status: 400 }
    ));
    assert_eq!(
        client.breaker().state(),
        steadfast_circuit_breaker::State::Closed
    );
}
