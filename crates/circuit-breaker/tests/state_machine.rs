//! Scenario tests of the state machine, after resilience4j's behaviour, on a manual clock.

use std::time::Duration;

use steadfast_circuit_breaker::{
    CallError, CircuitBreaker, Config, ConfigBuilder, Event, ManualMonotonicClock, Outcome, State,
};
use steadfast_retry::Backoff;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn count_config(window: u32, minimum: u32, threshold: f64) -> ConfigBuilder {
    Config::builder()
        .count_window(window)
        .minimum_calls(minimum)
        .failure_rate_threshold(threshold)
        .open_duration(secs(10))
}

fn breaker(config: ConfigBuilder) -> (CircuitBreaker, ManualMonotonicClock) {
    let clock = ManualMonotonicClock::new();
    let b = CircuitBreaker::with_clock(config.build().unwrap(), clock.clone());
    (b, clock)
}

fn succeed(b: &CircuitBreaker, n: usize) {
    for _ in 0..n {
        b.try_acquire().expect("permitted").success();
    }
}

fn fail(b: &CircuitBreaker, n: usize) {
    for _ in 0..n {
        b.try_acquire().expect("permitted").failure();
    }
}

/// Opens a breaker by failures, then waits out the open duration.
fn open_then_wait(b: &CircuitBreaker, clock: &ManualMonotonicClock) {
    b.transition_to_open();
    clock.advance(secs(10));
}

#[test]
fn trips_only_after_minimum_calls() {
    let (b, _) = breaker(count_config(10, 5, 50.0));
    fail(&b, 4);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.metrics().failure_rate, None, "4 calls, minimum 5");
    fail(&b, 1);
    assert_eq!(b.state(), State::Open);
}

#[test]
fn success_that_reaches_the_minimum_trips_a_failing_window() {
    let (b, _) = breaker(count_config(10, 5, 50.0));
    fail(&b, 4);
    succeed(&b, 1);
    assert_eq!(b.state(), State::Open, "4 failures of 5 calls = 80 %");
}

#[test]
fn threshold_edges_count_window() {
    // 49 % stays closed at 50 %, whichever order the outcomes come in.
    let (b, _) = breaker(count_config(100, 100, 50.0));
    fail(&b, 49);
    succeed(&b, 51);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.metrics().failure_rate, Some(49.0));

    let (b, _) = breaker(count_config(100, 100, 50.0));
    succeed(&b, 51);
    fail(&b, 49);
    assert_eq!(b.state(), State::Closed);

    // 50 % opens.
    let (b, _) = breaker(count_config(100, 100, 50.0));
    fail(&b, 50);
    succeed(&b, 49);
    assert_eq!(b.state(), State::Closed);
    succeed(&b, 1);
    assert_eq!(b.state(), State::Open);

    let (b, _) = breaker(count_config(100, 100, 50.0));
    succeed(&b, 50);
    fail(&b, 49);
    assert_eq!(b.state(), State::Closed);
    fail(&b, 1);
    assert_eq!(b.state(), State::Open);
}

#[test]
fn count_window_forgets_calls_beyond_its_size() {
    let (b, _) = breaker(count_config(4, 4, 50.0));
    fail(&b, 1);
    succeed(&b, 3); // 1/4 = 25 %
    succeed(&b, 1); // the failure leaves the window
    let m = b.metrics();
    assert_eq!((m.calls, m.failures), (4, 0));
    fail(&b, 1);
    assert_eq!(b.state(), State::Closed, "1/4 = 25 %");
    fail(&b, 1);
    assert_eq!(b.state(), State::Open, "2/4 = 50 %");
}

#[test]
fn minimum_above_count_window_is_the_window_size() {
    let (b, _) = breaker(count_config(3, 100, 50.0));
    fail(&b, 3);
    assert_eq!(b.state(), State::Open);
}

#[test]
fn slow_calls_trip() {
    let (b, clock) = breaker(
        count_config(4, 4, 100.0)
            .slow_call_duration(secs(2))
            .slow_call_rate_threshold(50.0),
    );
    succeed(&b, 2);
    for _ in 0..2 {
        let p = b.try_acquire().unwrap();
        clock.advance(Duration::from_millis(2001));
        p.success();
    }
    let m = b.metrics();
    assert_eq!(b.state(), State::Open);
    assert_eq!(m.failures, 0);
}

#[test]
fn calls_just_under_the_slow_duration_are_not_slow() {
    let (b, clock) = breaker(
        count_config(4, 4, 100.0)
            .slow_call_duration(secs(2))
            .slow_call_rate_threshold(50.0),
    );
    for _ in 0..4 {
        let p = b.try_acquire().unwrap();
        clock.advance(Duration::from_millis(1999));
        p.success();
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.metrics().slow_calls, 0);
}

