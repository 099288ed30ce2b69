//! The registry of named breakers.

use std::time::Duration;

use steadfast_circuit_breaker::{Config, ManualMonotonicClock, Preset, Registry, State};

#[test]
fn get_or_create_returns_one_shared_breaker_per_name() {
    let registry = Registry::with_clock(ManualMonotonicClock::new());
    let a = registry.get_or_create("payments", Preset::Standard);
    let b = registry.get_or_create("payments", Preset::AiAgent);
    a.force_open();
    assert_eq!(b.state(), State::ForcedOpen, "same breaker");
    assert_eq!(
        b.config().failure_rate_threshold(),
        50.0,
        "first preset wins"
    );
    assert_eq!(b.name(), "payments");
    let agent = registry.get_or_create("llm", Preset::AiAgent);
    assert_eq!(agent.config().failure_rate_threshold(), 60.0);
    let custom = registry.get_or_create(
        "custom",
        Config::builder()
            .failure_rate_threshold(10.0)
            .build()
            .unwrap(),
    );
    assert_eq!(custom.config().failure_rate_threshold(), 10.0);
    assert_eq!(registry.names(), ["custom", "llm", "payments"]);
    assert_eq!(registry.len(), 3);
    assert!(registry.get("missing").is_none());
    assert!(registry.remove("llm").is_some());
    assert_eq!(registry.len(), 2);
}

#[test]
fn breakers_share_the_registry_clock() {
    let clock = ManualMonotonicClock::new();
    let registry = Registry::with_clock(clock.clone());
    let b = registry.get_or_create("x", Preset::Default);
    b.transition_to_open();
    clock.advance(Duration::from_secs(60));
    b.try_acquire()
        .expect("the open duration passed on the shared clock")
        .success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn remove_idle_keeps_recent_and_open_breakers() {
    let clock = ManualMonotonicClock::new();
    let registry = Registry::with_clock(clock.clone());
    registry.get_or_create("idle", Preset::Default);
    registry
        .get_or_create("open", Preset::Default)
        .transition_to_open();
    clock.advance(Duration::from_secs(100));
    registry.get_or_create("recent", Preset::Default);
    clock.advance(Duration::from_secs(100));
    assert!(registry.get("recent").is_some()); // a lookup counts as use
    let removed = registry.remove_idle(Duration::from_secs(150));
    assert_eq!(removed, ["idle"]);
    assert_eq!(registry.names(), ["open", "recent"]);
}

#[test]
fn snapshot_serializes_every_breaker() {
    let registry = Registry::with_clock(ManualMonotonicClock::new());
    let b = registry.get_or_create("a", Preset::Standard);
    b.try_acquire().unwrap().success();
    registry.get_or_create("b", Preset::Standard).force_open();
    let snap = registry.snapshot();
    assert_eq!(snap.breakers.len(), 2);
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["a"]["state"], "closed");
    assert_eq!(json["a"]["calls"], 1);
    assert_eq!(json["b"]["state"], "forced_open");
}

#[test]
fn concurrent_get_or_create_makes_one_breaker() {
    let registry = Registry::with_clock(ManualMonotonicClock::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..100 {
                    registry
                        .get_or_create("shared", Preset::Standard)
                        .try_acquire()
                        .unwrap()
                        .success();
                }
            });
        }
    });
    assert_eq!(registry.len(), 1);
    assert_eq!(registry.get("shared").unwrap().metrics().calls, 400);
}
