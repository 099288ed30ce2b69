//! Traces in the payments service: an OTLP/HTTP receiver in the test (protobuf decoded with
//! `opentelemetry-proto`), a deposit (callback → queue → worker) and a payout (request → saga →
//! provider). Asserted: server spans, the callback's send span continued by the worker's
//! process span, the payout saga's step spans under the request, the provider call as a client
//! span, and the `traceparent` the fake provider saw (the trace's id, the client span as
//! parent). Its own test binary: the tracer provider is process-global.

mod common;

use std::collections::HashMap;

use common::{Backend, Harness, eventually, key};
use serde_json::json;
use steadfast_payments::config::{RawTelemetry, SERVICE_NAME, TelemetrySettings};
use steadfast_service_kit::telemetry;
use steadfast_service_kit::testing::{OtlpReceiver, Span, SpanKind, attr, hex_id, kind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_is_one_trace_down_to_the_provider() {
    let receiver = OtlpReceiver::start().await;
    let settings = TelemetrySettings::resolve(
        RawTelemetry {
            otlp_endpoint: Some(receiver.url().to_owned()),
            sample_ratio: Some(1.0),
        },
        &HashMap::new(),
        SERVICE_NAME,
    )
    .unwrap();
    let guard = telemetry::init(&settings).unwrap();
    assert!(guard.exporting());

    let h = Harness::start(Backend::Memory)
        .await
        .expect("memory needs no server");
    h.create_account("acc_t", "RWF").await;
    h.deposit("acc_t", 1_000, "RWF").await;
    let res = h
        .post(
            "/v1/payouts",
            Some(&key()),
            &json!({"account": "acc_t", "msisdn": "250788123456", "amount": 300, "currency": "RWF"}),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    eventually("the payout succeeded", async || {
        let p: serde_json::Value = h
            .http
            .get(format!("{}/v1/payouts/{id}", h.base))
            .bearer_auth(common::API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        p["status"] == "succeeded"
    })
    .await;
    // The request's span stays open while the saga it started runs (a span ends after its
    // children): it is exported once the payout is settled.
    eventually("the payout request's server span exported", async || {
        guard.flush().await;
        receiver
            .spans()
            .iter()
            .map(|(_, s)| s)
            .any(|s| kind(s) == SpanKind::Server && s.name == "POST /v1/payouts")
    })
    .await;
    let spans: Vec<Span> = receiver.spans().into_iter().map(|(_, s)| s).collect();
    let by_id: HashMap<String, &Span> = spans.iter().map(|s| (hex_id(&s.span_id), s)).collect();
    let parent_of = |s: &Span| by_id.get(&hex_id(&s.parent_span_id)).copied();

    // The provider call: a client span under the saga's `request` step, under the request.
    let client = spans
        .iter()
        .find(|s| {
            kind(s) == SpanKind::Client
                && attr(s, "url.full").is_some_and(|u| u.ends_with("/disbursements"))
        })
        .unwrap();
    assert_eq!(attr(client, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(
        attr(client, "http.response.status_code").as_deref(),
        Some("202")
    );
    let step = parent_of(client).expect("the client span's parent was exported");
    assert_eq!(step.name, "execute payout.request");
    let run = parent_of(step).expect("the saga's span was exported");
    assert_eq!(run.name, "saga payout");
    assert_eq!(attr(run, "saga.id").as_deref(), Some(id.as_str()));
    assert_eq!(attr(step, "saga.step").as_deref(), Some("request"));
    assert_eq!(attr(step, "saga.attempt").as_deref(), Some("1"));
    // Up from the step: the request's server span.
    let mut up = parent_of(step).expect("the step's parent was exported");
    while kind(up) != SpanKind::Server {
        up = parent_of(up).expect("a server span above the step");
    }
    assert_eq!(up.name, "POST /v1/payouts");
    assert_eq!(attr(up, "http.route").as_deref(), Some("/v1/payouts"));
    assert_eq!(up.trace_id, client.trace_id);
    // The reserve step ran before, in the same trace.
    assert!(spans.iter().any(|s| s.name == "execute payout.reserve"
        && s.trace_id == client.trace_id
        && attr(s, "outcome").as_deref() == Some("ok")));

    // What the provider saw.
    let requests = h.fake.requests();
    let tp = requests[0]
        .traceparent
        .as_deref()
        .expect("the provider got a traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts[1], hex_id(&client.trace_id));
    assert_eq!(parts[2], hex_id(&client.span_id));

    // The deposit's callback: its send span, continued by the worker's process span.
    let send = spans
        .iter()
        .find(|s| kind(s) == SpanKind::Producer && s.name == "send momo-callbacks")
        .expect("the callback's send span");
    let process = spans
        .iter()
        .find(|s| kind(s) == SpanKind::Consumer && s.name == "process momo-callbacks")
        .expect("the callback worker's process span");
    assert_eq!(process.parent_span_id, send.span_id);
    assert_eq!(process.trace_id, send.trace_id);
    assert_eq!(attr(process, "outcome").as_deref(), Some("ack"));
    h.finish().await;
    guard.shutdown().await;
}
