#![allow(missing_docs)]
//! Group `state_machine`: transitions on the pre-built conversation machine, the error path,
//! an instance's serde round trip, and a full load-send-save on the memory store.

use std::hint::black_box;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use steadfast_state_machine::conversation::{self, ConvContext, ConvEvent, ConvState};
use steadfast_state_machine::{Instance, Machines, MemorySnapshots};

fn agent_active() -> Instance<ConvState, ConvContext> {
    let def = conversation::definition();
    let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
    let mut c = conversation::new_instance(now);
    def.send(&mut c, ConvEvent::UserMessage { text: "hi".into() }, now)
        .unwrap();
    def.send(
        &mut c,
        ConvEvent::IntentDetected {
            intent: "support".into(),
            needs_confirmation: false,
        },
        now,
    )
    .unwrap();
    // Fill history and messages to their bounds so every iteration is the steady state.
    for n in 0..60 {
        def.send(
            &mut c,
            ConvEvent::UserMessage {
                text: format!("message {n}"),
            },
            now,
        )
        .unwrap();
    }
    assert_eq!(c.state(), ConvState::AgentActive);
    c
}

fn bench(c: &mut Criterion) {
    let def = conversation::definition();
    let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
    let mut g = c.benchmark_group("state_machine");

    // One transition: agent_active --user_message--> agent_active (exit, action recording the
    // message into the bounded buffer, entry, history record). The event is cloned per send,
    // as a caller holding it would.
    let mut inst = agent_active();
    let event = ConvEvent::UserMessage {
        text: "where is my order?".into(),
    };
    g.bench_function("transition/user_message", |b| {
        b.iter(|| def.send(black_box(&mut inst), event.clone(), now).unwrap())
    });

    // Three transitions per iteration, one bubbled to the compound parent:
    // agent_active --timeout (on Active)--> idle --user_message--> processing_intent
    // --intent_detected--> agent_active.
    let mut inst = agent_active();
    let intent = ConvEvent::IntentDetected {
        intent: "support".into(),
        needs_confirmation: false,
    };
    g.bench_function("transition/cycle_of_3_with_bubbling", |b| {
        b.iter(|| {
            def.send(&mut inst, ConvEvent::Timeout, now).unwrap();
            def.send(&mut inst, event.clone(), now).unwrap();
            def.send(&mut inst, intent.clone(), now).unwrap()
        })
    });

    // The error path: no transition for `confirm` in agent_active (instance unchanged).
    let mut inst = agent_active();
    g.bench_function("no_transition", |b| {
        b.iter(|| {
            def.send(black_box(&mut inst), ConvEvent::Confirm, now)
                .unwrap_err()
        })
    });

    g.bench_function("due_check", |b| {
        let inst = agent_active();
        b.iter(|| def.due(black_box(&inst), now))
    });

    // An instance at its bounds (20 messages, 50 history records) to JSON and back.
    let inst = agent_active();
    g.bench_function("serde_json_roundtrip_full_instance", |b| {
        b.iter(|| {
            let v = serde_json::to_vec(black_box(&inst)).unwrap();
            serde_json::from_slice::<Instance<ConvState, ConvContext>>(&v).unwrap()
        })
    });

    // What the webhook does per message: load, send, save (version-checked) on the memory store.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let machines = Machines::new(def.clone(), Arc::new(MemorySnapshots::new()));
    let mut first = agent_active();
    rt.block_on(machines.save("250788000001", &mut first))
        .unwrap();
    g.bench_function("memory_store/load_send_save", |b| {
        b.iter(|| {
            rt.block_on(machines.send("250788000001", event.clone(), now))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
