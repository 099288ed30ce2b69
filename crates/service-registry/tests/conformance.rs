//! The `HealthChecker` conformance suite on every adapter, run through its export
//! (`steadfast_service_registry::testing`) as a third party's checker would run it, against
//! real local servers.

mod support;

use steadfast_service_registry::testing::conformance;
use steadfast_service_registry::{CheckError, Endpoint, FnChecker, TcpChecker};
use support::TestServer;

#[tokio::test]
async fn tcp_checker_conforms() {
    let server = TestServer::start("up").await;
    conformance(TcpChecker, &Endpoint::new(server.url.as_str())).await;
}

/// A closure checker (here: an HTTP probe written by hand) conforms too.
#[tokio::test]
async fn fn_checker_conforms() {
    let server = TestServer::start("up").await;
    let client = reqwest::Client::new();
    let checker = FnChecker::new(move |endpoint: Endpoint| {
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
    });
    conformance(checker, &Endpoint::new(server.url.as_str())).await;
}

#[cfg(feature = "http")]
#[tokio::test]
async fn http_checker_conforms() {
    use steadfast_service_registry::HttpChecker;
    let server = TestServer::start("up").await;
    conformance(
        HttpChecker::new("/health"),
        &Endpoint::new(server.url.as_str()),
    )
    .await;
}
