//! The conversation machine fed arbitrary event sequences: never panics; the instance stays in
//! a declared leaf state, history stays bounded, fallback attempts never pass 3, a rejected
//! event leaves the instance unchanged, and a serde round trip gives an equal instance.
#![no_main]
use arbitrary::Arbitrary;
use chrono::{DateTime, Duration, Utc};
use libfuzzer_sys::fuzz_target;
use steadfast_state_machine::conversation::{self, ConvContext, ConvEvent, MAX_FALLBACK_ATTEMPTS};

#[derive(Arbitrary, Debug)]
enum Ev {
    Start,
    User(String),
    Intent(String, bool),
    Agent(String, bool),
    Confirm,
    Reject,
    Fail(String),
    Timeout,
    Reset,
    Wait(u16),
}

fuzz_target!(|events: Vec<Ev>| {
    let def = conversation::definition();
    let mut now: DateTime<Utc> = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let mut instance = def.new_instance(ConvContext::default(), now);
    for ev in events {
        let event = match ev {
            Ev::Wait(secs) => {
                now += Duration::seconds(secs as i64);
                if let Some(due) = def.due(&instance, now) {
                    let _ = def.send(&mut instance, due, now);
                }
                continue;
            }
            Ev::Start => ConvEvent::Start,
            Ev::User(text) => ConvEvent::UserMessage { text },
            Ev::Intent(intent, needs_confirmation) => ConvEvent::IntentDetected { intent, needs_confirmation },
            Ev::Agent(text, done) => ConvEvent::AgentReply { text, done },
            Ev::Confirm => ConvEvent::Confirm,
            Ev::Reject => ConvEvent::Reject,
            Ev::Fail(reason) => ConvEvent::Fail { reason },
            Ev::Timeout => ConvEvent::Timeout,
            Ev::Reset => ConvEvent::Reset,
        };
        let before = serde_json::to_string(&instance).unwrap();
        if def.send(&mut instance, event, now).is_err() {
            assert_eq!(before, serde_json::to_string(&instance).unwrap(), "rejected event changed the instance");
        }
        assert!(def.is_leaf(instance.state()), "not a leaf: {:?}", instance.state());
        assert!(instance.history().len() <= def.history_limit());
        assert!(instance.context().fallback_attempts <= MAX_FALLBACK_ATTEMPTS);
        let json = serde_json::to_string(&instance).unwrap();
        let back = serde_json::from_str(&json).unwrap();
        assert_eq!(instance, back);
    }
});
