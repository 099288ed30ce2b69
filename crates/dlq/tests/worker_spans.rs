//! The worker's `dlq.process` span, seen through a capturing `tracing` subscriber: one root
//! span per attempt with the messaging attributes, the handler's spans its children, and the
//! hook a service continues the message's trace from.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use steadfast_dlq::{
    MemoryQueue, NewMessage, Outcome, QueueAdmin, QueueConfig, QueueStore, State, TokioClock,
    Worker,
};
use steadfast_testkit::spans::{CapturedSpan, SpanCapture};
use tracing_subscriber::layer::SubscriberExt;

/// What the hook was called with: the message's carrier and the span's id.
type Hooked = (Option<String>, u64);

#[tokio::test(start_paused = true)]
async fn each_attempt_runs_in_a_root_process_span_the_handler_s_work_is_under() {
    let capture = SpanCapture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let config = QueueConfig::builder()
        .clock(Arc::new(TokioClock::new()))
        .build()
        .unwrap();
    let store = Arc::new(MemoryQueue::with_config(config));
    let id = store
        .enqueue_batch(vec![
            NewMessage::new("q", json!({}))
                .correlation_id("corr-1")
                .trace_context("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ])
        .await
        .unwrap()[0]
        .id();
    // What the hook saw: the carrier, and the id of the span it was handed.
    let hooked: Arc<Mutex<Vec<Hooked>>> = Arc::default();
    let seen_by_hook = hooked.clone();
    let worker = Worker::builder(store.clone(), "q")
        .on_span(move |m, span| {
            seen_by_hook
                .lock()
                .push((m.trace_context.clone(), span.id().unwrap().into_u64()));
        })
        .build()
        .unwrap();
    // An outer span around the worker loop: attempts must not become its children.
    let outer = tracing::info_span!("worker loop");
    let done = {
        let store = store.clone();
        async move {
            while store.get(id).await.unwrap().unwrap().state != State::Done {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let report = tracing::Instrument::instrument(
        worker.run(
            |m| async move {
                let _step = tracing::info_span!("handler step").entered();
                if m.attempts == 1 {
                    Outcome::retry("http_503", "downstream down")
                } else {
                    Outcome::Ack
                }
            },
            done,
        ),
        outer,
    )
    .await;
    assert_eq!((report.retried, report.acked), (1, 1));

    let spans = capture.spans();
    let mut process: Vec<(u64, CapturedSpan)> = spans
        .iter()
        .filter(|(_, s)| s.name == "dlq.process")
        .map(|(id, s)| (*id, s.clone()))
        .collect();
    process.sort_by_key(|(_, s)| s.fields["attempt"].clone());
    assert_eq!(process.len(), 2, "{spans:#?}");
    for (n, (span_id, s)) in process.iter().enumerate() {
        assert_eq!(s.parent, None, "an attempt is a root span: {s:?}");
        assert_eq!(s.fields["attempt"], (n + 1).to_string());
        assert_eq!(s.fields["messaging.destination.name"], "q");
        assert_eq!(s.fields["messaging.message.id"], id.to_string());
        assert_eq!(s.fields["messaging.operation.type"], "process");
        assert_eq!(s.fields["messaging.message.conversation_id"], "corr-1");
        assert_eq!(s.fields["otel.kind"], "consumer");
        assert_eq!(s.fields["otel.name"], "process q");
        // The handler's span is this attempt's child.
        assert!(
            spans
                .iter()
                .any(|(_, c)| c.name == "handler step" && c.parent == Some(*span_id)),
            "no handler span under attempt {}",
            n + 1
        );
    }
    assert_eq!(process[0].1.fields["outcome"], "retry");
    assert_eq!(process[0].1.fields["otel.status_code"], "error");
    assert_eq!(process[1].1.fields["outcome"], "ack");
    assert!(!process[1].1.fields.contains_key("otel.status_code"));
    // The hook ran once per attempt, with the stored carrier and the attempt's own span.
    let hooked = hooked.lock().clone();
    let carrier = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned());
    assert_eq!(
        hooked,
        vec![(carrier.clone(), process[0].0), (carrier, process[1].0)]
    );
}
