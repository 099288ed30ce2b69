//! What one adapter does beyond the `HealthChecker` conformance suite (`tests/conformance.rs`).

mod support;

#[cfg(feature = "http")]
mod http {
    use super::support::{Mode, TestServer};
    use steadfast_service_registry::{CheckError, Endpoint, HealthChecker, HttpChecker};

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
