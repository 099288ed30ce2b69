//! One `tracing` span per step attempt and per compensation, under the saga's `saga.run` span,
//! itself a child of the span the saga was started from; seen through a capturing subscriber.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use parking_lot::Mutex;
use steadfast_saga::{SagaId, SagaRunner, Start, State};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, Default)]
struct Seen {
    name: String,
    parent: Option<u64>,
    fields: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(u64, Seen)>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> tracing_subscriber::Layer<S> for Capture
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut seen = Seen {
            name: attrs.metadata().name().to_owned(),
            parent: ctx
                .span(id)
                .and_then(|s| s.parent())
                .map(|p| p.id().into_u64()),
            ..Seen::default()
        };
        attrs.record(&mut Fields(&mut seen.fields));
        self.0.lock().push((id.into_u64(), seen));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some((_, seen)) = self
            .0
            .lock()
            .iter_mut()
            .rev()
            .find(|(i, _)| *i == id.into_u64())
        {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn steps_and_compensations_are_spans_under_the_caller_s_span() {
    let capture = Capture::default();
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

    let spans = capture.0.lock().clone();
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
