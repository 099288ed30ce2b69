//! Behaviour held against resilience4j's documented behaviour (issue 14), on a manual clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast_circuit_breaker::{
    CallError, CircuitBreaker, Config, ConfigBuilder, Event, ManualMonotonicClock, Outcome, State,
    Transition,
};

fn breaker(config: ConfigBuilder) -> (CircuitBreaker, ManualMonotonicClock) {
    let clock = ManualMonotonicClock::new();
    let b = CircuitBreaker::with_clock(config.build().unwrap(), clock.clone());
    (b, clock)
}

fn count_config(window: u32, minimum: u32) -> ConfigBuilder {
    Config::builder()
        .count_window(window)
        .minimum_calls(minimum)
        .failure_rate_threshold(50.0)
        .open_duration(Duration::from_secs(10))
}

#[test]
fn a_call_lasting_exactly_the_slow_threshold_is_not_slow() {
    let (b, clock) = breaker(
        count_config(2, 2)
            .slow_call_duration(Duration::from_secs(2))
            .slow_call_rate_threshold(50.0),
    );
    for _ in 0..2 {
        let p = b.try_acquire().unwrap();
        clock.advance(Duration::from_secs(2));
        p.success();
    }
    assert_eq!(b.metrics().slow_calls, 0);
    assert_eq!(b.state(), State::Closed);
    // One millisecond more is slow (the coarse clock's resolution).
    let p = b.try_acquire().unwrap();
    clock.advance(Duration::from_millis(2001));
    p.success();
    assert_eq!(b.metrics().slow_calls, 1);
    assert_eq!(b.state(), State::Open, "1 slow of 2 = 50 %");
}

fn fail(b: &CircuitBreaker, n: usize) {
    for _ in 0..n {
        b.try_acquire().expect("permitted").failure();
    }
}

fn kinds(events: Vec<Event>) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::Transition { from, to, .. } => format!("{from}->{to}"),
            Event::Rejected { state, .. } => format!("rejected:{state}"),
            Event::Reset { .. } => "reset".to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn reset_from_open_publishes_the_transition_then_the_reset() {
    let (b, _) = breaker(count_config(2, 2));
    let mut events = b.subscribe();
    fail(&b, 2);
    assert_eq!(b.state(), State::Open);
    b.reset();
    assert_eq!(
        kinds(events.drain()),
        ["closed->open", "open->closed", "reset"]
    );
    // From Closed there is no transition to publish, only the reset.
    b.reset();
    assert_eq!(kinds(events.drain()), ["reset"]);
    // From a manual state too.
    b.force_open();
    b.reset();
    assert_eq!(
        kinds(events.drain()),
        ["closed->forced_open", "forced_open->closed", "reset"]
    );
}

#[test]
fn not_permitted_counts_per_episode_and_open_inherits_it() {
    let (b, clock) = breaker(count_config(2, 2).half_open_permits(1));
    fail(&b, 2);
    assert!(b.try_acquire().is_err());
    assert!(b.try_acquire().is_err());
    assert_eq!(b.metrics().not_permitted, 2, "Open counts its rejections");
    clock.advance(Duration::from_secs(10));
    let probe = b.try_acquire().expect("probe");
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(
        b.metrics().not_permitted,
        0,
        "a HalfOpen episode starts at zero"
    );
    assert!(b.try_acquire().is_err(), "the only probe is out");
    assert_eq!(b.metrics().not_permitted, 1);
    probe.failure();
    assert_eq!(b.state(), State::Open);
    assert_eq!(
        b.metrics().not_permitted,
        1,
        "Open inherits the count of the episode it came from"
    );
    assert!(b.try_acquire().is_err());
    assert_eq!(b.metrics().not_permitted, 2);
    clock.advance(Duration::from_secs(20));
    b.try_acquire().expect("probe").success();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(
        b.metrics().not_permitted,
        0,
        "a Closed episode starts at zero"
    );
}

#[test]
fn rates_are_absent_until_the_minimum_calls_not_zero() {
    let (b, clock) = breaker(count_config(10, 4).half_open_permits(2));
    let m = b.metrics();
    assert_eq!((m.failure_rate, m.slow_call_rate), (None, None));
    for _ in 0..3 {
        b.try_acquire().unwrap().success();
    }
    assert_eq!(b.metrics().failure_rate, None, "3 calls, minimum 4");
    b.try_acquire().unwrap().success();
    let m = b.metrics();
    assert_eq!((m.failure_rate, m.slow_call_rate), (Some(0.0), Some(0.0)));
    let json = serde_json::to_value(CircuitBreaker::new(Config::default()).metrics()).unwrap();
    assert!(json["failure_rate"].is_null());

    // HalfOpen: no rate until every probe has reported.
    b.transition_to_open();
    clock.advance(Duration::from_secs(10));
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    p1.failure();
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.metrics().failure_rate, None, "1 probe of 2 reported");
    drop(p2);
}