#[test]
fn ignored_errors_do_not_count() {
    let (b, _) = breaker(count_config(10, 2, 50.0));
    for _ in 0..10 {
        b.try_acquire().unwrap().ignore();
    }
    let m = b.metrics();
    assert_eq!(m.calls, 0);
    assert_eq!(b.state(), State::Closed);
    succeed(&b, 1);
    b.try_acquire().unwrap().record(Outcome::Ignore);
    fail(&b, 1);
    assert_eq!(b.state(), State::Open, "1 success, 1 failure = 50 %");
}

#[test]
fn dropped_permits_record_nothing() {
    let (b, _) = breaker(count_config(10, 1, 50.0));
    for _ in 0..5 {
        drop(b.try_acquire().unwrap());
    }
    assert_eq!(b.metrics().calls, 0);
}

#[test]
fn time_window_forgets_old_buckets() {
    let (b, clock) = breaker(
        Config::builder()
            .time_window(secs(10))
            .minimum_calls(5)
            .failure_rate_threshold(50.0),
    );
    fail(&b, 3);
    clock.advance(secs(9));
    succeed(&b, 1);
    assert_eq!(b.metrics().calls, 4, "still inside the window");
    clock.advance(secs(1));
    assert_eq!(b.metrics().calls, 1, "the first second left the window");
    fail(&b, 2);
    succeed(&b, 2);
    // In the window: 2 failures of 5 (40 %). Without eviction it would be 5 of 8.
    assert_eq!(b.state(), State::Closed);
    let m = b.metrics();
    assert_eq!((m.calls, m.failures), (5, 2));
    fail(&b, 1);
    assert_eq!(b.state(), State::Open, "3 of 6 = 50 %");
}

#[test]
fn time_window_forgets_everything_after_a_long_gap() {
    let (b, clock) = breaker(
        Config::builder()
            .time_window(secs(3))
            .minimum_calls(2)
            .failure_rate_threshold(50.0),
    );
    succeed(&b, 5);
    fail(&b, 1);
    assert_eq!(b.state(), State::Closed, "1 of 6");
    clock.advance(secs(3600));
    assert_eq!(b.metrics().calls, 0);
    succeed(&b, 1);
    fail(&b, 1);
    assert_eq!(b.state(), State::Open);
}

#[test]
fn open_rejects_with_time_until_the_next_probe() {
    let (b, clock) = breaker(count_config(2, 2, 50.0));
    fail(&b, 2);
    assert_eq!(b.state(), State::Open);
    clock.advance(secs(4));
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.state, State::Open);
    assert_eq!(r.retry_after, Some(secs(6)));
    let m = b.metrics();
    assert_eq!(m.not_permitted, 1);
    assert_eq!(m.time_until_half_open(), Some(secs(6)));
}

