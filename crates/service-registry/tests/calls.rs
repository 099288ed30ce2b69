//! Calls through the registry against tiny local HTTP servers: balancing, P2C, retry across
//! endpoints, fallback, breaker ejection and recovery, panic mode, draining, report and events.

mod support;

use std::time::Duration;

use steadfast_service_registry::circuit_breaker::{
    Config as BreakerConfig, ManualMonotonicClock, State,
};
use steadfast_service_registry::retry::RetryPolicy;
use steadfast_service_registry::{
    Balance, CallError, Endpoint, Error, HealthState, Registry, RegistryEvent, ServiceConfig,
    ServiceStatus,
};
use support::{Mode, TestServer, closed_port, moved_to, wait_for, work};

/// Quick retries (no real waiting worth the name), 3 attempts.
fn quick_retry() -> RetryPolicy {
    RetryPolicy::builder()
        .constant(Duration::from_millis(1))
        .max_attempts(3)
        .build()
        .unwrap()
}

fn config(name: &str, servers: &[&TestServer]) -> steadfast_service_registry::ServiceConfigBuilder {
    ServiceConfig::builder(name)
        .endpoints(servers.iter().map(|s| s.url.as_str()))
        .retry(quick_retry())
        .call_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn round_robin_spreads_calls_evenly() {
    let (a, b, c) = (
        TestServer::start("a").await,
        TestServer::start("b").await,
        TestServer::start("c").await,
    );
    let registry = Registry::new();
    registry
        .register(config("svc", &[&a, &b, &c]).build().unwrap())
        .unwrap();
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(work(&registry, &client, "svc").await.unwrap());
    }
    assert_eq!(answers, ["a", "b", "c", "a", "b", "c"]);
}

#[tokio::test]
async fn weighted_round_robin_follows_weights() {
    let (a, b) = (TestServer::start("a").await, TestServer::start("b").await);
    let registry = Registry::new();
    registry
        .register(
            ServiceConfig::builder("svc")
                .endpoint(Endpoint::new(a.url.as_str()).weight(3))
                .endpoint(Endpoint::new(b.url.as_str()))
                .balance(Balance::WeightedRoundRobin)
                .build()
                .unwrap(),
        )
        .unwrap();
    let client = reqwest::Client::new();
    for _ in 0..8 {
        work(&registry, &client, "svc").await.unwrap();
    }
    assert_eq!((a.hits(), b.hits()), (6, 2));
}

#[tokio::test]
async fn p2c_prefers_the_less_loaded_endpoint() {
    let (a, b) = (TestServer::start("a").await, TestServer::start("b").await);
    let registry = Registry::new();
    registry
        .register(
            config("svc", &[&a, &b])
                .balance(Balance::P2cLeastPending)
                .build()
                .unwrap(),
        )
        .unwrap();
    // Hold one call's worth of load on `a` (a lease counts as in flight until dropped).
    let held = loop {
        let lease = registry.select("svc").unwrap();
        if lease.endpoint().url() == a.url {
            break lease;
        }
    };
    let client = reqwest::Client::new();
    for _ in 0..20 {
        assert_eq!(work(&registry, &client, "svc").await.unwrap(), "b");
    }
    assert_eq!(a.hits(), 0);
    assert_eq!(
        registry.service_report("svc").unwrap().endpoints[0].in_flight,
        1
    );

    // Released: both take traffic again.
    drop(held);
    for _ in 0..40 {
        work(&registry, &client, "svc").await.unwrap();
    }
    assert!(a.hits() > 0 && b.hits() > 20);
}

