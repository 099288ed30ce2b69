//! Health-check scheduling on tokio's paused clock: interval, faster interval while unhealthy,
//! timeouts, and tasks that stop on deregistration, shutdown and drop.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use steadfast_service_registry::{
    CheckError, Error, HealthCheck, HealthCheckBuilder, HealthState, Registry, ServiceConfig,
};

/// A closure check that counts its runs and passes while `up` is set.
fn counting(count: &Arc<AtomicUsize>, up: &Arc<AtomicBool>) -> HealthCheckBuilder {
    let (count, up) = (Arc::clone(count), Arc::clone(up));
    HealthCheck::from_fn(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
        let up = up.load(Ordering::SeqCst);
        async move {
            if up {
                Ok(())
            } else {
                Err(CheckError::Failed("down".into()))
            }
        }
    })
    .interval(Duration::from_secs(10))
    .unhealthy_interval(Duration::from_secs(2))
    .jitter(0.0)
    .unhealthy_threshold(1)
    .healthy_threshold(1)
}

fn service(name: &str, check: HealthCheck) -> ServiceConfig {
    ServiceConfig::builder(name)
        .endpoint("10.255.0.1:80")
        .health_check(check)
        .build()
        .unwrap()
}

async fn sleep_secs(s: f64) {
    tokio::time::sleep(Duration::from_secs_f64(s)).await;
}

#[tokio::test(start_paused = true)]
async fn checks_run_on_the_interval_and_faster_while_unhealthy() {
    let (count, up) = (Arc::default(), Arc::new(AtomicBool::new(true)));
    let registry = Registry::new();
    registry
        .register(service("svc", counting(&count, &up).build().unwrap()))
        .unwrap();

    sleep_secs(0.5).await; // first check runs right away
    assert_eq!(count.load(Ordering::SeqCst), 1);
    sleep_secs(10.0).await; // t = 10.5: checks at 0, 10
    assert_eq!(count.load(Ordering::SeqCst), 2);

    up.store(false, Ordering::SeqCst);
    sleep_secs(10.0).await; // t = 20.5: the check at 20 fails -> unhealthy, next every 2 s
    assert_eq!(count.load(Ordering::SeqCst), 3);
    let report = registry.service_report("svc").unwrap();
    assert_eq!(report.endpoints[0].state, HealthState::Unhealthy);
    sleep_secs(4.0).await; // t = 24.5: checks at 22, 24
    assert_eq!(count.load(Ordering::SeqCst), 5);

    up.store(true, Ordering::SeqCst);
    sleep_secs(2.0).await; // t = 26.5: the check at 26 passes -> healthy, next at 36
    assert_eq!(count.load(Ordering::SeqCst), 6);
    assert_eq!(
        registry.service_report("svc").unwrap().endpoints[0].state,
        HealthState::Healthy
    );
    sleep_secs(8.0).await; // t = 34.5
    assert_eq!(count.load(Ordering::SeqCst), 6);
    sleep_secs(2.0).await; // t = 36.5
    assert_eq!(count.load(Ordering::SeqCst), 7);
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_checks_within_bounds() {
    let (count, up) = (Arc::default(), Arc::new(AtomicBool::new(true)));
    let registry = Registry::new();
    let check = counting(&count, &up).jitter(0.5).build().unwrap();
    registry.register(service("svc", check)).unwrap();
    // Waits are in [5 s, 15 s): after 100 s there were between 1 + 100/15 and 1 + 100/5 checks.
    sleep_secs(100.0).await;
    let n = count.load(Ordering::SeqCst);
    assert!((7..=21).contains(&n), "{n} checks");
}

#[tokio::test(start_paused = true)]
async fn a_check_that_hangs_fails_by_timeout() {
    let registry = Registry::new();
    let check = HealthCheck::from_fn(|_| std::future::pending())
        .timeout(Duration::from_secs(3))
        .unhealthy_threshold(1)
        .build()
        .unwrap();
    registry.register(service("svc", check)).unwrap();
    sleep_secs(3.5).await;
    let report = registry.service_report("svc").unwrap();
    assert_eq!(report.endpoints[0].state, HealthState::Unhealthy);
    assert_eq!(
        report.endpoints[0].last_error.as_deref(),
        Some("timed out after 3s")
    );
}

#[tokio::test(start_paused = true)]
async fn deregistration_stops_its_checks() {
    let (a, b, up) = (
        Arc::default(),
        Arc::default(),
        Arc::new(AtomicBool::new(true)),
    );
    let registry = Registry::new();
    registry
        .register(service("a", counting(&a, &up).build().unwrap()))
        .unwrap();
    registry
        .register(service("b", counting(&b, &up).build().unwrap()))
        .unwrap();
    sleep_secs(25.0).await;
    assert_eq!(a.load(Ordering::SeqCst), 3);

    registry.deregister("a").unwrap();
    sleep_secs(100.0).await;
    assert_eq!(a.load(Ordering::SeqCst), 3, "a's checks stopped");
    assert_eq!(b.load(Ordering::SeqCst), 13, "b's checks go on");
    assert_eq!(
        registry.deregister("a"),
        Err(Error::UnknownService {
            service: "a".into()
        })
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_and_drop_stop_every_check() {
    let (a, b, up) = (
        Arc::default(),
        Arc::default(),
        Arc::new(AtomicBool::new(true)),
    );
    let registry = Registry::new();
    registry
        .register(service("a", counting(&a, &up).build().unwrap()))
        .unwrap();
    sleep_secs(15.0).await;
    registry.shutdown();
    assert!(registry.services().is_empty());
    assert_eq!(
        registry.register(service("a", counting(&a, &up).build().unwrap())),
        Err(Error::ShutDown)
    );
    sleep_secs(100.0).await;
    assert_eq!(a.load(Ordering::SeqCst), 2);

    let other = Registry::new();
    other
        .register(service("b", counting(&b, &up).build().unwrap()))
        .unwrap();
    sleep_secs(15.0).await;
    drop(other);
    sleep_secs(100.0).await;
    assert_eq!(b.load(Ordering::SeqCst), 2);
}

#[test]
fn registering_checks_outside_a_runtime_is_a_typed_error() {
    let (a, up) = (Arc::default(), Arc::new(AtomicBool::new(true)));
    let registry = Registry::new();
    assert_eq!(
        registry.register(service("a", counting(&a, &up).build().unwrap())),
        Err(Error::NoRuntime)
    );
    // Without checks no runtime is needed.
    registry
        .register(ServiceConfig::builder("b").endpoint("h:1").build().unwrap())
        .unwrap();
}
