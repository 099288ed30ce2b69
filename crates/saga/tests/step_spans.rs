//! One `tracing` span per step attempt and per compensation, under the saga's `saga.run` span,
//! itself a child of the span the saga was started from; seen through a capturing subscriber.

mod common;

use common::*;
use steadfast_saga::{SagaId, SagaRunner, Start, State};
use steadfast_testkit::spans::SpanCapture;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test(start_paused = true)]
async fn steps_and_compensations_are_spans_under_the_caller_s_span() {
    let capture = SpanCapture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let script = Script::new();
    script.exec("b", vec![retryable("blip"), Ok(())]);
    script.exec("c", vec![permanent("declined")]);
    let saga = saga(vec![
        script.step("a", true).into(),
        script.step("b", true).into(),
        script.step("c", true).into(),
    ]);
    let runner = SagaRunner::new(saga, memory(), config("r"));
    let request = tracing::info_span!("request");
    let request_id = request.id().unwrap().into_u64();
    // Started (a spawned task), not run inline: the spans must still be the request's.
    let started = tracing::Instrument::instrument(
        runner.start(SagaId::new("s-1").unwrap(), Order { amount: 5 }),
        request,
    )
    .await
    .unwrap();
    let Start::Started(handle) = started else {
        panic!("not started")
    };
    assert_eq!(handle.await.unwrap().unwrap(), State::Compensated);

    let spans = capture.spans();
    let (run_id, run) = spans
        .iter()
        .find(|(_, s)| s.name == "saga.run")
        .expect("the saga's span");
    assert_eq!(run.parent, Some(request_id), "{run:?}");
    assert_eq!(run.fields["saga.id"], "s-1");
    assert_eq!(run.fields["resumed"], "false");
    let run_id = *run_id;
    let attempts: Vec<(String, String, String, String)> = spans
        .iter()
        .filter(|(_, s)| s.name == "saga.step" || s.name == "saga.compensate")
        .map(|(_, s)| {
            assert_eq!(s.parent, Some(run_id), "{s:?}");
            assert_eq!(s.fields["saga.id"], "s-1");
            assert!(!s.fields["saga.name"].is_empty());
            (
                s.name.clone(),
                s.fields["saga.step"].clone(),
                s.fields["saga.attempt"].clone(),
                s.fields["outcome"].clone(),
            )
        })
        .collect();
    let t = |n: &str, step: &str, attempt: &str, outcome: &str| {
        (
            n.to_owned(),
            step.to_owned(),
            attempt.to_owned(),
            outcome.to_owned(),
        )
    };
    assert_eq!(
        attempts,
        vec![
            t("saga.step", "a", "1", "ok"),
            t("saga.step", "b", "1", "retryable_error"),
            t("saga.step", "b", "2", "ok"),
            t("saga.step", "c", "1", "error"),
            t("saga.compensate", "b", "1", "ok"),
            t("saga.compensate", "a", "1", "ok"),
        ]
    );
    let failed = spans
        .iter()
        .find(|(_, s)| s.fields.get("outcome").map(String::as_str) == Some("error"))
        .unwrap();
    assert_eq!(failed.1.fields["otel.status_code"], "error");
}