#[test]
fn first_call_after_the_wait_is_a_probe() {
    let (b, clock) = breaker(count_config(2, 2, 50.0));
    fail(&b, 2);
    clock.advance(Duration::from_millis(9_999));
    assert!(b.try_acquire().is_err());
    clock.advance(Duration::from_millis(1));
    let p = b.try_acquire().expect("probe");
    assert_eq!(b.state(), State::HalfOpen);
    p.success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_permit_says_whether_it_is_a_probe() {
    let (b, clock) = breaker(count_config(2, 2, 50.0));
    let closed = b.try_acquire().unwrap();
    assert!(!closed.is_probe(), "Closed: an ordinary call");
    closed.failure();
    b.try_acquire().unwrap().failure();
    assert_eq!(b.state(), State::Open);
    clock.advance(secs(10));
    let probe = b.try_acquire_owned().expect("probe");
    assert!(probe.is_probe());
    probe.failure();
    assert_eq!(b.state(), State::Open, "the failed probe reopened it");
    assert_eq!(b.metrics().time_until_half_open(), Some(secs(10)));
    clock.advance(secs(10));
    let probe = b.try_acquire().expect("probe");
    assert!(probe.is_probe());
    probe.success();
    assert!(!b.try_acquire().unwrap().is_probe(), "Closed again");
    b.transition_to_disabled();
    assert!(!b.try_acquire().unwrap().is_probe());
}

#[test]
fn half_open_admits_exactly_n() {
    let (b, clock) = breaker(count_config(2, 2, 50.0).half_open_permits(3));
    open_then_wait(&b, &clock);
    let probes: Vec<_> = (0..3).map(|_| b.try_acquire().expect("probe")).collect();
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.state, State::HalfOpen);
    assert_eq!(r.retry_after, None);
    // Two successes are not enough to decide.
    let mut probes = probes.into_iter();
    probes.next().unwrap().success();
    probes.next().unwrap().success();
    assert_eq!(b.state(), State::HalfOpen);
    assert!(
        b.try_acquire().is_err(),
        "completed probes are not handed out again"
    );
    probes.next().unwrap().success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn probe_failure_reopens() {
    let (b, clock) = breaker(count_config(2, 2, 50.0).half_open_permits(2));
    open_then_wait(&b, &clock);
    let a = b.try_acquire().unwrap();
    let c = b.try_acquire().unwrap();
    a.success();
    c.failure();
    assert_eq!(b.state(), State::Open, "1 of 2 probes failed = 50 %");
}

#[test]
fn probes_under_the_threshold_close() {
    let (b, clock) = breaker(count_config(2, 2, 50.0).half_open_permits(3));
    open_then_wait(&b, &clock);
    let ps: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
    let mut ps = ps.into_iter();
    ps.next().unwrap().failure();
    ps.next().unwrap().success();
    ps.next().unwrap().success();
    assert_eq!(b.state(), State::Closed, "1 of 3 = 33 %");
    assert_eq!(b.metrics().calls, 0, "Closed starts with an empty window");
}

#[test]
fn dropped_or_ignored_probe_gives_its_slot_back() {
    let (b, clock) = breaker(count_config(2, 2, 50.0).half_open_permits(1));
    open_then_wait(&b, &clock);
    let p = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    drop(p);
    let p = b.try_acquire().expect("slot returned");
    p.ignore();
    b.try_acquire().expect("slot returned").success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn max_wait_in_half_open_reopens() {
    let (b, clock) = breaker(
        count_config(2, 2, 50.0)
            .half_open_permits(1)
            .max_wait_in_half_open(Some(secs(5))),
    );
    open_then_wait(&b, &clock);
    let leaked = b.try_acquire().unwrap();
    clock.advance(secs(4));
    assert_eq!(b.try_acquire().unwrap_err().state, State::HalfOpen);
    clock.advance(secs(1));
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.state, State::Open);
    assert_eq!(b.state(), State::Open);
    // The stale probe's outcome belongs to an episode that is over.
    leaked.success();
    assert_eq!(b.state(), State::Open);
}

#[test]
fn open_duration_grows_on_repeated_opens_and_resets_on_close() {
    let (b, clock) = breaker(
        count_config(2, 2, 50.0)
            .open_backoff(Backoff::exponential(secs(10), 2.0), secs(25))
            .half_open_permits(1),
    );
    fail(&b, 2);
    assert_eq!(b.metrics().time_until_half_open(), Some(secs(10)));
    clock.advance(secs(10));
    b.try_acquire().unwrap().failure();
    assert_eq!(b.metrics().time_until_half_open(), Some(secs(20)));
    clock.advance(secs(20));
    b.try_acquire().unwrap().failure();
    assert_eq!(b.metrics().time_until_half_open(), Some(secs(25)), "capped");
    clock.advance(secs(25));
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Closed);
    fail(&b, 2);
    assert_eq!(b.metrics().time_until_half_open(), Some(secs(10)));
}

#[test]
fn forced_open_rejects_until_moved_by_hand() {
    let (b, clock) = breaker(count_config(2, 2, 50.0));
    b.force_open();
    clock.advance(secs(3600));
    let r = b.try_acquire().unwrap_err();
    assert_eq!((r.state, r.retry_after), (State::ForcedOpen, None));
    assert_eq!(b.state(), State::ForcedOpen);
    b.transition_to_closed();
    succeed(&b, 1);
}

#[test]
fn disabled_permits_everything_and_records_nothing() {
    let (b, _) = breaker(count_config(2, 2, 50.0));
    b.disable();
    fail(&b, 100);
    assert_eq!(b.state(), State::Disabled);
    assert_eq!(b.metrics().calls, 0);
}

#[test]
fn metrics_only_records_but_never_trips() {
    let (b, _) = breaker(count_config(10, 2, 50.0));
    b.transition_to_metrics_only();
    fail(&b, 10);
    assert_eq!(b.state(), State::MetricsOnly);
    let m = b.metrics();
    assert_eq!((m.calls, m.failures, m.failure_rate), (10, 10, Some(100.0)));
}

#[test]
fn reset_clears_everything() {
    let (b, _) = breaker(count_config(4, 2, 50.0));
    fail(&b, 2);
    assert!(b.try_acquire().is_err());
    b.reset();
    let m = b.metrics();
    assert_eq!(m.state, State::Closed);
    assert_eq!((m.calls, m.not_permitted, m.consecutive_opens), (0, 0, 0));
    succeed(&b, 1);
}

