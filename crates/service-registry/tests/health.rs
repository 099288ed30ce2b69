//! Active HTTP health checks against tiny local servers: thresholds, avoidance, recovery.
#![cfg(feature = "http")]

mod support;

use std::time::Duration;

use steadfast_service_registry::{HealthCheck, HealthState, Registry, ServiceConfig};
use support::{Mode, TestServer, moved_to, wait_for, work};

#[tokio::test]
async fn unhealthy_after_the_threshold_healthy_after_recovery_and_avoided_meanwhile() {
    let (a, b) = (TestServer::start("a").await, TestServer::start("b").await);
    let registry = Registry::new();
    let mut events = registry.subscribe();
    // A long interval: after the first check, the test steps the checks with `check_now`.
    let check = HealthCheck::http("/health")
        .interval(Duration::from_secs(3600))
        .unhealthy_interval(Duration::from_secs(3600))
        .unhealthy_threshold(2)
        .healthy_threshold(2)
        .build()
        .unwrap();
    registry
        .register(
            ServiceConfig::builder("svc")
                .endpoints([a.url.as_str(), b.url.as_str()])
                .health_check(check)
                .build()
                .unwrap(),
        )
        .unwrap();
    wait_for(&mut events, |e| moved_to(e, &a.url, HealthState::Healthy)).await;
    let client = reqwest::Client::new();

    a.set_health(Mode::Fail);
    registry.check_now("svc").await.unwrap();
    let report = registry.service_report("svc").unwrap();
    assert_eq!(
        report.endpoints[0].state,
        HealthState::Healthy,
        "one blip does not flap"
    );
    assert_eq!(report.endpoints[0].consecutive_failures, 1);
    registry.check_now("svc").await.unwrap();
    let report = registry.service_report("svc").unwrap();
    assert_eq!(report.endpoints[0].state, HealthState::Unhealthy);
    assert_eq!(
        report.endpoints[0].last_error.as_deref(),
        Some("unexpected status 500")
    );
    assert!(report.endpoints[0].last_check.is_some());
    assert_eq!(report.eligible, 1);
    let changed = wait_for(&mut events, |e| moved_to(e, &a.url, HealthState::Unhealthy)).await;
    assert!(format!("{changed:?}").contains("unexpected status 500"));

    for _ in 0..6 {
        assert_eq!(work(&registry, &client, "svc").await.unwrap(), "b");
    }
    assert_eq!(a.hits(), 0);

    a.set_health(Mode::Ok);
    registry.check_now("svc").await.unwrap();
    assert_eq!(
        registry.service_report("svc").unwrap().endpoints[0].state,
        HealthState::Unhealthy,
        "one pass is not enough to come back"
    );
    registry.check_now("svc").await.unwrap();
    wait_for(&mut events, |e| moved_to(e, &a.url, HealthState::Healthy)).await;
    for _ in 0..6 {
        work(&registry, &client, "svc").await.unwrap();
    }
    assert_eq!(a.hits(), 3);
}

#[tokio::test]
async fn a_hanging_health_endpoint_fails_by_timeout() {
    let a = TestServer::start("a").await;
    a.set_health(Mode::Hang);
    let registry = Registry::new();
    let mut events = registry.subscribe();
    registry
        .register(
            ServiceConfig::builder("svc")
                .endpoint(a.url.as_str())
                .health_check(
                    HealthCheck::http("/health")
                        .timeout(Duration::from_millis(100))
                        .interval(Duration::from_secs(3600))
                        .unhealthy_threshold(1)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .unwrap();
    wait_for(&mut events, |e| moved_to(e, &a.url, HealthState::Unhealthy)).await;
    let report = registry.service_report("svc").unwrap();
    assert_eq!(
        report.endpoints[0].last_error.as_deref(),
        Some("timed out after 100ms")
    );
}
