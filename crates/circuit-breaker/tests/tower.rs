//! The tower layer (feature `tower`).
#![cfg(feature = "tower")]

use std::time::Duration;

use steadfast_circuit_breaker::tower::CircuitBreakerLayer;
use steadfast_circuit_breaker::{
    CallError, CircuitBreaker, Config, ManualMonotonicClock, Outcome, State,
};
use tower::{Layer, Service, ServiceExt, service_fn};

fn breaker(timeout: Option<Duration>) -> CircuitBreaker {
    let config = Config::builder()
        .count_window(4)
        .minimum_calls(2)
        .failure_rate_threshold(50.0)
        .call_timeout(timeout)
        .build()
        .unwrap();
    CircuitBreaker::with_clock(config, ManualMonotonicClock::new())
}

type Resp = http::Response<&'static str>;

fn status_classifier(r: &Result<Resp, &'static str>) -> Outcome {
    match r {
        Ok(resp) if resp.status().is_server_error() => Outcome::Failure,
        Ok(resp) if resp.status() == http::StatusCode::NOT_FOUND => Outcome::Ignore,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

#[tokio::test]
async fn classifier_sees_responses_and_rejections_skip_the_service() {
    let b = breaker(None);
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = service_fn(move |status: u16| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            Ok::<Resp, &'static str>(http::Response::builder().status(status).body("").unwrap())
        }
    });
    let mut svc = CircuitBreakerLayer::new(b.clone())
        .classifier(status_classifier)
        .layer(inner);

    for status in [200, 404, 404] {
        svc.ready().await.unwrap().call(status).await.unwrap();
    }
    assert_eq!(b.metrics().calls, 1, "404s are ignored");
    let resp = svc.ready().await.unwrap().call(503).await.unwrap();
    assert_eq!(resp.status(), 503, "the caller still gets the response");
    assert_eq!(b.state(), State::Open, "1 of 2 = 50 %");

    let err = svc.ready().await.unwrap().call(200).await.unwrap_err();
    assert!(matches!(err, CallError::Rejected(r) if r.state == State::Open));
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test]
async fn default_classifier_counts_errors() {
    let b = breaker(None);
    let mut svc = CircuitBreakerLayer::new(b.clone()).layer(service_fn(|fail: bool| async move {
        if fail { Err("down") } else { Ok(()) }
    }));
    svc.ready().await.unwrap().call(false).await.unwrap();
    let err = svc.ready().await.unwrap().call(true).await.unwrap_err();
    assert!(matches!(err, CallError::Inner("down")));
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_responses_time_out_as_failures() {
    let b = breaker(Some(Duration::from_secs(1)));
    let mut svc = CircuitBreakerLayer::new(b.clone()).layer(service_fn(|delay: u64| async move {
        tokio::time::sleep(Duration::from_secs(delay)).await;
        Ok::<_, ()>(())
    }));
    svc.ready().await.unwrap().call(0).await.unwrap();
    let err = svc.ready().await.unwrap().call(5).await.unwrap_err();
    assert!(matches!(err, CallError::Timeout));
    let m = b.metrics();
    assert_eq!((m.calls, m.failures), (2, 1));
}

#[tokio::test]
async fn dropped_response_future_frees_the_probe() {
    let b = breaker(None);
    b.transition_to_half_open();
    let mut svc = CircuitBreakerLayer::new(b.clone()).layer(service_fn(|_: ()| async {
        std::future::pending::<Result<(), ()>>().await
    }));
    let fut = svc.ready().await.unwrap().call(());
    assert!(b.try_acquire().is_err(), "the probe is out");
    drop(fut);
    b.try_acquire().expect("probe returned").success();
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test]
async fn the_layer_can_use_the_classifier_set_in_the_config() {
    let config = Config::builder()
        .count_window(4)
        .minimum_calls(2)
        .failure_rate_threshold(50.0)
        .call_timeout(None)
        .classifier(status_classifier)
        .build()
        .unwrap();
    let b = CircuitBreaker::with_clock(config, ManualMonotonicClock::new());
    let inner = service_fn(|status: u16| async move {
        Ok::<Resp, &'static str>(http::Response::builder().status(status).body("").unwrap())
    });
    let mut svc = CircuitBreakerLayer::new(b.clone())
        .classifier(b.clone())
        .layer(inner);
    for status in [404, 200, 503] {
        svc.ready().await.unwrap().call(status).await.unwrap();
    }
    let m = b.metrics();
    assert_eq!((m.calls, m.failures), (2, 1), "404 ignored, 503 a failure");
    assert_eq!(b.state(), State::Open);
}