#[tokio::test(start_paused = true)]
async fn the_classifier_is_set_once_in_the_config_and_call_with_overrides_it() {
    let by_status = |r: &Result<u16, String>| match r {
        Ok(s) if *s >= 500 => Outcome::Failure,
        Ok(s) if *s == 404 => Outcome::Ignore,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    let (b, _) = breaker(count_config(10, 2).call_timeout(None).classifier(by_status));
    let got: Result<u16, CallError<String>> = b.call(|| async { Ok(404) }).await;
    assert_eq!(got.unwrap(), 404);
    assert_eq!(
        b.metrics().calls,
        0,
        "404 ignored by the configured classifier"
    );
    // Other result types keep the default.
    let other: Result<&str, CallError<()>> = b.call(|| async { Ok("fine") }).await;
    assert_eq!(other.unwrap(), "fine");
    assert_eq!(b.metrics().failures, 0);
    // A per-call override wins over the configured classifier.
    let all_ok = |_: &Result<u16, String>| Outcome::Success;
    b.call_with(&all_ok, || async { Ok::<u16, String>(503) })
        .await
        .unwrap();
    assert_eq!(b.metrics().failures, 0);
    assert_eq!(b.state(), State::Closed);
    // Through the configured one, a 503 inside Ok is a failure.
    let got: Result<u16, CallError<String>> = b.call(|| async { Ok(503) }).await;
    assert_eq!(got.unwrap(), 503, "the caller still sees the response");
    let m = b.metrics();
    assert_eq!((m.calls, m.failures), (3, 1));
    assert_eq!(b.classify(&Ok::<u16, String>(500)), Outcome::Failure);
    assert_eq!(b.state(), State::Closed, "1 of 3");
}

#[test]
fn state_change_callbacks_see_every_transition_in_order() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let (b, clock) = breaker(count_config(2, 2).event_capacity(1).on_state_change(
        move |t: Transition| {
            assert_eq!(&*t.name, "default");
            log.lock().unwrap().push(format!("{}->{}", t.from, t.to));
        },
    ));
    // A subscriber that never reads, holding one event: it loses events; the callback does not.
    let mut lagging = b.subscribe();
    fail(&b, 2);
    clock.advance(Duration::from_secs(10));
    b.try_acquire().expect("probe").failure();
    clock.advance(Duration::from_secs(10));
    b.try_acquire().expect("probe").success();
    b.transition_to_open();
    b.reset();
    let want = [
        "closed->open",
        "open->half_open",
        "half_open->open",
        "open->half_open",
        "half_open->closed",
        "closed->open",
        "open->closed",
    ];
    assert_eq!(*seen.lock().unwrap(), want);
    assert!(lagging.drain().len() < want.len());
}

#[test]
fn a_callback_may_move_the_breaker_itself() {
    let slot: Arc<Mutex<Option<CircuitBreaker>>> = Arc::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (inner_slot, log) = (Arc::clone(&slot), Arc::clone(&seen));
    let (b, _) = breaker(count_config(2, 2).on_state_change(move |t: Transition| {
        log.lock().unwrap().push((t.from, t.to));
        // An operator hook that pins an opened breaker ForcedOpen.
        if t.to == State::Open {
            let b = inner_slot.lock().unwrap().clone();
            if let Some(b) = b {
                b.force_open();
            }
        }
    }));
    *slot.lock().unwrap() = Some(b.clone());
    fail(&b, 2);
    assert_eq!(b.state(), State::ForcedOpen);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (State::Closed, State::Open),
            (State::Open, State::ForcedOpen)
        ]
    );
    slot.lock().unwrap().take();
}

#[tokio::test(start_paused = true)]
async fn automatic_transition_to_half_open_on_a_timer() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let (b, _clock) = breaker(
        count_config(2, 2)
            .automatic_transition_to_half_open(true)
            .on_state_change(move |t: Transition| log.lock().unwrap().push((t.from, t.to))),
    );
    fail(&b, 2);
    assert_eq!(b.state(), State::Open);
    tokio::time::sleep(Duration::from_millis(9_999)).await;
    assert_eq!(b.state(), State::Open, "not before the wait is over");
    tokio::time::sleep(Duration::from_millis(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(b.state(), State::HalfOpen, "no call needed");
    assert_eq!(
        *seen.lock().unwrap(),
        [(State::Closed, State::Open), (State::Open, State::HalfOpen)]
    );
    b.try_acquire().expect("probe").success();
    assert_eq!(b.state(), State::Closed);

    // A timer whose Open episode ended early (here: a reset) does nothing.
    fail(&b, 2);
    b.reset();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn without_the_option_open_waits_for_a_call() {
    let (b, clock) = breaker(count_config(2, 2));
    assert!(!b.config().automatic_transition_to_half_open());
    fail(&b, 2);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(b.state(), State::Open);
    clock.advance(Duration::from_secs(10));
    b.try_acquire().expect("probe").success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn automatic_transition_outside_a_runtime_falls_back_to_the_next_call() {
    let (b, clock) = breaker(count_config(2, 2).automatic_transition_to_half_open(true));
    fail(&b, 2);
    assert_eq!(b.state(), State::Open);
    clock.advance(Duration::from_secs(10));
    b.try_acquire().expect("probe").success();
    assert_eq!(b.state(), State::Closed);
}
