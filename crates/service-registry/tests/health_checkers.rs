//! One conformance suite for `HealthChecker`, run against every adapter on real local servers.

mod support;

use steadfast_service_registry::{CheckError, Endpoint, FnChecker, HealthChecker, TcpChecker};
use support::{TestServer, closed_port};

/// What every checker must do: pass on a serving endpoint, fail (with a typed error, never a
/// panic) on an endpoint where nothing listens and on one with no usable address.
async fn conformance<C: HealthChecker>(checker: C) {
    let server = TestServer::start("up").await;
    checker
        .check(&Endpoint::new(server.url.as_str()))
        .await
        .expect("a serving endpoint passes");

    let down = closed_port().await;
    let err = checker
        .check(&Endpoint::new(down))
        .await
        .expect_err("nothing listening fails");
    assert!(matches!(err, CheckError::Unreachable(_)), "{err:?}");

    let err = checker
        .check(&Endpoint::new("no-port-here"))
        .await
        .expect_err("an endpoint without an address fails");
    assert!(matches!(err, CheckError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn tcp_checker_conforms() {
    conformance(TcpChecker).await;
}

/// A closure checker (here: an HTTP probe written by hand) conforms too.
#[tokio::test]
async fn fn_checker_conforms() {
    let client = reqwest::Client::new();
    conformance(FnChecker::new(move |endpoint: Endpoint| {
        let client = client.clone();
        async move {
            if endpoint.address().is_none() {
                return Err(CheckError::Unreachable("no address".into()));
            }
            let response = client
                .get(endpoint.join("/health"))
                .send()
                .await
                .map_err(|e| CheckError::Unreachable(e.to_string()))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(CheckError::Status(response.status().as_u16()))
            }
        }
    }))
    .await;
}

#[cfg(feature = "http")]
mod http {
    use super::*;
    use steadfast_service_registry::HttpChecker;
    use support::Mode;

    #[tokio::test]
    async fn http_checker_conforms() {
        conformance(HttpChecker::new("/health")).await;
    }

    #[tokio::test]
    async fn http_checker_reports_unexpected_status() {
        let server = TestServer::start("s").await;
        let endpoint = Endpoint::new(server.url.as_str());
        server.set_health(Mode::Fail);
        let err = HttpChecker::new("/health")
            .check(&endpoint)
            .await
            .unwrap_err();
        assert_eq!(err, CheckError::Status(500));
        // A custom range may accept it.
        HttpChecker::new("/health")
            .expect_status(200..=500)
            .check(&endpoint)
            .await
            .expect("500 accepted by the custom range");
    }
}
