//! The pre-built conversation machine: scenarios and property tests.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use steadfast_state_machine::Error;
use steadfast_state_machine::conversation::{
    self, ConvContext, ConvEvent, ConvState, IDLE_TIMEOUT, MAX_FALLBACK_ATTEMPTS, MAX_MESSAGES,
    Role,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

fn msg(text: &str) -> ConvEvent {
    ConvEvent::UserMessage { text: text.into() }
}

fn fail() -> ConvEvent {
    ConvEvent::Fail {
        reason: "agent down".into(),
    }
}

#[test]
fn a_message_is_classified_handed_to_the_agent_and_completed() {
    let def = conversation::definition();
    let mut c = conversation::new_instance(t0());
    assert_eq!(c.state(), ConvState::Idle);
    def.send(&mut c, msg("my bill is wrong"), t0()).unwrap();
    assert_eq!(c.state(), ConvState::ProcessingIntent);
    def.send(
        &mut c,
        ConvEvent::IntentDetected {
            intent: "billing".into(),
            needs_confirmation: false,
        },
        t0(),
    )
    .unwrap();
    assert_eq!(c.state(), ConvState::AgentActive);
    assert_eq!(c.context().intent.as_deref(), Some("billing"));
    def.send(
        &mut c,
        ConvEvent::AgentReply {
            text: "Fixed.".into(),
            done: true,
        },
        t0(),
    )
    .unwrap();
    assert_eq!(c.state(), ConvState::Completed);
    let roles: Vec<Role> = c.context().last_messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::User, Role::Agent]);
    assert_eq!(c.history().len(), 3);
}

#[test]
fn confirmation_accept_and_reject() {
    let def = conversation::definition();
    let mut c = conversation::new_instance(t0());
    def.send(&mut c, msg("cancel my plan"), t0()).unwrap();
    let intent = ConvEvent::IntentDetected {
        intent: "cancel".into(),
        needs_confirmation: true,
    };
    def.send(&mut c, intent.clone(), t0()).unwrap();
    assert_eq!(c.state(), ConvState::AwaitingConfirmation);
    def.send(&mut c, ConvEvent::Reject, t0()).unwrap();
    assert_eq!(c.state(), ConvState::AwaitingInput);
    assert_eq!(c.context().intent, None);
    def.send(&mut c, msg("cancel, really"), t0()).unwrap();
    def.send(&mut c, intent, t0()).unwrap();
    def.send(&mut c, ConvEvent::Confirm, t0()).unwrap();
    assert_eq!(c.state(), ConvState::AgentActive);
}

#[test]
fn fallback_counts_attempts_and_goes_to_error_after_three() {
    let def = conversation::definition();
    let mut c = conversation::new_instance(t0());
    def.send(&mut c, msg("hello"), t0()).unwrap();
    for attempt in 1..=MAX_FALLBACK_ATTEMPTS {
        def.send(&mut c, fail(), t0()).unwrap();
        assert_eq!(c.state(), ConvState::Fallback);
        assert_eq!(c.context().fallback_attempts, attempt);
        def.send(&mut c, msg("again"), t0()).unwrap();
        assert_eq!(c.state(), ConvState::ProcessingIntent);
    }
    def.send(&mut c, fail(), t0()).unwrap();
    assert_eq!(c.state(), ConvState::Error);
    assert_eq!(c.context().fallback_attempts, MAX_FALLBACK_ATTEMPTS);
    assert_eq!(c.context().last_error.as_deref(), Some("agent down"));
    // Writing again starts a new conversation with a fresh count.
    def.send(&mut c, msg("hello?"), t0()).unwrap();
    assert_eq!(c.state(), ConvState::ProcessingIntent);
    assert_eq!(c.context().fallback_attempts, 0);
}