#[test]
fn manual_transitions() {
    let (b, _) = breaker(count_config(4, 2, 50.0).half_open_permits(2));
    b.transition_to_open();
    assert_eq!(b.state(), State::Open);
    b.transition_to_half_open();
    assert_eq!(b.state(), State::HalfOpen);
    let _a = b.try_acquire().unwrap();
    let _c = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    b.transition_to_closed();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn outcomes_from_before_a_transition_do_not_leak_into_half_open() {
    let (b, clock) = breaker(count_config(2, 2, 50.0).half_open_permits(1));
    let old = b.try_acquire().unwrap();
    open_then_wait(&b, &clock);
    let probe = b.try_acquire().unwrap();
    old.failure();
    assert_eq!(b.state(), State::HalfOpen, "a Closed permit is no probe");
    probe.success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn events_on_transitions_and_rejections() {
    let (b, clock) = breaker(count_config(2, 2, 50.0));
    let mut events = b.subscribe();
    fail(&b, 2);
    let _ = b.try_acquire();
    clock.advance(secs(10));
    b.try_acquire().unwrap().success();
    b.reset();
    let got = events.drain();
    let kinds: Vec<String> = got
        .iter()
        .map(|e| match e {
            Event::Transition { from, to, .. } => format!("{from}->{to}"),
            Event::Rejected { state, .. } => format!("rejected:{state}"),
            Event::Reset { .. } => "reset".to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "closed->open",
            "rejected:open",
            "open->half_open",
            "half_open->closed",
            "reset"
        ]
    );
    assert!(got.iter().all(|e| e.name() == "default"));
}

#[test]
fn metrics_serialize() {
    let clock = ManualMonotonicClock::new();
    let b = CircuitBreaker::named_with_clock(
        "payments",
        count_config(4, 2, 50.0).build().unwrap(),
        clock,
    );
    succeed(&b, 3);
    fail(&b, 1);
    let json = serde_json::to_value(b.metrics()).unwrap();
    assert_eq!(json["name"], "payments");
    assert_eq!(json["state"], "closed");
    assert_eq!(json["calls"], 4);
    assert_eq!(json["successes"], 3);
    assert_eq!(json["failure_rate"], 25.0);
}

#[tokio::test(start_paused = true)]
async fn call_counts_errors_and_classified_ok_values() {
    let (b, _) = breaker(count_config(10, 3, 50.0).call_timeout(None));
    let ok: Result<u32, CallError<&str>> = b.call(|| async { Ok(1) }).await;
    assert_eq!(ok.unwrap(), 1);
    let err: Result<u32, CallError<&str>> = b.call(|| async { Err("boom") }).await;
    assert!(matches!(err, Err(CallError::Inner("boom"))));
    // An HTTP-like 503 inside Ok counts as a failure; the caller still gets the value.
    let status_classifier = |r: &Result<u16, &str>| match r {
        Ok(s) if *s >= 500 => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    let got = b.call_with(&status_classifier, || async { Ok(503) }).await;
    assert_eq!(got.unwrap(), 503);
    assert_eq!(b.state(), State::Open, "2 failures of 3");
    let rejected: Result<u16, CallError<&str>> = b.call(|| async { Ok(200) }).await;
    assert!(matches!(rejected, Err(CallError::Rejected(r)) if r.state == State::Open));
}

#[tokio::test(start_paused = true)]
async fn call_timeout_cancels_and_counts_as_failure() {
    let (b, _) = breaker(count_config(10, 1, 50.0).call_timeout(Some(secs(10))));
    let r: Result<(), CallError<()>> = b
        .call(|| async {
            tokio::time::sleep(secs(11)).await;
            Ok(())
        })
        .await;
    assert!(matches!(r, Err(CallError::Timeout)));
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn cancelled_call_records_nothing_and_frees_the_probe() {
    let (b, clock) = breaker(count_config(2, 2, 50.0).half_open_permits(1));
    open_then_wait(&b, &clock);
    let slow = b.call(|| async {
        tokio::time::sleep(secs(1)).await;
        Ok::<_, ()>(())
    });
    // Cancel it mid-flight.
    let timed_out = tokio::time::timeout(Duration::from_millis(10), slow).await;
    assert!(timed_out.is_err());
    assert_eq!(b.state(), State::HalfOpen);
    b.call(|| async { Ok::<_, ()>(()) }).await.unwrap();
    assert_eq!(b.state(), State::Closed);
}