#[tokio::test]
async fn p2c_routes_around_a_hanging_endpoint() {
    let (slow, fast) = (
        TestServer::start("slow").await,
        TestServer::start("fast").await,
    );
    slow.set_work(Mode::Hang);
    let registry = Registry::new();
    registry
        .register(
            config("svc", &[&slow, &fast])
                .balance(Balance::P2cLeastPending)
                .call_timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .unwrap();
    let client = reqwest::Client::new();
    // Start calls in the background until one is stuck on `slow` (P2C may pick either at first).
    let mut background = Vec::new();
    while slow.hits() == 0 {
        let (registry, client) = (registry.clone(), client.clone());
        background.push(tokio::spawn(async move {
            work(&registry, &client, "svc").await
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // `slow` has a call in flight, `fast` none: every new call goes to `fast`.
    for _ in 0..20 {
        assert_eq!(work(&registry, &client, "svc").await.unwrap(), "fast");
    }
    assert_eq!(
        slow.hits(),
        1,
        "only the first call reached the hanging endpoint"
    );
    for task in background {
        task.abort();
    }
}

#[tokio::test]
async fn retry_moves_to_another_endpoint() {
    let (bad, good) = (
        TestServer::start("bad").await,
        TestServer::start("good").await,
    );
    bad.set_work(Mode::Fail);
    let registry = Registry::new();
    registry
        .register(config("svc", &[&bad, &good]).build().unwrap())
        .unwrap();
    let client = reqwest::Client::new();
    for _ in 0..4 {
        assert_eq!(work(&registry, &client, "svc").await.unwrap(), "good");
    }
    // Round robin started half of the calls on `bad`; each moved on to `good` at once.
    assert_eq!(bad.hits(), 2);
    assert_eq!(good.hits(), 4);
}

#[tokio::test]
async fn a_hanging_endpoint_times_out_and_the_retry_goes_elsewhere() {
    let (hang, good) = (
        TestServer::start("hang").await,
        TestServer::start("good").await,
    );
    hang.set_work(Mode::Hang);
    let registry = Registry::new();
    registry
        .register(
            config("svc", &[&hang, &good])
                .call_timeout(Duration::from_millis(200))
                .build()
                .unwrap(),
        )
        .unwrap();
    let client = reqwest::Client::new();
    assert_eq!(work(&registry, &client, "svc").await.unwrap(), "good");
    assert_eq!(hang.hits(), 1);
}

#[tokio::test]
async fn the_fallback_runs_when_every_endpoint_fails() {
    let (a, b) = (TestServer::start("a").await, TestServer::start("b").await);
    a.set_work(Mode::Fail);
    b.set_work(Mode::Fail);
    let registry = Registry::new();
    registry
        .register(config("svc", &[&a, &b]).build().unwrap())
        .unwrap();
    let client = reqwest::Client::new();

    let err = work(&registry, &client, "svc").await.unwrap_err();
    assert!(matches!(err, CallError::Failed { .. }), "{err:?}");
    assert_eq!(a.hits() + b.hits(), 3, "3 attempts in all");

    let answer = registry
        .call_with_fallback(
            "svc",
            |endpoint| {
                let request = client.post(endpoint.join("/work"));
                async move { request.send().await?.error_for_status()?.text().await }
            },
            |error| async move {
                assert!(matches!(error, CallError::Failed { .. }));
                Ok::<_, CallError<reqwest::Error>>("canned reply".to_owned())
            },
        )
        .await
        .unwrap();
    assert_eq!(answer, "canned reply");
}

#[tokio::test]
async fn a_fallback_service_takes_over_when_the_primary_fails() {
    let (main, backup) = (
        TestServer::start("main").await,
        TestServer::start("backup").await,
    );
    main.set_work(Mode::Fail);
    let registry = Registry::new();
    registry
        .register(
            config("ai-agent", &[&main])
                // A breaker that does not open within this test, so each call reaches `main`.
                .breaker(BreakerConfig::builder().minimum_calls(100).build().unwrap())
                .fallback_service("ai-agent-small")
                .build()
                .unwrap(),
        )
        .unwrap();
    registry
        .register(config("ai-agent-small", &[&backup]).build().unwrap())
        .unwrap();
    let client = reqwest::Client::new();
    assert_eq!(
        work(&registry, &client, "ai-agent").await.unwrap(),
        "backup"
    );
    assert_eq!(main.hits(), 3);

    // When the fallback fails too, the caller sees the primary's error.
    backup.set_work(Mode::Fail);
    let err = work(&registry, &client, "ai-agent").await.unwrap_err();
    assert_eq!(err.endpoint(), Some(main.url.as_str()));
}

#[tokio::test]
async fn unknown_service_is_a_typed_error() {
    let registry = Registry::new();
    let client = reqwest::Client::new();
    let err = work(&registry, &client, "nope").await.unwrap_err();
    assert!(matches!(
        err,
        CallError::Unavailable(Error::UnknownService { ref service }) if service == "nope"
    ));
}

/// A breaker that opens after 2 failures in a window of 4 calls, and stays open 60 s.
fn touchy_breaker() -> BreakerConfig {
    BreakerConfig::builder()
        .failure_rate_threshold(50.0)
        .count_window(4)
        .minimum_calls(2)
        .open_duration(Duration::from_secs(60))
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_open_breaker_ejects_the_endpoint_until_it_half_opens() {
    let (bad, good) = (
        TestServer::start("bad").await,
        TestServer::start("good").await,
    );
    bad.set_work(Mode::Fail);
    let clock = ManualMonotonicClock::new();
    let registry = Registry::with_breaker_clock(clock.clone());
    let mut events = registry.subscribe();
    registry
        .register(
            config("svc", &[&bad, &good])
                .breaker(touchy_breaker())
                .build()
                .unwrap(),
        )
        .unwrap();
    let client = reqwest::Client::new();
    for _ in 0..4 {
        assert_eq!(work(&registry, &client, "svc").await.unwrap(), "good");
    }
    assert_eq!(bad.hits(), 2);
    wait_for(&mut events, |e| moved_to(e, &bad.url, HealthState::Ejected)).await;
    let report = registry.service_report("svc").unwrap();
    assert_eq!(report.endpoints[0].state, HealthState::Ejected);
    assert_eq!(report.endpoints[0].breaker, State::Open);
    assert_eq!(report.status, ServiceStatus::Degraded);

    // Ejected: no call reaches it.
    for _ in 0..6 {
        work(&registry, &client, "svc").await.unwrap();
    }
    assert_eq!(bad.hits(), 2);

    // It recovered meanwhile; once the open duration is over a probe goes through and closes it.
    bad.set_work(Mode::Ok);
    clock.advance(Duration::from_secs(61));
    for _ in 0..4 {
        work(&registry, &client, "svc").await.unwrap();
    }
    assert!(bad.hits() > 2, "the endpoint takes traffic again");
    assert_eq!(
        registry.breaker("svc", &bad.url).unwrap().state(),
        State::Closed
    );
    wait_for(&mut events, |e| moved_to(e, &bad.url, HealthState::Unknown)).await;
}

/// The webhook's question after a failed call: was it an attempt (a call through a closed
/// breaker), or did only half-open probes run (the service is still down)? And until when
/// does waiting make sense?
#[tokio::test]
async fn a_failed_call_says_whether_only_probes_ran_and_when_to_come_back() {
    let bad = TestServer::start("bad").await;
    bad.set_work(Mode::Fail);
    let clock = ManualMonotonicClock::new();
    let registry = Registry::with_breaker_clock(clock.clone());
    registry
        .register(
            config("svc", &[&bad])
                .breaker(touchy_breaker())
                .build()
                .unwrap(),
        )
        .unwrap();
    let client = reqwest::Client::new();
    assert_eq!(
        registry.retry_after("svc"),
        None,
        "closed: calls go through"
    );

    // Two calls through the closed breaker fail and open it; the third attempt of the same
    // `call` finds nothing to try. The caller hears of the call that failed, not of that
    // refusal: it was an attempt, not a probe.
    let err = work(&registry, &client, "svc").await.unwrap_err();
    assert!(
        matches!(err, CallError::Failed { probe: false, .. }),
        "{err:?}"
    );
    assert!(!err.is_probe());
    assert_eq!(bad.hits(), 2);
    assert_eq!(
        registry.breaker("svc", &bad.url).unwrap().state(),
        State::Open
    );
    assert_eq!(registry.retry_after("svc"), Some(Duration::from_secs(60)));

    // Open: no call is made.
    clock.advance(Duration::from_secs(20));
    let err = work(&registry, &client, "svc").await.unwrap_err();
    assert!(
        matches!(err, CallError::Unavailable(Error::NoHealthyEndpoint { .. })),
        "{err:?}"
    );
    assert!(!err.is_probe());
    assert_eq!(bad.hits(), 2);
    assert_eq!(registry.retry_after("svc"), Some(Duration::from_secs(40)));

    // The wait is over: one probe runs, fails, and the breaker opens again.
    clock.advance(Duration::from_secs(40));
    assert_eq!(registry.retry_after("svc"), None, "the next call may probe");
    let err = work(&registry, &client, "svc").await.unwrap_err();
    assert!(
        matches!(err, CallError::Failed { probe: true, .. }),
        "{err:?}"
    );
    assert!(err.is_probe());
    assert_eq!(bad.hits(), 3, "one probe, then nothing to try");
    assert_eq!(registry.retry_after("svc"), Some(Duration::from_secs(60)));

    // Recovered: the probe succeeds and closes the breaker.
    bad.set_work(Mode::Ok);
    clock.advance(Duration::from_secs(60));
    assert_eq!(work(&registry, &client, "svc").await.unwrap(), "bad");
    assert_eq!(
        registry.breaker("svc", &bad.url).unwrap().state(),
        State::Closed
    );
    assert_eq!(registry.retry_after("svc"), None);
    assert_eq!(registry.retry_after("nope"), None);
}

/// One endpoint half-open with its single probe taken, the other closed but failing: the
/// retry goes back to the closed one (its breaker admits it) up to the policy's attempts, and
/// the caller hears of the last call's failure, not of a refusal that only one breaker made.
#[tokio::test]
async fn a_retry_returns_to_a_tried_endpoint_when_the_untried_ones_refuse() {
    let (probing, failing) = (
        TestServer::start("probing").await,
        TestServer::start("failing").await,
    );
    failing.set_work(Mode::Fail);
    let one_probe = BreakerConfig::builder()
        .failure_rate_threshold(50.0)
        .count_window(100)
        .minimum_calls(100)
        .half_open_permits(1)
        .open_duration(Duration::from_secs(60))
        .build()
        .unwrap();
    let registry = Registry::new();
    registry
        .register(
            config("svc", &[&probing, &failing])
                .breaker(one_probe)
                .build()
                .unwrap(),
        )
        .unwrap();
    let half_open = registry.breaker("svc", &probing.url).unwrap();
    half_open.transition_to_half_open();
    let probe = half_open.try_acquire_owned().unwrap();
    assert!(probe.is_probe());

    let client = reqwest::Client::new();
    let mut calls_before_fallback = None;
    let err = registry
        .call_with_fallback(
            "svc",
            |endpoint| {
                let request = client.post(endpoint.join("/work"));
                async move { request.send().await?.error_for_status() }
            },
            |e| {
                calls_before_fallback = Some(failing.hits());
                std::future::ready(Err(e))
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        failing.hits(),
        3,
        "every attempt of the policy ran: {err:?}"
    );
    assert_eq!(probing.hits(), 0);
    assert!(
        matches!(&err, CallError::Failed { probe: false, endpoint, .. } if *endpoint == failing.url),
        "the last real failure, not Rejected: {err:?}"
    );
    assert_eq!(
        calls_before_fallback,
        Some(3),
        "the fallback ran after the attempts"
    );
    assert_eq!(half_open.state(), State::HalfOpen, "its probe is still out");

    // Only when every endpoint's breaker refuses is the answer `Rejected`, and no call is made.
    let other = registry.breaker("svc", &failing.url).unwrap();
    other.transition_to_half_open();
    let other_probe = other.try_acquire_owned().unwrap();
    let err = work(&registry, &client, "svc").await.unwrap_err();
    assert!(
        matches!(err, CallError::Unavailable(Error::Rejected { .. })),
        "{err:?}"
    );
    assert_eq!((failing.hits(), probing.hits()), (3, 0));
    drop((probe, other_probe));
}

#[tokio::test]
async fn a_lease_says_whether_it_holds_a_probe() {
    let a = TestServer::start("a").await;
    let clock = ManualMonotonicClock::new();
    let registry = Registry::with_breaker_clock(clock.clone());
    registry
        .register(
            config("svc", &[&a])
                .breaker(touchy_breaker())
                .build()
                .unwrap(),
        )
        .unwrap();
    let lease = registry.select("svc").unwrap();
    assert!(!lease.is_probe());
    lease.failure();
    registry.select("svc").unwrap().failure();
    assert!(registry.select("svc").is_err(), "open");
    clock.advance(Duration::from_secs(60));
    let lease = registry.select("svc").unwrap();
    assert!(lease.is_probe());
    lease.success();
    assert!(!registry.select("svc").unwrap().is_probe());
}

#[tokio::test]
async fn nothing_eligible_is_a_typed_error_without_panic_mode() {
    let (a, b) = (TestServer::start("a").await, TestServer::start("b").await);
    let registry = Registry::new();
    registry
        .register(config("svc", &[&a, &b]).build().unwrap())
        .unwrap();
    registry.breaker("svc", &a.url).unwrap().force_open();
    registry.breaker("svc", &b.url).unwrap().force_open();
    let client = reqwest::Client::new();
    let err = work(&registry, &client, "svc").await.unwrap_err();
    assert!(matches!(
        err,
        CallError::Unavailable(Error::NoHealthyEndpoint { .. })
    ));
    assert_eq!(a.hits() + b.hits(), 0);
    assert_eq!(
        registry.service_report("svc").unwrap().status,
        ServiceStatus::Down
    );
}

#[tokio::test]
async fn panic_mode_balances_over_all_below_the_threshold() {
    let (a, b, c, d) = (
        TestServer::start("a").await,
        TestServer::start("b").await,
        TestServer::start("c").await,
        TestServer::start("d").await,
    );
    let registry = Registry::new();
    let mut events = registry.subscribe();
    registry
        .register(
            config("svc", &[&a, &b, &c, &d])
                .panic_threshold(0.5)
                .build()
                .unwrap(),
        )
        .unwrap();
    let client = reqwest::Client::new();

    // 2 of 4 ejected: the share (0.5) is not below the threshold, so only c and d serve.
    registry.breaker("svc", &a.url).unwrap().force_open();
    registry.breaker("svc", &b.url).unwrap().force_open();
    for _ in 0..4 {
        work(&registry, &client, "svc").await.unwrap();
    }
    assert_eq!((a.hits(), b.hits()), (0, 0));
    assert!(!registry.service_report("svc").unwrap().panic_mode);

    // 3 of 4 ejected (share 0.25 < 0.5): panic mode, every endpoint serves, breakers bypassed.
    registry.breaker("svc", &c.url).unwrap().force_open();
    for _ in 0..8 {
        work(&registry, &client, "svc").await.unwrap();
    }
    assert!(
        a.hits() > 0 && b.hits() > 0 && c.hits() > 2,
        "all serve in panic mode"
    );
    assert!(registry.service_report("svc").unwrap().panic_mode);
    wait_for(&mut events, |e| {
        matches!(e, RegistryEvent::PanicMode { active: true, .. })
    })
    .await;

    // Draining endpoints stay out even in panic mode.
    registry.set_draining("svc", &a.url, true).unwrap();
    let before = a.hits();
    for _ in 0..8 {
        work(&registry, &client, "svc").await.unwrap();
    }
    assert_eq!(a.hits(), before);

    // Recovered: panic mode ends.
    for s in [&b, &c] {
        registry.breaker("svc", &s.url).unwrap().reset();
    }
    work(&registry, &client, "svc").await.unwrap();
    wait_for(&mut events, |e| {
        matches!(e, RegistryEvent::PanicMode { active: false, .. })
    })
    .await;
}

#[tokio::test]
async fn draining_takes_an_endpoint_out_of_rotation() {
    let (a, b) = (TestServer::start("a").await, TestServer::start("b").await);
    let registry = Registry::new();
    let mut events = registry.subscribe();
    registry
        .register(config("svc", &[&a, &b]).build().unwrap())
        .unwrap();
    registry.set_draining("svc", &a.url, true).unwrap();
    wait_for(&mut events, |e| moved_to(e, &a.url, HealthState::Draining)).await;
    let client = reqwest::Client::new();
    for _ in 0..4 {
        assert_eq!(work(&registry, &client, "svc").await.unwrap(), "b");
    }
    registry.set_draining("svc", &a.url, false).unwrap();
    for _ in 0..4 {
        work(&registry, &client, "svc").await.unwrap();
    }
    assert_eq!(a.hits(), 2);
    assert!(matches!(
        registry.set_draining("svc", "http://nowhere:1", true),
        Err(Error::UnknownEndpoint { .. })
    ));
}

#[tokio::test]
async fn unreachable_endpoints_count_against_their_breaker() {
    let good = TestServer::start("good").await;
    let down = closed_port().await;
    let registry = Registry::new();
    registry
        .register(
            ServiceConfig::builder("svc")
                .endpoint(down.as_str())
                .endpoint(good.url.as_str())
                .retry(quick_retry())
                .breaker(touchy_breaker())
                .build()
                .unwrap(),
        )
        .unwrap();
    let client = reqwest::Client::new();
    for _ in 0..8 {
        assert_eq!(work(&registry, &client, "svc").await.unwrap(), "good");
    }
    assert_eq!(registry.breaker("svc", &down).unwrap().state(), State::Open);
}

#[tokio::test]
async fn report_serializes_for_an_admin_endpoint() {
    let a = TestServer::start("a").await;
    let registry = Registry::new();
    registry
        .register(
            ServiceConfig::builder("jobs")
                .endpoint(
                    Endpoint::new(a.url.as_str())
                        .weight(2)
                        .metadata("zone", "kgl"),
                )
                .build()
                .unwrap(),
        )
        .unwrap();
    registry
        .register(
            ServiceConfig::builder("ai-agent")
                .endpoint("http://x:1")
                .build()
                .unwrap(),
        )
        .unwrap();
    let json = serde_json::to_value(registry.report()).unwrap();
    assert_eq!(json["services"][0]["name"], "ai-agent");
    let jobs = &json["services"][1];
    assert_eq!(jobs["name"], "jobs");
    assert_eq!(jobs["status"], "healthy");
    assert_eq!(jobs["balance"], "round_robin");
    let ep = &jobs["endpoints"][0];
    assert_eq!(ep["url"], a.url.as_str());
    assert_eq!(ep["weight"], 2);
    assert_eq!(ep["metadata"]["zone"], "kgl");
    assert_eq!(ep["state"], "unknown");
    assert_eq!(ep["breaker"], "closed");
    assert_eq!(ep["in_flight"], 0);
    assert!(ep["last_check"].is_null());

    let breakers = registry.breakers();
    assert_eq!(breakers.len(), 2);
    assert_eq!(breakers[1].service, "jobs");
    assert_eq!(breakers[1].breaker.state(), State::Closed);
}

#[tokio::test]
async fn registration_events_and_duplicates() {
    let registry = Registry::new();
    let mut events = registry.subscribe();
    let cfg = ServiceConfig::builder("jobs")
        .endpoint("http://x:1")
        .build()
        .unwrap();
    registry.register(cfg.clone()).unwrap();
    assert_eq!(
        registry.register(cfg),
        Err(Error::AlreadyRegistered {
            service: "jobs".into()
        })
    );
    registry.deregister("jobs").unwrap();
    assert_eq!(
        events.recv().await.unwrap(),
        RegistryEvent::Registered {
            service: "jobs".into()
        }
    );
    assert_eq!(
        events.recv().await.unwrap(),
        RegistryEvent::Deregistered {
            service: "jobs".into()
        }
    );
    assert!(registry.services().is_empty());
}

#[tokio::test]
async fn a_spent_retry_budget_stops_retries() {
    let (a, b) = (TestServer::start("a").await, TestServer::start("b").await);
    a.set_work(Mode::Fail);
    b.set_work(Mode::Fail);
    let budget = std::sync::Arc::new(
        steadfast_service_registry::retry::RetryBudget::builder()
            .min_per_sec(0)
            .ratio_percent(0)
            .build()
            .unwrap(),
    );
    let registry = Registry::new();
    registry
        .register(
            config("svc", &[&a, &b])
                .retry_budget(budget)
                .build()
                .unwrap(),
        )
        .unwrap();
    let client = reqwest::Client::new();
    work(&registry, &client, "svc").await.unwrap_err();
    assert_eq!(a.hits() + b.hits(), 1, "no retry without budget");
}

/// The webhook's worker spawns calls: the future must be `Send` when the closure's is.
#[test]
fn the_call_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let registry = Registry::new();
    let client = reqwest::Client::new();
    let call = registry.call("jobs", |endpoint| {
        let request = client.post(endpoint.join("/v1/messages")).body("{}");
        async move { request.send().await?.error_for_status() }
    });
    assert_send(&call);
    let fallback = registry.call_with_fallback(
        "jobs",
        |endpoint| async move { Ok::<_, std::io::Error>(endpoint) },
        |error| async move { Err(error) },
    );
    assert_send(&fallback);
}

/// An endpoint URL may carry credentials and a token in its query. The call gets the URL
/// whole; nothing the registry shows (report, events, errors, breaker names, `Display`) does.
#[tokio::test]
async fn credentials_in_an_endpoint_url_are_never_shown() {
    const SECRET: &str = "s3cretpass";
    let url = format!("http://user:{SECRET}@127.0.0.1:9/x?token={SECRET}");
    let registry = Registry::new();
    let mut events = registry.subscribe();
    registry
        .register(
            ServiceConfig::builder("jobs")
                .endpoint(url.as_str())
                .breaker(touchy_breaker())
                .retry(quick_retry())
                .build()
                .unwrap(),
        )
        .unwrap();
    let mut shown = Vec::new();
    for _ in 0..2 {
        let err = registry
            .call("jobs", |endpoint| {
                assert_eq!(endpoint.url(), url, "the call gets the URL whole");
                shown.push(format!("{endpoint} {endpoint:?}"));
                async { Err::<(), _>("refused") }
            })
            .await
            .unwrap_err();
        shown.push(format!("{err} {err:?}"));
        shown.push(err.endpoint().unwrap_or_default().to_owned());
    }
    let event = wait_for(&mut events, |e| {
        matches!(e, RegistryEvent::EndpointStateChanged { to, .. } if *to == HealthState::Ejected)
    })
    .await;
    shown.push(format!("{event:?}"));
    let report = serde_json::to_string(&registry.report()).unwrap();
    assert!(
        report.contains("\"url\":\"http://127.0.0.1:9/x\""),
        "{report}"
    );
    shown.push(report);
    for b in registry.breakers() {
        assert_eq!((b.endpoint.as_str(), b.index), ("http://127.0.0.1:9/x", 0));
        shown.push(format!("{b:?}"));
        shown.push(b.breaker.metrics().name);
    }
    let unknown = registry
        .set_draining("jobs", &format!("http://admin:{SECRET}@10.0.0.1:1"), true)
        .unwrap_err();
    shown.push(unknown.to_string());
    let twice = ServiceConfig::builder("twice")
        .endpoints([url.as_str(), url.as_str()])
        .build()
        .unwrap_err();
    shown.push(twice.to_string());
    for s in &shown {
        assert!(!s.contains(SECRET), "{s}");
    }
    // The redacted URL still addresses the endpoint when it names only one.
    registry
        .set_draining("jobs", "http://127.0.0.1:9/x", true)
        .unwrap();
    assert_eq!(registry.breaker("jobs", &url).unwrap().state(), State::Open);
}