#[test]
fn awaiting_input_and_agent_active_time_out_back_to_idle() {
    let def = conversation::definition();
    let timeout = TimeDelta::from_std(IDLE_TIMEOUT).unwrap();
    let mut c = conversation::new_instance(t0());
    assert_eq!(def.due_at(&c), None);
    def.send(&mut c, ConvEvent::Start, t0()).unwrap();
    assert_eq!(c.state(), ConvState::AwaitingInput);
    assert_eq!(def.due(&c, t0() + timeout - TimeDelta::seconds(1)), None);
    assert_eq!(def.due(&c, t0() + timeout), Some(ConvEvent::Timeout));

    // A message in agent_active restarts the idle clock (external self-transition).
    def.send(&mut c, msg("hi"), t0()).unwrap();
    def.send(
        &mut c,
        ConvEvent::IntentDetected {
            intent: "chat".into(),
            needs_confirmation: false,
        },
        t0(),
    )
    .unwrap();
    let later = t0() + TimeDelta::minutes(20);
    def.send(&mut c, msg("still there?"), later).unwrap();
    assert_eq!(c.state(), ConvState::AgentActive);
    assert_eq!(def.due(&c, t0() + timeout), None);
    let event = def.due(&c, later + timeout).unwrap();
    def.send(&mut c, event, later + timeout).unwrap();
    assert_eq!(c.state(), ConvState::Idle);
    assert_eq!(c.context().intent, None);
    assert_eq!(
        c.context().last_messages.len(),
        2,
        "messages survive a timeout"
    );
}

#[test]
fn events_without_a_transition_are_typed_errors() {
    let def = conversation::definition();
    let mut c = conversation::new_instance(t0());
    let before = c.clone();
    let e = def.send(&mut c, ConvEvent::Confirm, t0()).unwrap_err();
    assert!(
        matches!(e, Error::NoTransition { ref state, ref event } if state == "Idle" && event == "confirm")
    );
    assert_eq!(c, before);
}

#[test]
fn last_messages_keep_the_newest_twenty() {
    let mut ctx = ConvContext::default();
    for n in 0..45 {
        ctx.push_message(Role::User, n.to_string());
    }
    assert_eq!(ctx.last_messages.len(), MAX_MESSAGES);
    assert_eq!(ctx.last_messages.front().unwrap().text, "25");
    assert_eq!(ctx.last_messages.back().unwrap().text, "44");
}

#[test]
fn the_diagram_shows_the_nested_conversation() {
    let m = conversation::definition().to_mermaid();
    assert!(
        m.contains("state Active {\n        [*] --> AwaitingInput"),
        "{m}"
    );
    assert!(
        m.contains("    Active --> Fallback : Fail [attempts < 3]"),
        "{m}"
    );
    assert!(
        m.contains("note right of AgentActive : after 1800s sends timeout"),
        "{m}"
    );
}

fn event() -> impl Strategy<Value = ConvEvent> {
    prop_oneof![
        Just(ConvEvent::Start),
        "[a-z]{0,8}".prop_map(|text| ConvEvent::UserMessage { text }),
        ("[a-z]{1,6}", any::<bool>()).prop_map(|(intent, needs_confirmation)| {
            ConvEvent::IntentDetected {
                intent,
                needs_confirmation,
            }
        }),
        ("[a-z]{0,8}", any::<bool>()).prop_map(|(text, done)| ConvEvent::AgentReply { text, done }),
        Just(ConvEvent::Confirm),
        Just(ConvEvent::Reject),
        "[a-z]{0,8}".prop_map(|reason| ConvEvent::Fail { reason }),
        Just(ConvEvent::Timeout),
        Just(ConvEvent::Reset),
    ]
}

proptest! {
    // Each case runs up to 120 events with a serde round trip per event: 64 cases keep the
    // test to a few seconds.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn conversation_invariants_hold_for_any_event_sequence(
        steps in proptest::collection::vec((event(), 0i64..4000), 0..120)
    ) {
        let def = conversation::definition();
        let mut now = t0();
        let mut c = conversation::new_instance(now);
        for (event, dt) in steps {
            now += TimeDelta::seconds(dt);
            let before = c.clone();
            let result = def.send(&mut c, event.clone(), now);
            if result.is_err() {
                let no_transition = matches!(result, Err(Error::NoTransition { .. }));
                prop_assert!(no_transition, "unexpected {:?}", result);
                prop_assert_eq!(&c, &before);
            }
            prop_assert!(def.is_leaf(c.state()), "{:?} is not a leaf", c.state());
            prop_assert!(c.history().len() <= def.history_limit());
            prop_assert!(c.context().fallback_attempts <= MAX_FALLBACK_ATTEMPTS);
            prop_assert!(c.context().last_messages.len() <= MAX_MESSAGES);

            // A serialized copy is equal and behaves the same on the next event and timeout.
            let json = serde_json::to_string(&c).unwrap();
            let mut copy: steadfast_state_machine::Instance<ConvState, ConvContext> =
                serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&copy, &c);
            prop_assert_eq!(def.due(&c, now), def.due(&copy, now));
            prop_assert_eq!(def.due_at(&c), def.due_at(&copy));
            let mut original = c.clone();
            let probe = ConvEvent::Fail { reason: "probe".into() };
            let a = def.send(&mut original, probe.clone(), now).map_err(|e| e.to_string());
            let b = def.send(&mut copy, probe, now).map_err(|e| e.to_string());
            prop_assert_eq!(a, b);
            prop_assert_eq!(&original, &copy);
        }
    }
}

/// What the webhook's worker does per text message: the message, the intent on the first one,
/// the agent's reply.
fn chat(
    def: &steadfast_state_machine::Definition<ConvState, ConvEvent, ConvContext>,
    c: &mut steadfast_state_machine::Instance<ConvState, ConvContext>,
    n: i64,
) {
    for i in 0..n {
        let now = t0() + TimeDelta::seconds(i * 10);
        let text = format!("any jobs in Kigali? {i}");
        def.send(c, msg(&text), now).unwrap();
        if c.state() == ConvState::ProcessingIntent {
            let intent = ConvEvent::IntentDetected {
                intent: "jobs".into(),
                needs_confirmation: false,
            };
            def.send(c, intent, now).unwrap();
        }
        let reply = ConvEvent::AgentReply {
            text: format!("jobs got: {text}"),
            done: false,
        };
        def.send(c, reply, now).unwrap();
    }
}

#[test]
fn a_long_chat_keeps_a_short_history() {
    let def = conversation::definition();
    let mut c = conversation::new_instance(t0());
    chat(&def, &mut c, 20);
    // idle → processing_intent, → agent_active, then one record per event kind in
    // agent_active (41 transitions, 41 records before folding).
    let h = c.history();
    assert_eq!(h.len(), 4, "{h:?}");
    assert_eq!(h.iter().map(|r| r.count()).sum::<u64>(), 41);
    let bytes = serde_json::to_vec(&c).unwrap().len();
    // 5,171 bytes before folding, 3,881 of them history; the rest is the 20 last messages.
    assert!(bytes < 1_900, "{bytes} bytes");
    chat(&def, &mut c, 100);
    assert_eq!(c.history().len(), 4, "does not grow with the chat");
}

/// A snapshot written before folding existed: 50 records, none with a count. It loads as it
/// is, and shrinks to the current limit on its next transition.
#[tokio::test]
async fn a_snapshot_stored_with_the_old_history_loads_and_shrinks() {
    use std::sync::Arc;
    use steadfast_state_machine::{Machines, MemorySnapshots, SnapshotStore};
    let mut history = vec![
        serde_json::json!({"from": "idle", "to": "processing_intent", "event": "user_message", "at": "2026-11-21T12:00:00Z"}),
        serde_json::json!({"from": "processing_intent", "to": "agent_active", "event": "intent_detected", "at": "2026-11-21T12:00:00Z"}),
    ];
    for i in 0..48 {
        let event = if i % 2 == 0 {
            "agent_reply"
        } else {
            "user_message"
        };
        history.push(serde_json::json!({"from": "agent_active", "to": "agent_active", "event": event, "at": "2026-11-21T12:00:01Z"}));
    }
    let old = serde_json::json!({
        "definition": "conversation", "definition_version": 1, "state": "agent_active",
        "context": {"fallback_attempts": 0, "last_messages": [{"role": "user", "text": "hi"}],
                    "intent": "jobs", "last_error": null},
        "history": history, "entered_at": "2026-11-21T12:00:01Z", "version": 7,
    });
    let store = Arc::new(MemorySnapshots::new());
    store.save("wa:1", 0, &old, None).await.unwrap();
    let machines = Machines::new(conversation::definition(), store);
    let c = machines.load("wa:1").await.unwrap().unwrap();
    assert_eq!(c.history().len(), 50);
    assert!(c.history().iter().all(|r| r.repeats == 0));
    let applied = machines.send("wa:1", msg("more"), t0()).await.unwrap();
    let h = applied.instance.history();
    assert_eq!(h.len(), conversation::HISTORY_LIMIT);
    let last = h.back().unwrap();
    assert_eq!((last.event.as_ref(), last.repeats), ("user_message", 1));
}

#[test]
fn the_readme_shows_the_current_diagram() {
    let readme = include_str!("../README.md");
    let diagram = conversation::definition().to_mermaid();
    assert!(
        readme.contains(&format!("```mermaid\n{diagram}```")),
        "README diagram is stale; paste this:\n{diagram}"
    );
}
